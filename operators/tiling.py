"""Grid and chunk arithmetic for seam-free tiled processing with halos.

A neighbourhood operation (filter, morphology, convolutional model) of radius ``r`` gives the same result
on a tile as on the whole image when the tile is read with a halo of at least ``r`` pixels and the halo is
cropped away afterwards. At the image border the read window is clipped instead of padded, so the operation
sees exactly the border it would see on the whole image. Windows are in pixel (row, column) units of the
array's last two axes (y, x); CRS plays no part here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from eowatch.errors import InputError

from ._arrays import ArrayT


@dataclass(frozen=True)
class TileWindow:
    """A rectangular window of a 2-D pixel grid, rows and columns counted from the top-left pixel."""

    row_off: int
    """First row (y index) of the window, >= 0."""
    col_off: int
    """First column (x index) of the window, >= 0."""
    height: int
    """Number of rows, >= 1."""
    width: int
    """Number of columns, >= 1."""

    def __post_init__(self) -> None:
        for name in ("row_off", "col_off", "height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InputError(f"TileWindow.{name} must be an integer, got {value!r}")
        if self.row_off < 0 or self.col_off < 0 or self.height < 1 or self.width < 1:
            raise InputError(f"TileWindow needs offsets >= 0 and sizes >= 1, got {self}")

    @property
    def row_stop(self) -> int:
        """One past the last row."""
        return self.row_off + self.height

    @property
    def col_stop(self) -> int:
        """One past the last column."""
        return self.col_off + self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices selecting the window from an array's last two axes."""
        return slice(self.row_off, self.row_stop), slice(self.col_off, self.col_stop)


def chunk_windows(shape: tuple[int, int], chunk: tuple[int, int]) -> list[TileWindow]:
    """Partition a grid into chunk windows, row-major; the last row and column of chunks may be smaller.

    Args:
        shape: Grid size ``(height, width)`` in pixels, both >= 1.
        chunk: Chunk size ``(height, width)`` in pixels, both >= 1.

    Returns:
        Windows that cover every pixel exactly once, ordered by row then column.

    Raises:
        InputError: a size is not a positive integer.
    """
    (height, width), (chunk_h, chunk_w) = _pair(shape, "shape"), _pair(chunk, "chunk")
    return [
        TileWindow(row, col, min(chunk_h, height - row), min(chunk_w, width - col))
        for row in range(0, height, chunk_h)
        for col in range(0, width, chunk_w)
    ]


def with_halo(
    window: TileWindow, halo: int, shape: tuple[int, int]
) -> tuple[TileWindow, tuple[slice, slice]]:
    """Grow a write window by a halo, clipped to the grid, and say how to crop the result back.

    Args:
        window: The write window, inside ``shape``.
        halo: Halo width in pixels on every side, >= 0.
        shape: Grid size ``(height, width)`` in pixels.

    Returns:
        ``(read_window, crop)``: the window to read, and the ``(rows, cols)`` slices that take the write
        window out of an array covering the read window.

    Raises:
        InputError: negative halo, or the window does not lie inside the grid.
    """
    height, width = _pair(shape, "shape")
    if isinstance(halo, bool) or not isinstance(halo, int | np.integer) or halo < 0:
        raise InputError(f"halo must be a non-negative integer, got {halo!r}")
    if window.row_stop > height or window.col_stop > width:
        raise InputError(f"window {window} does not fit in a grid of shape {(height, width)}")
    row0, col0 = max(0, window.row_off - halo), max(0, window.col_off - halo)
    row1, col1 = min(height, window.row_stop + halo), min(width, window.col_stop + halo)
    read = TileWindow(row0, col0, row1 - row0, col1 - col0)
    top, left = window.row_off - row0, window.col_off - col0
    return read, (slice(top, top + window.height), slice(left, left + window.width))


def pad_reflect(array: np.ndarray, pad: int) -> np.ndarray:
    """Pad the last two axes by ``pad`` pixels on every side, mirroring without repeating the edge.

    For operations that need a full neighbourhood at the image border (``numpy.pad`` mode "reflect").

    Args:
        array: Any dtype, shape ``(..., y, x)``.
        pad: Pixels added on each side, >= 0.

    Returns:
        Array of the same dtype, shape ``(..., y + 2 * pad, x + 2 * pad)``.

    Raises:
        InputError: fewer than two dimensions or a negative pad.
    """
    if np.ndim(array) < 2 or pad < 0:
        raise InputError(f"pad_reflect needs an array (..., y, x) and pad >= 0, got {np.shape(array)}, {pad}")
    widths = [(0, 0)] * (np.ndim(array) - 2) + [(pad, pad), (pad, pad)]
    return np.pad(array, widths, mode="reflect")


def apply_tiled(
    func: Callable[[np.ndarray], np.ndarray], array: ArrayT, chunk: tuple[int, int], halo: int
) -> ArrayT:
    """Apply a shape-preserving function tile by tile with halos and stitch the results.

    Equals ``func(array)`` exactly when ``func`` acts on each pixel through a neighbourhood of radius
    at most ``halo`` and treats the array border the same way on every input (e.g. a 3x3 filter with
    ``halo >= 1``).

    Args:
        func: Maps an array ``(..., h, w)`` to an array of the same shape (dtype may change).
        array: Input ``(..., y, x)``; a DataArray is processed through its values and returned with its
            coordinates and attributes.
        chunk: Tile size ``(height, width)`` in pixels.
        halo: Halo in pixels on each side of a tile.

    Returns:
        Array of ``array``'s shape and ``func``'s output dtype.

    Raises:
        InputError: fewer than two dimensions, bad chunk or halo, or ``func`` changed the tile shape.
    """
    data = array.values if isinstance(array, xr.DataArray) else np.asarray(array)
    if data.ndim < 2:
        raise InputError(f"apply_tiled needs an array (..., y, x), got shape {data.shape}")
    grid = data.shape[-2:]
    out: np.ndarray | None = None
    for window in chunk_windows(grid, chunk):
        read, crop = with_halo(window, halo, grid)
        tile = data[(..., *read.slices)]
        result = np.asarray(func(tile))
        if result.shape != tile.shape:
            raise InputError(f"func must preserve the tile shape {tile.shape}, returned {result.shape}")
        if out is None:
            out = np.empty(data.shape, dtype=result.dtype)
        out[(..., *window.slices)] = result[(..., *crop)]
    assert out is not None  # chunk_windows always yields at least one window
    return array.copy(data=out) if isinstance(array, xr.DataArray) else out


def _pair(value: tuple[int, int], name: str) -> tuple[int, int]:
    if len(value) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in value
    ):
        raise InputError(f"{name} must be two positive integers (height, width), got {value!r}")
    return int(value[0]), int(value[1])
