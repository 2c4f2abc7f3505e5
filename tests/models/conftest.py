"""Fixtures for the model tests: a small randomly initialised model and its card."""

from __future__ import annotations

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
