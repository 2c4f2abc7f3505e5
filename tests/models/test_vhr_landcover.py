"""The VHR land-cover model ``landcover-vhr-unet``: network, shipped card and weights, normalisation,
tiled == whole-image inference, labels from the archive's renderer and the drawn objects, the chip
dataset, the colour baseline and a tiny deterministic training."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from eowatch.errors import InputError, ModelError
from eowatch.legend import VHR_LANDCOVER
from eowatch.models import registry
from eowatch.models.engine import EngineConfig
from eowatch.models.predict import preprocess
from eowatch.models.train_vhr_landcover import VhrLandCoverTrainConfig, centroids_path, train_vhr_landcover
from eowatch.models.vhr_landcover import (
    NODATA,
    TILED_TOLERANCE,
    VHR_LANDCOVER_TASK,
    VhrLandCoverUNet,
    check_vhr_landcover_inputs,
    classify,
    predict_vhr_landcover,
)
from eowatch.models.vhr_landcover_data import LabelledScene
from eowatch.models.vhr_landcover_dataset import LandCoverSampling, VhrLandCoverChips
from eowatch.models.vhr_landcover_eval import ColourCentroids, evaluate_scenes, fit_centroids
from eowatch.models.vhr_landcover_synth import draw_labelled_objects
from eowatch.models.vhr_synth import Synthesis
from eowatch.models.weights import sha256_file

NAME = "landcover-vhr-unet"
BUILDING, WOODLAND, WATER, ROAD = 1, 2, 3, 4


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


def _labelled(seed: int = 0, size: int = 160) -> LabelledScene:
    """Two dates of a small scene with every class as blocks (labels = what is painted)."""
    rng = np.random.default_rng(seed)
    colours = {0: (120, 110, 80), BUILDING: (200, 80, 60), WOODLAND: (40, 70, 40), WATER: (30, 50, 70)}
    colours[ROAD] = (95, 95, 100)
    labels = np.zeros((2, size, size), np.uint8)
    labels[:, 20:60, 20:60] = BUILDING
    labels[:, 80:150, 10:70] = WOODLAND
    labels[:, 90:150, 90:150] = WATER
    labels[:, :, 75:83] = ROAD
    lut = np.array([colours[c] for c in range(5)], np.float32)
    images = lut[labels].transpose(0, 3, 1, 2) + rng.normal(0, 4, (2, 3, size, size))
    return LabelledScene("blocks", np.clip(images, 1, 255).astype(np.uint8), labels)


# --- network ----------------------------------------------------------------------------------------


def test_network_shapes_and_size() -> None:
    torch.manual_seed(0)
    net = VhrLandCoverUNet(3, 5, width=8, levels=3).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 37, 53)).shape == (2, 5, 37, 53)
    default = VhrLandCoverUNet()
    assert default.config == {"in_channels": 3, "n_classes": 5, "width": 16, "levels": 4}
    assert default.cell == 16 and default.receptive_field > 100
    assert 4 * sum(p.numel() for p in default.parameters()) < 4_000_000  # float32 bytes: a few MB
    with pytest.raises(ValueError, match="even width"):
        VhrLandCoverUNet(width=7)


# --- shipped model ----------------------------------------------------------------------------------


def test_shipped_card_and_weights_load_offline(model: registry.LoadedModel) -> None:
    card = model.card
    assert card.task == VHR_LANDCOVER_TASK and card.architecture == "VhrLandCoverUNet"
    assert card.bands == ("red", "green", "blue") and card.resolution_m == 1.0 and not card.validity_channel
    assert {c: info.name for c, info in card.classes.items()} == dict(VHR_LANDCOVER)
    assert len({info.colour for info in card.classes.values()}) == 5
    weights = registry.WEIGHTS_DIR / card.weights_file
    assert weights.suffix == ".safetensors" and weights.stat().st_size < 4_000_000
    assert sha256_file(weights) == card.weights_sha256
    assert isinstance(model.module, VhrLandCoverUNet) and not model.module.training
    assert "train_vhr_landcover" in card.training_command and "seed" in card.training_data
    for key in ("val.miou", "test.miou", "test.oa", "test.per_class.building.iou", "test.baseline.miou"):
        assert key in card.metrics, key
    assert "levir.building_recall_b" in card.metrics and "levir.building_share_a" in card.metrics
    assert ColourCentroids.read(centroids_path(registry.WEIGHTS_DIR, NAME)).centroids
    assert NAME in {c.name for c in registry.list_models()}


def test_card_normalisation_is_applied_at_inference(model: registry.LoadedModel) -> None:
    image = _scene(np.random.default_rng(3), 128, 128)  # a multiple of 128 px: no padding
    mean = np.array([model.card.normalization[b][0] for b in model.card.bands], np.float32)[:, None, None]
    std = np.array([model.card.normalization[b][1] for b in model.card.bands], np.float32)[:, None, None]
    np.testing.assert_allclose(preprocess(model.card, image), (image - mean) / std, rtol=1e-6)
    with torch.no_grad():
        manual = model.module(torch.from_numpy((image - mean) / std)[None]).softmax(dim=1)[0].numpy()
        raw = model.module(torch.from_numpy(image)[None]).softmax(dim=1)[0].numpy()
    probs = predict_vhr_landcover(model, image)
    np.testing.assert_allclose(probs, manual, atol=1e-5)
    assert np.abs(probs - raw).max() > 1e-2  # un-normalised input would give other answers


def test_tiled_inference_equals_whole_image(model: registry.LoadedModel) -> None:
    image = _scene(np.random.default_rng(11), 1000, 1000)
    tiled = predict_vhr_landcover(model, image, config=EngineConfig(512, 96, 32))  # 2 x 2 windows
    whole = predict_vhr_landcover(model, image, config=EngineConfig(4096, 96, 32))  # one window
    assert tiled.shape == (5, 1000, 1000)
    assert np.abs(tiled - whole).max() < TILED_TOLERANCE
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_matches_cpu(model: registry.LoadedModel) -> None:
    import copy

    image = _scene(np.random.default_rng(8), 300, 260)
    cpu = predict_vhr_landcover(model, image)
    gpu_model = registry.LoadedModel(module=copy.deepcopy(model.module).to("cuda"), card=model.card)
    gpu = predict_vhr_landcover(gpu_model, image)  # bf16 autocast on CUDA
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, atol=5e-2)
    assert (gpu.argmax(0) == cpu.argmax(0)).mean() > 0.98


def test_nodata_is_nodata_and_inputs_are_checked(model: registry.LoadedModel) -> None:
    images = np.stack([_scene(np.random.default_rng(t), 64, 64) for t in range(2)])
    images[1, :, :10, :10] = np.nan
    probs = predict_vhr_landcover(model, images)
    codes = classify(probs, images)
    assert codes.shape == (2, 64, 64) and (codes[1, :10, :10] == NODATA).all()
    assert (codes[0] != NODATA).all() and set(np.unique(codes[0])) <= set(VHR_LANDCOVER)
    with pytest.raises(InputError, match="band order"):
        predict_vhr_landcover(model, images[:, :2])
    check_vhr_landcover_inputs(model.card, ("red", "green", "blue", "nir"), 1.0)
    with pytest.raises(ModelError, match=r"trained at 1 m but the cube is at 0.5 m"):
        check_vhr_landcover_inputs(model.card, ("red", "green", "blue"), 0.5)
    with pytest.raises(ModelError, match="not a VHR land-cover model"):
        check_vhr_landcover_inputs(registry.get("siamese-vhr-change").card, ("red", "green", "blue"), 1.0)


def test_padding_continues_the_image_instead_of_a_flat_band(model: registry.LoadedModel) -> None:
    """A 200 px image is padded to 256 px with no data, filled from the nearest pixel with data: the same
    probabilities as the image edge-extended by hand (the network never sees the band means)."""
    image = _scene(np.random.default_rng(3), 200, 200)
    by_hand = np.pad(image, ((0, 0), (0, 56), (0, 56)), mode="edge")
    probs = predict_vhr_landcover(model, image)
    np.testing.assert_array_equal(probs, predict_vhr_landcover(model, by_hand)[:, :200, :200])


def test_change_flows_refuse_it_and_deployments_do_not_offer_it() -> None:
    from eowatch.infra.deployments import model_names
    from eowatch.pipelines.params import check_model

    assert NAME not in model_names()
    with pytest.raises(ModelError, match=r"is a vhr-land-cover model, not a change-detection model"):
        check_model(NAME, ("blue", "green", "red", "nir", "swir16", "swir22"), 10.0)


# --- labels -----------------------------------------------------------------------------------------


def test_archive_labels_building_is_exactly_the_drawn_roofs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Roofs rendered in a sentinel magenta land exactly on the pixels labelled building."""
    from eowatch.archive import ArchiveConfig
    from eowatch.archive import vhr as vhr_render
    from eowatch.archive.world import build_world

    config = ArchiveConfig(seed=7, size_km=2.56, start=dt.date(2026, 4, 1), end=dt.date(2026, 6, 30))
    world = build_world(config)
    labels = vhr_render.render_vhr_labels(world, 2)
    assert labels.shape == (world.layout.vhr.height, world.layout.vhr.width) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(VHR_LANDCOVER)  # every class is in this scene
    magenta = np.tile(np.array([[0.40, 0.02, 0.40, 0.10]], np.float32), (4, 1))
    monkeypatch.setattr(vhr_render, "_ROOFS", magenta)
    r, g, b = vhr_render.render_vhr(world, 2)[2][:3].astype(np.float32)
    roof = (r > 1.6 * g) & (b > 1.6 * g)
    building = labels == BUILDING
    assert roof[building].mean() > 0.99  # roof units of flat roofs (dark dots) are building too
    assert roof[~building].mean() < 1e-4  # blur at roof edges only


