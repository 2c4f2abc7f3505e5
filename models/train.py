"""Training task for the siamese change model: data from ``dataset``, network from ``siamese``.

Reproducible: ``python -m eowatch.models.train --cube CUBE.zarr --truth TRUTH_DIR --out OUT --epochs N
--seed S`` (the card records the exact command). Deterministic on CPU for a fixed thread count.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from eowatch.errors import InputError

from .card import DEFAULT_BANDS, S1_BANDS, ModelCard, change_classes
from .dataset import IGNORE_INDEX, ChangeChipDataset, open_cube, read_truth
from .fit import BatchLoss, deterministic, fit_chips
from .labels import ever_changed, period_middle_days, transition_labels
from .metrics import binary_scores, flatten_scores, per_type_scores
from .predict import predict_change_series, season_days
from .siamese import SiameseChangeNet
from .weights import LoadedModel, load_model, save_model

__all__ = [
    "RECIPES",
    "TrainConfig",
    "best_threshold",
    "evaluate_block",
    "normalization_stats",
    "period_bounds",
    "train_change_arrays",
    "train_change_model",
    "train_change_sets",
]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of ``train_change_model`` (defaults: minutes on 2 CPU cores for 1000x1000 px)."""

    name: str = "siamese-s2s1-change"
    """Model name (file stem and registry key)."""
    version: str = "0.3.0"
    """Version recorded in the card."""
    season: bool = True
    """Give each date its period's season (``season.season_planes``: sine and cosine of the middle day of
    year), so a crop rotation's "bare -> green" in July -> August can differ from April -> May's growth."""
    bands: tuple[str, ...] = DEFAULT_BANDS
    """Cube variables fed per date, in order."""
    chip: int = 64
    """Training chip side (pixels)."""
    chips_per_epoch: int = 768
    """Chips drawn per epoch."""
    changed_fraction: float = 0.3
    """Share of chips centred on a changed pixel; the rest teach what unchanged land (phenology,
    harvests, residual clouds) looks like."""
    batch_size: int = 16
    """Chips per optimiser step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (cosine decay to zero)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    width: int = 32
    """Network width."""
    depth: int = 4
    """Encoder depth (3x3 convolutions)."""
    val_fraction: float = 0.2
    """Eastern share of the columns held out for validation."""
    threads: int = 2
    """Torch CPU threads (fixed for determinism)."""
    s1_dropout: float = 0.0
    """Probability that a training chip has no S1 on either date (``ChangeChipDataset``'s
    ``s1_dropout``): periods without S1 acquisitions, or optical-only input such as Landsat."""
    s1_dropout_per_date: bool = False
    """Draw ``s1_dropout`` for each date of a chip on its own (a month without S1 leaves one date of the
    transitions into and out of it without S1)."""
    class_weighting: bool = True
    """Weight the loss by inverse square-root class frequency. Without it the rare class (new buildings)
    was never predicted; the over-calling of change it causes is absorbed by the calibrated threshold."""

    gap_validation: bool = False
    """Validate (and calibrate the threshold) with S1 removed from every other date, so each transition
    has one date without S1: the condition a gap model (``ChangeSpec.gap_model``) serves. Both ways of
    choosing the dates (even or odd periods without S1) are pooled."""

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if min(self.chip, self.chips_per_epoch, self.batch_size, self.threads) < 1 or not self.lr > 0:
            raise InputError("chip, chips_per_epoch, batch_size, threads and lr must be positive")


#: The recipes of the shipped change models (``eowatch train NAME``): the change model, and its gap model,
#: trained with S1 missing on single dates and validated (threshold included) with S1 missing on every
#: other date.
RECIPES: dict[str, TrainConfig] = {
    "siamese-s2s1-change": TrainConfig(),
    "siamese-s2s1-gap-change": TrainConfig(
        name="siamese-s2s1-gap-change",
        version="0.1.0",
        s1_dropout=0.5,
        s1_dropout_per_date=True,
        gap_validation=True,
    ),
}


def period_bounds(times: np.ndarray) -> list[tuple[np.datetime64, np.datetime64]]:
    """Monthly periods ``[start, start + 1 month)`` (day precision) from the cube's period starts."""
    months = np.asarray(times).astype("datetime64[M]")
    return [(m.astype("datetime64[D]"), (m + 1).astype("datetime64[D]")) for m in months]


