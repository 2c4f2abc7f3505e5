from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from eowatch.errors import InputError
from eowatch.operators import nbr, ndbi, ndvi, ndwi


def test_known_values_and_band_order() -> None:
    red = np.array([0.1, 0.05], dtype=np.float32)
    nir = np.array([0.3, 0.05], dtype=np.float32)
    np.testing.assert_allclose(ndvi(red, nir), [0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(ndwi(np.float32([0.3]), np.float32([0.1])), [0.5], atol=1e-6)
    np.testing.assert_allclose(nbr(np.float32([0.3]), np.float32([0.1])), [0.5], atol=1e-6)
    np.testing.assert_allclose(ndbi(np.float32([0.1]), np.float32([0.3])), [-0.5], atol=1e-6)


def test_nan_and_zero_denominator_give_nan_without_warnings() -> None:
    red = np.array([0.0, np.nan, 0.2, -0.1], dtype=np.float32)
    nir = np.array([0.0, 0.3, np.nan, 0.1], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ndvi(red, nir)
    assert out.dtype == np.float32
    assert np.isnan(out).all()


@pytest.mark.parametrize("dtype", [np.uint16, np.float64, np.int16])
def test_output_is_always_float32(dtype: type) -> None:
    out = ndvi(np.array([100, 200], dtype=dtype), np.array([300, 200], dtype=dtype))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.5, 0.0], atol=1e-6)


def test_dataarray_in_dataarray_out() -> None:
    coords = {"x": [0.0, 10.0]}
    red = xr.DataArray(np.float32([0.1, 0.2]), dims="x", coords=coords, attrs={"units": "1"})
    nir = xr.DataArray(np.float32([0.3, 0.2]), dims="x", coords=coords)
    out = ndvi(red, nir)
    assert isinstance(out, xr.DataArray) and out.dtype == np.float32
    assert list(out.x.values) == [0.0, 10.0]


def test_non_numeric_raises() -> None:
    with pytest.raises(InputError):
        ndvi(np.array(["a"]), np.array(["b"]))