def test_drawn_roofs_are_building_and_crowns_woodland() -> None:
    rng = np.random.default_rng(4)
    image = np.full((3, 96, 96), 120.0, np.float32)
    label = np.zeros((96, 96), np.uint8)
    before = image.copy()
    draw_labelled_objects(image, label, rng, Synthesis(houses_p=1.0, trees_p=0.0))
    roofs = label == BUILDING
    assert roofs.any() and set(np.unique(label)) == {0, BUILDING}
    assert (np.abs(image - before).max(axis=0)[roofs] > 0).mean() > 0.95  # painted where labelled
    image, label = before.copy(), np.zeros((96, 96), np.uint8)
    draw_labelled_objects(image, label, np.random.default_rng(5), Synthesis(houses_p=0.0, trees_p=1.0))
    assert set(np.unique(label)) == {0, WOODLAND}


def test_chips_keep_image_and_label_together_and_are_deterministic() -> None:
    scene = _labelled()
    norm = {"red": (100.0, 50.0), "green": (90.0, 40.0), "blue": (80.0, 40.0)}
    plain = VhrLandCoverChips([scene], LandCoverSampling(chip=32, zoom=(1.0, 1.0)), norm, 8, 0, augment=False)
    for i in range(8):
        item = plain[i]
        mean = np.array([100.0, 90.0, 80.0])[:, None, None]
        std = np.array([50.0, 40.0, 40.0])[:, None, None]
        dn = item["image"].numpy() * std + mean
        for code, colour in ((BUILDING, 200.0), (WOODLAND, 40.0)):
            hit = item["label"].numpy() == code
            if hit.any():
                assert abs(dn[0][hit].mean() - colour) < 10  # red channel of the painted block
    data = VhrLandCoverChips([scene], LandCoverSampling(chip=32), norm, 16, 1)
    again = VhrLandCoverChips([scene], LandCoverSampling(chip=32), norm, 16, 1)
    for i in range(16):
        torch.testing.assert_close(data[i]["image"], again[i]["image"])
        assert torch.equal(data[i]["label"], again[i]["label"])
    rare = [p for p in data.positions if scene.labels[p[1], p[2], p[3]] in (BUILDING, WATER, ROAD)]
    assert len(rare) >= 4  # about half the chips are centred on a rare class


