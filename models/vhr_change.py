"""VHR RGB change detection: preprocessing, input checks and tiled inference of ``SiameseDiffUNet``.

The network (``models.siamese_diff``) is an FC-Siam-diff U-Net whose decoder sees only symmetric
combinations of the two dates' features, so ``forward(a, b) == forward(b, a)``: demolition and
construction are both change.

Inference runs on the shared tiled engine (``models.engine``) in **blend** mode: neighbouring windows
overlap by 32 px and are blended with cosine weights, and 96 px of halo (the network sees about 200 px)
is dropped at every inner window edge. Max pooling makes the network shift-variant by fractions of its
coarsest cell (16 px), so ``predict_vhr_pairs`` pads a whole image with no data to a multiple of 128 px:
with 1, 2, 4 or 8 windows per axis every window then starts on the pooling grid, and tiled inference
equals a one-window pass to float rounding (tolerance in ``tests/models/test_vhr_change.py``).

Inputs are raw digital numbers (uint8 0-255 as in the VHR cube and in 8-bit RGB imagery) in the card's
band order, normalised with the card's ``(mean, std)`` per band (``models.predict.preprocess``); NaN is
no data and becomes the band mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from eowatch.errors import InputError, ModelError

from .card import ModelCard
from .engine import EngineConfig, Precision, WindowPredictor, module_device, run_tiled
from .predict import check_inputs, preprocess, window_normalizer
from .siamese_diff import POOL, SiameseDiffUNet
from .weights import LoadedModel

__all__ = [
    "VHR_ARCHITECTURE",
    "VHR_ARCHITECTURE_ARGS",
    "VHR_BANDS",
    "VHR_SENSOR",
    "VHR_TASK",
    "ChunkTiling",
    "SiameseDiffUNet",
    "check_vhr_inputs",
    "chunk_tiling",
    "dn_to_float",
    "fill_nodata",
    "pad_to_grid",
    "predict_vhr_change",
    "predict_vhr_pairs",
    "vhr_engine_config",
]

#: Band order of the VHR change model: the RGB variables of the VHR cube (``pipelines.vhr.VHR_BANDS``).
VHR_BANDS: tuple[str, ...] = ("red", "green", "blue")
#: Collection the training imagery comes from (the synthetic archive's NAIP-like 1 m RGBN).
VHR_SENSOR = "vhr-rgbn"
#: Task of VHR pair change models: not the monitoring flow's S2/S1 ``change-detection``.
VHR_TASK = "vhr-change-detection"
VHR_ARCHITECTURE = "SiameseDiffUNet"
#: Constructor arguments a ``SiameseDiffUNet`` card gives (``architecture_args`` keys).
VHR_ARCHITECTURE_ARGS: frozenset[str] = frozenset({"in_channels", "n_classes", "width", "levels"})

_CPU_TILE, _CUDA_TILE = 1024, 1024
#: Context (px) read beyond the blending band at inner window edges, and the band's width (px). The
#: network's effective receptive field is about 200 px wide (its theoretical one 226 px): with 96 px of
#: halo the kept pixels see all of it. Both are multiples of the coarsest pooling cell (16 px).
_HALO, _OVERLAP = 96, 32
#: Whole images are padded to a multiple of this many coarsest cells: with 1, 2, 4 or 8 windows per
#: axis every core and window start then falls on the pooling grid.
_ALIGN_CELLS = 8


@dataclass(frozen=True)
class ChunkTiling:
    """How to read one chunk of a larger VHR image so that ``predict_vhr_pairs(..., region=...)`` over it
    equals ``predict_vhr_pairs`` over the whole image (used by ``pipelines.vhr_change``; all in px)."""

    halo: int
    """Context read around the chunk: the engine's halo plus its blending band, rounded up to ``cell``
    (a chunk edge then sees at least the context a blended whole-image window gives its pixels)."""
    cell: int
    """Coarsest pooling cell: the predicted region and the read window start on multiples of it."""
    align: int
    """The whole image is padded with no data (NaN) at the bottom and right to a multiple of this."""


def chunk_tiling(card: ModelCard) -> ChunkTiling:
    """The ``ChunkTiling`` of a ``SiameseDiffUNet`` card (its pooling depth gives the cell)."""
    cell = POOL ** int(card.architecture_args["levels"])
    return ChunkTiling(halo=math.ceil((_HALO + _OVERLAP) / cell) * cell, cell=cell, align=_ALIGN_CELLS * cell)


def vhr_engine_config(device: torch.device, precision: Precision = "auto") -> EngineConfig:
    """Blend-mode windows for ``SiameseDiffUNet``: 1024 px cores, one window per call on CPU and four on
    CUDA; 96 px of halo and a 32 px blending band between neighbouring windows."""
    if device.type == "cuda":
        return EngineConfig(_CUDA_TILE, _HALO, _OVERLAP, batch_windows=4, precision=precision)
    return EngineConfig(_CPU_TILE, _HALO, _OVERLAP, batch_windows=1, precision=precision)


def check_vhr_inputs(
    card: ModelCard, available_bands: tuple[str, ...] | list[str], resolution_m: float
) -> None:
    """Raise ``ModelError`` unless ``card`` is a VHR change model that fits imagery of these bands and
    pixel size (the names and the resolution are checked as ``models.predict.check_inputs`` does)."""
    if card.task != VHR_TASK:
        raise ModelError(f"model {card.name!r} is a {card.task} model, not a VHR change model")
    check_inputs(card, available_bands, resolution_m)


def dn_to_float(dn: np.ndarray, nodata: int | None = 0) -> np.ndarray:
    """Digital numbers ``(..., C, H, W)`` as float32, NaN where every band equals ``nodata``.

    The VHR cube stores 0 in all bands where a date was not acquired; a real 8-bit image has no nodata
    value (pass ``None``).
    """
    out = dn.astype(np.float32)
    if nodata is not None:
        missing = np.all(dn == nodata, axis=-3, keepdims=True)
        out = np.where(missing, np.float32(np.nan), out)
    return out


def _pair_predictor(
    module: SiameseDiffUNet,
    n_dates: int,
    pairs: Sequence[tuple[int, int]],
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> WindowPredictor:
    """Window predictor of date pairs: each date of a window encoded once, every pair decoded.

    Takes ``(B * T, C, h, w)`` (the T dates of each window, consecutive) and returns softmax
    probabilities ``(B * len(pairs), n_classes, h, w)``, pairs in the given order per window.
    ``normalize``: applied to the windows first when they are raw DNs (``predict.window_normalizer``).
    """

    def predict(windows: torch.Tensor) -> torch.Tensor:
        if normalize is not None:
            windows = normalize(windows)
        features = [module.encode(windows[i : i + 1]) for i in range(windows.shape[0])]
        probs = [
            module.decode(features[start + i], features[start + j]).float().softmax(dim=1)
            for start in range(0, len(features), n_dates)
            for i, j in pairs
        ]
        return probs[0] if len(probs) == 1 else torch.cat(probs)

    return predict


def predict_vhr_pairs(
    model: LoadedModel,
    images: np.ndarray,
    pairs: Sequence[tuple[int, int]] | None = None,
    *,
    region: tuple[slice, slice] | None = None,
    config: EngineConfig | None = None,
) -> np.ndarray:
    """Softmax change probabilities between VHR dates, with the tiled engine.

    Args:
        model: a loaded VHR change model (``card.task == "vhr-change-detection"``).
        images: ``(T, C, H, W)`` raw digital numbers (float; NaN = no data) in ``model.card.bands``
            order, T >= 2 dates on one grid of the card's resolution.
        pairs: ``(i, j)`` date indices to compare (default: consecutive dates ``(t, t + 1)``); each date
            is encoded once per window whatever the number of pairs it is in.
        region: ``(rows, cols)`` slices to predict; the pixels around it are context. Default: all.
        config: engine windows (default ``vhr_engine_config`` for the module's device).

    Returns:
        ``(len(pairs), n_classes, h, w)`` float32 over ``region``, one entry per pair.
    """
    if model.card.task != VHR_TASK:
        raise ModelError(f"model {model.card.name!r} is a {model.card.task} model, not a VHR change model")
    if images.ndim != 4 or images.shape[1] != len(model.card.bands) or images.shape[0] < 2:
        raise InputError(
            f"expected (T >= 2, {len(model.card.bands)}, H, W) images in band order {model.card.bands}, "
            f"got {images.shape}"
        )
    n_dates = images.shape[0]
    pairs = list(pairs) if pairs is not None else [(t, t + 1) for t in range(n_dates - 1)]
    if not pairs or any(not (0 <= i < n_dates and 0 <= j < n_dates) for i, j in pairs):
        raise InputError(f"pairs must index the {n_dates} dates, got {pairs}")
    device = module_device(model.module)
    config = config or vhr_engine_config(device)
    # On CUDA raw windows go to the GPU and are normalised there (see models.predict).
    on_gpu = device.type == "cuda"
    normalize = window_normalizer(model.card) if on_gpu else None
    predictor = _pair_predictor(model.module, n_dates, pairs, normalize)  # type: ignore[arg-type]

    def network_input(raw: np.ndarray) -> torch.Tensor:
        raw = fill_nodata(raw)  # no data (and the padding) continued from the nearest pixel with data
        if on_gpu:
            return torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
        return torch.from_numpy(preprocess(model.card, raw))

    if region is not None:  # a chunk read with its halo: the caller keeps it on the pooling grid
        return run_tiled(predictor, network_input(images), config, region=region, device=device)
    # A whole image is padded with no data to a multiple of 8 pooling cells (e.g. 2000 -> 2048 px), the
    # same for any tile, so that windows see the pooling cells of a whole-image pass; the padding is
    # then filled like any no data (fill_nodata).
    height, width = images.shape[-2:]
    cell = POOL ** int(model.card.architecture_args["levels"])
    x = network_input(pad_to_grid(images, _ALIGN_CELLS * cell))
    return run_tiled(predictor, x, config, device=device)[..., :height, :width]


def fill_nodata(images: np.ndarray) -> np.ndarray:
    """``images`` ``(T, C, H, W)`` with each date's no-data pixels (NaN in any band) given the values of
    that date's nearest pixel with data (a date without any data is left NaN).

    The network never saw no data in training: a band of NaN (the band mean after normalisation) beside
    real imagery, such as the padding of a whole image to the pooling grid or a cube's margin outside
    the VHR footprint, made it call change along the band (measured on the default-configuration
    archives, consecutive pairs: 8 000-14 000 false-alarm pixels within 150 px of the padded edges, the
    edges' F1 0.68-0.73 against 0.97 with the band filled). Filled from the nearest pixel, the band
    continues the image instead. Where a date has no data the flow writes NaN anyway; a hole wider than
    a chunk's halo (128 px) may be filled differently chunk by chunk than over the whole image.
    """
    from scipy import ndimage

    missing = np.isnan(images).any(axis=-3)  # (T, H, W)
    if not missing.any():
        return images
    out = np.array(images, dtype=np.float32, copy=True)
    for t in range(out.shape[0]):
        if missing[t].any() and not missing[t].all():
            index = ndimage.distance_transform_edt(missing[t], return_distances=False, return_indices=True)
            out[t] = out[t][:, index[0], index[1]]
    return out


def pad_to_grid(images: np.ndarray, multiple: int) -> np.ndarray:
    """``images`` ``(..., H, W)`` as float32, padded at the bottom and right with NaN (no data, which
    ``fill_nodata`` then fills from the nearest pixel with data) to a multiple of ``multiple`` px along
    each axis (see ``predict_vhr_pairs``)."""
    x = images.astype(np.float32, copy=False)
    pads = [-size % multiple for size in x.shape[-2:]]
    if not any(pads):
        return x
    widths = [(0, 0)] * (x.ndim - 2) + [(0, pads[0]), (0, pads[1])]
    return np.pad(x, widths, constant_values=np.nan)


def predict_vhr_change(
    model: LoadedModel,
    before: np.ndarray,
    after: np.ndarray,
    *,
    config: EngineConfig | None = None,
    tile: int | None = None,
) -> np.ndarray:
    """Softmax change probabilities ``(n_classes, H, W)`` float32 of one pair ``(C, H, W)`` of raw DNs.

    ``tile`` overrides the core side of the default engine config (e.g. larger than the image for a
    single window).
    """
    if before.shape != after.shape or before.ndim != 3:
        raise InputError(f"before {before.shape} and after {after.shape} must be equal (C, H, W) arrays")
    device = module_device(model.module)
    config = config or vhr_engine_config(device)
    if tile is not None:
        config = replace(config, tile=tile, overlap=min(config.overlap, tile))
    return predict_vhr_pairs(model, np.stack([before, after]), config=config)[0]
