"""What a plan reads: bytes an asset read fetches, and the items and windows each chunk selects.

From STAC metadata only (no pixel is read): an asset's pixel grid from ``proj:*``/``raster:bands``
(else the item bbox at its resolution, noted as a guess), the COG tiles a chunk's read window touches
(``COG_BLOCK_PX`` tiles plus a ``COG_HEADER_BYTES`` header, or the window's share of ``file:size``), and
the items whose footprints a chunk's lon/lat box intersects, as ``reader.items_intersecting`` selects them.
Used by :mod:`eowatch.pipelines.plan`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer

from eowatch.pipelines.cube import item_solar_day
from eowatch.pipelines.grid import ChunkKey, GridSpec

#: Internal tile edge assumed for a COG (STAC does not record it; GDAL's COG driver default is 512).
COG_BLOCK_PX = 512
#: Bytes GDAL fetches to open a COG (header and IFDs): ``GDAL_INGESTED_BYTES_AT_OPEN``, 16 KiB.
COG_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class Raster:
    """An asset's pixel grid: CRS, affine transform, (rows, cols), bytes per pixel over all its bands."""

    crs: str
    transform: Affine
    shape: tuple[int, int]
    pixel_bytes: int
    file_size: int | None


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


Notes = dict[str, set[str]]
"""What the plan had to guess -> the asset keys it guessed it for."""


def note(notes: Notes, what: str, *keys: str) -> None:
    notes.setdefault(what, set()).update(keys)


def asset_raster(item: Mapping[str, Any], key: str, grid: GridSpec, dtype: str, notes: Notes) -> Raster:
    """An asset's pixel grid from its proj/raster metadata, else from the item bbox (noted)."""
    asset, props = item["assets"][key], item.get("properties", {})
    epsg = asset.get("proj:epsg") or props.get("proj:epsg")
    crs = asset.get("proj:code") or props.get("proj:code") or (f"EPSG:{epsg}" if epsg else None)
    bands = asset.get("raster:bands") or asset.get("bands") or [{}]
    types = [b.get("data_type") for b in bands]
    if None in types:
        note(notes, f"{item.get('collection')}: no raster:bands data_type, assumed {dtype}", key)
    pixel_bytes = sum(np.dtype(t or dtype).itemsize for t in types)
    size = asset.get("file:size")
    shape, transform, pbox = asset.get("proj:shape"), asset.get("proj:transform"), asset.get("proj:bbox")
    if crs and shape and transform:
        return Raster(crs, Affine(*transform[:6]), (int(shape[0]), int(shape[1])), pixel_bytes, size)
    if crs and pbox and (shape or transform):
        minx, miny, maxx, maxy = pbox
        if shape:
            rows, cols = int(shape[0]), int(shape[1])
            rx, ry = (maxx - minx) / cols, (maxy - miny) / rows
        else:
            rx, ry = abs(transform[0]), abs(transform[4])
            rows, cols = round((maxy - miny) / ry), round((maxx - minx) / rx)
        return Raster(crs, Affine(rx, 0, minx, 0, -ry, maxy), (rows, cols), pixel_bytes, size)
    note(notes, f"{item.get('collection')}: no proj:shape/proj:transform, footprint from the item bbox", key)
    res = float(bands[0].get("spatial_resolution") or asset.get("gsd") or props.get("gsd") or grid.resolution)
    minx, miny, maxx, maxy = transformer("EPSG:4326", grid.crs).transform_bounds(*item["bbox"])
    rows, cols = max(1, math.ceil((maxy - miny) / res)), max(1, math.ceil((maxx - minx) / res))
    return Raster(grid.crs, Affine(res, 0, minx, 0, -res, maxy), (rows, cols), pixel_bytes, size)


