"""The VHR land-cover stage on a VHR cube built in memory from the archive renderer: chunked == whole-image
inference, no data, resume after a crash, area statistics, and the evaluation against the archive's own
labels.

The cube is a 330 x 410 px crop (not a multiple of the 16 px pooling cell or of the 128 px padding) of
the rendered VHR area of the tests' small archive config (seed 7, 2.56 km, April-June; only
``archive.json`` is written, the world is rebuilt from it), at its town's corner, in 128 px chunks (3 x 4
chunks, the last row and column partial), its first two VHR dates, with a patch the second date did not
acquire.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eowatch.errors import InputError, ModelError
from eowatch.pipelines import vhr, vhr_landcover
from eowatch.pipelines.grid import GridSpec
from eowatch.pipelines.ledger import RunLayout
from eowatch.pipelines.zarr_store import open_group, write_region

MODEL = "landcover-vhr-unet"
SHAPE = (330, 410)
CHUNK = 128
GAP = (slice(20, 70), slice(330, 400))


def _config() -> Any:
    from eowatch.archive import ArchiveConfig

    return ArchiveConfig(seed=7, size_km=2.56, start=dt.date(2026, 4, 1), end=dt.date(2026, 6, 30))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The rendered crop ``(T, 4, H, W)`` uint8 (0 in the gap), its grid, days and a minimal archive."""
    from eowatch.archive.config import vhr_dates
    from eowatch.archive.vhr import render_vhr
    from eowatch.archive.world import build_world

    config = _config()
    world = build_world(config)
    area = world.layout.vhr
    rows, cols = slice(0, SHAPE[0]), slice(area.width - SHAPE[1], area.width)
    images = np.stack([render_vhr(world, k)[2][:, rows, cols] for k in range(2)])
    images[1][:, GAP[0], GAP[1]] = 0
    minx, maxy = area.minx + cols.start, area.maxy
    grid = GridSpec("EPSG:32631", 1.0, (minx, maxy - SHAPE[0], minx + SHAPE[1], maxy), chunk=CHUNK)
    archive = tmp_path_factory.mktemp("archive") / "archive"
    archive.mkdir()
    (archive / "archive.json").write_text(json.dumps({"config": config.to_dict()}))
    days = np.array([d.isoformat() for d in vhr_dates(config)[:2]], dtype="datetime64[D]")
    return {"images": images, "grid": grid, "days": days, "archive": archive, "cols": cols}


def write_vhr_cube(out: Path, scene: dict[str, Any]) -> RunLayout:
    """A finished ``vhr.zarr`` under ``out`` (the VHR stage's layout and chunking)."""
    layout = RunLayout(out, "t0ken")
    grid, images = scene["grid"], scene["images"]
    vhr.init_vhr(layout, grid, scene["days"], {"eowatch_run_token": "t0ken"})
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        arrays = {b: np.ascontiguousarray(images[:, i, ys, xs]) for i, b in enumerate(vhr.VHR_BANDS)}
        write_region(layout.staging("vhr"), grid, ys, xs, arrays)
    vhr.finalize_vhr(layout)
    return layout


