"""Weather, clouds, cloud shadows and the Sen2Cor-like scene classification (SCL), pure numpy.

Per-date cloud cover follows a temporally correlated weather process rank-mapped onto a target
distribution (about a third of dates mostly cloudy, a few clear). Cloud opacity is thresholded fractal
noise; shadows are the thick-cloud opacity displaced away from the sun by cloud height / tan(elevation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from eowatch.archive.config import ArchiveConfig, epoch_day, rng_for, s2_dates
from eowatch.archive.noise import fractal

CLOUD = np.array([0.42, 0.42, 0.43, 0.47, 0.38, 0.27], dtype=np.float32)
CIRRUS = np.array([0.30, 0.29, 0.28, 0.27, 0.20, 0.14], dtype=np.float32)
SHADOW_DEPTH = np.array([0.55, 0.62, 0.66, 0.70, 0.70, 0.70], dtype=np.float32)


@dataclass(frozen=True)
class Weather:
    """Per-day weather over the period (keys: epoch days)."""

    cover: dict[int, float]  # cloud-cover target (0..1) for every day
    moisture: dict[int, float]  # topsoil moisture index (0 dry .. 1 saturated)


def make_weather(config: ArchiveConfig) -> Weather:
    """Daily cloudiness and soil moisture; S2 dates get covers from a realistic target distribution."""
    rng = rng_for(config.seed, "weather")
    s, e = epoch_day(config.start) - 30, epoch_day(config.end) + 1
    days = np.arange(s, e)
    z = np.zeros(days.size)
    for i in range(1, days.size):
        z[i] = 0.75 * z[i - 1] + math.sqrt(1 - 0.75**2) * rng.standard_normal()
    # Daily cover: smooth CDF-like mapping; rain when very cloudy drives soil moisture.
    daily = 1.0 / (1.0 + np.exp(-2.2 * z))
    wet = np.zeros(days.size)
    for i in range(1, days.size):
        wet[i] = 0.85 * wet[i - 1] + max(0.0, z[i] - 0.6)
    moisture = np.clip(wet / 2.5, 0.0, 1.0)
    s2 = np.array([epoch_day(d) for d in s2_dates(config)]) - s
    n = s2.size
    q = (np.arange(n) + 0.5) / n
    target = np.select(
        [q < 0.12, q < 0.3, q < 0.66],
        [0.0, 0.02 + 0.9 * (q - 0.12), 0.2 + 1.2 * (q - 0.3)],
        0.72 + 0.8 * (q - 0.66),
    )
    target = np.clip(target + rng.uniform(-0.03, 0.03, n) * (target > 0), 0.0, 1.0)
    ranks = np.argsort(np.argsort(z[s2]))
    daily[s2] = target[ranks]
    return Weather(
        {int(d): float(c) for d, c in zip(days, daily, strict=True)},
        {int(d): float(m) for d, m in zip(days, moisture, strict=True)},
    )


@dataclass
class CloudLayers:
    """Per-pixel atmosphere on the world grid (float32, H x W)."""

    opacity: np.ndarray  # thick cloud opacity 0..1
    brightness: np.ndarray  # cloud-top brightness factor
    cirrus: np.ndarray  # thin cirrus opacity 0..0.3
    shadow: np.ndarray  # cloud-shadow strength 0..1


def cloud_layers(
    rng: np.random.Generator, shape: tuple[int, int], cover: float, sun_azimuth: float, sun_elevation: float
) -> CloudLayers:
    """Clouds for one date. Azimuth/elevation in degrees; 10 m pixels; north up."""
    height_m = rng.uniform(800.0, 2200.0)
    length = height_m / math.tan(math.radians(sun_elevation)) / 10.0
    az = math.radians(sun_azimuth)
    dcol, drow = -math.sin(az) * length, math.cos(az) * length  # shadow offset in pixels
    pad = math.ceil(max(abs(dcol), abs(drow))) + 2
    field = fractal(rng, (shape[0] + 2 * pad, shape[1] + 2 * pad), beta=3.3, scale=4)
    inner = field[pad:-pad, pad:-pad]
    zeros = np.zeros(shape, dtype=np.float32)
    if cover <= 0.005:
        opacity_pad = np.zeros_like(field)
    else:
        thr = np.quantile(inner, 1.0 - min(cover, 0.999)) if cover < 0.995 else inner.min() - 2.0
        opacity_pad = np.clip((field - thr) / 0.4, 0.0, 1.0) ** 0.8
    opacity = opacity_pad[pad:-pad, pad:-pad]
    brightness = np.clip(0.95 + 0.12 * (inner - inner.mean()), 0.8, 1.35).astype(np.float32)
    r0, c0 = pad - round(drow), pad - round(dcol)
    source = opacity_pad[r0 : r0 + shape[0], c0 : c0 + shape[1]]
    shadow = np.clip((source - 0.25) / 0.5, 0.0, 1.0) * (1.0 - opacity)
    cirrus = zeros
    if rng.random() < 0.35:
        c = fractal(rng, shape, beta=3.0, scale=4, anisotropy=(5.0, rng.uniform(0, math.pi)))
        cirrus = np.clip((c - rng.uniform(0.0, 1.0)) / 3.0, 0.0, 0.3).astype(np.float32)
    return CloudLayers(opacity.astype(np.float32), brightness, cirrus, shadow.astype(np.float32))


def apply_atmosphere(refl: np.ndarray, layers: CloudLayers) -> np.ndarray:
    """Top-of-canopy reflectance seen through clouds (in place on ``refl``, float32 (6, H, W))."""
    a, c, s = layers.opacity, layers.cirrus, layers.shadow
    for b in range(refl.shape[0]):
        band = refl[b]
        band *= 1.0 - SHADOW_DEPTH[b] * s
        band *= 1.0 - a
        band += a * layers.brightness * CLOUD[b]
        band *= 1.0 - 0.3 * c
        band += c * CIRRUS[b]
    return refl


def _mean2(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return 0.25 * (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2])


def scene_classification(
    rng: np.random.Generator, layers: CloudLayers, surface: np.ndarray, water: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """Sen2Cor-like SCL at 20 m (uint8, H/2 x W/2) from the true layers.

    Thick cores are 9, medium opacity 8; thin cloud edges are flagged only partly (like Sen2Cor's misses),
    cirrus 10, shadows 3, and the surface 4 vegetation / 5 not vegetated / 6 water / 2 dark /
    7 unclassified. ``surface`` is the cloud-free reflectance (6, H, W); ``valid`` marks swath coverage.
    """
    a, c, s = _mean2(layers.opacity), _mean2(layers.cirrus), _mean2(layers.shadow)
    red, nir, swir = _mean2(surface[2]), _mean2(surface[3]), _mean2(surface[4])
    ndvi = (nir - red) / (nir + red + 1e-6)
    u = rng.random(a.shape, dtype=np.float32)
    scl = np.where(ndvi > 0.4, 4, 5).astype(np.uint8)
    scl[(nir + swir < 0.12) & (ndvi <= 0.4)] = 2
    scl[_mean2(water.astype(np.float32)) >= 0.5] = 6
    scl[u < 0.012] = 7
    scl[(a > 0.04) & (a < 0.12) & (u > 0.6)] = 7
    scl[(s >= 0.3) & (u < 0.9)] = 3
    scl[(s >= 0.3) & (u >= 0.9)] = 2
    scl[c >= 0.1] = 10
    edge = (a >= 0.12) & (a < 0.35)
    scl[edge & (u < 0.8)] = 8
    scl[(a >= 0.35) & (a < 0.65)] = 8
    scl[a >= 0.65] = 9
    scl[_mean2(valid.astype(np.float32)) < 1.0] = 0  # 20 m pixels need all four 10 m pixels
    return scl


def haze_blur(rng: np.random.Generator, refl: np.ndarray) -> np.ndarray:
    """Per-date gain/haze, a mild PSF (Gaussian, sigma 0.6 px) and sensor noise (in place)."""
    gain = rng.normal(1.0, 0.015, 6).astype(np.float32)
    haze = rng.uniform(0.0, 1.0) * np.array([0.02, 0.012, 0.006, 0.002, 0.0, 0.0], np.float32)
    for b in range(refl.shape[0]):
        band = ndimage.gaussian_filter(refl[b], 0.6, truncate=2.5)
        band *= gain[b]
        band += haze[b]
        band += rng.standard_normal(band.shape, dtype=np.float32) * np.float32(0.003)
        refl[b] = band
    return refl
