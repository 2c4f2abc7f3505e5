"""Real-data evaluation of the S2 land-cover model (``../shared/data``; see each folder's MANIFEST.txt).

* **Slovenia** (``landcover/eolearn_slovenia``, eo-learn's example EOPatch, EPSG:32633, 101 x 100 px at
  10 m): five real Sentinel-2 **L1C** scenes (``REFERENCE_SCENES.npy``, top-of-atmosphere reflectance,
  bands B01..B12 with B8A and B10) composited into one period (median of the clear observations per
  pixel; clear = a simple brightness and cirrus test, ``CLEAR_BLUE_MAX`` / ``CLEAR_CIRRUS_MAX``), scored
  against the reference land use (``mask_timeless/LULC.npy``, eo-learn's enum) through the card's
  ``eolearn_lulc`` table. Classes the model cannot predict (shrubland, 4) and no data (0) are left out
  of the headline scores; where the shrubland pixels go is reported. The model was trained on surface
  (L2A) reflectance: TOA reflectance is brighter in blue and green (path radiance), which the training's
  haze augmentation covers only in part.
* **WorldCereal** (``crops/worldcereal``, Belgium, 100 x 100 px, 2020-11..2021-10): the model's
  cropland (class ``cropland``) on each real monthly S2 L2A composite and on a summer composite (median
  of June-August) against WorldCereal's own cropland map (``models.worldcereal.read_croptype_map``):
  agreement (OA), kappa, precision and recall. A multi-period model maps each month with the months
  before it (``landcover.period_history``; none before November) and "summer" as August with June and
  July before it.

Both are also scored with the index nearest-centroid baseline fitted on the synthetic training pixels,
and Slovenia with the majority class of its scored reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eowatch.errors import InputError

from .confusion import confusion_matrix
from .landcover import (
    class_lut,
    confusion_summary,
    index_features,
    model_periods,
    period_history,
    predict_centroids,
    predict_landcover,
    worldcover_codes,
)
from .metrics import binary_scores, flatten_scores
from .weights import LoadedModel

__all__ = [
    "CLEAR_BLUE_MAX",
    "CLEAR_CIRRUS_MAX",
    "L1C_BANDS",
    "SloveniaPatch",
    "evaluate_real",
    "evaluate_slovenia",
    "evaluate_worldcereal_cropland",
    "read_slovenia",
    "score_classes",
    "slovenia_truth",
]

#: Band order of ``REFERENCE_SCENES.npy`` (Sentinel-2 L1C, 13 bands).
L1C_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
#: eowatch band name -> Sentinel-2 band code.
_S2_CODES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
#: A pixel of a scene is clear when its TOA blue reflectance is below this (thick clouds are brighter)...
CLEAR_BLUE_MAX = 0.2
#: ... and its cirrus band (B10, 1375 nm, absorbed by water vapour below cirrus) below this.
CLEAR_CIRRUS_MAX = 0.01
#: eo-learn LULC codes and names present in the reference.
_EOLEARN_NAMES = {1: "cultivated", 2: "forest", 3: "grassland", 4: "shrubland", 5: "water", 8: "artificial"}


@dataclass(frozen=True)
class SloveniaPatch:
    """The eo-learn example patch as the model sees it."""

    composite: np.ndarray
    """float32 ``(C, y, x)`` median TOA reflectance of the clear scenes, in the requested band order."""
    clear_scenes: np.ndarray
    """int64 ``(y, x)`` number of clear scenes per pixel (NaN composite where 0)."""
    reference: np.ndarray
    """int64 ``(y, x)`` eo-learn LULC code (0 = no data)."""


def read_slovenia(folder: Path, bands: Sequence[str]) -> SloveniaPatch:
    """Composite the five L1C scenes of ``landcover/eolearn_slovenia`` and read the reference land use."""
    folder = Path(folder)
    scenes = np.load(folder / "REFERENCE_SCENES.npy").astype(np.float32)  # (S, y, x, 13)
    if scenes.ndim != 4 or scenes.shape[-1] != len(L1C_BANDS):
        raise InputError(f"{folder}: expected (scenes, y, x, 13) L1C reflectances, got {scenes.shape}")
    blue, cirrus = scenes[..., L1C_BANDS.index("B02")], scenes[..., L1C_BANDS.index("B10")]
    clear = (blue < CLEAR_BLUE_MAX) & (cirrus < CLEAR_CIRRUS_MAX) & np.isfinite(scenes).all(axis=-1)
    picked = np.stack([scenes[..., L1C_BANDS.index(_S2_CODES[b])] for b in bands], axis=1)  # (S, C, y, x)
    masked = np.where(clear[:, None], picked, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels without a clear scene stay NaN
        composite = np.nanmedian(masked, axis=0).astype(np.float32)
    reference = np.load(folder / "TestEOPatch" / "mask_timeless" / "LULC.npy")[..., 0].astype(np.int64)
    if reference.shape != composite.shape[1:]:
        raise InputError(f"{folder}: reference {reference.shape} and scenes {composite.shape[1:]} differ")
    return SloveniaPatch(composite, clear.sum(axis=0).astype(np.int64), reference)


def slovenia_truth(patch: SloveniaPatch, model: LoadedModel) -> np.ndarray:
    """int64 ``(y, x)`` class index of the patch's reference through the card's ``eolearn_lulc`` table
    (-1 = not scored: shrubland, no data)."""
    lut = class_lut(model.card, "eolearn_lulc", np.unique(patch.reference).tolist())
    return np.vectorize(lambda c: lut[c], otypes=[np.int64])(patch.reference)


def score_classes(pred: np.ndarray, truth: np.ndarray, model: LoadedModel) -> dict[str, object]:
    """Scores (``landcover.confusion_summary``) of class indices ``pred`` against ``truth`` (-1 = not
    scored); predictions outside the classes (-1, nodata) count as errors in OA."""
    k = len(model.card.classes)
    labelled = truth >= 0
    cm = confusion_matrix(pred, truth, k, valid=labelled)
    return confusion_summary(cm, model.card, int((labelled & (pred < 0)).sum()))


def _indices(model: LoadedModel, codes: np.ndarray) -> np.ndarray:
    """Class indices (-1 = nodata) of a WorldCover-coded map."""
    index_of = np.full(256, -1, dtype=np.int64)
    index_of[worldcover_codes(model.card)] = np.arange(len(model.card.classes))
    return index_of[codes]


def evaluate_slovenia(
    model: LoadedModel, folder: Path, centroids: Mapping[int, Sequence[float]]
) -> dict[str, float]:
    """Scores on the Slovenian patch (flat keys under ``slovenia.``): ``model.*``, ``baseline.*``,
    ``majority.*``, the scored and excluded pixel counts and ``shrubland_as.<class>`` (share of the
    reference shrubland pixels per predicted class)."""
    patch = read_slovenia(folder, model.card.bands)
    truth = slovenia_truth(patch, model)
    pred = _indices(model, predict_landcover(model, patch.composite).codes)
    base = predict_centroids(index_features(patch.composite, model.card.bands), centroids)
    majority = np.full_like(truth, int(np.bincount(truth[truth >= 0]).argmax()))
    scores: dict[str, object] = {
        "model": score_classes(pred, truth, model),
        "baseline": score_classes(base, truth, model),
        "majority": score_classes(majority, truth, model),
        "excluded_px": int((truth < 0).sum()),
        "no_clear_scene_px": int((patch.clear_scenes == 0).sum()),
    }
    shrub = patch.reference == 4
    if shrub.any():
        scores["shrubland_as"] = {
            info.name: float((pred[shrub] == c).mean()) for c, info in model.card.classes.items()
        }
    return flatten_scores(scores, prefix="slovenia.")


def evaluate_worldcereal_cropland(
    model: LoadedModel, folder: Path, centroids: Mapping[int, Sequence[float]]
) -> dict[str, float]:
    """The model's cropland vs WorldCereal's cropland map, per monthly composite and on the summer
    (June-August median) composite; flat keys under ``worldcereal.`` (``summer.model.kappa``,
    ``month07.model.oa``, ... and ``mean_month.model.kappa`` over the months with a clear observation;
    a month without any has only ``monthMM.observed`` = 0)."""
    from .worldcereal import CROPLAND_FILE, CROPTYPE_FILE, CUBE_FILE, read_croptype_map, read_cube

    folder = Path(folder)
    series, months = read_cube(folder / CUBE_FILE, model.card.bands)
    _, reference = read_croptype_map(folder / CROPTYPE_FILE, folder / CROPLAND_FILE)
    cropland = model.card.class_code("cropland")
    periods = model_periods(model.card)
    summer = np.isin(months, (6, 7, 8))
    if periods > 1:  # August, with June and July before it
        composite = series[summer][-periods:]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            composite = np.nanmedian(series[summer], axis=0).astype(np.float32)
    scores: dict[str, object] = {"summer": _cropland_scores(model, composite, reference, cropland, centroids)}
    per_month = []
    for t, month in enumerate(months):
        if not np.isfinite(series[t]).any(axis=0).any():  # no clear observation that month: not scored
            scores[f"month{int(month):02d}"] = {"observed": 0.0}
            continue
        history = period_history(series, t, periods)
        result = _cropland_scores(model, history, reference, cropland, centroids)
        scores[f"month{int(month):02d}"] = {**result, "observed": 1.0}
        per_month.append(result)
    scores["mean_month"] = {
        who: {k: float(np.mean([m[who][k] for m in per_month])) for k in ("oa", "kappa")}
        for who in ("model", "baseline")
    }
    scores["scored_months"] = len(per_month)
    scores["reference_cropland_share"] = float(reference.mean())
    return flatten_scores(scores, prefix="worldcereal.")


def _cropland_scores(
    model: LoadedModel,
    bands: np.ndarray,
    reference: np.ndarray,
    cropland: int,
    centroids: Mapping[int, Sequence[float]],
) -> dict[str, dict[str, float]]:
    """Scores of the model's map of ``bands`` (``(C, H, W)`` or a ``(P, C, H, W)`` history, mapped period
    last) and of the baseline on the mapped period."""
    pred = _indices(model, predict_landcover(model, bands).codes)
    current = bands if bands.ndim == 3 else bands[-1]
    base = predict_centroids(index_features(current, model.card.bands), centroids)
    out = {}
    for who, p in (("model", pred), ("baseline", base)):
        s = binary_scores(p == cropland, reference, valid=p >= 0)
        out[who] = {k: s[k] for k in ("oa", "kappa", "precision", "recall", "f1")}
        out[who]["cropland_share"] = float((p == cropland)[p >= 0].mean()) if (p >= 0).any() else 0.0
    return out


def evaluate_real(
    model: LoadedModel, root: Path, centroids: Mapping[int, Sequence[float]]
) -> dict[str, float]:
    """Both real evaluations from the shared data root (``../shared/data``)."""
    root = Path(root)
    scores = evaluate_slovenia(model, root / "landcover" / "eolearn_slovenia", centroids)
    scores.update(evaluate_worldcereal_cropland(model, root / "crops" / "worldcereal", centroids))
    return scores
