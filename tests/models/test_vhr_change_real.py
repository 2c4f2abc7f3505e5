"""The VHR change model on real pairs (``../shared/data/change``): LEVIR-CD and DSIFN-CD samples.

First the metric code: the pooled F1 of the published ChangeFormerV6 and BIT predictions against the
DSIFN-CD labels must be the published 0.882 and 0.708. Then the shipped model (trained on synthetic
archives only) and the CVA baseline are scored; the scores must equal the ones in the model card and stay
above floors set a little under what was measured when the model was trained (see docs/models.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eowatch.models import registry
from eowatch.models.train_vhr import real_scores
from eowatch.models.vhr_real import REAL_DATASETS, read_pairs, read_published, score
from eowatch.models.weights import LoadedModel

pytestmark = pytest.mark.realdata

#: Floors of the pooled F1 of the shipped model (0.5.0), a little under the measured LEVIR-CD 0.331 and
#: DSIFN-CD 0.453 (in the card and docs/models.md). 0.4.0 measured 0.371 and 0.441 with the same weights
#: at the threshold 0.70; 0.5.0 fills no data before inference, which removed the false alarms along
#: padded image edges on the synthetic validation archives, and the threshold recalibrated there fell to
#: 0.55 (the real pairs have no no-data; on LEVIR-CD the lower threshold trades precision for recall).
#: 0.2.0 measured 0.063 and 0.122, under the CVA baseline (LEVIR-CD 0.241, DSIFN-CD 0.378); since 0.3.0,
#: trained with drawn construction sites, the model beats it on both: ``test_cva_baseline_scores`` pins
#: that down too.
F1_FLOORS = {"levir": 0.31, "dsifn": 0.42}
CVA_F1 = {"levir": 0.241, "dsifn": 0.378}


@pytest.fixture(scope="module")
def root(shared_data: Path) -> Path:
    path = shared_data / "change"
    if not all((path / folder / "label").is_dir() for folder, _ in REAL_DATASETS.values()):
        pytest.skip(f"{path} lacks the LEVIR-CD / DSIFN-CD samples")
    return path


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return registry.get("siamese-vhr-change")


@pytest.fixture(scope="module")
def scores(model: LoadedModel, root: Path) -> dict[str, float]:
    return real_scores(model, root)


@pytest.mark.parametrize(("prediction", "f1"), [("predict_ChangeFormerV6", 0.882), ("predict_BIT", 0.708)])
def test_metric_code_reproduces_published_dsifn_f1(root: Path, prediction: str, f1: float) -> None:
    folder, gsd = REAL_DATASETS["dsifn"]
    pairs = read_pairs(root / folder, gsd)
    assert len(pairs.names) == 10 and pairs.labels.shape == (10, 256, 256)
    published = read_published(root / folder, prediction, pairs.names)
    assert score(published, pairs.labels)["f1"] == pytest.approx(f1, abs=5e-4)


def test_levir_pairs_are_read_with_their_no_change_pair(root: Path) -> None:
    folder, gsd = REAL_DATASETS["levir"]
    pairs = read_pairs(root / folder, gsd)
    assert pairs.before.shape == pairs.after.shape == (len(pairs.names), 3, 256, 256)
    empty = pairs.names.index("train_386_0512_0768.png")
    assert not pairs.labels[empty].any() and pairs.labels.any()


def test_real_scores_equal_the_card(model: LoadedModel, scores: dict[str, float]) -> None:
    for key, value in scores.items():
        assert model.card.metrics[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("dataset", ["levir", "dsifn"])
def test_real_scores_stay_above_floors(scores: dict[str, float], dataset: str) -> None:
    assert scores[f"{dataset}.f1"] >= F1_FLOORS[dataset]
    assert 0.0 <= scores[f"{dataset}.iou"] <= scores[f"{dataset}.f1"] <= 1.0
    assert np.isfinite(scores[f"{dataset}.cva.f1"])


@pytest.mark.parametrize("dataset", ["levir", "dsifn"])
def test_cva_baseline_scores(scores: dict[str, float], dataset: str) -> None:
    assert scores[f"{dataset}.cva.f1"] == pytest.approx(CVA_F1[dataset], abs=5e-4)
    assert scores[f"{dataset}.f1"] > scores[f"{dataset}.cva.f1"]  # since 0.3.0 (docs/models.md)
