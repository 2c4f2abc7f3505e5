"""The contract between stages: what cube to build and what run to make.

``CubeSpec`` says which grid, bands and periods the analysis cube has; every stage reads it and the chunk
ledger records work against its token. ``MonitorConfig`` is the whole run as frozen, tokenizable data.
Loose user input (bbox strings, dates) is parsed once at the edge, in ``pipelines.search.SearchRequest``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from eowatch.errors import InputError
from eowatch.operators.periods import month_periods as _month_periods
from eowatch.pipelines.grid import GridSpec

#: Inference precision of a run's change model (``models.engine.Precision``, named here so that run
#: parameters need not import torch).
Precision = Literal["auto", "float32", "bfloat16"]

S2_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22")
MAX_GRID_PIXELS = 10**10
"""Largest target grid of one run (pixels; 1000 km × 1000 km at 10 m): larger areas are split into
regions, each its own run (a bigger grid would also mean millions of ledger markers)."""
S1_BANDS: tuple[str, ...] = ("vv", "vh")
SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10)


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS84 / UTM zone CRS (``EPSG:326xx`` north, ``EPSG:327xx`` south) containing a point."""
    if not (-180 <= lon <= 180 and -80 <= lat <= 84):
        raise InputError(f"no UTM zone for lon={lon}, lat={lat}; pass an explicit CRS")
    zone = min(math.floor((lon + 180) / 6) + 1, 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def check_grid_crs(crs: str) -> str:
    """Validate a target-grid CRS: known to PROJ, projected, in metres. Returns it unchanged.

    Raises:
        InputError: unknown CRS, a geographic CRS (degrees), or units other than metres.
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        parsed = CRS.from_user_input(crs)
    except CRSError:
        raise InputError(f"unknown CRS {crs!r}; give an EPSG code such as EPSG:32631") from None
    if not parsed.is_projected:
        raise InputError(
            f"CRS {crs} is not a projected CRS in metres; the grid needs one, e.g. a UTM zone (EPSG:32631)"
        )
    units = {axis.unit_name for axis in parsed.axis_info}
    if not units <= {"metre", "meter"}:
        raise InputError(f"CRS {crs} has units {', '.join(sorted(units))}; the grid needs metres")
    return crs


def month_periods(start: dt.date, end: dt.date) -> tuple[tuple[str, str], ...]:
    """Calendar-month periods covering [start, end] (end inclusive) as half-open ISO date pairs."""
    return tuple((str(a), str(b)) for a, b in _month_periods(start, end))


@dataclass(frozen=True)
class CubeSpec:
    """The analysis-ready cube: monthly composites on one grid."""

    grid: GridSpec
    """Target grid of every variable."""
    periods: tuple[tuple[str, str], ...]
    """Composite periods as half-open ISO date pairs ``[start, end)``."""
    s2_collection: str = "sentinel-2-l2a"
    """STAC collection id of the optical time series."""
    s1_collection: str | None = "sentinel-1-grd"
    """STAC collection id of the SAR time series, or None to build an optical-only cube."""
    s2_bands: tuple[str, ...] = S2_BANDS
    """Optical asset keys composited (surface reflectance, float32)."""
    s1_bands: tuple[str, ...] = S1_BANDS
    """SAR asset keys (linear backscatter) averaged per period and stored in dB as ``<band>_db``."""
    scl_invalid: tuple[int, ...] = SCL_INVALID
    """SCL classes masked before compositing (nodata, defective, cloud shadow, clouds, cirrus)."""
    composite: Literal["median", "mean"] = "median"
    """Statistic of the clear optical observations per period."""
    cloud_buffer_px: int = 3
    """Pixels by which the SCL cloud/shadow mask is grown: Sen2Cor misses thin cloud edges and haze."""

    def __post_init__(self) -> None:
        if len(self.periods) < 2:
            raise InputError("the date range must span at least two periods (months) to detect change")
        if self.composite not in ("median", "mean"):
            raise InputError(f"composite must be 'median' or 'mean', got {self.composite!r}")
        if not self.s2_bands:
            raise InputError("at least one optical band is needed")
        if not 0 <= self.cloud_buffer_px <= 50:
            raise InputError(f"cloud_buffer_px must be within 0..50, got {self.cloud_buffer_px}")

    @property
    def variables(self) -> tuple[str, ...]:
        """Float32 data variables of the cube, in model channel order."""
        sar = tuple(f"{b}_db" for b in self.s1_bands) if self.s1_collection else ()
        return self.s2_bands + sar

    @property
    def middle_days(self) -> tuple[int, ...]:
        """Each period's middle day (days since 1970-01-01, rounded down): the date a season-aware
        model is given for the period (``models.season``)."""
        epoch = dt.date(1970, 1, 1)
        return tuple(
            ((dt.date.fromisoformat(a) - epoch).days + (dt.date.fromisoformat(b) - epoch).days) // 2
            for a, b in self.periods
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["grid"] = self.grid.to_dict()
        d["periods"] = [list(p) for p in self.periods]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CubeSpec:
        return cls(
            grid=GridSpec.from_dict(d["grid"]),
            periods=tuple(tuple(p) for p in d["periods"]),  # type: ignore[misc]
            s2_collection=d["s2_collection"],
            s1_collection=d["s1_collection"],
            s2_bands=tuple(d["s2_bands"]),
            s1_bands=tuple(d["s1_bands"]),
            scl_invalid=tuple(d["scl_invalid"]),
            composite=d["composite"],
            cloud_buffer_px=int(d.get("cloud_buffer_px", 0)),
        )

    def token(self) -> str:
        """Deterministic content hash of the spec (stable across processes and sessions)."""
        return stable_token(self.to_dict())


@dataclass(frozen=True)
class ChangeSpec:
    """How change is inferred from the cube."""

    model: str = "siamese-s2s1-change"
    """Registry name of the change model."""
    threshold: float | None = None
    """Change probability at or above which a pixel is marked changed; None uses the threshold the
    model card was calibrated with (a gap model's own card threshold on the pixels it decides)."""
    gap_model: str | None = None
    """Registry name of the model that decides the pixel-transitions where the change model reads S1 and
    either date has no S1 observation (a month without S1 acquisitions); None lets the change model
    decide them too."""
    cva_threshold: float = 0.12
    """Change-vector magnitude (reflectance units) of the unsupervised optical baseline's 50 % point."""
    sar_threshold_db: float = 3.0
    """Absolute VV log-ratio (dB) at which the SAR baseline marks change."""
    halo: int | None = None
    """Halo in pixels read around each chunk; None uses the model's receptive field."""
    regions_per_task: int = 4
    """Chunks processed by one Dask task (batching keeps the scheduler small)."""
    precision: Precision = "auto"
    """Inference precision: ``auto`` is float32 on CPU and bf16 autocast on CUDA; ``bfloat16`` opts in on
    CPU (~2x faster with avx512_bf16; demo cube: 63 of 5M mask pixels flip, F1 unchanged to 3 decimals)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MonitorConfig:
    """One monitoring run, fully resolved: search, cube, change and output."""

    stac_url: str
    bbox: tuple[float, float, float, float]
    """AOI bounds in lon/lat (EPSG:4326)."""
    start: dt.date
    end: dt.date
    out: str
    """Output folder (local path); the change cube is ``<out>/change.zarr``."""
    intersects: dict[str, Any] | None = None
    """Optional GeoJSON geometry (EPSG:4326) restricting the search; the grid covers its bounds."""
    crs: str | None = None
    """Target CRS; None picks the UTM zone of the AOI centre."""
    bounds: tuple[float, float, float, float] | None = None
    """Target grid bounds in ``crs`` units (snapped outward); None projects ``bbox``."""
    resolution: float = 10.0
    chunk: int = 256
    max_cloud_cover: float | None = 90.0
    s2_collection: str = "sentinel-2-l2a"
    s1_collection: str | None = "sentinel-1-grd"
    vhr_collection: str | None = None
    """Optional very-high-resolution collection, loaded on a grid nested in the analysis grid."""
    change: ChangeSpec = field(default_factory=ChangeSpec)
    crop_model: str | None = None
    """Optional crop-type model mapped over the analysis cube (``<out>/crop_type.zarr``)."""
    vhr_change_model: str | None = None
    """Optional VHR change model run over pairs of consecutive dates of the VHR cube
    (``<out>/vhr_change.zarr``); needs ``vhr_collection``."""
    landcover_model: str | None = None
    """Optional land-cover model mapped over each period of the analysis cube (``<out>/landcover.zarr``)."""
    vhr_landcover_model: str | None = None
    """Optional VHR land-cover model mapped over each date of the VHR cube (``<out>/vhr_landcover.zarr``);
    needs ``vhr_collection``."""
    semantic_change_model: str | None = None
    """Optional semantic change model run over consecutive periods of the analysis cube
    (``<out>/semantic_change.zarr``)."""
    truth_dir: str | None = None
    """Folder with planted ground truth (synthetic archive) to score the run against, or None."""
    asset_stores: tuple[str, ...] = ()
    """URL prefixes asset hrefs must lie under (canonical form, see ``pipelines.reader.normalize_store``);
    empty: http(s) and s3 hrefs only, never local files. Where the assets are served from, like the
    STAC URL, is not part of what a run computes: it is left out of the run token."""

    def __post_init__(self) -> None:
        from eowatch.pipelines.reader import normalize_store

        if self.end < self.start:
            raise InputError(f"end date {self.end} is before start date {self.start}")
        if not (self.resolution > 0 and math.isfinite(self.resolution)):
            raise InputError(f"resolution must be a positive number of metres, got {self.resolution}")
        if self.crs is not None:
            check_grid_crs(self.crs)
        object.__setattr__(self, "asset_stores", tuple(normalize_store(p) for p in self.asset_stores))

    def target_crs(self) -> str:
        if self.crs:
            return self.crs
        minx, miny, maxx, maxy = self.bbox
        return utm_crs_for((minx + maxx) / 2, (miny + maxy) / 2)

    def grid(self) -> GridSpec:
        """The target grid: ``bounds`` (or the AOI projected) in the target CRS, snapped to pixels.

        Raises:
            InputError: the AOI cannot be projected into the CRS, or the grid exceeds MAX_GRID_PIXELS.
        """
        crs = self.target_crs()
        if self.bounds is not None:
            bounds = self.bounds
        else:
            from pyproj import Transformer

            to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
            bounds = to_crs.transform_bounds(*self.bbox, densify_pts=21)
        if not all(math.isfinite(v) for v in bounds):
            raise InputError(f"the AOI {list(self.bbox)} cannot be projected into {crs}; pass another CRS")
        minx, miny, maxx, maxy = bounds
        pixels = (maxx - minx) * (maxy - miny) / self.resolution**2
        if pixels > MAX_GRID_PIXELS:
            km2 = (maxx - minx) * (maxy - miny) / 1e6
            raise InputError(
                f"the AOI is too large for one run: {km2:,.0f} km² is {pixels:.2g} pixels at "
                f"{self.resolution:g} m (at most {MAX_GRID_PIXELS:.0e}); split it into regions"
            )
        return GridSpec.from_bbox(tuple(bounds), crs, self.resolution, self.chunk)  # type: ignore[arg-type]

    def cube_spec(self) -> CubeSpec:
        grid = self.grid()
        return CubeSpec(
            grid=grid,
            periods=month_periods(self.start, self.end),
            s2_collection=self.s2_collection,
            s1_collection=self.s1_collection,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        d["bbox"] = list(self.bbox)
        d["bounds"] = list(self.bounds) if self.bounds else None
        d["asset_stores"] = list(self.asset_stores)
        return d


def stable_token(obj: Any) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON form of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
