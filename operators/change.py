"""Unsupervised bi-temporal change operators: change vector analysis (CVA), SAR log-ratio, thresholds.

Before and after images must be on the same grid (same CRS, transform and shape) and radiometrically
comparable (same sensor processing, ideally both surface reflectance). Outputs are float32 except the
binary change mask.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr
from scipy.special import expit

from eowatch.errors import InputError

from ._arrays import ArrayT, apply_elementwise, is_xarray, require_real, require_same_shape, to_float32


def change_vector_magnitude(before: ArrayT, after: ArrayT) -> ArrayT:
    """Magnitude of the spectral change vector, ``sqrt(sum_b (after_b - before_b) ** 2)``.

    Args:
        before: Earlier image, shape ``(band, y, x)``, numeric dtype (integers are converted to float32
            before subtracting, so uint8/uint16 never wrap around). Units of the bands (reflectance or DN).
        after: Later image, same shape, grid and units.

    Returns:
        float32 of shape ``(y, x)`` in the band units; NaN where any band of either image is NaN.
        DataArrays in (first dim = band) give a DataArray with the ``(y, x)`` coordinates.

    Raises:
        InputError: non-numeric input, shapes differ, or fewer than 3 dimensions.
    """
    require_real(before, "before")
    require_real(after, "after")
    require_same_shape(before, after, "before and after")
    if np.ndim(before) != 3:
        raise InputError(f"before and after must have shape (band, y, x), got {np.shape(before)}")
    if is_xarray(before, after):
        band = before.dims[0] if isinstance(before, xr.DataArray) else after.dims[0]
        return xr.apply_ufunc(
            _magnitude_last_axis,
            before,
            after,
            input_core_dims=[[band], [band]],
            dask="parallelized",
            output_dtypes=[np.float32],
            keep_attrs=True,
        )
    return _magnitude_last_axis(np.moveaxis(np.asarray(before), 0, -1), np.moveaxis(np.asarray(after), 0, -1))


def standardize_bands(image: ArrayT) -> ArrayT:
    """Per-band z-score, ``(band - mean) / std`` over the valid pixels of each band.

    A simple relative radiometric normalisation to run on each date before ``change_vector_magnitude``
    when the two images differ in illumination, atmosphere or sensor gain (raw DNs of different dates):
    without it a global brightness shift dominates the change vector. It assumes change covers a minority
    of the scene.

    Args:
        image: Shape ``(band, y, x)``, numeric dtype, NaN where invalid.

    Returns:
        float32 of the same shape, dimensionless (standard deviations); a constant band becomes 0.

    Raises:
        InputError: non-numeric input or not 3-D.
    """
    require_real(image, "image")
    if np.ndim(image) != 3:
        raise InputError(f"image must have shape (band, y, x), got {np.shape(image)}")
    if isinstance(image, xr.DataArray):
        return image.copy(data=_standardize_np(image.values))
    return _standardize_np(np.asarray(image))


def log_ratio_db(before_db: ArrayT, after_db: ArrayT) -> ArrayT:
    """SAR log-ratio change in dB, ``after_db - before_db`` (= 10 log10 of the linear power ratio).

    Args:
        before_db: Earlier backscatter in dB, any shape, numeric dtype.
        after_db: Later backscatter in dB, same shape and grid.

    Returns:
        float32 dB difference, sign kept (negative = backscatter decrease, e.g. flooding or clearing);
        NaN where either input is NaN.

    Raises:
        InputError: non-numeric input or shapes differ.
    """
    require_real(before_db, "before_db")
    require_real(after_db, "after_db")
    require_same_shape(before_db, after_db, "before_db and after_db")
    return apply_elementwise(_difference, before_db, after_db, dtype=np.float32)


def threshold(magnitude: ArrayT, thr: float) -> tuple[ArrayT, ArrayT]:
    """Binary change mask and its validity mask.

    The mask is a plain 0/1 uint8 (so it sums and resamples like a fraction) and validity is returned
    separately instead of being folded in as a 255 code: pixels with NaN magnitude get 0 in the mask and
    False in ``valid``, and callers must apply ``valid`` before counting or scoring.

    Args:
        magnitude: Change magnitude (e.g. from ``change_vector_magnitude``), any shape, numeric dtype.
        thr: Threshold in the units of ``magnitude``; change is ``magnitude > thr``.

    Returns:
        ``(change, valid)``: change uint8 in {0, 1}, valid bool (True where magnitude is finite), both of
        the shape of ``magnitude``; DataArrays when the input is one.

    Raises:
        InputError: non-numeric input or a non-finite threshold.
    """
    require_real(magnitude, "magnitude")
    if not np.isfinite(thr):
        raise InputError(f"thr must be a finite number, got {thr}")

    def _mask(m: np.ndarray) -> np.ndarray:
        return (m > thr).astype(np.uint8)

    return apply_elementwise(_mask, magnitude, dtype=np.uint8), apply_elementwise(
        np.isfinite, magnitude, dtype=bool
    )


def otsu_threshold(values: Any, bins: int = 256) -> float:
    """Otsu's threshold of the finite values: maximises the between-class variance of a histogram.

    Args:
        values: Any shape, numeric dtype (NumPy or DataArray); NaN and inf are ignored.
        bins: Number of histogram bins between the minimum and maximum finite value.

    Returns:
        The threshold in the units of ``values``: the upper edge of the last bin of the lower class, so
        ``values > threshold`` is the upper class. A constant input returns that constant.

    Raises:
        InputError: no finite values, or ``bins < 2``.
    """
    require_real(values, "values")
    if bins < 2:
        raise InputError(f"bins must be at least 2, got {bins}")
    data = np.asarray(values)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise InputError("otsu_threshold needs at least one finite value")
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        return low
    hist, edges = np.histogram(finite, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    # Class weights and first moments for every split after bin k (k = 0..bins-2); float64 scalars only.
    w0 = np.cumsum(hist)[:-1].astype(np.float64)
    w1 = hist.sum() - w0
    m0 = np.cumsum(hist * centres)[:-1]
    m1 = (hist * centres).sum() - m0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - m1 / w1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1.0
    return float(edges[int(np.argmax(between)) + 1])


def cva_change_probability(magnitude: ArrayT, thr: float, softness: float) -> ArrayT:
    """Soft change probability, ``1 / (1 + exp(-(magnitude - thr) / softness))``.

    Gives unsupervised baselines (CVA, log-ratio) a probability output comparable with learned models:
    0.5 at the threshold, about 0.73 / 0.27 one ``softness`` above / below it.

    Args:
        magnitude: Change magnitude, any shape, numeric dtype.
        thr: Threshold in the units of ``magnitude`` (e.g. from ``otsu_threshold``).
        softness: Width of the transition in the units of ``magnitude``, > 0.

    Returns:
        float32 probability in [0, 1], same shape; NaN where ``magnitude`` is NaN.

    Raises:
        InputError: non-numeric input, non-finite ``thr``, or ``softness`` not positive and finite.
    """
    require_real(magnitude, "magnitude")
    if not np.isfinite(thr) or not (np.isfinite(softness) and softness > 0):
        raise InputError(f"thr must be finite and softness positive, got thr={thr}, softness={softness}")

    def _prob(m: np.ndarray) -> np.ndarray:
        z = (to_float32(m) - np.float32(thr)) / np.float32(softness)
        return expit(z).astype(np.float32, copy=False)

    return apply_elementwise(_prob, magnitude, dtype=np.float32)


def _magnitude_last_axis(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    diff = to_float32(after) - to_float32(before)
    return np.sqrt(np.sum(diff * diff, axis=-1, dtype=np.float32))


def _standardize_np(image: np.ndarray) -> np.ndarray:
    data = to_float32(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bands stay NaN
        mean = np.nanmean(data, axis=(1, 2), keepdims=True)
        std = np.nanstd(data, axis=(1, 2), keepdims=True)
    safe_std = np.where(std > 0, std, np.float32(1))
    return ((data - mean) / safe_std).astype(np.float32, copy=False)


def _difference(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return to_float32(after) - to_float32(before)
