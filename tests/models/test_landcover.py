"""The S2 land-cover model: network, legend, shipped card and weights, normalisation, tiled inference,
chips and augmentations, scores on hand-made cases and a small deterministic training run.

Tiling tolerance: ``LandCoverUNet`` max-pools to 8 px cells; ``predict_landcover`` pads a whole image
with no data so that every window starts on the pooling grid, and blends 16 px bands with 56 px of halo
(half its 110 px receptive field). Tiled inference then equals the one-window pass within
``TILED_TOLERANCE`` (1e-4 in probability): only float rounding remains.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eowatch.errors import InputError, ModelError
from eowatch.legend import LANDCOVER, LANDCOVER_TO_WORLDCOVER, WORLDCOVER, WORLDCOVER_COLOURS
from eowatch.models import registry
from eowatch.models.engine import EngineConfig
from eowatch.models.landcover import (
    LANDCOVER_TASK,
    NODATA,
    TILED_TOLERANCE,
    check_landcover_inputs,
    index_features,
    landcover_codes_lut,
    model_periods,
    network_input,
    period_history,
    predict_centroids,
    predict_landcover,
    worldcover_codes,
)
from eowatch.models.landcover_data import AugmentConfig, ChipSampler, LabelledCube, augment_chip
from eowatch.models.landcover_real import score_classes
from eowatch.models.landcover_unet import LandCoverUNet
from eowatch.models.predict import preprocess
from eowatch.models.train_landcover import LandCoverTrainConfig, train_landcover_sets
from eowatch.models.weights import sha256_file

from .landcover_scene import BANDS, scene_arrays, write_scene

NAME = "landcover-s2-unet"


@pytest.fixture(scope="module")
def model() -> registry.LoadedModel:
    return registry.get(NAME)


# --- network and legend -------------------------------------------------------------------------------


def test_network_shapes_size_and_receptive_field() -> None:
    torch.manual_seed(0)
    net = LandCoverUNet(7, 6, width=4, levels=2).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 7, 37, 53)).shape == (2, 6, 37, 53)  # any size (ceil-mode pooling)
        x = torch.zeros(1, 7, 64, 64)
        x[..., 32, 32] = 1.0  # an impulse reaches at most half the receptive field away
        diff = (net(x) - net(torch.zeros_like(x))).abs().sum(dim=1)[0]
    reach = np.argwhere(diff.numpy() > 0)
    assert np.abs(reach - 32).max() <= net.receptive_field // 2
    default = LandCoverUNet()
    assert default.config == {"in_channels": 7, "n_classes": 6, "width": 12, "levels": 3}
    assert sum(p.numel() for p in default.parameters()) < 300_000 and default.cell == 8
    with pytest.raises(ValueError, match="levels >= 1"):
        LandCoverUNet(levels=0)


def test_legend_is_worldcover_and_maps_every_archive_class() -> None:
    assert WORLDCOVER[10] == "tree_cover" and WORLDCOVER[80] == "permanent_water"
    assert WORLDCOVER_COLOURS[40] == (240, 150, 255) and set(WORLDCOVER) == set(WORLDCOVER_COLOURS)
    assert set(LANDCOVER_TO_WORLDCOVER) == set(LANDCOVER.values()) - {"nodata"}
    assert LANDCOVER_TO_WORLDCOVER["maize"] == LANDCOVER_TO_WORLDCOVER["rapeseed"] == 40
    lut = landcover_codes_lut()
    assert lut[0] == -1 and (lut[1:9] >= 0).all() and lut[4] == lut[5] == lut[6]


# --- the shipped model ----------------------------------------------------------------------------------


def test_shipped_card_and_weights_load_offline(model: registry.LoadedModel) -> None:
    card = model.card
    assert card.task == LANDCOVER_TASK and card.architecture == "LandCoverUNet"
    assert card.bands == BANDS and card.resolution_m == 10.0 and card.validity_channel
    assert card.sensors == ("sentinel-2-l2a",) and card.patch_size == 64
    names = [c.name for _, c in sorted(card.classes.items())]
    assert names == [
        "tree_cover",
        "grassland",
        "cropland",
        "built_up",
        "bare_sparse_vegetation",
        "permanent_water",
    ]
    assert worldcover_codes(card).tolist() == [10, 30, 40, 50, 60, 80]
    assert all(
        card.classes[i].colour == WORLDCOVER_COLOURS[c] for i, c in enumerate([10, 30, 40, 50, 60, 80])
    )
    weights = registry.WEIGHTS_DIR / card.weights_file
    assert weights.suffix == ".safetensors" and sha256_file(weights) == card.weights_sha256
    assert weights.stat().st_size < 2_000_000
    header = json.loads(weights.read_bytes()[8 : 8 + int.from_bytes(weights.read_bytes()[:8], "little")])
    assert "eowatch" in header["__metadata__"]  # a safetensors header, not a pickle
    assert isinstance(model.module, LandCoverUNet) and not model.module.training
    assert "train_landcover" in card.training_command and "seed" in card.training_data
    for key in ("val.model.oa", "val.baseline.oa", "synthetic.model.kappa", "synthetic.model.miou"):
        assert key in card.metrics, key
    assert NAME in {c.name for c in registry.list_models()}


def test_loading_never_unpickles(model: registry.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights must not be unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    from eowatch.models.weights import load_model

    again = load_model(registry.card_file_of(NAME))
    for a, b in zip(again.module.state_dict().values(), model.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_change_flow_does_not_offer_the_land_cover_model() -> None:
    from eowatch.infra.deployments import model_names

    assert NAME not in model_names() and "siamese-s2s1-change" in model_names()
    card = registry.get(NAME).card
    check_landcover_inputs(card, (*BANDS, "vv_db"), 10.0)
    with pytest.raises(ModelError, match="needs bands swir16, swir22"):
        check_landcover_inputs(card, BANDS[:4], 10.0)
    with pytest.raises(ModelError, match="trained at 10 m but the cube is at 20 m"):
        check_landcover_inputs(card, BANDS, 20.0)
    with pytest.raises(ModelError, match="not a land-cover model"):
        check_landcover_inputs(registry.get("crop-type-ltae").card, BANDS, 10.0)


def test_card_normalisation_is_applied_at_inference(model: registry.LoadedModel) -> None:
    bands, _ = scene_arrays(3, size=192, periods=1)
    bands = np.nan_to_num(bands[0], nan=0.05)
    mean = np.array([model.card.normalization[b][0] for b in BANDS], np.float32)[:, None, None]
    std = np.array([model.card.normalization[b][1] for b in BANDS], np.float32)[:, None, None]
    x = preprocess(model.card, bands)
    np.testing.assert_allclose(x[:6], (bands - mean) / std, rtol=1e-5, atol=1e-6)
    assert np.all(x[6] == 1.0)  # validity: every band observed
    with torch.no_grad():
        manual = model.module(torch.from_numpy(x)[None]).softmax(dim=1)[0].numpy()
        raw = np.concatenate([bands, np.ones((1, 192, 192), np.float32)])
        unnormalised = model.module(torch.from_numpy(raw)[None]).softmax(dim=1)[0].numpy()
    probs = predict_landcover(model, bands).probabilities
    inner = np.s_[:, 56:-56, 56:-56]  # beyond the halo from the edges (the map pads them with no data)
    np.testing.assert_allclose(probs[inner], manual[inner], atol=1e-5)
    assert np.abs(probs - unnormalised)[inner].max() > 1e-2  # raw reflectance would give other answers


def test_nodata_pixels_are_255_and_nan(model: registry.LoadedModel) -> None:
    bands, _ = scene_arrays(4, size=40, periods=1)
    bands = bands[0]
    bands[:, 5:9, 7:12] = np.nan  # no clear observation
    bands[2, 20, 20] = np.nan  # one band missing: still mapped
    result = predict_landcover(model, bands)
    assert result.codes.shape == (40, 40) and result.codes.dtype == np.uint8
    assert (result.codes[5:9, 7:12] == NODATA).all() and np.isnan(result.probabilities[:, 5:9, 7:12]).all()
    assert result.codes[20, 20] != NODATA and (result.codes != NODATA).sum() == 40 * 40 - 20
    assert set(np.unique(result.codes)) <= {10, 30, 40, 50, 60, 80, NODATA}
    with pytest.raises(InputError, match="bands in order"):
        predict_landcover(model, bands[:5])


def test_tiled_inference_equals_one_window(model: registry.LoadedModel) -> None:
    bands, _ = scene_arrays(5, size=232, periods=1)
    bands = bands[0]
    tiled = predict_landcover(model, bands, config=EngineConfig(96, 56, 16))  # 3 x 3 windows
    whole = predict_landcover(model, bands, config=EngineConfig(512, 56, 16))  # one window
    diff = np.nanmax(np.abs(tiled.probabilities - whole.probabilities))
    assert diff < TILED_TOLERANCE
    assert (tiled.codes == whole.codes).mean() > 0.9999
    with pytest.raises(InputError, match="pooling cell"):
        predict_landcover(model, bands, config=EngineConfig(60, 56, 16))


# --- chips, augmentations, scores ---------------------------------------------------------------------


def test_augmentation_moves_bands_and_labels_together() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 6, (16, 16))
    chip = np.repeat(label[None].astype(np.float32) / 10 + 0.1, 6, axis=0)
    still = AugmentConfig(gain=0, band_gain=0, haze_p=0, noise=0, noise_abs=0, hole_p=0, shade_p=0)
    for seed in range(8):
        x, y = augment_chip(chip, label, BANDS, still, np.random.default_rng(seed))
        np.testing.assert_allclose(x[0], y / 10 + 0.1, rtol=1e-6)
    hazy = AugmentConfig(gain=0, band_gain=0, haze_p=1.0, noise=0, noise_abs=0, hole_p=1.0, shade_p=0)
    flat = np.full((6, 16, 16), 0.1, np.float32)
    x, _ = augment_chip(flat, label, BANDS, hazy, np.random.default_rng(1))
    shift = np.nanmean(x - 0.1, axis=(1, 2))
    assert np.isnan(x).any() and np.isnan(x).all(axis=0).sum() == np.isnan(x[0]).sum()  # holes: all bands
    assert shift[0] > shift[3] > shift[5] > 0  # haze: blue most, SWIR least
    shaded = AugmentConfig(gain=0, band_gain=0, haze_p=0, noise=0, noise_abs=0, hole_p=0, shade_p=1.0)
    x, _ = augment_chip(flat, label, BANDS, shaded, np.random.default_rng(2))
    ratio = x / 0.1
    assert np.allclose(ratio, ratio[:1]) and 0.7 < ratio.min() < ratio.max() < 1.4  # same field, all bands
    assert np.abs(np.diff(ratio[0], axis=0)).max() < 0.05  # smooth


def test_chips_are_class_balanced_and_stay_in_their_columns() -> None:
    bands, cover = scene_arrays(6, size=96, periods=2)
    labels = landcover_codes_lut()[cover]
    cube = LabelledCube("test", bands, labels, np.array([5, 6]))
    sampler = ChipSampler([cube], 32, 6, columns=(0.0, 0.5))
    chips, y = sampler.sample(64, np.random.default_rng(0))
    assert chips.shape == (64, 1, 6, 32, 32) and y.shape == (64, 32, 32)
    centres = y[:, 16, 16]
    assert len(np.unique(centres)) >= 5  # every class is drawn, not only the frequent ones
    with pytest.raises(InputError, match="smaller than"):
        ChipSampler([cube], 64, 6, columns=(0.0, 0.5))


def test_pixel_centred_chips_follow_the_class_frequencies() -> None:
    """``centre="pixel"`` draws chip centres as often as each class covers the sampled columns; the
    class-balanced default draws every class alike. One common class, five rare 6 x 6 blocks placed
    where a 32 px chip centred on them is not clipped (so its centre is the drawn pixel)."""
    labels = np.zeros((96, 96), np.int64)
    for k in range(1, 6):
        labels[10 + 12 * k : 16 + 12 * k, 20:26] = k
    bands = np.random.default_rng(0).random((2, 6, 96, 96), dtype=np.float32)
    cube = LabelledCube("test", bands, labels, np.array([5, 6]))
    drawn = {}
    for centre in ("pixel", "class"):
        _, y = ChipSampler([cube], 32, 6, columns=(0.0, 0.5), centre=centre).sample(
            600, np.random.default_rng(1)
        )
        drawn[centre] = np.bincount(y[:, 16, 16], minlength=6) / 600
    rare_share = 36 / (96 * 48)
    assert drawn["pixel"][0] > 0.9 and (drawn["pixel"][1:] < 4 * rare_share).all()
    assert (np.abs(drawn["class"] - 1 / 6) < 0.06).all()
    with pytest.raises(InputError, match="centre must be"):
        ChipSampler([cube], 32, 6, centre="edge")


def test_history_is_the_periods_before_oldest_first_and_no_data_before_the_series() -> None:
    series = np.arange(4 * 2 * 3 * 3, dtype=np.float32).reshape(4, 2, 3, 3)
    np.testing.assert_array_equal(period_history(series, 3, 3), series[1:4])
    early = period_history(series, 1, 3)
    assert early.shape == (3, 2, 3, 3) and np.isnan(early[0]).all()
    np.testing.assert_array_equal(early[1:], series[:2])
    np.testing.assert_array_equal(period_history(series, 2, 1), series[2:3])
    with pytest.raises(InputError, match="outside a series of 4"):
        period_history(series, 4, 3)


def test_chips_with_history_carry_the_periods_before_and_no_data_before_the_first() -> None:
    bands, cover = scene_arrays(6, size=64, periods=1)
    cube = LabelledCube("one-period", bands, landcover_codes_lut()[cover], np.array([5]))
    chips, _ = ChipSampler([cube], 32, 6, periods=3).sample(8, np.random.default_rng(0))
    assert chips.shape == (8, 3, 6, 32, 32)
    assert np.isnan(chips[:, :2]).all() and np.isfinite(chips[:, 2]).mean() > 0.98
    label = np.zeros((32, 32), np.int64)
    x, _ = augment_chip(chips[0], label, BANDS, AugmentConfig(hole_p=0.0), np.random.default_rng(1))
    assert x.shape == (3, 6, 32, 32) and np.isnan(x[:2]).all() and np.isfinite(x[2]).mean() > 0.98


def test_network_input_stacks_each_period_normalised_with_its_validity(model: registry.LoadedModel) -> None:
    bands, _ = scene_arrays(9, size=16, periods=2)
    x = network_input(model.card, bands[None])
    assert x.shape == (1, 14, 16, 16)
    np.testing.assert_array_equal(x[0, :7], preprocess(model.card, bands[:1])[0])
    np.testing.assert_array_equal(x[0, 7:], preprocess(model.card, bands[1:])[0])
    net = LandCoverUNet(7, 6, width=4, levels=2, periods=3)
    assert net.config["periods"] == 3 and net.stem[0][0].in_channels == 21  # type: ignore[index]
    assert model_periods(model.card) == 1 and "periods" not in LandCoverUNet().config


def test_scores_on_a_hand_made_case() -> None:
    from eowatch.models.weights import LoadedModel

    card = registry.get(NAME).card
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1, 2])
    pred = np.array([0, 0, 0, 1, 1, 1, 1, 0, 3, -1])  # 6 of 9 right; one nodata; -1 truth ignored
    s = score_classes(pred, truth, LoadedModel(registry.get(NAME).module, card))
    assert s["n"] == 9 and s["nodata_px"] == 1 and s["oa"] == pytest.approx(6 / 9)
    # kappa over the 8 mapped pixels: OA 0.75, chance 0.5 -> 0.5
    assert s["kappa"] == pytest.approx(0.5)
    assert s["tree_cover"]["f1"] == pytest.approx(0.75) and s["tree_cover"]["iou"] == pytest.approx(0.6)


def test_index_baseline_separates_clean_spectra() -> None:
    bands, cover = scene_arrays(7, size=48, periods=1)
    labels = landcover_codes_lut()[cover]
    feats = index_features(bands[0], BANDS)
    centroids = {c: np.nanmean(feats[:, labels == c], axis=1).tolist() for c in np.unique(labels)}
    pred = predict_centroids(feats, centroids)
    ok = np.isfinite(feats).all(axis=0)
    assert (pred[~ok] == -1).all() and (pred[ok] == labels[ok]).mean() > 0.9


# --- training ------------------------------------------------------------------------------------------


def test_tiny_training_is_deterministic_and_learns(tmp_path: Path) -> None:
    sets = [write_scene(tmp_path, s) for s in (1, 2)]
    val = [write_scene(tmp_path, 3)]
    mild = AugmentConfig(gain=0.1, haze_p=0.2, haze_max=0.02, hole_p=0.2)
    config = LandCoverTrainConfig(
        name="tiny-landcover", width=6, levels=2, chip=32, batch_size=8, steps=60, lr=1e-2, augment=mild
    )
    first, scores = train_landcover_sets(sets, tmp_path / "a", 0, config, val, command="test")
    again, _ = train_landcover_sets(sets, tmp_path / "b", 0, config, val, command="test")
    assert first.card.weights_sha256 == again.card.weights_sha256  # bit-identical weights
    assert first.card.metrics == scores and first.card.task == LANDCOVER_TASK
    assert scores["val.model.oa"] > 0.6 and scores["val.model.kappa"] > 0.5
    assert (tmp_path / "a" / "tiny-landcover.index-centroids.json").is_file()
    assert scores["val.baseline.oa"] > 0.6  # the clean spectra are easy for the baseline too


def test_tiny_training_with_history_maps_each_period_with_the_periods_before_it(tmp_path: Path) -> None:
    """A two-period model: the card records it, tiled inference equals one window, a lone period is
    mapped with no history, and the history changes the map (it is read)."""
    sets = [write_scene(tmp_path, s, periods=3) for s in (1, 2)]
    mild = AugmentConfig(gain=0.1, haze_p=0.2, haze_max=0.02, hole_p=0.2)
    config = LandCoverTrainConfig(
        name="tiny-history",
        width=6,
        levels=2,
        chip=32,
        batch_size=8,
        steps=40,
        lr=1e-2,
        augment=mild,
        periods=2,
    )
    model, scores = train_landcover_sets(sets, tmp_path / "a", 0, config, command="test")
    assert model.card.architecture_args["periods"] == 2 and model_periods(model.card) == 2
    assert "one period each with the 1 periods before it" in model.card.training_data
    assert scores["val0.model.oa"] > 0.5  # the eastern 20 % of the first cube
    bands, _ = scene_arrays(11, size=96, periods=2)
    whole = predict_landcover(model, bands)
    tiled = predict_landcover(model, bands, config=EngineConfig(tile=32, halo=32, overlap=16))
    assert np.nanmax(np.abs(tiled.probabilities - whole.probabilities)) < TILED_TOLERANCE
    alone = predict_landcover(model, bands[1])
    no_history = np.stack([np.full_like(bands[1], np.nan), bands[1]])
    np.testing.assert_array_equal(alone.probabilities, predict_landcover(model, no_history).probabilities)
    assert np.nanmax(np.abs(alone.probabilities - whole.probabilities)) > 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_predict_landcover_on_cuda_matches_cpu(model: registry.LoadedModel) -> None:
    from eowatch.models.engine import EngineConfig as Config
    from eowatch.models.weights import build_module

    bands, _ = scene_arrays(8, size=128, periods=1)
    cpu = predict_landcover(model, bands[0])
    module = build_module(model.card)
    module.load_state_dict(model.module.state_dict())
    gpu_model = registry.LoadedModel(module.eval().to("cuda"), model.card)
    gpu = predict_landcover(gpu_model, bands[0], config=Config(256, 56, 16, precision="float32"))
    assert np.nanmax(np.abs(gpu.probabilities - cpu.probabilities)) < 1e-3


def test_training_command_passes_the_archive_period_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generated_archives: list
) -> None:
    """``--start``/``--end`` reach every archive (training and validation) and the card's command."""
    import datetime as dt
    from types import SimpleNamespace

    import eowatch.models.train_landcover as tl

    recorded: list[str] = []
    trained = (SimpleNamespace(card=SimpleNamespace(name=tl.SEASONAL_NAME, version="0")), {})
    monkeypatch.setattr(tl, "train_landcover_sets", lambda *a, **k: (recorded.append(a[-1]), trained)[1])
    argv = ["--workdir", str(tmp_path), "--archive-seeds", "1,2", "--val-seed", "4", "--periods", "3"]
    assert tl.main([*argv, "--start", "2026-01-01", "--end", "2026-12-31"]) == 0
    year = (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert generated_archives == [(1, *year), (2, *year), (4, *year)]
    assert recorded[0].endswith("--periods 3 --history-drop 0.0 --start 2026-01-01 --end 2026-12-31")
