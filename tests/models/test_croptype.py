"""Crop-type model: L-TAE network, generalised cards and weights, preprocessing, inference, baselines,
scores and a small deterministic training run on an in-memory scene with known crop calendars."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from eowatch.errors import InputError, ModelError
from eowatch.models import croptype, registry
from eowatch.models.card import DEFAULT_BANDS, ModelCard
from eowatch.models.croptype import LABEL_MAPPING, centroids_path, load_centroids
from eowatch.models.stable_landcover import read_landcover
from eowatch.models.temporal import LTAEClassifier, month_harmonics
from eowatch.models.train_croptype import CropTrainConfig, train_croptype_sets
from eowatch.models.weights import LoadedModel, load_model, save_model

INPUTS = (*DEFAULT_BANDS, "ndvi", "s2_valid", "s1_valid")
MONTHS = (3, 4, 5, 6, 7, 8)


def make_crop_card(module: LTAEClassifier, name: str = "tiny-crop") -> ModelCard:
    """A valid crop-type card for ``module``."""
    norm = {b: (0.1 + 0.01 * i, 0.05 + 0.01 * i) for i, b in enumerate(DEFAULT_BANDS)}
    norm.update({"vv_db": (-10.0, 3.0), "vh_db": (-17.0, 3.0), "ndvi": (0.5, 0.25)})
    return ModelCard(
        name=name,
        version="0.0.1",
        architecture="LTAEClassifier",
        architecture_args=module.config,
        bands=DEFAULT_BANDS,
        normalization=norm,
        classes=dict(croptype.CROP_CLASSES),
        receptive_field_px=1,
        validity_channel=False,
        task="crop_type",
        patch_size=1,
        months=MONTHS,
        inputs_per_step=INPUTS,
        label_mapping=LABEL_MAPPING,
    )


@pytest.fixture
def tiny_ltae() -> LTAEClassifier:
    torch.manual_seed(0)
    return LTAEClassifier(
        len(INPUTS), len(croptype.CROP_CLASSES), d_model=16, n_head=4, d_k=4, hidden=16
    ).eval()


@pytest.fixture
def tiny_crop_model(tiny_ltae: LTAEClassifier) -> LoadedModel:
    return LoadedModel(tiny_ltae.requires_grad_(False), make_crop_card(tiny_ltae))


def test_month_harmonics_are_cyclic() -> None:
    h = month_harmonics(torch.tensor([12, 1, 6]), 3)
    assert h.shape == (3, 6)
    dec_jan = torch.linalg.norm(h[0] - h[1])
    assert torch.isclose(
        dec_jan,
        torch.linalg.norm(month_harmonics(torch.tensor([1]), 3) - month_harmonics(torch.tensor([2]), 3)),
    )


def test_ltae_ignores_masked_steps_and_any_number_of_months(tiny_ltae: LTAEClassifier) -> None:
    x = torch.randn(5, 6, len(INPUTS))
    mask = torch.tensor([[True, False, True, True, False, True]] * 5)
    months = torch.tensor(MONTHS)
    ref = tiny_ltae(x, mask, months)
    garbage = x.clone()
    garbage[:, ~mask[0]] = 1e6  # values of masked steps must not matter
    assert torch.allclose(tiny_ltae(garbage, mask, months), ref, atol=1e-5)
    # dropping the masked steps altogether (a shorter series) gives the same logits
    keep = mask[0]
    assert torch.allclose(tiny_ltae(x[:, keep], mask[:, keep], months[keep]), ref, atol=1e-5)
    # and the attention sits on valid steps only
    att = tiny_ltae.attention(x, mask, months)
    assert torch.allclose(att.sum(-1), torch.ones(5, 4)) and torch.all(att[..., ~keep] == 0)
    # twelve months work too; a pixel with no valid step gives finite logits
    out = tiny_ltae(
        torch.randn(2, 12, len(INPUTS)), torch.tensor([[True] * 12, [False] * 12]), torch.arange(1, 13)
    )
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_ltae_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        LTAEClassifier(4, 3, d_model=10, n_head=4)
    model = LTAEClassifier(4, 3, d_model=8, n_head=2, d_k=4, hidden=8)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool), torch.tensor([1, 2, 3]))


def test_crop_card_round_trip_and_validation(tiny_ltae: LTAEClassifier) -> None:
    card = make_crop_card(tiny_ltae)
    assert ModelCard.from_json(card.to_json()) == card
    assert card.in_channels == len(INPUTS) and card.continuous_inputs == (*DEFAULT_BANDS, "ndvi")
    assert card.class_code("maize") == 1
    for change, message in [
        ({"task": "change-detection"}, "task"),
        ({"months": (0, 3)}, "months"),
        ({"months": ()}, "months"),
        ({"inputs_per_step": (*INPUTS[:-1], "evi")}, "inputs_per_step"),
        ({"normalization": {b: (0.0, 1.0) for b in DEFAULT_BANDS}}, "normalization"),
        ({"label_mapping": {"x": {"1": "soybean"}}}, "soybean"),
        ({"architecture_args": {**tiny_ltae.config, "in_channels": 3}}, "in_channels"),
        ({"architecture_args": {"in_channels": 11, "n_classes": 5}}, "architecture_args"),
    ]:
        with pytest.raises(ModelError, match=message):
            replace(card, **change)


def test_crop_weights_round_trip_never_unpickle(
    tiny_ltae: LTAEClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = save_model(tiny_ltae, make_crop_card(tiny_ltae), tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling is not allowed")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded = load_model(tmp_path / "tiny-crop.card.json")
    assert isinstance(loaded.module, LTAEClassifier) and loaded.card == card
    for key, value in tiny_ltae.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)


def test_save_refuses_a_module_of_another_architecture(tiny_ltae: LTAEClassifier, tmp_path: Path) -> None:
    from eowatch.models import SiameseChangeNet

    with pytest.raises(ModelError, match="LTAEClassifier"):
        save_model(SiameseChangeNet(11, 5, 4, 1), make_crop_card(tiny_ltae), tmp_path)


def test_shipped_models_load() -> None:
    registry.get.cache_clear()
    change = registry.get("siamese-s2s1-change")
    assert change.card.task == "change-detection" and change.card.architecture == "SiameseChangeNet"
    crop = registry.get("crop-type-ltae")
    assert crop.card.task == "crop_type" and isinstance(crop.module, LTAEClassifier)
    assert crop.card.months and set(crop.card.inputs_per_step) >= set(crop.card.bands)
    assert (registry.WEIGHTS_DIR / crop.card.weights_file).stat().st_size < 2_000_000
    assert {"val.model.oa", "synthetic.model.oa", "flanders.model.oa"} <= set(crop.card.metrics)
    assert centroids_path(registry.WEIGHTS_DIR, crop.card.name).is_file()


def test_step_features(tiny_crop_model: LoadedModel) -> None:
    card = tiny_crop_model.card
    raw = np.full((2, 3, len(DEFAULT_BANDS)), 0.2, dtype=np.float32)
    raw[..., 2], raw[..., 3] = 0.05, 0.45  # red, nir: NDVI 0.8
    raw[..., 6:] = -10.0
    raw[0, 1, :6] = np.nan  # cloudy month: S2 missing, S1 there
    raw[1, 2] = np.nan  # no observation at all
    x, observed = croptype.step_features(raw, card)
    assert x.shape == (2, 3, len(INPUTS)) and x.dtype == np.float32
    assert observed.tolist() == [[True, True, True], [True, True, False]]
    i = {name: k for k, name in enumerate(INPUTS)}
    mean, std = card.normalization["ndvi"]
    assert np.isclose(x[0, 0, i["ndvi"]], (0.8 - mean) / std)
    assert x[0, 1, i["s2_valid"]] == 0 and x[0, 1, i["s1_valid"]] == 1 and x[0, 1, i["red"]] == 0
    assert np.isclose(x[0, 1, i["vv_db"]], 0.0)  # -10 dB is the card's mean
    assert np.all(x[1, 2] == 0)
    with pytest.raises(InputError, match="raw series"):
        croptype.step_features(raw[..., :5], card)


def test_predict_croptype_map_nodata_and_months(tiny_crop_model: LoadedModel) -> None:
    rng = np.random.default_rng(0)
    series = rng.uniform(0.02, 0.4, (6, len(DEFAULT_BANDS), 4, 5)).astype(np.float32)
    series[:, 6:] = -12.0
    series[:, :, 0, 0] = np.nan
    out = croptype.predict_croptype(tiny_crop_model, series, MONTHS)
    assert out.classes.shape == (4, 5) and out.classes.dtype == np.uint8
    assert out.classes[0, 0] == croptype.NODATA_CLASS and np.isnan(out.probabilities[:, 0, 0]).all()
    valid = out.classes != croptype.NODATA_CLASS
    assert np.allclose(out.probabilities[:, valid].sum(axis=0), 1.0, atol=1e-5)
    # pixels are independent: a crop of the block gives the same answer (no halo needed)
    part = croptype.predict_croptype(tiny_crop_model, series[:, :, 1:3, 2:5], MONTHS)
    assert np.array_equal(part.classes, out.classes[1:3, 2:5])
    # months the model was not trained on are ignored: adding winter months changes nothing
    winter = np.concatenate([rng.uniform(0, 1, (2, len(DEFAULT_BANDS), 4, 5)).astype(np.float32), series])
    longer = croptype.predict_croptype(tiny_crop_model, winter, (1, 2, *MONTHS))
    assert np.allclose(np.nan_to_num(longer.probabilities), np.nan_to_num(out.probabilities), atol=1e-5)
    # and a series of only winter months has no valid step anywhere
    only_winter = croptype.predict_croptype(tiny_crop_model, winter[:2], (1, 2))
    assert np.all(only_winter.classes == croptype.NODATA_CLASS)
    with pytest.raises(InputError, match="months"):
        croptype.predict_croptype(tiny_crop_model, series, MONTHS[:-1])


def test_check_croptype_inputs(tiny_crop_model: LoadedModel) -> None:
    card = tiny_crop_model.card
    croptype.check_croptype_inputs(card, [*card.bands, "clear_count"], 10.0, [4, 5, 6])
    with pytest.raises(ModelError, match="vh_db"):
        croptype.check_croptype_inputs(card, card.bands[:-1], 10.0, MONTHS)
    with pytest.raises(ModelError, match="20 m"):
        croptype.check_croptype_inputs(card, card.bands, 20.0, MONTHS)
    with pytest.raises(ModelError, match="trained on months"):
        croptype.check_croptype_inputs(card, card.bands, 10.0, [11, 12, 1])


def test_multiclass_scores_by_hand() -> None:
    names = {0: "a", 1: "b", 2: "c"}
    truth = np.array([0, 0, 1, 1, 1, 2, -1])
    pred = np.array([0, 1, 1, 1, 0, 255, 2])  # the -1 pixel is not scored; 255 (nodata) counts as wrong
    s = croptype.multiclass_scores(pred, truth, names)
    assert s["n"] == 6 and np.isclose(s["oa"], 3 / 6)
    assert np.isclose(s["a"]["precision"], 1 / 2) and np.isclose(s["b"]["recall"], 2 / 3)
    assert s["c"]["f1"] == 0.0 and s["c"]["precision"] == 1.0  # never predicted
    chance = (2 * 2 + 3 * 3 + 0 * 1) / 36  # predicted x true counts of a, b, c
    assert np.isclose(s["kappa"], (0.5 - chance) / (1 - chance))
    assert np.isclose(s["macro_f1"], np.mean([s["a"]["f1"], s["b"]["f1"], 0.0]))


def test_label_mapping_and_ndvi_baseline(tiny_crop_model: LoadedModel) -> None:
    card = tiny_crop_model.card
    codes = croptype.map_labels(
        [1110, 1510, 1200, 9120, 5100, 4351], card.label_mapping["worldcereal_croptype"], card
    )
    assert codes.tolist() == [0, 0, 1, 3, 4, 2]
    assert croptype.map_labels([10, 13, 99], card.label_mapping["worldcereal_landcover"], card).tolist() == [
        -1,
        3,
        4,
    ]
    bands = DEFAULT_BANDS
    raw = np.zeros((4, 3, len(bands)), dtype=np.float32)
    profiles = np.array([[0.8, 0.2, 0.1], [0.1, 0.2, 0.8], [0.8, 0.2, 0.1], [0.1, np.nan, 0.7]])
    raw[..., 2] = 0.1
    raw[..., 3] = 0.1 * (1 + profiles) / (1 - profiles)  # nir giving the NDVI above
    labels = np.array([0, 1, 0, -1])
    centroids = croptype.fit_ndvi_centroids(raw[:3], labels[:3], (5, 6, 7), bands, 2)
    assert np.isclose(centroids[0][5], 0.8, atol=1e-5) and np.isclose(centroids[1][7], 0.8, atol=1e-5)
    assert croptype.predict_ndvi_centroids(raw, (5, 6, 7), bands, centroids).tolist() == [0, 1, 0, 1]


# --- a small deterministic training run on a scene with known crop calendars -------------------------

#: Mean NDVI per month (Mar-Aug) of the scene's land-cover classes (eowatch.legend codes).
_PROFILES = {
    3: [0.65, 0.7, 0.75, 0.72, 0.74, 0.76],  # grassland
    4: [0.45, 0.65, 0.82, 0.75, 0.25, 0.2],  # winter cereal
    5: [0.18, 0.2, 0.25, 0.35, 0.72, 0.78],  # maize
    6: [0.6, 0.72, 0.5, 0.65, 0.22, 0.2],  # rapeseed (flowering dip in May)
    1: [-0.3] * 6,  # water
}


def _write_scene(folder: Path, seed: int) -> tuple[Path, Path]:
    """A 30 x 60 px cube (Mar-Aug 2026) with land cover in 6 x 6 px parcels, and its truth rasters."""
    import rasterio
    import xarray as xr
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    h, w = 30, 60
    codes = np.array(sorted(_PROFILES))
    cover = np.kron(rng.choice(codes, (h // 6, w // 6)), np.ones((6, 6), dtype=np.int64)).astype(np.uint8)
    ndvi = np.stack(
        [np.array([_PROFILES[c][t] for c in codes])[np.searchsorted(codes, cover)] for t in range(6)]
    )
    ndvi = np.clip(ndvi + rng.normal(0, 0.04, ndvi.shape), -0.9, 0.95)
    red = rng.uniform(0.04, 0.08, ndvi.shape)
    data = {"red": red, "nir": red * (1 + ndvi) / (1 - ndvi)}
    for band, level in [("blue", 0.05), ("green", 0.08), ("swir16", 0.2), ("swir22", 0.12)]:
        data[band] = level + 0.02 * rng.standard_normal(ndvi.shape)
    data["vv_db"] = -10 + rng.normal(0, 1, ndvi.shape)
    data["vh_db"] = -17 + rng.normal(0, 1, ndvi.shape)
    cloudy = rng.random((6, h, w)) < 0.1
    for band in ("blue", "green", "red", "nir", "swir16", "swir22"):
        data[band] = np.where(cloudy, np.nan, data[band])
    x0, y0 = 600000.0, 5640300.0
    coords = {
        "time": np.array([f"2026-{m:02d}-01" for m in range(3, 9)], dtype="datetime64[ns]"),
        "y": y0 - 5 - 10 * np.arange(h),
        "x": x0 + 5 + 10 * np.arange(w),
    }
    cube = folder / f"cube{seed}.zarr"
    xr.Dataset(
        {k: (("time", "y", "x"), v.astype(np.float32)) for k, v in data.items()}, coords=coords
    ).to_zarr(cube, consolidated=False)
    truth = folder / f"truth{seed}"
    truth.mkdir()
    profile = {"driver": "GTiff", "height": h, "width": w, "count": 1, "crs": "EPSG:32631"}
    profile["transform"] = from_origin(x0, y0, 10, 10)
    for name, array in [("landcover_start", cover), ("landcover_end", cover), ("change_type", cover * 0)]:
        with rasterio.open(truth / f"{name}.tif", "w", dtype="uint8", **profile) as dst:
            dst.write(array, 1)
    return cube, truth


def test_read_landcover_excludes_unstable_pixels(tmp_path: Path) -> None:
    import rasterio

    _, truth = _write_scene(tmp_path, 1)
    with rasterio.open(truth / "landcover_end.tif", "r+") as dst:
        end = dst.read(1)
        end[0, 0] = 5 if end[0, 0] != 5 else 4
        dst.write(end, 1)
    x = 600005.0 + 10 * np.arange(60)
    y = 5640295.0 - 10 * np.arange(30)
    cover = read_landcover(truth, x, y)
    assert cover[0, 0] == 0 and np.all(cover[1:] > 0)
    with pytest.raises(InputError, match="cover"):
        read_landcover(truth, x + 1000, y)


def test_training_is_deterministic_and_learns_crop_calendars(tmp_path: Path) -> None:
    sets = [_write_scene(tmp_path, s) for s in (1, 2)]
    config = CropTrainConfig(
        name="tiny-crop", per_landcover=400, batch_size=128, d_model=16, n_head=4, d_k=4, hidden=16
    )
    first, scores = train_croptype_sets(sets, tmp_path / "a", epochs=8, seed=3, config=config, command="test")
    again, _ = train_croptype_sets(sets, tmp_path / "b", epochs=8, seed=3, config=config, command="test")
    assert first.card.weights_sha256 == again.card.weights_sha256  # bit-identical weights
    assert first.card.months == MONTHS and first.card.metrics == scores
    assert first.card.normalization["ndvi"][1] > 0
    assert scores["val.model.oa"] >= 0.9
    assert scores["val.model.oa"] >= scores["val.majority.oa"] + 0.3
    centroids = load_centroids(centroids_path(tmp_path / "a", "tiny-crop"), first.card)
    assert np.isclose(centroids[first.card.class_code("maize")][8], 0.78, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_predict_croptype_on_cuda_matches_cpu(tiny_ltae: LTAEClassifier) -> None:
    rng = np.random.default_rng(1)
    series = rng.uniform(0.02, 0.4, (6, len(DEFAULT_BANDS), 16, 16)).astype(np.float32)
    series[:, 6:] = rng.uniform(-20, -5, (6, 2, 16, 16))
    cpu = croptype.predict_croptype(LoadedModel(tiny_ltae, make_crop_card(tiny_ltae)), series, MONTHS)
    gpu_model = LoadedModel(tiny_ltae.to("cuda"), make_crop_card(tiny_ltae))
    gpu = croptype.predict_croptype(gpu_model, series, MONTHS)
    assert np.allclose(gpu.probabilities, cpu.probabilities, atol=1e-4)


def test_training_command_passes_the_archive_period_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generated_archives: list
) -> None:
    """``--start``/``--end`` reach every training archive and the card's command."""
    import datetime as dt
    from types import SimpleNamespace

    import eowatch.models.train_croptype as tc

    commands: list[str] = []
    trained = (SimpleNamespace(card=SimpleNamespace(name="crop-type-ltae", version="0")), {})
    record = lambda *a, **k: (commands.append(k["command"]), trained)[1]  # noqa: E731
    monkeypatch.setattr(tc, "train_croptype_sets", record)
    argv = ["--workdir", str(tmp_path), "--archive-seeds", "1,2"]
    assert tc.main([*argv, "--start", "2026-01-01", "--end", "2026-12-31"]) == 0
    year = (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert generated_archives == [(1, *year), (2, *year)]
    assert commands == [
        f"python -m eowatch.models.train_croptype --workdir {tmp_path.name} --archive-seeds 1,2 --epochs 30 "
        "--seed 0 --start 2026-01-01 --end 2026-12-31"
    ]
