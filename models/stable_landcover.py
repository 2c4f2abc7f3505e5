"""Land-cover labels from an archive's planted truth: pixels whose land cover is the same on the first
and last day of the season and that carry no planted change, and their crop-type classes.

Used to train and score the crop-type and S2 land-cover models, and by the monitoring flow to score
their maps against the truth (``pipelines.crops``, ``pipelines.landcover``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eowatch.errors import InputError
from eowatch.legend import LANDCOVER

from .croptype import CROP_CLASSES, LABEL_MAPPING

__all__ = ["landcover_to_crop", "read_landcover"]


def read_landcover(truth_dir: Path, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Land-cover code ``(y, x)`` uint8 of pixels whose planted land cover is stable over the season and
    that have no planted change; 0 (nodata) elsewhere. ``x``/``y``: the cube's pixel centres (m)."""
    import rasterio
    from rasterio.windows import Window

    layers = {}
    for key in ("landcover_start", "landcover_end", "change_type"):
        with rasterio.open(Path(truth_dir) / f"{key}.tif") as src:
            col = round((x[0] - src.transform.c) / src.transform.a - 0.5)
            row = round((y[0] - src.transform.f) / src.transform.e - 0.5)
            if col < 0 or row < 0 or col + len(x) > src.width or row + len(y) > src.height:
                raise InputError(f"{key} raster in {truth_dir} does not cover the cube grid")
            layers[key] = src.read(1, window=Window(col, row, len(x), len(y)))
    stable = (layers["landcover_start"] == layers["landcover_end"]) & (layers["change_type"] == 0)
    return np.where(stable, layers["landcover_start"], 0).astype(np.uint8)


def _landcover_lut() -> np.ndarray:
    """Lookup table landcover code (0-255) -> crop class code (-1 = unlabelled)."""
    names = {c: info.name for c, info in CROP_CLASSES.items()}
    table = LABEL_MAPPING["eowatch_landcover"]
    lut = np.full(256, -1, dtype=np.int64)
    for code, name in LANDCOVER.items():
        target = table.get(name, table["*"])
        lut[code] = next((c for c, n in names.items() if n == target), -1)
    return lut


def landcover_to_crop(cover: np.ndarray) -> np.ndarray:
    """Crop class codes (int64, -1 = unlabelled) of archive land-cover codes (any shape; 0 = nodata)."""
    return _landcover_lut()[cover]
