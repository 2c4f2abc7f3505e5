"""S2 land cover (a WorldCover-like legend): classes, input checks, tiled inference and the index baseline.

Everything here is pure (arrays in, arrays out). The model maps **one composite period** at a time: the
analysis cube's clear-sky median composite of the S2 L2A bands ``blue green red nir swir16 swir22``
(surface reflectance 0-1, 10 m, NaN = no clear observation), normalised with the card's
``(x - mean) / std`` plus one validity channel (fraction of finite bands) by ``models.predict.preprocess``,
exactly as in training. A pixel without any finite band in the mapped period is nodata (``NODATA``).

A model whose card has ``architecture_args["periods"] = P > 1`` also sees the ``P - 1`` periods before
the mapped one (``period_history``: oldest first, all NaN where the series starts later, as it was
trained), so phenology can tell a meadow from a green cereal field; one-period models see the mapped
period only.

Inference runs on the shared engine (``models.engine``) in **blend** mode: 256 px cores, 56 px of halo
(half the 110 px receptive field) dropped at inner window edges and a 16 px cosine blending band. Max
pooling makes the U-Net shift-variant by fractions of its 8 px coarsest cell, so the predicted region is
lengthened to a multiple of ``n_windows * 8`` px and the image padded with no data (at least the halo
beyond each edge): every window then starts on the pooling grid, and tiled inference equals a one-window
pass within ``TILED_TOLERANCE`` (``tests/models/test_landcover.py``); a chunk read with its halo equals
the whole-image map.

Class codes in maps are the WorldCover codes of the card's ``worldcover`` label table (10 tree cover,
30 grassland, 40 cropland, 50 built-up, 60 bare / sparse vegetation, 80 permanent water).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from eowatch.errors import InputError, ModelError
from eowatch.legend import LANDCOVER, LANDCOVER_TO_WORLDCOVER, WORLDCOVER, WORLDCOVER_COLOURS

from .card import ClassInfo, ModelCard
from .confusion import class_scores
from .engine import EngineConfig, Precision, WindowPredictor, fuse_conv_gelu, module_device, run_tiled
from .landcover_unet import POOL, LandCoverUNet
from .predict import check_inputs, preprocess
from .weights import LoadedModel

__all__ = [
    "LABEL_MAPPING",
    "LANDCOVER_ARCHITECTURE",
    "LANDCOVER_ARCHITECTURE_ARGS",
    "LANDCOVER_BANDS",
    "LANDCOVER_CLASSES",
    "LANDCOVER_HALO",
    "LANDCOVER_TASK",
    "NODATA",
    "TILED_TOLERANCE",
    "LandCoverMap",
    "check_landcover_inputs",
    "class_lut",
    "confusion_summary",
    "index_features",
    "landcover_codes_lut",
    "landcover_engine_config",
    "model_periods",
    "network_input",
    "period_history",
    "predict_centroids",
    "predict_landcover",
    "worldcover_codes",
]

#: Band order of the S2 land-cover model: the analysis cube's S2 L2A variables.
LANDCOVER_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22")
#: Task of the land-cover models: never picked for change detection (``deployments.model_names``).
LANDCOVER_TASK = "land-cover"
LANDCOVER_ARCHITECTURE = "LandCoverUNet"
#: Constructor arguments a ``LandCoverUNet`` card gives (``architecture_args`` keys).
LANDCOVER_ARCHITECTURE_ARGS: frozenset[str] = frozenset({"in_channels", "n_classes", "width", "levels"})
#: Class value of pixels without any clear observation in the period (uint8 maps).
NODATA = 255
#: Largest difference in probability between tiled and one-window inference (asserted in the tests).
TILED_TOLERANCE = 1e-4

#: WorldCover codes the archive's land cover maps to, in model output order.
_CODES: tuple[int, ...] = tuple(sorted(set(LANDCOVER_TO_WORLDCOVER.values())))
#: Output index -> WorldCover class name and colour (the classes the training data has).
LANDCOVER_CLASSES: dict[int, ClassInfo] = {
    i: ClassInfo(WORLDCOVER[code], WORLDCOVER_COLOURS[code]) for i, code in enumerate(_CODES)
}
_NAMES = {code: WORLDCOVER[code] for code in _CODES}
#: Foreign vocabularies -> class name ("" = not scored; the model cannot predict it). Stored in the card.
LABEL_MAPPING: dict[str, dict[str, str]] = {
    "worldcover": {**{str(c): n for c, n in _NAMES.items()}, "*": ""},
    "eowatch_landcover": {
        **{name: WORLDCOVER[code] for name, code in LANDCOVER_TO_WORLDCOVER.items()},
        "nodata": "",
    },
    # eo-learn's LULC enum (Slovenian land use): 1 cultivated, 2 forest, 3 grassland, 4 shrubland,
    # 5 water, 6 wetland, 7 tundra, 8 artificial, 9 bareland, 10 snow; 0 no data.
    "eolearn_lulc": {
        "1": "cropland",
        "2": "tree_cover",
        "3": "grassland",
        "5": "permanent_water",
        "8": "built_up",
        "9": "bare_sparse_vegetation",
        "*": "",
    },
}

_TILE, _OVERLAP = 256, 16
#: Context (px) read around a window's blended core: at least half the 110 px receptive field and a
#: multiple of the 8 px pooling cell, so a kept pixel sees all of its field and tiled inference equals
#: a one-window pass to float rounding. Chunked inference reads the same halo around each chunk.
LANDCOVER_HALO = 56


@dataclass(frozen=True)
class LandCoverMap:
    """Land-cover prediction of one period of a block of pixels."""

    codes: np.ndarray
    """uint8 ``(y, x)`` WorldCover codes, ``NODATA`` where the period has no clear observation."""
    probabilities: np.ndarray
    """float32 ``(K, y, x)`` class probabilities in card order (softmax), NaN where nodata."""


def landcover_engine_config(device: torch.device, precision: Precision = "auto") -> EngineConfig:
    """Blend-mode windows for ``LandCoverUNet``: 256 px cores (one window per call on CPU, four on CUDA),
    ``LANDCOVER_HALO`` px of halo and a 16 px blending band, multiples of the 8 px pooling cell."""
    batch = 4 if device.type == "cuda" else 1
    return EngineConfig(_TILE, LANDCOVER_HALO, _OVERLAP, batch_windows=batch, precision=precision)


def worldcover_codes(card: ModelCard) -> np.ndarray:
    """uint8 ``(K,)`` WorldCover code of each output class, from the card's ``worldcover`` table."""
    table = card.label_mapping.get("worldcover", {})
    by_name = {name: int(code) for code, name in table.items() if code != "*" and name}
    missing = [info.name for info in card.classes.values() if info.name not in by_name]
    if missing:
        raise ModelError(f"model {card.name!r}: no WorldCover code for classes {missing}")
    return np.array([by_name[card.classes[i].name] for i in sorted(card.classes)], dtype=np.uint8)


