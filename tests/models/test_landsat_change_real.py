"""The S2 change model on a real Landsat change pair (``../shared/data/change/landsat_taizhou``).

Landsat-7 ETM+ 2000-03-17 and 2003-02-06 over Taizhou (China), 400 x 400 px at 30 m, with partial
reference masks (urban growth, new roads, farmland change). The shipped model (trained on synthetic S2+S1
archives only), the same model fine-tuned on each image half and scored on the other (the two-fold check,
about 30 s) and the CVA baseline are scored on the labelled pixels; the scores must equal the ones in the
card and stay above floors set a little under what was measured (see docs/models.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eowatch.models import registry
from eowatch.models.landsat_finetune import finetune_two_fold
from eowatch.models.landsat_real import read_change_pair, score_pair
from eowatch.models.weights import LoadedModel

pytestmark = pytest.mark.realdata

#: Floors a little under the measured (siamese-s2s1-change 0.3.0): AUC 0.957; F1 0.453 at the card's
#: threshold 0.96 (precision 0.995, recall 0.293); F1 0.864 with the threshold of the other image half;
#: F1 0.872, AUC 0.974 fine-tuned on the other half.
FLOORS = {
    "model.auc": 0.94,
    "model.precision": 0.97,
    "recalibrated_2fold.f1": 0.84,
    "finetuned_2fold.f1": 0.85,
    "finetuned_2fold.auc": 0.96,
}


@pytest.fixture(scope="module")
def folder(shared_data: Path) -> Path:
    path = shared_data / "change" / "landsat_taizhou"
    if not (path / "change.bmp").is_file():
        pytest.skip(f"{path} lacks the Taizhou pair")
    return path


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return registry.get("siamese-s2s1-change")


@pytest.fixture(scope="module")
def scores(model: LoadedModel, folder: Path) -> dict[str, float]:
    pair = read_change_pair(folder)
    return {**score_pair(model, pair), **finetune_two_fold(model, pair)}


def test_taizhou_is_read_with_its_dates_and_labels(folder: Path) -> None:
    pair = read_change_pair(folder)
    assert pair.name == "taizhou" and pair.before.shape == (6, 400, 400)
    assert pair.dates == (np.datetime64("2000-03-17"), np.datetime64("2003-02-06"))
    assert (pair.gsd_m, pair.crs) == (30.0, "EPSG:32651")
    assert (int(pair.changed.sum()), int(pair.unchanged.sum())) == (4227, 17163)


def test_taizhou_scores_equal_the_card(model: LoadedModel, scores: dict[str, float]) -> None:
    assert scores.keys() <= model.card.metrics.keys()
    for key, value in scores.items():
        assert model.card.metrics[key] == pytest.approx(value, abs=1e-6), key


def test_taizhou_scores_stay_above_floors(scores: dict[str, float]) -> None:
    for key, floor in FLOORS.items():
        assert scores[f"taizhou.{key}"] >= floor, key
    # The CVA baseline is strong on this pair's clear-cut samples; the card's threshold, calibrated on
    # synthetic pairs, is far too strict here (the recalibrated one shows what the ranking is worth).
    assert scores["taizhou.cva.f1"] == pytest.approx(0.9116, abs=5e-4)
    assert scores["taizhou.model.f1"] < scores["taizhou.recalibrated_2fold.f1"] < scores["taizhou.cva.f1"]
    assert scores["taizhou.finetuned_2fold.f1"] < scores["taizhou.cva.f1"]


def test_the_semantic_models_change_head_on_taizhou_equals_its_card(folder: Path) -> None:
    """siamese-s2s1-semantic's change head, fed as above: weaker than the binary model (AUC 0.807, F1
    0.099 at its threshold 0.95, 0.495 with the other half's); no fine-tuning check (three heads)."""
    semantic = registry.get("siamese-s2s1-semantic")
    scores = score_pair(semantic, read_change_pair(folder))
    for key, value in scores.items():
        assert semantic.card.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert scores["taizhou.model.auc"] >= 0.78


def test_the_gap_models_taizhou_scores_equal_its_card(folder: Path) -> None:
    """siamese-s2s1-gap-change (trained with S1 dropped per date) out of the box: AUC 0.718, F1 0.165 at
    its threshold (its fine-tuning check, F1 0.942, is in the card too; not recomputed here)."""
    gap = registry.get("siamese-s2s1-gap-change")
    scores = score_pair(gap, read_change_pair(folder))
    for key, value in scores.items():
        assert gap.card.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert gap.card.metrics["taizhou.finetuned_2fold.f1"] > scores["taizhou.cva.f1"]
