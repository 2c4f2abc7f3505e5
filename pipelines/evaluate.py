"""Score a change cube against planted ground truth (the synthetic archive's ``truth/`` rasters).

Streams chunk by chunk and accumulates confusion counts, so memory stays flat for any region size.
Two views are scored for the model and for the unsupervised CVA baseline:

* ``per_pixel``: a pixel changed at any time in the run (what a change map shows);
* ``per_transition``: the change is attributed to the right pair of periods (stricter).

The headline target, "building and clearing", counts new-building and forest-clearing pixels as
positives and unchanged pixels as negatives; pixels of other change types (floods, crop rotation) are
left out of that score and reported per type instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import zarr
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from eowatch.legend import CHANGE_TYPES
from eowatch.models.confusion import class_scores, confusion_matrix, semantic_change_scores
from eowatch.models.labels import transition_labels
from eowatch.models.metrics import binary_scores
from eowatch.pipelines.cube import period_bounds
from eowatch.pipelines.grid import GridSpec
from eowatch.pipelines.spec import CubeSpec

TRUTH_LAYERS = ("change_type", "change_start", "change_end")
TARGET_TYPES = (1, 2)  # new_building, forest_clearing


def read_truth_window(truth_dir: Path, grid: GridSpec, ys: slice, xs: slice) -> dict[str, np.ndarray] | None:
    """Truth layers resampled (nearest) onto a window of ``grid``; None if the truth is absent."""
    out = {}
    for name in TRUTH_LAYERS:
        path = truth_dir / f"{name}.tif"
        if not path.exists():
            return None
        h, w = grid.shape
        with (
            rasterio.open(path) as src,
            WarpedVRT(
                src,
                crs=grid.crs,
                transform=grid.transform,
                width=w,
                height=h,
                resampling=Resampling.nearest,
                nodata=0,
            ) as vrt,
        ):
            window = Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
            out[name] = vrt.read(1, window=window)
    return out


class _Counts:
    def __init__(self) -> None:
        self.pred: list[np.ndarray] = []
        self.truth: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.tp = self.fp = self.fn = self.tn = 0

    def add(self, pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> None:
        p, t = pred[valid].astype(bool), truth[valid].astype(bool)
        self.tp += int(np.sum(p & t))
        self.fp += int(np.sum(p & ~t))
        self.fn += int(np.sum(~p & t))
        self.tn += int(np.sum(~p & ~t))

    def scores(self) -> dict[str, Any]:
        # binary_scores on a 2x2 summary reproduces the pooled confusion counts exactly.
        pred = np.array([1, 1, 0, 0], bool).repeat([self.tp, self.fp, self.fn, self.tn])
        truth = np.array([1, 0, 1, 0], bool).repeat([self.tp, self.fp, self.fn, self.tn])
        return binary_scores(pred, truth, None)


def evaluate_change(change_path: Path, spec: CubeSpec, truth_dir: Path) -> dict[str, Any] | None:
    """Precision/recall/F1 of the model and the CVA baseline against the planted truth."""
    cube = zarr.open_group(str(change_path), mode="r", zarr_format=3)
    bounds = period_bounds(spec)
    counts = {k: _Counts() for k in ("model_pixel", "cva_pixel", "model_transition", "cva_transition")}
    per_type = {code: {"truth_px": 0, "detected_px": 0, "typed_px": 0} for code in CHANGE_TYPES if code}
    n_types = max(CHANGE_TYPES) + 1
    semantic = np.zeros((n_types, n_types), np.int64)  # (truth type, predicted type) per transition
    for key in spec.grid.chunks():
        ys, xs = spec.grid.chunk_slices(key)
        truth = read_truth_window(truth_dir, spec.grid, ys, xs)
        if truth is None:
            return None
        labels = transition_labels(truth["change_type"], truth["change_start"], truth["change_end"], bounds)
        ever_type = truth["change_type"]
        mask = np.asarray(cube["change_mask"][:, ys, xs]).astype(bool)
        ctype = np.asarray(cube["change_type"][:, ys, xs])
        cva = np.asarray(cube["cva_mask"][:, ys, xs]).astype(bool)
        scored = np.isin(ever_type, (0, *TARGET_TYPES))
        truth_any = np.isin(ever_type, TARGET_TYPES)
        counts["model_pixel"].add(mask.any(0), truth_any, scored)
        counts["cva_pixel"].add(cva.any(0), truth_any, scored)
        scored_t = np.broadcast_to(scored, labels.shape)
        counts["model_transition"].add(mask, np.isin(labels, TARGET_TYPES), scored_t)
        counts["cva_transition"].add(cva, np.isin(labels, TARGET_TYPES), scored_t)
        semantic += confusion_matrix(np.where(mask, ctype, 0), labels, n_types)
        typed = np.where(mask, ctype, 0).max(0)
        for code, acc in per_type.items():
            sel = ever_type == code
            acc["truth_px"] += int(sel.sum())
            acc["detected_px"] += int((mask.any(0) & sel).sum())
            acc["typed_px"] += int((typed == code)[sel].sum())
    result: dict[str, Any] = {
        "scope": "new_building + forest_clearing vs unchanged pixels",
        "model": {
            "per_pixel": counts["model_pixel"].scores(),
            "per_transition": counts["model_transition"].scores(),
        },
        "cva_baseline": {
            "per_pixel": counts["cva_pixel"].scores(),
            "per_transition": counts["cva_transition"].scores(),
        },
        "per_type_recall": {
            CHANGE_TYPES[code]: {
                "truth_px": acc["truth_px"],
                "recall_any_change": _ratio(acc["detected_px"], acc["truth_px"]),
                "recall_right_type": _ratio(acc["typed_px"], acc["truth_px"]),
            }
            for code, acc in per_type.items()
        },
        "semantic": semantic_summary(semantic),
    }
    return result


def semantic_summary(cm: np.ndarray) -> dict[str, Any]:
    """Semantic change scores of a (truth type, predicted type) per-transition confusion matrix: SECOND's
    SeK and mIoU, OA, kappa, per-type F1/IoU, and the matrix itself (legend codes in order)."""
    names = {code: CHANGE_TYPES[code] for code in range(cm.shape[0])}
    scores = class_scores(cm, names)
    per_class = scores["per_class"]
    assert isinstance(per_class, dict)
    return {
        "scope": "every pixel and transition: no change or the planted change type",
        **{k: round(v, 4) for k, v in semantic_change_scores(cm).items()},
        "oa": round(float(scores["oa"]), 4),  # type: ignore[arg-type]
        "kappa": round(float(scores["kappa"]), 4),  # type: ignore[arg-type]
        "f1_by_type": {k: round(v["f1"], 4) for k, v in per_class.items()},
        "iou_by_type": {k: round(v["iou"], 4) for k, v in per_class.items()},
        "classes": [names[c] for c in sorted(names)],
        "confusion": cm.tolist(),
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None
