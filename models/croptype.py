"""Crop-type mapping: classes, the per-step preprocessing shared with training, inference and baselines.

Everything here is pure (arrays in, arrays out): a pipeline stage maps ``predict_croptype`` over cube
chunks, each chunk a ``(T, B, y, x)`` block of monthly composites; pixels are independent, so chunks need
no halo.

Preprocessing (``step_features``, identical in training and inference): per time step, S2 counts as
observed when all its bands are finite, S1 likewise; bands and NDVI are normalised with the card's
``(x - mean) / std`` and set to 0 (the training mean) where their sensor is not observed; the flags
``s2_valid`` / ``s1_valid`` tell the network which. A step is valid when either sensor observed it and its
month is one the model was trained on (``card.months``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eowatch.errors import InputError, ModelError

from .card import S1_BANDS, S2_BANDS, ClassInfo, ModelCard
from .weights import LoadedModel

__all__ = [
    "CROP_CLASSES",
    "LABEL_MAPPING",
    "NODATA_CLASS",
    "S1_BANDS",
    "S2_BANDS",
    "CropTypeMap",
    "centroids_path",
    "check_croptype_inputs",
    "fit_ndvi_centroids",
    "load_centroids",
    "map_labels",
    "multiclass_scores",
    "ndvi",
    "predict_croptype",
    "predict_croptype_pixels",
    "predict_ndvi_centroids",
    "save_centroids",
    "step_features",
]

#: Crop-type legend of the crop model: the archive's crops, grassland, and everything else.
CROP_CLASSES: dict[int, ClassInfo] = {
    0: ClassInfo("winter_cereal", (214, 170, 50)),
    1: ClassInfo("maize", (255, 120, 20)),
    2: ClassInfo("rapeseed", (250, 235, 0)),
    3: ClassInfo("grassland", (110, 190, 80)),
    4: ClassInfo("other", (150, 150, 150)),
}

_WC = "winter_cereal"
#: Foreign vocabularies -> crop class (stored in the card). WorldCereal legacy crop-type codes follow the
#: WorldCereal RDM legend (ICC-based: 1110 winter wheat, 1510 winter barley, 1200 maize, 435x rapeseed,
#: 91xx grasses and fodder); unlisted codes are other crops. Land-cover codes are used only where the
#: sample has no crop type: 13 grassland; 10-12 (cropland of unknown type) are not scored.
LABEL_MAPPING: dict[str, dict[str, str]] = {
    "eowatch_landcover": {
        "winter_cereal": _WC,
        "maize": "maize",
        "rapeseed": "rapeseed",
        "grassland": "grassland",
        "*": "other",
        "nodata": "",
    },
    "worldcereal_croptype": {
        **dict.fromkeys(["1000", "1100", "1110", "1500", "1510", "1600", "1610", "1910"], _WC),
        "1200": "maize",
        **dict.fromkeys(["4300", "4350", "4351", "4352"], "rapeseed"),
        **dict.fromkeys(["9100", "9110", "9120"], "grassland"),
        "*": "other",
    },
    "worldcereal_landcover": {"13": "grassland", "0": "", "10": "", "11": "", "12": "", "*": "other"},
    "worldcereal_croptype_map": {
        "wheat": _WC,
        "barley": _WC,
        "maize": "maize",
        "rapeseed_rape": "rapeseed",
        "*": "other",
    },
}


#: Class value of pixels without any valid time step (uint8 maps).
NODATA_CLASS = 255


@dataclass(frozen=True)
class CropTypeMap:
    """Crop-type prediction of a block of pixels."""

    classes: np.ndarray
    """uint8 ``(y, x)`` class codes of the card's legend, ``NODATA_CLASS`` where no step was valid."""
    probabilities: np.ndarray
    """float32 ``(K, y, x)`` class probabilities (softmax), NaN where no step was valid."""


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """``(nir - red) / (nir + red)`` of reflectances (any shape, float32); NaN where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (nir - red) / (nir + red)
    return np.where(np.isfinite(out), out, np.nan).astype(np.float32)


def _sensor_valid(raw: np.ndarray, bands: Sequence[str], sensor: Sequence[str]) -> np.ndarray:
    idx = [i for i, b in enumerate(bands) if b in sensor]
    if not idx:
        return np.zeros(raw.shape[:-1], dtype=bool)
    return np.isfinite(raw[..., idx]).all(axis=-1)


def step_features(raw: np.ndarray, card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs of pixel series (see the module docstring).

    Args:
        raw: float32 ``(N, T, B)`` bands in ``card.bands`` order, cube units (reflectance 0-1, dB),
            NaN = not observed.
        card: crop-type model card.

    Returns:
        ``x`` float32 ``(N, T, C)`` in ``card.inputs_per_step`` order and ``observed`` bool ``(N, T)``.
    """
    if raw.ndim != 3 or raw.shape[-1] != len(card.bands):
        raise InputError(f"expected raw series (N, T, {len(card.bands)}), got {raw.shape}")
    raw = raw.astype(np.float32, copy=False)
    s2, s1 = _sensor_valid(raw, card.bands, S2_BANDS), _sensor_valid(raw, card.bands, S1_BANDS)
    band = {b: raw[..., i] for i, b in enumerate(card.bands)}
    x = np.zeros((*raw.shape[:2], len(card.inputs_per_step)), dtype=np.float32)
    for c, name in enumerate(card.inputs_per_step):
        if name in ("s2_valid", "s1_valid"):
            x[..., c] = s2 if name == "s2_valid" else s1
            continue
        value = ndvi(band["red"], band["nir"]) if name == "ndvi" else band[name]
        mean, std = card.normalization[name]
        valid = (s1 if name in S1_BANDS else s2) & np.isfinite(value)
        x[..., c] = np.where(valid, (value - mean) / std, 0.0)
    return x, s2 | s1


