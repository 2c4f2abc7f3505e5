"""Training smoke test on a tiny synthetic cube with planted changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eowatch.models import TrainConfig, load_model, predict_change, train_change_model

from .synthetic import write_scene, write_truth_tifs


@pytest.mark.slow
def test_training_learns_and_saves_a_loadable_model(tmp_path: Path) -> None:
    truth = write_scene(tmp_path / "cube.zarr", size=96, periods=4, seed=2, n_changes=24)
    write_truth_tifs(tmp_path / "truth", truth)
    # 24 optimiser steps only: emphasise change (as a short run needs) to see learning at all.
    config = TrainConfig(
        name="smoke",
        chip=32,
        chips_per_epoch=64,
        batch_size=8,
        width=16,
        depth=3,
        changed_fraction=0.5,
        class_weighting=True,
    )
    threads = torch.get_num_threads()
    model, scores = train_change_model(
        tmp_path / "cube.zarr", tmp_path / "truth", tmp_path / "out", epochs=3, seed=0, config=config
    )
    assert torch.get_num_threads() == threads  # settings restored
    assert scores["train.loss_epoch3"] < scores["train.loss_epoch1"]
    assert scores["val.ever.recall"] > 0.5
    assert model.card.metrics == scores
    assert "--epochs 3 --seed 0" in model.card.training_command
    again = load_model(tmp_path / "out" / "smoke.card.json")
    assert again.card.weights_sha256 == model.card.weights_sha256
    assert again.module.season_channels == 2  # the default: each date knows its season
    x = np.zeros((8, 16, 16), np.float32)
    assert predict_change(again, x, x, days=(20557, 20588)).shape == (5, 16, 16)


def test_training_is_deterministic(tmp_path: Path) -> None:
    truth = write_scene(tmp_path / "cube.zarr", size=64, periods=3, seed=5, n_changes=8)
    config = TrainConfig(name="det", chip=16, chips_per_epoch=16, batch_size=8, width=8, depth=2)
    from eowatch.models.train import train_change_arrays

    a, _ = train_change_arrays(tmp_path / "cube.zarr", truth, tmp_path / "a", epochs=1, seed=1, config=config)
    b, _ = train_change_arrays(tmp_path / "cube.zarr", truth, tmp_path / "b", epochs=1, seed=1, config=config)
    assert a.card.weights_sha256 == b.card.weights_sha256


def test_training_on_several_cubes_pools_validation(tmp_path: Path) -> None:
    from eowatch.models.train import train_change_sets

    sets = []
    for seed in (5, 6):
        truth = write_scene(tmp_path / f"cube{seed}.zarr", size=64, periods=3, seed=seed, n_changes=8)
        sets.append((tmp_path / f"cube{seed}.zarr", truth))
    config = TrainConfig(name="multi", chip=16, chips_per_epoch=16, batch_size=8, width=8, depth=2)
    model, scores = train_change_sets(sets, tmp_path / "out", epochs=1, seed=1, config=config)
    assert 0.0 < model.card.decision_threshold < 1.0
    assert model.card.decision_threshold == scores["val.decision_threshold"]
    assert "cube5.zarr" in model.card.training_data and "cube6.zarr" in model.card.training_data
    # both held-out blocks (13 columns each of 64) are pooled: 2 x 13 x 64 pixels per transition
    assert (
        scores["val.ever.tp"] + scores["val.ever.fp"] + scores["val.ever.fn"] + scores["val.ever.tn"]
        <= 2 * 13 * 64
    )
