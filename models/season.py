"""The season as network input: constant planes of a date's position in the year.

A model with ``season_channels=2`` reads, after each date's bands, the sine and cosine of its period's
middle day of year, so the same spectral move can mean different things in different months (bare soil
turning green is a crop rotation in July -> August, the season's own growth in April -> May).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["season_planes"]


def season_planes(days: Sequence[int] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float32 ``(T, 2, H, W)``: sine and cosine of ``2 pi doy / 365.25`` per date, constant over space.

    Args:
        days: ``T`` dates as days since 1970-01-01 (a period's middle day), or ``datetime64`` values.
        shape: ``(H, W)`` of the planes.
    """
    arr = np.asarray(days)
    if np.issubdtype(arr.dtype, np.datetime64):
        arr = (arr.astype("datetime64[D]") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    epoch = arr.astype("datetime64[D]")
    doy = (epoch - epoch.astype("datetime64[Y]")).astype(np.int64).astype(np.float64)  # 0 = 1 January
    angle = 2 * np.pi * doy / 365.25
    planes = np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)
    return np.broadcast_to(planes[:, :, None, None], (len(arr), 2, *shape)).copy()
