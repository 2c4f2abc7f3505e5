"""The VHR change model: network, shipped card and weights, normalisation, tiled inference, labels,
augmentations, the S2 flow's refusal and a small deterministic training run.

Tiling tolerance: ``SiameseDiffUNet`` max-pools to 16 px cells and sees about 200 px around a pixel.
``predict_vhr_pairs`` pads a whole image with no data to a multiple of 128 px, so that windows of 1, 2,
4 or 8 per axis start on the pooling grid, and reads 96 px of halo: tiled inference then equals the
one-window pass to float rounding (measured: <= 5e-6 in probability; asserted: 1e-4). Against the plain
network on the unpadded image, only pixels within ~100 px of the bottom and right edges differ (the
padding is context there).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eowatch.errors import InputError, ModelError
from eowatch.models import registry
from eowatch.models.engine import EngineConfig
from eowatch.models.predict import preprocess
from eowatch.models.train_vhr import VhrTrainConfig, evaluate_archive, train_vhr
from eowatch.models.vhr_augment import Radiometry, radiometric_jitter, rotate_flip
from eowatch.models.vhr_change import (
    VHR_TASK,
    SiameseDiffUNet,
    check_vhr_inputs,
    dn_to_float,
    predict_vhr_change,
    predict_vhr_pairs,
)
from eowatch.models.vhr_data import VhrArchive, pair_label
from eowatch.models.vhr_dataset import ChipSampling, VhrChipDataset, band_statistics
from eowatch.models.vhr_synth import Synthesis, draw_objects
from eowatch.models.weights import sha256_file

NAME = "siamese-vhr-change"
S2_VARIABLES = ("blue", "green", "red", "nir", "swir16", "swir22", "vv_db", "vh_db")


@pytest.fixture(scope="module")
def model() -> registry.LoadedModel:
    return registry.get(NAME)


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``(3, h, w)`` float32 DN: smooth fields, a few bright and dark blocks."""
    from scipy import ndimage

    base = ndimage.gaussian_filter(rng.normal(0, 1, (3, h, w)), (0, 6, 6))
    x = 90 + 400 * base
    for _ in range(12):
        y0, x0 = rng.integers(0, h - 40), rng.integers(0, w - 40)
        x[:, y0 : y0 + rng.integers(8, 40), x0 : x0 + rng.integers(8, 40)] = rng.uniform(30, 220, (3, 1, 1))
    return np.clip(x, 1, 255).astype(np.float32)


# --- network ----------------------------------------------------------------------------------------


def test_network_shapes_symmetry_and_size() -> None:
    torch.manual_seed(0)
    net = SiameseDiffUNet(3, 2, width=8, levels=3).eval()
    a, b = torch.randn(2, 3, 37, 53), torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        out = net(a, b)
        assert out.shape == (2, 2, 37, 53)
        torch.testing.assert_close(out, net(b, a))  # construction and demolition are both change
        torch.testing.assert_close(net.decode(net.encode(a), net.encode(b)), out)
    default = SiameseDiffUNet()
    assert default.receptive_field > 100 and default.config == {
        "in_channels": 3,
        "n_classes": 2,
        "width": 16,
        "levels": 4,
    }
    assert 4 * sum(p.numel() for p in default.parameters()) < 4_000_000  # float32 bytes: a few MB
    with pytest.raises(ValueError, match="even width"):
        SiameseDiffUNet(width=7)


# --- shipped model ----------------------------------------------------------------------------------


def test_shipped_card_and_weights_load_offline(model: registry.LoadedModel) -> None:
    card = model.card
    assert card.task == VHR_TASK and card.architecture == "SiameseDiffUNet"
    assert card.bands == ("red", "green", "blue") and card.resolution_m == 1.0 and not card.validity_channel
    assert [c.name for c in card.classes.values()] == ["no_change", "change"]
    weights = registry.WEIGHTS_DIR / card.weights_file
    assert weights.suffix == ".safetensors" and weights.stat().st_size < 4_000_000
    assert sha256_file(weights) == card.weights_sha256
    assert isinstance(model.module, SiameseDiffUNet) and not model.module.training
    assert "train_vhr" in card.training_command and "seed" in card.training_data
    for key in ("val.binary.f1", "synthetic.binary.f1", "levir.f1", "dsifn.f1", "levir.cva.f1"):
        assert key in card.metrics, key
    assert 0.0 < card.decision_threshold < 1.0
    assert NAME in {c.name for c in registry.list_models()}


