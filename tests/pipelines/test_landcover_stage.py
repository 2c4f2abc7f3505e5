"""The land-cover stage, called directly on a small analysis cube written by the test: chunked maps equal
whole-image inference, the store's legend and completion marker, resume from the ledger, area statistics
and scores against the planted land cover.

The cube is 160 x 160 px in 64 px chunks (so edge chunks are partial and reads with the 56 px halo are
clipped at the grid edge), two periods of S2 composites with parcels of the archive's land-cover classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from eowatch.models import registry
from eowatch.models.landcover import landcover_codes_lut, model_periods, period_history, predict_landcover
from eowatch.pipelines import landcover as stage
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.ledger import RunLayout
from eowatch.pipelines.spec import CubeSpec
from eowatch.pipelines.zarr_store import create_template

from ..models.landcover_scene import BANDS, X0, Y0, scene_arrays, write_truth

NAME = "landcover-s2-unet"
SEASONAL = "landcover-s2-seasonal-unet"
SIZE, CHUNK = 160, 64
PERIODS = (("2026-05-01", "2026-06-01"), ("2026-06-01", "2026-07-01"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The cube store, its spec, the raw bands and the truth folder."""
    root = tmp_path_factory.mktemp("landcover-stage")
    bands, cover = scene_arrays(11, size=SIZE, periods=len(PERIODS))
    bands[1, :, 100:130, 10:60] = np.nan  # a cloud in June: no clear observation there
    grid = GridSpec("EPSG:32631", 10.0, (X0, Y0 - 10 * SIZE, X0 + 10 * SIZE, Y0), chunk=CHUNK)
    spec = CubeSpec(grid=grid, periods=PERIODS, s1_collection=None)
    cube = root / "cube.zarr"
    f32 = np.dtype("float32")
    variables = {b: (f32, np.nan, {"units": "1"}) for b in BANDS}
    times = np.array([np.datetime64(a, "ns") for a, _ in PERIODS])
    create_template(cube, grid, times, variables, attrs={"title": "test cube"})
    group = zarr.open_group(cube, mode="r+", zarr_format=3)
    for i, b in enumerate(BANDS):
        group[b][:] = bands[:, i]
    return {
        "cube": cube,
        "spec": spec,
        "bands": bands,
        "truth": write_truth(root / "truth", cover),
        "root": root,
    }


def _run(scene: dict, out: Path, name: str = NAME) -> tuple[RunLayout, stage.LandCoverInputs]:
    layout = RunLayout(out=out, token="tok")
    spec = scene["spec"]
    path = stage.init_landcover(layout, spec, name, {"eowatch_run_token": "tok"})
    inputs = stage.LandCoverInputs(
        cube_spec=spec.to_dict(),
        model=name,
        cube_path=str(scene["cube"]),
        store_path=str(path),
        ledger_path=str(layout.ledger(stage.STORE).root),
    )
    return layout, inputs


@pytest.fixture(scope="module")
def finished(scene: dict) -> dict:
    out = scene["root"] / "out"
    layout, inputs = _run(scene, out)
    keys = [(k.row, k.col) for k in scene["spec"].grid.chunks()]
    first = stage.landcover_batch(keys, inputs)
    again = stage.landcover_batch(keys, inputs)  # every chunk is in the ledger: nothing recomputed
    published = stage.finalize_landcover(layout)
    return {"path": published, "first": first, "again": again, "layout": layout}


def test_chunked_maps_equal_whole_image_inference(scene: dict, finished: dict) -> None:
    assert len(finished["first"]) == 9 and finished["again"] == []
    ds = xr.open_zarr(finished["path"])
    assert ds.attrs["eowatch_status"] == "complete"
    maps = ds["landcover"]
    assert maps.dtype == np.uint8 and maps.shape == (2, SIZE, SIZE)
    legend = json.loads(maps.attrs["legend"])
    assert legend == {
        "10": "tree_cover",
        "30": "grassland",
        "40": "cropland",
        "50": "built_up",
        "60": "bare_sparse_vegetation",
        "80": "permanent_water",
    }
    assert json.loads(maps.attrs["colours"])["40"] == [240, 150, 255] and maps.attrs["nodata"] == 255
    model = registry.get(NAME)
    for t in range(2):
        whole = predict_landcover(model, scene["bands"][t]).codes
        np.testing.assert_array_equal(maps.values[t], whole)  # seam-free: chunks equal the whole image
    assert (maps.values[1, 100:130, 10:60] == 255).all() and (maps.values[0] != 255).all()


