"""Training task of the crop-type model: labelled pixel series from analysis cubes, L-TAE, card, scores.

Reproducible: ``python -m eowatch.models.train_croptype --workdir eowatch-train --archive-seeds 1,2,3,4
--epochs 30 --seed 0`` (archives and cubes are generated into ``--workdir`` when absent; the card records
the exact command). Deterministic on CPU for a fixed thread count.

Labels: pixels whose planted land cover is the same on the first and last day and that carry no planted
change, mapped to the crop legend by the card's ``eowatch_landcover`` table. Each cube's eastern
``val_fraction`` of columns is held out for validation. Augmentations are the honest ones for monthly
composites (a shift by days cannot be simulated): random month dropout (whole steps, or S2 alone as a
cloudy month), S1 dropout, per-sample optical gain, per-sample S1 level offset and per-value noise.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from eowatch.errors import InputError

from .card import DEFAULT_BANDS, ModelCard
from .croptype import (
    CROP_CLASSES,
    LABEL_MAPPING,
    NODATA_CLASS,
    S1_BANDS,
    S2_BANDS,
    centroids_path,
    fit_ndvi_centroids,
    load_centroids,
    multiclass_scores,
    ndvi,
    predict_croptype_pixels,
    predict_ndvi_centroids,
    save_centroids,
    step_features,
)
from .dataset import open_cube
from .fit import deterministic
from .metrics import flatten_scores
from .stable_landcover import landcover_to_crop, read_landcover
from .temporal import LTAEClassifier
from .weights import LoadedModel, load_model, record_metrics, save_model

__all__ = ["CropTrainConfig", "evaluate_synthetic", "sample_cube", "train_croptype_sets"]


@dataclass(frozen=True)
class CropTrainConfig:
    """Hyper-parameters of the crop-type training (defaults: a few minutes on 2 CPU cores)."""

    name: str = "crop-type-ltae"
    """Model name (file stem and registry key)."""
    version: str = "0.1.0"
    """Version recorded in the card."""
    bands: tuple[str, ...] = DEFAULT_BANDS
    """Cube variables per step, in order."""
    per_landcover: int = 3000
    """Training pixels drawn per archive land-cover class and cube (classes are balanced this way)."""
    val_fraction: float = 0.2
    """Eastern share of each cube's columns held out for validation."""
    batch_size: int = 512
    """Pixels per optimiser step."""
    lr: float = 2e-3
    """Peak AdamW learning rate (one-cycle schedule)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    d_model: int = 64
    """L-TAE embedding width."""
    n_head: int = 8
    """L-TAE heads."""
    d_k: int = 8
    """L-TAE key width per head."""
    hidden: int = 64
    """Classification MLP width."""
    step_dropout: float = 0.25
    """Probability that a month is dropped entirely (both sensors)."""
    cloud_dropout: float = 0.2
    """Probability that a month's S2 is dropped (a cloudy month; S1 stays)."""
    s1_dropout: float = 0.2
    """Probability that a sample has no S1 at all."""
    gain: float = 0.1
    """Per-sample optical gain drawn from ``1 ± gain``."""
    s1_offset_db: float = 2.0
    """Per-sample, per-polarisation S1 level offset drawn from ``± s1_offset_db`` dB: absolute backscatter
    differs by that much between processings (gamma0 RTC vs sigma0, incidence angle, orbit), and the
    archive's crops at full canopy sit ~2 dB below real ones in VH."""
    noise: float = 0.05
    """Per-value noise, in units of the band's standard deviation."""
    threads: int = 1
    """Torch CPU threads (fixed for determinism). One: the network is small, and on a loaded 2-core
    machine two threads spin-wait and were 20x slower per step here."""

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.gain < 0 or self.noise < 0 or self.s1_offset_db < 0:
            raise InputError("gain, noise and s1_offset_db must be >= 0")
        for p in (self.step_dropout, self.cloud_dropout, self.s1_dropout):
            if not 0.0 <= p < 1.0:
                raise InputError(f"dropout probabilities must be in [0, 1), got {p}")
        if min(self.per_landcover, self.batch_size, self.threads) < 1 or not self.lr > 0:
            raise InputError("per_landcover, batch_size, threads and lr must be positive")

    @property
    def inputs_per_step(self) -> tuple[str, ...]:
        """Channels per step: the bands, NDVI and the two observation flags."""
        return (*self.bands, "ndvi", "s2_valid", "s1_valid")


