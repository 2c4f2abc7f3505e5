"""Training task of the VHR land-cover model ``landcover-vhr-unet``: synthetic archives in, weights, card
and the colour baseline out.

Reproducible from the repository, deterministic on CPU for a fixed thread count::

    python -m eowatch.models.train_vhr_landcover --workdir eowatch-train --out eowatch-train/vhr-landcover \\
        --eval-archive eowatch-demo/archive --real-data ../shared/data/change

(then copy ``<out>/landcover-vhr-unet.*`` into ``models/weights``; ``--skip-training`` re-scores a model.)

1. The VHR archives of ``train_vhr`` (``vhr_archive_config``: seeds 1-8 train, 9 validates; generated
   into ``--workdir`` when missing, reused otherwise) are read with their LandCover.ai labels
   (``vhr_landcover_data``: building = the renderer's roofs), plus one 1 km water window per archive.
   Seed 42 (the demo's archive) is never used for training: it is the synthetic test set.
2. Chips are augmented (``vhr_landcover_dataset``) and the U-Net trained with cross-entropy weighted by
   inverse square-root class frequency (AdamW, one-cycle schedule).
3. The model and the colour baseline are scored on the validation and test scenes and, with
   ``--real-data``, on the LEVIR-CD samples' new buildings; every score goes into the card.
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
from torch.utils.data import DataLoader

from eowatch.archive import ArchiveConfig
from eowatch.archive.world import build_world

from .card import ModelCard
from .fit import deterministic
from .train_settings import ChipTrainSettings, seed_list
from .train_vhr import TRAIN_SEEDS, VAL_SEED, ensure_vhr_archive
from .vhr_landcover import (
    VHR_LANDCOVER_ARCHITECTURE,
    VHR_LANDCOVER_BANDS,
    VHR_LANDCOVER_CLASSES,
    VHR_LANDCOVER_SENSOR,
    VHR_LANDCOVER_TASK,
)
from .vhr_landcover_data import LabelledScene, archive_config, read_labelled_archive, water_scene
from .vhr_landcover_dataset import LandCoverSampling, VhrLandCoverChips, class_frequencies, rgb_statistics
from .vhr_landcover_eval import ColourCentroids, evaluate_scenes, fit_centroids
from .vhr_landcover_real import real_building_scores
from .vhr_landcover_unet import VhrLandCoverUNet
from .weights import LoadedModel, card_path, load_model, save_model

__all__ = ["VhrLandCoverTrainConfig", "centroids_path", "labelled_scenes", "train_vhr_landcover"]


@dataclass(frozen=True)
class VhrLandCoverTrainConfig(ChipTrainSettings):
    """Hyper-parameters of ``train_vhr_landcover``."""

    name: str = "landcover-vhr-unet"
    version: str = "0.2.0"
    chips_per_epoch: int = 384
    sampling: LandCoverSampling = field(default_factory=LandCoverSampling)
    """Chip size, sampling shares and augmentations."""


def centroids_path(model_dir: Path, name: str) -> Path:
    """Path of the colour-baseline centroids shipped beside a model's card."""
    return Path(model_dir) / f"{name}.rgb-centroids.json"


def labelled_scenes(archive_dir: Path, water: bool = True) -> list[LabelledScene]:
    """An archive's labelled VHR area and, when ``water`` and the world has water, its water window."""
    world = build_world(archive_config(archive_dir))
    scenes = [read_labelled_archive(archive_dir, world)]
    extra = water_scene(world, Path(archive_dir).name) if water else None
    return scenes + ([extra] if extra is not None else [])


