"""Deterministic Cloud-Optimized GeoTIFF writing and layout checks (rasterio's GDAL COG driver)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio

from eowatch.archive.config import CRS, Grid

#: GDAL settings that keep output byte-identical between runs.
GDAL_ENV = {"GDAL_NUM_THREADS": "1", "GDAL_TIFF_INTERNAL_MASK": "YES", "GDAL_PAM_ENABLED": "NO"}


def write_cog(
    path: Path,
    data: np.ndarray,
    grid: Grid,
    nodata: float | None,
    categorical: bool = False,
) -> None:
    """Write ``data`` ((H, W) or (bands, H, W)) on ``grid`` as a COG.

    Tiles of 512 px (256 px for rasters under 1024 px), ZSTD with a predictor (2 for integers,
    3 for floats), and at least one internal overview level (nearest for categorical rasters,
    average otherwise). No timestamps or software tags are written.
    """
    arr = data[None] if data.ndim == 2 else data
    count, height, width = arr.shape
    assert (height, width) == grid.shape, (arr.shape, grid.shape)
    block = 512 if min(height, width) >= 1024 else 256
    levels = max(1, math.ceil(math.log2(max(height, width) / block)))
    predictor = 3 if arr.dtype.kind == "f" else 2
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        rasterio.Env(**GDAL_ENV),
        rasterio.open(
            path,
            "w",
            driver="COG",
            width=width,
            height=height,
            count=count,
            dtype=arr.dtype.name,
            crs=CRS,
            transform=grid.transform,
            nodata=nodata,
            compress="ZSTD",
            level=9,
            predictor=predictor,
            blocksize=block,
            overview_count=levels,
            num_threads=1,
            overview_resampling="nearest" if categorical else "average",
            resampling="nearest" if categorical else "average",
        ) as dst,
    ):
        dst.write(arr)


def cog_problems(path: Path) -> list[str]:
    """Layout problems of a COG (empty when it is tiled, compressed, has overviews and COG layout)."""
    problems = []
    with rasterio.open(path) as src:
        prof = src.profile
        structure = src.tags(ns="IMAGE_STRUCTURE")
        block = src.block_shapes[0]
        if block[0] != block[1] or block[0] not in (256, 512):
            problems.append(f"{path.name}: not tiled with 256/512 px blocks")
        if str(prof.get("compress", "")).lower() not in ("deflate", "zstd"):
            problems.append(f"{path.name}: compression {prof.get('compress')!r} is not DEFLATE/ZSTD")
        if structure.get("PREDICTOR") not in ("2", "3"):
            problems.append(f"{path.name}: no predictor")
        if not src.overviews(1):
            problems.append(f"{path.name}: no internal overviews")
        if structure.get("LAYOUT") != "COG":
            problems.append(f"{path.name}: not in COG layout (IFDs/ghost header)")
        if src.crs is None or src.crs.to_epsg() != 32631:
            problems.append(f"{path.name}: CRS is not EPSG:32631")
    return problems
