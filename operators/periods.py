"""Compositing periods: calendar months clipped to a date range, and assignment of acquisitions to them.

A period is a half-open interval ``[start, stop)`` of ``numpy.datetime64`` values in days (UTC dates);
an acquisition at any time of day on ``stop - 1 day`` still belongs to the period.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import numpy as np

from eowatch.errors import InputError

Period = tuple[np.datetime64, np.datetime64]
"""Half-open ``[start, stop)`` interval, both ``datetime64[D]``."""


def month_periods(start: date, end: date) -> list[Period]:
    """Calendar months covering ``start..end``, the first and last clipped to the range.

    Args:
        start: First day of the range (inclusive). A ``datetime`` is truncated to its date.
        end: Last day of the range (inclusive, as in a user's "2023-04-01/2023-04-30"). A ``datetime`` is
            truncated to its date.

    Returns:
        Consecutive, non-overlapping ``(start, stop)`` pairs of ``datetime64[D]``; the first starts at
        ``start`` and the last stops at ``end + 1 day``.

    Raises:
        InputError: ``end`` is before ``start`` or either is not a date.
    """
    first, last = _day(start, "start"), _day(end, "end")
    if last < first:
        raise InputError(f"end date {last} is before start date {first}; swap them")
    stop_all = last + np.timedelta64(1, "D")
    periods: list[Period] = []
    cursor = first
    while cursor < stop_all:
        next_month = (cursor.astype("datetime64[M]") + 1).astype("datetime64[D]")
        stop = min(next_month, stop_all)
        periods.append((cursor, stop))
        cursor = stop
    return periods


def assign_periods(times: np.ndarray | Sequence[np.datetime64], periods: Sequence[Period]) -> np.ndarray:
    """Index of the period that contains each acquisition time.

    Args:
        times: Acquisition times, shape ``(time,)``, any ``datetime64`` unit (UTC); NaT is allowed.
        periods: Sorted, non-overlapping half-open ``(start, stop)`` intervals, e.g. from ``month_periods``.

    Returns:
        int32 array of shape ``(time,)``: the period index, or -1 where a time falls in no period.

    Raises:
        InputError: ``times`` is not datetime64, or the periods are empty, reversed, unsorted or overlap.
    """
    values = np.asarray(times)
    if values.dtype.kind != "M":
        raise InputError(f"times must be numpy datetime64 values, got dtype {values.dtype}")
    _check_periods(periods)
    index = np.full(values.shape, -1, dtype=np.int32)
    for i, (start, stop) in enumerate(periods):
        index[(values >= start) & (values < stop)] = i
    return index


def period_starts(periods: Sequence[Period]) -> np.ndarray:
    """Start dates of the periods as a ``datetime64[D]`` array, shape ``(period,)``."""
    return np.array([start for start, _ in periods], dtype="datetime64[D]")


def _check_periods(periods: Sequence[Period]) -> None:
    if len(periods) == 0:
        raise InputError("periods must not be empty")
    previous_stop = None
    for start, stop in periods:
        if not np.datetime64(start) < np.datetime64(stop):
            raise InputError(f"period start {start} must be before its stop {stop}")
        if previous_stop is not None and np.datetime64(start) < previous_stop:
            raise InputError(f"periods must be sorted and non-overlapping; {start} is before {previous_stop}")
        previous_stop = np.datetime64(stop)


def _day(value: date, name: str) -> np.datetime64:
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise InputError(f"{name} must be a datetime.date, got {type(value).__name__}")
    return np.datetime64(value, "D")
