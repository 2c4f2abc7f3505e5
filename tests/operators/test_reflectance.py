from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from eowatch.errors import InputError
from eowatch.operators import dn_to_reflectance


def test_baseline_04_offset_and_nodata() -> None:
    dn = np.array([[0, 1000, 1500, 11000]], dtype=np.uint16)
    rho = dn_to_reflectance(dn)
    assert rho.dtype == np.float32
    assert np.isnan(rho[0, 0])
    np.testing.assert_allclose(rho[0, 1:], [0.0, 0.05, 1.0], atol=1e-6)


def test_harmonised_products_use_zero_offset_and_no_nodata() -> None:
    dn = np.array([0, 500], dtype=np.uint16)
    np.testing.assert_allclose(dn_to_reflectance(dn, offset=0.0, nodata=None), [0.0, 0.05], atol=1e-7)


def test_dataarray_keeps_coords_and_attrs() -> None:
    da = xr.DataArray(np.array([[1000, 0]], dtype=np.uint16), dims=("y", "x"), coords={"x": [10.0, 20.0]})
    da.attrs["long_name"] = "B04"
    out = dn_to_reflectance(da)
    assert isinstance(out, xr.DataArray) and out.dtype == np.float32
    assert out.attrs["long_name"] == "B04" and list(out.x.values) == [10.0, 20.0]


def test_rejects_float_input_and_bad_scale() -> None:
    with pytest.raises(InputError, match="integer"):
        dn_to_reflectance(np.ones(3, dtype=np.float32))
    with pytest.raises(InputError, match="scale"):
        dn_to_reflectance(np.ones(3, dtype=np.uint16), scale=0.0)
