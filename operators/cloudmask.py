"""Cloud and validity masks from the Sentinel-2 L2A Scene Classification Layer (SCL).

SCL classes (ESA L2A product): 0 no data, 1 saturated or defective, 2 dark area pixels, 3 cloud shadow,
4 vegetation, 5 not vegetated, 6 water, 7 unclassified, 8 cloud medium probability, 9 cloud high
probability, 10 thin cirrus, 11 snow or ice. The SCL band is delivered at 20 m; these functions work on
whatever grid the SCL array is on, so ``dilate_px`` counts pixels of that grid.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import numpy as np
import xarray as xr
from scipy import ndimage

from eowatch.errors import InputError

from ._arrays import ArrayT, dtype_of

SCL_INVALID_DEFAULT: frozenset[int] = frozenset({0, 1, 3, 8, 9, 10})
"""SCL classes treated as invalid: no data, saturated/defective, cloud shadow, cloud medium and high
probability, thin cirrus. Dark areas (2), unclassified (7) and snow (11) stay valid; callers who want them
masked pass their own set."""


def scl_clear_mask(scl: ArrayT, invalid: Iterable[int] = SCL_INVALID_DEFAULT, dilate_px: int = 0) -> ArrayT:
    """Boolean clear-sky mask from an SCL array.

    Args:
        scl: SCL class codes, shape ``(..., y, x)``, integer dtype (uint8/uint16 as delivered); a floating
            array is accepted and its NaNs count as invalid. Any CRS; the last two axes are the grid.
        invalid: SCL classes that make a pixel unusable.
        dilate_px: Grow the invalid area by this many pixels of the SCL grid (square structuring element
            of side ``2 * dilate_px + 1``, applied to each ``(y, x)`` slice separately) to catch cloud edges
            that the classifier misses. Pixels outside the array are treated as clear.

    Returns:
        bool array of the same shape, True where the pixel is clear. A DataArray input gives a DataArray
        with the same coordinates and attributes; a Dask-backed one stays lazy (dilation uses overlapping
        blocks, so the result does not depend on the chunking).

    Raises:
        InputError: ``scl`` is not numeric or has fewer than two dimensions, or ``dilate_px`` is negative.
    """
    codes = _check(scl, invalid, dilate_px)
    func = partial(_clear_mask_np, invalid=codes, dilate_px=dilate_px)
    if not isinstance(scl, xr.DataArray):
        return func(np.asarray(scl))
    if dilate_px > 0 and scl.chunks is not None:
        depth = {scl.ndim - 2: dilate_px, scl.ndim - 1: dilate_px}
        lazy = scl.data.map_overlap(func, depth=depth, boundary="none", dtype=bool)
        return scl.copy(data=lazy)
    return xr.apply_ufunc(func, scl, dask="parallelized", output_dtypes=[bool], keep_attrs=True)


def _check(scl: object, invalid: Iterable[int], dilate_px: int) -> tuple[int, ...]:
    dtype = dtype_of(scl)
    if dtype.kind not in "iuf":
        raise InputError(f"scl must hold integer SCL class codes, got dtype {dtype}")
    if np.ndim(scl) < 2:
        raise InputError(f"scl must have at least 2 dimensions (..., y, x), got shape {np.shape(scl)}")
    if isinstance(dilate_px, bool) or not isinstance(dilate_px, int | np.integer) or dilate_px < 0:
        raise InputError(f"dilate_px must be a non-negative integer, got {dilate_px!r}")
    codes = tuple(sorted(int(c) for c in invalid))
    if any(c < 0 or c > 255 for c in codes):
        raise InputError(f"invalid SCL classes must be in 0..255, got {codes}")
    return codes


def _clear_mask_np(scl: np.ndarray, invalid: tuple[int, ...], dilate_px: int) -> np.ndarray:
    bad = np.isin(scl, invalid)
    if scl.dtype.kind == "f":
        bad |= np.isnan(scl)
    if dilate_px > 0:
        bad = dilate_last2(bad, dilate_px)
    return ~bad


def dilate_last2(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a bool mask ``(..., y, x)`` by a square of half-width ``radius`` pixels.

    Each ``(y, x)`` slice is dilated on its own; outside the array counts as False.
    """
    size = (1,) * (mask.ndim - 2) + (2 * radius + 1, 2 * radius + 1)
    # A separable max filter is O(n) per pixel instead of O(radius**2) for binary_dilation.
    grown = ndimage.maximum_filter(mask.view(np.uint8), size=size, mode="constant", cval=0)
    return grown.astype(bool)
