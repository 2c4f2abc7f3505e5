"""The S2 change model on a Landsat change pair: reading, harmonising and predicting on a small written
pair (ENVI images and BMP masks, as the real folder holds), and the CLI's refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from eowatch.errors import InputError, ModelError
from eowatch.models import registry
from eowatch.models.landsat_finetune import FinetuneConfig, PairChipDataset, network_inputs
from eowatch.models.landsat_real import (
    LANDSAT_BANDS,
    harmonise,
    is_change_pair_folder,
    predict_pair,
    read_change_pair,
    score_pair,
)
from eowatch.models.metrics import roc_auc
from eowatch.models.weights import LoadedModel, record_metrics, sha256_file

SIZE = 48
#: A built-up square appears between the dates (bright in every band, dark in the NIR).
SQUARE = (slice(16, 32), slice(16, 32))


def _write_image(path: Path, bands: np.ndarray, mtl_date: str | None) -> None:
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "ENVI",
        "width": SIZE,
        "height": SIZE,
        "count": bands.shape[0],
        "dtype": "uint8",
        "crs": "EPSG:32651",
        "transform": from_origin(203325.0, 3604935.0, 30.0, 30.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
    header = path.with_suffix(".hdr")
    if mtl_date is not None:  # as the real headers name their bands after the scene's MTL file
        with header.open("a") as fh:
            fh.write(f"band names = {{Band 1:L71119038_038{mtl_date}_MTL.txt}}\n")


def _write_mask(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)


def _scene(rng: np.random.Generator, built: bool) -> np.ndarray:
    """Six uint8 bands of a vegetated field, with or without the built-up square."""
    level = np.array([60, 50, 45, 110, 70, 40], np.float32)[:, None, None]
    x = level + rng.normal(0, 3, (6, SIZE, SIZE)).astype(np.float32)
    if built:
        x[:, SQUARE[0], SQUARE[1]] = np.array([110, 105, 110, 70, 120, 110], np.float32)[:, None, None]
    return np.clip(np.round(x), 1, 255).astype(np.uint8)


@pytest.fixture
def pair_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "landsat_small"
    folder.mkdir()
    # Written later date first: the reader orders the images by the dates in their headers.
    _write_image(folder / "later", _scene(rng, built=True), "20030206")
    _write_image(folder / "earlier", _scene(rng, built=False), "20000317")
    changed = np.zeros((SIZE, SIZE), bool)
    changed[18:30, 18:30] = True
    unchanged = np.zeros((SIZE, SIZE), bool)
    unchanged[:10, :] = unchanged[-10:, :] = True
    _write_mask(folder / "change.bmp", changed)
    _write_mask(folder / "unchanged.bmp", unchanged)
    return folder


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return registry.get("siamese-s2s1-change")


def test_pair_is_read_in_date_order_with_its_grid_and_masks(pair_folder: Path) -> None:
    assert is_change_pair_folder(pair_folder)
    pair = read_change_pair(pair_folder)
    assert pair.name == "small"
    assert pair.dates == (np.datetime64("2000-03-17"), np.datetime64("2003-02-06"))
    assert pair.before.shape == pair.after.shape == (6, SIZE, SIZE) and pair.before.dtype == np.float32
    assert pair.after[:, 20, 20].mean() > pair.before[:, 20, 20].mean()  # the square is in the later image
    assert (pair.gsd_m, pair.crs) == (30.0, "EPSG:32651")
    assert pair.changed.sum() == 144 and pair.unchanged.sum() == 20 * SIZE
    assert pair.labelled.sum() == 144 + 20 * SIZE


def test_harmonise_puts_each_band_on_the_cards_scale_and_leaves_s1_unobserved(
    pair_folder: Path, model: LoadedModel
) -> None:
    pair = read_change_pair(pair_folder)
    x = harmonise(pair.before, model)
    assert x.shape == (len(model.card.bands), SIZE, SIZE) and x.dtype == np.float32
    for i, band in enumerate(model.card.bands):
        if band in LANDSAT_BANDS:
            mean, std = model.card.normalization[band]
            assert x[i].mean() == pytest.approx(mean, abs=1e-3 * std)
            assert x[i].std() == pytest.approx(std, rel=1e-3)
        else:
            assert np.isnan(x[i]).all(), band


def test_the_model_calls_the_new_square_and_scores_carry_the_pairs_name(
    pair_folder: Path, model: LoadedModel
) -> None:
    pair = read_change_pair(pair_folder)
    p = predict_pair(model, pair)
    assert p.shape == (SIZE, SIZE) and p.dtype == np.float32 and np.isfinite(p).all()
    assert p[20:28, 20:28].mean() > 0.5 > p[:10].mean()
    scores = score_pair(model, pair, p)
    assert scores["small.model.auc"] == pytest.approx(roc_auc(p[pair.changed], p[pair.unchanged]))
    assert scores["small.model.auc"] > 0.9 and scores["small.cva.auc"] > 0.9
    assert scores["small.n_changed"] == 144
    assert {"small.model.f1", "small.recalibrated_2fold.f1", "small.cva.f1"} <= set(scores)


def test_bad_pairs_are_refused_by_name(pair_folder: Path, model: LoadedModel, tmp_path: Path) -> None:
    header = pair_folder / "earlier.hdr"
    text = header.read_text()
    header.write_text(text.replace("_MTL", "_XYZ"))
    with pytest.raises(InputError, match="no acquisition date"):
        read_change_pair(pair_folder)
    header.write_text(text)
    _write_mask(pair_folder / "unchanged.bmp", np.ones((SIZE, SIZE), bool))
    with pytest.raises(InputError, match=r"both label \d+ px"):
        read_change_pair(pair_folder)
    (pair_folder / "later").unlink()
    assert not is_change_pair_folder(pair_folder)
    with pytest.raises(InputError, match="not a change pair folder"):
        read_change_pair(pair_folder)


def test_only_change_models_at_a_dividing_resolution_run_on_a_pair(pair_folder: Path) -> None:
    pair = read_change_pair(pair_folder)
    with pytest.raises(ModelError, match="crop_type model; a change pair scores change-detection"):
        predict_pair(registry.get("crop-type-ltae"), pair)
    with pytest.raises(ModelError, match="needs a pre-change land-cover map"):
        predict_pair(registry.get("siamese-s2s1-conditional"), pair)
    change = registry.get("siamese-s2s1-change")
    from dataclasses import replace

    coarse = LoadedModel(change.module, replace(change.card, resolution_m=20.0))
    with pytest.raises(ModelError, match="not a whole multiple"):
        predict_pair(coarse, pair)


def test_chips_stay_in_their_columns_and_alternate_changed_and_unchanged_centres(
    pair_folder: Path, model: LoadedModel
) -> None:
    pair = read_change_pair(pair_folder)
    inputs = network_inputs(model, pair)
    channels = model.card.architecture_args["in_channels"] + model.card.architecture_args["season_channels"]
    assert inputs.shape == (2, channels, 3 * SIZE, 3 * SIZE) and inputs.dtype == np.float32
    labels = np.full((3 * SIZE, 3 * SIZE), -1, np.int64)
    labels[:30], labels[54:90, 54:90] = 0, 1
    config = FinetuneConfig(chips_per_epoch=8, chip=32)
    data = PairChipDataset(inputs, labels, (40, 144), config, seed=3)
    for epoch in range(3):
        data.set_epoch(epoch)
        assert all(x0 >= 40 and x0 + 32 <= 144 for _, x0, _, _ in data.positions)
        assert all((data[i]["label"] == 1).any() for i in range(0, 8, 2))  # centred on a changed pixel
    item = data[1]
    assert item["before"].shape == item["after"].shape == (inputs.shape[1], 32, 32)
    assert item["label"].dtype == torch.int64
    with pytest.raises(InputError, match="no changed or no unchanged"):
        PairChipDataset(inputs, labels, (100, 144), config, seed=3)


def test_evaluate_cli_scores_a_pair_and_refuses_record_elsewhere(
    pair_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functools import partial

    from eowatch.cli import main
    from eowatch.models import landsat_finetune

    quick = FinetuneConfig(epochs=1, chips_per_epoch=4, batch_size=4)
    monkeypatch.setattr(
        landsat_finetune, "finetune_two_fold", partial(landsat_finetune.finetune_two_fold, config=quick)
    )

    out = tmp_path / "eval"
    assert main(["evaluate", "siamese-s2s1-change", str(pair_folder), "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["kind"] == "change-pair" and report["pair"] == "small"
    assert report["change_pair"]["small.n_changed"] == 144
    assert "small.finetuned_2fold.f1" in report["change_pair"]
    assert (out / "confusion.png").stat().st_size > 0 and (out / "quicklook.png").stat().st_size > 0
    run_like = tmp_path / "run"
    (run_like / "change.zarr").mkdir(parents=True)
    assert main(["evaluate", "siamese-s2s1-change", str(run_like), "--record"]) != 0


def test_record_metrics_changes_the_card_not_the_weights(tmp_path: Path) -> None:
    name = "siamese-s2s1-change"
    for suffix in (".card.json", ".safetensors"):
        shutil.copy(registry.WEIGHTS_DIR / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    before = sha256_file(tmp_path / f"{name}.safetensors")
    loaded = record_metrics(tmp_path, name, {"somewhere.model.f1": 0.5})
    assert loaded.card.metrics["somewhere.model.f1"] == 0.5
    assert "val.binary.f1" in loaded.card.metrics  # earlier metrics kept
    assert sha256_file(tmp_path / f"{name}.safetensors") == before == loaded.card.weights_sha256
