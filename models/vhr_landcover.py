"""VHR land cover (LandCover.ai classes): input checks, tiled inference of ``VhrLandCoverUNet``, class maps.

Everything here is pure (arrays in, arrays out). The model segments **one VHR date** at a time: raw 8-bit
digital numbers of the bands ``red green blue`` (the VHR cube's variables, uint8 0-255 or float with NaN
for no data) at 1 m, normalised with the card's ``(mean, std)`` per band by ``models.predict.preprocess``
exactly as in training. No data (NaN, and the padding below) first takes the values of the date's nearest
pixel with data (``vhr_change.fill_nodata``, as the change model does); a pixel where every band is no
data is ``NODATA`` in class maps.

Classes are LandCover.ai's (``eowatch.legend.VHR_LANDCOVER``): 0 background, 1 building, 2 woodland,
3 water, 4 road.

Inference runs on the shared engine (``models.engine``) with the windows of the VHR change model
(``models.vhr_change.vhr_engine_config``: blend mode, 1024 px cores, 96 px of halo, a 32 px cosine band):
both networks have the same blocks and pooling depth. Max pooling makes the network shift-variant by
fractions of its 16 px coarsest cell, so ``predict_vhr_landcover`` pads a whole image with no data to a
multiple of 128 px as ``predict_vhr_pairs`` does; tiled inference then equals a one-window pass within
``TILED_TOLERANCE`` (``tests/models/test_vhr_landcover.py``), and a chunk read with the halo of
``vhr_change.chunk_tiling`` equals the whole-image map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from eowatch.errors import InputError, ModelError
from eowatch.legend import VHR_LANDCOVER, VHR_LANDCOVER_COLOURS

from .card import ClassInfo, ModelCard
from .engine import EngineConfig, WindowPredictor, fuse_conv_gelu, module_device, run_tiled
from .predict import check_bands_and_resolution, preprocess
from .vhr_change import VHR_BANDS, VHR_SENSOR, chunk_tiling, fill_nodata, pad_to_grid, vhr_engine_config
from .vhr_landcover_unet import VhrLandCoverUNet
from .weights import LoadedModel

__all__ = [
    "NODATA",
    "TILED_TOLERANCE",
    "VHR_LANDCOVER_ARCHITECTURE",
    "VHR_LANDCOVER_ARCHITECTURE_ARGS",
    "VHR_LANDCOVER_BANDS",
    "VHR_LANDCOVER_CLASSES",
    "VHR_LANDCOVER_SENSOR",
    "VHR_LANDCOVER_TASK",
    "VhrLandCoverUNet",
    "check_vhr_landcover_inputs",
    "classify",
    "pad_to_grid",
    "predict_vhr_landcover",
]

#: Band order of the VHR land-cover model: the RGB variables of the VHR cube.
VHR_LANDCOVER_BANDS: tuple[str, ...] = VHR_BANDS
#: Collection the training imagery comes from (the synthetic archive's NAIP-like 1 m RGBN).
VHR_LANDCOVER_SENSOR = VHR_SENSOR
#: Task of VHR land-cover models: not ``land-cover`` (S2) nor any change task, so neither the change
#: flow nor ``infra.deployments.model_names`` picks it.
VHR_LANDCOVER_TASK = "vhr-land-cover"
VHR_LANDCOVER_ARCHITECTURE = "VhrLandCoverUNet"
#: Constructor arguments a ``VhrLandCoverUNet`` card gives (``architecture_args`` keys).
VHR_LANDCOVER_ARCHITECTURE_ARGS: frozenset[str] = frozenset({"in_channels", "n_classes", "width", "levels"})
#: Output index -> LandCover.ai class name and display colour.
VHR_LANDCOVER_CLASSES: dict[int, ClassInfo] = {
    code: ClassInfo(name, VHR_LANDCOVER_COLOURS[code]) for code, name in VHR_LANDCOVER.items()
}
#: Class value of pixels without data (uint8 maps).
NODATA = 255
#: Largest difference in probability between tiled and one-window inference (asserted in the tests).
TILED_TOLERANCE = 1e-4


def check_vhr_landcover_inputs(card: ModelCard, available_bands: Sequence[str], resolution_m: float) -> None:
    """Raise ``ModelError`` unless ``card`` is a VHR land-cover model that fits imagery of these bands and
    pixel size (named as ``models.predict.check_bands_and_resolution`` names them)."""
    if card.task != VHR_LANDCOVER_TASK:
        raise ModelError(f"model {card.name!r} is a {card.task} model, not a VHR land-cover model")
    check_bands_and_resolution(card, available_bands, resolution_m)


def _predictor(module: torch.nn.Module) -> WindowPredictor:
    """Window predictor: one image per forward pass (activations stay small), softmax probabilities
    ``(B * T, n_classes, h, w)`` float32 for ``(B * T, C, h, w)`` windows."""

    def predict(windows: torch.Tensor) -> torch.Tensor:
        probs = [module(windows[i : i + 1]).float().softmax(dim=1) for i in range(windows.shape[0])]
        return probs[0] if len(probs) == 1 else torch.cat(probs)

    return predict


def predict_vhr_landcover(
    model: LoadedModel,
    images: np.ndarray,
    *,
    region: tuple[slice, slice] | None = None,
    config: EngineConfig | None = None,
) -> np.ndarray:
    """Softmax class probabilities of each VHR date, with the tiled engine.

    Args:
        model: a loaded VHR land-cover model (``card.task == "vhr-land-cover"``).
        images: ``(T, C, H, W)`` or ``(C, H, W)`` raw digital numbers (uint8, or float with NaN = no
            data) in ``model.card.bands`` order, on one grid of the card's resolution.
        region: ``(rows, cols)`` slices to predict; the pixels around it are context (a chunk read with
            the halo of ``vhr_change.chunk_tiling`` and kept on its pooling grid). Default: everything,
            padded with no data to a multiple of ``chunk_tiling(card).align`` px.
        config: engine windows (default ``vhr_change.vhr_engine_config`` for the module's device).

    Returns:
        float32 ``(T, n_classes, h, w)`` over ``region`` (``(n_classes, h, w)`` for a ``(C, H, W)`` input).
    """
    card = model.card
    if card.task != VHR_LANDCOVER_TASK:
        raise ModelError(f"model {card.name!r} is a {card.task} model, not a VHR land-cover model")
    single = images.ndim == 3
    stack = images[None] if single else images
    if stack.ndim != 4 or stack.shape[1] != len(card.bands):
        raise InputError(
            f"expected (T, {len(card.bands)}, H, W) or ({len(card.bands)}, H, W) images in band order "
            f"{card.bands}, got {images.shape}"
        )
    device = module_device(model.module)
    module = fuse_conv_gelu(model.module) if device.type == "cpu" else model.module
    config = config or vhr_engine_config(device)
    if region is not None:
        x = torch.from_numpy(preprocess(card, fill_nodata(stack.astype(np.float32, copy=False))))
        out = run_tiled(_predictor(module), x, config, region=region, device=device)
    else:
        height, width = stack.shape[-2:]
        padded = fill_nodata(pad_to_grid(stack, chunk_tiling(card).align))
        x = torch.from_numpy(preprocess(card, padded))
        out = run_tiled(_predictor(module), x, config, device=device)[..., :height, :width]
    return out[0] if single else out


def classify(probs: np.ndarray, images: np.ndarray | None = None) -> np.ndarray:
    """Class map uint8 ``(..., H, W)`` (argmax over the class axis ``-3`` of ``probs``), ``NODATA`` where
    every band of ``images`` (same leading shape, ``(..., C, H, W)``, NaN = no data) is missing."""
    codes = probs.argmax(axis=-3).astype(np.uint8)
    if images is not None:
        missing = ~np.isfinite(images.astype(np.float32, copy=False)).any(axis=-3)
        codes[missing] = NODATA
    return codes