def test_card_normalisation_is_applied_at_inference(model: registry.LoadedModel) -> None:
    rng = np.random.default_rng(3)
    before, after = _scene(rng, 128, 128), _scene(rng, 128, 128)  # a multiple of 128 px: no padding
    mean = np.array([model.card.normalization[b][0] for b in model.card.bands], np.float32)[:, None, None]
    std = np.array([model.card.normalization[b][1] for b in model.card.bands], np.float32)[:, None, None]
    np.testing.assert_allclose(preprocess(model.card, before), (before - mean) / std, rtol=1e-6)
    with torch.no_grad():
        manual = model.module(
            torch.from_numpy((before - mean) / std)[None], torch.from_numpy((after - mean) / std)[None]
        ).softmax(dim=1)[0]
        raw = model.module(torch.from_numpy(before)[None], torch.from_numpy(after)[None]).softmax(dim=1)[0]
    probs = predict_vhr_change(model, before, after)
    np.testing.assert_allclose(probs, manual.numpy(), atol=1e-5)
    assert np.abs(probs - raw.numpy()).max() > 1e-2  # un-normalised input would give other answers


def test_tiled_inference_equals_whole_image(model: registry.LoadedModel) -> None:
    rng = np.random.default_rng(11)
    before, after = _scene(rng, 1000, 1000), _scene(rng, 1000, 1000)
    after[:, 300:340, 500:560] = 200.0  # a new bright roof
    tiled = predict_vhr_change(model, before, after, config=EngineConfig(512, 96, 32))[1]  # 2 x 2 windows
    whole = predict_vhr_change(model, before, after, tile=4096)[1]  # one window
    assert np.abs(tiled - whole).max() < 1e-4
    with torch.no_grad():  # the plain network on the unpadded image: the padding only reaches ~100 px
        x = [torch.from_numpy(preprocess(model.card, image))[None] for image in (before, after)]
        plain = model.module(*x).softmax(dim=1)[0, 1].numpy()
    assert np.abs(tiled - plain)[:-128, :-128].max() < 1e-4
    thr = model.card.decision_threshold
    differ = (tiled >= thr) != (plain >= thr)
    assert not differ[:-128, :-128].any()  # calls differ only within the edge band the padding reaches


def test_pairs_encode_each_date_once_and_match_single_pairs(model: registry.LoadedModel) -> None:
    rng = np.random.default_rng(5)
    images = np.stack([_scene(rng, 64, 64) for _ in range(3)])
    both = predict_vhr_pairs(model, images, [(0, 2), (1, 2)])
    np.testing.assert_allclose(both[0], predict_vhr_change(model, images[0], images[2]), atol=1e-5)
    np.testing.assert_allclose(both[1], predict_vhr_change(model, images[1], images[2]), atol=1e-5)
    with pytest.raises(InputError, match="pairs"):
        predict_vhr_pairs(model, images, [(0, 3)])


def test_no_data_is_filled_from_the_nearest_pixel_with_data() -> None:
    """Padding and margins without data reach the network as the image continued, not as a flat band
    (which it called change along); a date without any data stays NaN."""
    from eowatch.models.vhr_change import fill_nodata

    images = np.arange(3 * 3 * 6 * 7, dtype=np.float32).reshape(3, 3, 6, 7)
    images[0, :, :, 4:] = np.nan  # date 0: the last three columns missing (a margin)
    images[1, 2, 3, 1] = np.nan  # date 1: one band missing makes the pixel no data
    images[2] = np.nan  # date 2: nothing
    filled = fill_nodata(images)
    for col in (4, 5, 6):
        np.testing.assert_array_equal(filled[0, :, :, col], images[0, :, :, 3])
    assert np.isfinite(filled[:2]).all() and np.isnan(filled[2]).all()
    assert tuple(filled[1, :, 3, 1]) in {
        tuple(images[1, :, y, x]) for y, x in ((2, 1), (4, 1), (3, 0), (3, 2))
    }
    has_data = np.broadcast_to(np.isfinite(images[1]).all(axis=0), images[1].shape)
    np.testing.assert_array_equal(filled[1][has_data], images[1][has_data])  # pixels with data kept
    assert np.isnan(images[0, :, :, 4:]).all()  # the input is not modified
    finite = np.ones((2, 3, 4, 4), np.float32)
    assert fill_nodata(finite) is finite


