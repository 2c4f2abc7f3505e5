"""The catalog-search request: loose user input (bbox strings, GeoJSON, date ranges) parsed once.

Pure: no network; the only I/O is reading a GeoJSON file in :meth:`SearchRequest.parse`. Every invalid
input raises a one-line :class:`~eowatch.errors.InputError` that says how to fix it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from eowatch.errors import InputError

Bbox = tuple[float, float, float, float]
"""(min lon, min lat, max lon, max lat) in degrees, EPSG:4326."""


@dataclass(frozen=True)
class SearchRequest:
    """What to search for. Build it with :meth:`parse` from loose input; the constructor validates too."""

    collections: tuple[str, ...]
    """STAC collection ids, e.g. ``("sentinel-2-l2a",)``."""
    start: date
    """First day of the period (UTC), inclusive."""
    end: date
    """Last day of the period (UTC), inclusive."""
    bbox: Bbox | None = None
    """Area as (min lon, min lat, max lon, max lat) in degrees, EPSG:4326. Exactly one of bbox/intersects."""
    intersects: dict[str, Any] | None = field(default=None, hash=False)
    """Area as a GeoJSON Polygon/MultiPolygon geometry in EPSG:4326. Exactly one of bbox/intersects."""
    max_cloud_cover: float | None = None
    """Keep items with ``eo:cloud_cover`` ≤ this (percent, 0–100); items without the property are kept."""
    max_items: int | None = None
    """Stop after this many (matching) items; None for all."""
    page_size: int = 100
    """Items per page requested from the API (the ``limit`` parameter)."""

    def __post_init__(self) -> None:
        collections = (self.collections,) if isinstance(self.collections, str) else tuple(self.collections)
        if not collections or not all(isinstance(c, str) and c.strip() for c in collections):
            raise InputError("collections must be one or more non-empty collection ids")
        object.__setattr__(self, "collections", tuple(dict.fromkeys(c.strip() for c in collections)))
        if (self.bbox is None) == (self.intersects is None):
            raise InputError(
                "give exactly one area: a bbox or a GeoJSON geometry (intersects), not both/none"
            )
        if self.bbox is not None:
            object.__setattr__(self, "bbox", check_lonlat_bbox(self.bbox))
        else:
            object.__setattr__(self, "intersects", mapping(_check_geometry(self.intersects)))
        for name in ("start", "end"):
            if not isinstance(getattr(self, name), date):
                raise InputError(f"{name} must be a date, got {getattr(self, name)!r}")
        if self.end < self.start:
            raise InputError(f"end date {self.end} is before start date {self.start}; swap them")
        if self.max_cloud_cover is not None and not 0 <= self.max_cloud_cover <= 100:
            raise InputError(f"max cloud cover must be between 0 and 100 percent, got {self.max_cloud_cover}")
        if self.max_items is not None and self.max_items < 1:
            raise InputError(f"max_items must be >= 1, got {self.max_items}")
        if not 1 <= self.page_size <= 10_000:
            raise InputError(f"page_size must be between 1 and 10000, got {self.page_size}")

    @property
    def bounds(self) -> Bbox:
        """Bounding box of the area (degrees, EPSG:4326)."""
        if self.bbox is not None:
            return self.bbox
        return tuple(float(v) for v in shape(self.intersects).bounds)  # type: ignore[return-value]

    @property
    def datetime_range(self) -> str:
        """The STAC ``datetime`` interval covering whole UTC days from ``start`` to ``end``."""
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59.999999Z"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; inverse of :meth:`from_dict`."""
        out = asdict(self)
        out.update(collections=list(self.collections), start=self.start.isoformat(), end=self.end.isoformat())
        out["bbox"] = list(self.bbox) if self.bbox is not None else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchRequest:
        """Build from :meth:`to_dict` output (dates as ISO strings)."""
        data = dict(data)
        data["start"] = _parse_date(data["start"], "start")
        data["end"] = _parse_date(data["end"], "end")
        data["collections"] = tuple(data["collections"])
        if data.get("bbox") is not None:
            data["bbox"] = tuple(data["bbox"])
        return cls(**data)

    @classmethod
    def parse(
        cls,
        collections: str | Sequence[str],
        *,
        bbox: str | Sequence[float] | None = None,
        geojson: str | Path | Mapping[str, Any] | None = None,
        dates: str | None = None,
        start: str | date | None = None,
        end: str | date | None = None,
        max_cloud_cover: str | float | None = None,
        max_items: str | int | None = None,
    ) -> SearchRequest:
        """Parse loose user input (CLI strings, lists, a GeoJSON path) into a validated request.

        Args:
            collections: ``"a,b"`` or a sequence of ids.
            bbox: ``"minx,miny,maxx,maxy"`` or 4 numbers (degrees, EPSG:4326).
            geojson: A path to a GeoJSON file, a GeoJSON string, or a dict: a geometry, a Feature or a
                FeatureCollection (the union of its geometries).
            dates: ``"YYYY-MM-DD/YYYY-MM-DD"`` (inclusive); or give ``start`` and ``end``.
            start: First day, ``YYYY-MM-DD`` or a date.
            end: Last day, ``YYYY-MM-DD`` or a date.
            max_cloud_cover: Percent 0–100.
            max_items: Positive integer.
        """
        if isinstance(collections, str):
            collections = [c for c in collections.split(",") if c.strip()]
        if dates is not None:
            if start is not None or end is not None:
                raise InputError("give either dates='START/END' or start= and end=, not both")
            start, end = _split_dates(dates)
        if start is None or end is None:
            raise InputError("a time range is required: dates='YYYY-MM-DD/YYYY-MM-DD' or start= and end=")
        if bbox is not None and geojson is not None:
            raise InputError("give either a bbox or a GeoJSON area, not both")
        return cls(
            collections=tuple(collections),
            bbox=parse_bbox(bbox) if bbox is not None else None,
            intersects=geometry_from_geojson(geojson) if geojson is not None else None,
            start=_parse_date(start, "start"),
            end=_parse_date(end, "end"),
            max_cloud_cover=_parse_number(max_cloud_cover, "max cloud cover"),
            max_items=int(_parse_number(max_items, "max_items")) if max_items is not None else None,
        )