def class_lut(card: ModelCard, vocabulary: str, labels: Sequence[object]) -> dict[object, int]:
    """Foreign label -> output class index (-1 = not scored) through ``card.label_mapping[vocabulary]``."""
    table = card.label_mapping[vocabulary]
    default = table.get("*", "")
    out = {}
    for label in labels:
        name = table.get(str(label), default)
        out[label] = card.class_code(name) if name else -1
    return out


def check_landcover_inputs(card: ModelCard, available_bands: Sequence[str], resolution_m: float) -> None:
    """Raise ``ModelError`` unless ``card`` is a land-cover model whose bands and pixel size the data has."""
    if card.task != LANDCOVER_TASK:
        raise ModelError(f"model {card.name!r} is a {card.task} model, not a land-cover model")
    check_inputs(card, available_bands, resolution_m)


def model_periods(card: ModelCard) -> int:
    """Periods a land-cover model reads per map: the mapped one and those before it (1 unless the card's
    ``architecture_args`` give ``periods``)."""
    return int(card.architecture_args.get("periods", 1))


def period_history(series: np.ndarray, t: int, periods: int) -> np.ndarray:
    """float32 ``(periods, C, H, W)``: periods ``t - periods + 1 .. t`` of a ``(T, C, H, W)`` series,
    oldest first, all NaN (no observation) for those before the series starts."""
    if not 0 <= t < series.shape[0]:
        raise InputError(f"period {t} is outside a series of {series.shape[0]} periods")
    first = t - periods + 1
    window = series[max(first, 0) : t + 1].astype(np.float32, copy=False)
    if first >= 0:
        return window
    missing = np.full((-first, *series.shape[1:]), np.nan, dtype=np.float32)
    return np.concatenate([missing, window])


