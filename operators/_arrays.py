"""Private helpers shared by the operators: dtype checks and the numpy/xarray dispatch.

Every public operator is written once against numpy. ``apply_elementwise`` runs it unchanged on
``xarray.DataArray`` inputs (numpy- or Dask-backed) through ``xarray.apply_ufunc`` so that coordinates
and attributes survive, and so that a Dask-backed input stays lazy (the numpy function runs per block).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from eowatch.errors import InputError

ArrayT = TypeVar("ArrayT", np.ndarray, xr.DataArray)
"""A numpy array or an ``xarray.DataArray``; operators return the same kind they were given."""


def is_xarray(*arrays: Any) -> bool:
    """True when any argument is an ``xarray.DataArray``."""
    return any(isinstance(a, xr.DataArray) for a in arrays)


def apply_elementwise(func: Callable[..., np.ndarray], *arrays: Any, dtype: type) -> Any:
    """Apply an elementwise numpy function, keeping xarray coordinates and attributes.

    Args:
        func: Elementwise function of numpy arrays returning an array of ``dtype``.
        *arrays: numpy arrays or DataArrays (broadcast and aligned by xarray when any is a DataArray).
        dtype: Output dtype, needed to keep Dask-backed inputs lazy.

    Returns:
        ``func(*arrays)``; a DataArray (attributes of the first DataArray) if any input was one.
    """
    if is_xarray(*arrays):
        return xr.apply_ufunc(func, *arrays, dask="parallelized", output_dtypes=[dtype], keep_attrs=True)
    return func(*(np.asarray(a) for a in arrays))


def dtype_of(array: Any) -> np.dtype:
    """The dtype of a numpy array, DataArray or array-like, without loading lazy data."""
    dtype = getattr(array, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(array).dtype


def require_integer(array: Any, name: str) -> None:
    """Raise ``InputError`` unless ``array`` has an integer dtype (digital numbers)."""
    dtype = dtype_of(array)
    if dtype.kind not in "iu":
        raise InputError(f"{name} must hold integer digital numbers, got dtype {dtype}")


def require_real(array: Any, name: str) -> None:
    """Raise ``InputError`` unless ``array`` has an integer or floating dtype."""
    dtype = dtype_of(array)
    if dtype.kind not in "iuf":
        raise InputError(f"{name} must be numeric (integer or floating), got dtype {dtype}")


def require_floating(array: Any, name: str) -> None:
    """Raise ``InputError`` unless ``array`` is floating (NaN marks invalid values)."""
    dtype = dtype_of(array)
    if dtype.kind != "f":
        raise InputError(f"{name} must be floating point with NaN for invalid values, got dtype {dtype}")


def require_same_shape(a: Any, b: Any, names: str) -> None:
    """Raise ``InputError`` unless ``a`` and ``b`` have the same shape."""
    if np.shape(a) != np.shape(b):
        raise InputError(f"{names} must have the same shape, got {np.shape(a)} and {np.shape(b)}")


def to_float32(array: Any) -> np.ndarray:
    """``array`` as a float32 numpy array (integers converted, float64 narrowed, float32 not copied)."""
    return np.asarray(array, dtype=np.float32)