def check_croptype_inputs(
    card: ModelCard, bands: Sequence[str], resolution_m: float, months: Sequence[int]
) -> None:
    """Refuse inputs the crop-type model was not trained for, with an error naming the mismatch."""
    if card.task != "crop_type":
        raise ModelError(f"model {card.name!r} is a {card.task} model, not a crop-type model")
    missing = [b for b in card.bands if b not in bands]
    if missing:
        raise ModelError(f"model {card.name!r} needs bands {', '.join(missing)}, which the cube lacks")
    if not np.isclose(resolution_m, card.resolution_m):
        raise ModelError(
            f"model {card.name!r} expects {card.resolution_m:g} m pixels, got {resolution_m:g} m"
        )
    if not set(months) & set(card.months):
        raise ModelError(
            f"model {card.name!r} was trained on months {sorted(card.months)}; "
            f"the cube has only {sorted(months)}"
        )


def predict_croptype_pixels(
    model: LoadedModel, raw: np.ndarray, months: Sequence[int], batch_pixels: int = 65536
) -> np.ndarray:
    """Class probabilities float32 ``(N, K)`` of pixel series ``raw`` ``(N, T, B)``; NaN rows where no step
    is valid. ``months``: month of the year (1-12) of each of the ``T`` steps."""
    card = model.card
    months = np.asarray(months, dtype=np.int64)
    if months.shape != (raw.shape[1],):
        raise InputError(f"{len(months)} months given for {raw.shape[1]} time steps")
    x, observed = step_features(raw, card)
    observed &= np.isin(months, card.months)[None, :]
    module = model.module
    device = next(module.parameters()).device
    probs = np.full((raw.shape[0], len(card.classes)), np.nan, dtype=np.float32)
    months_t = torch.from_numpy(months).to(device)
    with torch.inference_mode():
        for start in range(0, raw.shape[0], batch_pixels):
            sl = slice(start, start + batch_pixels)
            logits = module(
                torch.from_numpy(x[sl]).to(device), torch.from_numpy(observed[sl]).to(device), months_t
            )
            probs[sl] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    probs[~observed.any(axis=1)] = np.nan
    return probs


def predict_croptype(
    model: LoadedModel, series: np.ndarray, months: Sequence[int], batch_pixels: int = 65536
) -> CropTypeMap:
    """Crop-type map of a block of monthly composites.

    Args:
        model: a loaded crop-type model (``models.get("crop-type-ltae")``).
        series: float32 ``(T, B, y, x)`` in ``model.card.bands`` order, cube units, NaN = not observed.
        months: month of the year (1-12) of each time step; steps of months outside ``card.months`` are
            ignored.
        batch_pixels: pixels per forward pass (bounds memory; does not change the result).
    """
    if series.ndim != 4 or series.shape[1] != len(model.card.bands):
        raise InputError(f"expected series (T, {len(model.card.bands)}, y, x), got {series.shape}")
    t, b, h, w = series.shape
    raw = series.reshape(t, b, h * w).transpose(2, 0, 1)  # (N, T, B), N = y * w + x
    probs = predict_croptype_pixels(model, np.ascontiguousarray(raw), months, batch_pixels)
    classes = np.where(np.isnan(probs[:, 0]), NODATA_CLASS, np.nan_to_num(probs).argmax(axis=1))
    return CropTypeMap(
        classes=classes.astype(np.uint8).reshape(h, w),
        probabilities=np.moveaxis(probs, 1, 0).reshape(len(model.card.classes), h, w),
    )


