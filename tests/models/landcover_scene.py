"""Generator of small labelled S2 cubes for the land-cover tests (written at test time).

Land cover is a patchwork of square parcels of the archive's classes with simple surface-reflectance
spectra; the truth rasters follow the archive's contract (``landcover_start``, ``landcover_end``,
``change_type``) on the cube's grid (EPSG:32631, 10 m).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eowatch.legend import LANDCOVER

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
#: Surface reflectance per archive land-cover name (blue, green, red, nir, swir16, swir22).
SPECTRA = {
    "water": (0.07, 0.06, 0.035, 0.02, 0.03, 0.02),
    "forest": (0.035, 0.055, 0.03, 0.31, 0.16, 0.07),
    "grassland": (0.055, 0.085, 0.06, 0.39, 0.23, 0.13),
    "winter_cereal": (0.06, 0.09, 0.08, 0.36, 0.26, 0.16),
    "built_up": (0.095, 0.1, 0.115, 0.195, 0.195, 0.165),
    "bare_soil": (0.085, 0.11, 0.145, 0.215, 0.285, 0.235),
}
X0, Y0 = 600000.0, 5640960.0


def scene_arrays(
    seed: int, size: int = 96, periods: int = 2, parcel: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """``(bands float32 (T, 6, size, size), land cover uint8 (size, size))`` with ~3 % NaN holes."""
    rng = np.random.default_rng(seed)
    codes = np.array([c for c, n in LANDCOVER.items() if n in SPECTRA], dtype=np.uint8)
    n = size // parcel
    cover = np.kron(rng.choice(codes, (n, n)), np.ones((parcel, parcel), dtype=np.uint8))
    spectra = np.zeros((256, len(BANDS)), np.float32)
    for code in codes:
        spectra[code] = SPECTRA[LANDCOVER[int(code)]]
    base = np.moveaxis(spectra[cover], -1, 0)  # (6, y, x)
    bands = base[None] * rng.uniform(0.9, 1.1, (periods, len(BANDS), 1, 1))
    bands = bands + rng.normal(0, 0.006, bands.shape)
    bands[rng.random(bands.shape) < 0.005] = np.nan
    return bands.astype(np.float32), cover


def write_truth(folder: Path, cover: np.ndarray) -> Path:
    """Write the archive's truth rasters of a stable land cover ``(y, x)`` (no change) on the scene grid."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True)
    h, w = cover.shape
    profile = {"driver": "GTiff", "height": h, "width": w, "count": 1, "crs": "EPSG:32631"}
    profile["transform"] = from_origin(X0, Y0, 10, 10)
    for name, array in [("landcover_start", cover), ("landcover_end", cover), ("change_type", cover * 0)]:
        with rasterio.open(folder / f"{name}.tif", "w", dtype="uint8", **profile) as dst:
            dst.write(array, 1)
    return folder


def write_scene(folder: Path, seed: int, size: int = 96, periods: int = 2) -> tuple[Path, Path]:
    """Write ``cube<seed>.zarr`` and ``truth<seed>/`` under ``folder``; return both paths."""
    import xarray as xr

    bands, cover = scene_arrays(seed, size, periods)
    coords = {
        "time": np.array([f"2026-{m:02d}-01" for m in range(5, 5 + periods)], dtype="datetime64[ns]"),
        "y": Y0 - 5 - 10 * np.arange(size),
        "x": X0 + 5 + 10 * np.arange(size),
    }
    cube = folder / f"cube{seed}.zarr"
    data = {b: (("time", "y", "x"), bands[:, i]) for i, b in enumerate(BANDS)}
    xr.Dataset(data, coords=coords).to_zarr(cube, consolidated=False)
    return cube, write_truth(folder / f"truth{seed}", cover)
