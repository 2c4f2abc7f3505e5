"""Training chips (image, label) of VHR land cover drawn from labelled scenes held in memory.

Each epoch draws ``samples`` chips: a share centred on a pixel of a rare class (building, water, road;
the class drawn uniformly among those the scenes have), the rest anywhere (scenes weighted by area).
Augmentation keeps geometry honest: the zoom (read window 0.7-1.5 x the chip, resampled), the drawn
houses and trees (``vhr_landcover_synth``) and the 90-degree rotations and flips change image and label
identically; the radiometric jitter of ``vhr_augment`` changes the image only. Deterministic given the
seed and the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from eowatch.errors import InputError

from .vhr_augment import Radiometry, radiometric_jitter, rotate_flip
from .vhr_landcover_data import LabelledScene
from .vhr_landcover_synth import draw_labelled_objects
from .vhr_synth import Synthesis

__all__ = ["LandCoverSampling", "VhrLandCoverChips", "class_frequencies", "rgb_statistics"]

#: Classes whose pixels chips are centred on (building, water, road).
_RARE: tuple[int, ...] = (1, 3, 4)
#: Every ``_STRIDE``-th pixel (each axis) is a candidate chip centre of its class.
_STRIDE = 4


@dataclass(frozen=True)
class LandCoverSampling:
    """Where chips come from and how they are augmented."""

    chip: int = 128
    """Chip side (px) fed to the network."""
    rare_fraction: float = 0.5
    """Share of chips centred on a pixel of a rare class (building, water, road)."""
    zoom: tuple[float, float] = (0.7, 1.5)
    """Range of the read window side over the chip side (resampled to ``chip``): > 1 shrinks objects."""
    synthesis: Synthesis | None = field(
        default_factory=lambda: Synthesis(houses_p=0.5, trees_p=0.5, site_p=0.0)  # never construction sites
    )
    """Houses and trees with a sun and shadows drawn into chips (labelled); None: archive imagery only."""
    radiometry: Radiometry = field(default_factory=Radiometry)
    """Radiometric jitter per chip."""

    def __post_init__(self) -> None:
        if self.chip < 8 or not 0.0 <= self.rare_fraction <= 1.0:
            raise InputError("chip must be >= 8 and rare_fraction within 0..1")
        if not 0.25 <= self.zoom[0] <= self.zoom[1] <= 4.0:
            raise InputError(f"zoom must be an increasing range within 0.25..4, got {self.zoom}")


def rgb_statistics(scenes: Sequence[LabelledScene], step: int = 7) -> dict[str, tuple[float, float]]:
    """(mean, std) of the red, green and blue DN over every ``step``-th pixel of every image."""
    values = np.concatenate(
        [s.images[:, :, ::step, ::step].transpose(1, 0, 2, 3).reshape(3, -1) for s in scenes], axis=1
    ).astype(np.float64)
    return {
        band: (float(v.mean()), float(max(v.std(), 1e-6)))
        for band, v in zip(("red", "green", "blue"), values, strict=True)
    }


def class_frequencies(scenes: Sequence[LabelledScene], n_classes: int, step: int = 7) -> np.ndarray:
    """Share of each class over every ``step``-th labelled pixel, float64 ``(n_classes,)``."""
    counts = sum(
        np.bincount(s.labels[:, ::step, ::step].ravel(), minlength=256)[:n_classes].astype(np.float64)
        for s in scenes
    )
    return counts / max(float(counts.sum()), 1.0)


class VhrLandCoverChips(Dataset):
    """Augmented land-cover chips of labelled VHR scenes.

    Args:
        scenes: labelled scenes in memory (``vhr_landcover_data``).
        sampling: chip size, sampling shares and augmentations.
        normalization: per band ``(mean, std)`` in DN, applied last (as ``models.predict.preprocess``).
        samples: chips per epoch.
        seed: seed of positions and augmentations.
        augment: apply zoom, drawn objects, rotations/flips and radiometric jitter (False: plain chips).

    Items are dicts: ``image`` float32 ``(3, chip, chip)`` normalised, ``label`` int64 ``(chip, chip)``.
    """

    def __init__(
        self,
        scenes: Sequence[LabelledScene],
        sampling: LandCoverSampling,
        normalization: Mapping[str, tuple[float, float]],
        samples: int,
        seed: int,
        augment: bool = True,
    ) -> None:
        if not scenes:
            raise InputError("no labelled VHR scene given")
        small = [s.name for s in scenes if min(s.images.shape[-2:]) < sampling.chip]
        if small:
            raise InputError(f"scenes {small} are smaller than the {sampling.chip} px chip")
        self.scenes, self.sampling, self.samples, self.seed = list(scenes), sampling, samples, seed
        self.augment = augment
        self.mean = np.array([normalization[b][0] for b in ("red", "green", "blue")], np.float32)[
            :, None, None
        ]
        self.std = np.array([normalization[b][1] for b in ("red", "green", "blue")], np.float32)[
            :, None, None
        ]
        self.rare = {c: self._centres(c) for c in _RARE}
        self.rare = {c: v for c, v in self.rare.items() if v[0].size}
        area = np.array([s.labels.size for s in self.scenes], np.float64)
        self.scene_p = area / area.sum()
        self.set_epoch(0)

    def _centres(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate centres of class ``code``: (scene index, flat index into ``labels[:, ::S, ::S]``)."""
        scene_ids, flat = [], []
        for i, s in enumerate(self.scenes):
            hits = np.flatnonzero(s.labels[:, ::_STRIDE, ::_STRIDE] == code)
            scene_ids.append(np.full(hits.size, i, np.int32))
            flat.append(hits)
        return np.concatenate(scene_ids), np.concatenate(flat)

    def __len__(self) -> int:
        return self.samples

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's chips: ``(scene, date, centre row, centre col, zoom)``."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch, 0])
        classes = sorted(self.rare)
        rows = []
        for _ in range(self.samples):
            zoom = float(rng.uniform(*self.sampling.zoom)) if self.augment else 1.0
            if classes and rng.random() < self.sampling.rare_fraction:
                ids, flat = self.rare[classes[int(rng.integers(len(classes)))]]
                pick = int(rng.integers(ids.size))
                scene = self.scenes[int(ids[pick])]
                sub = scene.labels[:, ::_STRIDE, ::_STRIDE].shape
                t, y, x = np.unravel_index(int(flat[pick]), sub)
                cy = int(y) * _STRIDE + int(rng.integers(_STRIDE))
                cx = int(x) * _STRIDE + int(rng.integers(_STRIDE))
                rows.append((int(ids[pick]), int(t), cy, cx, zoom))
            else:
                s = int(rng.choice(len(self.scenes), p=self.scene_p))
                t_count, height, width = self.scenes[s].labels.shape
                rows.append(
                    (s, int(rng.integers(t_count)), int(rng.integers(height)), int(rng.integers(width)), zoom)
                )
        self.positions = rows

    def _window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw image ``(3, chip, chip)`` float32 DN and label ``(chip, chip)`` uint8 of chip ``index``."""
        s, t, cy, cx, zoom = self.positions[index]
        scene, chip = self.scenes[s], self.sampling.chip
        height, width = scene.labels.shape[-2:]
        size = int(min(round(chip * zoom), height, width))
        y0 = int(np.clip(cy - size // 2, 0, height - size))
        x0 = int(np.clip(cx - size // 2, 0, width - size))
        image = scene.images[t, :, y0 : y0 + size, x0 : x0 + size].astype(np.float32)
        label = scene.labels[t, y0 : y0 + size, x0 : x0 + size]
        if size != chip:
            # Area averaging when shrinking (no aliasing), bilinear when enlarging; labels: nearest centre.
            mode = "area" if size > chip else "bilinear"
            image = F.interpolate(
                torch.from_numpy(image)[None],
                size=(chip, chip),
                mode=mode,
                align_corners=None if size > chip else False,
            )[0].numpy()
            pick = np.minimum(((np.arange(chip) + 0.5) * size / chip).astype(int), size - 1)
            label = label[np.ix_(pick, pick)]
        return image, np.array(label, np.uint8)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, label = self._window(index)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, 1, index])
            if self.sampling.synthesis is not None:
                draw_labelled_objects(image, label, rng, self.sampling.synthesis)
            image, label = rotate_flip(image, label, rng)
            image = radiometric_jitter(image, rng, self.sampling.radiometry)
        x = (image - self.mean) / self.std
        return {
            "image": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            "label": torch.from_numpy(label.astype(np.int64)),
        }