def map_labels(labels: Sequence[object], table: Mapping[str, str], card: ModelCard) -> np.ndarray:
    """Class codes (int64, -1 = unknown) of foreign labels through one ``card.label_mapping`` table."""
    default = table.get("*", "")
    names = [table.get(str(label), default) for label in labels]
    return np.array([card.class_code(n) if n else -1 for n in names], dtype=np.int64)


def fit_ndvi_centroids(
    raw: np.ndarray, labels: np.ndarray, months: Sequence[int], bands: Sequence[str], n_classes: int
) -> dict[int, dict[int, float]]:
    """Mean NDVI per class and month of the year (the nearest-centroid baseline's model).

    ``raw`` ``(N, T, B)``, ``labels`` ``(N,)`` class codes (negative = ignore), ``months`` ``(T,)``.
    """
    v = ndvi(raw[..., list(bands).index("red")], raw[..., list(bands).index("nir")])
    out: dict[int, dict[int, float]] = {}
    for c in range(n_classes):
        rows = v[labels == c]
        out[c] = {
            int(m): float(np.nanmean(rows[:, t]))
            for t, m in enumerate(months)
            if rows.size and np.isfinite(rows[:, t]).any()
        }
    return out


def predict_ndvi_centroids(
    raw: np.ndarray, months: Sequence[int], bands: Sequence[str], centroids: Mapping[int, Mapping[int, float]]
) -> np.ndarray:
    """Nearest-centroid baseline: the class whose mean NDVI profile is closest (mean squared difference
    over the months both have). Returns int64 ``(N,)``, ``NODATA_CLASS`` where no month is comparable."""
    v = ndvi(raw[..., list(bands).index("red")], raw[..., list(bands).index("nir")])  # (N, T)
    classes = sorted(centroids)
    dist = np.full((len(v), len(classes)), np.inf)
    for j, c in enumerate(classes):
        ref = np.array([centroids[c].get(int(m), np.nan) for m in months], dtype=np.float32)
        sq = (v - ref[None, :]) ** 2
        count = np.isfinite(sq).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            dist[:, j] = np.where(count > 0, np.nansum(sq, axis=1) / np.maximum(count, 1), np.inf)
    best = np.array(classes)[dist.argmin(axis=1)]
    return np.where(np.isfinite(dist.min(axis=1)), best, NODATA_CLASS).astype(np.int64)


def save_centroids(path: Path, centroids: Mapping[int, Mapping[int, float]], card: ModelCard) -> None:
    """Write the NDVI baseline's class profiles as JSON (class name -> month -> mean NDVI)."""
    data = {
        "method": "nearest centroid on monthly NDVI (mean squared difference over shared months)",
        "model": card.name,
        "centroids": {card.classes[c].name: {str(m): v for m, v in p.items()} for c, p in centroids.items()},
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_centroids(path: Path, card: ModelCard) -> dict[int, dict[int, float]]:
    """Inverse of ``save_centroids``: class code -> month -> mean NDVI."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["centroids"]
    return {card.class_code(name): {int(m): float(v) for m, v in p.items()} for name, p in data.items()}


def centroids_path(weights_dir: Path, name: str) -> Path:
    """Path of the NDVI baseline profiles shipped beside a crop model's weights."""
    return Path(weights_dir) / f"{name}.ndvi-centroids.json"


def multiclass_scores(
    pred: np.ndarray, truth: np.ndarray, names: Mapping[int, str]
) -> dict[str, float | dict[str, float]]:
    """OA, Cohen's kappa, macro F1 and per-class precision/recall/F1 over pixels with ``truth >= 0``.

    Classes are the codes of ``names``; a prediction outside them (e.g. nodata) counts as wrong. Per
    class: ``n_truth``, ``n_pred``, ``precision`` (1.0 when never predicted), ``recall`` (1.0 when absent),
    ``f1``. ``macro_f1`` averages F1 over the classes present in the truth.
    """
    keep = truth >= 0
    p, t = pred[keep], truth[keep]
    n = len(t)
    codes = sorted(names)
    out: dict[str, float | dict[str, float]] = {"n": float(n), "oa": float((p == t).mean()) if n else 0.0}
    chance = sum(float((p == c).sum()) * float((t == c).sum()) for c in codes) / max(n * n, 1)
    out["kappa"] = (out["oa"] - chance) / (1.0 - chance) if n and chance < 1.0 else 0.0
    f1s = []
    for c in codes:
        hit, n_t, n_p = int(((p == c) & (t == c)).sum()), int((t == c).sum()), int((p == c).sum())
        f1 = 2 * hit / (n_t + n_p) if n_t + n_p else 1.0
        if n_t:
            f1s.append(f1)
        out[names[c]] = {
            "n_truth": float(n_t),
            "n_pred": float(n_p),
            "precision": hit / n_p if n_p else 1.0,
            "recall": hit / n_t if n_t else 1.0,
            "f1": f1,
        }
    out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0
    return out
