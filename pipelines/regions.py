"""Named monitoring regions from a YAML file, and how a backfill splits a date range into windows.

A regions file is the edge where operators describe what to watch::

    regions:
      - name: demo                          # lowercase slug: folder name under the output root
        stac_url: ${EOWATCH_STAC_URL}       # ${VAR} is expanded when a run is planned, not at load
        bbox: [4.4221847, 50.901168, 4.5673697, 50.9928847]   # or geojson: {...} (lon/lat)
        crs: EPSG:32631                     # optional target grid
        bounds: [600000, 5640000, 610000, 5650000]
        resolution: 10
        collections: {s2: sentinel-2-l2a, s1: sentinel-1-grd, vhr: vhr-rgbn}
        model: siamese-s2s1-change
        schedule: "0 6 1 * *"               # cron, validated with Prefect's CronSchedule
        asset_stores: [https://data.example.org/cogs/]   # optional allow-list of asset URL prefixes

``load_regions`` parses it once into frozen pydantic models; every problem is one ``InputError`` line
naming the file, the region and the field. The AOI (bbox or GeoJSON), CRS, collections and asset stores
are checked by the same rules as the flow parameters (``pipelines.params``) when the file is loaded, so
a bad region fails at load, not when its first run starts. A region name is a slug, never a path: it
names the region's folder under the output root and cannot climb out of it (``..``, ``/``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eowatch.errors import InputError
from eowatch.pipelines.params import MonitorParams, check_collection_id, check_stac_url
from eowatch.pipelines.search_request import check_lonlat_bbox, geometry_from_geojson, parse_bbox
from eowatch.pipelines.spec import Precision

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62})$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Collections(BaseModel):
    """STAC collections a region is monitored with (one per sensor)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    s2: str = Field("sentinel-2-l2a", description="Sentinel-2 L2A collection")
    s1: str | None = Field("sentinel-1-grd", description="Sentinel-1 GRD collection (None: optical only)")
    vhr: str | None = Field(None, description="Optional VHR collection loaded on a nested grid")

    @field_validator("s2", "s1", "vhr")
    @classmethod
    def _check_id(cls, v: str | None, info: Any) -> str | None:
        return None if v is None else check_collection_id(v, info.field_name)


