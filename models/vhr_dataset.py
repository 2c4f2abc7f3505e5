"""Training chips (before, after, label) of VHR pairs drawn from synthetic archives held in memory.

Each epoch draws ``samples`` chips: a share centred on pixels that change between the chosen pair of
dates, some pairs of one date with itself (no change at all, only radiometric differences), the rest
anywhere. Deterministic given the seed and the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from eowatch.errors import InputError

from .card import ModelCard
from .vhr_augment import Radiometry, radiometric_jitter, rotate_flip
from .vhr_data import VhrArchive, pair_label
from .vhr_real import RealPairs, resample
from .vhr_synth import Synthesis, draw_objects

__all__ = ["ChipSampling", "RealChipDataset", "VhrChipDataset", "band_statistics"]


@dataclass(frozen=True)
class ChipSampling:
    """Where chips come from and how they are augmented."""

    chip: int = 128
    """Chip side (px) fed to the network."""
    changed_fraction: float = 0.5
    """Share of chips centred on a pixel that changes between the chip's two dates."""
    same_date_p: float = 0.1
    """Share of chips pairing a date with itself (only radiometry and shadows differ)."""
    balance_types: bool = False
    """Centre the changed chips on each planted change type equally often (False: on every changed pixel
    equally often, so large clearings outnumber floods and buildings)."""
    zoom: tuple[float, float] = (0.7, 1.5)
    """Range of the read window side over the chip side (resampled to ``chip``): > 1 shrinks objects."""
    misregistration: int = 1
    """Largest shift (px, each axis) of the later date's window against the earlier one: real pairs are
    co-registered to a pixel or two at best, and buildings lean differently in each view."""
    synthesis: Synthesis | None = field(default_factory=Synthesis)
    """Houses and trees with per-date shadows drawn into the chips; None: archive imagery only."""
    radiometry: Radiometry = field(default_factory=Radiometry)
    """Per-date radiometric jitter."""

    def __post_init__(self) -> None:
        if self.chip < 8 or not 0.0 <= self.changed_fraction <= 1.0 or not 0.0 <= self.same_date_p <= 1.0:
            raise InputError("chip must be >= 8 and changed_fraction, same_date_p within 0..1")
        if not 0.25 <= self.zoom[0] <= self.zoom[1] <= 4.0:
            raise InputError(f"zoom must be an increasing range within 0.25..4, got {self.zoom}")


def band_statistics(archives: Sequence[VhrArchive], step: int = 7) -> dict[str, tuple[float, float]]:
    """(mean, std) of the red, green and blue DN over every ``step``-th pixel of every image."""
    values = np.concatenate(
        [a.images[:, :, ::step, ::step].transpose(1, 0, 2, 3).reshape(3, -1) for a in archives], axis=1
    ).astype(np.float64)
    return {
        band: (float(v.mean()), float(max(v.std(), 1e-6)))
        for band, v in zip(("red", "green", "blue"), values, strict=True)
    }


