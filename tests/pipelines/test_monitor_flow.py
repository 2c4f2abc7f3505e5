"""The monitoring flow end to end: real STAC API, asset server, Prefect server and Dask cluster.

A small archive (2.56 km, three months) is generated once per session; chunks of 128 px make four
chunks, so region writes, the ledger and halo inference across chunk seams are all exercised.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from eowatch.infra.cluster import ClusterConfig
from eowatch.pipelines.params import MonitorParams

pytestmark = [pytest.mark.services, pytest.mark.slow]

CLUSTER = ClusterConfig(n_workers=2, threads_per_worker=1, memory_limit="3GiB")
VHR_LANDCOVER = "landcover-vhr-unet"


def _vhr_landcover_shipped() -> bool:
    from eowatch.models.registry import card_file_of

    return card_file_of(VHR_LANDCOVER).is_file()


def _params(served: Any, archive: Path, out: Path, **extra: Any) -> MonitorParams:
    from eowatch.demo import archive_run_params

    base = archive_run_params(served, out, archive)
    return MonitorParams(
        **{
            **base.model_dump(),
            "chunk": 128,
            "crop_model": "crop-type-ltae",
            "vhr_change_model": "siamese-vhr-change",
            "landcover_model": "landcover-s2-unet",
            "semantic_change_model": "siamese-s2s1-semantic",
            # the VHR land-cover stage runs once its weights are shipped (its test skips until then)
            "vhr_landcover_model": VHR_LANDCOVER if _vhr_landcover_shipped() else None,
            **extra,
        }
    )


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(
    served_small_archive: Any, small_archive: Path, prefect_server: Any, tmp_path_factory
) -> dict:
    from flows import monitor

    out = tmp_path_factory.mktemp("run") / "out"
    params = _params(served_small_archive, small_archive, out)
    summary = monitor(params, CLUSTER)
    return {"out": out, "summary": summary}


def test_change_cube_opens_with_xarray_and_rioxarray(finished_run: dict) -> None:
    out: Path = finished_run["out"]
    change = xr.open_zarr(out / "change.zarr")
    assert str(change.rio.crs) == "EPSG:32631"
    assert change.rio.resolution() == (10.0, -10.0)
    assert change.change_probability.dims == ("time", "y", "x")
    assert change.sizes["time"] == 2  # three monthly periods → two transitions
    assert change.change_probability.dtype == np.float32
    p = change.change_probability.values
    assert np.isfinite(p).mean() > 0.9 and np.nanmin(p) >= 0 and np.nanmax(p) <= 1
    assert set(np.unique(change.change_mask.values)) <= {0, 1}
    attrs = change.attrs
    assert attrs["eowatch_status"] == "complete"
    items = json.loads(attrs["stac_items"])
    assert items["sentinel-2-l2a"] and items["sentinel-1-grd"]
    model = json.loads(attrs["model"])
    assert model["name"] == "siamese-s2s1-change" and model["version"] and len(model["sha256"]) == 64
    assert "parameters" in attrs and "eowatch_version" in attrs
    cube = xr.open_zarr(out / "cube.zarr")
    assert set(cube.data_vars) >= {"blue", "red", "nir", "swir16", "vv_db", "vh_db", "clear_count"}
    assert not (out / ".eowatch" / finished_run["summary"]["run_token"]).exists()


def test_vhr_cube_is_on_a_grid_nested_in_the_analysis_grid(finished_run: dict) -> None:
    out: Path = finished_run["out"]
    vhr = xr.open_zarr(out / "vhr.zarr")
    cube = xr.open_zarr(out / "cube.zarr")
    res = abs(float(vhr.x[1] - vhr.x[0]))
    assert res == 1.0 and str(vhr.rio.crs) == "EPSG:32631"
    factor = round(10.0 / res)
    left, top = float(vhr.x[0]) - res / 2, float(vhr.y[0]) + res / 2
    cube_left, cube_top = float(cube.x[0]) - 5.0, float(cube.y[0]) + 5.0
    assert (left - cube_left) % 10.0 == 0 and (cube_top - top) % 10.0 == 0
    assert vhr.sizes["x"] % factor == 0 and vhr.sizes["y"] % factor == 0
    assert vhr.sizes["time"] >= 2 and vhr.red.dtype == np.uint8
    assert int(vhr.red.isel(time=0).max()) > 0


def _best_shift(a: np.ndarray, b: np.ndarray, radius: int = 3) -> tuple[int, int]:
    """The (dy, dx) shift of boolean mask ``b`` that best overlaps ``a`` (intersection over union)."""
    scores = {}
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = np.roll(b, (dy, dx), axis=(0, 1))[radius:-radius, radius:-radius]
            core = a[radius:-radius, radius:-radius]
            scores[(dy, dx)] = (core & shifted).sum() / max((core | shifted).sum(), 1)
    return max(scores, key=scores.get)


def test_s1_and_s2_are_aligned_on_the_target_grid(finished_run: dict, small_archive: Path) -> None:
    """Water seen by SAR (dark VV) and by optical (dark NIR) sits exactly on the planted water pixels."""
    import rasterio

    cube = xr.open_zarr(finished_run["out"] / "cube.zarr")
    with rasterio.open(small_archive / "truth" / "landcover_start.tif") as src:
        water = src.read(1) == 1
        assert src.transform.c == float(cube.x[0]) - 5 and src.transform.f == float(cube.y[0]) + 5
    assert water.sum() > 100
    sar_water = cube.vv_db.isel(time=0).values < -18
    optical_water = cube.nir.isel(time=0).values < 0.05
    assert _best_shift(water, sar_water) == (0, 0)
    assert _best_shift(water, optical_water) == (0, 0)


def test_summary_reports_changes_scores_and_timings(finished_run: dict) -> None:
    out: Path = finished_run["out"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(finished_run["summary"]))
    assert summary["area_km2"] == pytest.approx(2.56 * 2.56, rel=1e-6)
    assert set(summary["changes_found"]["by_type_km2"]) == {
        "new_building",
        "forest_clearing",
        "flooding",
        "crop_rotation",
    }
    ev = summary["evaluation"]
    for method in ("model", "cva_baseline"):
        scores = ev[method]["per_pixel"]
        assert 0 <= scores["f1"] <= 1 and scores["tp"] + scores["fn"] > 0
    assert set(summary["timings_s"]) >= {"search", "cube", "inference", "publish", "total"}
    # Worker seconds per phase: every chunked stage read, computed and wrote something.
    by_stage = summary["worker_seconds"]["by_stage"]
    assert list(by_stage["cube"]) == ["read", "composite", "write"]
    assert list(by_stage["change"]) == ["read", "infer", "write"]
    assert all(v > 0 for stage in by_stage.values() for v in stage.values())
    by_phase = summary["worker_seconds"]["by_phase"]
    assert by_phase["read"] == pytest.approx(sum(s.get("read", 0) for s in by_stage.values()), abs=0.01)
    assert (out / "quicklook.png").stat().st_size > 1000


def test_crop_type_map_of_the_season(finished_run: dict) -> None:
    """The crop-type stage maps the season chunk by chunk; the map opens with its CRS and scores well
    against the planted land cover of an archive the model was not trained on (seed 7)."""
    out: Path = finished_run["out"]
    crops = xr.open_zarr(out / "crop_type.zarr")
    assert str(crops.rio.crs) == "EPSG:32631" and crops.sizes["time"] == 1
    assert crops.attrs["eowatch_status"] == "complete"
    codes = np.unique(crops.crop_type.values)
    assert set(codes.tolist()) <= {0, 1, 2, 3, 4, 255}
    legend = json.loads(crops.crop_type.attrs["legend"])  # code -> class name
    probs = np.stack([crops[f"p_{legend[str(c)]}"].values[0] for c in range(len(legend))])
    mapped = crops.crop_type.values[0] != 255
    assert np.allclose(probs[:, mapped].sum(axis=0), 1.0, atol=1e-4)
    assert (probs.argmax(axis=0)[mapped] == crops.crop_type.values[0][mapped]).all()
    found = finished_run["summary"]["crop_types"]
    assert found["model"] == "crop-type-ltae"
    assert sum(found["by_class_km2"].values()) == pytest.approx(found["mapped_km2"], abs=1e-3)
    assert found["evaluation"]["oa"] > 0.9 and found["evaluation"]["n_px"] > 10_000
    assert "crop_type" in finished_run["summary"]["worker_seconds"]["by_stage"]


def test_vhr_change_map_of_consecutive_dates(finished_run: dict) -> None:
    """The VHR change stage writes one map per pair of consecutive VHR dates on the VHR grid, scores it
    against the planted change, and publishes it as its own STAC collection and item."""
    import pystac

    out: Path = finished_run["out"]
    change, vhr = xr.open_zarr(out / "vhr_change.zarr"), xr.open_zarr(out / "vhr.zarr")
    assert change.attrs["eowatch_status"] == "complete" and str(change.rio.crs) == "EPSG:32631"
    assert (change.x.values == vhr.x.values).all() and (change.y.values == vhr.y.values).all()
    assert (change.time.values == vhr.time.values[1:]).all()
    assert (change.date_before.values == vhr.time.values[:-1]).all()
    p, mask = change.change_probability.values, change.change_mask.values
    observed = np.isfinite(p)  # NaN: the VHR grid's margin around the acquisitions' footprint
    assert p.dtype == np.float32 and observed.mean() > 0.9
    assert np.nanmin(p) >= 0 and np.nanmax(p) <= 1 and not mask[~observed].any()
    found = finished_run["summary"]["vhr_change"]
    assert found["model"] == "siamese-vhr-change" and len(found["pairs"]) == change.sizes["time"]
    assert [pair["changed_m2"] for pair in found["pairs"]] == [float(m.sum()) for m in mask]  # 1 m px
    ev = found["evaluation"]
    assert {"f1", "precision", "recall"} <= set(ev) and 0 <= ev["f1"] <= 1
    assert ev["n_px"] == observed.sum() and ev["n_changed_truth"] > 0
    assert "vhr_change" in finished_run["summary"]["worker_seconds"]["by_stage"]
    assert (out / "vhr_change_quicklook.png").stat().st_size > 1000
    catalog = pystac.Catalog.from_file(str(out / "stac" / "catalog.json"))
    collection = catalog.get_child("eowatch-out-vhr_change")
    assert collection is not None
    (item,) = list(collection.get_items())
    href = Path(item.assets["zarr"].get_absolute_href() or "")
    assert href.resolve() == (out / "vhr_change.zarr").resolve()
    dims = item.properties["cube:dimensions"]
    assert dims["time"]["values"] == [str(t)[:10] for t in change.time.values]


def _stac_item(out: Path, product: str) -> Any:
    """The one STAC item of a run's product collection (``eowatch-out-<product>``)."""
    import pystac

    catalog = pystac.Catalog.from_file(str(out / "stac" / "catalog.json"))
    collection = catalog.get_child(f"eowatch-out-{product}")
    assert collection is not None, product
    (item,) = list(collection.get_items())
    return item


