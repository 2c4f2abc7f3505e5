"""Inference: input checks, the preprocessing shared with training, and tiled prediction.

Preprocessing (identical in training, see ``preprocess``): each band is normalised with the card's
``(x - mean) / std``, NaN (no clear observation) becomes 0 after normalisation, i.e. the band's mean, and,
when ``card.validity_channel`` is set, one extra channel per date holds the fraction of finite bands of
each pixel (1 = all bands observed, 0 = none), so the network can tell "no data" from "average data".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from eowatch.errors import InputError, ModelError

from .card import ModelCard
from .weights import LoadedModel

__all__ = ["check_inputs", "normalize_bands", "predict_change", "predict_change_batch", "preprocess"]


def check_inputs(card: ModelCard, available_bands: Sequence[str], resolution_m: float) -> None:
    """Raise ``ModelError`` naming what the cube lacks for the model (bands, resolution)."""
    missing = [b for b in card.bands if b not in set(available_bands)]
    if missing:
        raise ModelError(
            f"model {card.name!r} needs bands {', '.join(missing)} that the cube lacks "
            f"(cube has: {', '.join(available_bands) or 'none'})"
        )
    if abs(float(resolution_m) - card.resolution_m) > 1e-6 * card.resolution_m:
        raise ModelError(
            f"model {card.name!r} was trained at {card.resolution_m:g} m but the cube is at "
            f"{float(resolution_m):g} m; resample the cube to {card.resolution_m:g} m"
        )


def normalize_bands(x: np.ndarray, mean: np.ndarray, std: np.ndarray, validity: bool) -> np.ndarray:
    """``(x - mean) / std`` per band of ``(..., C, H, W)``, NaN -> 0, plus the optional validity channel.

    Returns float32 ``(..., C + validity, H, W)`` without NaN.
    """
    mean = np.asarray(mean, dtype=np.float32)[:, None, None]
    std = np.asarray(std, dtype=np.float32)[:, None, None]
    finite = np.isfinite(x)
    z = np.where(finite, (x.astype(np.float32, copy=False) - mean) / std, np.float32(0.0))
    if not validity:
        return z.astype(np.float32, copy=False)
    valid = finite.mean(axis=-3, keepdims=True, dtype=np.float32)
    return np.concatenate([z, valid], axis=-3).astype(np.float32, copy=False)


def preprocess(card: ModelCard, x: np.ndarray) -> np.ndarray:
    """Network input from raw ``(..., C, H, W)`` bands in ``card.bands`` order (see the module docstring)."""
    if x.ndim < 3 or x.shape[-3] != len(card.bands):
        raise InputError(f"expected (..., {len(card.bands)}, H, W) in band order {card.bands}, got {x.shape}")
    mean = [card.normalization[b][0] for b in card.bands]
    std = [card.normalization[b][1] for b in card.bands]
    return normalize_bands(x, np.array(mean), np.array(std), card.validity_channel)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.inference_mode()
def _probabilities(model: LoadedModel, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Softmax ``(N, n_classes, H, W)`` float32 for one batch of raw ``(N, C, H, W)`` windows."""
    device = _device(model.module)
    last = torch.channels_last
    b, a = (
        torch.from_numpy(preprocess(model.card, x)).to(device).contiguous(memory_format=last)
        for x in (before, after)
    )
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model.module(b, a)
    return logits.float().softmax(dim=1).cpu().numpy()


def _check_pair(model: LoadedModel, before: np.ndarray, after: np.ndarray, ndim: int) -> None:
    if before.shape != after.shape:
        raise InputError(f"before {before.shape} and after {after.shape} must have the same shape")
    if before.ndim != ndim or before.shape[-3] != len(model.card.bands):
        raise InputError(
            f"expected {'(N, ' if ndim == 4 else '('}{len(model.card.bands)}, H, W) arrays in "
            f"band order {model.card.bands}, got {before.shape}"
        )


def predict_change_batch(
    model: LoadedModel, before: np.ndarray, after: np.ndarray, batch_tiles: int = 4
) -> np.ndarray:
    """Softmax change probabilities for a batch of windows, ``batch_tiles`` windows per forward pass.

    Args:
        model: loaded model (CPU or CUDA; bf16 autocast on CUDA only).
        before: ``(N, C, H, W)`` float32 raw band values in ``model.card.bands`` order, NaN = no data.
        after: same shape as ``before``.
        batch_tiles: windows per forward pass (bounds memory).

    Returns:
        ``(N, n_classes, H, W)`` float32 probabilities. Pixels within ``receptive_field // 2`` of a
        window edge see zero padding: give windows a halo and crop it (``predict_change`` does).
    """
    _check_pair(model, before, after, ndim=4)
    if batch_tiles < 1:
        raise InputError(f"batch_tiles must be >= 1, got {batch_tiles}")
    out = [
        _probabilities(model, before[i : i + batch_tiles], after[i : i + batch_tiles])
        for i in range(0, before.shape[0], batch_tiles)
    ]
    n_classes = model.card.architecture_args["n_classes"]
    return np.concatenate(out, axis=0) if out else np.zeros((0, n_classes, *before.shape[2:]), np.float32)


def _windows(size: int, tile: int, halo: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(core_start, core_stop, window_start)`` along one axis; every window is ``tile + 2*halo``
    long (or the whole axis), shifted inward at the edges so all windows can share one batch."""
    span = min(size, tile + 2 * halo)
    for start in range(0, size, tile):
        stop = min(start + tile, size)
        yield start, stop, int(np.clip(start - halo, 0, size - span))


def predict_change(
    model: LoadedModel, before: np.ndarray, after: np.ndarray, batch_tiles: int = 4, *, tile: int = 256
) -> np.ndarray:
    """Softmax change probabilities of one scene pair, predicted tile by tile with an exact halo.

    Args:
        model: loaded model.
        before: ``(C, H, W)`` float32 raw band values of the earlier period in ``model.card.bands`` order.
        after: same for the later period.
        batch_tiles: tiles per forward pass.
        tile: core tile side (pixels); windows add a ``receptive_field // 2`` halo on every side.

    Returns:
        ``(n_classes, H, W)`` float32; equal (to float rounding) to predicting the scene in one piece.
    """
    _check_pair(model, before, after, ndim=3)
    if tile < 1:
        raise InputError(f"tile must be >= 1, got {tile}")
    halo = model.module.receptive_field // 2
    height, width = before.shape[1:]
    tiles = [(ys, xs) for ys in _windows(height, tile, halo) for xs in _windows(width, tile, halo)]
    span_y, span_x = min(height, tile + 2 * halo), min(width, tile + 2 * halo)
    out = np.empty((model.card.architecture_args["n_classes"], height, width), dtype=np.float32)
    for i in range(0, len(tiles), batch_tiles):
        group = tiles[i : i + batch_tiles]
        windows = [np.s_[:, ys[2] : ys[2] + span_y, xs[2] : xs[2] + span_x] for ys, xs in group]
        stack_b, stack_a = np.stack([before[w] for w in windows]), np.stack([after[w] for w in windows])
        probs = _probabilities(model, stack_b, stack_a)
        for p, ((y0, y1, wy), (x0, x1, wx)) in zip(probs, group, strict=True):
            out[:, y0:y1, x0:x1] = p[:, y0 - wy : y1 - wy, x0 - wx : x1 - wx]
    return out