class Region(BaseModel):
    """One named area under monitoring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Lowercase slug (a-z, 0-9, '-'); the region's folder under the output root")
    stac_url: str = Field(description="STAC API root; may hold ${VAR} references to environment variables")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="AOI as lon/lat bounds: min_lon, min_lat, max_lon, max_lat (EPSG:4326)"
    )
    geojson: dict[str, Any] | None = Field(None, description="AOI as a GeoJSON geometry (EPSG:4326)")
    crs: str | None = Field(None, description="Target CRS (default: UTM zone of the AOI)")
    bounds: tuple[float, float, float, float] | None = Field(
        None, description="Target grid bounds in the target CRS, metres"
    )
    resolution: float | None = Field(None, gt=0, description="Target pixel size in metres (default 10)")
    collections: Collections = Field(default_factory=Collections)
    model: str = Field("siamese-s2s1-change", description="Change model name (see `eowatch models`)")
    precision: Precision = Field(
        "auto", description="Change-model inference precision (auto: float32 on CPU, bf16 on CUDA)"
    )
    crop_model: str | None = Field(
        None, description="Optional crop-type model mapped over each window's season, e.g. crop-type-ltae"
    )
    vhr_change_model: str | None = Field(
        None,
        description="Optional VHR change model run over consecutive VHR dates of each window, e.g. "
        "siamese-vhr-change (needs collections.vhr)",
    )
    landcover_model: str | None = Field(
        None,
        description="Optional land-cover model mapped over each period of a window, e.g. landcover-s2-unet",
    )
    vhr_landcover_model: str | None = Field(
        None,
        description="Optional VHR land-cover model mapped over each VHR date of a window, e.g. "
        "landcover-vhr-unet (needs collections.vhr)",
    )
    gap_model: str | None = Field(
        "auto",
        description="Model for the pixel-transitions where a date has no S1 observation (auto: the change "
        "model's gap model; null: none)",
    )
    semantic_change_model: str | None = Field(
        None,
        description="Optional semantic change model run over consecutive periods of a window, e.g. "
        "siamese-s2s1-semantic",
    )
    schedule: str | None = Field(None, description="Cron schedule of the monitoring runs, 5 fields")
    asset_stores: tuple[str, ...] = Field(
        (), description="URL prefixes asset hrefs must lie under (may hold ${VAR}); default: any http(s)/s3"
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _SLUG.fullmatch(v):  # fullmatch: "$" alone would accept a trailing newline
            raise ValueError(
                f"region name {v!r} must be a lowercase slug (a-z, 0-9, '-', at most 63 characters)"
            )
        return v

    @field_validator("stac_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if _ENV.search(v):
            return v  # checked once expanded, when a run is planned
        try:
            return check_stac_url(v)
        except InputError:
            raise ValueError(f"stac_url {v!r} must be an http(s) URL or a ${{VAR}} reference") from None

    @field_validator("bbox", mode="before")
    @classmethod
    def _check_bbox(cls, v: Any) -> tuple[float, float, float, float] | None:
        if v is None:
            return None
        return check_lonlat_bbox(parse_bbox(v) if isinstance(v, str) else v)

    @field_validator("geojson")
    @classmethod
    def _check_geojson(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            geometry_from_geojson(v)  # same rules as a run's AOI: valid polygon(s) in lon/lat
        return v

    @field_validator("crs")
    @classmethod
    def _check_crs(cls, v: str | None) -> str | None:
        from eowatch.pipelines.spec import check_grid_crs

        return None if v is None else check_grid_crs(v)

    @field_validator("asset_stores")
    @classmethod
    def _check_stores(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from eowatch.pipelines.reader import normalize_store

        for store in v:
            if not _ENV.search(store):
                normalize_store(store)
        return v

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from prefect.client.schemas.schedules import CronSchedule

        if len(v.split()) != 5:
            raise ValueError(f"schedule {v!r} must be a 5-field cron string, e.g. '0 6 1 * *'")
        try:
            CronSchedule(cron=v)
        except ValidationError:
            raise ValueError(f"schedule {v!r} is not a valid cron string") from None
        return v

    @model_validator(mode="after")
    def _check_aoi(self) -> Region:
        if (self.bbox is None) == (self.geojson is None):
            raise ValueError("give exactly one AOI: bbox or geojson")
        return self

    def monitor_params(self, start: dt.date, end: dt.date, out_root: str | Path) -> MonitorParams:
        """Parameters of the monitoring run of this region over [start, end].

        The output folder is ``<out_root>/<name>/<start>_<end>``; ``${VAR}`` in ``stac_url`` is expanded.

        Raises:
            InputError: an environment variable in ``stac_url`` or ``asset_stores`` is unset, or the dates
                or the expanded values are invalid.
            ModelError: the region's model is unknown or does not fit its grid.
        """
        from eowatch.pipelines.params import parse_params

        root, window = str(out_root).rstrip("/"), f"{start.isoformat()}_{end.isoformat()}"
        out = f"{root}/{self.name}/{window}" if "://" in root else str(Path(root) / self.name / window)
        extra = {"resolution": self.resolution} if self.resolution is not None else {}
        return parse_params(
            stac_url=_expand(self.stac_url, f"region {self.name}: stac_url"),
            start=start,
            end=end,
            out=out,
            bbox=self.bbox,
            geojson=self.geojson,
            crs=self.crs,
            bounds=self.bounds,
            s2_collection=self.collections.s2,
            s1_collection=self.collections.s1,
            vhr_collection=self.collections.vhr,
            model=self.model,
            gap_model=self.gap_model,
            precision=self.precision,
            crop_model=self.crop_model,
            vhr_change_model=self.vhr_change_model,
            landcover_model=self.landcover_model,
            vhr_landcover_model=self.vhr_landcover_model,
            semantic_change_model=self.semantic_change_model,
            asset_stores=tuple(_expand(p, f"region {self.name}: asset_stores") for p in self.asset_stores),
            **extra,
        )


class RegionsFile(BaseModel):
    """The whole file: a list of regions with unique names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    regions: list[Region] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> RegionsFile:
        seen: set[str] = set()
        for r in self.regions:
            if r.name in seen:
                raise ValueError(f"region name {r.name!r} is defined twice")
            seen.add(r.name)
        return self