def test_land_cover_map_of_each_period(finished_run: dict, capsys: pytest.CaptureFixture) -> None:
    """The land-cover stage maps every period of the analysis cube on its grid, reports the area per
    class per period, scores the maps against the planted land cover, publishes its own STAC item, and
    the end-of-run report (the CLI's and the demo's) prints it."""
    from eowatch.cli import print_summary

    out: Path = finished_run["out"]
    cover, cube = xr.open_zarr(out / "landcover.zarr"), xr.open_zarr(out / "cube.zarr")
    assert cover.attrs["eowatch_status"] == "complete" and str(cover.rio.crs) == "EPSG:32631"
    assert (cover.x.values == cube.x.values).all() and (cover.y.values == cube.y.values).all()
    assert (cover.time.values == cube.time.values).all()
    codes = cover.landcover.values
    legend = {int(k): v for k, v in json.loads(cover.landcover.attrs["legend"]).items()}
    assert codes.dtype == np.uint8 and set(np.unique(codes).tolist()) <= {*legend, 255}
    found = finished_run["summary"]["landcover"]
    assert found["model"] == "landcover-s2-unet" and len(found["periods"]) == cover.sizes["time"]
    for period, block in zip(found["periods"], codes, strict=True):
        assert period["by_class_km2"] == {
            name: pytest.approx(float((block == c).sum()) * 100 / 1e6, abs=1e-4) for c, name in legend.items()
        }
        assert period["mapped_km2"] > 0.5 * finished_run["summary"]["area_km2"]
    ev = found["evaluation"]
    assert 0 < ev["oa"] <= 1 and -1 <= ev["kappa"] <= 1 and ev["n_px"] > 10_000
    assert finished_run["summary"]["output"]["landcover_map"] == (out / "landcover.zarr").as_uri()
    assert "landcover" in finished_run["summary"]["worker_seconds"]["by_stage"]
    assert (out / "landcover_quicklook.png").stat().st_size > 1000
    item = _stac_item(out, "landcover")
    assert Path(item.assets["zarr"].get_absolute_href() or "").resolve() == (out / "landcover.zarr").resolve()
    assert item.properties["cube:variables"]["landcover"]["data_type"] == "uint8"
    print_summary(finished_run["summary"])
    printed = capsys.readouterr().out
    assert "Land cover (landcover-s2-unet), 2026-06:" in printed
    assert f"against planted land cover: OA {ev['oa']:.3f}" in printed