def test_vhr_cube_nodata_becomes_nan() -> None:
    dn = np.full((2, 3, 4, 5), 80, np.uint8)
    dn[1, :, 0, 0] = 0  # not acquired: 0 in every band
    dn[1, 0, 1, 1] = 0  # a dark red pixel, acquired
    x = dn_to_float(dn)
    assert x.dtype == np.float32 and np.isnan(x[1, :, 0, 0]).all() and np.isnan(x).sum() == 3
    assert x[1, 0, 1, 1] == 0.0 and not np.isnan(dn_to_float(dn, nodata=None)).any()


# --- the flows' model checks --------------------------------------------------------------------------


def test_s2_flow_refuses_the_vhr_model_and_deployments_do_not_offer_it() -> None:
    from eowatch.infra.deployments import model_names
    from eowatch.models.predict import check_inputs
    from eowatch.pipelines.params import check_model

    with pytest.raises(ModelError, match=r"is a vhr-change-detection model, not a change-detection model"):
        check_model(NAME, S2_VARIABLES, 10.0)
    card = registry.get(NAME).card
    with pytest.raises(ModelError, match=r"trained at 1 m but the cube is at 10 m"):
        check_inputs(card, S2_VARIABLES, 10.0)
    with pytest.raises(ModelError, match="needs bands red, green, blue"):
        check_inputs(card, ("vv_db", "vh_db"), 1.0)
    assert NAME not in model_names() and "siamese-s2s1-change" in model_names()
    check_vhr_inputs(registry.get(NAME).card, ("red", "green", "blue", "nir"), 1.0)
    with pytest.raises(ModelError, match="not a VHR change model"):
        check_vhr_inputs(registry.get("siamese-s2s1-change").card, S2_VARIABLES, 10.0)


# --- labels, augmentations, data ----------------------------------------------------------------------


def _archive(seed: int = 0, size10: int = 12) -> VhrArchive:
    """A tiny VHR archive: 3 dates, a building built between dates 0 and 1 (completed before date 2), a
    clearing between dates 1 and 2, a flood present on date 1 only and a crop rotation whose new crop shows
    between dates 0 and 1 (never VHR change)."""
    rng = np.random.default_rng(seed)
    days = np.array([100, 160, 220])
    shape = (size10, size10)
    ct, start, end, done = (np.zeros(shape, t) for t in (np.uint8, np.int32, np.int32, np.int32))
    ct[2:5, 2:5], start[2:5, 2:5], done[2:5, 2:5] = 1, 120, 200
    ct[7:10, 1:4], start[7:10, 1:4] = 2, 190
    ct[1:3, 8:11], start[1:3, 8:11], end[1:3, 8:11] = 3, 150, 170
    ct[9:12, 8:12], start[9:12, 8:12] = 4, 130
    images = np.stack([_scene(rng, 10 * size10, 10 * size10) for _ in days])
    images[1:, :, 20:50, 20:50] = [[[60.0]], [[60.0]], [[65.0]]]  # construction site
    images[2, :, 25:45, 25:45] = 210.0  # roof
    images[2, :, 70:100, 10:40] = [[[120.0]], [[95.0]], [[70.0]]]  # cleared
    images[1, :, 10:30, 80:110] = [[[40.0]], [[60.0]], [[80.0]]]  # water
    return VhrArchive("tiny", images.astype(np.uint8), days, ct, start, end, done)


def test_pair_labels_follow_the_planted_state() -> None:
    archive = _archive()
    building, clearing, flood = (
        (slice(2, 5), slice(2, 5)),
        (slice(7, 10), slice(1, 4)),
        (slice(1, 3), slice(8, 11)),
    )
    label01, label12, label02 = (
        pair_label(archive, 0, 1),
        pair_label(archive, 1, 2),
        pair_label(archive, 0, 2),
    )
    assert label01[building].all() and label12[building].all() and label02[building].all()  # site, then roof
    assert not label01[clearing].any() and label12[clearing].all() and label02[clearing].all()
    assert label01[flood].all() and label12[flood].all() and not label02[flood].any()  # water came and went
    assert int(label02.sum()) == 9 + 9
    assert not (label01 | label12 | label02)[9:12, 8:12].any()  # a rotation stays cropland
    np.testing.assert_array_equal(pair_label(archive, 2, 0), label02)


