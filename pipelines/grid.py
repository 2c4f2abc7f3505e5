"""The target grid every stage agrees on: CRS, resolution, snapped bounds and spatial chunking.

A ``GridSpec`` is resolved once, before any pixel is read (odc-stac's GeoBox-first loading), and then
shared by the cube build, the inference and the publish stages through the cube spec.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import CRS, Transformer

from eowatch.errors import InputError


@dataclass(frozen=True)
class ChunkKey:
    """One spatial chunk of a grid, by its chunk-row and chunk-column index."""

    row: int
    col: int

    def __str__(self) -> str:
        return f"{self.row:04d}_{self.col:04d}"


@dataclass(frozen=True)
class GridSpec:
    """A north-up raster grid in a projected CRS, split into square spatial chunks."""

    crs: str
    """CRS of the grid as an authority string, e.g. ``"EPSG:32631"``; must be projected (metres)."""
    resolution: float
    """Pixel size in CRS units (metres)."""
    bounds: tuple[float, float, float, float]
    """(minx, miny, maxx, maxy) in CRS units, multiples of ``resolution``."""
    chunk: int = 256
    """Edge length of a spatial chunk in pixels; chunks are the unit of reading and writing."""

    def __post_init__(self) -> None:
        try:
            crs = CRS.from_user_input(self.crs)
        except Exception as exc:  # pyproj raises CRSError; keep the message to one line
            raise InputError(f"unknown CRS {self.crs!r}") from exc
        if not crs.is_projected:
            raise InputError(f"grid CRS {self.crs} is not projected; use a UTM zone (metres)")
        if not (self.resolution > 0 and math.isfinite(self.resolution)):
            raise InputError(f"grid resolution must be a positive number of metres, got {self.resolution}")
        minx, miny, maxx, maxy = self.bounds
        if not (minx < maxx and miny < maxy):
            raise InputError(f"grid bounds {self.bounds} are empty or reversed")
        for value in self.bounds:
            if abs(value / self.resolution - round(value / self.resolution)) > 1e-6:
                raise InputError(f"grid bounds {self.bounds} are not multiples of {self.resolution} m")
        if self.chunk < 16:
            raise InputError(f"chunk size {self.chunk} px is too small (minimum 16)")

    @classmethod
    def from_bbox(
        cls, bbox: tuple[float, float, float, float], crs: str, resolution: float, chunk: int = 256
    ) -> GridSpec:
        """Snap a bbox (in ``crs`` units) outward to whole pixels."""
        minx, miny, maxx, maxy = bbox
        r = resolution
        snapped = (
            math.floor(minx / r + 1e-9) * r,
            math.floor(miny / r + 1e-9) * r,
            math.ceil(maxx / r - 1e-9) * r,
            math.ceil(maxy / r - 1e-9) * r,
        )
        return cls(crs=crs, resolution=resolution, bounds=snapped, chunk=chunk)

    @classmethod
    def from_lonlat_bbox(
        cls, bbox: tuple[float, float, float, float], crs: str, resolution: float, chunk: int = 256
    ) -> GridSpec:
        """Project a lon/lat bbox (EPSG:4326) into ``crs`` (densified edges) and snap it outward."""
        to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        xmin, ymin, xmax, ymax = to_crs.transform_bounds(*bbox, densify_pts=21)
        return cls.from_bbox((xmin, ymin, xmax, ymax), crs, resolution, chunk)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        minx, miny, maxx, maxy = self.bounds
        return round((maxy - miny) / self.resolution), round((maxx - minx) / self.resolution)

    @property
    def transform(self) -> Affine:
        """Affine transform from pixel (col, row) to CRS coordinates of the upper-left pixel corner."""
        return Affine(self.resolution, 0.0, self.bounds[0], 0.0, -self.resolution, self.bounds[3])

    @property
    def area_km2(self) -> float:
        """Area covered by the grid in km²."""
        h, w = self.shape
        return h * w * self.resolution**2 / 1e6

    @property
    def chunk_shape(self) -> tuple[int, int]:
        """Number of chunks along (y, x)."""
        h, w = self.shape
        return math.ceil(h / self.chunk), math.ceil(w / self.chunk)

    def geobox(self) -> GeoBox:
        """The grid as an odc-geo GeoBox."""
        h, w = self.shape
        return GeoBox((h, w), self.transform, self.crs)

    def chunks(self) -> Iterator[ChunkKey]:
        """All chunk keys, row-major."""
        rows, cols = self.chunk_shape
        for r in range(rows):
            for c in range(cols):
                yield ChunkKey(r, c)

    def chunk_slices(self, key: ChunkKey) -> tuple[slice, slice]:
        """(y, x) pixel slices of a chunk, clipped at the grid edge."""
        h, w = self.shape
        y0, x0 = key.row * self.chunk, key.col * self.chunk
        return slice(y0, min(y0 + self.chunk, h)), slice(x0, min(x0 + self.chunk, w))

    def chunk_geobox(self, key: ChunkKey, halo: int = 0) -> GeoBox:
        """GeoBox of one chunk, optionally grown by ``halo`` pixels on each side (may leave the grid)."""
        ys, xs = self.chunk_slices(key)
        shape = (ys.stop - ys.start + 2 * halo, xs.stop - xs.start + 2 * halo)
        origin = self.transform * Affine.translation(xs.start - halo, ys.start - halo)
        return GeoBox(shape, origin, self.crs)

    def nested(self, factor: int) -> GridSpec:
        """A finer grid whose pixels divide this grid's pixels exactly (``factor`` × ``factor``)."""
        if factor < 1:
            raise InputError(f"nesting factor must be ≥ 1, got {factor}")
        return GridSpec(self.crs, self.resolution / factor, self.bounds, self.chunk * factor)

    def lonlat_bbox(self) -> tuple[float, float, float, float]:
        """Bounds in lon/lat (EPSG:4326), densified so the projected grid is fully covered."""
        to_ll = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        return tuple(to_ll.transform_bounds(*self.bounds, densify_pts=21))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bounds": list(self.bounds)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GridSpec:
        return cls(d["crs"], float(d["resolution"]), tuple(d["bounds"]), int(d.get("chunk", 256)))
