"""Training task of the semantic change models (``siamese-s2s1-semantic``, ``siamese-s2s1-conditional``).

Data: chips of the archives' analysis cubes (``dataset.ChangeChipDataset`` machinery) with three labels
per transition, all from the planted truth: **change** (a change shows at this transition, by
``labels.transition_labels``) and the land cover of the **earlier** and **later** period
(``period_landcover``). The from/to heads are supervised **everywhere** (a per-period land-cover
segmentation; SECOND's labels exist only on changed pixels, the archive's everywhere), which also makes
the from-head a usable pre-change map for the conditional model. Loss: class-weighted cross-entropy of
the change head plus ``semantic_weight`` x (from + to cross-entropy), weights inverse square-root
frequency of the epoch's chips. The loop is ``fit.fit_chips`` (shared with the change model),
deterministic on CPU.

``python -m eowatch.models.train_semantic [--conditional]`` reproduces the shipped weights from the
archives of seeds 1-4 (``eowatch train``'s workdir) and scores them (``models.semantic_eval``) on the
held-out columns and on the demo archive (seed 42), calibrating the decision threshold on the former.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from eowatch.errors import InputError

from .card import DEFAULT_BANDS, ClassInfo, ModelCard
from .dataset import IGNORE_INDEX, ChangeChipDataset, _rotate_flip, open_cube, read_truth
from .fit import BatchLoss, deterministic, fit_chips
from .labels import _first_showing_period, period_days
from .siamese_semantic import (
    LANDCOVER_COLOURS,
    SEMANTIC_CLASSES,
    SiameseSemanticNet,
    one_hot_landcover,
    season_planes,
)
from .train import normalization_stats, period_bounds
from .weights import LoadedModel, load_model, save_model

__all__ = [
    "SEMANTIC_TRUTH_KEYS",
    "SemanticChipDataset",
    "SemanticTrainConfig",
    "period_landcover",
    "read_semantic_truth",
    "semantic_card",
    "train_semantic_sets",
    "training_sets",
]

#: Truth rasters beyond ``dataset.TRUTH_KEYS`` that the semantic labels need (uint8 ``LANDCOVER`` codes).
SEMANTIC_TRUTH_KEYS: tuple[str, ...] = ("landcover_start", "from_class", "to_class")
_N_LANDCOVER = len(LANDCOVER_COLOURS)


@dataclass(frozen=True)
class SemanticTrainConfig:
    """Hyper-parameters of ``train_semantic_sets`` (defaults: the shipped models)."""

    name: str = "siamese-s2s1-semantic"
    """Model name (file stem and registry key)."""
    version: str = "0.2.0"
    """Version recorded in the card."""
    conditional: bool = False
    """Train the conditional variant (the true date-1 land cover as input)."""
    season: bool = True
    """Give each date its period's season (``season_planes``: sine and cosine of the mid day of year)."""
    chip: int = 64
    """Training chip side (pixels)."""
    chips_per_epoch: int = 512
    """Chips drawn per epoch (split evenly over the cubes)."""
    changed_fraction: float = 0.3
    """Share of chips centred on a changed pixel."""
    batch_size: int = 16
    """Chips per optimiser step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (one-cycle schedule)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    width: int = 32
    """Network width."""
    depth: int = 4
    """Encoder depth (3x3 convolutions)."""
    semantic_weight: float = 0.5
    """Weight of the from + to cross-entropy beside the change cross-entropy."""
    condition_noise: float = 0.05
    """Conditional model: share of pixels whose given land cover is replaced by a random class in
    training, so that an imperfect (predicted) pre-change map is not read as change everywhere."""
    val_fraction: float = 0.2
    """Eastern share of each cube's columns held out for validation."""
    threads: int = 2
    """Torch CPU threads (fixed for determinism)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0 or not 0.0 <= self.condition_noise < 1.0:
            raise InputError("val_fraction must be in (0, 1) and condition_noise in [0, 1)")
        if min(self.chip, self.chips_per_epoch, self.batch_size, self.threads) < 1 or not self.lr > 0:
            raise InputError("chip, chips_per_epoch, batch_size, threads and lr must be positive")


def read_semantic_truth(truth_dir: Path, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """``dataset.read_truth`` plus ``landcover_start``, ``from_class`` and ``to_class`` (uint8 codes), cut
    to the grid of pixel-centre coordinates ``x``, ``y`` (metres, the truth's CRS and 10 m pixel)."""
    import rasterio
    from rasterio.windows import Window

    out = read_truth(Path(truth_dir), x, y)
    for key in SEMANTIC_TRUTH_KEYS:
        path = Path(truth_dir) / f"{key}.tif"
        if not path.is_file():
            raise InputError(f"truth folder {truth_dir} lacks {path.name} (semantic change labels)")
        with rasterio.open(path) as src:
            col = round((x[0] - src.transform.c) / src.transform.a - 0.5)
            row = round((y[0] - src.transform.f) / src.transform.e - 0.5)
            if col < 0 or row < 0 or col + len(x) > src.width or row + len(y) > src.height:
                raise InputError(f"{key} raster does not cover the cube grid")
            out[key] = src.read(1, window=Window(col, row, len(x), len(y))).astype(np.uint8)
    return out


def period_landcover(
    truth: Mapping[str, np.ndarray], bounds: list[tuple[np.datetime64, np.datetime64]]
) -> np.ndarray:
    """``(T, y, x)`` uint8 ``LANDCOVER`` of each monthly period, by the rules of ``labels``.

    Unchanged pixels keep ``landcover_start``. A permanent change (``change_end == 0``) shows ``from_class``
    before the period where ``transition_labels`` sees it (the first period whose midpoint is on or after
    its start) and ``to_class`` from then on; a flood (``change_end > 0``) is ``to_class`` (water) in the
    periods it covers for at least a third of their days and ``from_class`` otherwise. So at a labelled
    transition the earlier period holds ``from_class`` and the later ``to_class``.
    """
    days = period_days(bounds)
    n = len(days)
    out = np.broadcast_to(truth["landcover_start"], (n, *truth["landcover_start"].shape)).copy()
    ctype, start, end = truth["change_type"], truth["change_start"], truth["change_end"]
    changed = (ctype > 0) & (start > 0)
    permanent, temporary = changed & (end <= 0), changed & (end > 0)
    first = _first_showing_period(start[permanent].astype(np.int64), days)
    p = np.arange(n)[:, None]
    out[:, permanent] = np.where(
        p < first[None, :], truth["from_class"][permanent], truth["to_class"][permanent]
    )
    t_start, t_end = start[temporary].astype(np.int64), end[temporary].astype(np.int64)
    overlap = np.minimum(t_end[None, :], days[:, 1:2]) - np.maximum(t_start[None, :], days[:, 0:1])
    present = 3 * overlap >= (days[:, 1:2] - days[:, 0:1])
    # the presence rule of labels._first_present_period (>= 1/3 of the period's days), for every period
    out[:, temporary] = np.where(present, truth["to_class"][temporary], truth["from_class"][temporary])
    return out


class SemanticChipDataset(ChangeChipDataset):
    """``ChangeChipDataset`` chips with binary change and from/to land-cover labels (and, for the
    conditional model, the one-hot date-1 land cover as input).

    Args:
        cube_path, truth, period_bounds, chip, samples, seed, augment: as ``ChangeChipDataset``; ``truth``
            also holds ``SEMANTIC_TRUTH_KEYS``.
        bands, normalization, columns, changed_fraction: as ``ChangeChipDataset``.
        conditional: add ``condition``, float32 ``(8, chip, chip)``, the one-hot true date-1 land cover.
        condition_noise: share of condition pixels replaced by a random class (augmentation).
        season: append each date's ``season_planes`` (2 channels) after its bands.

    Items: ``before``/``after`` as ``ChangeChipDataset``; ``change`` int64 0/1, ``from_class`` and
    ``to_class`` int64 land-cover index 0..7 (``LANDCOVER`` code - 1), all ``(chip, chip)`` and
    ``IGNORE_INDEX`` where a date has no observation (or the land cover is nodata); ``condition``.
    """

    def __init__(
        self,
        cube_path: str | Path,
        truth: Mapping[str, np.ndarray],
        period_bounds: list[tuple[np.datetime64, np.datetime64]],
        chip: int = 64,
        samples: int = 512,
        seed: int = 0,
        augment: bool = False,
        *,
        bands: tuple[str, ...] = DEFAULT_BANDS,
        normalization: Mapping[str, tuple[float, float]] | None = None,
        columns: tuple[int, int] | None = None,
        changed_fraction: float = 0.5,
        conditional: bool = False,
        condition_noise: float = 0.0,
        season: bool = False,
    ) -> None:
        super().__init__(
            cube_path,
            truth,
            period_bounds,
            chip,
            samples,
            seed,
            augment,
            bands=bands,
            normalization=normalization,
            columns=columns,
            changed_fraction=changed_fraction,
            season=season,
        )
        self.landcover = period_landcover(truth, period_bounds)
        self.conditional, self.condition_noise = conditional, condition_noise

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.normalization is None:
            raise InputError("SemanticChipDataset items need normalization statistics")
        t, y0, x0 = (int(v) for v in self.positions[index])
        raw = self.read_window(t, y0, x0)
        ys, xs = slice(y0, y0 + self.chip), slice(x0, x0 + self.chip)
        cover = self.landcover[t - 1 : t + 1, ys, xs].astype(np.int64) - 1  # (2, chip, chip), -1 nodata
        targets = np.stack([(self.labels[t - 1, ys, xs] > 0).astype(np.int64), cover[0], cover[1]])
        observed = np.isfinite(raw).any(axis=1).all(axis=0)
        targets[:, ~observed] = IGNORE_INDEX
        targets[targets < 0] = IGNORE_INDEX
        rng = np.random.default_rng([self.seed, self.epoch, 1, index])
        x = self._normalise(raw, rng if self.augment else None)
        condition = cover[0] + 1
        if self.conditional and self.condition_noise > 0:
            noisy = rng.random(condition.shape) < self.condition_noise
            condition = np.where(noisy, rng.integers(1, _N_LANDCOVER + 1, condition.shape), condition)
        stacked = np.concatenate([targets, condition[None]])
        if self.augment:
            x, stacked = _rotate_flip(x, stacked, rng)
        if self.middle_days is not None:
            x = np.concatenate([x, season_planes(self.middle_days[t - 1 : t + 1], x.shape[2:])], axis=1)
        item: dict[str, Any] = {
            "before": torch.from_numpy(np.ascontiguousarray(x[0])),
            "after": torch.from_numpy(np.ascontiguousarray(x[1])),
            "change": torch.from_numpy(np.ascontiguousarray(stacked[0])),
            "from_class": torch.from_numpy(np.ascontiguousarray(stacked[1])),
            "to_class": torch.from_numpy(np.ascontiguousarray(stacked[2])),
            "t": t,
        }
        if self.conditional:
            item["condition"] = torch.from_numpy(one_hot_landcover(stacked[3], _N_LANDCOVER))
        return item


def _inverse_sqrt_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse square-root frequency weights, mean weight 1 per pixel, capped at 50."""
    freq = counts / max(counts.sum(), 1)
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 1.0)
    weights /= max((weights * freq).sum(), 1e-12)
    return torch.tensor(np.minimum(weights, 50.0), dtype=torch.float32)


def _epoch_loss(
    datasets: Sequence[ChangeChipDataset], semantic_weight: float, conditional: bool
) -> BatchLoss:
    """This epoch's loss: change CE + ``semantic_weight`` x (from CE + to CE), each weighted by the
    inverse square-root frequency of its classes in the epoch's chips."""
    change, cover = np.zeros(2), np.zeros(_N_LANDCOVER)
    for dataset in datasets:
        assert isinstance(dataset, SemanticChipDataset)
        for t, y0, x0 in dataset.positions:
            ys, xs = slice(y0, y0 + dataset.chip), slice(x0, x0 + dataset.chip)
            change += np.bincount((dataset.labels[t - 1, ys, xs] > 0).ravel(), minlength=2)[:2]
            lc = dataset.landcover[t - 1 : t + 1, ys, xs].ravel().astype(np.int64)
            cover += np.bincount(lc[lc > 0] - 1, minlength=_N_LANDCOVER)[:_N_LANDCOVER]
    w_change, w_cover = _inverse_sqrt_weights(change), _inverse_sqrt_weights(cover)

    def loss(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        out = model(batch["before"], batch["after"], batch["condition"] if conditional else None)
        ce = F.cross_entropy(out.change, batch["change"], weight=w_change, ignore_index=IGNORE_INDEX)
        ce_from = F.cross_entropy(
            out.from_class, batch["from_class"], weight=w_cover, ignore_index=IGNORE_INDEX
        )
        ce_to = F.cross_entropy(out.to_class, batch["to_class"], weight=w_cover, ignore_index=IGNORE_INDEX)
        return ce + semantic_weight * (ce_from + ce_to)

    return loss


def semantic_card(
    module: SiameseSemanticNet,
    norm: dict[str, tuple[float, float]],
    config: SemanticTrainConfig,
    training_data: str,
    command: str,
) -> ModelCard:
    """The card of a semantic change model (weights file and sha256 are added by ``save_model``)."""
    return ModelCard(
        name=config.name,
        version=config.version,
        architecture="SiameseSemanticNet",
        architecture_args=module.config,
        bands=DEFAULT_BANDS,
        normalization=norm,
        classes={
            code: ClassInfo(name, LANDCOVER_COLOURS.get(code, (0, 0, 0)))
            for code, name in SEMANTIC_CLASSES.items()
        },
        change_legend={0: ClassInfo("no_change", (0, 0, 0)), 1: ClassInfo("change", (255, 0, 255))},
        receptive_field_px=module.receptive_field,
        task="semantic-change-detection",
        patch_size=config.chip,
        training_data=training_data,
        training_command=command,
    )


def train_semantic_sets(
    sets: Sequence[tuple[str | Path, Mapping[str, np.ndarray]]],
    out_dir: Path,
    epochs: int,
    seed: int,
    config: SemanticTrainConfig = SemanticTrainConfig(),
    command: str = "",
) -> tuple[LoadedModel, dict[str, Any]]:
    """Train a semantic change model on (cube, semantic truth) pairs; save weights and card in ``out_dir``.

    Each cube's eastern ``val_fraction`` of columns is held out (scored by ``train_semantic``'s CLI, which
    also calibrates the decision threshold there); normalisation statistics come from the first cube's
    training columns, as for ``siamese-s2s1-change``.

    Returns:
        The saved model (reloaded, checksum verified; decision threshold 0.5 until calibrated) and
        ``{"train.loss_epoch<i>": ...}``.
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
            sets[0][0], sets[0][1], bounds, config.chip, config.chips_per_epoch, seed, columns=(0, split)
        )
        norm = normalization_stats(raw, n_chips=64, seed=seed)
        datasets = [
            SemanticChipDataset(
                cube_path,
                truth,
                bounds,
                config.chip,
                per_set,
                seed + i,
                augment=True,
                normalization=norm,
                columns=(0, split),
                changed_fraction=config.changed_fraction,
                conditional=config.conditional,
                condition_noise=config.condition_noise,
                season=config.season,
            )
            for i, (cube_path, truth) in enumerate(sets)
        ]
        module = SiameseSemanticNet(
            len(DEFAULT_BANDS) + 1,
            len(SEMANTIC_CLASSES),
            config.width,
            config.depth,
            int(config.conditional),
            2 if config.season else 0,
        )
        history = fit_chips(
            module,
            datasets,
            epochs,
            config.batch_size,
            config.lr,
            config.weight_decay,
            lambda parts: _epoch_loss(parts, config.semantic_weight, config.conditional),
        )
    names = ", ".join(f"{Path(c).parent.name}/{Path(c).name}" for c, _ in sets)
    periods = f"{bounds[0][0]}..{bounds[-1][1]} ({len(bounds)} monthly periods)"
    training_data = (
        f"cubes {names}, {periods}; change labels by eowatch.models.labels.transition_labels, from/to "
        f"land cover per period by eowatch.models.train_semantic.period_landcover (supervised everywhere); "
        f"columns >= {split} held out; {epochs} epochs x {config.chips_per_epoch} chips of {config.chip} px, "
        f"seed {seed}; loss: change CE + {config.semantic_weight} x (from CE + to CE), inverse square-root "
        "class-frequency weights"
        + (
            f"; condition: the true date-1 land cover, {config.condition_noise:.0%} of pixels replaced by a "
            "random class"
            if config.conditional
            else ""
        )
        + ("; season: sine/cosine of each period's middle day of year" if config.season else "")
    )
    scores = {f"train.loss_epoch{i + 1}": v for i, v in enumerate(history)}
    card = semantic_card(
        module.eval(), norm, config, training_data, command or _command(config, epochs, seed)
    )
    data = card.to_dict()
    data["metrics"] = scores
    save_model(module, ModelCard.from_dict(data), Path(out_dir))
    return load_model(Path(out_dir) / f"{config.name}.card.json"), scores


def _command(config: SemanticTrainConfig, epochs: int, seed: int) -> str:
    flag = " --conditional" if config.conditional else ""
    return f"python -m eowatch.models.train_semantic{flag} --epochs {epochs} --seed {seed}"


def config_fields() -> list[str]:
    """Names of the ``SemanticTrainConfig`` fields the CLI exposes."""
    return [f.name for f in fields(SemanticTrainConfig) if f.name not in ("name", "conditional")]


def training_sets(workdir: Path, archive_seeds: Sequence[int]) -> list[tuple[Path, dict[str, np.ndarray]]]:
    """``(cube, semantic truth)`` of ``<workdir>/cube-seed<s>/cube.zarr`` and ``<workdir>/archive-seed<s>``
    (the layout ``eowatch train`` builds; run it first when they are missing)."""
    sets = []
    for s in archive_seeds:
        cube, archive = workdir / f"cube-seed{s}" / "cube.zarr", workdir / f"archive-seed{s}"
        if not cube.is_dir() or not (archive / "truth").is_dir():
            raise InputError(
                f"{cube} or {archive}/truth is missing: build the training archives and cubes with "
                f"`eowatch train --archive-seeds {','.join(str(a) for a in archive_seeds)}` first"
            )
        with open_cube(cube) as ds:
            truth = read_semantic_truth(archive / "truth", ds["x"].values, ds["y"].values)
        sets.append((cube, truth))
    return sets


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m eowatch.models.train_semantic --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("eowatch-train"))
    parser.add_argument("--archive-seeds", default="1,2,3,4")
    parser.add_argument("--out", type=Path, default=None, help="default: WORKDIR/<name>")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditional", action="store_true", help="train siamese-s2s1-conditional")
    parser.add_argument("--skip-training", action="store_true", help="only score the model in --out")
    parser.add_argument("--eval-archive", type=Path, default=Path("eowatch-demo/archive"))
    parser.add_argument("--eval-cube", type=Path, default=Path("eowatch-demo/output/cube.zarr"))
    parser.add_argument("--eval-change", type=Path, default=Path("eowatch-demo/output/change.zarr"))
    parser.add_argument("--semantic-model", type=Path, default=None, help="conditional: predicted-map source")
    for name in config_fields():
        default = getattr(SemanticTrainConfig(), name)
        if isinstance(default, bool):
            parser.add_argument(
                f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=default
            )
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    name = "siamese-s2s1-conditional" if args.conditional else "siamese-s2s1-semantic"
    config = SemanticTrainConfig(
        name=name, conditional=args.conditional, **{k: getattr(args, k) for k in config_fields()}
    )
    out = args.out or args.workdir / name
    seeds = [int(s) for s in args.archive_seeds.split(",")]
    sets = training_sets(args.workdir, seeds)
    if not args.skip_training:
        flag = " --conditional" if args.conditional else ""
        command = (
            f"python -m eowatch.models.train_semantic{flag} --workdir {args.workdir} "
            f"--archive-seeds {args.archive_seeds} --epochs {args.epochs} --seed {args.seed}"
        )
        train_semantic_sets(sets, out, args.epochs, args.seed, config, command)
    from .semantic_eval import score_and_save

    score_and_save(
        out / f"{name}.card.json",
        sets,
        config.val_fraction,
        (args.eval_archive, args.eval_cube, args.eval_change),
        args.semantic_model,
    )


if __name__ == "__main__":
    main()
