"""Reproducible training of the shipped change model from the project's own archive.

``eowatch train`` generates the training archive (a seed the demo does not use), builds its analysis
cube with the same cube stage as every monitoring run (served through the real STAC API and asset
server), and trains the siamese model on it against the planted truth.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    workdir: Path, weights_dir: Path, archive_seeds: Sequence[int], epochs: int, seed: int, workers: int = 2
) -> tuple[Any, dict[str, float]]:
    """Archives → cubes → training; writes ``<weights_dir>/<name>.safetensors`` and its card.

    Several archive seeds act as several "years": scenes, events, weather and clouds all differ, which is
    what the model must generalise over.
    """
    from eowatch.demo import ensure_archive
    from eowatch.models.dataset import open_cube, read_truth
    from eowatch.models.train import train_change_sets

    sets = []
    for s in archive_seeds:
        archive = ensure_archive(workdir / f"archive-seed{s}", s)
        cube = build_training_cube(archive, workdir / f"cube-seed{s}", workers)
        with open_cube(cube) as ds:
            truth = read_truth(archive / "truth", ds["x"].values, ds["y"].values)
        sets.append((cube, truth))
    seeds = ",".join(str(s) for s in archive_seeds)
    command = f"eowatch train --archive-seeds {seeds} --epochs {epochs} --seed {seed}"
    log.info(f"training on {len(sets)} cubes")
    return train_change_sets(sets, weights_dir, epochs, seed, command=command)