def test_semantic_change_map_of_each_transition(finished_run: dict, capsys: pytest.CaptureFixture) -> None:
    """The semantic change stage maps every transition of the analysis cube on its grid (p(change) and the
    from/to land cover), reports the changed area per transition and (from -> to) pair, scores the maps
    against the planted truth, publishes its STAC item and quicklook, and the end-of-run report prints it."""
    from eowatch.cli import print_summary

    out: Path = finished_run["out"]
    sem, cube = xr.open_zarr(out / "semantic_change.zarr"), xr.open_zarr(out / "cube.zarr")
    assert sem.attrs["eowatch_status"] == "complete" and str(sem.rio.crs) == "EPSG:32631"
    assert (sem.x.values == cube.x.values).all() and (sem.y.values == cube.y.values).all()
    assert (sem.time.values == cube.time.values[1:]).all()
    assert (sem.period_before.values == cube.time.values[:-1]).all()
    f, t = sem.from_class.values, sem.to_class.values
    assert f.dtype == t.dtype == np.uint8 and set(np.unique(f).tolist()) <= set(range(9)) | {255}
    changed = (f > 0) & (f < 255)
    assert ((t > 0) & (t < 255) == changed).all() and (
        f[changed] != t[changed]
    ).all()  # a change changes the class
    found = finished_run["summary"]["semantic_change"]
    assert found["model"] == "siamese-s2s1-semantic" and len(found["transitions"]) == sem.sizes["time"]
    for i, tr in enumerate(found["transitions"]):
        assert tr["changed_km2"] == pytest.approx(changed[i].sum() * 100 / 1e6, abs=1e-6)
    ev = found["evaluation"]
    assert -1 <= ev["sek"] <= 1 and 0 <= ev["miou"] <= 1 and 0 < ev["binary_f1"] <= 1
    assert finished_run["summary"]["output"]["semantic_change_map"] == (out / "semantic_change.zarr").as_uri()
    assert "semantic_change" in finished_run["summary"]["worker_seconds"]["by_stage"]
    assert (out / "semantic_change_quicklook.png").stat().st_size > 1000
    item = _stac_item(out, "semantic_change")
    assert item.properties["cube:variables"]["from_class"]["data_type"] == "uint8"
    print_summary(finished_run["summary"])
    printed = capsys.readouterr().out
    assert "Semantic change (siamese-s2s1-semantic):" in printed
    assert f"against planted change: SeK {ev['sek']:.3f}" in printed


