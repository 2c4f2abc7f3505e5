"""Per-period temporal composites of a masked optical cube (NaN = cloud, shadow or no data).

The composite loops over periods and, inside a period, over bands, so the peak extra memory is one
``(observations in the period, y, x)`` float32 stack, never a copy of the whole cube.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr

from eowatch.errors import InputError

from ._arrays import require_floating
from .periods import Period, assign_periods, period_starts

CompositeMethod = Literal["median", "mean"]


def period_composite(
    values: np.ndarray,
    period_index: np.ndarray,
    n_periods: int,
    method: CompositeMethod = "median",
) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware median (or mean) of the valid observations of each period.

    An observation of a pixel is valid only when all its bands are finite, so every band of a composite
    pixel is computed from the same acquisitions (no mixing of bands from different dates).

    Args:
        values: Reflectance (or any float) cube, shape ``(time, band, y, x)``, float32 (float64 is
            accepted and narrowed), NaN where invalid. Any CRS; all times on one grid.
        period_index: Period of each time step, int array of shape ``(time,)``, values in
            ``-1..n_periods-1``; -1 leaves the time step out (see ``periods.assign_periods``).
        n_periods: Number of output periods (>= 1).
        method: ``"median"`` (robust to residual cloud, the default) or ``"mean"``.

    Returns:
        ``(composite, count)``: composite float32 of shape ``(period, band, y, x)``, NaN where a pixel
        has no valid observation in the period; count uint16 of shape ``(period, y, x)``, the number of
        valid observations used. Deterministic: the median of an even count is the mean of the two middle
        values, independent of input order.

    Raises:
        InputError: wrong shapes or dtypes, an out-of-range period index, or an unknown method.
    """
    require_floating(values, "values")
    if np.ndim(values) != 4:
        raise InputError(f"values must have shape (time, band, y, x), got shape {np.shape(values)}")
    if method not in ("median", "mean"):
        raise InputError(f"method must be 'median' or 'mean', got {method!r}")
    values = np.asarray(values)
    index = check_period_index(period_index, values.shape[0], n_periods)
    _, n_bands, ny, nx = values.shape
    composite = np.full((n_periods, n_bands, ny, nx), np.nan, dtype=np.float32)
    count = np.zeros((n_periods, ny, nx), dtype=np.uint16)
    for p in range(n_periods):
        members = np.flatnonzero(index == p)
        if members.size == 0:
            continue
        valid = np.ones((members.size, ny, nx), dtype=bool)
        for b in range(n_bands):
            valid &= np.isfinite(values[members, b])
        count[p] = valid.sum(axis=0)
        for b in range(n_bands):
            stack = np.where(valid, values[members, b], np.float32(np.nan)).astype(np.float32, copy=False)
            composite[p, b] = _reduce(stack, count[p], method)
    return composite, count


def composite_dataarray(
    da: xr.DataArray, periods: Sequence[Period], method: CompositeMethod = "median"
) -> xr.DataArray:
    """``period_composite`` for a DataArray, labelled by period start.

    Args:
        da: Cube with dims ``(time, band, y, x)`` in that order (any names; the first is time and must
            carry datetime64 coordinates), float32 reflectance with NaN where invalid. The data are loaded
            into memory: map this over spatial chunks for large cubes.
        periods: Half-open ``(start, stop)`` periods, e.g. from ``periods.month_periods``.
        method: ``"median"`` or ``"mean"``.

    Returns:
        float32 DataArray with the same dims, the time coordinate replaced by the period starts
        (``datetime64[ns]``), plus coordinates ``period_stop`` (time) and ``valid_count`` (uint16,
        ``(time, y, x)``); band/y/x coordinates, other non-time coordinates and attributes are kept.

    Raises:
        InputError: ``da`` is not a 4-D DataArray with datetime64 times, or the periods are invalid.
    """
    if not isinstance(da, xr.DataArray) or da.ndim != 4:
        raise InputError("da must be an xarray.DataArray with dims (time, band, y, x)")
    time_dim, _, y_dim, x_dim = da.dims
    if time_dim not in da.coords:
        raise InputError(f"da must have datetime64 coordinates on its first dimension {time_dim!r}")
    index = assign_periods(da[time_dim].values, periods)
    composite, count = period_composite(da.values, index, len(periods), method)
    coords = {name: c for name, c in da.coords.items() if time_dim not in c.dims}
    stops = np.array([stop for _, stop in periods], dtype="datetime64[D]").astype("datetime64[ns]")
    coords[time_dim] = period_starts(periods).astype("datetime64[ns]")
    coords["period_stop"] = (time_dim, stops)
    coords["valid_count"] = ((time_dim, y_dim, x_dim), count)
    return xr.DataArray(composite, dims=da.dims, coords=coords, attrs=dict(da.attrs), name=da.name)


def check_period_index(period_index: np.ndarray, n_time: int, n_periods: int) -> np.ndarray:
    """Validate a per-time period index and return it as an int array of shape ``(time,)``.

    Raises:
        InputError: not integer, wrong length, ``n_periods < 1`` or an index outside ``-1..n_periods-1``.
    """
    if isinstance(n_periods, bool) or not isinstance(n_periods, int | np.integer) or n_periods < 1:
        raise InputError(f"n_periods must be a positive integer, got {n_periods!r}")
    index = np.asarray(period_index)
    if index.dtype.kind not in "iu" or index.shape != (n_time,):
        raise InputError(
            f"period_index must be an integer array of shape ({n_time},), "
            f"got dtype {index.dtype} shape {index.shape}"
        )
    if index.size and (index.min() < -1 or index.max() >= n_periods):
        raise InputError(f"period_index values must be in -1..{n_periods - 1}")
    return index


def _reduce(stack: np.ndarray, count: np.ndarray, method: CompositeMethod) -> np.ndarray:
    """Median or mean over axis 0 of a float32 stack with NaN gaps; NaN where ``count == 0``."""
    if method == "mean":
        return nanmean_time(stack, count)
    return _nanmedian_time(stack, count)


def nanmean_time(stack: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN, float32, NaN where ``count`` (valid values per pixel) is 0."""
    total = np.nansum(stack, axis=0, dtype=np.float32)
    out = np.full(total.shape, np.nan, dtype=np.float32)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _nanmedian_time(stack: np.ndarray, count: np.ndarray) -> np.ndarray:
    # numpy sorts NaN last, so the valid values of each pixel are the first `count` entries; this is
    # faster than np.nanmedian and raises no all-NaN warnings.
    ordered = np.sort(stack, axis=0)
    n = count.astype(np.intp)[None]
    lower = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0), axis=0)[0]
    upper = np.take_along_axis(ordered, np.minimum(n // 2, stack.shape[0] - 1), axis=0)[0]
    median = (lower + upper) * np.float32(0.5)
    median[count == 0] = np.nan
    return median.astype(np.float32, copy=False)