def network_input(card: ModelCard, bands: np.ndarray) -> np.ndarray:
    """float32 ``(N, periods * (C + 1), H, W)`` network input of ``(N, periods, C, H, W)`` raw
    reflectances (each period normalised with the card's statistics, plus its validity channel)."""
    n, p, c, h, w = bands.shape
    return preprocess(card, bands.reshape(n * p, c, h, w)).reshape(n, -1, h, w)


def _predictor(module: LandCoverUNet) -> WindowPredictor:
    def predict(windows: torch.Tensor) -> torch.Tensor:
        return module(windows).float().softmax(dim=1)

    return predict


def _padded_axis(size: int, part: slice, config: EngineConfig, cell: int) -> tuple[tuple[int, int], slice]:
    """NaN padding ``(before, after)`` of one axis and the region to run in the padded array.

    The region is lengthened to a multiple of ``n * cell`` (``n`` windows of at most ``config.tile``) so
    every core is on the pooling grid; ``config.halo`` px of no data are added where the axis holds less
    context than that, so every kept pixel sees no data (never the array's end) beyond the image, and the
    padding's extent cannot change a kept pixel.
    """
    start, stop = 0 if part.start is None else part.start, size if part.stop is None else part.stop
    length = stop - start
    n = math.ceil(length / config.tile)
    padded_length = -(-length // (n * cell)) * (n * cell)
    before = -(-max(0, config.halo - start) // cell) * cell
    after = max(0, start + padded_length + config.overlap + config.halo - size)
    return (before, after), slice(start + before, start + before + padded_length)


def predict_landcover(
    model: LoadedModel,
    bands: np.ndarray,
    *,
    region: tuple[slice, slice] | None = None,
    config: EngineConfig | None = None,
) -> LandCoverMap:
    """Land-cover map of one composite period (and its history, for a multi-period model), with the
    tiled engine.

    Every window starts on the 8 px pooling grid of ``bands``' first pixel and every kept pixel sees
    ``config.halo`` px of context (the image, or no data beyond its edges), so the map does not depend on
    the tiling (to float rounding) and a chunk read with its halo equals the whole-image map when the
    chunk starts on the pooling grid (chunk sides that are multiples of 8 px).

    Args:
        model: a loaded land-cover model (``models.get("landcover-s2-unet")``).
        bands: float32 ``(C, H, W)`` S2 L2A surface reflectance (0-1) in ``model.card.bands`` order, one
            period at the card's resolution (10 m), NaN = no clear observation; or ``(P, C, H, W)``: the
            mapped period last and up to ``model_periods(card) - 1`` periods before it, oldest first
            (``period_history``). Missing history is no observation (NaN), as for the first period of a
            series; a one-period model takes only the last.
        region: ``(rows, cols)`` slices to predict; the pixels around them are context (a chunk read with
            its halo). Default: the whole image.
        config: engine windows (default ``landcover_engine_config`` for the module's device); tile, halo
            and half the overlap must be multiples of the pooling cell.

    Returns:
        ``LandCoverMap`` over ``region`` (or the image).
    """
    card = model.card
    if card.task != LANDCOVER_TASK:
        raise ModelError(f"model {card.name!r} is a {card.task} model, not a land-cover model")
    periods = model_periods(card)
    if bands.ndim not in (3, 4) or bands.shape[-3] != len(card.bands):
        raise InputError(
            f"expected ({len(card.bands)}, H, W) or (periods, {len(card.bands)}, H, W) bands in order "
            f"{card.bands}, got {bands.shape}"
        )
    series = bands[None] if bands.ndim == 3 else bands
    current = series[-1]  # the mapped period
    history = period_history(series, len(series) - 1, periods)  # (periods, C, H, W), oldest first
    device = module_device(model.module)
    config = config or landcover_engine_config(device)
    cell = POOL ** int(card.architecture_args["levels"])
    if config.tile % cell or config.halo % cell or (config.overlap // 2) % cell:
        raise InputError(f"tile, halo and overlap / 2 must be multiples of the {cell} px pooling cell")
    rows, cols = region if region is not None else (slice(0, current.shape[1]), slice(0, current.shape[2]))
    (top, bottom), run_rows = _padded_axis(current.shape[1], rows, config, cell)
    (left, right), run_cols = _padded_axis(current.shape[2], cols, config, cell)
    padded = np.pad(history, [(0, 0), (0, 0), (top, bottom), (left, right)], constant_values=np.nan)
    module = fuse_conv_gelu(model.module) if device.type == "cpu" else model.module
    x = torch.from_numpy(network_input(card, padded[None]))
    probs = run_tiled(_predictor(module), x, config, region=(run_rows, run_cols), device=device)[0]  # type: ignore[arg-type]
    inside = current[:, rows, cols]
    probs = probs[:, : inside.shape[1], : inside.shape[2]]
    return _as_map(card, probs, np.isfinite(inside).any(axis=0))


def _as_map(card: ModelCard, probs: np.ndarray, observed: np.ndarray) -> LandCoverMap:
    codes = worldcover_codes(card)[probs.argmax(axis=0)]
    probs = np.where(observed[None], probs, np.nan).astype(np.float32)
    return LandCoverMap(np.where(observed, codes, NODATA).astype(np.uint8), probs)


def confusion_summary(cm: np.ndarray, card: ModelCard, nodata_px: int = 0) -> dict[str, object]:
    """OA, kappa, mIoU, macro F1 and per-class F1/IoU (``models.confusion.class_scores``) of a confusion
    matrix (rows truth, columns predicted class index); ``nodata_px`` labelled pixels left unmapped count
    as errors in OA (not in the other scores)."""
    names = {c: info.name for c, info in card.classes.items()}
    scores = class_scores(cm, names)
    per_class = scores.pop("per_class")
    assert isinstance(per_class, dict)
    n = int(cm.sum()) + nodata_px
    out: dict[str, object] = {**scores, "n": n, "nodata_px": nodata_px}
    out["oa"] = float(np.trace(cm)) / n if n else 0.0
    out.update({name: {"f1": v["f1"], "iou": v["iou"]} for name, v in per_class.items()})
    return out


# --- the index baseline ----------------------------------------------------------------------------


def index_features(bands: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """Spectral indices ``(4, ...)`` float32 of ``(C, ...)`` reflectances: NDVI, NDWI (green-NIR),
    NDBI (SWIR1-NIR) and mean visible brightness; NaN where a band is missing."""
    b = {name: bands[i].astype(np.float32) for i, name in enumerate(band_names)}

    def nd(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (a - c) / (a + c)

    bright = (b["blue"] + b["green"] + b["red"]) / 3.0
    return np.stack(
        [nd(b["nir"], b["red"]), nd(b["green"], b["nir"]), nd(b["swir16"], b["nir"]), bright]
    ).astype(np.float32)


def predict_centroids(features: np.ndarray, centroids: Mapping[int, Sequence[float]]) -> np.ndarray:
    """Nearest-centroid baseline on standardised index features ``(F, ...)``.

    ``centroids``: class index -> mean feature vector; distances are Euclidean after dividing each
    feature by the spread of the centroids (so brightness and the ratios weigh alike). Returns int64
    class indices, -1 where a feature is NaN.
    """
    classes = sorted(centroids)
    ref = np.array([centroids[c] for c in classes], dtype=np.float64)  # (K, F)
    scale = np.maximum(ref.std(axis=0), 1e-6)
    flat = features.reshape(features.shape[0], -1).T.astype(np.float64) / scale  # (N, F)
    dist = ((flat[:, None, :] - (ref / scale)[None]) ** 2).sum(axis=-1)
    best = np.array(classes)[np.nan_to_num(dist, nan=np.inf).argmin(axis=1)]
    out = np.where(np.isfinite(flat).all(axis=1), best, -1)
    return out.reshape(features.shape[1:]).astype(np.int64)


def landcover_codes_lut(card: ModelCard | None = None) -> np.ndarray:
    """int64 ``(256,)`` archive land-cover code -> output class index (-1 = unlabelled), through the
    ``eowatch_landcover`` table of ``card`` (default: this module's legend, for a card not yet built)."""
    table = card.label_mapping["eowatch_landcover"] if card else LABEL_MAPPING["eowatch_landcover"]
    classes = card.classes if card else LANDCOVER_CLASSES
    names = [classes[i].name for i in sorted(classes)]
    lut = np.full(256, -1, dtype=np.int64)
    for code, name in LANDCOVER.items():
        target = table.get(name, table.get("*", ""))
        lut[code] = names.index(target) if target else -1
    return lut
