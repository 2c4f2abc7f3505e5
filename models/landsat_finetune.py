"""Two-fold fine-tuning check of an S2 change model on a real change pair (``landsat_real.ChangePair``).

The pair is split into its western and eastern halves. A copy of the model is fine-tuned on the labelled
pixels of one half (chips lying wholly inside that half, so it never sees the other half's pixels), its
decision threshold is chosen for the best F1 on that same half, and it calls the other half; the two
halves' out-of-fold calls are pooled and scored. The shipped weights are not changed.

The network is fed exactly as ``landsat_real.predict_pair`` feeds it (``harmonise``, bilinear upsampling
to the card's resolution, the card's normalisation and validity channel, the season planes), and the
loss is binary: the log-probability of "any change" (``1 - P(no change)``) against the labels, the
changed and unchanged pixels of a batch weighted equally. Augmentations: random 90° rotations and flips,
identical for both dates and the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from eowatch.errors import InputError

from .fit import deterministic, fit_chips
from .landsat_real import (
    ChangePair,
    image_halves,
    inputs_at_model_resolution,
    predict_pair,
    resolution_factor,
)
from .metrics import binary_scores, roc_auc
from .predict import preprocess, with_season
from .weights import LoadedModel, build_module

__all__ = ["FinetuneConfig", "PairChipDataset", "finetune_two_fold", "network_inputs"]

#: Label of pixels without a reference (or outside the fold) in the 10 m label map.
UNLABELLED = -1


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of the fine-tuning check (about half a minute per fold on 2 CPU cores)."""

    epochs: int = 8
    """Passes over freshly drawn chips."""
    chips_per_epoch: int = 128
    """Chips drawn per epoch, half centred on a changed pixel and half on an unchanged one."""
    chip: int = 64
    """Chip side at the model's resolution (pixels)."""
    batch_size: int = 16
    """Chips per optimiser step."""
    lr: float = 7.5e-4
    """Peak AdamW learning rate (a quarter of the training's 3e-3)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    threads: int = 2
    """Torch CPU threads (fixed for determinism)."""

    def __post_init__(self) -> None:
        if min(self.epochs, self.chips_per_epoch, self.chip, self.batch_size, self.threads) < 1:
            raise InputError("epochs, chips_per_epoch, chip, batch_size and threads must be positive")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")


def network_inputs(model: LoadedModel, pair: ChangePair) -> np.ndarray:
    """float32 ``(2, C', H * k, W * k)``: both dates as the network sees them at the card's resolution."""
    raw, days = inputs_at_model_resolution(model, pair)
    return with_season(model, preprocess(model.card, raw), days).astype(np.float32)


class PairChipDataset:
    """Chips of one column range of a pair at the model's resolution (a ``fit.ChipDataset``).

    Items: ``before``/``after`` float32 ``(C', chip, chip)`` and ``label`` int64 ``(chip, chip)`` (1 changed,
    0 unchanged, ``UNLABELLED`` elsewhere). Positions are drawn per epoch from ``seed`` and the epoch.
    """

    def __init__(
        self,
        inputs: np.ndarray,
        labels: np.ndarray,
        columns: tuple[int, int],
        config: FinetuneConfig,
        seed: int,
    ) -> None:
        c0, c1 = columns
        if c1 - c0 < config.chip or labels.shape[0] < config.chip:
            raise InputError(f"columns {columns} are narrower than a {config.chip} px chip")
        self.inputs, self.labels, self.columns, self.config, self.seed = inputs, labels, columns, config, seed
        inside = np.zeros(labels.shape, bool)
        inside[:, c0:c1] = True
        self.centres = [np.argwhere(inside & (labels == value)) for value in (1, 0)]
        if any(len(c) == 0 for c in self.centres):
            raise InputError(f"columns {columns} hold no changed or no unchanged labelled pixel")
        self.positions: list[tuple[int, int, int, bool]] = []
        self.set_epoch(0)

    def __len__(self) -> int:
        return self.config.chips_per_epoch

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch, 17])
        chip, (c0, c1), height = self.config.chip, self.columns, self.labels.shape[0]
        self.positions = []
        for i in range(self.config.chips_per_epoch):
            centres = self.centres[i % 2]
            y, x = centres[rng.integers(len(centres))]
            y0 = int(np.clip(y - chip // 2, 0, height - chip))
            x0 = int(np.clip(x - chip // 2, c0, c1 - chip))
            self.positions.append((y0, x0, int(rng.integers(4)), bool(rng.integers(2))))

    def __getitem__(self, index: int) -> dict[str, Any]:
        y0, x0, turns, flip = self.positions[index]
        window = (slice(y0, y0 + self.config.chip), slice(x0, x0 + self.config.chip))

        def geometry(a: np.ndarray) -> torch.Tensor:
            a = np.rot90(a, turns, axes=(-2, -1))
            return torch.from_numpy(np.ascontiguousarray(a[..., ::-1] if flip else a))

        return {
            "before": geometry(self.inputs[0][(slice(None), *window)]),
            "after": geometry(self.inputs[1][(slice(None), *window)]),
            "label": geometry(self.labels[window]).long(),
        }


def _binary_change_loss(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Balanced binary cross-entropy of ``P(change) = 1 - P(no change)`` over the labelled pixels."""
    logits = model(batch["before"], batch["after"])
    total = torch.logsumexp(logits, dim=1)
    log_change = torch.logsumexp(logits[:, 1:], dim=1) - total
    log_same = logits[:, 0] - total
    label = batch["label"]
    parts = [-log_change[label == 1], -log_same[label == 0]]
    return torch.stack([p.mean() for p in parts if p.numel()]).mean()


def finetune_two_fold(
    model: LoadedModel, pair: ChangePair, seed: int = 0, config: FinetuneConfig = FinetuneConfig()
) -> dict[str, float]:
    """Out-of-fold scores of the two-fold fine-tuning check (see the module docstring).

    Returns flat keys ``<pair.name>.finetuned_2fold.*``: binary scores of the pooled out-of-fold calls,
    ``auc`` of the pooled out-of-fold probabilities and ``threshold_fold<k>``.
    """
    from .train import best_threshold

    k = resolution_factor(pair, model)
    inputs = network_inputs(model, pair)
    labels10 = np.full(pair.changed.shape, UNLABELLED, np.int64)
    labels10[pair.unchanged], labels10[pair.changed] = 0, 1
    labels10 = np.repeat(np.repeat(labels10, k, axis=0), k, axis=1)
    called = np.zeros(pair.changed.shape, bool)
    p_out = np.zeros(pair.changed.shape, np.float32)
    out: dict[str, float] = {}
    for fold, (c0, c1) in enumerate(image_halves(pair)):
        data = PairChipDataset(inputs, labels10, (c0 * k, c1 * k), config, seed + fold)
        with deterministic(seed + fold, config.threads):
            tuned = build_module(model.card)
            tuned.load_state_dict(model.module.state_dict())
            tuned.requires_grad_(True)
            fit_chips(
                tuned,
                [data],
                config.epochs,
                config.batch_size,
                config.lr,
                config.weight_decay,
                lambda _: _binary_change_loss,
            )
            p = predict_pair(LoadedModel(tuned.eval().requires_grad_(False), model.card), pair)
        seen = np.zeros(pair.changed.shape, bool)
        seen[:, c0:c1] = True
        threshold = best_threshold(p, pair.changed, pair.labelled & seen)
        out[f"{pair.name}.finetuned_2fold.threshold_fold{fold}"] = threshold
        called[:, ~seen[0]] = p[:, ~seen[0]] >= threshold
        p_out[:, ~seen[0]] = p[:, ~seen[0]]
    scores = {
        **binary_scores(called, pair.changed, pair.labelled),
        "auc": roc_auc(p_out[pair.changed], p_out[pair.unchanged]),
    }
    out.update({f"{pair.name}.finetuned_2fold.{key}": float(v) for key, v in scores.items()})
    return out