def test_a_multi_period_model_maps_each_period_with_the_periods_before_it(
    scene: dict, tmp_path: Path
) -> None:
    """The seasonal model reads each chunk's earlier periods too (none before the first): chunked maps
    equal whole-image inference of each period with its history."""
    layout, inputs = _run(scene, tmp_path / "out", SEASONAL)
    stage.landcover_batch([(k.row, k.col) for k in scene["spec"].grid.chunks()], inputs)
    maps = xr.open_zarr(stage.finalize_landcover(layout))["landcover"].values
    model = registry.get(SEASONAL)
    assert model_periods(model.card) == 3
    for t in range(2):
        whole = predict_landcover(model, period_history(scene["bands"], t, 3)).codes
        np.testing.assert_array_equal(maps[t], whole)
    assert (maps[1, 100:130, 10:60] == 255).all() and (maps[0] != 255).all()


def test_a_lost_chunk_is_recomputed_on_resume(scene: dict, tmp_path: Path) -> None:
    _, inputs = _run(scene, tmp_path / "out")
    keys = [(k.row, k.col) for k in scene["spec"].grid.chunks()]
    stage.landcover_batch(keys[:4], inputs)  # a run killed after four chunks
    resumed = stage.landcover_batch(keys, inputs)
    assert sorted(s["key"] for s in resumed) == sorted(str(ChunkKey(r, c)) for r, c in keys[4:])
    assert all(s["mapped_px"] > 0 for s in resumed)


def test_statistics_give_the_area_per_class_and_period(scene: dict, finished: dict) -> None:
    stats = stage.landcover_statistics(finished["path"], scene["spec"])
    assert stats["model"] == NAME and len(stats["periods"]) == 2
    total_km2 = (SIZE * 10 / 1000) ** 2
    for period, found in zip(PERIODS, stats["periods"], strict=True):
        assert found["period"] == list(period)
        assert sum(found["by_class_km2"].values()) == pytest.approx(found["mapped_km2"], abs=1e-3)
        assert found["mapped_km2"] + found["nodata_km2"] == pytest.approx(total_km2, abs=1e-3)
    assert stats["periods"][1]["nodata_km2"] == pytest.approx(30 * 50 * 1e-4, abs=1e-6)


def test_evaluation_against_the_planted_land_cover(scene: dict, finished: dict) -> None:
    from eowatch.models.stable_landcover import read_landcover
    from eowatch.pipelines.zarr_store import grid_coords

    found = stage.evaluate_landcover(finished["path"], scene["spec"], str(scene["truth"]))
    model = registry.get(NAME)
    coords = grid_coords(scene["spec"].grid)
    truth = landcover_codes_lut(model.card)[read_landcover(scene["truth"], coords["x"], coords["y"])]
    maps = xr.open_zarr(finished["path"])["landcover"].values
    index_of = {10: 0, 30: 1, 40: 2, 50: 3, 60: 4, 80: 5}
    pred = np.vectorize(lambda c: index_of.get(int(c), -1))(maps)
    labelled = np.broadcast_to(truth >= 0, pred.shape)
    assert found["n_px"] == int(labelled.sum())
    assert found["unmapped_px"] == 30 * 50
    assert found["oa"] == pytest.approx(float((pred == truth)[labelled].mean()), abs=1e-4)
    names = {c.name for c in model.card.classes.values()}
    assert set(found["f1_by_class"]) == set(found["iou_by_class"]) == names
    assert -1.0 <= found["kappa"] <= 1.0 and 0.0 <= found["miou"] <= 1.0


def test_the_run_checks_the_model_against_the_cube(scene: dict) -> None:
    from dataclasses import replace

    from eowatch.errors import ModelError

    stage.check_landcover_model(NAME, scene["spec"])
    with pytest.raises(ModelError, match="not a land-cover model"):
        stage.check_landcover_model("crop-type-ltae", scene["spec"])
    with pytest.raises(ModelError, match="unknown model"):
        stage.check_landcover_model("no-such-model", scene["spec"])
    coarse = replace(scene["spec"], grid=replace(scene["spec"].grid, resolution=20.0))
    with pytest.raises(ModelError, match="trained at 10 m but the cube is at 20 m"):
        stage.check_landcover_model(NAME, coarse)
