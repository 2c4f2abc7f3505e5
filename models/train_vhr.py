"""Training task of the VHR change model ``siamese-vhr-change``: synthetic archives in, weights and card out.

Reproducible from the repository, deterministic on CPU for a fixed thread count::

    python -m eowatch.models.train_vhr --workdir eowatch-train --out eowatch-train/vhr-model \\
        --balance-types --fresh-seeds 16,17,18 --real-data ../shared/data/change

(then copy ``<out>/siamese-vhr-change.*`` into ``models/weights``; ``--skip-training`` re-scores a model.)

1. Archives of seeds 1-11 (``vhr_archive_config``: 4 km, no Sentinel-1, four 1 m VHR dates from March to
   August 2026) are generated into ``--workdir`` (reused when present). Seeds 1-8 train; seeds 9-11 are
   the validation archives (pooled) where the decision threshold is calibrated. Seed 42 (the demo's
   archive, default config) is never used for training: it is the synthetic test set, with the fresh
   archives of ``--fresh-seeds``.
2. Chips of every pair of dates are augmented (``vhr_dataset``, ``vhr_augment``, ``vhr_synth``) and the
   network trained with class-weighted cross-entropy (AdamW, one-cycle schedule).
3. The model is scored on the validation archives, the test archive (``--eval-archive``) and, when
   ``--real-data`` is given, the LEVIR-CD and DSIFN-CD samples (with the CVA baseline and a 2-fold
   fine-tuning check); every score goes into the card.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from eowatch.archive import ArchiveConfig
from eowatch.archive.make import ARCHIVE_VERSION
from eowatch.errors import InputError

from .card import ClassInfo, ModelCard
from .fit import deterministic
from .metrics import binary_scores, flatten_scores
from .train import best_threshold
from .train_settings import ChipTrainSettings, seed_list
from .vhr_change import (
    VHR_ARCHITECTURE,
    VHR_BANDS,
    VHR_SENSOR,
    VHR_TASK,
    SiameseDiffUNet,
    predict_vhr_pairs,
)
from .vhr_data import VhrArchive, pair_label, read_vhr_archive
from .vhr_dataset import ChipSampling, RealChipDataset, VhrChipDataset, band_statistics
from .vhr_real import REAL_DATASETS, RealPairs, cva_masks, predict_pairs, read_pairs, score, split_folds
from .vhr_synth import Synthesis
from .weights import LoadedModel, load_model, save_model

__all__ = [
    "TRAIN_SEEDS",
    "VAL_SEED",
    "VAL_SEEDS",
    "VHR_DATES",
    "VhrTrainConfig",
    "crossfit_finetune",
    "evaluate_archive",
    "real_scores",
    "train_vhr",
    "vhr_archive_config",
]

TRAIN_SEEDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
VAL_SEED = 9
"""Validation archive of ``siamese-vhr-land-cover`` and of ``siamese-vhr-change`` 0.1.0."""
VAL_SEEDS: tuple[int, ...] = (9, 10, 11)
"""Validation archives of ``siamese-vhr-change`` (pooled; 0.1.0 had seed 9 alone, which holds no flood
seen by a VHR date: its threshold could not weigh floods)."""
_CHANGE_NAMES = {1: "new_building", 2: "forest_clearing", 3: "flooding", 4: "crop_rotation"}


@dataclass(frozen=True)
class VhrTrainConfig(ChipTrainSettings):
    """Hyper-parameters of ``train_vhr`` (defaults: 32 epochs take about 9 minutes on 2 idle CPU cores)."""

    name: str = "siamese-vhr-change"
    version: str = "0.5.1"
    change_weight: float = 2.0
    """Cross-entropy weight of the change class (no change: 1)."""
    dice_weight: float = 0.0
    """Weight of a soft Dice loss of the change class added to the cross-entropy (0: cross-entropy only;
    the decision threshold calibrated on the validation archive balances precision and recall)."""
    sampling: ChipSampling = field(default_factory=ChipSampling)
    """Chip size, sampling shares and augmentations."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.change_weight <= 0 or self.dice_weight < 0:
            raise InputError("change_weight must be > 0 and dice_weight >= 0")


VHR_DATES = 4
"""VHR dates of the training archives of ``siamese-vhr-land-cover`` and of ``siamese-vhr-change`` 0.1.0."""


