"""Scores of VHR land-cover maps against labels, and the colour baseline they are compared with.

* **Scores**: confusion matrices (``models.confusion``) summed over every date of every scene, then OA,
  kappa, mIoU, macro F1 and per-class precision, recall, F1 and IoU (``confusion.class_scores``: mIoU
  over the classes present in the labels).
* **Baseline**: nearest centroid on per-pixel colour features (chromaticity ``r/(r+g+b)`` and
  ``g/(r+g+b)``, brightness ``(r+g+b)/765`` and the excess-green index ``(2g-r-b)/(r+g+b)``), each
  feature scaled by its standard deviation over the training pixels; the centroids are the class means
  of the training pixels (shipped beside the weights as ``<name>.rgb-centroids.json``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eowatch.errors import InputError
from eowatch.legend import VHR_LANDCOVER

from .confusion import class_scores, confusion_matrix
from .metrics import flatten_scores
from .vhr_landcover import classify, predict_vhr_landcover
from .vhr_landcover_data import LabelledScene
from .weights import LoadedModel

__all__ = [
    "ColourCentroids",
    "colour_features",
    "evaluate_scenes",
    "fit_centroids",
    "scene_confusion",
    "scores_of",
]

N_CLASSES = len(VHR_LANDCOVER)


def colour_features(images: np.ndarray) -> np.ndarray:
    """Colour features float32 ``(..., 4, H, W)`` of DN images ``(..., 3, H, W)`` (see the module doc)."""
    x = images.astype(np.float32, copy=False)
    r, g, b = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    total = np.maximum(r + g + b, 1.0)
    return np.stack([r / total, g / total, total / 765.0, (2 * g - r - b) / total], axis=-3)


@dataclass(frozen=True)
class ColourCentroids:
    """Nearest-centroid colour classifier (the baseline)."""

    centroids: dict[int, tuple[float, ...]]
    """Class code -> mean colour features of its training pixels (classes without pixels are absent)."""
    scale: tuple[float, ...]
    """Standard deviation of each feature over the training pixels (features are divided by it)."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class codes uint8 ``(..., H, W)`` of DN images ``(..., 3, H, W)``."""
        scale = np.array(self.scale, np.float32)[:, None, None]
        f = colour_features(images) / scale
        codes = sorted(self.centroids)
        dist = np.stack(
            [
                (((f - (np.array(self.centroids[c], np.float32)[:, None, None] / scale)) ** 2).sum(axis=-3))
                for c in codes
            ]
        )
        return np.array(codes, np.uint8)[dist.argmin(axis=0)]

    def to_json(self) -> str:
        """JSON text (``{"centroids": {code: [...]}, "scale": [...]}``)."""
        data = {"centroids": {str(k): list(v) for k, v in self.centroids.items()}, "scale": list(self.scale)}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> ColourCentroids:
        """Read a ``<name>.rgb-centroids.json`` file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(
                {int(k): tuple(float(x) for x in v) for k, v in data["centroids"].items()},
                tuple(float(x) for x in data["scale"]),
            )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"cannot read colour centroids {path}: {exc}") from exc


def fit_centroids(scenes: Sequence[LabelledScene], step: int = 7) -> ColourCentroids:
    """Class means and feature scales over every ``step``-th pixel of every date of ``scenes``."""
    feats, labels = [], []
    for scene in scenes:
        f = colour_features(scene.images[:, :, ::step, ::step])
        feats.append(f.transpose(1, 0, 2, 3).reshape(f.shape[1], -1))
        labels.append(scene.labels[:, ::step, ::step].ravel())
    x, y = np.concatenate(feats, axis=1).astype(np.float64), np.concatenate(labels)
    centroids = {
        int(c): tuple(float(v) for v in x[:, y == c].mean(axis=1)) for c in range(N_CLASSES) if (y == c).any()
    }
    return ColourCentroids(centroids, tuple(float(max(s, 1e-6)) for s in x.std(axis=1)))


def scene_confusion(
    model: LoadedModel, scene: LabelledScene, baseline: ColourCentroids | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Confusion matrices ``(K, K)`` int64 (rows truth) of the model and of the baseline over every date
    of ``scene`` (whole-image inference per date)."""
    model_cm = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    base_cm = np.zeros_like(model_cm) if baseline is not None else None
    for t in range(scene.images.shape[0]):
        image = scene.images[t]
        codes = classify(predict_vhr_landcover(model, image.astype(np.float32)))
        model_cm += confusion_matrix(codes, scene.labels[t], N_CLASSES)
        if baseline is not None and base_cm is not None:
            base_cm += confusion_matrix(baseline.predict(image), scene.labels[t], N_CLASSES)
    return model_cm, base_cm


def scores_of(cm: np.ndarray, prefix: str) -> dict[str, float]:
    """Flat scores (``<prefix>oa``, ``<prefix>miou``, ``<prefix>per_class.<class>.iou``, ...) of a matrix."""
    return flatten_scores(class_scores(cm, dict(VHR_LANDCOVER)), prefix=prefix)


def evaluate_scenes(
    model: LoadedModel, scenes: Sequence[LabelledScene], baseline: ColourCentroids | None, prefix: str
) -> dict[str, float]:
    """Pooled scores of the model (``<prefix>...``) and the baseline (``<prefix>baseline....``)."""
    model_cm = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    base_cm = np.zeros_like(model_cm)
    for scene in scenes:
        m, b = scene_confusion(model, scene, baseline)
        model_cm += m
        if b is not None:
            base_cm += b
    out = scores_of(model_cm, prefix)
    if baseline is not None:
        out.update(scores_of(base_cm, f"{prefix}baseline."))
    return out
