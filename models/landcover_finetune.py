"""Two-fold fine-tuning check of the S2 land-cover model on the real Slovenian patch.

The synthetic-only model calls almost all of the patch tree cover (docs/models.md). How much does a
little real supervision help? The patch's columns are split into a western and an eastern half; a copy of
the model is fine-tuned on the labelled pixels of one half (chips drawn within it, the training
augmentations) and maps the whole patch (the other half's imagery is context, never its labels); its
map is kept on the other half only. Both halves' out-of-fold maps together are scored as the headline
(``slovenia.finetuned_2fold.*``). The shipped weights are not changed: like LEVIR-CD and DSIFN-CD for
the VHR model, the patch is a fixture, never training data of a shipped model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .fit import deterministic
from .landcover import model_periods, predict_landcover
from .landcover_data import ChipSampler, LabelledCube
from .landcover_real import _indices, read_slovenia, score_classes, slovenia_truth
from .landcover_unet import LandCoverUNet
from .metrics import flatten_scores
from .train_landcover import LandCoverTrainConfig, _fit
from .weights import LoadedModel

__all__ = ["FINETUNE_CONFIG", "slovenia_crossfit"]

#: Fine-tuning of each fold: 32 px chips (a half is 50 px wide), 300 steps, a gentler peak lr.
FINETUNE_CONFIG = LandCoverTrainConfig(chip=32, steps=300, lr=1e-3)


def slovenia_crossfit(
    model: LoadedModel, folder: Path, seed: int = 0, config: LandCoverTrainConfig = FINETUNE_CONFIG
) -> dict[str, float]:
    """Out-of-fold scores of the model fine-tuned on each half of the Slovenian patch (flat keys under
    ``slovenia.finetuned_2fold.``; shrubland and no data are not scored, as in ``evaluate_slovenia``)."""
    patch = read_slovenia(folder, model.card.bands)
    truth = slovenia_truth(patch, model)
    cube = LabelledCube("slovenia", patch.composite[None], truth, np.zeros(1, np.int64))
    config = replace(config, bands=model.card.bands)
    half = int(0.5 * truth.shape[1])
    pred = np.full(truth.shape, -1, np.int64)
    folds = (((0.0, 0.5), slice(half, None)), ((0.5, 1.0), slice(0, half)))
    for k, (columns, held) in enumerate(folds):
        tuned = LandCoverUNet(**model.card.architecture_args)
        tuned.load_state_dict(model.module.state_dict())
        sampler = ChipSampler(
            [cube], config.chip, len(model.card.classes), columns=columns, periods=model_periods(model.card)
        )
        with deterministic(seed + k, config.threads):
            _fit(tuned, model.card, sampler, seed + k, config)
        loaded = LoadedModel(tuned.eval().requires_grad_(False), model.card)
        pred[:, held] = _indices(loaded, predict_landcover(loaded, patch.composite).codes)[:, held]
    return flatten_scores({"finetuned_2fold": score_classes(pred, truth, model)}, prefix="slovenia.")
