from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from eowatch.errors import InputError
from eowatch.operators import SCL_INVALID_DEFAULT, scl_clear_mask


def test_default_invalid_classes() -> None:
    assert frozenset({0, 1, 3, 8, 9, 10}) == SCL_INVALID_DEFAULT


def test_every_scl_class_maps_to_its_default_validity() -> None:
    scl = np.arange(12, dtype=np.uint8).reshape(3, 4)
    clear = scl_clear_mask(scl)
    assert clear.dtype == bool
    expected = np.array([c not in {0, 1, 3, 8, 9, 10} for c in range(12)]).reshape(3, 4)
    np.testing.assert_array_equal(clear, expected)


def test_custom_invalid_set_masks_snow() -> None:
    scl = np.array([[4, 11]], dtype=np.uint16)
    np.testing.assert_array_equal(scl_clear_mask(scl, invalid={11}), [[True, False]])


def test_dilation_grows_a_square_per_slice() -> None:
    scl = np.full((2, 7, 7), 4, dtype=np.uint8)
    scl[0, 3, 3] = 9  # one cloud pixel in the first date only
    clear = scl_clear_mask(scl, dilate_px=2)
    expected = np.ones((7, 7), dtype=bool)
    expected[1:6, 1:6] = False
    np.testing.assert_array_equal(clear[0], expected)
    assert clear[1].all()  # dilation never leaks across the leading (time) axis


def test_dilation_at_the_border_is_clipped() -> None:
    scl = np.full((4, 4), 4, dtype=np.uint8)
    scl[0, 0] = 8
    clear = scl_clear_mask(scl, dilate_px=1)
    assert (~clear).sum() == 4


def test_float_scl_treats_nan_as_invalid() -> None:
    scl = np.array([[4.0, np.nan, 9.0]], dtype=np.float32)
    np.testing.assert_array_equal(scl_clear_mask(scl), [[True, False, False]])


def test_dataarray_keeps_coords_and_dask_dilation_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    scl = rng.choice(np.array([4, 5, 8, 9], dtype=np.uint8), size=(3, 20, 24), p=[0.5, 0.4, 0.05, 0.05])
    da = xr.DataArray(
        scl, dims=("t", "y", "x"), coords={"y": np.arange(20), "x": np.arange(24)}, attrs={"a": 1}
    )
    expected = scl_clear_mask(scl, dilate_px=2)
    eager = scl_clear_mask(da, dilate_px=2)
    lazy = scl_clear_mask(da.chunk({"y": 7, "x": 5}), dilate_px=2)
    assert isinstance(lazy.data, dsa.Array)
    np.testing.assert_array_equal(eager.values, expected)
    np.testing.assert_array_equal(lazy.values, expected)
    assert eager.attrs == {"a": 1} and (eager.x.values == np.arange(24)).all()


@pytest.mark.parametrize(
    ("scl", "dilate"),
    [
        (np.zeros(5, dtype=np.uint8), 0),
        (np.zeros((2, 2), dtype=np.uint8), -1),
        (np.array([["a"]]), 0),
    ],
)
def test_invalid_input_raises(scl: np.ndarray, dilate: int) -> None:
    with pytest.raises(InputError):
        scl_clear_mask(scl, dilate_px=dilate)
