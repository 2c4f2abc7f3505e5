"""``eowatch evaluate`` on real data: the crop-type model on the WorldCereal folder reproduces the scores
recorded in its card, and writes the metrics and the confusion matrix of the labelled samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eowatch.cli import main
from eowatch.models import registry

pytestmark = pytest.mark.realdata


def test_evaluate_crop_type_on_worldcereal(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "crops" / "worldcereal"
    assert main(["evaluate", "crop-type-ltae", str(folder), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["kind"] == "worldcereal"
    card = registry.get("crop-type-ltae").card
    for key in ("flanders.model.oa", "flanders.model.kappa", "worldcereal_patch.model.arable.kappa"):
        assert report["worldcereal"][key] == pytest.approx(card.metrics[key], abs=1e-6)
    counts = np.array(report["flanders_confusion"]["counts"])
    assert np.trace(counts) / counts.sum() == pytest.approx(card.metrics["flanders.model.oa"], abs=0.03)
    assert Image.open(tmp_path / "confusion.png").size[0] > 300


def test_evaluate_refuses_a_change_model_on_crop_data(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = shared_data / "crops" / "worldcereal"
    assert main(["evaluate", "siamese-s2s1-change", str(folder), "--out", str(tmp_path)]) == 7
    assert "scores crop-type models" in capsys.readouterr().err