def _parse_number(value: str | float | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{what} must be finite, got {value!r}")
    return number


def parse_bbox(value: str | Sequence[float]) -> Bbox:
    """``"minlon,minlat,maxlon,maxlat"`` (commas or spaces) or 4 numbers → 4 floats (not range-checked).

    Raises:
        InputError: not 4 values, or a value that is not a finite number.
    """
    parts = value.replace(" ", ",").split(",") if isinstance(value, str) else list(value)
    parts = [p for p in parts if not (isinstance(p, str) and not p.strip())]
    if len(parts) != 4:
        raise InputError(f"bbox must be 4 numbers 'minlon,minlat,maxlon,maxlat', got {value!r}")
    return tuple(_parse_number(p, "bbox value") for p in parts)  # type: ignore[return-value]


def check_lonlat_bbox(bbox: Sequence[float]) -> Bbox:
    """Validate a lon/lat bbox (degrees, EPSG:4326) and return it as 4 floats.

    The one bbox rule of eowatch: search requests, flow parameters and region files all use it.

    Raises:
        InputError: not 4 finite numbers, outside lon [-180, 180] / lat [-90, 90], zero area, or not
            ordered (min_lon, min_lat, max_lon, max_lat).
    """
    if isinstance(bbox, str | bytes) or len(bbox) != 4:
        raise InputError(f"bbox must be 4 numbers 'minlon,minlat,maxlon,maxlat', got {list(bbox)}")
    minx, miny, maxx, maxy = (_parse_number(v, "bbox value") for v in bbox)
    for lon in (minx, maxx):
        if not -180 <= lon <= 180:
            raise InputError(f"bbox longitude {lon} is outside [-180, 180]; give lon/lat in EPSG:4326")
    for lat in (miny, maxy):
        if not -90 <= lat <= 90:
            raise InputError(f"bbox latitude {lat} is outside [-90, 90]; give lon/lat in EPSG:4326")
    if minx == maxx or miny == maxy:
        raise InputError(f"bbox {[minx, miny, maxx, maxy]} has zero area")
    if minx > maxx or miny > maxy:
        raise InputError(
            f"bbox {[minx, miny, maxx, maxy]} must be ordered minlon,minlat,maxlon,maxlat "
            "(areas across the antimeridian: split them in two)"
        )
    return (minx, miny, maxx, maxy)  # type: ignore[return-value]


def _check_geometry(geojson: Mapping[str, Any] | None) -> BaseGeometry:
    try:
        geom = shape(geojson)
    except Exception as err:
        raise InputError(f"not a GeoJSON geometry: {err}") from None
    if geom.is_empty:
        raise InputError("the GeoJSON geometry is empty")
    if not geom.is_valid:
        reason = explain_validity(geom)
        raise InputError(f"invalid GeoJSON geometry ({reason}); fix it, e.g. with shapely make_valid")
    if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.area == 0:
        raise InputError(
            f"the area must be a Polygon or MultiPolygon with non-zero area, got {geom.geom_type}"
        )
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InputError(f"geometry bounds {geom.bounds} are outside lon/lat EPSG:4326")
    return geom


def geometry_from_geojson(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a GeoJSON geometry, Feature or FeatureCollection (path, JSON text or dict) as one geometry.

    A FeatureCollection becomes the union of its features' geometries, so it must contain at least one.

    Raises:
        InputError: unreadable file, bad JSON, invalid or self-intersecting geometry.
    """
    if isinstance(source, Mapping):
        data: Any = source
    else:
        text = str(source)
        if not text.lstrip().startswith("{"):
            try:
                text = Path(text).read_text()
            except OSError as err:
                raise InputError(f"cannot read GeoJSON file {source}: {err.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"GeoJSON is not valid JSON: {err}") from None
    geoms = [_check_geometry(g) for g in _geometries(data)]
    if not geoms:
        raise InputError("the GeoJSON contains no geometry")
    union = geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)
    return mapping(_check_geometry(mapping(union)))


def _geometries(data: Any) -> Iterator[Mapping[str, Any]]:
    kind = data.get("type") if isinstance(data, Mapping) else None
    if kind == "FeatureCollection":
        for feature in data.get("features") or []:
            yield from _geometries(feature)
    elif kind == "Feature":
        if data.get("geometry"):
            yield data["geometry"]
    elif kind is not None:
        yield data
    else:
        raise InputError("GeoJSON must be a geometry, Feature or FeatureCollection object")


def _split_dates(dates: str) -> tuple[str, str]:
    parts = dates.split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise InputError(f"dates must be 'YYYY-MM-DD/YYYY-MM-DD', got {dates!r}")
    return parts[0].strip(), parts[1].strip()


def _parse_date(value: str | date, what: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InputError(f"{what} date must be YYYY-MM-DD, got {value!r}") from None
