"""Reproducible training of the shipped change model from the project's own archive.

``eowatch train`` generates the training archive (a seed the demo does not use), builds its analysis
cube with the same cube stage as every monitoring run (served through the real STAC API and asset
server), and trains the siamese model on it against the planted truth. The crop-type model
(``train_croptype_shipped``) reuses the same archives and cubes and learns from the planted land cover.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eowatch.errors import InputError

log = logging.getLogger("eowatch")

TRAIN_ARCHIVE_SEEDS = (1, 2, 3, 4)


def build_training_cube(archive_dir: Path, out: Path, workers: int = 2) -> Path:
    """Build the analysis cube of a whole archive (no model involved); return the cube path."""
    from eowatch.demo import archive_run_params, served_archive
    from eowatch.infra.cluster import ClusterConfig, cluster_client
    from eowatch.pipelines.stages import cube_stage_run, prepare_run, search_stage

    with served_archive(archive_dir) as served:
        run = prepare_run(archive_run_params(served, out, archive_dir).to_config(), with_model=False)
        search_stage(run)
        with cluster_client(ClusterConfig(n_workers=workers)) as client:
            return cube_stage_run(run, client)


def train_shipped_model(
    workdir: Path,
    weights_dir: Path,
    archive_seeds: Sequence[int],
    epochs: int,
    seed: int,
    workers: int = 2,
    name: str = "siamese-s2s1-change",
) -> tuple[Any, dict[str, float]]:
    """Archives → cubes → training of the change model ``name`` (a key of ``models.train.RECIPES``);
    writes ``<weights_dir>/<name>.safetensors`` and its card.

    Several archive seeds act as several "years": scenes, events, weather and clouds all differ, which is
    what the model must generalise over.
    """
    from eowatch.demo import ensure_archive
    from eowatch.models.dataset import open_cube, read_truth
    from eowatch.models.train import RECIPES, train_change_sets

    if name not in RECIPES:
        raise InputError(f"no training recipe for {name!r}; change models: {', '.join(RECIPES)}")

    sets = []
    for s in archive_seeds:
        archive = ensure_archive(workdir / f"archive-seed{s}", s)
        cube = build_training_cube(archive, workdir / f"cube-seed{s}", workers)
        with open_cube(cube) as ds:
            truth = read_truth(archive / "truth", ds["x"].values, ds["y"].values)
        sets.append((cube, truth))
    seeds = ",".join(str(s) for s in archive_seeds)
    which = "" if name == "siamese-s2s1-change" else f" {name}"  # the default model's recorded command
    command = f"eowatch train{which} --archive-seeds {seeds} --epochs {epochs} --seed {seed}"
    log.info(f"training {name} on {len(sets)} cubes")
    return train_change_sets(sets, weights_dir, epochs, seed, RECIPES[name], command=command)


CROPTYPE_ARCHIVE_SEEDS = TRAIN_ARCHIVE_SEEDS


def build_croptype_cube(archive_dir: Path, out: Path, workers: int = 2) -> Path:
    """Build the S2 + S1 analysis cube of a whole archive for crop-type training; return the cube path.

    The same cube stage as every monitoring run, without the VHR collection (the crop-type model reads
    only the monthly S2 and S1 composites). Re-running on a finished cube is a no-op (the chunk ledger).
    """
    from eowatch.demo import archive_run_params, served_archive
    from eowatch.infra.cluster import ClusterConfig, cluster_client
    from eowatch.pipelines.stages import cube_stage_run, prepare_run, search_stage

    with served_archive(archive_dir) as served:
        params = archive_run_params(served, out, archive_dir, vhr_collection=None)
        run = prepare_run(params.to_config(), with_model=False)
        search_stage(run)
        with cluster_client(ClusterConfig(n_workers=workers)) as client:
            return cube_stage_run(run, client)


def add_archive_period_arguments(parser: argparse.ArgumentParser) -> None:
    """``--start``/``--end`` of a training command: the period of the archives it generates."""
    for flag, help_text in (
        ("--start", "first day of the training archives (default 2026-03-01)"),
        ("--end", "last day of the training archives (default 2026-08-31)"),
    ):
        parser.add_argument(flag, type=dt.date.fromisoformat, help=help_text)


def archive_period_flags(start: dt.date | None, end: dt.date | None) -> str:
    """The ``--start``/``--end`` part of a recorded training command (empty for the default period)."""
    return (f" --start {start}" if start else "") + (f" --end {end}" if end else "")


def croptype_training_sets(
    workdir: Path,
    archive_seeds: Sequence[int],
    workers: int = 2,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[tuple[Path, Path]]:
    """``(cube, truth_dir)`` per archive seed, generating archives and cubes under ``workdir`` if absent.

    Reuses ``<workdir>/archive-seed<s>`` and ``<workdir>/cube-seed<s>`` (the layout of ``eowatch train``),
    so the change model's training caches serve here too. ``start``/``end`` set the archives' period
    (default March–August); a workdir holds archives of one period (another period is refused).
    """
    from eowatch.demo import ensure_archive

    sets = []
    for s in archive_seeds:
        archive = ensure_archive(workdir / f"archive-seed{s}", s, start, end)
        cube = build_croptype_cube(archive, workdir / f"cube-seed{s}", workers)
        sets.append((Path(cube), archive / "truth"))
    return sets


def train_croptype_shipped(
    workdir: Path,
    weights_dir: Path,
    archive_seeds: Sequence[int],
    epochs: int,
    seed: int,
    workers: int = 2,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> tuple[Any, dict[str, float]]:
    """Archives → cubes → crop-type training; writes ``<weights_dir>/crop-type-ltae.*`` (weights, card).

    Each archive seed is one synthetic "year"; pixels are labelled from the planted land cover (stable
    over the season, no planted change).
    """
    from eowatch.models.train_croptype import CropTrainConfig, train_croptype_sets

    sets = croptype_training_sets(workdir, archive_seeds, workers, start, end)
    seeds = ",".join(str(s) for s in archive_seeds)
    command = (
        f"python -m eowatch.models.train_croptype --workdir {workdir.name} --archive-seeds {seeds} "
        f"--epochs {epochs} --seed {seed}" + archive_period_flags(start, end)
    )
    log.info(f"crop-type training on {len(sets)} cubes")
    return train_croptype_sets(sets, weights_dir, epochs, seed, CropTrainConfig(), command=command)
