from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

from eowatch.errors import InputError
from eowatch.operators import assign_periods, month_periods, period_starts


def d(text: str) -> np.datetime64:
    return np.datetime64(text, "D")


def test_months_are_clipped_half_open_and_contiguous() -> None:
    periods = month_periods(date(2023, 1, 15), date(2023, 3, 10))
    assert periods == [
        (d("2023-01-15"), d("2023-02-01")),
        (d("2023-02-01"), d("2023-03-01")),
        (d("2023-03-01"), d("2023-03-11")),
    ]
    assert all(p[0].dtype == np.dtype("datetime64[D]") for p in periods)


def test_single_day_and_year_boundary_and_datetime() -> None:
    assert month_periods(date(2023, 4, 30), date(2023, 4, 30)) == [(d("2023-04-30"), d("2023-05-01"))]
    periods = month_periods(datetime(2023, 12, 31, 23), date(2024, 1, 1))
    assert periods == [(d("2023-12-31"), d("2024-01-01")), (d("2024-01-01"), d("2024-01-02"))]


def test_reversed_dates_raise() -> None:
    with pytest.raises(InputError, match="before start"):
        month_periods(date(2023, 5, 1), date(2023, 4, 1))


def test_assign_periods_includes_last_day_and_marks_outside() -> None:
    periods = month_periods(date(2023, 4, 1), date(2023, 5, 31))
    times = np.array(
        ["2023-03-31T23:59", "2023-04-01T00:00", "2023-04-30T10:30", "2023-05-01T00:00", "2023-06-01", "NaT"],
        dtype="datetime64[ns]",
    )
    index = assign_periods(times, periods)
    assert index.dtype == np.int32
    np.testing.assert_array_equal(index, [-1, 0, 0, 1, -1, -1])
    np.testing.assert_array_equal(period_starts(periods), [d("2023-04-01"), d("2023-05-01")])


@pytest.mark.parametrize(
    "periods",
    [
        [],
        [(d("2023-02-01"), d("2023-01-01"))],
        [(d("2023-01-01"), d("2023-02-01")), (d("2023-01-15"), d("2023-03-01"))],
    ],
)
def test_assign_periods_rejects_bad_periods(periods: list) -> None:
    with pytest.raises(InputError):
        assign_periods(np.array(["2023-01-05"], dtype="datetime64[D]"), periods)


def test_assign_periods_rejects_non_datetime() -> None:
    with pytest.raises(InputError, match="datetime64"):
        assign_periods(np.array([1, 2]), month_periods(date(2023, 1, 1), date(2023, 1, 31)))