def test_augmentations_keep_geometry_and_label_new_roofs_only() -> None:
    rng = np.random.default_rng(0)
    images = np.stack([_scene(rng, 64, 64) for _ in range(2)])
    label = np.zeros((64, 64), np.uint8)
    label[10:20, 30:40] = 1
    images[:, :, 10:20, 30:40] = 250.0
    turned, turned_label = rotate_flip(images, label, np.random.default_rng(4))
    assert (turned[:, :, turned_label == 1] == 250.0).all() and turned_label.sum() == label.sum()
    jittered = radiometric_jitter(images[0], np.random.default_rng(1), Radiometry())
    assert jittered.shape == images[0].shape and jittered.min() >= 0.0 and jittered.max() <= 255.0
    static = Synthesis(houses_p=1.0, new_p=0.0, trees_p=1.0)
    drawn, empty = images.copy(), np.zeros((64, 64), np.uint8)
    draw_objects(drawn, empty, np.random.default_rng(2), static)
    assert not empty.any() and not np.array_equal(drawn, images)  # houses, trees, shadows: no change
    new, labelled = images.copy(), np.zeros((64, 64), np.uint8)
    draw_objects(new, labelled, np.random.default_rng(2), Synthesis(houses_p=1.0, new_p=1.0, trees_p=0.0))
    assert labelled.any() and not np.array_equal(new[0][:, labelled == 1], new[1][:, labelled == 1])
    sites, site_label = images.copy(), np.zeros((64, 64), np.uint8)
    only_sites = Synthesis(houses_p=1.0, houses=(1, 1), new_p=1.0, site_p=1.0, trees_p=0.0)
    draw_objects(sites, site_label, np.random.default_rng(5), only_sites)
    changed = (sites != images).any(axis=(0, 1))  # lot and slab in one date, no roof, no shadow
    assert site_label.any() and changed.any() and (site_label[changed] == 1).all()
    slab = np.abs(sites - np.array([178.0, 177.0, 171.0])[None, :, None, None]).max(axis=1) < 25
    assert slab[0].any() != slab[1].any()  # the foundation slab is in one date only


def test_a_drawn_road_is_static_and_labelled_unchanged() -> None:
    """A drawn road crosses the chip as a straight band, the same surface in both dates (only a fine
    grain differs), and its pixels are labelled unchanged even over labelled change; with ``roads_p``
    at 0 nothing is drawn from the generator (older recipes draw the same chips)."""
    rng = np.random.default_rng(0)
    images = np.stack([_scene(rng, 128, 128) for _ in range(2)])
    images[1] *= 1.3  # the field around the road changes between the dates
    label = np.ones((128, 128), np.uint8)
    only_road = Synthesis(houses_p=0.0, trees_p=0.0, roads_p=1.0)
    drawn, drawn_label = images.copy(), label.copy()
    draw_objects(drawn, drawn_label, np.random.default_rng(3), only_road)
    road = (drawn != images).any(axis=(0, 1))
    assert 128 * 3 <= road.sum() <= 128 * 9 * 1.5  # 3-9 m wide across a 128 m chip
    assert (drawn_label[road] == 0).all() and (drawn_label[~road] == 1).all()
    assert np.abs(drawn[0][:, road] - drawn[1][:, road]).mean() < 6.0  # one surface, both dates
    u, v = np.nonzero(road)
    if np.ptp(v) < np.ptp(u):
        u, v = v, u
    slope, intercept = np.polyfit(v, u, 1)
    off_line = np.abs(u - (slope * v + intercept)) / np.hypot(1.0, slope)
    assert off_line.max() <= 5.5  # a straight band: every pixel within half the widest road of one line
    drawn_rng, counted = np.random.default_rng(9), np.random.default_rng(9)
    draw_objects(images.copy(), label.copy(), drawn_rng, Synthesis(houses_p=0.0, trees_p=0.0))
    counted.random(2)  # the houses' and the trees' coin, nothing for roads
    assert drawn_rng.random() == counted.random()