def vhr_archive_config(seed: int, vhr_dates: int = VHR_DATES) -> ArchiveConfig:
    """Archive config of the VHR training archives: 4 km (the VHR area is 2 km x 2 km), no Sentinel-1,
    ``vhr_dates`` VHR dates spread evenly over March-August 2026 (6: about every 35 days, spring too)."""
    return ArchiveConfig(seed=seed, size_km=4.0, include_s1=False, vhr_dates=vhr_dates)


def ensure_vhr_archive(workdir: Path, seed: int, vhr_dates: int = VHR_DATES) -> Path:
    """Generate the VHR training archive of ``seed`` into ``workdir`` unless it is there
    (``vhr-archive-seed<seed>`` with the default four dates, ``vhr-archive-d<n>-seed<seed>`` otherwise)."""
    from eowatch.archive import make_archive

    tag = "" if vhr_dates == VHR_DATES else f"d{vhr_dates}-"
    out = Path(workdir) / f"vhr-archive-{tag}seed{seed}"
    make_archive(out, vhr_archive_config(seed, vhr_dates))
    return out


# --- training -----------------------------------------------------------------------------------------


def _loss(logits: torch.Tensor, label: torch.Tensor, config: VhrTrainConfig) -> torch.Tensor:
    weight = torch.tensor([1.0, config.change_weight], dtype=logits.dtype)
    ce = F.cross_entropy(logits, label, weight=weight)
    if not config.dice_weight:
        return ce
    p = logits.softmax(dim=1)[:, 1]
    t = (label == 1).to(p.dtype)
    dice = 1.0 - (2.0 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)
    return ce + config.dice_weight * dice


def fit(
    model: SiameseDiffUNet, data: Dataset, epochs: int, config: VhrTrainConfig, lr: float | None = None
) -> list[float]:
    """AdamW with a one-cycle schedule; ``data`` must have ``set_epoch``. Returns mean loss per epoch."""
    steps = max(epochs * math.ceil(len(data) / config.batch_size), 1)
    peak = lr or config.lr
    optimiser = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=peak, total_steps=steps, pct_start=0.1)
    history = []
    for epoch in range(epochs):
        data.set_epoch(epoch)  # type: ignore[attr-defined]
        model.train()
        started, losses = time.perf_counter(), []
        for batch in DataLoader(data, batch_size=config.batch_size, shuffle=False, num_workers=0):
            loss = _loss(model(batch["before"], batch["after"]), batch["label"], config)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.detach().item())
        history.append(float(np.mean(losses)))
        print(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} ({time.perf_counter() - started:.1f} s)")
    model.eval()
    return history


# --- evaluation on synthetic archives -----------------------------------------------------------------


