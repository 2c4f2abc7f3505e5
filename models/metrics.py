"""Pixel scores for change maps. Every ratio with a zero denominator is defined (see ``_ratio``)."""

from __future__ import annotations

import numpy as np

from eowatch.errors import InputError
from eowatch.legend import CHANGE_TYPES

__all__ = ["binary_scores", "flatten_scores", "per_type_scores", "roc_auc"]


def _ratio(num: float, den: float, empty: float) -> float:
    """``num / den``, or ``empty`` when ``den == 0`` (e.g. recall 1.0 when there is nothing to find)."""
    return float(num) / float(den) if den else float(empty)


def _mask(shape: tuple[int, ...], valid: np.ndarray | None) -> np.ndarray:
    if valid is None:
        return np.ones(shape, dtype=bool)
    if valid.shape != shape:
        raise InputError(f"valid mask shape {valid.shape} differs from prediction shape {shape}")
    return valid.astype(bool)


def binary_scores(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Confusion counts and scores of a binary change map over the ``valid`` pixels.

    Returns tp, fp, fn, tn (counts, as floats), precision, recall, f1, iou, kappa (Cohen's) and oa
    (overall accuracy). With nothing predicted and nothing true, precision, recall, f1 and iou are 1.0
    (a perfect empty map); precision is 0.0 when nothing is predicted but something is true, recall 0.0
    when something is predicted but nothing is true. Kappa is 1.0 when both maps agree everywhere and
    chance agreement is 1 (a constant map), and 0.0 for an empty selection of pixels.
    """
    if pred.shape != truth.shape:
        raise InputError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    keep = _mask(pred.shape, valid)
    p, t = pred.astype(bool)[keep], truth.astype(bool)[keep]
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size - tp - fp - fn)
    return {"tp": float(tp), "fp": float(fp), "fn": float(fn), "tn": float(tn), **_scores(tp, fp, fn, tn)}


def _scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    n = tp + fp + fn + tn
    nothing = tp + fp + fn == 0
    precision = _ratio(tp, tp + fp, 1.0 if nothing else 0.0)
    recall = _ratio(tp, tp + fn, 1.0 if nothing else 0.0)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn, 1.0)
    iou = _ratio(tp, tp + fp + fn, 1.0)
    oa = _ratio(tp + tn, n, 0.0)
    chance = _ratio((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), n * n, 0.0)
    if n == 0:
        kappa = 0.0
    elif chance == 1.0:
        kappa = 1.0 if oa == 1.0 else 0.0
    else:
        kappa = (oa - chance) / (1.0 - chance)
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou, "kappa": kappa, "oa": oa}


def per_type_scores(
    pred_type: np.ndarray, truth_type: np.ndarray, valid: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """Scores per change type (legend codes 1..), over the ``valid`` pixels.

    For each type name: ``n_truth`` / ``n_pred`` (pixel counts), ``recall_any`` (share of the type's true
    pixels predicted as any change), ``recall_type`` (predicted as that type), ``precision`` (share of the
    type's predictions that are truly that type) and ``f1`` (of precision and recall_type). Recalls are 1.0
    for a type with no true pixels, precision 1.0 for a type never predicted.
    """
    if pred_type.shape != truth_type.shape:
        raise InputError(f"prediction shape {pred_type.shape} differs from truth shape {truth_type.shape}")
    keep = _mask(pred_type.shape, valid)
    p, t = pred_type[keep], truth_type[keep]
    out: dict[str, dict[str, float]] = {}
    for code, name in CHANGE_TYPES.items():
        if code == 0:
            continue
        is_t, is_p = t == code, p == code
        n_truth, n_pred = int(is_t.sum()), int(is_p.sum())
        hit = int(np.count_nonzero(is_t & is_p))
        precision = _ratio(hit, n_pred, 1.0)
        recall_type = _ratio(hit, n_truth, 1.0)
        out[name] = {
            "n_truth": float(n_truth),
            "n_pred": float(n_pred),
            "recall_any": _ratio(np.count_nonzero(is_t & (p > 0)), n_truth, 1.0),
            "recall_type": recall_type,
            "precision": precision,
            "f1": _ratio(2 * hit, n_truth + n_pred, 1.0),
        }
    return out


def flatten_scores(scores: dict[str, object], prefix: str = "") -> dict[str, float]:
    """Nested score dicts as one flat ``{"a.b.c": value}`` dict (for model cards and logs)."""
    flat: dict[str, float] = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_scores(value, prefix=f"{name}."))
        else:
            flat[name] = float(value)
    return flat


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Threshold-free ROC AUC of scores: the probability that a random ``positive`` (e.g. a changed pixel)
    scores above a random ``negative``, ties counted as one half (Mann-Whitney U / (n_pos * n_neg)).

    Raises:
        InputError: either set is empty or holds a non-finite score.
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.sort(np.asarray(negative, dtype=np.float64).ravel())
    if pos.size == 0 or neg.size == 0:
        raise InputError(f"ROC AUC needs positives and negatives, got {pos.size} and {neg.size}")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise InputError("ROC AUC scores must be finite")
    below = np.searchsorted(neg, pos, side="left")
    not_above = np.searchsorted(neg, pos, side="right")
    return float(np.mean(below + 0.5 * (not_above - below)) / neg.size)
