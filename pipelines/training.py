"""Reproducible training of the shipped change model from the project's own archive.

``eowatch train`` generates the training archive (a seed the demo does not use), builds its analysis
cube with the same cube stage as every monitoring run (served through the real STAC API and asset
server), and trains the siamese model on it against the planted truth.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("eowatch")

TRAIN_ARCHIVE_SEED = 1


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
    workdir: Path, weights_dir: Path, archive_seed: int, epochs: int, seed: int, workers: int = 2
) -> tuple[Any, dict[str, float]]:
    """Archive → cube → training; writes ``<weights_dir>/<name>.safetensors`` and its card."""
    from eowatch.demo import ensure_archive
    from eowatch.models.train import train_change_model

    archive = ensure_archive(workdir / f"archive-seed{archive_seed}", archive_seed)
    cube = build_training_cube(archive, workdir / f"cube-seed{archive_seed}", workers)
    command = f"eowatch train --archive-seed {archive_seed} --epochs {epochs} --seed {seed}"
    log.info(f"training on {cube}")
    return train_change_model(cube, archive / "truth", weights_dir, epochs, seed, command=command)