def _archive_predictions(
    model: LoadedModel, archive: VhrArchive
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of dates (i < j): change probability, label and change type, ``(P, H, W)`` at 1 m."""
    n = len(archive.days)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    probs = predict_vhr_pairs(model, archive.images.astype(np.float32), pairs)[:, 1]
    ones = np.ones((archive.factor, archive.factor), np.uint8)
    labels = np.stack([np.kron(pair_label(archive, i, j), ones) for i, j in pairs]).astype(bool)
    types = np.broadcast_to(np.kron(archive.change_type, ones), labels.shape)
    return probs, labels, types


def evaluate_archive(
    model: LoadedModel,
    archive: VhrArchive | Sequence[VhrArchive],
    threshold: float | None = None,
    prefix: str = "synthetic.",
) -> dict[str, float]:
    """Pooled binary scores over every pair of dates of ``archive`` (or of several archives, pooled) at
    the card's (or a calibrated) threshold; per change type, its recall (share of its changed pixels
    called change) and false alarms (share of its pixels called change in pairs where their planted state
    is the same: a flood's pixels before and after it, a rotation's in every pair).

    ``threshold=None`` calibrates the threshold for the best pooled F1 and reports it as
    ``<prefix>threshold``.
    """
    archives = [archive] if isinstance(archive, VhrArchive) else list(archive)
    predictions = [_archive_predictions(model, a) for a in archives]
    p, truth, types = (np.concatenate([pred[k].reshape(-1) for pred in predictions]) for k in range(3))
    if threshold is None:
        threshold = best_threshold(p, truth, np.ones(truth.shape, bool))
    called = p >= threshold
    scores: dict[str, object] = {"binary": binary_scores(called, truth)}
    for code, name in _CHANGE_NAMES.items():
        of_type = types == code
        hit, quiet = truth & of_type, ~truth & of_type
        kind: dict[str, float] = {}
        if hit.any():
            kind.update(recall=float(called[hit].mean()), n_truth=float(hit.sum()))
        if quiet.any():  # its pixels in pairs where their state does not differ (rotations: always)
            kind.update(false_alarm=float(called[quiet].mean()))
        if kind:
            scores[name] = kind
    return {**flatten_scores(scores, prefix=prefix), f"{prefix}threshold": float(threshold)}


# --- real data ------------------------------------------------------------------------------------------


def real_scores(model: LoadedModel, root: Path) -> dict[str, float]:
    """Pooled scores of the model and of the CVA baseline on each real dataset under ``root``.

    Keys ``<dataset>.<metric>`` (model at the card's threshold) and ``<dataset>.cva.<metric>``.
    """
    out: dict[str, float] = {}
    for key, pairs in read_real(root).items():
        called = predict_pairs(model, pairs) >= model.card.decision_threshold
        out.update({f"{key}.{k}": v for k, v in score(called, pairs.labels).items()})
        out.update({f"{key}.cva.{k}": v for k, v in score(cva_masks(pairs), pairs.labels).items()})
    return out


def read_real(root: Path) -> dict[str, RealPairs]:
    """The real datasets present under ``root`` (``REAL_DATASETS``)."""
    return {
        key: read_pairs(Path(root) / folder, gsd)
        for key, (folder, gsd) in REAL_DATASETS.items()
        if (Path(root) / folder / "label").is_dir()
    }


def crossfit_finetune(
    model: LoadedModel,
    real: dict[str, RealPairs],
    config: VhrTrainConfig,
    seed: int,
    epochs: int = 12,
    samples: int = 256,
) -> dict[str, float]:
    """Two-fold fine-tuning check: fine-tune a copy of the model on one fold of every real dataset
    (``vhr_real.split_folds``), calibrate each dataset's decision threshold for the best F1 on that same
    fine-tuning fold, predict the other fold at it, and score each dataset's pooled out-of-fold
    predictions. No pair is ever predicted, nor a threshold chosen, by a model that saw it as a test
    pair; the shipped weights are not changed. Keys ``<dataset>.finetuned_2fold.<metric>`` and
    ``<dataset>.finetuned_2fold.threshold_fold<k>``."""
    folds = {key: split_folds(pairs) for key, pairs in real.items()}
    called: dict[str, np.ndarray] = {key: np.zeros(pairs.labels.shape, bool) for key, pairs in real.items()}
    thresholds: dict[str, float] = {}
    for k in range(2):
        tuned = SiameseDiffUNet(**model.card.architecture_args)
        tuned.load_state_dict(model.module.state_dict())
        train = [real[key].subset(folds[key][k]) for key in real]
        data = RealChipDataset(train, model.card, config.sampling, samples, seed + k)
        with deterministic(seed + k, config.threads):
            fit(tuned, data, epochs, config, lr=config.lr / 4)
        loaded = LoadedModel(tuned.eval().requires_grad_(False), model.card)
        for key, pairs in real.items():
            seen = pairs.subset(folds[key][k])
            p_seen = predict_pairs(loaded, seen)
            threshold = best_threshold(p_seen, seen.labels, np.ones(seen.labels.shape, bool))
            thresholds[f"{key}.finetuned_2fold.threshold_fold{k}"] = threshold
            held = folds[key][1 - k]
            called[key][held] = predict_pairs(loaded, pairs.subset(held)) >= threshold
    out = dict(thresholds)
    for key, pairs in real.items():
        out.update({f"{key}.finetuned_2fold.{m}": v for m, v in score(called[key], pairs.labels).items()})
    return out


# --- the whole task -------------------------------------------------------------------------------------


def _card(
    model: SiameseDiffUNet,
    norm: dict[str, tuple[float, float]],
    config: VhrTrainConfig,
    data: str,
    command: str,
) -> ModelCard:
    return ModelCard(
        name=config.name,
        version=config.version,
        architecture=VHR_ARCHITECTURE,
        architecture_args=model.config,
        bands=VHR_BANDS,
        normalization=norm,
        classes={0: ClassInfo("no_change", (0, 0, 0)), 1: ClassInfo("change", (230, 25, 75))},
        receptive_field_px=model.receptive_field,
        validity_channel=False,
        task=VHR_TASK,
        sensors=(VHR_SENSOR,),
        resolution_m=1.0,
        patch_size=config.sampling.chip,
        training_data=data,
        training_command=command,
    )


def train_vhr(
    train: Sequence[VhrArchive],
    val: Sequence[VhrArchive],
    out_dir: Path,
    epochs: int,
    seed: int,
    config: VhrTrainConfig = VhrTrainConfig(),
    command: str = "",
) -> tuple[LoadedModel, dict[str, float]]:
    """Train on the pairs of ``train``, calibrate the threshold on ``val`` (pooled), save weights and card.

    Returns the saved model, reloaded (checksum verified), and its scores (``val.*``, ``train.*``).
    """
    norm = band_statistics(train)
    with deterministic(seed, config.threads):
        model = SiameseDiffUNet(len(VHR_BANDS), 2, config.width, config.levels)
        data = VhrChipDataset(train, config.sampling, norm, config.chips_per_epoch, seed)
        history = fit(model, data, epochs, config)
    names, val_names = ", ".join(a.name for a in train), ", ".join(a.name for a in val)
    synthesis = config.sampling.synthesis
    drawn = "off" if synthesis is None else "on"
    if synthesis is not None and synthesis.site_p:
        drawn += f"; a share {synthesis.site_p} of the new houses drawn as construction sites"
    description = (
        f"VHR RGB pairs (1 m, every pair of dates) of synthetic archives "
        f"(manifest version {ARCHIVE_VERSION}) {names} (validation: {val_names}); "
        f"labels: planted state differs between the two dates (models.vhr_data); {epochs} epochs x "
        f"{config.chips_per_epoch} chips of {config.sampling.chip} px, seed {seed}; augmentation: zoom "
        f"{config.sampling.zoom}, drawn houses and trees with per-date sun and shadows "
        f"({drawn}), rotations/flips, per-date radiometric jitter"
        + ("; changed chips balanced over the change types" if config.sampling.balance_types else "")
    )
    card = _card(model, norm, config, description, command)
    losses = {f"train.loss_epoch{i + 1}": v for i, v in enumerate(history)}
    card = _calibrated(LoadedModel(model.requires_grad_(False), card), val, losses)
    final = save_model(model, card, Path(out_dir))
    return load_model(Path(out_dir) / f"{final.name}.card.json"), dict(card.metrics)


def _calibrated(model: LoadedModel, val: Sequence[VhrArchive], metrics: dict[str, float]) -> ModelCard:
    """``model.card`` with the threshold of the best pooled F1 on ``val`` and metrics ``val.*`` (at that
    threshold) plus ``metrics``."""
    scores = evaluate_archive(model, val, None, prefix="val.")
    return replace(model.card, decision_threshold=scores["val.threshold"], metrics={**scores, **metrics})


def recalibrate(model_dir: Path, val: Sequence[VhrArchive], config: VhrTrainConfig) -> LoadedModel:
    """Recalibrate the threshold of the model in ``model_dir`` on ``val`` as ``train_vhr`` does, with
    the inference code as it is now (weights untouched), and give its card ``config.version``: the card
    that the card's training command now writes."""
    from .weights import card_path

    path = card_path(model_dir, config.name)
    model = load_model(path)
    losses = {k: v for k, v in model.card.metrics.items() if k.startswith("train.")}
    card = _calibrated(LoadedModel(model.module, replace(model.card, version=config.version)), val, losses)
    path.write_text(card.to_json(), encoding="utf-8")
    return load_model(path)


def rescore(model_dir: Path, name: str, extra: dict[str, float]) -> LoadedModel:
    """Add ``extra`` scores to the card in ``model_dir`` (weights untouched) and reload the model."""
    from .weights import card_path

    path = card_path(model_dir, name)
    card = ModelCard.read(path)
    updated = replace(card, metrics={**card.metrics, **extra})
    path.write_text(updated.to_json(), encoding="utf-8")
    return load_model(path)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m eowatch.models.train_vhr --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("eowatch-train"))
    parser.add_argument("--out", type=Path, default=Path("eowatch-train/vhr-model"))
    parser.add_argument("--train-seeds", default=",".join(map(str, TRAIN_SEEDS)))
    parser.add_argument(
        "--val-seeds", default=",".join(map(str, VAL_SEEDS)), help="validation archives (pooled)"
    )
    parser.add_argument(
        "--eval-archive", type=Path, help="synthetic test archive (default: seed 42, generated)"
    )
    parser.add_argument("--real-data", type=Path, help="folder with levir_samples/ and dsifn_samples/")
    parser.add_argument(
        "--vhr-dates", type=int, default=VHR_DATES, help="VHR dates per training/validation archive (2-6)"
    )
    parser.add_argument(
        "--fresh-seeds",
        default="",
        help="more archives (never trained on) to score at the card's threshold: fresh.seed<k>.* in the card",
    )
    parser.add_argument(
        "--default-seeds",
        default="",
        help="archives of the default configuration (the demo's: 3 VHR dates) to score at the card's "
        "threshold: default.seed<k>.* in the card",
    )
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chips-per-epoch", type=int, default=VhrTrainConfig.chips_per_epoch)
    parser.add_argument("--no-synthesis", action="store_true", help="train on archive imagery only")
    parser.add_argument(
        "--site-p", type=float, default=0.0, help="share of new drawn houses that are construction sites"
    )
    parser.add_argument(
        "--road-p",
        type=float,
        default=0.0,
        help="share of chips given a drawn static road (labelled unchanged)",
    )
    parser.add_argument(
        "--balance-types",
        action="store_true",
        help="centre the changed chips on each planted change type equally often",
    )
    parser.add_argument(
        "--skip-training", action="store_true", help="only re-score the model in --out (weights untouched)"
    )
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="with --skip-training: recalibrate the threshold on the validation archives and give the "
        "card this code's version (after a change of the inference code)",
    )
    args = parser.parse_args(argv)
    seeds = seed_list(args.train_seeds)
    val_seeds = seed_list(args.val_seeds)
    if not val_seeds or set(val_seeds) & set(seeds):
        parser.error("--val-seeds must name at least one archive, none of them a training seed")
    if 42 in {*seeds, *val_seeds}:
        parser.error("seed 42 is the demo's held-out test archive; train and validate on other seeds")
    fresh, default = seed_list(args.fresh_seeds), seed_list(args.default_seeds)
    if set(fresh + default) & {*seeds, *val_seeds}:
        parser.error("--fresh-seeds and --default-seeds must not be training or validation seeds")
    synthesis = None if args.no_synthesis else Synthesis(site_p=args.site_p, roads_p=args.road_p)
    sampling = ChipSampling(synthesis=synthesis, balance_types=args.balance_types)
    config = VhrTrainConfig(chips_per_epoch=args.chips_per_epoch, sampling=sampling)
    command = "python -m eowatch.models.train_vhr " + shlex.join(sys.argv[1:] if argv is None else argv)
    val = [read_vhr_archive(ensure_vhr_archive(args.workdir, s, args.vhr_dates)) for s in val_seeds]
    extra: dict[str, float] = {}
    if args.skip_training:
        model = load_model(args.out / f"{config.name}.card.json")
        if args.recalibrate:  # val.* scored while recalibrating
            model = recalibrate(args.out, val, config)
            extra.update({k: v for k, v in model.card.metrics.items() if k.startswith("val.")})
        else:
            extra.update(evaluate_archive(model, val, model.card.decision_threshold, prefix="val."))
    else:
        train = [read_vhr_archive(ensure_vhr_archive(args.workdir, s, args.vhr_dates)) for s in seeds]
        model, _ = train_vhr(train, val, args.out, args.epochs, args.seed, config, command)
    extra.update(_test_scores(model, args, config))
    threshold = model.card.decision_threshold
    for seed in fresh:
        archive = read_vhr_archive(ensure_vhr_archive(args.workdir, seed, args.vhr_dates))
        extra.update(evaluate_archive(model, archive, threshold, prefix=f"fresh.seed{seed}."))
    for seed in default:
        archive = read_vhr_archive(_default_archive(args.workdir, seed))
        extra.update(evaluate_archive(model, archive, threshold, prefix=f"default.seed{seed}."))
    model = rescore(args.out, config.name, extra)
    for key in sorted(model.card.metrics):
        if not key.startswith("train.") and not key.endswith((".tp", ".fp", ".fn", ".tn")):
            print(f"{key}: {model.card.metrics[key]:.4f}")


def _default_archive(workdir: Path, seed: int) -> Path:
    """The archive of ``seed`` in the default configuration (the demo's), generated into ``workdir``."""
    from eowatch.archive import make_archive

    out = Path(workdir) / f"archive-seed{seed}"
    make_archive(out, ArchiveConfig(seed=seed))
    return out


def _test_scores(model: LoadedModel, args: argparse.Namespace, config: VhrTrainConfig) -> dict[str, float]:
    """Scores on the synthetic test archive and, when given, the real data."""
    test_dir = args.eval_archive
    if test_dir is None:
        test_dir = _default_archive(args.workdir, 42)
    out = evaluate_archive(model, read_vhr_archive(test_dir), model.card.decision_threshold)
    if args.real_data is not None:
        out.update(real_scores(model, args.real_data))
        out.update(crossfit_finetune(model, read_real(args.real_data), config, args.seed))
    return out


if __name__ == "__main__":
    main()
