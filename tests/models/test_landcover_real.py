"""The shipped S2 land-cover models (one period; three for ``landcover-s2-seasonal-unet``) on real
imagery (``../shared/data``).

(a) Slovenia (``landcover/eolearn_slovenia``): five real S2 L1C scenes (TOA reflectance, not L2A)
composited into one period and scored against the reference land use (shrubland, which the model cannot
predict, is left out of the headline); (b) WorldCereal (``crops/worldcereal``): the model's cropland on
the real monthly L2A composites and on a June-August composite against WorldCereal's cropland map. The
metric code is checked on a known case first; the scores are recomputed and must equal the card's, and
stay above floors a little under the measured values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eowatch.models import registry
from eowatch.models.landcover_real import (
    evaluate_slovenia,
    evaluate_worldcereal_cropland,
    read_slovenia,
    score_classes,
)
from eowatch.models.metrics import binary_scores
from eowatch.models.train_landcover import centroids_file, load_centroids
from eowatch.models.weights import LoadedModel

pytestmark = pytest.mark.realdata

NAME = "landcover-s2-unet"
SEASONAL = "landcover-s2-seasonal-unet"
#: Floors a little under the measured scores (card: ``slovenia.*``, ``worldcereal.*``).
FLOORS = {
    NAME: {
        "slovenia.model.oa": 0.77,  # measured 0.797 (the majority class alone: 0.793)
        "slovenia.model.kappa": 0.02,  # measured 0.048 (index baseline 0.205: the model is worse)
        "worldcereal.summer.model.kappa": 0.6,  # measured 0.640 (index baseline 0.288)
        "worldcereal.summer.model.oa": 0.8,  # measured 0.838
    },
    SEASONAL: {  # the mapped month with the two before it
        "slovenia.model.oa": 0.77,  # measured 0.796 (one dateless composite: no history)
        "slovenia.model.kappa": 0.01,  # measured 0.027 (0.1.0: 0.034)
        "worldcereal.summer.model.kappa": 0.74,  # measured 0.774: August with June and July
        "worldcereal.summer.model.oa": 0.86,  # measured 0.894
    },
}


@pytest.fixture(scope="module", params=[NAME, SEASONAL])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    return registry.get(request.param)


@pytest.fixture(scope="module")
def centroids(model: LoadedModel) -> dict[int, list[float]]:
    return load_centroids(centroids_file(registry.WEIGHTS_DIR, model.card.name), model.card)


@pytest.fixture(scope="module")
def slovenia(shared_data: Path, model: LoadedModel, centroids: dict[int, list[float]]) -> dict[str, float]:
    folder = shared_data / "landcover" / "eolearn_slovenia"
    if not (folder / "REFERENCE_SCENES.npy").is_file():
        pytest.skip(f"{folder} lacks the eo-learn example scenes")
    return evaluate_slovenia(model, folder, centroids)


@pytest.fixture(scope="module")
def worldcereal(shared_data: Path, model: LoadedModel, centroids: dict[int, list[float]]) -> dict[str, float]:
    folder = shared_data / "crops" / "worldcereal"
    if not (folder / "worldcereal_preprocessed_inputs.nc").is_file():
        pytest.skip(f"{folder} lacks the WorldCereal cube")
    return evaluate_worldcereal_cropland(model, folder, centroids)


def test_metric_code_on_a_known_case(model: LoadedModel) -> None:
    # 2 classes, 10 pixels: 4 + 3 right; Cohen's kappa by hand: po = 0.7, pe = (5*5 + 5*5) / 100 = 0.5
    truth = np.array([0] * 5 + [1] * 5)
    pred = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
    s = score_classes(pred, truth, model)
    assert s["oa"] == pytest.approx(0.7) and s["kappa"] == pytest.approx(0.4)
    assert s["tree_cover"]["f1"] == pytest.approx(0.727, abs=1e-3)  # 2 * 4 / (5 + 6)
    b = binary_scores(pred == 1, truth == 1)
    assert b["kappa"] == pytest.approx(0.4) and b["oa"] == pytest.approx(0.7)


def test_slovenia_composite_is_toa_of_the_clear_scenes(shared_data: Path, model: LoadedModel) -> None:
    folder = shared_data / "landcover" / "eolearn_slovenia"
    if not (folder / "REFERENCE_SCENES.npy").is_file():
        pytest.skip(f"{folder} lacks the eo-learn example scenes")
    patch = read_slovenia(folder, model.card.bands)
    assert patch.composite.shape == (6, 101, 100) and patch.reference.shape == (101, 100)
    assert np.isfinite(patch.composite).all() and patch.clear_scenes.min() >= 1
    assert (patch.clear_scenes <= 4).mean() > 0.95  # the first scene is cloud over nearly all the patch
    assert set(np.unique(patch.reference)) == {0, 1, 2, 3, 4, 8}


def test_slovenia_scores_match_the_card(model: LoadedModel, slovenia: dict[str, float]) -> None:
    for key, value in slovenia.items():
        assert model.card.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert slovenia["slovenia.excluded_px"] == 155 + 358  # no data and shrubland
    for key in ("slovenia.model.oa", "slovenia.model.kappa"):
        assert slovenia[key] >= FLOORS[model.card.name][key], key


def test_worldcereal_cropland_scores_match_the_card(
    model: LoadedModel, worldcereal: dict[str, float]
) -> None:
    for key, value in worldcereal.items():
        assert model.card.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert 0.3 < worldcereal["worldcereal.reference_cropland_share"] < 0.5
    for key in ("worldcereal.summer.model.kappa", "worldcereal.summer.model.oa"):
        assert worldcereal[key] >= FLOORS[model.card.name][key], key
    observed = [m for m in range(1, 13) if worldcereal[f"worldcereal.month{m:02d}.observed"]]
    assert len(observed) == worldcereal["worldcereal.scored_months"] >= 10  # Dec and Jan have no clear data
    assert all(f"worldcereal.month{m:02d}.model.kappa" in worldcereal for m in observed)


@pytest.mark.slow
def test_two_fold_fine_tuning_on_slovenia_equals_the_card_and_beats_the_baseline(
    shared_data: Path, model: LoadedModel
) -> None:
    """The 2-fold fine-tuning check recomputed (deterministic on CPU): each half is mapped by a copy
    fine-tuned on the other half only; the pooled out-of-fold map beats the index baseline (the
    one-period model only: the seasonal model runs the same code)."""
    from eowatch.models.landcover_finetune import slovenia_crossfit

    if model.card.name != NAME:
        pytest.skip("the fine-tuning check is recomputed for the one-period model")

    scores = slovenia_crossfit(model, shared_data / "landcover" / "eolearn_slovenia")
    card = model.card.metrics
    for key in ("oa", "kappa", "miou"):
        assert scores[f"slovenia.finetuned_2fold.{key}"] == pytest.approx(
            card[f"slovenia.finetuned_2fold.{key}"], abs=1e-3
        )
    assert scores["slovenia.finetuned_2fold.kappa"] > card["slovenia.baseline.kappa"] + 0.3
    assert scores["slovenia.finetuned_2fold.n"] == card["slovenia.model.n"]  # every scored pixel, once
