from __future__ import annotations

import warnings
from datetime import date

import numpy as np
import pytest
import xarray as xr

from eowatch.errors import InputError
from eowatch.operators import composite_dataarray, month_periods, period_composite


def _cloudy_cube(seed: int = 0, shape: tuple[int, int, int, int] = (9, 3, 5, 6)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 0.5, size=shape).astype(np.float32)
    cloud = rng.random((shape[0], shape[2], shape[3])) < 0.4  # the same for every band, like SCL
    values[np.broadcast_to(cloud[:, None], shape)] = np.nan
    return values


def _oracle(values: np.ndarray, index: np.ndarray, n: int, reducer) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack([reducer(values[index == p], axis=0) for p in range(n)])


@pytest.mark.parametrize(("method", "reducer"), [("median", np.nanmedian), ("mean", np.nanmean)])
def test_matches_numpy_nan_reducers(method: str, reducer) -> None:
    values = _cloudy_cube()
    index = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2], dtype=np.int64)
    composite, count = period_composite(values, index, 3, method=method)
    assert composite.dtype == np.float32 and composite.shape == (3, 3, 5, 6)
    assert count.dtype == np.uint16 and count.shape == (3, 5, 6)
    np.testing.assert_allclose(composite, _oracle(values, index, 3, reducer), rtol=1e-6, equal_nan=True)
    expected_count = np.stack([np.isfinite(values[index == p, 0]).sum(0) for p in range(3)])
    np.testing.assert_array_equal(count, expected_count)
    assert np.array_equal(np.isnan(composite[:, 0]), count == 0)


def test_skipped_times_empty_periods_and_no_observation() -> None:
    values = np.ones((3, 1, 2, 2), dtype=np.float32)
    values[1] = 100.0  # outside every period
    values[2, :, 0, 0] = np.nan
    composite, count = period_composite(values, np.array([0, -1, 0]), 3)
    np.testing.assert_array_equal(count[0], [[1, 2], [2, 2]])
    assert np.all(composite[0] == 1.0)
    assert np.isnan(composite[1:]).all() and (count[1:] == 0).all()


def test_observation_with_one_nan_band_is_dropped_from_all_bands() -> None:
    values = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]], dtype=np.float32).reshape(3, 2, 1, 1)
    composite, count = period_composite(values, np.zeros(3, dtype=int), 1)
    assert count[0, 0, 0] == 2
    np.testing.assert_array_equal(composite[0, :, 0, 0], [3.0, 20.0])


def test_median_is_independent_of_time_order() -> None:
    values = _cloudy_cube(seed=3, shape=(8, 2, 4, 4))
    index = np.zeros(8, dtype=int)
    order = np.random.default_rng(1).permutation(8)
    a, _ = period_composite(values, index, 1)
    b, _ = period_composite(values[order], index, 1)
    np.testing.assert_array_equal(a, b)


def test_composite_dataarray_labels_periods_and_keeps_coords() -> None:
    times = np.array(["2023-04-02", "2023-04-20", "2023-05-03"], dtype="datetime64[ns]")
    da = xr.DataArray(
        np.arange(3 * 2 * 2 * 3, dtype=np.float32).reshape(3, 2, 2, 3),
        dims=("t", "bands", "y", "x"),
        coords={"t": times, "bands": ["B04", "B08"], "y": [20.0, 10.0], "x": [0.0, 10.0, 20.0]},
        attrs={"crs": "EPSG:32631"},
        name="refl",
    )
    out = composite_dataarray(da, month_periods(date(2023, 4, 1), date(2023, 5, 31)))
    assert out.dims == da.dims and out.dtype == np.float32 and out.attrs == da.attrs
    np.testing.assert_array_equal(
        out.t.values, np.array(["2023-04-01", "2023-05-01"], dtype="datetime64[ns]")
    )
    assert list(out.bands.values) == ["B04", "B08"]
    assert out.valid_count.dims == ("t", "y", "x") and int(out.valid_count[0].min()) == 2
    np.testing.assert_allclose(out.isel(t=0).values, da.isel(t=[0, 1]).mean("t").values)


@pytest.mark.parametrize(
    ("values", "index", "n", "method"),
    [
        (np.zeros((2, 1, 2, 2), dtype=np.uint16), np.array([0, 0]), 1, "median"),
        (np.zeros((2, 2, 2), dtype=np.float32), np.array([0, 0]), 1, "median"),
        (np.zeros((2, 1, 2, 2), dtype=np.float32), np.array([0, 1]), 1, "median"),
        (np.zeros((2, 1, 2, 2), dtype=np.float32), np.array([0]), 1, "median"),
        (np.zeros((2, 1, 2, 2), dtype=np.float32), np.array([0.0, 0.0]), 1, "median"),
        (np.zeros((2, 1, 2, 2), dtype=np.float32), np.array([0, 0]), 0, "median"),
        (np.zeros((2, 1, 2, 2), dtype=np.float32), np.array([0, 0]), 1, "max"),
    ],
)
def test_invalid_input_raises(values: np.ndarray, index: np.ndarray, n: int, method: str) -> None:
    with pytest.raises(InputError):
        period_composite(values, index, n, method=method)  # type: ignore[arg-type]