def sample_cube(
    cube_path: Path,
    truth_dir: Path,
    bands: Sequence[str],
    columns: tuple[int, int],
    per_landcover: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``per_landcover`` random labelled pixels per land-cover class from columns ``[c0, c1)``.

    Returns ``raw`` float32 ``(N, T, B)``, crop class codes int64 ``(N,)`` and months int64 ``(T,)``.
    ``per_landcover <= 0`` takes every labelled pixel.
    """
    with open_cube(cube_path) as cube:
        cover = read_landcover(truth_dir, cube["x"].values, cube["y"].values)[:, columns[0] : columns[1]]
        months = cube["time"].values.astype("datetime64[M]").astype(np.int64) % 12 + 1
        rng = np.random.default_rng([seed, 11])
        picks = []
        for code in np.unique(cover[cover > 0]):
            rows, cols = np.nonzero(cover == code)
            take = rng.permutation(len(rows))[: per_landcover if per_landcover > 0 else None]
            picks.append(np.stack([rows[take], cols[take]], axis=1))
        if not picks:
            raise InputError(f"no labelled pixels in {cube_path} columns {columns}")
        pix = np.concatenate(picks)
        pix = pix[np.lexsort((pix[:, 1], pix[:, 0]))]
        block = np.stack(
            [cube[b].isel(x=slice(*columns)).values[:, pix[:, 0], pix[:, 1]] for b in bands], axis=-1
        )  # (T, N, B)
    labels = landcover_to_crop(cover[pix[:, 0], pix[:, 1]])
    return np.ascontiguousarray(block.transpose(1, 0, 2).astype(np.float32)), labels, months.astype(np.int64)


def _normalization(raw: np.ndarray, bands: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per band and NDVI (mean, std) over the finite training values."""
    stats = {}
    values = {b: raw[..., i] for i, b in enumerate(bands)}
    values["ndvi"] = ndvi(values["red"], values["nir"])
    for name, v in values.items():
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise InputError(f"input {name} has no finite training values")
        stats[name] = (float(v.mean()), float(max(v.std(), 1e-6)))
    return stats


def _augment(
    raw: np.ndarray,
    config: CropTrainConfig,
    norm: Mapping[str, tuple[float, float]],
    rng: np.random.Generator,
) -> np.ndarray:
    """A randomly degraded copy of a batch of raw series ``(N, T, B)`` (see the module docstring)."""
    out = raw.copy()
    n, t, _ = out.shape
    s2 = [i for i, b in enumerate(config.bands) if b in S2_BANDS]
    s1 = [i for i, b in enumerate(config.bands) if b in S1_BANDS]
    std = np.array([norm[b][1] for b in config.bands], dtype=np.float32)
    out += rng.normal(0.0, config.noise, out.shape).astype(np.float32) * std
    out[:, :, s2] *= rng.uniform(1 - config.gain, 1 + config.gain, (n, 1, 1)).astype(np.float32)
    cloudy = rng.random((n, t)) < config.cloud_dropout
    out[:, :, s2] = np.where(cloudy[..., None], np.nan, out[:, :, s2])
    out[:, :, s1] += rng.uniform(-config.s1_offset_db, config.s1_offset_db, (n, 1, len(s1))).astype(
        np.float32
    )
    no_s1 = rng.random(n) < config.s1_dropout
    out[:, :, s1] = np.where(no_s1[:, None, None], np.nan, out[:, :, s1])
    dropped = rng.random((n, t)) < config.step_dropout
    dropped[np.arange(n), rng.integers(0, t, n)] = False  # keep at least one month
    out[dropped] = np.nan
    return out


def _class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    freq = counts / counts.sum()
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    return torch.tensor(weights / (weights * freq).sum(), dtype=torch.float32)


def _fit(
    model: LTAEClassifier,
    card: ModelCard,
    raw: np.ndarray,
    labels: np.ndarray,
    months: np.ndarray,
    epochs: int,
    seed: int,
    config: CropTrainConfig,
) -> list[float]:
    """AdamW, one-cycle schedule, class-weighted cross-entropy; mean loss per epoch."""
    steps_per_epoch = math.ceil(len(raw) / config.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=max(epochs * steps_per_epoch, 20), pct_start=0.1
    )
    weights = _class_weights(labels, model.n_classes)
    months_t = torch.from_numpy(months)
    history = []
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, epoch, 3])
        order = rng.permutation(len(raw))
        model.train()
        losses, started = [], time.perf_counter()
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            x, observed = step_features(_augment(raw[idx], config, card.normalization, rng), card)
            logits = model(torch.from_numpy(x), torch.from_numpy(observed), months_t)
            loss = F.cross_entropy(logits, torch.from_numpy(labels[idx]), weight=weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.detach().item())
        history.append(float(np.mean(losses)))
        print(
            f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    return history


def _scores(
    model: LoadedModel,
    raw: np.ndarray,
    labels: np.ndarray,
    months: np.ndarray,
    centroids: Mapping[int, Mapping[int, float]],
) -> dict[str, object]:
    """Model, NDVI nearest-centroid and majority-class scores on labelled pixel series."""
    names = {c: info.name for c, info in model.card.classes.items()}
    probs = predict_croptype_pixels(model, raw, months)
    pred = np.where(np.isnan(probs[:, 0]), NODATA_CLASS, np.nan_to_num(probs).argmax(axis=1))
    baseline = predict_ndvi_centroids(raw, months, model.card.bands, centroids)
    majority = np.full_like(labels, int(np.bincount(labels[labels >= 0]).argmax()))
    return {
        "model": multiclass_scores(pred, labels, names),
        "ndvi_centroid": multiclass_scores(baseline, labels, names),
        "majority": multiclass_scores(majority, labels, names),
    }


def evaluate_synthetic(
    model: LoadedModel,
    cube_path: Path,
    truth_dir: Path,
    centroids: Mapping[int, Mapping[int, float]],
    columns: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Scores over every labelled pixel of a cube (or a column block): ``model.*``, ``ndvi_centroid.*``,
    ``majority.*`` (flat keys, as in the card)."""
    with open_cube(cube_path) as cube:
        width = cube.sizes["x"]
    raw, labels, months = sample_cube(cube_path, truth_dir, model.card.bands, columns or (0, width), 0, 0)
    return flatten_scores(_scores(model, raw, labels, months, centroids))


def _card(
    config: CropTrainConfig, model: LTAEClassifier, norm: dict, months: np.ndarray, data: str, command: str
) -> ModelCard:
    return ModelCard(
        name=config.name,
        version=config.version,
        architecture="LTAEClassifier",
        architecture_args=model.config,
        bands=config.bands,
        normalization=norm,
        classes=dict(CROP_CLASSES),
        receptive_field_px=1,
        validity_channel=False,
        task="crop_type",
        patch_size=1,
        training_data=data,
        training_command=command,
        months=tuple(int(m) for m in months),
        inputs_per_step=config.inputs_per_step,
        label_mapping=LABEL_MAPPING,
    )


def train_croptype_sets(
    sets: Sequence[tuple[Path, Path]],
    out_dir: Path,
    epochs: int,
    seed: int,
    config: CropTrainConfig = CropTrainConfig(),
    command: str = "",
) -> tuple[LoadedModel, dict[str, float]]:
    """Train on ``(cube, truth_dir)`` pairs; write weights, card and NDVI baseline profiles to ``out_dir``.

    Returns the loaded model and its validation scores (pooled held-out column blocks), which the card's
    ``metrics`` also hold (``val.*``, ``train.loss_epoch*``).
    """
    if not sets:
        raise InputError("no training cube given")
    parts, vals = [], []
    for i, (cube, truth) in enumerate(sets):
        with open_cube(cube) as ds:
            width = ds.sizes["x"]
        split = round(width * (1.0 - config.val_fraction))
        parts.append(sample_cube(cube, truth, config.bands, (0, split), config.per_landcover, seed + i))
        vals.append(
            sample_cube(cube, truth, config.bands, (split, width), config.per_landcover, seed + 100 + i)
        )
    months = parts[0][2]
    if any(not np.array_equal(p[2], months) for p in parts + vals):
        raise InputError("training cubes must cover the same months")
    raw, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    norm = _normalization(raw, config.bands)
    with deterministic(seed, config.threads):
        model = LTAEClassifier(
            len(config.inputs_per_step),
            len(CROP_CLASSES),
            config.d_model,
            config.n_head,
            config.d_k,
            config.hidden,
        )
        names = ", ".join(f"{Path(c).parent.name}/{Path(c).name}" for c, _ in sets)
        data = (
            f"cubes {names}; months {months.tolist()}; {len(raw)} pixels ({config.per_landcover} per planted "
            f"land-cover class and cube, stable land cover, no planted change), labels by the card's "
            f"eowatch_landcover table; columns >= {1 - config.val_fraction:.0%} of the width held out; "
            f"seed {seed}"
        )
        card = _card(config, model, norm, months, data, command)
        history = _fit(model, card, raw, labels, months, epochs, seed, config)
        loaded = LoadedModel(model.eval(), card)
        centroids = fit_ndvi_centroids(raw, labels, months, config.bands, len(CROP_CLASSES))
        val_raw, val_labels = np.concatenate([v[0] for v in vals]), np.concatenate([v[1] for v in vals])
        scores = flatten_scores(_scores(loaded, val_raw, val_labels, months, centroids), prefix="val.")
    scores.update({f"train.loss_epoch{i + 1}": v for i, v in enumerate(history)})
    final = save_model(model, replace(card, metrics=scores), Path(out_dir))
    save_centroids(centroids_path(Path(out_dir), final.name), centroids, final)
    return load_model(Path(out_dir) / f"{final.name}.card.json"), scores


def finetune(
    model: LoadedModel,
    raw: np.ndarray,
    labels: np.ndarray,
    months: np.ndarray,
    steps: int,
    seed: int,
    config: CropTrainConfig = CropTrainConfig(),
    lr: float = 5e-4,
) -> LoadedModel:
    """A copy of ``model`` fine-tuned on a few labelled real series (``labels < 0`` are ignored).

    ``steps`` full-batch AdamW steps with the training augmentations and class weighting; the card and
    its normalisation are kept (the fine-tuned model is fed exactly like the original).
    """
    from .weights import build_module

    keep = labels >= 0
    raw, labels = raw[keep], labels[keep]
    with deterministic(seed, config.threads):
        module = build_module(model.card)
        module.load_state_dict(model.module.state_dict())
        module.requires_grad_(True).train()
        optimiser = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=config.weight_decay)
        weights = _class_weights(labels, module.n_classes)
        rng = np.random.default_rng([seed, 5])
        months_t = torch.from_numpy(np.asarray(months, dtype=np.int64))
        for _ in range(steps):
            x, observed = step_features(_augment(raw, config, model.card.normalization, rng), model.card)
            observed &= np.isin(months, model.card.months)[None, :]
            loss = F.cross_entropy(
                module(torch.from_numpy(x), torch.from_numpy(observed), months_t),
                torch.from_numpy(labels),
                weight=weights,
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return LoadedModel(module.eval().requires_grad_(False), model.card)


def evaluate_and_record(
    weights_dir: Path, name: str, synthetic: tuple[Path, Path] | None, real_folder: Path | None
) -> dict[str, float]:
    """Score a trained crop model on a held-out synthetic cube (``synthetic.*``: every labelled pixel of an
    archive whose seed was not trained on) and on the real WorldCereal data (``flanders.*``,
    ``worldcereal_patch.*``), beside the baselines; record the scores in its card and return them."""
    from .worldcereal import evaluate_worldcereal

    model = load_model(Path(weights_dir) / f"{name}.card.json")
    centroids = load_centroids(centroids_path(Path(weights_dir), name), model.card)
    scores: dict[str, float] = {}
    if synthetic is not None:
        cube, truth = synthetic
        scores.update(
            {f"synthetic.{k}": v for k, v in evaluate_synthetic(model, cube, truth, centroids).items()}
        )
    if real_folder is not None:
        scores.update(evaluate_worldcereal(model, real_folder, centroids))
    record_metrics(weights_dir, name, scores)
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: reproduce the shipped crop-type model (archives → cubes → training → scores)."""
    from eowatch.pipelines.training import add_archive_period_arguments, train_croptype_shipped

    parser = argparse.ArgumentParser(prog="python -m eowatch.models.train_croptype", description=__doc__)
    parser.add_argument(
        "--workdir", default="eowatch-train", help="folder of the training archives and cubes"
    )
    parser.add_argument("--out", help="weights folder (default: the package's models/weights)")
    parser.add_argument("--archive-seeds", default="1,2,3,4")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    add_archive_period_arguments(parser)
    parser.add_argument("--eval-archive", help="held-out archive (e.g. the demo's, seed 42) with its cube")
    parser.add_argument("--eval-cube", help="analysis cube of --eval-archive")
    parser.add_argument("--real-data", help="WorldCereal folder (../shared/data/crops/worldcereal)")
    parser.add_argument("--skip-training", action="store_true", help="only score the model in --out")
    args = parser.parse_args(argv)

    from .registry import WEIGHTS_DIR

    seeds = [int(s) for s in args.archive_seeds.split(",") if s.strip()]
    out = Path(args.out) if args.out else WEIGHTS_DIR
    scores: dict[str, float] = {}
    if not args.skip_training:
        model, scores = train_croptype_shipped(
            Path(args.workdir), out, seeds, args.epochs, args.seed, args.workers, args.start, args.end
        )
        print(f"saved {model.card.name} v{model.card.version} to {out}")
    synthetic = (Path(args.eval_cube), Path(args.eval_archive) / "truth") if args.eval_cube else None
    real = Path(args.real_data) if args.real_data else None
    if synthetic or real:
        scores.update(evaluate_and_record(out, CropTrainConfig().name, synthetic, real))
    for key in sorted(k for k in scores if k.endswith((".oa", ".kappa", ".macro_f1"))):
        print(f"  {key}: {scores[key]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