@pytest.mark.skipif(not _vhr_landcover_shipped(), reason=f"{VHR_LANDCOVER} weights are not shipped yet")
def test_vhr_land_cover_map_of_each_date(finished_run: dict, capsys: pytest.CaptureFixture) -> None:
    """The VHR land-cover stage classifies every VHR date on the VHR grid, reports the area per class per
    date, scores it against the archive's labels, publishes its own STAC item and is printed."""
    from eowatch.cli import print_summary

    out: Path = finished_run["out"]
    cover, vhr = xr.open_zarr(out / "vhr_landcover.zarr"), xr.open_zarr(out / "vhr.zarr")
    assert cover.attrs["eowatch_status"] == "complete"
    assert (cover.x.values == vhr.x.values).all() and (cover.time.values == vhr.time.values).all()
    codes = cover.land_cover.values
    assert codes.dtype == np.uint8 and set(np.unique(codes).tolist()) <= {0, 1, 2, 3, 4, 255}
    found = finished_run["summary"]["vhr_landcover"]
    assert found["model"] == VHR_LANDCOVER and len(found["dates"]) == cover.sizes["time"]
    assert [sum(d["area_ha"].values()) * 1e4 for d in found["dates"]] == [
        pytest.approx(float((c != 255).sum()), abs=1) for c in codes
    ]
    assert 0 < found["evaluation"]["oa"] <= 1
    assert "vhr_landcover" in finished_run["summary"]["worker_seconds"]["by_stage"]
    assert _stac_item(out, "vhr_landcover").properties["cube:variables"]["land_cover"]["data_type"] == "uint8"
    print_summary(finished_run["summary"])
    assert f"VHR land cover ({VHR_LANDCOVER}), {found['dates'][-1]['date']}:" in capsys.readouterr().out