def test_colour_baseline_separates_painted_classes(tmp_path) -> None:
    scene = _labelled()
    baseline = fit_centroids([scene], step=1)
    assert sorted(baseline.centroids) == [0, 1, 2, 3, 4]
    codes = baseline.predict(scene.images[0])
    assert (codes == scene.labels[0]).mean() > 0.9
    path = tmp_path / "c.json"
    path.write_text(baseline.to_json())
    assert ColourCentroids.read(path) == baseline


# --- training ---------------------------------------------------------------------------------------


def test_tiny_training_is_deterministic(tmp_path) -> None:
    scene = _labelled()
    config = VhrLandCoverTrainConfig(
        name="tiny-vhr-landcover", width=4, levels=2, chips_per_epoch=16, sampling=LandCoverSampling(chip=32)
    )
    first, baseline = train_vhr_landcover([scene], tmp_path / "a", 2, 0, config, "test")
    second, _ = train_vhr_landcover([scene], tmp_path / "b", 2, 0, config, "test")
    assert first.card.weights_sha256 == second.card.weights_sha256
    assert first.card.task == VHR_LANDCOVER_TASK and first.card.patch_size == 32
    assert (tmp_path / "a" / "tiny-vhr-landcover.rgb-centroids.json").is_file()
    scores = evaluate_scenes(first, [scene], baseline, prefix="x.")
    assert 0.0 <= scores["x.miou"] <= 1.0 and scores["x.baseline.oa"] > 0.9


def test_vhr_networks_share_the_unet_skeleton_and_the_shipped_weights_keys() -> None:
    """``SiameseDiffUNet`` and ``VhrLandCoverUNet`` are one ``UNetBase``: the shipped safetensors load
    strictly (same ``stem/down/up/head`` keys) and the land-cover network equals the skeleton's own pass."""
    import torch

    from eowatch.models.unet import UNetBase

    for name in ("siamese-vhr-change", "landcover-vhr-unet"):
        module = registry.get(name).module  # strict load: every key of the shipped file, no other
        assert isinstance(module, UNetBase)
        assert {k.split(".")[0] for k in module.state_dict()} == {"stem", "down", "up", "head"}
    net = registry.get("landcover-vhr-unet").module.eval()
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        features = net.encode(x)
        torch.testing.assert_close(net(x), net.decode_skips(features[-1], features), rtol=0, atol=0)
