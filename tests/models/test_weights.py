"""Model cards, safetensors save/load, checksums and the registry."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from eowatch.errors import ModelError
from eowatch.models import ModelCard, SiameseChangeNet, check_inputs, load_model, registry, save_model

from .conftest import make_card


def test_card_json_round_trip(tiny_module: SiameseChangeNet) -> None:
    card = make_card(tiny_module)
    again = ModelCard.from_json(card.to_json())
    assert again == card
    data = json.loads(card.to_json())
    assert data["classes"]["3"] == {"name": "flooding", "colour": [0, 130, 200]}
    assert data["bands"][-2:] == ["vv_db", "vh_db"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "segmentation"}, "task"),
        ({"bands": ("red", "red")}, "unique"),
        ({"normalization": {}}, "normalization"),
        ({"architecture_args": {"in_channels": 3, "n_classes": 5, "width": 8, "depth": 3}}, "in_channels"),
        ({"weights_sha256": "xyz"}, "sha256"),
    ],
)
def test_card_validation(tiny_module: SiameseChangeNet, change: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        replace(make_card(tiny_module), **change)


def test_save_load_round_trip_is_exact(tiny_module: SiameseChangeNet, tmp_path: Path) -> None:
    card = save_model(tiny_module, make_card(tiny_module), tmp_path)
    assert (tmp_path / "tiny-change.safetensors").is_file()
    assert len(card.weights_sha256) == 64
    loaded = load_model(tmp_path / "tiny-change.card.json")
    assert loaded.card == card and not loaded.module.training
    for key, value in tiny_module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)
    assert load_model(tmp_path / "tiny-change.safetensors").card == card


def test_loading_never_unpickles(
    tiny_module: SiameseChangeNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_model(tiny_module, make_card(tiny_module), tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling is not allowed")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded = load_model(tmp_path / "tiny-change.card.json")
    assert loaded.module.receptive_field == tiny_module.receptive_field
    assert not (tmp_path / "tiny-change.safetensors").read_bytes().startswith(b"\x80")  # no pickle header


def test_checksum_mismatch_is_refused(tiny_module: SiameseChangeNet, tmp_path: Path) -> None:
    save_model(tiny_module, make_card(tiny_module), tmp_path)
    weights = tmp_path / "tiny-change.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(tmp_path / "tiny-change.card.json")


def test_missing_file_and_architecture_mismatch(tiny_module: SiameseChangeNet, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent.card.json")
    card = save_model(tiny_module, make_card(tiny_module), tmp_path)
    card_file = tmp_path / "tiny-change.card.json"
    wrong = replace(card, architecture_args={**card.architecture_args, "width": 16})
    card_file.write_text(wrong.to_json())
    with pytest.raises(ModelError, match="architecture"):
        load_model(card_file)
    (tmp_path / "tiny-change.safetensors").unlink()
    with pytest.raises(ModelError, match="not found"):
        load_model(card_file)


def test_save_refuses_a_card_of_another_architecture(tiny_module: SiameseChangeNet, tmp_path: Path) -> None:
    other = SiameseChangeNet(9, width=4, depth=1)
    with pytest.raises(ModelError, match="does not match"):
        save_model(other, make_card(tiny_module), tmp_path)


def test_registry(tiny_module: SiameseChangeNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="siamese-s2s1-change"):
        registry.get("no-such-model")
    save_model(tiny_module, make_card(tiny_module), tmp_path)
    monkeypatch.setitem(registry.MODELS, "tiny-change", tmp_path / "tiny-change.card.json")
    registry.get.cache_clear()
    try:
        first = registry.get("tiny-change")
        assert registry.get("tiny-change") is first  # loaded once per process
        assert load_model("tiny-change").card == first.card
        assert "tiny-change" in [c.name for c in registry.list_models()]
    finally:
        registry.get.cache_clear()
    assert Path(registry.__file__).parent / "weights" == registry.WEIGHTS_DIR


def test_check_inputs(tiny_module: SiameseChangeNet) -> None:
    card = make_card(tiny_module)
    check_inputs(card, [*card.bands, "clear_count"], 10.0)
    with pytest.raises(ModelError, match="vh_db"):
        check_inputs(card, card.bands[:-1], 10.0)
    with pytest.raises(ModelError, match="20 m"):
        check_inputs(card, card.bands, 20.0)
    assert np.isclose(card.resolution_m, 10.0)