def test_flow_run_and_artifact_are_on_the_prefect_server(finished_run: dict, prefect_server: Any) -> None:
    from prefect.client.orchestration import get_client

    async def query() -> tuple[list, list]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            artifacts = await client.read_artifacts()
            return runs, artifacts

    runs, artifacts = asyncio.run(query())
    assert any(r.state and r.state.is_completed() for r in runs)
    assert any(a.key == "monitor-summary" and "Area processed" in (a.data or "") for a in artifacts)
    assert any(a.key == "monitor-summary" and "Land cover per period" in (a.data or "") for a in artifacts)


def test_rerun_is_a_noop_with_identical_bytes(
    finished_run: dict, served_small_archive: Any, small_archive: Path
) -> None:
    from flows import monitor

    out: Path = finished_run["out"]
    before = tree_digest(out)
    summary = monitor(_params(served_small_archive, small_archive, out), CLUSTER)
    assert summary["run_token"] == finished_run["summary"]["run_token"]
    assert tree_digest(out) == before


def test_resume_after_a_crash_gives_identical_bytes(
    finished_run: dict, served_small_archive: Any, small_archive: Path, tmp_path: Path
) -> None:
    """Stop a run after half of its inference chunks, resume it, compare with the uninterrupted run.

    The run is given the uninterrupted run's finished cubes (same token: it takes them as its own), so
    the crash and the resume are the change stage's, as in tests/storage/test_monitor_s3.py (this saves
    a cube build)."""
    from eowatch.pipelines import inference, stages
    from flows import monitor

    out = tmp_path / "out"
    params = _params(served_small_archive, small_archive, out)
    for name in ("cube.zarr", "vhr.zarr"):
        if (finished_run["out"] / name).exists():
            shutil.copytree(finished_run["out"] / name, out / name)
    run = stages.prepare_run(params.to_config())
    stages.search_stage(run)
    inputs = stages.prepare_change(run)
    inference.infer_batch([(0, 0), (1, 1)], inputs)  # then the "process dies"
    assert not (out / "change.zarr").exists()  # nothing looks finished
    assert len(run.layout.ledger("change").done()) == 2

    summary = monitor(params, CLUSTER)
    assert summary["status"] == "complete"
    ref = tree_digest(finished_run["out"] / "change.zarr")
    assert tree_digest(out / "change.zarr") == ref


def test_unreadable_asset_fails_cleanly(small_archive: Path, tmp_path: Path, prefect_server: Any) -> None:
    from eowatch.cli import main
    from eowatch.demo import served_archive

    broken = tmp_path / "broken"
    shutil.copytree(small_archive, broken)
    victim = sorted((broken / "assets" / "sentinel-2-l2a").rglob("red.tif"))[3]
    victim.write_bytes(victim.read_bytes()[:2000])  # truncated COG
    out = tmp_path / "out"
    with served_archive(broken) as served:
        m = served.manifest
        bbox = ",".join(str(v) for v in m["aoi_bbox_lonlat"])
        code = main(
            [
                "run",
                "--stac-url",
                served.stac_url,
                "--bbox",
                bbox,
                "--start",
                m["start"],
                "--end",
                m["end"],
                "--out",
                str(out),
                "--workers",
                "1",
            ]
        )
    assert code == 4
    assert not (out / "change.zarr").exists() and not (out / "cube.zarr").exists()


