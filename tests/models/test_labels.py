"""The transition labelling rule on hand-made cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eowatch.errors import InputError
from eowatch.models import ever_changed, transition_labels

# Jan..Apr 2024: Jan 31 d (midpoint day 15.5), Feb 29 d (14.5), Mar 31 d, Apr 30 d.
MONTHS = [np.datetime64(f"2024-{m:02d}-01") for m in range(1, 6)]
BOUNDS = list(itertools.pairwise(MONTHS))


def day(text: str) -> int:
    return int((np.datetime64(text, "D") - np.datetime64("1970-01-01", "D")).astype(int))


def labels_of(cases: list[tuple[int, str, str | None]]) -> np.ndarray:
    """Labels ``(T-1, n)`` of pixels given as (type, start, end or None)."""
    ctype = np.array([[c[0] for c in cases]], np.uint8)
    start = np.array([[day(c[1]) if c[1] else 0 for c in cases]], np.int32)
    end = np.array([[day(c[2]) if c[2] else 0 for c in cases]], np.int32)
    return transition_labels(ctype, start, end, BOUNDS)[:, 0, :]


def test_permanent_change_shows_in_the_period_holding_most_of_the_month() -> None:
    got = labels_of(
        [
            (1, "2024-02-10", None),  # before Feb midpoint -> Feb, transition 1 (Jan->Feb)
            (1, "2024-02-15", None),  # day 14 of Feb <= 14.5 -> Feb
            (2, "2024-02-16", None),  # after Feb midpoint -> Mar, transition 2
            (2, "2024-01-20", None),  # after Jan midpoint -> Feb, transition 1
            (4, "2024-01-10", None),  # before Jan midpoint: already in period 0, unlabelled
            (4, "2023-06-01", None),  # before the series: unlabelled
            (1, "2024-04-20", None),  # after the last midpoint: unlabelled
            (1, "2024-07-01", None),  # after the series: unlabelled
            (0, "2024-02-10", None),  # no change type: unlabelled
            (1, "", None),  # no start: unlabelled
        ]
    )
    expected = np.zeros((3, 10), np.uint8)
    expected[0, 0], expected[0, 1], expected[1, 2], expected[0, 3] = 1, 1, 2, 2
    np.testing.assert_array_equal(got, expected)


def test_temporary_change_needs_a_third_of_a_period() -> None:
    got = labels_of(
        [
            (3, "2024-02-05", "2024-02-20"),  # 15 of 29 Feb days -> present in Feb
            (3, "2024-02-25", "2024-03-15"),  # 4 Feb days (< 29/3), 14 Mar days (>= 31/3) -> Mar
            (3, "2024-03-01", "2024-03-11"),  # 10 of 31 Mar days (< 10.33) -> never present
            (3, "2024-03-01", "2024-03-12"),  # 11 of 31 -> Mar
            (3, "2024-01-01", "2024-02-10"),  # present in Jan already -> unlabelled
        ]
    )
    expected = np.zeros((3, 5), np.uint8)
    expected[0, 0], expected[1, 1], expected[1, 3] = 3, 3, 3
    np.testing.assert_array_equal(got, expected)


def test_ever_changed_takes_the_first_labelled_transition() -> None:
    labels = np.zeros((3, 1, 3), np.uint8)
    labels[1, 0, 0], labels[2, 0, 0] = 2, 3
    labels[2, 0, 1] = 4
    np.testing.assert_array_equal(ever_changed(labels), [[2, 4, 0]])


def test_bad_periods_are_rejected() -> None:
    one = np.zeros((1, 1), np.uint8)
    with pytest.raises(InputError, match="at least 2"):
        transition_labels(one, one.astype(np.int32), one.astype(np.int32), BOUNDS[:1])
    with pytest.raises(InputError, match="ordered"):
        transition_labels(one, one.astype(np.int32), one.astype(np.int32), BOUNDS[::-1])
