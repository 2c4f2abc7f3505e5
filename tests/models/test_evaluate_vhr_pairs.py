"""``eowatch evaluate`` on VHR change pairs (``A/``, ``B/``, ``label/`` PNGs): a small written folder,
the refusals, and the real LEVIR-CD samples scored as the cards record them, for the VHR change model
and (new buildings called building) the VHR land-cover model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eowatch.cli import main
from eowatch.models import registry


def _write_pairs(folder: Path, n: int = 2, size: int = 96) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("A", "B", "label"):
        (folder / sub).mkdir(parents=True)
    for i in range(n):
        field = np.clip(rng.normal((90, 120, 70), 8, (size, size, 3)), 0, 255).astype(np.uint8)
        after = field.copy()
        after[30:60, 30:60] = (200, 190, 185)  # a new roof
        label = np.zeros((size, size), np.uint8)
        label[30:60, 30:60] = 255
        Image.fromarray(field).save(folder / "A" / f"p{i}.png")
        Image.fromarray(after).save(folder / "B" / f"p{i}.png")
        Image.fromarray(label).save(folder / "label" / f"p{i}.png")


def test_vhr_pairs_are_scored_pooled_with_their_pixel_size(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "my_pairs"
    _write_pairs(folder)
    out = tmp_path / "eval"
    assert main(["evaluate", "siamese-vhr-change", str(folder), "--gsd", "1", "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["kind"] == "vhr-pairs"
    scores = report["vhr_pairs"]
    assert scores["pairs"] == 2 and scores["gsd_m"] == 1.0
    assert scores["model.tp"] + scores["model.fn"] == 2 * 30 * 30  # pooled over both pairs
    assert {"model.f1", "cva.f1"} <= scores.keys() and (out / "confusion.png").is_file()
    assert "pairs pooled" in capsys.readouterr().out


def test_vhr_pairs_need_a_pixel_size_and_a_vhr_change_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "my_pairs"
    _write_pairs(folder, n=1)
    assert main(["evaluate", "siamese-vhr-change", str(folder)]) != 0
    assert "--gsd METRES" in capsys.readouterr().err
    assert main(["evaluate", "siamese-s2s1-change", str(folder), "--gsd", "1"]) != 0
    assert "score VHR change models" in capsys.readouterr().err


def test_vhr_land_cover_on_building_pairs_counts_new_roofs_called_building(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "my_pairs"
    _write_pairs(folder)
    out = tmp_path / "eval"
    assert main(["evaluate", "landcover-vhr-unet", str(folder), "--gsd", "1", "--out", str(out)]) == 0
    scores = json.loads((out / "metrics.json").read_text())["vhr_buildings"]
    assert scores["n_labelled"] == 2 * 30 * 30 and scores["pairs"] == 2
    for share in ("building_recall_b", "building_share_a", "building_share_b_unlabelled"):
        assert 0.0 <= scores[share] <= 1.0
    assert (out / "confusion.png").is_file() and "called building" in capsys.readouterr().out


@pytest.fixture
def levir(shared_data: Path) -> Path:
    """The LEVIR-CD samples folder of the shared data (skips when absent)."""
    folder = shared_data / "change" / "levir_samples"
    if not (folder / "label").is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


def _evaluate(model: str, folder: Path, out: Path, kind: str) -> dict:
    assert main(["evaluate", model, str(folder), "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())[kind]


@pytest.mark.realdata
def test_levir_samples_through_the_cli_equal_the_card(levir: Path, tmp_path: Path) -> None:
    scores = _evaluate("siamese-vhr-change", levir, tmp_path, "vhr_pairs")
    card = registry.get("siamese-vhr-change").card.metrics
    assert scores["gsd_m"] == 0.5  # known for LEVIR-CD
    for metric in ("f1", "precision", "recall", "iou"):
        assert scores[f"model.{metric}"] == pytest.approx(card[f"levir.{metric}"], abs=1e-6)
        assert scores[f"cva.{metric}"] == pytest.approx(card[f"levir.cva.{metric}"], abs=1e-6)


@pytest.mark.realdata
def test_levir_samples_buildings_through_the_cli_equal_the_land_cover_card(
    levir: Path, tmp_path: Path
) -> None:
    scores = _evaluate("landcover-vhr-unet", levir, tmp_path, "vhr_buildings")
    card = registry.get("landcover-vhr-unet").card.metrics
    for metric in ("building_recall_b", "building_share_a", "building_share_b_unlabelled", "n_labelled"):
        assert scores[metric] == pytest.approx(card[f"levir.{metric}"], abs=1e-6)