def run_stage(layout: RunLayout, scene: dict[str, Any], keys: list[tuple[int, int]] | None = None) -> list:
    """Init the staging store and run the batch task over ``keys`` (default: every chunk)."""
    grid = scene["grid"]
    store = vhr_landcover.init_vhr_landcover(layout, grid, scene["days"], MODEL, {"eowatch_run_token": "t"})
    inputs = vhr_landcover.VhrLandCoverInputs(
        grid=grid.to_dict(),
        model=MODEL,
        vhr_path=str(layout.vhr),
        store_path=str(store),
        ledger_path=str(layout.ledger(vhr_landcover.STORE).root),
    )
    todo = keys if keys is not None else [(k.row, k.col) for k in grid.chunks()]
    return vhr_landcover.vhr_landcover_batch(todo, inputs)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(scene: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every chunk through the stage, published as ``vhr_landcover.zarr``."""
    layout = write_vhr_cube(tmp_path_factory.mktemp("vhr") / "out", scene)
    stats = run_stage(layout, scene)
    return {"layout": layout, "path": vhr_landcover.finalize_vhr_landcover(layout), "stats": stats}


def test_chunked_classes_equal_whole_image_inference(scene: dict[str, Any], finished: dict[str, Any]) -> None:
    import xarray as xr

    from eowatch.models.registry import get
    from eowatch.models.vhr_change import dn_to_float
    from eowatch.models.vhr_landcover import predict_vhr_landcover

    ds = xr.open_zarr(str(finished["path"]))
    assert ds.attrs["eowatch_status"] == "complete" and ds.land_cover.dtype == np.uint8
    assert [str(t)[:10] for t in ds.time.values] == [str(d) for d in scene["days"]]
    rgb = dn_to_float(scene["images"][:, :3])
    probs = predict_vhr_landcover(get(MODEL), rgb)  # the whole crop, one image per date
    whole = probs.argmax(axis=1)
    top2 = np.sort(probs, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3  # pixels whose class a 1e-4 wobble cannot flip
    cover = ds.land_cover.values
    gap = np.zeros(SHAPE, bool)
    gap[GAP] = True
    assert (cover[1][gap] == vhr_landcover.NODATA).all() and (cover[0] != vhr_landcover.NODATA).all()
    assert (cover[1][~gap] != vhr_landcover.NODATA).all()
    valid = np.stack([np.ones(SHAPE, bool), ~gap]) & clear
    assert (cover[valid] == whole[valid]).all()
    assert sum(s["building_px"] for s in finished["stats"]) == int((cover == 1).sum())


def test_resume_skips_finished_chunks_bit_identically(
    scene: dict[str, Any], finished: dict[str, Any], tmp_path: Path
) -> None:
    layout = write_vhr_cube(tmp_path / "out", scene)
    first = run_stage(layout, scene, [(0, 0), (1, 2)])  # then the "process dies"
    assert len(first) == 2 and len(layout.ledger(vhr_landcover.STORE).done()) == 2
    rest = run_stage(layout, scene)
    assert {s["key"] for s in rest}.isdisjoint({s["key"] for s in first}) and len(rest) == 12 - 2
    assert run_stage(layout, scene) == []
    path = vhr_landcover.finalize_vhr_landcover(layout)
    assert digest(Path(str(path))) == digest(Path(str(finished["path"])))


def test_statistics_and_evaluation_against_the_archive_labels(
    scene: dict[str, Any], finished: dict[str, Any]
) -> None:
    from eowatch.archive.vhr import render_vhr_labels
    from eowatch.archive.world import build_world
    from eowatch.models.confusion import class_scores, confusion_matrix

    cover = open_group(finished["path"])["land_cover"][:]
    stats = vhr_landcover.vhr_landcover_statistics(finished["path"], scene["grid"])
    assert stats["model"] == MODEL and stats["vhr_area_ha"] == pytest.approx(SHAPE[0] * SHAPE[1] / 1e4)
    assert stats["dates"][1]["observed_m2"] == SHAPE[0] * SHAPE[1] - 50 * 70  # the gap
    for t, date in enumerate(stats["dates"]):
        assert date["area_ha"]["building"] == pytest.approx(float((cover[t] == 1).sum()) / 1e4, abs=1e-4)
    summary = vhr_landcover.evaluate_vhr_landcover(
        finished["path"], scene["grid"], str(scene["archive"] / "truth")
    )
    world = build_world(_config())
    truth = np.stack([render_vhr_labels(world, k)[: SHAPE[0], scene["cols"]] for k in range(2)])
    cm = confusion_matrix(cover, truth, 5)
    expected = class_scores(cm, {0: "background", 1: "building", 2: "woodland", 3: "water", 4: "road"})
    assert summary["miou"] == pytest.approx(expected["miou"], abs=1e-4)
    assert summary["n_px"] == 2 * SHAPE[0] * SHAPE[1] - 50 * 70  # no data is not scored
    assert [d["date"] for d in summary["dates"]] == [str(d) for d in scene["days"]]
    assert summary["per_class"]["building"]["n_truth"] > 1000  # the town corner: roofs are scored
    assert summary["per_class"]["building"]["iou"] > 0.3


def test_the_card_is_checked_and_a_wrong_archive_is_refused(
    scene: dict[str, Any], finished: dict[str, Any], tmp_path: Path
) -> None:
    from eowatch.models.registry import get

    card = get(MODEL).card
    vhr_landcover.check_vhr_landcover_cube(card, vhr.VHR_BANDS, 1.0)
    with pytest.raises(ModelError, match=r"trained at 1 m but the cube is at 0\.5 m"):
        vhr_landcover.check_vhr_landcover_cube(card, vhr.VHR_BANDS, 0.5)
    with pytest.raises(ModelError, match="not a VHR land-cover model"):
        vhr_landcover.check_vhr_landcover_cube(get("siamese-vhr-change").card, vhr.VHR_BANDS, 1.0)
    with pytest.raises(InputError, match="not an eowatch archive"):
        vhr_landcover.evaluate_vhr_landcover(finished["path"], scene["grid"], str(tmp_path / "t"))
