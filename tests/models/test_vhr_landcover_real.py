"""The VHR land-cover model on real imagery: building calls on the new buildings of the LEVIR-CD samples
(``../shared/data/change/levir_samples``), recomputed and compared with the scores in the card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eowatch.models import registry
from eowatch.models.train_vhr_landcover import centroids_path
from eowatch.models.vhr_landcover_eval import ColourCentroids
from eowatch.models.vhr_landcover_real import building_scores, predict_real, read_levir, real_building_scores

pytestmark = pytest.mark.realdata

NAME = "landcover-vhr-unet"


def test_building_scores_count_the_labelled_pixels() -> None:
    labels = np.zeros((1, 4, 4), bool)
    labels[0, :2, :2] = True
    codes_b = np.zeros((1, 4, 4), np.uint8)
    codes_b[0, 0, :2] = 1  # half of the new roof called building in B
    codes_b[0, 3, 3] = 1  # an older building elsewhere
    codes_a = np.full((1, 4, 4), 2, np.uint8)  # woodland before
    scores = building_scores(codes_a, codes_b, labels)
    assert scores == {
        "building_recall_b": 0.5,
        "building_share_a": 0.0,
        "building_share_b_unlabelled": 1 / 12,
        "n_labelled": 4.0,
    }


def test_levir_new_buildings_scores_match_the_card(shared_data: Path) -> None:
    root = shared_data / "change"
    if not (root / "levir_samples" / "label").is_dir():
        pytest.skip("no LEVIR-CD samples")
    model = registry.get(NAME)
    pairs = read_levir(root)
    codes = predict_real(model, pairs.after[:1], pairs.gsd_m)
    assert codes.shape == (1, *pairs.labels.shape[1:]) and codes.dtype == np.uint8
    baseline = ColourCentroids.read(centroids_path(registry.WEIGHTS_DIR, NAME))
    scores = real_building_scores(model, root, baseline)
    for key, value in scores.items():
        assert model.card.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert scores["levir.n_labelled"] == float(pairs.labels.sum())
