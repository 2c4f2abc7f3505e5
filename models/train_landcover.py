"""Training task of the S2 land-cover model: chips from synthetic analysis cubes, U-Net, card, scores.

Reproducible: ``python -m eowatch.models.train_landcover --workdir eowatch-train --archive-seeds 1,2,3
--val-seed 4 --seed 0`` (archives and cubes are generated into ``--workdir`` when absent, the same ones
the crop-type and change models use; the card records the exact command). Deterministic on CPU for a
fixed thread count (one by default).

Data: one chip is one period (month) of one cube (with the periods before it for a multi-period model,
``--periods``), 64 x 64 px, centred on a pixel of a class drawn uniformly (so the rare water and bare
land are seen as often as forest; ``--chip-centre pixel``: on any labelled pixel, classes as frequent as
in the archives, as for the seasonal model 0.2.0), labelled from the planted land cover
(``models.landcover_data``). The archive seeds given are trained on; ``--val-seed`` is a whole
held-out archive (validation, ``val.*``); seed 42 (the demo's) is refused for training and is the test
set (``synthetic.*``). Loss: cross-entropy weighted by inverse square-root class frequency, unlabelled
pixels ignored; AdamW with a one-cycle schedule.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from eowatch.errors import InputError

from .card import ModelCard
from .confusion import confusion_matrix
from .fit import deterministic
from .landcover import (
    LABEL_MAPPING,
    LANDCOVER_ARCHITECTURE,
    LANDCOVER_BANDS,
    LANDCOVER_CLASSES,
    LANDCOVER_TASK,
    confusion_summary,
    index_features,
    landcover_codes_lut,
    model_periods,
    network_input,
    period_history,
    predict_centroids,
    predict_landcover,
    worldcover_codes,
)
from .landcover_data import (
    CHIP_CENTRES,
    AugmentConfig,
    ChipCentre,
    ChipSampler,
    LabelledCube,
    augment_chip,
    load_labelled_cube,
)
from .landcover_unet import LandCoverUNet
from .metrics import flatten_scores
from .weights import LoadedModel, load_model, record_metrics, save_model

__all__ = [
    "LandCoverTrainConfig",
    "centroids_file",
    "evaluate_labelled",
    "fit_centroids",
    "load_centroids",
    "train_landcover_sets",
]

#: The demo's archive seed: the test set, never trained on.
TEST_SEED = 42
#: How the card's training data describes ``LandCoverTrainConfig.chip_centre``.
_CENTRES = {
    "class": "a class drawn uniformly",
    "pixel": "any labelled pixel (the archives' class frequencies)",
}
#: Name of the multi-period model (``--periods`` above 1).
SEASONAL_NAME = "landcover-s2-seasonal-unet"


@dataclass(frozen=True)
class LandCoverTrainConfig:
    """Hyper-parameters of the land-cover training (defaults: ~10 minutes on one CPU core)."""

    name: str = "landcover-s2-unet"
    """Model name (file stem and registry key)."""
    version: str = "0.1.0"
    """Version recorded in the card."""
    bands: tuple[str, ...] = LANDCOVER_BANDS
    """Cube variables fed as channels, in order (plus one validity channel)."""
    periods: int = 1
    """Periods per input: the mapped one and ``periods - 1`` before it (``landcover.period_history``)."""
    width: int = 12
    """U-Net channels at full resolution."""
    levels: int = 3
    """U-Net pooled stages (coarsest cell 2**levels px)."""
    chip: int = 64
    """Chip side (px)."""
    batch_size: int = 16
    """Chips per optimiser step."""
    steps: int = 2000
    """Optimiser steps."""
    lr: float = 3e-3
    """Peak AdamW learning rate (one-cycle schedule)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Radiometric jitter (geometry: rot90 and flips always)."""
    chip_centre: ChipCentre = "class"
    """What a chip is centred on (``ChipSampler``'s ``centre``): a pixel of a class drawn uniformly
    (``"class"``, class-balanced) or any labelled pixel (``"pixel"``, the archives' class frequencies)."""
    threads: int = 1
    """Torch CPU threads (fixed for determinism; two threads spin-wait on a shared 2-core machine)."""

    def __post_init__(self) -> None:
        sizes = (self.width, self.levels, self.chip, self.batch_size, self.steps, self.threads, self.periods)
        if min(sizes) < 1:
            raise InputError("width, levels, chip, batch_size, steps, threads and periods must be >= 1")
        if self.chip_centre not in CHIP_CENTRES:
            raise InputError(f"chip_centre must be 'class' or 'pixel', got {self.chip_centre!r}")
        if self.chip % 2**self.levels or not self.lr > 0:
            raise InputError(f"chip must be a multiple of {2**self.levels} px and lr > 0")


def _normalization(cubes: Sequence[LabelledCube], bands: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per band (mean, std) over the finite values of every 7th pixel of the training cubes."""
    stats = {}
    for b, name in enumerate(bands):
        v = np.concatenate([c.bands[:, b, ::7, ::7].ravel() for c in cubes])
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise InputError(f"band {name} has no finite training values")
        stats[name] = (float(v.mean()), float(max(v.std(), 1e-6)))
    return stats


def fit_centroids(
    cubes: Sequence[LabelledCube], bands: Sequence[str], n_classes: int
) -> dict[int, list[float]]:
    """The baseline's model: mean index features (NDVI, NDWI, NDBI, brightness) per class over the
    labelled pixels of every period."""
    sums = np.zeros((n_classes, 4)), np.zeros(n_classes)
    for cube in cubes:
        for t in range(cube.bands.shape[0]):
            feats = index_features(cube.bands[t], bands)
            ok = np.isfinite(feats).all(axis=0) & (cube.labels >= 0)
            for c in range(n_classes):
                m = ok & (cube.labels == c)
                sums[0][c] += feats[:, m].sum(axis=1)
                sums[1][c] += m.sum()
    return {c: (sums[0][c] / max(sums[1][c], 1)).tolist() for c in range(n_classes) if sums[1][c]}


def centroids_file(weights_dir: Path, name: str) -> Path:
    """Path of the baseline's class centroids shipped beside a land-cover model's weights."""
    return Path(weights_dir) / f"{name}.index-centroids.json"


def save_centroids(path: Path, centroids: Mapping[int, Sequence[float]], card: ModelCard) -> None:
    """Write the baseline's centroids as JSON (class name -> [ndvi, ndwi, ndbi, brightness])."""
    data = {
        "method": "nearest centroid on NDVI, NDWI, NDBI and visible brightness (standardised by the "
        "centroids' spread), fitted on the training pixels of every period",
        "model": card.name,
        "features": ["ndvi", "ndwi", "ndbi", "brightness"],
        "centroids": {card.classes[c].name: list(v) for c, v in centroids.items()},
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_centroids(path: Path, card: ModelCard) -> dict[int, list[float]]:
    """Inverse of ``save_centroids``: class index -> centroid."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["centroids"]
    return {card.class_code(name): [float(v) for v in values] for name, values in data.items()}


def _class_weights(sampler_labels: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(sampler_labels[sampler_labels >= 0], minlength=n_classes).astype(np.float64)
    freq = counts / max(counts.sum(), 1.0)
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    return torch.tensor(weights / max((weights * freq).sum(), 1e-12), dtype=torch.float32)


def _batch(
    sampler: ChipSampler, card: ModelCard, config: LandCoverTrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    chips, labels = sampler.sample(config.batch_size, rng)
    pairs = [
        augment_chip(c, y, config.bands, config.augment, rng) for c, y in zip(chips, labels, strict=True)
    ]
    x = network_input(card, np.stack([p[0] for p in pairs]))
    return torch.from_numpy(x), torch.from_numpy(np.stack([p[1] for p in pairs]))


def _fit(
    model: LandCoverUNet, card: ModelCard, sampler: ChipSampler, seed: int, config: LandCoverTrainConfig
) -> list[float]:
    """AdamW, one-cycle schedule, class-weighted cross-entropy; mean loss per 100 steps."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=max(config.steps, 20), pct_start=0.1
    )
    rng = np.random.default_rng([seed, 17])
    _, probe = sampler.sample(256, np.random.default_rng([seed, 18]))
    weights = _class_weights(probe, model.n_classes)
    model.train()
    history, losses, started = [], [], time.perf_counter()
    for step in range(config.steps):
        x, y = _batch(sampler, card, config, rng)
        loss = F.cross_entropy(model(x), y, weight=weights, ignore_index=-1)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        losses.append(loss.detach().item())
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            history.append(float(np.mean(losses)))
            print(
                f"step {step + 1}/{config.steps}: loss {history[-1]:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            losses = []
    return history


def evaluate_labelled(
    model: LoadedModel, cube: LabelledCube, centroids: Mapping[int, Sequence[float]]
) -> dict[str, float]:
    """Model and index-centroid scores over every labelled pixel of every period of a cube.

    Keys (flat): ``model.*`` and ``baseline.*`` (``oa``, ``kappa``, ``miou``, ``macro_f1``, per class
    ``<name>.f1`` / ``<name>.iou``, ``n``, ``nodata_px``) pooled over periods, and ``model.month<MM>.oa``.
    """
    k = len(model.card.classes)
    index_of = np.full(256, -1, dtype=np.int64)
    index_of[worldcover_codes(model.card)] = np.arange(k)
    cms = {"model": np.zeros((k, k), np.int64), "baseline": np.zeros((k, k), np.int64)}
    nodata = {"model": 0, "baseline": 0}
    months: dict[str, float] = {}
    labelled = cube.labels >= 0
    periods = model_periods(model.card)
    for t in range(cube.bands.shape[0]):
        pred = index_of[predict_landcover(model, period_history(cube.bands, t, periods)).codes]
        base = predict_centroids(index_features(cube.bands[t], model.card.bands), centroids)
        for key, p in (("model", pred), ("baseline", base)):
            cms[key] += confusion_matrix(p, cube.labels, k, valid=labelled)
            nodata[key] += int((labelled & (p < 0)).sum())
        months[f"model.month{int(cube.months[t]):02d}.oa"] = float((pred == cube.labels)[labelled].mean())
    scores = flatten_scores({key: confusion_summary(cms[key], model.card, nodata[key]) for key in cms})
    return {**scores, **months}


def _card(
    config: LandCoverTrainConfig, model: LandCoverUNet, norm: dict, data: str, command: str
) -> ModelCard:
    return ModelCard(
        name=config.name,
        version=config.version,
        architecture=LANDCOVER_ARCHITECTURE,  # type: ignore[arg-type]
        architecture_args=model.config,
        bands=config.bands,
        normalization=norm,
        classes=dict(LANDCOVER_CLASSES),
        receptive_field_px=model.receptive_field,
        validity_channel=True,
        task=LANDCOVER_TASK,  # type: ignore[arg-type]
        sensors=("sentinel-2-l2a",),
        patch_size=config.chip,
        training_data=data,
        training_command=command,
        label_mapping=LABEL_MAPPING,
    )


def train_landcover_sets(
    sets: Sequence[tuple[Path, Path]],
    out_dir: Path,
    seed: int,
    config: LandCoverTrainConfig = LandCoverTrainConfig(),
    val_sets: Sequence[tuple[Path, Path]] = (),
    command: str = "",
) -> tuple[LoadedModel, dict[str, float]]:
    """Train on ``(cube, truth_dir)`` pairs; write weights, card and the baseline's centroids to ``out_dir``.

    ``val_sets`` (whole held-out archives) are scored into ``val.*`` (every labelled pixel of every
    period); without them the eastern 20 % of the training cubes' columns is held out instead.
    Returns the loaded model and its validation scores (also in the card's ``metrics``).
    """
    if not sets:
        raise InputError("no training cube given")
    lut = landcover_codes_lut()
    cubes = [load_labelled_cube(c, t, config.bands, lut) for c, t in sets]
    columns = (0.0, 1.0) if val_sets else (0.0, 0.8)
    sampler = ChipSampler(
        cubes, config.chip, len(LANDCOVER_CLASSES), columns, config.periods, config.chip_centre
    )
    norm = _normalization(cubes, config.bands)
    with deterministic(seed, config.threads):
        n_in, n_classes = len(config.bands) + 1, len(LANDCOVER_CLASSES)
        model = LandCoverUNet(n_in, n_classes, config.width, config.levels, config.periods)
        names = ", ".join(c.name for c in cubes)
        held_out = (
            "; validation: whole archives " + ", ".join(f"{Path(c).parent.name}" for c, _ in val_sets)
            if val_sets
            else "; columns >= 80 % of the width held out"
        )
        data = (
            f"cubes {names} (S2 L2A monthly median composites, months {cubes[0].months.tolist()}); "
            f"{config.steps} steps x {config.batch_size} chips of {config.chip} px ({_chip_periods(config)}, "
            f"centred on {_CENTRES[config.chip_centre]}), labels: stable planted land cover through the "
            f"card's eowatch_landcover table{held_out}; seed {seed}"
        )
        card = _card(config, model, norm, data, command)
        history = _fit(model, card, sampler, seed, config)
        model.eval()
        centroids = fit_centroids(cubes, config.bands, len(LANDCOVER_CLASSES))
        loaded = LoadedModel(model, card)
        if val_sets:
            val_cubes = [load_labelled_cube(c, t, config.bands, lut) for c, t in val_sets]
        else:
            val_cubes = [_east(c, 0.8) for c in cubes]
        scores: dict[str, float] = {}
        for i, vc in enumerate(val_cubes):
            prefix = "val." if len(val_cubes) == 1 else f"val{i}."
            scores.update({prefix + k: v for k, v in evaluate_labelled(loaded, vc, centroids).items()})
    scores.update({f"train.loss_step{(i + 1) * 100}": v for i, v in enumerate(history)})
    final = save_model(model, replace(card, metrics=scores), Path(out_dir))
    save_centroids(centroids_file(Path(out_dir), final.name), centroids, final)
    return load_model(Path(out_dir) / f"{final.name}.card.json"), scores


def _chip_periods(config: LandCoverTrainConfig) -> str:
    if config.periods == 1:
        return "one period each"
    drop = config.augment.history_drop
    return f"one period each with the {config.periods - 1} periods before it, no data before the first" + (
        f", each earlier period dropped (no data) with p {drop}" if drop else ""
    )


def _east(cube: LabelledCube, share: float) -> LabelledCube:
    """The eastern ``1 - share`` of a cube's columns."""
    c0 = int(share * cube.bands.shape[-1])
    return replace(cube, name=f"{cube.name}[x>={c0}]", bands=cube.bands[..., c0:], labels=cube.labels[:, c0:])


def evaluate_and_record(
    weights_dir: Path, name: str, synthetic: tuple[Path, Path] | None, real_root: Path | None
) -> dict[str, float]:
    """Score a trained model on a held-out archive (``synthetic.*``) and on the real data under
    ``real_root`` (``../shared/data``: ``slovenia.*`` with the 2-fold fine-tuning check
    ``slovenia.finetuned_2fold.*``, ``worldcereal.*``); record them in its card."""
    from .landcover_real import evaluate_real

    model = load_model(Path(weights_dir) / f"{name}.card.json")
    centroids = load_centroids(centroids_file(Path(weights_dir), name), model.card)
    scores: dict[str, float] = {}
    if synthetic is not None:
        cube = load_labelled_cube(
            synthetic[0], synthetic[1], model.card.bands, landcover_codes_lut(model.card)
        )
        scores.update({f"synthetic.{k}": v for k, v in evaluate_labelled(model, cube, centroids).items()})
    if real_root is not None:
        from .landcover_finetune import slovenia_crossfit

        scores.update(evaluate_real(model, real_root, centroids))
        scores.update(slovenia_crossfit(model, Path(real_root) / "landcover" / "eolearn_slovenia"))
    record_metrics(weights_dir, name, scores)
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: reproduce the shipped land-cover model (archives → cubes → training → scores)."""
    from eowatch.pipelines.training import (
        add_archive_period_arguments,
        archive_period_flags,
        croptype_training_sets,
    )

    parser = argparse.ArgumentParser(prog="python -m eowatch.models.train_landcover", description=__doc__)
    parser.add_argument(
        "--workdir", default="eowatch-train", help="folder of the training archives and cubes"
    )
    parser.add_argument("--out", help="weights folder (default: the package's models/weights)")
    parser.add_argument("--archive-seeds", default="1,2,3")
    parser.add_argument("--val-seed", type=int, default=4, help="held-out archive seed (validation)")
    parser.add_argument("--steps", type=int, default=LandCoverTrainConfig().steps)
    parser.add_argument(
        "--history-drop",
        type=float,
        default=0.0,
        help="probability that each earlier period of a multi-period chip is replaced by no data",
    )
    parser.add_argument(
        "--periods",
        type=int,
        default=1,
        help=f"periods per input (the mapped one and those before it); above 1 trains {SEASONAL_NAME}",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--version", default=LandCoverTrainConfig().version, help="version recorded in the card"
    )
    parser.add_argument(
        "--chip-centre",
        choices=CHIP_CENTRES,
        default="class",
        help="centre chips on a class drawn uniformly (class-balanced) or on any labelled pixel",
    )
    add_archive_period_arguments(parser)
    parser.add_argument("--eval-archive", help="test archive (the demo's, seed 42) with its cube")
    parser.add_argument("--eval-cube", help="analysis cube of --eval-archive")
    parser.add_argument("--real-data", help="the shared real-data folder (../shared/data)")
    parser.add_argument("--skip-training", action="store_true", help="only score the model in --out")
    args = parser.parse_args(argv)

    from .registry import WEIGHTS_DIR

    seeds = [int(s) for s in args.archive_seeds.split(",") if s.strip()]
    if TEST_SEED in seeds or args.val_seed in seeds or args.val_seed == TEST_SEED:
        raise InputError(f"seed {TEST_SEED} is the test archive and the validation seed must be held out")
    out = Path(args.out) if args.out else WEIGHTS_DIR
    config = LandCoverTrainConfig(
        steps=args.steps, periods=args.periods, chip_centre=args.chip_centre, version=args.version
    )
    if args.periods > 1:
        augment = replace(config.augment, history_drop=args.history_drop)
        config = replace(config, name=SEASONAL_NAME, augment=augment)
    scores: dict[str, float] = {}
    if not args.skip_training:
        workdir = Path(args.workdir)
        sets = croptype_training_sets(workdir, seeds, args.workers, args.start, args.end)
        val = croptype_training_sets(workdir, [args.val_seed], args.workers, args.start, args.end)
        command = (
            f"python -m eowatch.models.train_landcover --workdir {workdir.name} --archive-seeds "
            f"{args.archive_seeds} --val-seed {args.val_seed} --steps {args.steps} --seed {args.seed}"
            + (f" --periods {args.periods} --history-drop {args.history_drop}" if args.periods > 1 else "")
            + (f" --chip-centre {args.chip_centre}" if args.chip_centre != "class" else "")
            + (f" --version {args.version}" if args.version != LandCoverTrainConfig().version else "")
            + archive_period_flags(args.start, args.end)
        )
        model, scores = train_landcover_sets(sets, out, args.seed, config, val, command)
        print(f"saved {model.card.name} v{model.card.version} to {out}")
    synthetic = (Path(args.eval_cube), Path(args.eval_archive) / "truth") if args.eval_cube else None
    real = Path(args.real_data) if args.real_data else None
    if synthetic or real:
        scores.update(evaluate_and_record(out, config.name, synthetic, real))
    for key in sorted(k for k in scores if k.endswith((".oa", ".kappa", ".miou"))):
        print(f"  {key}: {scores[key]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