def test_evaluate_scores_a_finished_run(
    finished_run: dict, small_archive: Path, tmp_path: Path, capsys
) -> None:
    """``eowatch evaluate`` on the run's output: the same scores as the summary, SeK, and a picture."""
    from PIL import Image

    from eowatch.cli import main

    out, truth = finished_run["out"], small_archive / "truth"
    assert (
        main(["evaluate", "siamese-s2s1-change", str(out), "--truth", str(truth), "--out", str(tmp_path)])
        == 0
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    change, summary = metrics["change"], finished_run["summary"]["evaluation"]
    assert change["model"]["per_pixel"]["f1"] == pytest.approx(summary["model"]["per_pixel"]["f1"])
    sem = change["semantic"]
    assert 0 < sem["sek"] < 1 and 0 < sem["miou"] <= 1
    assert np.array(sem["confusion"]).sum() == 2 * 256 * 256  # every pixel of both transitions
    assert Image.open(tmp_path / "confusion.png").size[0] > 300
    printed = capsys.readouterr().out
    assert "semantic change: SeK" in printed and "confusion.png" in printed

    crop_out = tmp_path / "crops"
    assert main(["evaluate", "crop-type-ltae", str(out), "--truth", str(truth), "--out", str(crop_out)]) == 0
    crops = json.loads((crop_out / "metrics.json").read_text())["crop_type"]
    assert crops["oa"] == pytest.approx(finished_run["summary"]["crop_types"]["evaluation"]["oa"])
    assert crops["miou"] > 0.5

    cover_out = tmp_path / "landcover"
    args = ["evaluate", "landcover-s2-unet", str(out), "--truth", str(truth), "--out", str(cover_out)]
    assert main(args) == 0
    cover = json.loads((cover_out / "metrics.json").read_text())["land_cover"]
    assert cover["oa"] == pytest.approx(finished_run["summary"]["landcover"]["evaluation"]["oa"])
    assert (cover_out / "confusion.png").is_file() and "land cover: OA" in capsys.readouterr().out

    vhr_out = tmp_path / "vhr_change"
    args = ["evaluate", "siamese-vhr-change", str(out), "--truth", str(truth), "--out", str(vhr_out)]
    assert main(args) == 0
    vhr = json.loads((vhr_out / "metrics.json").read_text())["vhr_change"]
    assert vhr == finished_run["summary"]["vhr_change"]["evaluation"]
    assert (vhr_out / "confusion.png").is_file() and "VHR change: precision" in capsys.readouterr().out
    if _vhr_landcover_shipped():
        vhr_cover_out = tmp_path / "vhr_landcover"
        args = ["evaluate", VHR_LANDCOVER, str(out), "--truth", str(truth), "--out", str(vhr_cover_out)]
        assert main(args) == 0
        vhr_cover = json.loads((vhr_cover_out / "metrics.json").read_text())["vhr_land_cover"]
        assert vhr_cover == finished_run["summary"]["vhr_landcover"]["evaluation"]
        assert np.array(vhr_cover["confusion"]).sum() == vhr_cover["n_px"]
        assert "VHR land cover: OA" in capsys.readouterr().out

    sem_out = tmp_path / "semantic"
    args = ["evaluate", "siamese-s2s1-semantic", str(out), "--truth", str(truth), "--out", str(sem_out)]
    assert main(args) == 0
    scd = json.loads((sem_out / "metrics.json").read_text())["semantic_change"]
    assert -1 < scd["sek"] < 1 and 0 < scd["miou"] <= 1 and 0 <= scd["binary.f1"] <= 1
    assert (sem_out / "confusion.png").is_file()
    assert "semantic change: SeK" in capsys.readouterr().out


def test_evaluate_refuses_what_it_cannot_score(
    finished_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from eowatch.cli import main

    out = str(finished_run["out"])
    assert main(["evaluate", "siamese-s2s1-change", out]) == 2  # no --truth
    assert "give --truth DIR" in capsys.readouterr().err
    assert main(["evaluate", "siamese-s2s1-change", str(tmp_path)]) == 2
    assert "is neither a synthetic archive" in capsys.readouterr().err
    assert main(["evaluate", "resnet-9000", out, "--truth", str(tmp_path)]) == 7
    assert "unknown model 'resnet-9000'" in capsys.readouterr().err
