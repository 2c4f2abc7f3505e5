from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from eowatch.errors import InputError
from eowatch.operators import (
    change_vector_magnitude,
    cva_change_probability,
    log_ratio_db,
    otsu_threshold,
    standardize_bands,
    threshold,
)


def test_cva_magnitude_is_euclidean_and_nan_aware() -> None:
    before = np.zeros((2, 2, 2), dtype=np.float32)
    after = np.zeros((2, 2, 2), dtype=np.float32)
    after[:, 0, 0] = [3.0, 4.0]
    after[1, 1, 1] = np.nan
    mag = change_vector_magnitude(before, after)
    assert mag.dtype == np.float32 and mag.shape == (2, 2)
    assert mag[0, 0] == 5.0 and mag[0, 1] == 0.0 and np.isnan(mag[1, 1])


def test_cva_on_uint8_does_not_wrap_around() -> None:
    before = np.full((1, 1, 1), 200, dtype=np.uint8)
    after = np.full((1, 1, 1), 10, dtype=np.uint8)
    assert change_vector_magnitude(before, after)[0, 0] == 190.0


def test_cva_dataarray_reduces_band_dim() -> None:
    dims = ("band", "y", "x")
    coords = {"band": ["a", "b"], "y": [1.0], "x": [2.0]}
    before = xr.DataArray(np.zeros((2, 1, 1), np.float32), dims=dims, coords=coords)
    after = xr.DataArray(np.full((2, 1, 1), 3.0, np.float32), dims=dims, coords=coords)
    mag = change_vector_magnitude(before, after)
    assert mag.dims == ("y", "x") and mag.dtype == np.float32
    np.testing.assert_allclose(mag.values, [[np.sqrt(18)]], rtol=1e-6)


def test_cva_shape_mismatch_raises() -> None:
    with pytest.raises(InputError, match="same shape"):
        change_vector_magnitude(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="band, y, x"):
        change_vector_magnitude(np.zeros((3, 3)), np.zeros((3, 3)))


def test_standardize_bands_removes_global_shift() -> None:
    rng = np.random.default_rng(0)
    scene = rng.normal(size=(3, 10, 10)).astype(np.float32)
    brighter = scene * 1.5 + 20.0  # a different gain and offset, no real change
    mag = change_vector_magnitude(standardize_bands(scene), standardize_bands(brighter))
    assert mag.dtype == np.float32 and float(np.max(mag)) < 1e-4
    assert np.all(standardize_bands(np.ones((1, 2, 2))) == 0.0)


def test_log_ratio_keeps_sign() -> None:
    out = log_ratio_db(np.float32([-10.0, -15.0]), np.float32([-20.0, -5.0]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-10.0, 10.0])


def test_threshold_returns_binary_mask_and_validity() -> None:
    change, valid = threshold(np.array([0.5, 1.0, 2.0, np.nan], dtype=np.float32), 1.0)
    assert change.dtype == np.uint8 and valid.dtype == bool
    np.testing.assert_array_equal(change, [0, 0, 1, 0])
    np.testing.assert_array_equal(valid, [True, True, True, False])
    with pytest.raises(InputError):
        threshold(np.zeros(2), float("nan"))


def test_otsu_separates_two_modes_and_ignores_nan() -> None:
    rng = np.random.default_rng(0)
    low, high = rng.normal(1.0, 0.2, 1000), rng.normal(5.0, 0.2, 300)
    values = np.concatenate([low, high, [np.nan, np.inf]]).astype(np.float32)
    thr = otsu_threshold(values)
    assert low.max() < thr < high.min()
    assert otsu_threshold(np.full(5, 2.0)) == 2.0
    with pytest.raises(InputError, match="finite"):
        otsu_threshold(np.array([np.nan]))


def test_change_probability_is_logistic() -> None:
    mag = np.array([0.0, 1.0, 2.0, 1e6, np.nan], dtype=np.float32)
    prob = cva_change_probability(mag, thr=1.0, softness=0.5)
    assert prob.dtype == np.float32
    np.testing.assert_allclose(prob[:4], [1 / (1 + np.e**2), 0.5, 1 / (1 + np.e**-2), 1.0], rtol=1e-6)
    assert np.isnan(prob[4])
    with pytest.raises(InputError, match="softness"):
        cva_change_probability(mag, thr=1.0, softness=0.0)