def normalization_stats(
    dataset: ChangeChipDataset, n_chips: int, seed: int
) -> dict[str, tuple[float, float]]:
    """NaN-aware per band (mean, std) over ``n_chips`` random raw chips of the dataset's columns."""
    rng = np.random.default_rng([seed, 7])
    n_trans, height = dataset.labels.shape[:2]
    c0, c1 = dataset.columns
    sums = np.zeros((len(dataset.bands), 3))
    for _ in range(n_chips):
        t = int(rng.integers(1, n_trans + 1))
        y0, x0 = int(rng.integers(0, height - dataset.chip + 1)), int(rng.integers(c0, c1 - dataset.chip + 1))
        raw = dataset.read_window(t, y0, x0).astype(np.float64)  # (2, C, h, w)
        finite = np.isfinite(raw)
        values = np.where(finite, raw, 0.0)
        sums += np.stack(
            [finite.sum(axis=(0, 2, 3)), values.sum(axis=(0, 2, 3)), (values**2).sum(axis=(0, 2, 3))], axis=1
        )
    stats = {}
    for band, (count, total, squares) in zip(dataset.bands, sums, strict=True):
        if count == 0:
            raise InputError(f"band {band} has no finite values in {n_chips} sampled chips")
        mean = total / count
        stats[band] = (float(mean), float(max(math.sqrt(max(squares / count - mean**2, 0.0)), 1e-6)))
    return stats


def _class_weights(datasets: Sequence[ChangeChipDataset], n_classes: int) -> torch.Tensor:
    """Inverse square-root frequency of the classes in this epoch's chips, mean weight 1 per pixel."""
    counts = np.zeros(n_classes)
    for dataset in datasets:
        for t, y0, x0 in dataset.positions:
            window = dataset.labels[t - 1, y0 : y0 + dataset.chip, x0 : x0 + dataset.chip]
            counts += np.bincount(window.ravel(), minlength=n_classes)[:n_classes]
    freq = counts / counts.sum()
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 1.0)
    weights /= (weights * freq).sum()
    return torch.tensor(np.minimum(weights, 50.0), dtype=torch.float32)


