"""Fixtures for the model tests: a small randomly initialised model and its card."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import torch

from eowatch.models import DEFAULT_BANDS, LoadedModel, ModelCard, SiameseChangeNet, change_classes


def make_card(module: SiameseChangeNet, name: str = "tiny-change") -> ModelCard:
    """A valid card for ``module`` (8 S2+S1 bands plus validity)."""
    return ModelCard(
        name=name,
        version="0.0.1",
        architecture="SiameseChangeNet",
        architecture_args=module.config,
        bands=DEFAULT_BANDS,
        normalization={b: (0.1 * i, 0.5 + i) for i, b in enumerate(DEFAULT_BANDS)},
        classes=change_classes(),
        receptive_field_px=module.receptive_field,
        patch_size=32,
        training_data="random init",
        training_command="none",
        metrics={"val.binary.f1": 0.5},
    )


@pytest.fixture
def tiny_module() -> SiameseChangeNet:
    torch.manual_seed(0)
    return SiameseChangeNet(len(DEFAULT_BANDS) + 1, width=8, depth=3).eval()


@pytest.fixture
def tiny_model(tiny_module: SiameseChangeNet) -> LoadedModel:
    return LoadedModel(module=tiny_module.requires_grad_(False), card=make_card(tiny_module))


@pytest.fixture
def generated_archives(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, dt.date, dt.date]]:
    """Training commands run without archives or cubes: each archive they would generate is recorded
    as ``(seed, start, end)`` in the list returned, and the cube stage returns its output path."""
    import eowatch.archive
    import eowatch.pipelines.training as training

    made: list[tuple[int, dt.date, dt.date]] = []

    def fake_make(out: Path, config: eowatch.archive.ArchiveConfig, progress: object = None) -> Path:
        made.append((config.seed, config.start, config.end))
        return out / "archive.json"

    monkeypatch.setattr(eowatch.archive, "make_archive", fake_make)
    monkeypatch.setattr(training, "build_croptype_cube", lambda archive, out, workers: out)
    return made
