"""Semantic change models (``siamese-s2s1-semantic``, ``siamese-s2s1-conditional``): network, shipped cards
and weights, normalisation, tiled inference, SECOND's SeK on a hand-computed case, labels, the flow's
refusal and a tiny deterministic training run.

Symmetry: the networks are **not** symmetric in the dates (``forward(a, b) != forward(b, a)``): the
from and to heads read ``[f_before, f_after, |f_after - f_before|]`` in that order, as they must to say
which class came first.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from eowatch.errors import InputError, ModelError
from eowatch.models import registry
from eowatch.models.card import DEFAULT_BANDS, ModelCard
from eowatch.models.confusion import semantic_change_confusion, semantic_change_f1, semantic_change_scores
from eowatch.models.engine import EngineConfig
from eowatch.models.labels import period_middle_days
from eowatch.models.predict import SEMANTIC_TASK, preprocess
from eowatch.models.semantic_eval import SemanticCounts, change_type_of_pair, transition_truth
from eowatch.models.siamese_semantic import (
    SEMANTIC_CLASSES,
    SemanticProbs,
    SiameseSemanticNet,
    check_semantic_inputs,
    decode_semantic,
    one_hot_landcover,
    predict_semantic_series,
    season_planes,
)
from eowatch.models.train import period_bounds
from eowatch.models.train_semantic import (
    SemanticChipDataset,
    SemanticTrainConfig,
    period_landcover,
    semantic_card,
    train_semantic_sets,
)
from eowatch.models.weights import LoadedModel, sha256_file

from . import synthetic

NAMES = ("siamese-s2s1-semantic", "siamese-s2s1-conditional")
#: Synthetic fixture state -> ``LANDCOVER`` code.
STATE_CODES = synthetic.STATE_CODES


def _spec():
    """A 10 m cube spec with the default bands and two monthly periods (no services)."""
    from eowatch.pipelines.grid import GridSpec
    from eowatch.pipelines.spec import CubeSpec

    grid = GridSpec("EPSG:32631", 10.0, (600000.0, 5640000.0, 601280.0, 5641280.0), chunk=128)
    return CubeSpec(grid=grid, periods=(("2026-05-01", "2026-06-01"), ("2026-06-01", "2026-07-01")))


def _shipped(name: str) -> LoadedModel:
    if not registry.MODELS[name].is_file():
        pytest.skip(f"{name} is not shipped")
    return registry.get(name)


def _tiny(conditional: int, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    module = SiameseSemanticNet(len(DEFAULT_BANDS) + 1, 9, width=8, depth=3, conditional=conditional).eval()
    norm = {b: (0.1 * i, 0.5 + i) for i, b in enumerate(DEFAULT_BANDS)}
    card = semantic_card(
        module, norm, SemanticTrainConfig(name="tiny-semantic", chip=32), "random init", "none"
    )
    return LoadedModel(module.requires_grad_(False), card)


def _bands(rng: np.random.Generator, periods: int, h: int, w: int) -> np.ndarray:
    x = rng.normal(0.0, 1.0, (periods, len(DEFAULT_BANDS), h, w)).astype(np.float32)
    x[:, :2, 3:6, 4:9] = np.nan  # a cloud: S2 missing
    return x


# --- network ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditional", [0, 1])
def test_network_shapes_receptive_field_and_asymmetry(conditional: int) -> None:
    torch.manual_seed(0)
    net = SiameseSemanticNet(9, 9, width=8, depth=4, conditional=conditional).eval()
    a, b = torch.randn(2, 9, 23, 31), torch.randn(2, 9, 23, 31)
    cond = torch.from_numpy(one_hot_landcover(np.random.default_rng(0).integers(0, 9, (2, 23, 31)), 8))
    c = cond if conditional else None
    with torch.no_grad():
        out = net(a, b, c)
        assert out.change.shape == (2, 2, 23, 31)
        assert out.from_class.shape == out.to_class.shape == (2, 8, 23, 31)
        swapped = net(b, a, c)
        assert not torch.allclose(out.from_class, swapped.from_class)  # not symmetric (see module doc)
        decoded = net.decode(net.encode(a), net.encode(b), c)
        torch.testing.assert_close(decoded.change, out.change)
    assert net.receptive_field == 11  # 4 encoder + 1 head 3x3 convolutions
    assert net.config == {
        "in_channels": 9,
        "n_classes": 9,
        "width": 8,
        "depth": 4,
        "conditional": conditional,
        "season_channels": 0,
    }
    with pytest.raises(ValueError, match="condition"):
        net(a, b, None if conditional else cond)


def test_one_hot_and_decode_give_second_maps() -> None:
    hot = one_hot_landcover(np.array([[0, 1], [8, 255]], np.uint8), 8)
    assert hot.shape == (8, 2, 2) and hot[:, 0, 0].sum() == 0 and hot[0, 0, 1] == 1 and hot[7, 1, 0] == 1
    p_from = np.zeros((1, 8, 1, 3), np.float32)
    p_to = np.zeros((1, 8, 1, 3), np.float32)
    p_from[0, [3, 3, 1], 0, [0, 1, 2]] = [0.6, 0.6, 0.9]
    p_from[0, 4, 0, :] = 0.3
    p_to[0, 3, 0, :] = 0.7  # same argmax as from: the best *different* pair is chosen
    p_to[0, 4, 0, :] = 0.2
    change = np.array([[[0.9, 0.2, 0.9]]], np.float32)
    mask, from_map, to_map = decode_semantic(SemanticProbs(change, p_from, p_to), 0.5)
    assert mask.tolist() == [[[True, False, True]]]
    # pixel 0: from 4 x to 5 = 0.6 * 0.2 < from 5 x to 4 = 0.3 * 0.7 -> (5, 4); pixel 2: (2, 4)
    assert from_map.tolist() == [[[5, 0, 2]]] and to_map.tolist() == [[[4, 0, 4]]]


# --- SECOND's scores -----------------------------------------------------------------------------------


def test_sek_matches_a_hand_computed_case() -> None:
    # 3 classes (0 no change, 1, 2); 6 pixels; maps of both dates pooled as SECOND's Eval_SCD does.
    t_from, t_to = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 0, 2, 2, 1])
    p_from, p_to = np.array([0, 0, 1, 1, 2, 0]), np.array([0, 0, 2, 2, 1, 0])
    cm = semantic_change_confusion(p_from, p_to, t_from, t_to, 3)
    # rows truth, columns prediction: pixels 0-1 give (0,0) twice each; pixel 2 (0,1) + (0,2); pixel 3
    # (1,1) + (2,2); pixel 4 (1,2) + (2,1); pixel 5 (2,0) + (1,0).
    assert cm.tolist() == [[4, 1, 1], [1, 1, 1], [1, 1, 1]]
    # Binary: no change IoU = 4 / (6 + 6 - 4) = 0.5; change IoU = 4 changed-changed / (12 - 4) = 0.5.
    # Kappa without the (0,0) cell: q = [[0,1,1],[1,1,1],[1,1,1]], s = 8, rho = 2/8,
    # eta = (2*2 + 3*3 + 3*3) / 64 = 22/64; kappa = (16/64 - 22/64) / (42/64) = -1/7.
    scores = semantic_change_scores(cm)
    assert scores["iou_nochange"] == pytest.approx(0.5) and scores["iou_change"] == pytest.approx(0.5)
    assert scores["miou"] == pytest.approx(0.5)
    assert scores["sek"] == pytest.approx(-1 / 7 * math.exp(0.5 - 1))
    # Fscd: 2 right changed pixels of 6 predicted changed and 6 true changed -> P = R = 1/3.
    assert semantic_change_f1(cm) == pytest.approx(1 / 3)


def test_change_types_from_pairs_and_counts() -> None:
    from_map = np.array([3, 2, 4, 5, 4, 1, 0])
    to_map = np.array([7, 8, 5, 1, 8, 3, 0])
    assert change_type_of_pair(from_map, to_map).tolist() == [1, 2, 4, 3, 1, 0, 0]
    counts = SemanticCounts()
    truth = (np.array([[1, 0]], np.uint8), np.array([[3, 0]], np.uint8), np.array([[7, 0]], np.uint8))
    counts.add((np.array([[3, 0]], np.uint8), np.array([[7, 0]], np.uint8)), truth)
    scores = counts.scores()
    assert scores["sek"] == pytest.approx(1.0) and scores["binary.f1"] == 1.0 and scores["type.sek"] == 1.0


# --- labels -----------------------------------------------------------------------------------------


def test_period_landcover_follows_the_transition_rules() -> None:
    bounds = period_bounds(synthetic.month_starts(4))  # Jan..Apr 2024
    day = lambda s: int((np.datetime64(s) - np.datetime64("1970-01-01")).astype(int))  # noqa: E731
    truth = {
        "landcover_start": np.array([[3, 2, 4, 6]], np.uint8),
        "change_type": np.array([[0, 2, 3, 4]], np.uint8),
        "change_start": np.array([[0, day("2024-02-10"), day("2024-02-03"), day("2024-03-25")]], np.int32),
        "change_end": np.array([[0, 0, day("2024-03-05"), 0]], np.int32),
        "from_class": np.array([[0, 2, 4, 6]], np.uint8),
        "to_class": np.array([[0, 8, 1, 5]], np.uint8),
    }
    full = period_landcover(truth, bounds)
    cover = full[:, 0]
    assert cover[:, 0].tolist() == [3, 3, 3, 3]  # unchanged
    assert cover[:, 1].tolist() == [2, 8, 8, 8]  # cleared on 10 Feb (before Feb's midpoint): shows in Feb
    assert cover[:, 2].tolist() == [4, 1, 4, 4]  # flooded 3 Feb - 5 Mar: present in Feb only
    assert cover[:, 3].tolist() == [6, 6, 6, 5]  # after Mar's midpoint: shows in April
    types, t_from, t_to = transition_truth(truth, bounds)
    for t in range(1, 4):
        shown = types[t - 1] > 0
        assert (t_from[t - 1][shown] == full[t - 1][shown]).all() and (
            t_to[t - 1][shown] == full[t][shown]
        ).all()


# --- inference --------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditional", [0, 1])
def test_tiled_inference_equals_whole_image_and_normalisation_is_applied(conditional: int) -> None:
    model = _tiny(conditional)
    rng = np.random.default_rng(4)
    bands = _bands(rng, 3, 70, 90)
    cond = rng.integers(0, 9, (2, 70, 90)).astype(np.uint8) if conditional else None
    tiled = predict_semantic_series(model, bands, cond, config=EngineConfig(tile=32, halo=5))
    whole = predict_semantic_series(model, bands, cond, config=EngineConfig(tile=512, halo=5))
    for a, b in zip(tiled, whole, strict=True):
        assert np.abs(a - b).max() < 1e-5
    x = torch.from_numpy(preprocess(model.card, bands))
    c = torch.from_numpy(one_hot_landcover(cond[:1], 8)) if conditional else None
    with torch.no_grad():
        manual = model.module(x[:1], x[1:2], c)
    np.testing.assert_allclose(whole.change[0], manual.change.softmax(1)[0, 1].numpy(), atol=1e-5)
    np.testing.assert_allclose(whole.to_class[0], manual.to_class.softmax(1)[0].numpy(), atol=1e-5)
    data = model.card.to_dict()
    data["normalization"] = {b: (m + 1.0, s) for b, (m, s) in model.card.normalization.items()}
    shifted = LoadedModel(model.module, ModelCard.from_dict(data))
    assert np.abs(predict_semantic_series(shifted, bands, cond).change - whole.change).max() > 1e-3


def test_conditional_model_uses_its_landcover_input() -> None:
    model = _tiny(1)
    rng = np.random.default_rng(8)
    bands = _bands(rng, 2, 24, 24)
    forest, water = np.full((1, 24, 24), 2, np.uint8), np.full((1, 24, 24), 1, np.uint8)
    a, b = predict_semantic_series(model, bands, forest), predict_semantic_series(model, bands, water)
    assert np.abs(a.change - b.change).max() > 1e-4 and np.abs(a.to_class - b.to_class).max() > 1e-4
    with pytest.raises(InputError, match="land cover"):
        predict_semantic_series(model, bands)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_cards_and_weights_load_offline(name: str) -> None:
    model = _shipped(name)
    card = model.card
    assert card.task == SEMANTIC_TASK and card.architecture == "SiameseSemanticNet"
    assert card.bands == DEFAULT_BANDS and card.resolution_m == 10.0 and card.validity_channel
    assert {c: info.name for c, info in card.classes.items()} == SEMANTIC_CLASSES
    assert [info.name for info in card.change_legend.values()] == ["no_change", "change"]
    assert card.architecture_args["conditional"] == int(name.endswith("conditional"))
    weights = registry.WEIGHTS_DIR / card.weights_file
    assert weights.suffix == ".safetensors" and sha256_file(weights) == card.weights_sha256
    assert isinstance(model.module, SiameseSemanticNet) and not model.module.training
    assert card.receptive_field_px == model.module.receptive_field == 11
    assert "train_semantic" in card.training_command and "cube-seed1" in card.training_data
    for key in (
        "val.sek",
        "val.miou",
        "synthetic.sek",
        "synthetic.miou",
        "synthetic.binary.f1",
        "synthetic.type.sek",
    ):
        assert key in card.metrics, key
    assert 0.0 < card.decision_threshold < 1.0
    assert ModelCard.from_json(card.to_json()) == card


@pytest.mark.parametrize("name", NAMES)
def test_change_stage_refuses_semantic_models_and_the_semantic_stage_takes_them(name: str) -> None:
    from eowatch.infra.deployments import model_names
    from eowatch.pipelines.params import check_model, check_semantic_change_model

    _shipped(name)
    spec = _spec()
    check_semantic_change_model(name, spec)
    with pytest.raises(ModelError, match=SEMANTIC_TASK):
        check_model(name, DEFAULT_BANDS, 10.0)
    assert name not in model_names() and "siamese-s2s1-change" in model_names()
    card = registry.get(name).card
    check_semantic_inputs(card, [*DEFAULT_BANDS, "clear_count"], 10.0)
    with pytest.raises(ModelError, match="vh_db"):
        check_semantic_inputs(card, DEFAULT_BANDS[:-1], 10.0)
    with pytest.raises(ModelError, match="20 m"):
        check_semantic_inputs(card, DEFAULT_BANDS, 20.0)


# --- training ---------------------------------------------------------------------------------------


def test_chips_and_tiny_training_aredeterministic(tmp_path: Path) -> None:
    truth = synthetic.semantic_scene(tmp_path / "cube.zarr", 48, 3, seed=3)
    bounds = period_bounds(synthetic.month_starts(3))
    norm = {b: (0.0, 1.0) for b in DEFAULT_BANDS}
    chips = SemanticChipDataset(
        tmp_path / "cube.zarr", truth, bounds, 16, 4, 0, True, normalization=norm, conditional=True
    )
    item = chips[0]
    assert item["before"].shape == (9, 16, 16) and item["condition"].shape == (8, 16, 16)
    labelled = item["from_class"][item["from_class"] != 255]
    assert (
        labelled.min() >= 0 and labelled.max() <= 7 and set(item["change"].unique().tolist()) <= {0, 1, 255}
    )
    config = SemanticTrainConfig(name="det", chip=16, chips_per_epoch=16, batch_size=8, width=8, depth=2)
    sets = [(tmp_path / "cube.zarr", truth)]
    a, scores = train_semantic_sets(sets, tmp_path / "a", epochs=2, seed=1, config=config)
    b, _ = train_semantic_sets(sets, tmp_path / "b", epochs=2, seed=1, config=config)
    assert a.card.weights_sha256 == b.card.weights_sha256
    assert set(scores) == {"train.loss_epoch1", "train.loss_epoch2"} and a.card.metrics == scores
    assert a.module.season_channels == 2  # the default: each date knows its season
    zeros = np.zeros((2, 8, 20, 20), np.float32)
    with pytest.raises(InputError, match="reads the season"):
        predict_semantic_series(a, zeros)
    probs = predict_semantic_series(a, zeros, days=np.array(["2026-05-16", "2026-06-15"], "datetime64[D]"))
    assert probs.change.shape == (1, 20, 20) and probs.from_class.shape == (1, 8, 20, 20)
    later = predict_semantic_series(a, zeros, days=[20650, 20680])  # July -> August 2026
    assert np.abs(later.from_class - probs.from_class).max() > 1e-6
    seasonal = SemanticChipDataset(
        tmp_path / "cube.zarr", truth, bounds, 16, 4, 0, False, normalization=norm, season=True
    )
    item = seasonal[0]
    assert item["before"].shape == (11, 16, 16)
    t = item["t"]
    mid = period_middle_days(bounds)
    np.testing.assert_allclose(
        item["after"][9:, 0, 0].numpy(), season_planes(mid[t : t + 1], (1, 1))[0, :, 0, 0]
    )


def test_season_planes() -> None:
    planes = season_planes(np.array(["2026-01-01", "2026-04-02", "2026-07-02"], "datetime64[D]"), (2, 3))
    assert planes.shape == (3, 2, 2, 3) and planes.dtype == np.float32
    np.testing.assert_allclose(planes[0, :, 0, 0], [0.0, 1.0], atol=1e-6)  # 1 January
    np.testing.assert_allclose(planes[1, :, 1, 2], [1.0, 0.0], atol=0.01)  # a quarter year on
    np.testing.assert_allclose(planes[2, :, 0, 1], [0.0, -1.0], atol=0.02)  # half a year on
    days = (np.array(["2026-07-02"], "datetime64[D]") - np.datetime64("1970-01-01", "D")).astype(int)
    np.testing.assert_array_equal(season_planes(days, (2, 3)), planes[2:])


def _old_change_loop(model, datasets, epochs: int, config) -> list[float]:
    """``train._fit`` as it was before ``fit_chips`` was factored out of it (verbatim loop)."""
    import math

    from torch.nn import functional as F
    from torch.utils.data import ConcatDataset, DataLoader

    from eowatch.models.dataset import IGNORE_INDEX
    from eowatch.models.train import _class_weights

    data = ConcatDataset(datasets)
    steps = max(epochs * math.ceil(len(data) / config.batch_size), 1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=steps, pct_start=0.1
    )
    history = []
    for epoch in range(epochs):
        for part in datasets:
            part.set_epoch(epoch)
        weights = _class_weights(datasets, model.n_classes)
        loader = DataLoader(data, batch_size=config.batch_size, shuffle=False, num_workers=0)
        model.train()
        losses = []
        for batch in loader:
            logits = model(batch["before"], batch["after"])
            loss = F.cross_entropy(logits, batch["label"], weight=weights, ignore_index=IGNORE_INDEX)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.detach().item())
        history.append(float(np.mean(losses)))
    return history


def test_shared_loop_keeps_the_change_model_training_bit_identical(tmp_path: Path) -> None:
    from eowatch.models import ChangeChipDataset, SiameseChangeNet
    from eowatch.models.fit import deterministic
    from eowatch.models.train import TrainConfig, _fit

    truth = synthetic.write_scene(tmp_path / "cube.zarr", size=48, periods=3, seed=5, n_changes=6)
    bounds = period_bounds(synthetic.month_starts(3))
    config = TrainConfig(chip=16, chips_per_epoch=16, batch_size=8, width=8, depth=2)
    norm = {b: (0.1, 1.0) for b in DEFAULT_BANDS}
    results = []
    for loop in (_fit, _old_change_loop):
        with deterministic(1, config.threads):
            chips = ChangeChipDataset(
                tmp_path / "cube.zarr", truth, bounds, 16, 16, 1, True, normalization=norm
            )
            model = SiameseChangeNet(9, 5, config.width, config.depth)
            history = loop(model, [chips], 2, config)
        results.append((history, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    for new, old in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(new, old)
