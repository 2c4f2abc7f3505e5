"""Confusion-matrix scores: counts, per-class scores, SECOND's SeK and mIoU, and the picture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eowatch.errors import InputError
from eowatch.models.confusion import class_scores, confusion_matrix, render_confusion, semantic_change_scores
from eowatch.models.metrics import binary_scores


def test_counts_skip_out_of_range_and_invalid_pixels() -> None:
    truth = np.array([0, 0, 1, 2, 2, 255, 1])
    pred = np.array([0, 1, 1, 2, 0, 0, 9])
    valid = np.array([1, 1, 1, 1, 1, 1, 0], bool)
    cm = confusion_matrix(pred, truth, 3, valid)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert cm.dtype == np.int64
    with pytest.raises(InputError, match="differs"):
        confusion_matrix(pred[:3], truth, 3)


def test_class_scores_agree_with_the_binary_scores() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((64, 64)) < 0.2
    pred = truth ^ (rng.random((64, 64)) < 0.1)
    cm = confusion_matrix(pred.astype(int), truth.astype(int), 2)
    got = class_scores(cm, {0: "no", 1: "yes"})
    ref = binary_scores(pred, truth)
    yes = got["per_class"]["yes"]
    assert yes["precision"] == pytest.approx(ref["precision"])
    assert yes["recall"] == pytest.approx(ref["recall"])
    assert yes["f1"] == pytest.approx(ref["f1"]) and yes["iou"] == pytest.approx(ref["iou"])
    assert got["oa"] == pytest.approx(ref["oa"]) and got["kappa"] == pytest.approx(ref["kappa"])
    assert got["miou"] == pytest.approx((got["per_class"]["no"]["iou"] + yes["iou"]) / 2)


def test_sek_by_hand() -> None:
    # truth rows, prediction columns; class 0 = no change
    cm = np.array([[80, 5, 5], [4, 3, 1], [0, 1, 1]])
    got = semantic_change_scores(cm)
    iou_nc = 80 / (90 + 84 - 80)
    iou_c = (3 + 1 + 1 + 1) / (100 - 80)
    q = cm.astype(float)
    q[0, 0] = 0
    rho = (3 + 1) / q.sum()
    eta = (q.sum(0) * q.sum(1)).sum() / q.sum() ** 2
    assert got["iou_nochange"] == pytest.approx(iou_nc)
    assert got["iou_change"] == pytest.approx(iou_c)
    assert got["miou"] == pytest.approx((iou_nc + iou_c) / 2)
    assert got["sek"] == pytest.approx((rho - eta) / (1 - eta) * math.exp(iou_c - 1))


def test_a_perfect_map_scores_one_and_an_empty_one_is_defined() -> None:
    perfect = np.diag([50, 3, 2])
    ones = {"iou_nochange": 1.0, "iou_change": 1.0, "miou": 1.0, "sek": 1.0}
    assert semantic_change_scores(perfect) == ones
    nothing = np.zeros((3, 3), np.int64)
    assert semantic_change_scores(nothing)["sek"] == 1.0
    assert class_scores(nothing, {0: "a", 1: "b", 2: "c"})["oa"] == 0.0


def test_picture(tmp_path: Path) -> None:
    cm = np.array([[900, 20, 5], [10, 40, 2], [3, 1, 30]])
    names = {0: "no_change", 1: "new_building", 2: "flooding"}
    path = render_confusion(cm, names, tmp_path / "cm.png", "test")
    img = Image.open(path)
    assert img.size[0] > 300 and img.size[1] > 200
    colours = {px for px in img.convert("RGB").getdata()}
    assert len(colours) > 5
