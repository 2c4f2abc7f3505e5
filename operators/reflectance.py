"""Digital numbers to surface reflectance for Sentinel-2 L2A (and other scaled-integer optical products).

Sentinel-2 L2A from processing baseline 04.00 (January 2022) stores ``DN = (rho + 0.1) * 1e4`` so that
slightly negative reflectances survive; hence the defaults ``rho = DN * 1e-4 - 0.1``. Products that were
harmonised back to the old convention (several openEO/CDSE and Earth Search "harmonized" collections) need
``offset=0.0``: check the product's metadata (``BOA_ADD_OFFSET``, ``raster:bands`` offset), never guess.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from eowatch.errors import InputError

from ._arrays import ArrayT, apply_elementwise, require_integer


def dn_to_reflectance(
    dn: ArrayT, scale: float = 1e-4, offset: float = -0.1, nodata: int | None = 0
) -> ArrayT:
    """Convert integer digital numbers to surface reflectance.

    Args:
        dn: Digital numbers, any shape, integer dtype (uint16 for Sentinel-2 L2A).
        scale: Reflectance per DN (dimensionless per count).
        offset: Reflectance added after scaling (dimensionless); -0.1 for baseline >= 04.00 L2A.
        nodata: DN that marks missing data (0 for Sentinel-2), or None when every DN is valid.

    Returns:
        float32 reflectance (dimensionless, typically 0..1, may be slightly negative), same shape,
        NaN where ``dn == nodata``. DataArray in, DataArray out (coordinates and attributes kept).

    Raises:
        InputError: ``dn`` is not an integer array or ``scale`` is not a positive finite number.
    """
    require_integer(dn, "dn")
    if not (np.isfinite(scale) and scale > 0) or not np.isfinite(offset):
        raise InputError(f"scale must be positive and finite and offset finite, got {scale}, {offset}")
    func = partial(_dn_to_reflectance_np, scale=scale, offset=offset, nodata=nodata)
    return apply_elementwise(func, dn, dtype=np.float32)


def _dn_to_reflectance_np(dn: np.ndarray, scale: float, offset: float, nodata: int | None) -> np.ndarray:
    rho = dn.astype(np.float32)
    rho *= np.float32(scale)
    rho += np.float32(offset)
    if nodata is not None:
        rho[dn == nodata] = np.nan
    return rho
