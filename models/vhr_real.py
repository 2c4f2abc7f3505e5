"""Real VHR change pairs (LEVIR-CD, DSIFN-CD samples in ``../shared/data/change``): reading and scoring.

Each folder holds ``A/<name>.png`` (earlier date), ``B/<name>.png`` (later date) and ``label/<name>.png``
(0 = no change, 255 = change), 8-bit RGB, 256 x 256 px; DSIFN also holds the published predictions of
ChangeFormerV6 and BIT (0/255), which check the metric code. Scores are **pooled**: the confusion counts of
all pairs of a dataset are summed before precision, recall, F1 and IoU are computed (as the published
numbers are).

The model runs at its card's resolution: each pair is resampled from the dataset's nominal ground sample
distance (LEVIR-CD 0.5 m, DSIFN-CD 2 m) to the card's pixel size (area mean when shrinking, bilinear when
enlarging), and the change probability is resampled back onto the label grid. The decision threshold is
the card's (calibrated on synthetic validation pairs, never on these files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eowatch.errors import InputError
from eowatch.operators.change import change_vector_magnitude, otsu_threshold, standardize_bands

from .metrics import binary_scores
from .vhr_change import predict_vhr_change
from .weights import LoadedModel

__all__ = [
    "REAL_DATASETS",
    "RealPairs",
    "cva_masks",
    "predict_pairs",
    "read_pairs",
    "read_published",
    "resample",
    "score",
    "split_folds",
]

#: Dataset key -> (folder under ``change/``, nominal ground sample distance in metres).
REAL_DATASETS: dict[str, tuple[str, float]] = {
    "levir": ("levir_samples", 0.5),
    "dsifn": ("dsifn_samples", 2.0),
}


@dataclass(frozen=True)
class RealPairs:
    """Labelled real pairs of one dataset, all of one size."""

    names: tuple[str, ...]
    """File names (``<name>.png``), sorted."""
    before: np.ndarray
    """``(N, 3, H, W)`` uint8 RGB of the earlier date."""
    after: np.ndarray
    """``(N, 3, H, W)`` uint8 RGB of the later date."""
    labels: np.ndarray
    """``(N, H, W)`` bool change reference."""
    gsd_m: float
    """Nominal pixel size (metres)."""

    def subset(self, index: Sequence[int]) -> RealPairs:
        """The pairs at positions ``index``."""
        idx = list(index)
        return RealPairs(
            tuple(self.names[i] for i in idx), self.before[idx], self.after[idx], self.labels[idx], self.gsd_m
        )


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def _mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 127


def read_pairs(folder: Path, gsd_m: float) -> RealPairs:
    """Every labelled pair of ``folder`` whose images and label share one size (others are skipped).

    Raises:
        InputError: no usable pair in the folder.
    """
    folder = Path(folder)
    names, before, after, labels = [], [], [], []
    for label_path in sorted((folder / "label").glob("*.png")):
        a_path, b_path = folder / "A" / label_path.name, folder / "B" / label_path.name
        if not (a_path.is_file() and b_path.is_file()):
            continue
        a, b, lab = _rgb(a_path), _rgb(b_path), _mask(label_path)
        if a.shape != b.shape or a.shape[1:] != lab.shape or (names and lab.shape != labels[0].shape):
            continue
        names.append(label_path.name)
        before.append(a)
        after.append(b)
        labels.append(lab)
    if not names:
        raise InputError(f"{folder} holds no labelled pair (A/, B/, label/ PNGs of one size)")
    return RealPairs(tuple(names), np.stack(before), np.stack(after), np.stack(labels), gsd_m)


def read_published(folder: Path, prediction_dir: str, names: Sequence[str]) -> np.ndarray:
    """``(N, H, W)`` bool published predictions (``<folder>/<prediction_dir>/<name>``, 0/255 PNGs)."""
    return np.stack([_mask(Path(folder) / prediction_dir / name) for name in names])


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, h, w)`` float to ``size``: area mean when shrinking, bilinear when enlarging."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if size[0] <= x.shape[-2]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def predict_pairs(model: LoadedModel, pairs: RealPairs) -> np.ndarray:
    """``(N, H, W)`` float32 probability of change on the label grid (see the module docstring)."""
    scale = pairs.gsd_m / model.card.resolution_m
    height, width = pairs.labels.shape[1:]
    grid = (max(round(height * scale), 1), max(round(width * scale), 1))
    out = []
    for before, after in zip(pairs.before, pairs.after, strict=True):
        images = resample(torch.from_numpy(np.stack([before, after]).astype(np.float32)), grid).numpy()
        probs = predict_vhr_change(model, images[0], images[1])
        change = torch.from_numpy(np.ascontiguousarray(probs[1:].sum(axis=0)))[None, None]
        out.append(resample(change, (height, width))[0, 0].numpy())
    return np.stack(out).astype(np.float32)


def cva_masks(pairs: RealPairs) -> np.ndarray:
    """Unsupervised baseline: change vector analysis of the per-image standardised RGB bands with an
    Otsu threshold per pair, ``(N, H, W)`` bool (at the native resolution)."""
    masks = []
    for before, after in zip(pairs.before, pairs.after, strict=True):
        magnitude = change_vector_magnitude(standardize_bands(before), standardize_bands(after))
        masks.append(magnitude > otsu_threshold(magnitude))
    return np.stack(masks)


def score(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pooled precision, recall, F1, IoU, kappa, OA and counts of boolean maps ``(N, H, W)``."""
    return binary_scores(pred, truth)


def split_folds(pairs: RealPairs) -> tuple[list[int], list[int]]:
    """Two folds of pair positions: sorted by name, alternately assigned (first, third, ... to fold 0)."""
    order = sorted(range(len(pairs.names)), key=lambda i: pairs.names[i])
    return order[0::2], order[1::2]