def _change_loss(weights: torch.Tensor) -> BatchLoss:
    """Class-weighted cross-entropy of a change-type model's logits (``IGNORE_INDEX`` left out)."""

    def loss(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        logits = model(batch["before"], batch["after"])
        return F.cross_entropy(logits, batch["label"], weight=weights, ignore_index=IGNORE_INDEX)

    return loss


def train_change_arrays(
    cube_path: str | Path,
    truth: Mapping[str, np.ndarray],
    out_dir: Path,
    epochs: int,
    seed: int,
    config: TrainConfig = TrainConfig(),
    command: str = "",
) -> tuple[LoadedModel, dict[str, float]]:
    """``train_change_model`` with the truth rasters given as arrays on the cube grid."""
    return train_change_sets([(cube_path, truth)], out_dir, epochs, seed, config, command)


def train_change_sets(
    sets: Sequence[tuple[str | Path, Mapping[str, np.ndarray]]],
    out_dir: Path,
    epochs: int,
    seed: int,
    config: TrainConfig = TrainConfig(),
    command: str = "",
) -> tuple[LoadedModel, dict[str, float]]:
    """Train on one or more (cube, truth) pairs, e.g. archives of several seeds (several "years").

    Each cube's eastern ``val_fraction`` of columns is held out; validation pools all held-out blocks,
    and the decision threshold is calibrated there. Normalisation statistics come from the first cube.
    """
    if not sets:
        raise InputError("no training cube given")
    with open_cube(sets[0][0]) as cube:
        bounds = period_bounds(cube["time"].values)
        width_px = cube.sizes["x"]
    split = round(width_px * (1.0 - config.val_fraction))
    per_set = max(config.chips_per_epoch // len(sets), 1)
    with deterministic(seed, config.threads):
        raw = ChangeChipDataset(
            sets[0][0],
            sets[0][1],
            bounds,
            config.chip,
            config.chips_per_epoch,
            seed,
            augment=True,
            bands=config.bands,
            columns=(0, split),
        )
        norm = normalization_stats(raw, n_chips=64, seed=seed)
        datasets = [
            ChangeChipDataset(
                cube_path,
                truth,
                bounds,
                config.chip,
                per_set,
                seed + i,
                augment=True,
                bands=config.bands,
                normalization=norm,
                columns=(0, split),
                changed_fraction=config.changed_fraction,
                season=config.season,
                s1_dropout=config.s1_dropout,
                s1_dropout_per_date=config.s1_dropout_per_date,
            )
            for i, (cube_path, truth) in enumerate(sets)
        ]
        model = SiameseChangeNet(
            len(config.bands) + 1,
            len(change_classes()),
            config.width,
            config.depth,
            season_channels=2 if config.season else 0,
        )
        history = _fit(model, datasets, epochs, config)
        names = ", ".join(f"{Path(c).parent.name}/{Path(c).name}" for c, _ in sets)
        card = _card(model, norm, config, names, bounds, split, command, epochs, seed)
        loaded = LoadedModel(model.eval(), card)
        gaps = (0, 1) if config.gap_validation else (None,)
        blocks = [_val_block(loaded, c, t, bounds, (split, width_px), g) for c, t in sets for g in gaps]
        scores = _pooled_scores(blocks)
    scores.update({f"train.loss_epoch{i + 1}": v for i, v in enumerate(history)})
    card = replace(card, decision_threshold=scores["val.decision_threshold"])
    final = save_model(model, _with_metrics(card, scores), Path(out_dir))
    return load_model(Path(out_dir) / f"{final.name}.card.json"), scores


def evaluate_block(
    model: LoadedModel,
    cube_path: str | Path,
    truth: Mapping[str, np.ndarray],
    bounds: list[tuple[np.datetime64, np.datetime64]],
    columns: tuple[int, int],
    threshold: float | None = None,
) -> dict[str, float]:
    """Scores of the model on pixel columns ``[c0, c1)`` over all transitions.

    A pixel is changed where ``1 - p(no_change) >= threshold`` (the rule the pipeline applies), typed by
    the most likely change class. ``threshold=None`` calibrates it here for the best binary F1 and
    reports it as ``val.decision_threshold``.

    ``val.binary.*``: change at the right transition vs not, pooled over transitions; ``val.<type>.*``:
    per-type scores, pooled; ``val.ever.*``: changed at any time vs never. Pixels without observations in
    either date of a transition are excluded. Input extends a halo west of ``c0`` so edges see context.
    """
    return _pooled_scores([_val_block(model, cube_path, truth, bounds, columns)], threshold)


def _val_block(
    model: LoadedModel,
    cube_path: str | Path,
    truth: Mapping[str, np.ndarray],
    bounds: list[tuple[np.datetime64, np.datetime64]],
    columns: tuple[int, int],
    s1_gap_parity: int | None = None,
) -> dict[str, np.ndarray]:
    """Change probability, most likely change type, labels and validity on a column block (T-1, y, x);
    with ``s1_gap_parity`` 0 or 1, the S1 bands of the even or odd periods are removed first."""
    c0, c1 = columns
    x0 = max(c0 - model.module.receptive_field // 2, 0)
    labels = transition_labels(truth["change_type"], truth["change_start"], truth["change_end"], bounds)
    with open_cube(cube_path) as cube:
        block = np.stack([cube[b].isel(x=slice(x0, c1)).values for b in model.card.bands], axis=1)
    if s1_gap_parity is not None:
        block[s1_gap_parity::2, [i for i, b in enumerate(model.card.bands) if b in S1_BANDS]] = np.nan
    observed = np.isfinite(block).any(axis=1)[:, :, c0 - x0 :]  # (T, y, x)
    days = season_days(model, period_middle_days(bounds))
    probs = predict_change_series(model, block, days=days)[..., c0 - x0 :]  # (T-1, K, y, x)
    return {
        "p_change": 1.0 - probs[:, 0],
        "type": (probs[:, 1:].argmax(axis=1) + 1).astype(np.uint8),
        "labels": labels[:, :, c0:c1],
        "valid": observed[:-1] & observed[1:],
    }


def _pooled_scores(
    blocks: Sequence[dict[str, np.ndarray]], threshold: float | None = None
) -> dict[str, float]:
    """Validation scores over several blocks side by side (same transitions and rows)."""
    joined = {k: np.concatenate([b[k] for b in blocks], axis=-1) for k in blocks[0]}
    p_change, labels, valid = joined["p_change"], joined["labels"], joined["valid"]
    if threshold is None:
        threshold = best_threshold(p_change, labels > 0, valid)
    pred = np.where(p_change >= threshold, joined["type"], 0).astype(np.uint8)
    scores = {
        "binary": binary_scores(pred > 0, labels > 0, valid),
        **per_type_scores(pred, labels, valid),
        "ever": binary_scores(ever_changed(pred) > 0, ever_changed(labels) > 0, valid.all(axis=0)),
    }
    return {**flatten_scores(scores, prefix="val."), "val.decision_threshold": float(threshold)}


def best_threshold(p_change: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Threshold on ``p_change`` with the best pooled F1 (ties: lowest), from 0.05 to 0.995."""
    p, t = p_change[valid], truth[valid]
    best, best_f1 = 0.5, -1.0
    for thr in [*np.round(np.arange(0.05, 0.951, 0.05), 2), 0.96, 0.97, 0.98, 0.99, 0.995]:
        f1 = binary_scores(p >= thr, t, None)["f1"]
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(thr), f1
    return best


def _fit(
    model: SiameseChangeNet, datasets: Sequence[ChangeChipDataset], epochs: int, config: TrainConfig
) -> list[float]:
    """AdamW with a one-cycle schedule and cross-entropy; returns the mean loss per epoch."""

    def epoch_loss(datasets: Sequence[ChangeChipDataset]) -> BatchLoss:
        weights = (
            _class_weights(datasets, model.n_classes)
            if config.class_weighting
            else torch.ones(model.n_classes, dtype=torch.float32)
        )
        return _change_loss(weights)

    return fit_chips(model, datasets, epochs, config.batch_size, config.lr, config.weight_decay, epoch_loss)


def _card(
    model: SiameseChangeNet,
    norm: dict[str, tuple[float, float]],
    config: TrainConfig,
    cube_path: str | Path,
    bounds: list,
    split: int,
    command: str,
    epochs: int,
    seed: int,
) -> ModelCard:
    periods = f"{bounds[0][0]}..{bounds[-1][1]} ({len(bounds)} monthly periods)"
    return ModelCard(
        name=config.name,
        version=config.version,
        architecture="SiameseChangeNet",
        architecture_args=model.config,
        bands=config.bands,
        normalization=norm,
        classes=change_classes(),
        receptive_field_px=model.receptive_field,
        patch_size=config.chip,
        training_data=(
            f"cube {cube_path}, {periods}; labels from the archive truth rasters "
            f"by eowatch.models.labels.transition_labels; columns >= {split} held out; "
            f"{epochs} epochs x {config.chips_per_epoch} chips of {config.chip} px, seed {seed}"
            + (
                f"; no S1 in {config.s1_dropout:.0%} of the "
                + ("chip dates, drawn per date" if config.s1_dropout_per_date else "chips")
                if config.s1_dropout > 0
                else ""
            )
            + (
                "; validated and calibrated with S1 removed from every other date"
                if config.gap_validation
                else ""
            )
        ),
        training_command=command or _command(cube_path, "TRUTH_DIR", "OUT_DIR", epochs, seed, config),
    )


def _with_metrics(card: ModelCard, scores: dict[str, float]) -> ModelCard:
    data = card.to_dict()
    data["metrics"] = scores
    return ModelCard.from_dict(data)


def _command(
    cube: str | Path, truth: str | Path, out: str | Path, epochs: int, seed: int, config: TrainConfig
) -> str:
    options = " ".join(
        f"--{f.name.replace('_', '-')} {getattr(config, f.name)}" for f in fields(config) if f.name != "bands"
    )
    return (
        f"python -m eowatch.models.train --cube {cube} --truth {truth} --out {out} --epochs {epochs} "
        f"--seed {seed} {options}"
    )


def train_change_model(
    cube_path: str | Path,
    truth_dir: Path,
    out_dir: Path,
    epochs: int,
    seed: int,
    config: TrainConfig = TrainConfig(),
    command: str | None = None,
) -> tuple[LoadedModel, dict[str, float]]:
    """Train the siamese change model on a cube and its truth rasters; save weights and card.

    Args:
        cube_path: analysis cube Zarr store (see ``dataset``).
        truth_dir: folder with ``change_type``, ``change_start`` and ``change_end`` GeoTIFFs on the cube's
            10 m grid (or a grid containing it; the cube's window is cut out by coordinates).
        out_dir: where ``<name>.safetensors`` and ``<name>.card.json`` are written.
        epochs: passes of ``config.chips_per_epoch`` chips.
        seed: seeds chips, augmentations and initial weights.
        config: hyper-parameters.
        command: the command that reproduces this training from the repository, recorded in the card
            (default: this module's own command line over the given paths).

    Returns:
        The saved model, reloaded (checksum verified), and the validation metrics on the held-out eastern
        block (flat keys, e.g. ``"val.binary.f1"``, ``"val.flooding.recall_type"``).
    """
    with open_cube(cube_path) as cube:
        truth = read_truth(Path(truth_dir), cube["x"].values, cube["y"].values)
    command = command or _command(cube_path, truth_dir, out_dir, epochs, seed, config)
    return train_change_arrays(cube_path, truth, out_dir, epochs, seed, config, command)


def _flag(text: str) -> bool:
    """``true``/``false`` (any case, or 1/0) on the command line; ``bool("False")`` would be True."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m eowatch.models.train --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("cube", "truth", "out"):
        parser.add_argument(f"--{flag}", required=True, type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    for f in fields(TrainConfig):
        if f.name != "bands":
            kind = _flag if isinstance(f.default, bool) else type(f.default)
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    args = parser.parse_args(argv)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "bands"})
    _, scores = train_change_model(args.cube, args.truth, args.out, args.epochs, args.seed, config)
    for key in sorted(scores):
        print(f"{key}: {scores[key]:.4f}")


if __name__ == "__main__":
    main()
