"""Per-transition change labels: what a pair of monthly median composites can see.

Periods are half-open day ranges ``[start, end)``; transition ``t`` (1..T-1) compares period ``t-1``
("before") with period ``t`` ("after"), and label index ``t-1`` of the output holds transition ``t``.

Rule for a **permanent** change starting on day ``s`` (``change_end == 0``): a monthly median shows the new
state once more than half of the period's days carry it, so the change first shows in the period that
contains ``s`` when ``s`` is on or before that period's midpoint (``start + (end - start) / 2``), and in the
next period otherwise. Equivalently, it first shows in the first period ``p*`` with ``s <= midpoint(p*)``.
The transition into ``p*`` is labelled with the change type. Changes that show in period 0 (they start
on or before its midpoint, including any time before the series) or that would first show after the last
period are not labelled: no pair in the series sees them happen.

Rule for a **temporary** change ``[s, e)`` (``change_end > 0``, floods): it is *present* in a period when
it covers at least one third of the period's days. The transition into the first present period is
labelled. A change already present in period 0, or never present, is not labelled. Only the onset is a
labelled change; the return to normal afterwards is not.
"""

from __future__ import annotations

import numpy as np

from eowatch.errors import InputError

__all__ = ["ever_changed", "period_days", "period_middle_days", "transition_labels"]

_EPOCH = np.datetime64("1970-01-01", "D")


def period_days(period_bounds: list[tuple[np.datetime64, np.datetime64]]) -> np.ndarray:
    """``(T, 2)`` int64 array of period ``[start, end)`` as days since 1970-01-01."""
    if len(period_bounds) < 2:
        raise InputError(f"need at least 2 periods for a change transition, got {len(period_bounds)}")
    days = np.array(
        [
            [(np.datetime64(a, "D") - _EPOCH).astype(int), (np.datetime64(b, "D") - _EPOCH).astype(int)]
            for a, b in period_bounds
        ],
        dtype=np.int64,
    )
    if np.any(days[:, 1] <= days[:, 0]) or np.any(days[1:, 0] < days[:-1, 1]):
        raise InputError("periods must be non-empty, ordered and non-overlapping [start, end) ranges")
    return days


def period_middle_days(period_bounds: list[tuple[np.datetime64, np.datetime64]]) -> np.ndarray:
    """int64 ``(T,)`` middle day (days since 1970-01-01, rounded down) of each ``[start, end)`` period."""
    days = period_days(period_bounds)
    return (days[:, 0] + days[:, 1]) // 2


def transition_labels(
    change_type: np.ndarray,
    change_start: np.ndarray,
    change_end: np.ndarray,
    period_bounds: list[tuple[np.datetime64, np.datetime64]],
) -> np.ndarray:
    """Change type visible at each transition (see the module docstring for the rule).

    Args:
        change_type: ``(y, x)`` uint8 legend codes (0 = no change).
        change_start: ``(y, x)`` int32 first day of the change, days since 1970-01-01 (0 = none).
        change_end: ``(y, x)`` int32 end day (exclusive) of a temporary change, 0 for permanent ones.
        period_bounds: T ``(start, end)`` pairs, end exclusive (e.g. the first day of the next month).

    Returns:
        ``(T-1, y, x)`` uint8; entry ``t-1`` is the type that appears between period ``t-1`` and ``t``.
    """
    if not change_type.shape == change_start.shape == change_end.shape:
        raise InputError("change_type, change_start and change_end must have the same shape")
    days = period_days(period_bounds)
    first = np.full(change_type.shape, -1, dtype=np.int64)  # period where the change first shows
    changed = (change_type > 0) & (change_start > 0)
    permanent = changed & (change_end <= 0)
    temporary = changed & (change_end > 0)
    first[permanent] = _first_showing_period(change_start[permanent].astype(np.int64), days)
    first[temporary] = _first_present_period(
        change_start[temporary].astype(np.int64), change_end[temporary].astype(np.int64), days
    )
    n_periods = len(days)
    labels = np.zeros((n_periods - 1, *change_type.shape), dtype=np.uint8)
    for t in range(1, n_periods):
        hit = first == t
        labels[t - 1][hit] = change_type[hit]
    return labels


def _first_showing_period(start: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Index of the first period whose midpoint is on or after ``start`` (T when none)."""
    midpoints = days[:, 0] + (days[:, 1] - days[:, 0]) / 2.0
    return np.searchsorted(midpoints, start, side="left")


def _first_present_period(start: np.ndarray, end: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Index of the first period covered for >= 1/3 of its days by ``[start, end)`` (-1 when none)."""
    p_start, p_end = days[:, 0][:, None], days[:, 1][:, None]
    overlap = np.minimum(end[None, :], p_end) - np.maximum(start[None, :], p_start)
    present = 3 * overlap >= (p_end - p_start)  # integer form of overlap >= length / 3
    return np.where(present.any(axis=0), present.argmax(axis=0), -1)


def ever_changed(labels: np.ndarray) -> np.ndarray:
    """``(y, x)`` uint8 type of the first labelled transition of each pixel (0 if none)."""
    if labels.ndim != 3:
        raise InputError(f"labels must be (T-1, y, x), got shape {labels.shape}")
    first = np.argmax(labels > 0, axis=0)
    return np.take_along_axis(labels, first[None], axis=0)[0].astype(np.uint8)
