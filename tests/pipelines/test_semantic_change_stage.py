"""The semantic change stage, called directly on a small analysis cube written by the test: chunked maps
equal whole-image inference (semantic and conditional models), the store's legend, no-data and completion
marker, resume from the ledger, area statistics, scores against planted truth and the model checks.

The cube is 144 x 144 px in 64 px chunks (edge chunks are partial, reads with the halo are clipped at
the grid edge), three monthly periods of S2 + S1 with planted changes (``tests/models/synthetic``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from eowatch.models import registry
from eowatch.models.labels import period_middle_days
from eowatch.models.semantic_eval import SemanticCounts, transition_truth
from eowatch.models.siamese_semantic import decode_semantic, predict_semantic_series
from eowatch.models.train import period_bounds
from eowatch.pipelines import semantic_change as stage
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.ledger import RunLayout
from eowatch.pipelines.spec import CubeSpec

from ..models import synthetic

SIZE, CHUNK, PERIODS = 144, 64, 3
X0, Y0 = 500_000.0, 5_000_000.0  # tests/models/synthetic's grid


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("semantic-stage")
    cube = root / "cube.zarr"
    truth = synthetic.semantic_scene(cube, SIZE, PERIODS, seed=5)
    ds = xr.open_zarr(cube, consolidated=False).load()
    ds[list(synthetic.BANDS)] = ds[list(synthetic.BANDS)].where(
        ~(
            (ds["time"] == ds["time"][2])
            & (ds["y"] < ds["y"][19])
            & (ds["y"] > ds["y"][50])
            & (ds["x"] > ds["x"][89])
            & (ds["x"] < ds["x"][140])
        )
    )  # a cloud in the last period, rows 20-49 and columns 90-139: no observation there
    ds.drop_encoding().to_zarr(cube, mode="w", zarr_format=3, consolidated=False)
    bands = np.stack([ds[b].values for b in synthetic.BANDS], axis=1)  # (period, band, y, x)
    times = ds["time"].values
    bounds = period_bounds(times)
    periods = tuple((str(a), str(b)) for a, b in bounds)
    grid = GridSpec("EPSG:32631", 10.0, (X0, Y0 - 10 * SIZE, X0 + 10 * SIZE, Y0), chunk=CHUNK)
    synthetic.write_truth_tifs(root / "truth", truth)
    return {
        "cube": cube,
        "spec": CubeSpec(grid=grid, periods=periods, s1_collection="sentinel-1-grd"),
        "bands": bands,
        "truth": truth,
        "truth_dir": root / "truth",
        "root": root,
        "days": period_middle_days(bounds),
    }


def _inputs(scene: dict, out: Path, name: str) -> tuple[RunLayout, stage.SemanticChangeInputs]:
    layout = RunLayout(out=out, token="tok")
    spec = scene["spec"]
    path = stage.init_semantic_change(layout, spec, name, {"eowatch_run_token": "tok"})
    inputs = stage.SemanticChangeInputs(
        cube_spec=spec.to_dict(),
        model=name,
        cube_path=str(scene["cube"]),
        store_path=str(path),
        ledger_path=str(layout.ledger(stage.STORE).root),
        threshold=registry.get(name).card.decision_threshold,
    )
    return layout, inputs


def _finish(scene: dict, name: str) -> dict:
    layout, inputs = _inputs(scene, scene["root"] / f"out-{name}", name)
    keys = [(k.row, k.col) for k in scene["spec"].grid.chunks()]
    first = stage.semantic_change_batch(keys, inputs)
    again = stage.semantic_change_batch(keys, inputs)  # every chunk is in the ledger: nothing recomputed
    return {"path": stage.finalize_semantic_change(layout), "first": first, "again": again}


@pytest.fixture(scope="module")
def semantic(scene: dict) -> dict:
    return _finish(scene, "siamese-s2s1-semantic")


def _days(name: str, scene: dict) -> np.ndarray | None:
    return scene["days"] if registry.get(name).module.season_channels else None


def _assert_equal_to_whole_image(path: Path, probs, threshold: float) -> None:
    ds = xr.open_zarr(path)
    got = ds["change_probability"].values
    observed = np.isfinite(got)
    np.testing.assert_allclose(got[observed], probs.change[observed], atol=1e-5)  # no seams
    _, from_map, to_map = decode_semantic(probs, threshold)
    clear = observed & (np.abs(probs.change - threshold) > 1e-4)
    np.testing.assert_array_equal(ds["from_class"].values[clear], from_map[clear])
    np.testing.assert_array_equal(ds["to_class"].values[clear], to_map[clear])


def test_chunked_maps_equal_whole_image_inference(scene: dict, semantic: dict) -> None:
    name = "siamese-s2s1-semantic"
    assert len(semantic["first"]) == 9 and semantic["again"] == []
    ds = xr.open_zarr(semantic["path"])
    assert ds.attrs["eowatch_status"] == "complete"
    assert ds["from_class"].shape == (PERIODS - 1, SIZE, SIZE) and ds["from_class"].dtype == np.uint8
    assert ds["change_probability"].dtype == np.float32
    assert str(ds["time"].values[0])[:7] == "2024-02" and str(ds["period_before"].values[0])[:7] == "2024-01"
    legend = json.loads(ds["to_class"].attrs["legend"])
    assert legend["0"] == "no_change" and legend["7"] == "built_up"
    assert json.loads(ds.attrs["semantic_change_model"])["name"] == name
    model = registry.get(name)
    probs = predict_semantic_series(model, scene["bands"], days=_days(name, scene))
    _assert_equal_to_whole_image(semantic["path"], probs, model.card.decision_threshold)
    cloud = np.s_[1, 20:50, 90:140]  # the cloud of March: February -> March has no observation
    assert np.isnan(ds["change_probability"].values[cloud]).all()
    assert (ds["from_class"].values[cloud] == 255).all() and (ds["to_class"].values[0] != 255).all()


def test_conditional_model_gets_the_semantic_models_pre_change_map(scene: dict) -> None:
    name = "siamese-s2s1-conditional"
    found = _finish(scene, name)
    ds = xr.open_zarr(found["path"])
    assert json.loads(ds.attrs["condition_model"])["name"] == stage.CONDITION_MODEL
    source = registry.get(stage.CONDITION_MODEL)
    before = predict_semantic_series(source, scene["bands"], days=_days(stage.CONDITION_MODEL, scene))
    condition = (before.from_class.argmax(axis=1) + 1).astype(np.uint8)
    model = registry.get(name)
    probs = predict_semantic_series(model, scene["bands"], condition, days=_days(name, scene))
    _assert_equal_to_whole_image(found["path"], probs, model.card.decision_threshold)


def test_a_lost_chunk_is_recomputed_on_resume(scene: dict, tmp_path: Path) -> None:
    _, inputs = _inputs(scene, tmp_path / "out", "siamese-s2s1-semantic")
    keys = [(k.row, k.col) for k in scene["spec"].grid.chunks()]
    stage.semantic_change_batch(keys[:4], inputs)  # a run killed after four chunks
    resumed = stage.semantic_change_batch(keys, inputs)
    assert sorted(s["key"] for s in resumed) == sorted(str(ChunkKey(r, c)) for r, c in keys[4:])


def test_statistics_and_scores_against_planted_truth(scene: dict, semantic: dict) -> None:
    stats = stage.semantic_change_statistics(semantic["path"], scene["spec"])
    ds = xr.open_zarr(semantic["path"])
    f, t = ds["from_class"].values, ds["to_class"].values
    changed = (f > 0) & (f != 255)
    assert stats["model"] == "siamese-s2s1-semantic" and len(stats["transitions"]) == PERIODS - 1
    for i, found in enumerate(stats["transitions"]):
        assert found["changed_km2"] == pytest.approx(changed[i].sum() * 1e-4, abs=1e-6)
    assert sum(stats["changed_km2_by_pair"].values()) == pytest.approx(changed.sum() * 1e-4, abs=1e-3)
    ev = stage.evaluate_semantic_change(semantic["path"], scene["spec"], str(scene["truth_dir"]))
    counts = SemanticCounts()
    bounds = [(np.datetime64(a, "D"), np.datetime64(b, "D")) for a, b in scene["spec"].periods]
    counts.add((np.where(f == 255, 0, f), np.where(t == 255, 0, t)), transition_truth(scene["truth"], bounds))
    direct = counts.scores()
    assert ev["sek"] == pytest.approx(direct["sek"], abs=1e-4)
    assert ev["binary_f1"] == pytest.approx(direct["binary.f1"], abs=1e-4)
    assert 0.0 < ev["binary_f1"] <= 1.0 and ev["scope"].startswith("every pixel")


def test_quicklook(scene: dict, semantic: dict, tmp_path: Path) -> None:
    from PIL import Image

    out = stage.render_semantic_change_quicklook(
        scene["cube"], semantic["path"], scene["spec"], tmp_path / "q.png"
    )
    with Image.open(out) as img:
        assert img.size == (2 * SIZE + 8, SIZE)


def test_the_run_checks_the_model_against_the_cube(scene: dict) -> None:
    from dataclasses import replace

    from eowatch.errors import ModelError

    stage.check_semantic_change_model("siamese-s2s1-semantic", scene["spec"])
    stage.check_semantic_change_model("siamese-s2s1-conditional", scene["spec"])
    with pytest.raises(ModelError, match="not a semantic-change-detection model"):
        stage.check_semantic_change_model("landcover-s2-unet", scene["spec"])
    coarse = replace(scene["spec"], grid=replace(scene["spec"].grid, resolution=20.0))
    with pytest.raises(ModelError, match="20 m"):
        stage.check_semantic_change_model("siamese-s2s1-semantic", coarse)
