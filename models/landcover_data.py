"""Training data of the S2 land-cover model: labelled cubes, class-balanced chips and augmentations.

A labelled cube is an analysis cube's per-period S2 composites with the archive's planted land cover
(``models.stable_landcover.read_landcover``: pixels whose land cover is stable over the season and carry
no planted change) mapped onto the model's classes by the card's ``eowatch_landcover`` table. A chip is
one period of one cube with the ``periods - 1`` periods before it (``landcover.period_history``: NaN
before the cube's first period): ``(periods, C, size, size)`` bands and ``(size, size)`` labels (-1 = not
scored).

Augmentations, honest for geometry: rot90 and flips applied identically to bands and labels (nothing
that moves pixels relative to each other). Radiometric jitter so that imagery processed differently
(other atmospheric correction, TOA reflectance, other sensors' calibration, sun and terrain) is not
out of distribution: a per-chip gain (log-uniform) and a per-band gain, a smooth illumination field
(terrain shading), an additive haze/path-radiance offset that falls with
wavelength (blue most, SWIR least; top-of-atmosphere reflectance sits that much above surface
reflectance), per-pixel multiplicative and additive noise, and rectangles without a clear observation
(NaN, as clouds leave in a monthly composite).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from eowatch.errors import InputError

from .dataset import open_cube

__all__ = ["AugmentConfig", "ChipSampler", "LabelledCube", "augment_chip", "load_labelled_cube"]

#: Relative haze (path radiance) per S2 band, blue = 1: roughly Rayleigh's wavelength^-4 flattened by
#: aerosols (blue 490 nm, green 560, red 665, NIR 842, SWIR 1610 / 2190 nm).
HAZE_PROFILE: dict[str, float] = {
    "blue": 1.0,
    "green": 0.7,
    "red": 0.45,
    "nir": 0.2,
    "swir16": 0.05,
    "swir22": 0.02,
}


@dataclass(frozen=True)
class LabelledCube:
    """One analysis cube held in memory with its labels."""

    name: str
    """Where it came from (for the card's training-data text)."""
    bands: np.ndarray
    """float32 ``(T, C, H, W)`` surface reflectance per period, NaN = no clear observation."""
    labels: np.ndarray
    """int64 ``(H, W)`` class index (-1 = not scored: no stable land cover or planted change)."""
    months: np.ndarray
    """int64 ``(T,)`` month of the year of each period."""


@dataclass(frozen=True)
class AugmentConfig:
    """Radiometric jitter of a chip (geometry: rot90 and flips are always drawn)."""

    gain: float = 0.5
    """Per-chip gain drawn log-uniformly from ``[1 / (1 + gain), 1 + gain]``: sun elevation, season,
    slope and calibration change the brightness of real scenes far more than the archive's flat terrain."""
    band_gain: float = 0.08
    """Per-band gain drawn from ``1 ± band_gain``."""
    haze_p: float = 0.5
    """Probability of an additive haze offset."""
    haze_max: float = 0.08
    """Largest haze offset in the blue band (reflectance); other bands scaled by ``HAZE_PROFILE``."""
    noise: float = 0.04
    """Per-pixel multiplicative noise (relative standard deviation)."""
    noise_abs: float = 0.004
    """Per-pixel additive noise (reflectance standard deviation)."""
    hole_p: float = 0.3
    """Probability of a rectangle without clear observation (NaN in every band)."""
    shade_p: float = 0.5
    """Probability of a smooth illumination field (terrain shading the archive's flat land lacks)."""
    shade: float = 0.3
    """Largest log-gain of the illumination field: a bilinear surface through a 3 x 3 grid of log-gains
    drawn from ``± shade`` over the chip (all bands alike, as slopes facing or away from the sun)."""
    history_drop: float = 0.0
    """Multi-period chips: probability that each period before the mapped one is replaced by no data
    (a cloudy month, a series that starts later), so the model does not lean on one phenology calendar
    and keeps mapping well from the mapped period alone. One-period chips draw nothing for it."""

    def __post_init__(self) -> None:
        values = (self.gain, self.band_gain, self.haze_max, self.noise, self.noise_abs, self.shade)
        probabilities = (self.haze_p, self.hole_p, self.shade_p, self.history_drop)
        if min(values) < 0 or not all(0 <= p <= 1 for p in probabilities):
            raise InputError("augmentation amplitudes must be >= 0 and probabilities in [0, 1]")


def load_labelled_cube(
    cube_path: Path, truth_dir: Path, bands: Sequence[str], lut: np.ndarray
) -> LabelledCube:
    """Read a cube's bands and label its pixels from the archive truth through ``lut``.

    Args:
        cube_path: analysis cube (``cube.zarr``) of a synthetic archive.
        truth_dir: the archive's ``truth/`` folder (``landcover_start.tif`` ...).
        bands: cube variables to stack, in order.
        lut: int64 ``(256,)`` archive land-cover code -> class index (-1 = unlabelled).
    """
    from .stable_landcover import read_landcover

    with open_cube(cube_path) as cube:
        cover = read_landcover(truth_dir, cube["x"].values, cube["y"].values)
        data = np.stack([cube[b].values.astype(np.float32) for b in bands], axis=1)
        months = cube["time"].values.astype("datetime64[M]").astype(np.int64) % 12 + 1
    name = f"{Path(cube_path).parent.name}/{Path(cube_path).name}"
    return LabelledCube(name, data, lut[cover], months.astype(np.int64))


#: What a training chip is centred on (``ChipSampler``): a pixel of a class drawn uniformly, or any pixel.
ChipCentre = Literal["class", "pixel"]
#: The values of ``ChipCentre``.
CHIP_CENTRES: tuple[str, ...] = get_args(ChipCentre)


class ChipSampler:
    """Chips from labelled cubes, within a share of each cube's columns.

    Each chip is centred (as far as the cube allows) on a random labelled pixel, in a random cube and
    period: with ``centre="class"`` (class-balanced) of a class drawn uniformly among the classes
    present, with ``centre="pixel"`` of any class (classes as frequent as in the cube's columns).
    Training and held-out column blocks never share a chip. The labelled pixels of each class are
    indexed once.
    """

    def __init__(
        self,
        cubes: Sequence[LabelledCube],
        size: int,
        n_classes: int,
        columns: tuple[float, float] = (0.0, 1.0),
        periods: int = 1,
        centre: ChipCentre = "class",
    ) -> None:
        if periods < 1:
            raise InputError(f"periods must be >= 1, got {periods}")
        if centre not in CHIP_CENTRES:
            raise InputError(f"centre must be 'class' or 'pixel', got {centre!r}")
        self.cubes, self.size, self.periods, self.centre = list(cubes), size, periods, centre
        self._pools: list[tuple[int, int, int, list[tuple[np.ndarray, np.ndarray]]]] = []
        for i, cube in enumerate(self.cubes):
            _, _, h, w = cube.bands.shape
            c0, c1 = int(columns[0] * w), int(columns[1] * w)
            if c1 - c0 < size or h < size:
                raise InputError(f"cube {cube.name} columns {c0}:{c1} are smaller than a {size} px chip")
            area = cube.labels[:, c0:c1]
            pools = [np.nonzero(area == c) for c in range(n_classes)]
            present = [(r, c + c0) for r, c in pools if len(r)]
            if present:
                self._pools.append((i, c0, c1, present))
        if not self._pools:
            raise InputError("no labelled pixels to sample chips from")

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` chips float32 ``(n, periods, C, size, size)`` (the drawn period last) and labels int64
        ``(n, size, size)``."""
        from .landcover import period_history

        chips, labels = [], []
        size = self.size
        for _ in range(n):
            i, c0, c1, pools = self._pools[int(rng.integers(len(self._pools)))]
            cube = self.cubes[i]
            t, _, h, _ = cube.bands.shape
            if self.centre == "class":
                rows, cols = pools[int(rng.integers(len(pools)))]
            else:
                sizes = np.array([len(r) for r, _ in pools], dtype=np.float64)
                rows, cols = pools[int(rng.choice(len(pools), p=sizes / sizes.sum()))]
            pick = int(rng.integers(len(rows)))
            y = int(np.clip(rows[pick] - size // 2, 0, h - size))
            x = int(np.clip(cols[pick] - size // 2, c0, c1 - size))
            area = cube.bands[..., y : y + size, x : x + size]
            chips.append(period_history(area, int(rng.integers(t)), self.periods))
            label = cube.labels[y : y + size, x : x + size]
            labels.append(label)
        return np.stack(chips), np.stack(labels)


def _shading(shape: tuple[int, ...], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """float32 ``(h, w)`` smooth multiplicative field: exp of a bilinear surface through 3 x 3 log-gains."""
    from scipy import ndimage

    coarse = rng.uniform(-amplitude, amplitude, (3, 3))
    h, w = shape
    field = ndimage.zoom(coarse, ((h - 1) / 2 + 1e-9, (w - 1) / 2 + 1e-9), order=1, grid_mode=False)
    return np.exp(field[:h, :w]).astype(np.float32)


def augment_chip(
    chip: np.ndarray, label: np.ndarray, bands: Sequence[str], config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A randomly rotated, flipped and radiometrically jittered copy of one chip (see module docstring).

    Args:
        chip: float32 ``(C, s, s)`` reflectances in ``bands`` order, NaN = no data, or ``(P, C, s, s)``:
            periods of one place (geometry, gains, shading and haze alike; noise and the no-data
            rectangle drawn per period, as clouds differ month to month).
        label: int64 ``(s, s)``.
    """
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    x, y = np.rot90(chip, k, axes=(-2, -1)), np.rot90(label, k)
    if flip:
        x, y = x[..., ::-1], y[..., ::-1]
    x = np.array(x, dtype=np.float32)
    gain = np.exp(rng.uniform(-np.log1p(config.gain), np.log1p(config.gain)))
    x *= np.float32(gain) * rng.uniform(1 - config.band_gain, 1 + config.band_gain, (len(bands), 1, 1))
    if rng.random() < config.shade_p:
        x *= _shading(x.shape[-2:], config.shade, rng)
    if rng.random() < config.haze_p:
        haze = rng.uniform(0.0, config.haze_max)
        x += np.array([haze * HAZE_PROFILE.get(b, 0.0) for b in bands], np.float32)[:, None, None]
    x *= 1 + rng.normal(0.0, config.noise, x.shape).astype(np.float32)
    x += rng.normal(0.0, config.noise_abs, x.shape).astype(np.float32)
    periods = x.reshape(-1, *x.shape[-3:])  # one (C, s, s) view per period, the mapped one last
    for period in periods[:-1]:
        if config.history_drop and rng.random() < config.history_drop:  # no draw when off
            period[...] = np.nan
    for period in periods:
        if rng.random() < config.hole_p:
            s = period.shape[-1]
            hh, ww = (int(v) for v in rng.integers(max(s // 8, 1), max(s // 2, 2), 2))
            y0, x0 = int(rng.integers(0, s - hh + 1)), int(rng.integers(0, s - ww + 1))
            period[:, y0 : y0 + hh, x0 : x0 + ww] = np.nan
    return x.astype(np.float32), np.ascontiguousarray(y)
