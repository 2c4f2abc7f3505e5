"""Flow parameters as a pydantic model: the typed edge that Prefect renders as a form.

Loose input (bbox strings, GeoJSON files, ISO dates) is parsed here once into a frozen ``MonitorConfig``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eowatch.errors import InputError
from eowatch.pipelines.spec import ChangeSpec, MonitorConfig


class MonitorParams(BaseModel):
    """Parameters of one monitoring run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stac_url: str = Field(description="STAC API root URL, e.g. https://earth-search.aws.element84.com/v1")
    start: dt.date = Field(description="First day of the monitoring period")
    end: dt.date = Field(description="Last day of the monitoring period (inclusive)")
    out: str = Field(description="Output folder; the change cube is written to <out>/change.zarr")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="AOI as lon/lat bounds: min_lon, min_lat, max_lon, max_lat"
    )
    geojson: dict[str, Any] | None = Field(None, description="AOI as a GeoJSON geometry/Feature (EPSG:4326)")
    crs: str | None = Field(None, description="Target CRS (default: UTM zone of the AOI)")
    bounds: tuple[float, float, float, float] | None = Field(
        None, description="Target grid bounds in the target CRS (default: the AOI projected)"
    )
    resolution: float = Field(10.0, gt=0, description="Target pixel size in metres")
    chunk: int = Field(256, ge=16, le=4096, description="Spatial chunk edge in pixels")
    max_cloud_cover: float | None = Field(90.0, ge=0, le=100, description="Max scene cloud cover (%)")
    s2_collection: str = "sentinel-2-l2a"
    s1_collection: str | None = "sentinel-1-grd"
    vhr_collection: str | None = Field(None, description="Optional VHR collection (nested grid)")
    model: str = Field("siamese-s2s1-change", description="Change model name (see `eowatch models`)")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Change probability threshold (default: the model card's)"
    )
    truth_dir: str | None = Field(None, description="Planted-truth folder to score the run against")

    @field_validator("bbox")
    @classmethod
    def _check_bbox(
        cls, v: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if v is None:
            return v
        minx, miny, maxx, maxy = v
        if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
            raise ValueError(f"bbox {list(v)} is outside lon [-180, 180] / lat [-90, 90]")
        if not (minx < maxx and miny < maxy):
            raise ValueError(f"bbox {list(v)} must be min_lon < max_lon and min_lat < max_lat")
        return v

    @model_validator(mode="after")
    def _check(self) -> MonitorParams:
        if (self.bbox is None) == (self.geojson is None):
            raise ValueError("give exactly one AOI: bbox or geojson")
        if self.end < self.start:
            raise ValueError(f"end date {self.end} is before start date {self.start}")
        return self

    def to_config(self) -> MonitorConfig:
        intersects = None
        bbox = self.bbox
        if self.geojson is not None:
            from eowatch.pipelines.search import SearchRequest

            req = SearchRequest.parse(
                geojson=self.geojson, start=self.start, end=self.end, collections=[self.s2_collection]
            )
            intersects = req.intersects
            from shapely.geometry import shape

            bbox = tuple(shape(intersects).bounds)  # type: ignore[assignment]
        assert bbox is not None
        return MonitorConfig(
            stac_url=self.stac_url,
            bbox=bbox,
            start=self.start,
            end=self.end,
            out=self.out,
            intersects=intersects,
            crs=self.crs,
            bounds=self.bounds,
            resolution=self.resolution,
            chunk=self.chunk,
            max_cloud_cover=self.max_cloud_cover,
            s2_collection=self.s2_collection,
            s1_collection=self.s1_collection,
            vhr_collection=self.vhr_collection,
            change=ChangeSpec(model=self.model, threshold=self.threshold),
            truth_dir=self.truth_dir,
        )


def parse_params(**kwargs: Any) -> MonitorParams:
    """Build MonitorParams, turning pydantic's validation report into one-line InputErrors."""
    from pydantic import ValidationError

    if isinstance(kwargs.get("geojson"), str | Path):
        path = Path(kwargs["geojson"])
        try:
            kwargs["geojson"] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read GeoJSON {path}: {exc}") from None
    try:
        return MonitorParams(**kwargs)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "parameters"
        raise InputError(f"invalid {where}: {err['msg'].removeprefix('Value error, ')}") from None
