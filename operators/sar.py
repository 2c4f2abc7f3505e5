"""Sentinel-1 backscatter conversions: linear power, decibels, and the openEO GFMap uint16 encoding.

Backscatter (sigma0 or gamma0) is a power ratio, dimensionless; ``dB = 10 * log10(linear)``. Arrays may be
in any CRS and shape; the time axis, where there is one, is axis 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import numpy as np

from eowatch.errors import InputError

from ._arrays import ArrayT, apply_elementwise, require_floating, require_integer, require_real, to_float32
from .composite import check_period_index, nanmean_time

GFMAP_NODATA: tuple[int, int] = (65534, 65535)
"""uint16 codes that the openEO GFMap SAR encoding reserves for missing data."""


def linear_to_db(x: ArrayT) -> ArrayT:
    """Linear power to decibels, ``10 * log10(x)``.

    Args:
        x: Linear backscatter (dimensionless power ratio), any shape, numeric dtype.

    Returns:
        float32 dB of the same shape; NaN where ``x <= 0`` or ``x`` is NaN (no warnings).

    Raises:
        InputError: ``x`` is not numeric.
    """
    require_real(x, "x")
    return apply_elementwise(_linear_to_db_np, x, dtype=np.float32)


def db_to_linear(x: ArrayT) -> ArrayT:
    """Decibels to linear power, ``10 ** (x / 10)``.

    Args:
        x: Backscatter in dB, any shape, numeric dtype.

    Returns:
        float32 linear power of the same shape; NaN where ``x`` is NaN.

    Raises:
        InputError: ``x`` is not numeric.
    """
    require_real(x, "x")
    return apply_elementwise(_db_to_linear_np, x, dtype=np.float32)


def dn_to_db(dn: ArrayT, nodata: Iterable[int] = GFMAP_NODATA) -> ArrayT:
    """Decode the openEO GFMap uint16 SAR encoding, ``dB = 20 * log10(DN) - 83``.

    GFMap stores ``DN = 10 ** ((dB + 83) / 20)`` (amplitude-like scaling) so that -83..+15 dB fit in
    uint16; DN 0 cannot come from that formula and is treated as missing too.

    Args:
        dn: Encoded backscatter, any shape, integer dtype (uint16).
        nodata: DN codes that mark missing data.

    Returns:
        float32 backscatter in dB, same shape, NaN for DN 0 and the nodata codes.

    Raises:
        InputError: ``dn`` is not an integer array.
    """
    require_integer(dn, "dn")
    func = partial(_dn_to_db_np, nodata=tuple(int(v) for v in nodata))
    return apply_elementwise(func, dn, dtype=np.float32)


def temporal_mean_db(linear: np.ndarray, period_index: np.ndarray, n_periods: int) -> np.ndarray:
    """Per-period mean backscatter, averaged in linear power and returned in dB.

    Averaging is done on linear power because backscatter is a power quantity: the mean of the dB values is
    the log of the geometric mean, which is biased low for speckled (exponentially distributed) intensity
    (about -2.5 dB for single-look data) and shifts with the number of looks; the mean of the linear values
    is the multi-look estimate of the true mean intensity. Converting to dB only at the end keeps that
    estimate unbiased and makes the result independent of the number of acquisitions.

    Args:
        linear: Linear backscatter, shape ``(time, ...)``, float32 (float64 narrowed), NaN where invalid.
        period_index: int array of shape ``(time,)`` with values in ``-1..n_periods-1`` (-1 = skip).
        n_periods: Number of output periods (>= 1).

    Returns:
        float32 dB of shape ``(period, ...)``; NaN where a period has no valid positive observation.

    Raises:
        InputError: ``linear`` is not floating or has no time axis, or the period index is invalid.
    """
    require_floating(linear, "linear")
    values = np.asarray(linear)
    if values.ndim < 1:
        raise InputError("linear must have a leading time axis, got a scalar")
    index = check_period_index(period_index, values.shape[0], n_periods)
    out = np.full((n_periods, *values.shape[1:]), np.nan, dtype=np.float32)
    for p in range(n_periods):
        stack = to_float32(values[index == p])
        if stack.shape[0] == 0:
            continue
        finite = np.isfinite(stack)
        stack[~finite] = np.nan  # boolean indexing copied `values`, so this never writes to the input
        out[p] = _linear_to_db_np(nanmean_time(stack, finite.sum(axis=0)))
    return out


def _linear_to_db_np(x: np.ndarray) -> np.ndarray:
    x32 = to_float32(x)
    out = np.full(x32.shape, np.nan, dtype=np.float32)
    np.log10(x32, out=out, where=x32 > 0)
    out *= np.float32(10)
    return out


def _db_to_linear_np(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.power(np.float32(10), to_float32(x) / np.float32(10))


def _dn_to_db_np(dn: np.ndarray, nodata: tuple[int, ...]) -> np.ndarray:
    valid = (dn > 0) & ~np.isin(dn, nodata)
    out = np.full(dn.shape, np.nan, dtype=np.float32)
    np.log10(dn.astype(np.float32), out=out, where=valid)
    out *= np.float32(20)
    out -= np.float32(83)
    return out