def test_chip_dataset_is_deterministic_and_samples_changes() -> None:
    archive = _archive()
    norm = band_statistics([archive])
    sampling = ChipSampling(chip=32, changed_fraction=1.0, same_date_p=0.0)
    a, b = (VhrChipDataset([archive], sampling, norm, 6, seed=3) for _ in range(2))
    for i in range(6):
        x, y = a[i], b[i]
        assert x["before"].shape == (3, 32, 32) and x["label"].shape == (32, 32)
        torch.testing.assert_close(x["after"], y["after"])
        assert x["label"].any()
    plain = VhrChipDataset([archive], sampling, norm, 2, seed=3, augment=False)[0]
    assert set(np.unique(plain["label"].numpy())) <= {0, 1}


def test_balanced_sampling_centres_changed_chips_on_each_change_type_alike() -> None:
    """The tiny archive's changed 10 m pixels: 9 of the building in each of its three pairs, 9 of the
    clearing in two, 6 of the flood in two. Drawn by pixel (a pair, then one of its changed pixels) the
    flood gets about a fifth of the changed chips; balanced, a third."""
    archive = _archive()
    norm = band_statistics([archive])

    def centre_types(balance: bool) -> np.ndarray:
        sampling = ChipSampling(chip=32, changed_fraction=1.0, same_date_p=0.0, balance_types=balance)
        data = VhrChipDataset([archive], sampling, norm, 3000, seed=1, augment=False)
        f = archive.factor
        return np.array([archive.change_type[cy // f, cx // f] for _, _, _, cy, cx, *_ in data.positions])

    plain, balanced = centre_types(False), centre_types(True)
    assert set(np.unique(balanced)) == {1, 2, 3}  # never a rotation: it is not VHR change
    shares = [float((balanced == k).mean()) for k in (1, 2, 3)]
    assert np.allclose(shares, 1 / 3, atol=0.04), shares
    assert (plain == 3).mean() < 0.25 < (balanced == 3).mean()


# --- training ---------------------------------------------------------------------------------------


def test_tiny_training_is_deterministic(tmp_path) -> None:
    archive = _archive()
    config = VhrTrainConfig(
        name="tiny-vhr", width=4, levels=2, chips_per_epoch=16, sampling=ChipSampling(chip=32)
    )
    first, scores = train_vhr([archive], [archive], tmp_path / "a", 2, 0, config, "test")
    second, _ = train_vhr([archive], [archive], tmp_path / "b", 2, 0, config, "test")
    assert first.card.weights_sha256 == second.card.weights_sha256
    assert first.card.task == VHR_TASK and 0.0 < first.card.decision_threshold < 1.0
    assert scores["val.threshold"] == first.card.decision_threshold
    again = evaluate_archive(first, archive, first.card.decision_threshold, prefix="x.")
    assert again["x.binary.f1"] == pytest.approx(scores["val.binary.f1"])


def test_crossfit_finetune_predicts_each_pair_out_of_fold_at_a_fold_threshold(tmp_path) -> None:
    """The 2-fold real-data check: one threshold per dataset and fold from the fine-tuning fold's own
    pairs, every pair scored once (by the model of the fold it was not in)."""
    from eowatch.models.train_vhr import crossfit_finetune
    from eowatch.models.vhr_real import RealPairs

    archive = _archive()
    config = VhrTrainConfig(
        name="tiny-vhr", width=4, levels=2, chips_per_epoch=8, sampling=ChipSampling(chip=32)
    )
    model, _ = train_vhr([archive], [archive], tmp_path / "m", 1, 0, config, "test")
    rng = np.random.default_rng(3)
    before = rng.integers(0, 255, (4, 3, 48, 48), dtype=np.uint8)
    after = before.copy()
    after[:, :, 10:30, 10:30] = 240  # a bright new roof on each pair
    labels = np.zeros((4, 48, 48), bool)
    labels[:, 10:30, 10:30] = True
    real = {"fake": RealPairs(("a", "b", "c", "d"), before, after, labels, 1.0)}
    scores = crossfit_finetune(model, real, config, seed=0, epochs=1, samples=8)
    for k in (0, 1):
        assert 0.0 < scores[f"fake.finetuned_2fold.threshold_fold{k}"] < 1.0
    counts = sum(scores[f"fake.finetuned_2fold.{c}"] for c in ("tp", "fp", "fn", "tn"))
    assert counts == labels.size  # each pair predicted exactly once
