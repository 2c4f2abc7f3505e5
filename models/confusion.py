"""Confusion matrices and the scores read from them: OA, kappa, per-class precision/recall/F1/IoU,
mIoU, and the semantic change scores of SECOND (mIoU of change/no-change and SeK), plus a picture.

Pure numpy (and PIL for the picture). A confusion matrix here is ``int64 (K, K)`` with rows = truth
class and columns = predicted class; class 0 is "no change" for the semantic change scores. Counts
add up over chunks, so a whole region is scored without holding it in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from eowatch.errors import InputError

__all__ = [
    "class_scores",
    "confusion_matrix",
    "render_confusion",
    "semantic_change_confusion",
    "semantic_change_f1",
    "semantic_change_scores",
]


def confusion_matrix(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Counts ``(n_classes, n_classes)`` int64 of (truth, pred) over ``valid`` pixels.

    Pixels whose truth or prediction lies outside ``0..n_classes-1`` (nodata, unlabelled) are left out.
    """
    if pred.shape != truth.shape:
        raise InputError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    p, t = pred.astype(np.int64).ravel(), truth.astype(np.int64).ravel()
    keep = (p >= 0) & (p < n_classes) & (t >= 0) & (t < n_classes)
    if valid is not None:
        if valid.shape != pred.shape:
            raise InputError(f"valid mask shape {valid.shape} differs from prediction shape {pred.shape}")
        keep &= valid.astype(bool).ravel()
    flat = np.bincount(t[keep] * n_classes + p[keep], minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _kappa(cm: np.ndarray) -> float:
    n = float(cm.sum())
    if n == 0:
        return 0.0
    oa = float(np.trace(cm)) / n
    chance = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / (n * n)
    if chance >= 1.0:
        return 1.0 if oa == 1.0 else 0.0
    return (oa - chance) / (1.0 - chance)


def class_scores(cm: np.ndarray, names: Mapping[int, str]) -> dict[str, object]:
    """OA, Cohen's kappa, mIoU and macro F1 (over classes present in the truth), and per class
    ``n_truth``, ``n_pred``, ``precision``, ``recall``, ``f1``, ``iou`` (1.0 where undefined: a class never
    predicted has precision 1, an absent class recall 1)."""
    n = int(cm.sum())
    out: dict[str, object] = {
        "n": n,
        "oa": float(np.trace(cm)) / n if n else 0.0,
        "kappa": _kappa(cm),
    }
    ious, f1s = [], []
    per_class = {}
    for code, name in sorted(names.items()):
        hit, n_t, n_p = int(cm[code, code]), int(cm[code].sum()), int(cm[:, code].sum())
        f1 = 2 * hit / (n_t + n_p) if n_t + n_p else 1.0
        iou = hit / (n_t + n_p - hit) if n_t + n_p - hit else 1.0
        if n_t:
            ious.append(iou)
            f1s.append(f1)
        per_class[name] = {
            "n_truth": n_t,
            "n_pred": n_p,
            "precision": hit / n_p if n_p else 1.0,
            "recall": hit / n_t if n_t else 1.0,
            "f1": f1,
            "iou": iou,
        }
    out["miou"] = float(np.mean(ious)) if ious else 0.0
    out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0
    out["per_class"] = per_class
    return out


def semantic_change_scores(cm: np.ndarray) -> dict[str, float]:
    """SECOND's semantic change scores of a confusion matrix whose class 0 is "no change".

    - ``iou_nochange`` and ``iou_change``: IoU of the binary no-change / change maps; ``miou`` their mean;
    - ``sek``: the separated kappa, Cohen's kappa over the matrix with its (no change, no change) cell
      zeroed (so the dominant agreement on unchanged pixels does not inflate it), times
      ``exp(iou_change - 1)`` (Yang et al. 2021, "Asymmetric Siamese Networks for Semantic Change
      Detection in Aerial Images").
    """
    cm = cm.astype(np.float64)
    total = cm.sum()
    nc = cm[0, 0]
    iou_nc = nc / (cm[0].sum() + cm[:, 0].sum() - nc) if total else 1.0
    changed_agree = cm[1:, 1:].sum()
    iou_c = changed_agree / (total - nc) if total - nc else 1.0
    q = cm.copy()
    q[0, 0] = 0.0
    s = q.sum()
    if s == 0:
        kappa = 1.0
    else:
        rho = np.trace(q) / s
        eta = float((q.sum(axis=0) * q.sum(axis=1)).sum()) / (s * s)
        kappa = (rho - eta) / (1 - eta) if eta < 1 else (1.0 if rho == 1 else 0.0)
    return {
        "iou_nochange": float(iou_nc),
        "iou_change": float(iou_c),
        "miou": float((iou_nc + iou_c) / 2),
        "sek": float(kappa * math.exp(iou_c - 1.0)),
    }


def render_confusion(cm: np.ndarray, names: Mapping[int, str], path: Path, title: str = "") -> Path:
    """A PNG of the confusion matrix: rows truth, columns prediction, each cell shaded by its share of
    its truth row (recall) and labelled with its count; the class names on both axes."""
    from PIL import Image, ImageDraw, ImageFont

    labels = [names[c] for c in sorted(names)]
    k = len(labels)
    cell, margin_l, margin_t = 96, 150, 80 if title else 56
    width, height = margin_l + k * cell + 20, margin_t + k * cell + 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    if title:
        draw.text((10, 8), title, fill="black", font=font)
    draw.text((margin_l, margin_t - 40), "predicted (columns)", fill="black", font=font)
    draw.text((10, margin_t - 16), "truth (rows)", fill="black", font=font)
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    for j, name in enumerate(labels):
        draw.text((margin_l + j * cell + 3, margin_t - 22), name[:15], fill="black", font=font)
    for i, name in enumerate(labels):
        y = margin_t + i * cell
        draw.text((10, y + cell // 2 - 6), name[:22], fill="black", font=font)
        for j in range(k):
            x = margin_l + j * cell
            v = float(share[i, j])
            colour = (
                (round(255 - 200 * v), round(255 - 130 * v), 255)
                if i != j
                else (
                    round(255 - 200 * v),
                    255,
                    round(255 - 200 * v),
                )
            )
            draw.rectangle([x, y, x + cell - 2, y + cell - 2], fill=colour, outline=(200, 200, 200))
            text = f"{int(cm[i, j]):,}"
            draw.text((x + 4, y + cell // 2 - 12), text, fill="black", font=font)
            draw.text((x + 4, y + cell // 2 + 2), f"{100 * v:.0f} %", fill=(60, 60, 60), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def semantic_change_confusion(
    pred_from: np.ndarray,
    pred_to: np.ndarray,
    truth_from: np.ndarray,
    truth_to: np.ndarray,
    n_classes: int,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """SECOND's confusion matrix of semantic change maps: the from-maps' and the to-maps' (truth, pred)
    counts added into one ``(n_classes, n_classes)`` int64 matrix, as SECOND's ``Eval_SCD`` pools the
    maps of both dates. Class 0 is "no change" and must be 0 in both maps wherever nothing changed."""
    return confusion_matrix(pred_from, truth_from, n_classes, valid) + confusion_matrix(
        pred_to, truth_to, n_classes, valid
    )


def semantic_change_f1(cm: np.ndarray) -> float:
    """SECOND's ``Fscd``: harmonic mean of the precision and recall of changed pixels with the right class
    (diagonal of the changed classes over the predicted, resp. true, changed pixels); 0.0 when undefined."""
    cm = cm.astype(np.float64)
    hits = float(np.trace(cm[1:, 1:]))
    pred_changed, true_changed = float(cm[:, 1:].sum()), float(cm[1:, :].sum())
    if not hits or not pred_changed or not true_changed:
        return 0.0
    precision, recall = hits / pred_changed, hits / true_changed
    return 2 * precision * recall / (precision + recall)
