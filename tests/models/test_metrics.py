"""Binary and per-type scores: hand-made cases, a numpy oracle and published real predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from eowatch.errors import InputError
from eowatch.models import binary_scores, flatten_scores, per_type_scores

DSIFN = Path(__file__).resolve().parents[3] / "shared" / "data" / "change" / "dsifn_samples"


def test_binary_hand_made() -> None:
    pred = np.array([1, 1, 0, 0, 1, 0], bool)
    truth = np.array([1, 0, 1, 0, 1, 0], bool)
    s = binary_scores(pred, truth)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (2, 1, 1, 2)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and s["iou"] == pytest.approx(0.5)
    assert s["oa"] == pytest.approx(4 / 6)
    assert s["kappa"] == pytest.approx((4 / 6 - 0.5) / 0.5)
    valid = np.array([1, 1, 1, 1, 0, 0], bool)
    assert binary_scores(pred, truth, valid)["tp"] == 1


def test_zero_denominators_are_defined() -> None:
    none = np.zeros(4, bool)
    empty = binary_scores(none, none)
    assert empty["precision"] == empty["recall"] == empty["f1"] == empty["kappa"] == 1.0
    missed = binary_scores(none, ~none)
    assert missed["precision"] == 0.0 and missed["recall"] == 0.0 and missed["f1"] == 0.0
    nothing = binary_scores(none, none, valid=none)
    assert nothing["oa"] == 0.0 and nothing["kappa"] == 0.0
    assert all(np.isfinite(v) for v in {**empty, **missed, **nothing}.values())


def test_per_type_hand_made() -> None:
    truth = np.array([1, 1, 1, 2, 2, 0, 0, 3], np.uint8)
    pred = np.array([1, 2, 0, 2, 2, 1, 0, 0], np.uint8)
    s = per_type_scores(pred, truth)
    assert s["new_building"]["recall_any"] == pytest.approx(2 / 3)
    assert s["new_building"]["recall_type"] == pytest.approx(1 / 3)
    assert s["new_building"]["precision"] == pytest.approx(1 / 2)
    assert s["forest_clearing"]["precision"] == pytest.approx(2 / 3)
    assert s["flooding"]["recall_any"] == 0.0 and s["flooding"]["precision"] == 1.0
    assert s["crop_rotation"]["n_truth"] == 0 and s["crop_rotation"]["recall_type"] == 1.0
    flat = flatten_scores({"val": s})
    assert flat["val.flooding.n_truth"] == 1.0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_binary_matches_numpy_oracle(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 60))
    pred, truth, valid = (data.draw(arrays(bool, n)) for _ in range(3))
    s = binary_scores(pred, truth, valid)
    p, t = pred[valid], truth[valid]
    confusion = np.array([[np.sum(~p & ~t), np.sum(p & ~t)], [np.sum(~p & t), np.sum(p & t)]], float)
    assert (s["tn"], s["fp"], s["fn"], s["tp"]) == tuple(confusion.ravel())
    total = confusion.sum()
    if total:
        oa = np.trace(confusion) / total
        chance = (confusion.sum(0) * confusion.sum(1)).sum() / total**2
        assert s["oa"] == pytest.approx(oa)
        if chance < 1:
            assert s["kappa"] == pytest.approx((oa - chance) / (1 - chance))
    if p.any() and t.any():
        assert s["precision"] == pytest.approx(np.sum(p & t) / p.sum())
        assert s["recall"] == pytest.approx(np.sum(p & t) / t.sum())
    assert 0.0 <= s["iou"] <= s["f1"] <= 1.0


@settings(max_examples=100, deadline=None)
@given(arrays(np.uint8, 40, elements=st.integers(0, 4)), arrays(np.uint8, 40, elements=st.integers(0, 4)))
def test_per_type_matches_oracle(pred: np.ndarray, truth: np.ndarray) -> None:
    s = per_type_scores(pred, truth)
    for code, name in enumerate(("new_building", "forest_clearing", "flooding", "crop_rotation"), start=1):
        if (truth == code).any():
            assert s[name]["recall_any"] == pytest.approx(np.mean(pred[truth == code] > 0))
            assert s[name]["recall_type"] == pytest.approx(np.mean(pred[truth == code] == code))
        if (pred == code).any():
            assert s[name]["precision"] == pytest.approx(np.mean(truth[pred == code] == code))


@pytest.mark.realdata
@pytest.mark.skipif(not DSIFN.is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize(("model", "f1"), [("predict_ChangeFormerV6", 0.882), ("predict_BIT", 0.708)])
def test_pooled_f1_of_published_predictions(model: str, f1: float) -> None:
    from PIL import Image

    names = sorted(p.name for p in (DSIFN / "label").glob("*.png"))
    truth = np.stack([np.array(Image.open(DSIFN / "label" / n)) > 127 for n in names])
    pred = np.stack([np.array(Image.open(DSIFN / model / n)) > 127 for n in names])
    assert binary_scores(pred, truth)["f1"] == pytest.approx(f1, abs=5e-4)


def test_roc_auc_is_the_share_of_positive_negative_pairs_ranked_right() -> None:
    from eowatch.models.metrics import roc_auc

    assert roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert roc_auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert roc_auc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert roc_auc(np.array([2.0]), np.array([2.0, 1.0])) == 0.75  # a tie counts one half
    with pytest.raises(InputError, match="positives and negatives"):
        roc_auc(np.array([]), np.array([1.0]))
    with pytest.raises(InputError, match="finite"):
        roc_auc(np.array([np.nan]), np.array([1.0]))
