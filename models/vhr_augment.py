"""Augmentations of VHR training pairs that keep geometry honest.

Geometric changes (90-degree rotations, flips, zoom) are applied identically to both dates and the label;
radiometric ones (brightness, contrast, gamma, colour cast, saturation, haze, blur, noise) are drawn
independently per date, because real pairs differ in illumination, atmosphere, season and sensor
processing while the ground stays where it is. Images are float32 digital numbers 0-255, ``(C, h, w)``
per date, channels red, green, blue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Radiometry", "radiometric_jitter", "rotate_flip"]


@dataclass(frozen=True)
class Radiometry:
    """Ranges of the per-date radiometric jitter (uniform draws; multiplicative factors around 1)."""

    gain: tuple[float, float] = (0.7, 1.6)
    """Overall brightness factor (the archive's imagery is darker than most 8-bit aerial and satellite
    products: its mean DN is about 65, real mosaics often 100-130)."""
    colour: float = 0.08
    """Per-channel gain spread (+-), a colour cast (white balance, season)."""
    gamma: tuple[float, float] = (0.7, 1.33)
    """Exponent on reflectance-like values 0-1 (tone curve of the processing chain)."""
    contrast: tuple[float, float] = (0.75, 1.3)
    """Stretch of each channel about its chip mean."""
    saturation: tuple[float, float] = (0.7, 1.3)
    """Stretch of each pixel's colour about its grey value."""
    haze: tuple[float, float] = (0.0, 0.25)
    """Share of a bright, slightly blue airlight mixed in (when haze is drawn)."""
    haze_p: float = 0.3
    """Probability of haze."""
    blur: tuple[float, float] = (0.3, 1.2)
    """Gaussian blur sigma (px) (when blur is drawn)."""
    blur_p: float = 0.3
    """Probability of blur."""
    noise: float = 0.015
    """Largest standard deviation of additive noise (0-1 scale)."""


def radiometric_jitter(image: np.ndarray, rng: np.random.Generator, radiometry: Radiometry) -> np.ndarray:
    """One date's radiometric jitter: ``(3, h, w)`` float32 DN 0-255 in and out (clipped to 0-255)."""
    r = radiometry
    x = np.clip(image, 0.0, 255.0).astype(np.float32) / np.float32(255.0)
    x = x ** np.float32(rng.uniform(*r.gamma))
    gains = rng.uniform(*r.gain) * (1.0 + rng.uniform(-r.colour, r.colour, (x.shape[0], 1, 1)))
    x = x * gains.astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    x = mean + (x - mean) * np.float32(rng.uniform(*r.contrast))
    grey = x.mean(axis=0, keepdims=True)
    x = grey + (x - grey) * np.float32(rng.uniform(*r.saturation))
    if rng.random() < r.haze_p:
        h = np.float32(rng.uniform(*r.haze))
        airlight = np.float32(rng.uniform(0.6, 0.85)) + np.array([0.0, 0.02, 0.06], np.float32)[:, None, None]
        x = x * (1 - h) + h * airlight
    if rng.random() < r.blur_p:
        x = ndimage.gaussian_filter(x, (0, *(2 * [rng.uniform(*r.blur)])))
    x = x + rng.normal(0.0, rng.uniform(0.0, r.noise), x.shape).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.float32)


def rotate_flip(
    images: np.ndarray, label: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The same random 90-degree rotation and horizontal flip of ``images`` ``(..., h, w)`` and ``label``
    ``(h, w)``."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    images, label = np.rot90(images, k, axes=(-2, -1)), np.rot90(label, k, axes=(-2, -1))
    if flip:
        images, label = images[..., ::-1], label[..., ::-1]
    return np.ascontiguousarray(images), np.ascontiguousarray(label)