def read_bytes(raster: Raster, bounds: tuple[float, float, float, float], grid_crs: str) -> int:
    """Bytes GDAL fetches to read ``bounds`` (grid CRS) of an asset once: the header plus the tiles the
    window touches (their pixels inside the raster: edge padding compresses away); 0 on a miss."""
    if raster.crs != grid_crs:
        bounds = transformer(grid_crs, raster.crs).transform_bounds(*bounds, densify_pts=5)
    inv = ~raster.transform
    cols_rows = [inv @ (x, y) for x in bounds[0::2] for y in bounds[1::2]]
    xs, ys = [c for c, _ in cols_rows], [r for _, r in cols_rows]
    rows, cols = raster.shape
    c0, c1 = max(0, math.floor(min(xs) + 1e-6)), min(cols, math.ceil(max(xs) - 1e-6))
    r0, r1 = max(0, math.floor(min(ys) + 1e-6)), min(rows, math.ceil(max(ys) - 1e-6))
    if c0 >= c1 or r0 >= r1:
        return 0
    t = COG_BLOCK_PX
    px = (min(cols, math.ceil(c1 / t) * t) - c0 // t * t) * (min(rows, math.ceil(r1 / t) * t) - r0 // t * t)
    if raster.file_size:
        return COG_HEADER_BYTES + round(raster.file_size * px / (rows * cols))
    return COG_HEADER_BYTES + px * raster.pixel_bytes


class AssetReads:
    """Bytes read from one collection's assets over chunk windows; each asset's grid resolved once."""

    def __init__(self, grid: GridSpec, dtype: str) -> None:
        self.grid, self.dtype = grid, dtype
        self.notes: Notes = {}
        self._rasters: dict[tuple[str, str], Raster] = {}

    def __call__(self, items: Iterable[dict[str, Any]], keys: Mapping[str, int], bounds: Any) -> int:
        """Bytes of reading ``keys`` (asset key -> bands read from it) of ``items`` over ``bounds``.

        odc-stac opens an asset once per band it reads, and a read of a pixel-interleaved asset fetches
        the tiles of all its bands, so a multi-band asset counts once per band read.
        """
        total = 0
        for item in items:
            for key, reads in keys.items():
                raster = self._rasters.get((item["id"], key))
                if raster is None:
                    raster = asset_raster(item, key, self.grid, self.dtype, self.notes)
                    self._rasters[(item["id"], key)] = raster
                total += reads * read_bytes(raster, bounds, self.grid.crs)
        return total


class Footprints:
    """Items queried by a lon/lat box the way ``reader.items_intersecting`` selects them (R-tree)."""

    def __init__(self, items: Sequence[dict[str, Any]]) -> None:
        self.items = [d for d in items if d.get("geometry")]
        self.tree = shapely.STRtree([shapely.geometry.shape(d["geometry"]) for d in self.items])

    def query(self, lonlat: tuple[float, ...]) -> list[dict[str, Any]]:
        hits = self.tree.query(shapely.box(*lonlat), predicate="intersects")
        return [self.items[i] for i in sorted(hits)]


def chunk_bounds(grid: GridSpec, key: ChunkKey, halo: int) -> tuple[float, float, float, float]:
    """A chunk's bounds in the grid CRS, grown by ``halo`` pixels."""
    ys, xs = grid.chunk_slices(key)
    minx, _, _, maxy = grid.bounds
    r = grid.resolution
    return (
        minx + (xs.start - halo) * r,
        maxy - (ys.stop + halo) * r,
        minx + (xs.stop + halo) * r,
        maxy - (ys.start - halo) * r,
    )


def chunk_lonlat(grid: GridSpec, key: ChunkKey) -> tuple[float, float, float, float]:
    """A chunk's lon/lat bounds exactly as the stages compute them (GeoBox extent to EPSG:4326)."""
    return tuple(grid.chunk_geobox(key).extent.to_crs("EPSG:4326").boundingbox)  # type: ignore[return-value]


def solar_day_count(items: Sequence[dict[str, Any]], lon: float) -> int:
    """Time steps odc-stac loads for ``items``: their distinct solar days at longitude ``lon``."""
    return len({item_solar_day(d, lon) for d in items})


def band_assets(item: Mapping[str, Any], bands: Sequence[str]) -> dict[str, int]:
    """Asset key -> how many of ``bands`` it holds (matched by key, or eo:bands name or common name)."""
    keys: dict[str, int] = {}
    for band in bands:
        for key, asset in item["assets"].items():
            meta = asset.get("eo:bands") or asset.get("bands") or []
            names = {key.lower()} | {str(m.get(k, "")).lower() for m in meta for k in ("name", "common_name")}
            if band.lower() in names:
                keys[key] = keys.get(key, 0) + 1
                break
    return keys
