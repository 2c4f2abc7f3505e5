"""Tiling arithmetic checked against numpy oracles with Hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from eowatch.errors import InputError
from eowatch.operators import TileWindow, apply_tiled, chunk_windows, pad_reflect, with_halo

sizes = st.integers(min_value=1, max_value=40)
chunks = st.integers(min_value=1, max_value=17)
halos = st.integers(min_value=0, max_value=6)


def box3(array: np.ndarray) -> np.ndarray:
    """3x3 box sum over the last two axes, edge-replicated border; fixed summation order per pixel."""
    widths = [(0, 0)] * (array.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(array, widths, mode="edge")
    ny, nx = array.shape[-2:]
    return sum(padded[..., dy : dy + ny, dx : dx + nx] for dy in range(3) for dx in range(3))


@settings(max_examples=150, deadline=None)
@given(h=sizes, w=sizes, ch=chunks, cw=chunks)
def test_windows_partition_the_grid_row_major(h: int, w: int, ch: int, cw: int) -> None:
    windows = chunk_windows((h, w), (ch, cw))
    cover = np.zeros((h, w), dtype=int)
    for window in windows:
        assert window.height <= ch and window.width <= cw
        cover[window.slices] += 1
    assert (cover == 1).all()
    assert len(windows) == -(-h // ch) * -(-w // cw)
    assert [(wi.row_off, wi.col_off) for wi in windows] == sorted((wi.row_off, wi.col_off) for wi in windows)


@settings(max_examples=150, deadline=None)
@given(h=sizes, w=sizes, ch=chunks, cw=chunks, halo=halos)
def test_halo_crop_recovers_the_write_window(h: int, w: int, ch: int, cw: int, halo: int) -> None:
    grid = np.arange(h * w).reshape(h, w)
    for window in chunk_windows((h, w), (ch, cw)):
        read, crop = with_halo(window, halo, (h, w))
        assert read.row_off == max(0, window.row_off - halo) and read.col_off == max(0, window.col_off - halo)
        assert read.row_stop == min(h, window.row_stop + halo) and read.col_stop == min(
            w, window.col_stop + halo
        )
        np.testing.assert_array_equal(grid[read.slices][crop], grid[window.slices])


@settings(max_examples=100, deadline=None)
@given(h=sizes, w=sizes, ch=chunks, cw=chunks, halo=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_apply_tiled_box_filter_equals_whole_image(
    h: int, w: int, ch: int, cw: int, halo: int, seed: int
) -> None:
    image = np.random.default_rng(seed).random((2, h, w), dtype=np.float32)
    tiled = apply_tiled(box3, image, (ch, cw), halo)
    assert tiled.dtype == np.float32
    np.testing.assert_array_equal(tiled, box3(image))


def test_halo_too_small_shows_seams() -> None:
    image = np.random.default_rng(0).random((12, 12), dtype=np.float32)
    assert not np.array_equal(apply_tiled(box3, image, (4, 4), 0), box3(image))


def test_apply_tiled_median_filter_reflect_border() -> None:
    image = np.random.default_rng(1).integers(0, 255, (3, 23, 31), dtype=np.uint8)

    def median5(a: np.ndarray) -> np.ndarray:
        return ndimage.median_filter(a, size=(1, 5, 5), mode="reflect")

    np.testing.assert_array_equal(apply_tiled(median5, image, (8, 7), 2), median5(image))


def test_pad_reflect_last_two_axes() -> None:
    a = np.arange(6).reshape(1, 2, 3)
    padded = pad_reflect(a, 1)
    assert padded.shape == (1, 4, 5)
    np.testing.assert_array_equal(padded[0, 1], [1, 0, 1, 2, 1])


@pytest.mark.parametrize(
    "make",
    [
        lambda: TileWindow(-1, 0, 1, 1),
        lambda: TileWindow(0, 0, 0, 1),
        lambda: chunk_windows((4, 4), (0, 2)),
        lambda: with_halo(TileWindow(0, 0, 5, 1), 1, (4, 4)),
        lambda: with_halo(TileWindow(0, 0, 1, 1), -1, (4, 4)),
        lambda: apply_tiled(lambda a: a[..., :1, :], np.zeros((4, 4)), (2, 2), 1),
    ],
)
def test_invalid_tiling_input_raises(make) -> None:
    with pytest.raises(InputError):
        make()
