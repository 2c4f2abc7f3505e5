"""The VHR change stage on a small synthetic VHR cube built in memory: chunked == whole-image inference,
resume after a crash, the card checked against the cube, parameters refused, runs without a VHR pair.

The cube is 410 x 330 px at 1 m (not a multiple of the 16 px pooling cell or of the 128 px padding) in
128 px chunks (4 x 3 chunks, the last row and column partial), three dates: a textured field, a bright
"building" that appears on the second date and a patch the third date did not acquire.
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
from eowatch.pipelines import vhr, vhr_change
from eowatch.pipelines.grid import GridSpec
from eowatch.pipelines.ledger import RunLayout
from eowatch.pipelines.zarr_store import open_group, write_region

SHAPE = (330, 410)
CHUNK = 128
DAYS = np.array(["2026-04-04", "2026-05-15", "2026-06-27"], dtype="datetime64[D]")
MODEL = "siamese-vhr-change"
#: docs/models.md, "Tiled inference": tiled equals one-window inference within 5e-6, asserted at 1e-4.
TOLERANCE = 1e-4


def synthetic_images(seed: int = 0) -> np.ndarray:
    """``(T, 4, H, W)`` uint8 red, green, blue, nir: a textured green field, a grey roof from date 1, a
    gap on date 2 (all bands 0: not acquired)."""
    rng = np.random.default_rng(seed)
    h, w = SHAPE
    base = rng.normal(0, 1, (4, h // 10 + 2, w // 10 + 2))
    field = (
        np.array([85.0, 105.0, 60.0, 150.0])[:, None, None] + 12 * np.kron(base, np.ones((10, 10)))[:, :h, :w]
    )
    images = []
    for t in range(len(DAYS)):
        img = field + rng.normal(0, 4, (4, h, w))
        if t >= 1:  # a grey roof on the green field
            img[:, 140:190, 200:260] = np.array([200.0, 200.0, 200.0, 90.0])[:, None, None]
        images.append(np.clip(img, 1, 255).astype(np.uint8))
    out = np.stack(images)
    out[2, :, 20:70, 330:400] = 0
    return out


def grid() -> GridSpec:
    h, w = SHAPE
    return GridSpec("EPSG:32631", 1.0, (600000.0, 5640000.0, 600000.0 + w, 5640000.0 + h), chunk=CHUNK)


def write_vhr_cube(out: Path, images: np.ndarray) -> RunLayout:
    """A finished ``vhr.zarr`` under ``out`` (the VHR stage's layout and chunking)."""
    layout = RunLayout(out, "t0ken")
    g = grid()
    vhr.init_vhr(layout, g, DAYS, {"eowatch_run_token": "t0ken"})
    for key in g.chunks():
        ys, xs = g.chunk_slices(key)
        arrays = {b: np.ascontiguousarray(images[:, i, ys, xs]) for i, b in enumerate(vhr.VHR_BANDS)}
        write_region(layout.staging("vhr"), g, ys, xs, arrays)
    vhr.finalize_vhr(layout)
    return layout


def inputs_for(layout: RunLayout, store: Any) -> vhr_change.VhrChangeInputs:
    from eowatch.models.registry import get

    return vhr_change.VhrChangeInputs(
        grid=grid().to_dict(),
        pairs=vhr_change.consecutive_pairs(len(DAYS)),
        model=MODEL,
        vhr_path=str(layout.vhr),
        store_path=str(store),
        ledger_path=str(layout.ledger(vhr_change.STORE).root),
        threshold=get(MODEL).card.decision_threshold,
    )


def run_stage(layout: RunLayout, keys: list[tuple[int, int]] | None = None) -> list[dict[str, Any]]:
    """Init the staging store and run the batch task over ``keys`` (default: every chunk)."""
    pairs = vhr_change.consecutive_pairs(len(DAYS))
    store = vhr_change.init_vhr_change(layout, grid(), DAYS, pairs, MODEL, {"eowatch_run_token": "t0ken"})
    todo = keys if keys is not None else [(k.row, k.col) for k in grid().chunks()]
    return vhr_change.vhr_change_batch(todo, inputs_for(layout, store))


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every chunk of the synthetic cube through the stage, published as ``vhr_change.zarr``."""
    images = synthetic_images()
    layout = write_vhr_cube(tmp_path_factory.mktemp("vhr") / "out", images)
    stats = run_stage(layout)
    path = vhr_change.finalize_vhr_change(layout)
    return {"images": images, "layout": layout, "path": path, "stats": stats}


def test_chunk_window_stays_on_the_pooling_grid_and_covers_the_chunk() -> None:
    from eowatch.models.registry import get
    from eowatch.models.vhr_change import chunk_tiling

    tiling = chunk_tiling(get(MODEL).card)
    assert (tiling.halo, tiling.cell, tiling.align) == (128, 16, 128)
    for size in (100, 330, 410, 1530, 2100):
        for start in range(0, size, 96):
            stop = min(start + 96, size)
            window = vhr_change.chunk_window((size, size), slice(start, stop), slice(0, size), tiling)
            rows, (pad, _), (region, _), (crop, _) = window.rows, window.pad, window.region, window.crop
            padded = -(-size // 128) * 128
            assert rows.start % 16 == 0 and (rows.stop + pad) % 16 == 0 and rows.stop + pad <= padded
            assert rows.stop == min(rows.stop + pad, size)
            assert region.start % 16 == 0 and region.stop % 16 == 0
            assert rows.start + region.start + crop.start == start
            assert crop.stop - crop.start == stop - start
            assert region.start >= min(128, rows.start + region.start)  # full halo unless at the edge


def test_chunked_output_equals_whole_image_inference(finished: dict[str, Any]) -> None:
    """Each chunk, read with its halo, equals ``predict_vhr_change`` over the whole VHR image."""
    import xarray as xr

    from eowatch.models.registry import get
    from eowatch.models.vhr_change import dn_to_float, predict_vhr_change

    model, images = get(MODEL), finished["images"]
    ds = xr.open_zarr(str(finished["path"]))
    assert ds.attrs["eowatch_status"] == "complete"
    assert [str(t)[:10] for t in ds.time.values] == ["2026-05-15", "2026-06-27"]  # the later dates
    assert [str(t)[:10] for t in ds.date_before.values] == ["2026-04-04", "2026-05-15"]
    assert ds.change_probability.dtype == np.float32 and ds.change_mask.dtype == np.uint8
    rgb = dn_to_float(images[:, :3])
    threshold = model.card.decision_threshold
    for k, (i, j) in enumerate(vhr_change.consecutive_pairs(len(DAYS))):
        whole = predict_vhr_change(model, rgb[i], rgb[j])[1]
        chunked = ds.change_probability.values[k]
        missing = np.isnan(rgb[i, 0]) | np.isnan(rgb[j, 0])
        assert (np.isnan(chunked) == missing).all()
        assert np.abs(chunked - whole)[~missing].max() < TOLERANCE
        mask = ds.change_mask.values[k].astype(bool)
        assert (mask == ((np.nan_to_num(chunked) >= threshold) & ~missing)).all()
    # the building appears between dates 0 and 1, and stays: change in the first pair only
    building = (slice(150, 180), slice(210, 250))
    assert ds.change_mask.values[0][building].mean() > 0.9
    assert ds.change_mask.values[1][building].mean() < 0.1
    assert sum(s["changed_px"] for s in finished["stats"]) == int(ds.change_mask.values.sum())


def test_resume_skips_finished_chunks_bit_identically(finished: dict[str, Any], tmp_path: Path) -> None:
    """A run killed after two chunks resumes from its ledger: only the others are computed, and the
    published store is byte-identical to the uninterrupted run's."""
    layout = write_vhr_cube(tmp_path / "out", finished["images"])
    first = run_stage(layout, [(0, 0), (1, 2)])  # then the "process dies"
    assert len(first) == 2 and len(layout.ledger(vhr_change.STORE).done()) == 2
    rest = run_stage(layout)
    assert {s["key"] for s in rest}.isdisjoint({s["key"] for s in first})
    assert len(rest) == 12 - 2
    assert run_stage(layout) == []  # everything recorded: nothing computed again
    path = vhr_change.finalize_vhr_change(layout)
    assert digest(Path(str(path))) == digest(Path(str(finished["path"])))


def test_statistics_report_changed_area_per_pair(finished: dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    stats = vhr_change.vhr_change_statistics(finished["path"], grid())
    mask = open_group(finished["path"])["change_mask"][:]
    assert stats["model"] == MODEL and stats["vhr_area_m2"] == SHAPE[0] * SHAPE[1]
    assert [(p["date_before"], p["date_after"]) for p in stats["pairs"]] == [
        ("2026-04-04", "2026-05-15"),
        ("2026-05-15", "2026-06-27"),
    ]
    for k, pair in enumerate(stats["pairs"]):
        assert pair["changed_m2"] == float(mask[k].sum())  # 1 m pixels
        assert pair["changed_ha"] == pytest.approx(pair["changed_m2"] / 1e4, abs=1e-4)
    assert stats["pairs"][1]["observed_m2"] == SHAPE[0] * SHAPE[1] - 50 * 70  # the gap on date 2
    png = vhr_change.render_vhr_quicklook(finished["layout"].vhr, finished["path"], tmp_path / "q.png")
    assert Image.open(str(png)).size == (2 * SHAPE[1] + 8, SHAPE[0])


def test_the_card_is_checked_against_the_vhr_cube() -> None:
    from eowatch.models.registry import get

    card = get(MODEL).card
    vhr_change.check_vhr_cube(card, vhr.VHR_BANDS, 1.0)
    with pytest.raises(ModelError, match=r"trained at 1 m but the cube is at 0\.5 m"):
        vhr_change.check_vhr_cube(card, vhr.VHR_BANDS, 0.5)
    with pytest.raises(ModelError, match="needs bands blue that the cube lacks"):
        vhr_change.check_vhr_cube(card, ("red", "green", "nir"), 1.0)
    with pytest.raises(ModelError, match="not a VHR change model"):
        vhr_change.check_vhr_cube(get("siamese-s2s1-change").card, vhr.VHR_BANDS, 1.0)


def _params(**extra: Any) -> Any:
    from eowatch.pipelines.params import parse_params

    base = {
        "stac_url": "http://127.0.0.1:9/",
        "bbox": "4.42,50.90,4.45,50.92",
        "start": dt.date(2026, 4, 1),
        "end": dt.date(2026, 6, 30),
        "out": "unused-out",
        "vhr_collection": "vhr-rgbn",
    }
    return parse_params(**{**base, **extra})


def test_parameters_refuse_a_model_that_is_not_a_vhr_change_model() -> None:
    assert _params(vhr_change_model=MODEL).vhr_change_model == MODEL
    assert _params().to_config().vhr_change_model is None  # the stage is off by default
    with pytest.raises(ModelError) as err:
        _params(vhr_change_model="siamese-s2s1-change")
    assert str(err.value) == (
        "model 'siamese-s2s1-change' is a change-detection model, not a VHR change model; "
        "VHR change models: siamese-vhr-change"
    )
    with pytest.raises(ModelError, match="unknown model 'resnet-9000'"):
        _params(vhr_change_model="resnet-9000")
    with pytest.raises(InputError, match="needs a VHR collection"):
        _params(vhr_change_model=MODEL, vhr_collection=None)


def _vhr_item(day: str) -> dict[str, Any]:
    return {
        "id": f"vhr-{day}",
        "collection": "vhr-rgbn",
        "bbox": [4.425, 50.905, 4.435, 50.912],
        "properties": {"datetime": f"{day}T10:30:00Z"},
        "assets": {"image": {"href": "http://127.0.0.1:9/x.tif", "proj:transform": [1, 0, 0, 0, -1, 0]}},
    }


@pytest.mark.parametrize(
    ("items", "reason"),
    [([], "no vhr-rgbn acquisition over the grid"), ([_vhr_item("2026-05-02")], "only one vhr-rgbn")],
)
def test_a_run_without_a_vhr_pair_skips_the_stage_with_a_warning(
    tmp_path: Path, items: list[dict[str, Any]], reason: str
) -> None:
    """No VHR acquisition (or one date) is not an error (a scheduled window may have none): the stage is
    skipped with a warning and the summary says why."""
    from eowatch.pipelines import model_stages, stages
    from eowatch.pipelines.ledger import write_atomic

    run = stages.prepare_run(_params(vhr_change_model=MODEL, out=str(tmp_path / "out")).to_config())
    write_atomic(run.layout.items, json.dumps(items))
    warnings: list[str] = []
    assert model_stages.vhr_change_stage_run(run, None, lambda _m: None, warnings.append) is None
    assert len(warnings) == 1 and warnings[0].startswith(f"VHR change ({MODEL}) skipped: {reason}")
    found = model_stages._vhr_change_summary(run)
    assert found is not None and found["model"] == MODEL and found["skipped"].startswith(reason)
    assert not (run.layout.out / "vhr_change.zarr").exists()


def test_summary_lines_report_area_and_scores(capsys: pytest.CaptureFixture) -> None:
    """The artifact's markdown and the command line print the changed area per pair and the scores."""
    from eowatch.pipelines.artifact_sections import vhr_change_lines
    from eowatch.report import print_vhr_change

    pair = {"date_before": "2026-04-04", "date_after": "2026-05-16", "changed_m2": 18698.0}
    found = {
        "model": MODEL,
        "threshold": 0.75,
        "vhr_area_ha": 254.4,
        "changed_any_ha": 1.8698,
        "pairs": [{**pair, "changed_ha": 1.8698}],
        "evaluation": {"scope": "VHR pixels", "n_px": 10, "precision": 0.9, "recall": 0.5, "f1": 0.6429},
    }
    lines = "\n".join(vhr_change_lines({"vhr_change": found, "output": {"vhr_change_map": "file:///x"}}))
    assert "| 2026-04-04 | 2026-05-16 | 18698 | 1.8698 |" in lines and "F1 **0.643**" in lines
    print_vhr_change(found)
    printed = capsys.readouterr().out
    assert "1.87 ha changed in any pair of 254.40 ha" in printed and "F1 0.643" in printed
    skipped = {"model": MODEL, "skipped": "no vhr-rgbn acquisition over the grid"}
    assert vhr_change_lines({"vhr_change": skipped, "output": {}})[-1].endswith("over the grid.")
    print_vhr_change(skipped)
    assert "skipped, no vhr-rgbn acquisition" in capsys.readouterr().out