def _class_weights(scenes: Sequence[LabelledScene], n_classes: int) -> torch.Tensor:
    """Inverse square-root class frequency, mean 1 over the classes present (absent classes: 0)."""
    freq = class_frequencies(scenes, n_classes)
    w = np.where(freq > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    return torch.tensor(w / w[freq > 0].mean(), dtype=torch.float32)


def fit(
    model: VhrLandCoverUNet,
    data: VhrLandCoverChips,
    epochs: int,
    config: VhrLandCoverTrainConfig,
    weights: torch.Tensor,
) -> list[float]:
    """AdamW with a one-cycle schedule over ``epochs`` epochs of ``data``; mean loss per epoch."""
    steps = max(epochs * math.ceil(len(data) / config.batch_size), 1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=steps, pct_start=0.1
    )
    history = []
    for epoch in range(epochs):
        data.set_epoch(epoch)
        model.train()
        started, losses = time.perf_counter(), []
        for batch in DataLoader(data, batch_size=config.batch_size, shuffle=False, num_workers=0):
            loss = F.cross_entropy(model(batch["image"]), batch["label"], weight=weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.detach().item())
        history.append(float(np.mean(losses)))
        print(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} ({time.perf_counter() - started:.1f} s)")
    model.eval()
    return history


def _card(
    model: VhrLandCoverUNet,
    norm: dict[str, tuple[float, float]],
    config: VhrLandCoverTrainConfig,
    data: str,
    command: str,
) -> ModelCard:
    return ModelCard(
        name=config.name,
        version=config.version,
        architecture=VHR_LANDCOVER_ARCHITECTURE,
        architecture_args=model.config,
        bands=VHR_LANDCOVER_BANDS,
        normalization=norm,
        classes=VHR_LANDCOVER_CLASSES,
        receptive_field_px=model.receptive_field,
        validity_channel=False,
        task=VHR_LANDCOVER_TASK,
        sensors=(VHR_LANDCOVER_SENSOR,),
        resolution_m=1.0,
        patch_size=config.sampling.chip,
        training_data=data,
        training_command=command,
        decision_threshold=0.5,
    )


def train_vhr_landcover(
    train: Sequence[LabelledScene],
    out_dir: Path,
    epochs: int,
    seed: int,
    config: VhrLandCoverTrainConfig = VhrLandCoverTrainConfig(),
    command: str = "",
) -> tuple[LoadedModel, ColourCentroids]:
    """Train on ``train``, save weights, card and the colour baseline's centroids into ``out_dir``.

    Returns the saved model, reloaded (checksum verified), and the baseline.
    """
    norm = rgb_statistics(train)
    n_classes = len(VHR_LANDCOVER_CLASSES)
    with deterministic(seed, config.threads):
        model = VhrLandCoverUNet(len(VHR_LANDCOVER_BANDS), n_classes, config.width, config.levels)
        data = VhrLandCoverChips(train, config.sampling, norm, config.chips_per_epoch, seed)
        history = fit(model, data, epochs, config, _class_weights(train, n_classes))
    names = ", ".join(s.name for s in train)
    description = (
        f"VHR RGB (1 m) of synthetic scenes {names}; labels: LandCover.ai classes from the archive's "
        f"renderer "
        f"(eowatch.archive.vhr.render_vhr_labels: building = drawn roofs; woodland, water, road from the "
        f"scene's kinds); {epochs} epochs x {config.chips_per_epoch} chips of {config.sampling.chip} px, "
        f"seed {seed}; augmentation: zoom {config.sampling.zoom}, drawn houses and trees with sun and "
        f"shadows ({'on' if config.sampling.synthesis else 'off'}), rotations/flips, radiometric jitter"
    )
    card = _card(model, norm, config, description, command)
    card = replace(card, metrics={f"train.loss_epoch{i + 1}": v for i, v in enumerate(history)})
    final = save_model(model, card, Path(out_dir))  # type: ignore[arg-type]
    baseline = fit_centroids(train)
    centroids_path(out_dir, final.name).write_text(baseline.to_json(), encoding="utf-8")
    return load_model(card_path(Path(out_dir), final.name)), baseline


def rescore(model_dir: Path, name: str, extra: dict[str, float]) -> LoadedModel:
    """Add ``extra`` scores to the card in ``model_dir`` (weights untouched) and reload the model."""
    path = card_path(model_dir, name)
    card = ModelCard.read(path)
    path.write_text(replace(card, metrics={**card.metrics, **extra}).to_json(), encoding="utf-8")
    return load_model(path)


def _test_dir(args: argparse.Namespace) -> Path:
    if args.eval_archive is not None:
        return Path(args.eval_archive)
    from eowatch.archive import make_archive

    test_dir = Path(args.workdir) / "archive-seed42"
    make_archive(test_dir, ArchiveConfig(seed=42))
    return test_dir


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m eowatch.models.train_vhr_landcover --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("eowatch-train"))
    parser.add_argument("--out", type=Path, default=Path("eowatch-train/vhr-landcover"))
    parser.add_argument("--train-seeds", default=",".join(map(str, TRAIN_SEEDS)))
    parser.add_argument("--val-seed", type=int, default=VAL_SEED)
    parser.add_argument(
        "--eval-archive", type=Path, help="synthetic test archive (default: seed 42, generated)"
    )
    parser.add_argument("--real-data", type=Path, help="folder with levir_samples/")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chips-per-epoch", type=int, default=VhrLandCoverTrainConfig.chips_per_epoch)
    parser.add_argument("--no-synthesis", action="store_true", help="train on archive imagery only")
    parser.add_argument("--skip-training", action="store_true", help="only re-score the model in --out")
    args = parser.parse_args(argv)
    seeds = seed_list(args.train_seeds)
    if 42 in seeds or args.val_seed == 42:
        parser.error("seed 42 is the demo's held-out test archive; train and validate on other seeds")
    sampling = replace(LandCoverSampling(), synthesis=None) if args.no_synthesis else LandCoverSampling()
    config = VhrLandCoverTrainConfig(chips_per_epoch=args.chips_per_epoch, sampling=sampling)
    command = "python -m eowatch.models.train_vhr_landcover " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    if args.skip_training:
        model = load_model(card_path(args.out, config.name))
        baseline = ColourCentroids.read(centroids_path(args.out, config.name))
    else:
        train = [s for seed in seeds for s in labelled_scenes(ensure_vhr_archive(args.workdir, seed))]
        model, baseline = train_vhr_landcover(train, args.out, args.epochs, args.seed, config, command)
        del train
    val = labelled_scenes(ensure_vhr_archive(args.workdir, args.val_seed))
    extra = evaluate_scenes(model, val, baseline, prefix="val.")
    test = labelled_scenes(_test_dir(args))
    extra.update(evaluate_scenes(model, test[:1], baseline, prefix="test."))
    extra.update(evaluate_scenes(model, test, baseline, prefix="test_with_water."))
    if args.real_data is not None:
        extra.update(real_building_scores(model, args.real_data, baseline))
    model = rescore(args.out, config.name, extra)
    for key in sorted(model.card.metrics):
        if not key.startswith("train.") and ("n_" not in key):
            print(f"{key}: {model.card.metrics[key]:.4f}")


if __name__ == "__main__":
    main()
