"""Procedural noise fields (pure numpy): fractal (power-law spectrum) Gaussian fields."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def fractal(
    rng: np.random.Generator,
    shape: tuple[int, int],
    beta: float = 3.0,
    scale: int = 1,
    anisotropy: tuple[float, float] = (1.0, 0.0),
) -> np.ndarray:
    """Zero-mean, unit-variance fractal noise of ``shape`` (float32).

    Args:
        rng: Random generator.
        shape: Output (rows, cols).
        beta: Spectral slope; power ~ f**-beta (2 rough, 4 smooth).
        scale: The field is synthesised on a grid ``scale`` times coarser and upsampled (bilinear),
            which is faster and suppresses pixel-scale roughness.
        anisotropy: (stretch, angle_rad); stretch > 1 elongates structures along ``angle``.
    """
    h = -(-shape[0] // scale) + 2
    w = -(-shape[1] // scale) + 2
    white = rng.standard_normal((h, w))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    stretch, angle = anisotropy
    if stretch != 1.0:
        c, s = np.cos(angle), np.sin(angle)
        u = fx * c + fy * s
        v = -fx * s + fy * c
        f2 = (u * stretch) ** 2 + v**2
    else:
        f2 = fx**2 + fy**2
    f2[0, 0] = np.inf
    amp = f2 ** (-beta / 4.0)
    field = np.fft.irfft2(np.fft.rfft2(white) * amp, s=(h, w))
    if scale > 1:
        field = ndimage.zoom(field, scale, order=1, prefilter=False)
    field = field[: shape[0], : shape[1]]
    field = (field - field.mean()) / (field.std() + 1e-12)
    return field.astype(np.float32)


def smooth_white(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise normalised to unit variance (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field / (field.std() + 1e-12)).astype(np.float32)