def _expand(value: str, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in os.environ:
            raise InputError(f"{where} uses ${{{m.group(1)}}}, which is not set in the environment")
        return os.environ[m.group(1)]

    return _ENV.sub(sub, value)


def _where(data: Any, loc: tuple[int | str, ...]) -> str:
    """'region NAME: field' (or the raw location) for a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "regions" and isinstance(loc[1], int):
        try:
            name = data["regions"][loc[1]].get("name", f"#{loc[1] + 1}")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = f"#{loc[1] + 1}"
        rest = ".".join(str(p) for p in loc[2:])
        return f"region {name}" + (f": {rest}" if rest else "")
    return ".".join(str(p) for p in loc) or "file"


def load_regions(path: str | Path) -> dict[str, Region]:
    """Read a regions YAML file into ``{name: Region}`` (file order).

    Raises:
        InputError: the file is missing, is not YAML, or a region is invalid (one line: file, region, field).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read regions file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"regions file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        parsed = RegionsFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise InputError(f"{path}: {_where(data, tuple(err['loc']))}: {what}") from None
    return {r.name: r for r in parsed.regions}


def get_region(path: str | Path, name: str) -> Region:
    """One region of a regions file by name.

    Raises:
        InputError: the file is invalid or has no region ``name``.
    """
    regions = load_regions(path)
    if name not in regions:
        raise InputError(f"no region {name!r} in {path}; it defines: {', '.join(regions)}")
    return regions[name]


def _add_months(d: dt.date, n: int) -> dt.date:
    y, m = divmod(d.month - 1 + n, 12)
    return dt.date(d.year + y, m + 1, 1)


def backfill_windows(start: dt.date, end: dt.date, months: int = 3) -> list[tuple[dt.date, dt.date]]:
    """Split [start, end] (inclusive) into monitoring windows of ``months`` calendar months.

    Consecutive windows share one month: each window starts on the first day of the previous window's
    last month. Monitoring compares consecutive monthly composites, so every month-to-month transition
    in the range falls in exactly one window and none is lost at a window boundary. The first window
    starts on ``start`` and the last ends on ``end``; a window shorter than two months is never made.

    Raises:
        InputError: ``months`` < 2, or the range spans fewer than two calendar months.
    """
    if months < 2:
        raise InputError(f"backfill windows must span at least 2 months, got {months}")
    if end < start:
        raise InputError(f"end date {end} is before start date {start}")
    first, last = start.replace(day=1), end.replace(day=1)
    if first == last:
        raise InputError(f"the range {start} to {end} spans one month; a backfill needs at least two")
    windows = []
    month = first
    while True:
        stop = _add_months(month, months - 1)
        if stop >= last:
            windows.append((max(month, start), end))
            return windows
        windows.append((max(month, start), _add_months(stop, 1) - dt.timedelta(days=1)))
        month = stop


def rollup_markdown(region: str, rows: list[dict[str, Any]]) -> str:
    """Markdown roll-up of a backfill: one table row per window.

    Args:
        region: the region's name.
        rows: per window ``{"window": "START_END", "status": str, "out": str, "by_type_km2": {type: km²}}``
            (``by_type_km2`` empty for a window that did not complete).
    """
    types = sorted({t for r in rows for t in r.get("by_type_km2", {})})
    head = ["window", "status", *(f"{t} (km²)" for t in types), "output"]
    lines = [
        f"# Backfill of region `{region}`",
        "",
        f"{sum(r['status'] == 'Completed' for r in rows)} of {len(rows)} windows completed.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        areas = [f"{r['by_type_km2'][t]:.4f}" if t in r.get("by_type_km2", {}) else "–" for t in types]
        lines.append("| " + " | ".join([r["window"], r["status"], *areas, f"`{r['out']}`"]) + " |")
    return "\n".join(lines) + "\n"