def _stats(
    normalization: Mapping[str, tuple[float, float]], bands: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std as float32 ``(C, 1, 1)`` arrays."""
    mean = np.array([normalization[b][0] for b in bands], np.float32)[:, None, None]
    std = np.array([normalization[b][1] for b in bands], np.float32)[:, None, None]
    return mean, std


class VhrChipDataset(Dataset):
    """Augmented chips of VHR pairs with their change label.

    Args:
        archives: VHR archives in memory (``vhr_data.read_vhr_archive``).
        sampling: chip size, sampling shares and augmentations.
        normalization: per band ``(mean, std)`` in DN, applied last (as ``models.predict.preprocess``).
        samples: chips per epoch.
        seed: seed of positions and augmentations.
        augment: apply zoom, synthesis, rotations/flips and radiometric jitter (False: plain chips).

    Items are dicts: ``before``/``after`` float32 ``(3, chip, chip)`` normalised, ``label`` int64
    ``(chip, chip)`` (1 = change).
    """

    def __init__(
        self,
        archives: Sequence[VhrArchive],
        sampling: ChipSampling,
        normalization: Mapping[str, tuple[float, float]],
        samples: int,
        seed: int,
        augment: bool = True,
    ) -> None:
        if not archives:
            raise InputError("no VHR archive given")
        self.archives, self.sampling, self.samples, self.seed = list(archives), sampling, samples, seed
        self.augment = augment
        self.mean, self.std = _stats(normalization, ("red", "green", "blue"))
        self.pairs = [
            (a, i, j)
            for a, arc in enumerate(self.archives)
            for i in range(len(arc.days))
            for j in range(i + 1, len(arc.days))
        ]
        self.labels = {(a, i, j): pair_label(self.archives[a], i, j) for a, i, j in self.pairs}
        self.changed = {key: np.flatnonzero(lab) for key, lab in self.labels.items()}
        self.changed_by_type = (
            _changed_by_type(self.archives, self.pairs, self.changed) if sampling.balance_types else {}
        )
        self.set_epoch(0)

    def __len__(self) -> int:
        return self.samples

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's chips: ``(archive, date i, date j, centre row, centre col, zoom, dy, dx)``."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch, 0])
        s = self.sampling
        with_change = [key for key in self.pairs if self.changed[key].size]
        kinds = sorted(self.changed_by_type)
        rows = []
        for _ in range(self.samples):
            draw = rng.random()
            zoom = rng.uniform(*s.zoom) if self.augment else 1.0
            if draw < s.changed_fraction and with_change:
                if s.balance_types:
                    found = self.changed_by_type[kinds[rng.integers(len(kinds))]]
                    p, cell = (int(v) for v in found[rng.integers(len(found))])
                    a, i, j = self.pairs[p]
                else:
                    a, i, j = with_change[rng.integers(len(with_change))]
                    cell = int(rng.choice(self.changed[(a, i, j)]))
                factor = self.archives[a].factor
                width10 = self.labels[(a, i, j)].shape[1]
                cy = (cell // width10) * factor + int(rng.integers(factor))
                cx = (cell % width10) * factor + int(rng.integers(factor))
            else:
                a, i, j = self.pairs[rng.integers(len(self.pairs))]
                if draw < s.changed_fraction + s.same_date_p:
                    j = i
                height, width = self.archives[a].images.shape[-2:]
                cy, cx = int(rng.integers(height)), int(rng.integers(width))
            shift = s.misregistration if self.augment else 0
            dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, 2))
            rows.append((a, i, j, cy, cx, zoom, dy, dx))
        self.positions = rows

    def _window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw pair ``(2, 3, chip, chip)`` float32 DN and label ``(chip, chip)`` uint8 of chip ``index``."""
        a, i, j, cy, cx, zoom, dy, dx = self.positions[index]
        archive, chip = self.archives[a], self.sampling.chip
        height, width = archive.images.shape[-2:]
        size = int(min(round(chip * zoom), height, width))
        y0 = int(np.clip(cy - size // 2, 0, height - size))
        x0 = int(np.clip(cx - size // 2, 0, width - size))
        y1, x1 = int(np.clip(y0 + dy, 0, height - size)), int(np.clip(x0 + dx, 0, width - size))
        images = np.stack(
            [
                archive.images[i, :, y0 : y0 + size, x0 : x0 + size],
                archive.images[j, :, y1 : y1 + size, x1 : x1 + size],
            ]
        ).astype(np.float32)
        label10 = self.labels[(a, min(i, j), max(i, j))] if i != j else np.zeros((1, 1), np.uint8)
        f = archive.factor
        rows = (y0 + np.arange(size)) // f if i != j else np.zeros(size, int)
        cols = (x0 + np.arange(size)) // f if i != j else np.zeros(size, int)
        label = label10[np.ix_(rows, cols)]
        if size != chip:
            # Area averaging when shrinking (no aliasing), bilinear when enlarging.
            mode = "area" if size > chip else "bilinear"
            resized = F.interpolate(
                torch.from_numpy(images),
                size=(chip, chip),
                mode=mode,
                align_corners=None if size > chip else False,
            )
            images = resized.numpy()
            pick = np.minimum(((np.arange(chip) + 0.5) * size / chip).astype(int), size - 1)
            label = label[np.ix_(pick, pick)]
        return images, np.ascontiguousarray(label)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        images, label = self._window(index)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, 1, index])
            if self.sampling.synthesis is not None:
                draw_objects(images, label, rng, self.sampling.synthesis)
            images, label = rotate_flip(images, label, rng)
            images = np.stack([radiometric_jitter(x, rng, self.sampling.radiometry) for x in images])
        x = (images - self.mean) / self.std
        return {
            "before": torch.from_numpy(np.ascontiguousarray(x[0], dtype=np.float32)),
            "after": torch.from_numpy(np.ascontiguousarray(x[1], dtype=np.float32)),
            "label": torch.from_numpy(label.astype(np.int64)),
        }


def _changed_by_type(
    archives: Sequence[VhrArchive], pairs: Sequence[tuple[int, int, int]], changed: Mapping[tuple, np.ndarray]
) -> dict[int, np.ndarray]:
    """For each planted change type with changed pixels: ``(n, 2)`` int64 rows (index in ``pairs``, flat
    10 m cell)."""
    found: dict[int, list[np.ndarray]] = {}
    for p, key in enumerate(pairs):
        cells = changed[key]
        kinds = archives[key[0]].change_type.reshape(-1)[cells]
        for kind in np.unique(kinds):
            picked = cells[kinds == kind]
            found.setdefault(int(kind), []).append(np.stack([np.full(picked.size, p), picked], axis=1))
    return {kind: np.concatenate(rows).astype(np.int64) for kind, rows in found.items()}


class RealChipDataset(Dataset):
    """Random chips of real pairs resampled to the model's resolution, with the geometric and radiometric
    augmentations of the synthetic chips (no drawn objects). Items as ``VhrChipDataset``'s."""

    def __init__(
        self,
        pairs: Sequence[RealPairs],
        model_card: ModelCard,
        sampling: ChipSampling,
        samples: int,
        seed: int,
    ) -> None:
        self.sampling, self.samples, self.seed = sampling, samples, seed
        self.mean, self.std = _stats(model_card.normalization, model_card.bands)
        self.items: list[tuple[np.ndarray, np.ndarray]] = []
        for group in pairs:
            scale = group.gsd_m / model_card.resolution_m
            for before, after, label in zip(group.before, group.after, group.labels, strict=True):
                size = (round(label.shape[0] * scale), round(label.shape[1] * scale))
                images = resample(torch.from_numpy(np.stack([before, after]).astype(np.float32)), size)
                lab = resample(torch.from_numpy(label[None, None].astype(np.float32)), size)[0, 0] >= 0.5
                self.items.append((images.numpy(), lab.numpy().astype(np.uint8)))
        if min(min(x.shape[-2:]) for x, _ in self.items) < sampling.chip:
            raise InputError(f"real pairs are smaller than the {sampling.chip} px chip")
        self.set_epoch(0)

    def __len__(self) -> int:
        return self.samples

    def set_epoch(self, epoch: int) -> None:
        """Fix this epoch's seed (chips are drawn per item from it)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, 2, index])
        images, label = self.items[int(rng.integers(len(self.items)))]
        chip = self.sampling.chip
        y0 = int(rng.integers(images.shape[-2] - chip + 1))
        x0 = int(rng.integers(images.shape[-1] - chip + 1))
        x = images[:, :, y0 : y0 + chip, x0 : x0 + chip].copy()
        lab = label[y0 : y0 + chip, x0 : x0 + chip].copy()
        x, lab = rotate_flip(x, lab, rng)
        x = (
            np.stack([radiometric_jitter(d, rng, self.sampling.radiometry) for d in x]) - self.mean
        ) / self.std
        return {
            "before": torch.from_numpy(np.ascontiguousarray(x[0], np.float32)),
            "after": torch.from_numpy(np.ascontiguousarray(x[1], np.float32)),
            "label": torch.from_numpy(lab.astype(np.int64)),
        }
