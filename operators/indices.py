"""Normalised-difference spectral indices from surface reflectance.

All indices are ``(a - b) / (a + b)`` computed in float32. Inputs are reflectances (dimensionless, the
output of ``reflectance.dn_to_reflectance``) on the same grid; any CRS. Integer DNs also work when the
product has no offset, since the ratio does not depend on the scale, but not with the -0.1 offset of
Sentinel-2 baseline >= 04.00. Results are NaN where either input is NaN or the denominator is zero, without
floating-point warnings. They are not clipped: slightly negative reflectances over dark targets can push
an index outside [-1, 1], which is left visible rather than hidden.
"""

from __future__ import annotations

import numpy as np

from ._arrays import ArrayT, apply_elementwise, require_real, to_float32


def normalized_difference(a: ArrayT, b: ArrayT) -> ArrayT:
    """``(a - b) / (a + b)`` as float32, NaN where an input is NaN or ``a + b == 0``.

    Args:
        a: First band, any shape, numeric dtype.
        b: Second band, same (or broadcastable) shape, numeric dtype.

    Returns:
        float32 array of the broadcast shape; DataArray when an input is one (coordinates and the
        attributes of the first DataArray kept).

    Raises:
        InputError: an input is not numeric.
    """
    require_real(a, "a")
    require_real(b, "b")
    return apply_elementwise(_normalized_difference_np, a, b, dtype=np.float32)


def ndvi(red: ArrayT, nir: ArrayT) -> ArrayT:
    """Normalised Difference Vegetation Index ``(nir - red) / (nir + red)``, float32.

    Sentinel-2: red = B04, nir = B08 (10 m). Landsat 8/9: B4, B5.
    """
    return normalized_difference(nir, red)


def ndwi(green: ArrayT, nir: ArrayT) -> ArrayT:
    """Normalised Difference Water Index (McFeeters 1996) ``(green - nir) / (green + nir)``, float32.

    Sentinel-2: green = B03, nir = B08. Open water is positive.
    """
    return normalized_difference(green, nir)


def nbr(nir: ArrayT, swir22: ArrayT) -> ArrayT:
    """Normalised Burn Ratio ``(nir - swir22) / (nir + swir22)``, float32.

    Sentinel-2: nir = B08 (or B8A), swir22 = B12 (2.2 um, 20 m resampled to the nir grid).
    """
    return normalized_difference(nir, swir22)


def ndbi(swir16: ArrayT, nir: ArrayT) -> ArrayT:
    """Normalised Difference Built-up Index ``(swir16 - nir) / (swir16 + nir)``, float32.

    Sentinel-2: swir16 = B11 (1.6 um, 20 m resampled to the nir grid), nir = B08.
    """
    return normalized_difference(swir16, nir)


def _normalized_difference_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a32, b32 = to_float32(a), to_float32(b)
    num = a32 - b32
    den = a32 + b32
    out = np.full(np.broadcast(num, den).shape, np.nan, dtype=np.float32)
    # `where` skips zero denominators (left NaN, no warning); NaN inputs pass `den != 0` and propagate
    # through the division, which does not warn for NaN operands.
    np.divide(num, den, out=out, where=den != 0)
    return out
