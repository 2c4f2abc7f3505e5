"""Configuration and derived geometry of the synthetic archive.

All geometry is in EPSG:32631 (UTM zone 31N) metres. The AOI is a square whose lower-left corner is fixed
(central Belgium); ``size_km`` only grows the square. Every raster in the archive is a crop of one 10 m
"world" grid (the AOI plus a margin), so S2 tiles, the S1 grid, the VHR sub-area and the truth rasters
nest exactly.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from affine import Affine

from eowatch.errors import InputError

CRS = "EPSG:32631"
EPSG = 32631
#: Lower-left corner of the AOI (UTM 31N metres): agricultural land in central Belgium.
AOI_ORIGIN = (600000.0, 5640000.0)
#: Margin of the simulated world around the AOI (m); covers S2 tile margins and the S1 footprint.
WORLD_MARGIN = 1500.0
S2_MARGIN = 500.0
S2_OVERLAP = 1000.0
#: S1 footprint: AOI plus about 1 km, on a 10 m grid whose origin differs from the S2 tiles.
S1_PAD = (1010.0, 990.0, 1010.0, 1010.0)
RES = 10.0


@dataclass(frozen=True)
class ArchiveConfig:
    """Parameters of a synthetic archive; the archive is a pure function of this object."""

    seed: int = 0
    """Master random seed; every component draws from a ``SeedSequence`` spawned from it."""
    size_km: float = 10.0
    """AOI edge length in km (rounded to 20 m); larger values add S2 tiles and scale event counts."""
    start: dt.date = dt.date(2026, 3, 1)
    """First day of the simulated period."""
    end: dt.date = dt.date(2026, 8, 31)
    """Last day of the simulated period (inclusive)."""
    s2_revisit_days: int = 5
    """Days between Sentinel-2 acquisitions (constellation revisit)."""
    s1_revisit_days: int = 12
    """Days between Sentinel-1 acquisitions of one orbit direction (the two directions are offset)."""
    include_s1: bool = True
    """Whether to simulate the ``sentinel-1-grd`` collection."""
    include_vhr: bool = True
    """Whether to simulate the ``vhr-rgbn`` collection (1 m aerial imagery over a sub-area)."""
    vhr_dates: int = 3
    """Number of VHR acquisitions (first near the start, last near the end of the period)."""
    workers: int = 1
    """Processes used to render dates (spawned; scripts need an ``if __name__ == "__main__"`` guard);
    does not change the output."""

    def __post_init__(self) -> None:
        _check(
            isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
            f"seed must be a non-negative int, got {self.seed!r}",
        )
        _check(
            isinstance(self.size_km, int | float) and 1.0 <= float(self.size_km) <= 60.0,
            f"size_km must be between 1 and 60, got {self.size_km!r}",
        )
        _check(
            isinstance(self.start, dt.date) and isinstance(self.end, dt.date),
            "start and end must be datetime.date objects",
        )
        _check(
            (self.end - self.start).days >= 14,
            f"the period {self.start}..{self.end} must span at least 15 days",
        )
        _check((self.end - self.start).days <= 400, "the period must be at most 400 days long")
        _check(1 <= self.s2_revisit_days <= 30, "s2_revisit_days must be in 1..30")
        _check(2 <= self.s1_revisit_days <= 30, "s1_revisit_days must be in 2..30")
        _check(2 <= self.vhr_dates <= 6, "vhr_dates must be in 2..6")
        _check(1 <= self.workers <= 64, "workers must be in 1..64")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (dates as ISO strings)."""
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["end"] = self.end.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchiveConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`InputError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        _check(not unknown, f"unknown archive config keys: {sorted(unknown)}")
        kw = dict(data)
        for key in ("start", "end"):
            if isinstance(kw.get(key), str):
                try:
                    kw[key] = dt.date.fromisoformat(kw[key])
                except ValueError as exc:
                    raise InputError(f"{key} must be YYYY-MM-DD, got {kw[key]!r}") from exc
        return cls(**kw)

    def identity(self) -> dict[str, Any]:
        """The fields that define the archive contents (``workers`` excluded)."""
        out = self.to_dict()
        out.pop("workers")
        return out


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: top-left corner ``(minx, maxy)`` in metres, pixel size ``res`` (m)."""

    minx: float
    maxy: float
    res: float
    width: int
    height: int

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (self.minx, self.maxy - self.height * self.res, self.minx + self.width * self.res, self.maxy)

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.minx, 0.0, -self.res, self.maxy)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @classmethod
    def from_bbox(cls, bbox: tuple[float, float, float, float], res: float) -> Grid:
        minx, miny, maxx, maxy = bbox
        return cls(minx, maxy, res, round((maxx - minx) / res), round((maxy - miny) / res))

    def window_in(self, parent: Grid) -> tuple[slice, slice]:
        """Row/column slices of this grid inside ``parent`` (same resolution, aligned)."""
        r0 = round((parent.maxy - self.maxy) / parent.res)
        c0 = round((self.minx - parent.minx) / parent.res)
        assert r0 >= 0 and c0 >= 0 and r0 + self.height <= parent.height and c0 + self.width <= parent.width
        return slice(r0, r0 + self.height), slice(c0, c0 + self.width)

    def centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates: ``x`` of shape (1, W) and ``y`` of shape (H, 1), float64 metres."""
        x = self.minx + (np.arange(self.width) + 0.5) * self.res
        y = self.maxy - (np.arange(self.height) + 0.5) * self.res
        return x[None, :], y[:, None]


@dataclass(frozen=True)
class S2Tile:
    """An MGRS-like Sentinel-2 tile: its id (e.g. ``31UFS``) and 10 m grid."""

    code: str
    grid: Grid


@dataclass(frozen=True)
class Layout:
    """Geometry derived from a config: AOI, world, S2 tiles, S1 grid and VHR sub-area."""

    aoi: Grid
    world: Grid
    tiles: tuple[S2Tile, ...]
    s1: Grid
    vhr: Grid

    @classmethod
    def from_config(cls, config: ArchiveConfig) -> Layout:
        edge = round(config.size_km * 1000.0 / 20.0) * 20.0
        x0, y0 = AOI_ORIGIN
        aoi = Grid.from_bbox((x0, y0, x0 + edge, y0 + edge), RES)
        m = WORLD_MARGIN
        world = Grid.from_bbox((x0 - m, y0 - m, x0 + edge + m, y0 + edge + m), RES)
        p = S1_PAD
        s1 = Grid.from_bbox((x0 - p[0], y0 - p[1], x0 + edge + p[2], y0 + edge + p[3]), RES)
        return cls(aoi, world, _tiles(aoi), s1, _vhr_grid(edge))


def _tiles(aoi: Grid) -> tuple[S2Tile, ...]:
    minx, miny, maxx, maxy = aoi.bbox
    ext = (minx - S2_MARGIN, miny - S2_MARGIN, maxx + S2_MARGIN, maxy + S2_MARGIN)
    nx = max(2, math.ceil((ext[2] - ext[0]) / 7000.0))
    ny = max(1, math.ceil((ext[3] - ext[1]) / 14000.0))

    def split(lo: float, hi: float, n: int) -> list[tuple[float, float]]:
        if n == 1:
            return [(lo, hi)]
        width = math.ceil(((hi - lo) + S2_OVERLAP * (n - 1)) / n / 20.0) * 20.0
        step = (hi - lo - width) / (n - 1)
        out = []
        for i in range(n):
            a = lo + round(i * step / 20.0) * 20.0
            out.append((a, a + width) if i < n - 1 else (hi - width, hi))
        return out

    cols = "EFGHJKLMNP"
    rows = "STUVWXYZ"
    tiles = []
    for iy, (ya, yb) in enumerate(split(ext[1], ext[3], ny)):
        for ix, (xa, xb) in enumerate(split(ext[0], ext[2], nx)):
            code = f"31U{cols[ix % len(cols)]}{rows[iy % len(rows)]}"
            tiles.append(S2Tile(code, Grid.from_bbox((xa, ya, xb, yb), RES)))
    return tuple(tiles)


def _vhr_grid(edge: float) -> Grid:
    size = min(2000.0, math.floor(0.6 * edge / 10.0) * 10.0)
    x0 = AOI_ORIGIN[0] + round((edge - size) * 0.35 / 10.0) * 10.0
    y0 = AOI_ORIGIN[1] + round((edge - size) * 0.55 / 10.0) * 10.0
    return Grid.from_bbox((x0, y0, x0 + size, y0 + size), 1.0)


def rng_for(seed: int, component: str) -> np.random.Generator:
    """An independent generator per (seed, component name), stable across runs and Python versions."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(component.encode())]))


def epoch_day(day: dt.date) -> int:
    """Days since 1970-01-01."""
    return (day - dt.date(1970, 1, 1)).days


def from_epoch_day(n: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(n))


def s2_dates(config: ArchiveConfig) -> list[dt.date]:
    """Sentinel-2 acquisition dates: every ``s2_revisit_days`` from the start."""
    n = (config.end - config.start).days // config.s2_revisit_days + 1
    return [config.start + dt.timedelta(days=i * config.s2_revisit_days) for i in range(n)]


def s1_dates(config: ArchiveConfig) -> list[tuple[dt.date, str]]:
    """Sentinel-1 acquisitions as (date, orbit_state); directions offset by half a revisit."""
    out = []
    half = config.s1_revisit_days // 2
    for offset, state in ((1, "descending"), (1 + half, "ascending")):
        day = config.start + dt.timedelta(days=offset)
        while day <= config.end:
            out.append((day, state))
            day += dt.timedelta(days=config.s1_revisit_days)
    return sorted(out)


def vhr_dates(config: ArchiveConfig) -> list[dt.date]:
    """VHR acquisition dates, evenly spread from start+3 d to end-3 d."""
    a, b = epoch_day(config.start) + 3, epoch_day(config.end) - 3
    days = np.linspace(a, b, config.vhr_dates).round().astype(int)
    return [from_epoch_day(int(d)) for d in days]
