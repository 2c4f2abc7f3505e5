"""The benchmark harness on tiny inputs: ratios, memory sampling, the report files and the inference
comparison. Behaviour only; no wall-clock assertions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from benchmarks import run as bench_run
from benchmarks._harness import (
    MemorySampler,
    build_report,
    failed,
    merge_reports,
    ratio,
    render_markdown,
    write_report,
)
from benchmarks.bench_cube import agreement
from benchmarks.bench_inference import interior_mask, mask_agreement, run_comparison
from benchmarks.bench_memory import growth_ratios


def test_ratio_rounds_and_refuses_missing_or_zero():
    assert ratio(3.0, 1.5) == 2.0
    assert ratio(1, 3, digits=3) == 0.333
    assert ratio(1.0, 0) is None
    assert ratio(None, 1.0) is None


def test_memory_sampler_sees_this_process():
    with MemorySampler([os.getpid(), os.getpid()], interval_s=0.01) as mem:
        blob = np.ones(8 * 1024 * 1024, np.uint8)  # 8 MiB touched while sampling
    assert blob.sum() > 0
    assert mem.samples >= 2
    assert list(mem.peak_by_pid) == [os.getpid()]
    assert mem.peak_total == mem.peak_by_pid[os.getpid()] > 8 * 1024 * 1024


def test_growth_ratios_relative_to_smallest_region():
    rows = [
        {"size_km": 2.56, "worker_idle_MiB": 200, "worker_peak_MiB": 300},
        {"size_km": 5.12, "worker_idle_MiB": 200, "worker_peak_MiB": 330},
        {"size_km": 10.24, "worker_idle_MiB": 210, "worker_peak_MiB": 360},
    ]
    assert growth_ratios(rows) == {
        "worker peak RSS 4x/1x": 1.1,
        "worker RSS above idle 4x/1x": 1.3,
        "worker peak RSS 16x/1x": 1.2,
        "worker RSS above idle 16x/1x": 1.5,
    }


def test_agreement_of_composites():
    a = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
    b = np.array([[1.0, 5.0], [2.5, 3.0]], np.float32)
    assert agreement(a, b) == {"same_shape": 1.0, "both_finite": 0.75, "median_abs_diff": 0.0}
    assert agreement(a, b[:1])["same_shape"] == 0.0


def test_interior_mask_excludes_window_edges():
    mask = interior_mask((8, 8), window=4, margin=1)
    row = [False, True, True, False, False, True, True, False]
    assert mask[1].tolist() == row
    assert not mask[0].any() and not mask[3].any()


def test_report_files_round_trip(tmp_path):
    bench = {
        "name": "toy",
        "title": "Toy benchmark",
        "params": {"size": 2},
        "rows": [{"method": "a", "best_s": 1.0}, {"method": "b", "best_s": 2.0, "extra": [1, 2]}],
        "ratios": {"speed a / b": ratio(2.0, 1.0)},
        "checks": {"agree": True},
        "notes": ["a note"],
    }
    report = build_report([bench, failed("bad", "Broken benchmark", RuntimeError("boom\nmore"))], quick=True)
    json_path, md_path = write_report(report, tmp_path, stem="toy")
    assert json.loads(json_path.read_text())["benchmarks"][0] == bench
    md = md_path.read_text()
    assert md == render_markdown(report)
    assert "## Toy benchmark" in md and "| method | best_s | extra |" in md
    assert "- **speed a / b**: 2" in md and "> a note" in md
    assert "**Failed:** `RuntimeError: boom`" in md
    assert f"{report['hardware']['nproc']} cores" in md


def test_report_for_some_benchmarks_keeps_the_others(tmp_path):
    """``--only inference`` replaces that section and carries the others over, saying when they ran."""
    cube = {"name": "cube", "title": "Cube", "rows": [{"method": "a", "best_s": 1.0}]}
    old_inf = {"name": "inference", "title": "Inference", "rows": [{"method": "engine", "best_s": 9.0}]}
    first = build_report([cube, old_inf], quick=False)
    write_report(first, tmp_path)
    new_inf = {"name": "inference", "title": "Inference", "rows": [{"method": "engine", "best_s": 1.0}]}
    json_path, md_path = write_report(build_report([new_inf], quick=True), tmp_path)
    merged = json.loads(json_path.read_text())
    assert [b["name"] for b in merged["benchmarks"]] == ["cube", "inference"]
    assert merged["benchmarks"][1] == new_inf
    assert merged["benchmarks"][0]["rows"] == cube["rows"]
    assert merged["benchmarks"][0]["measured"] == first["created"]
    assert f"_Measured in an earlier run, {first['created']}._" in md_path.read_text()
    again = merge_reports(merged, build_report([new_inf], quick=True))
    assert again["benchmarks"][0]["measured"] == first["created"]  # not re-dated by later partial runs
    write_report(build_report([new_inf], quick=True), tmp_path, merge=False)
    assert [b["name"] for b in json.loads(json_path.read_text())["benchmarks"]] == ["inference"]


def test_mask_agreement_counts_flipped_pixels():
    ref = np.zeros((1, 3, 2, 2), np.float32)
    ref[:, 0] = [[1.0, 0.02], [0.5, 0.0]]  # p(no change); change where 1 - p >= 0.9
    ref[:, 1] = 1 - ref[:, 0]
    other = ref.copy()
    other[0, :, 0, 1] = [0.2, 0.0, 0.8]  # no longer changed
    other[0, :, 1, 1] = [0.0, 0.1, 0.9]  # still changed, other type
    got = mask_agreement(ref, other, 0.9)
    assert got["mask_px_differing"] == 1 and got["mask_px_changed_in_reference"] == 2
    assert got["type_px_differing"] == 2 and got["max_abs_diff"] == pytest.approx(0.98)


def test_engine_and_naive_agree_inside_windows():
    from eowatch.models.registry import get

    model = get("siamese-s2s1-change")
    rng = np.random.default_rng(0)
    mean = np.array([model.card.normalization[b][0] for b in model.card.bands], np.float32)
    x = np.broadcast_to(mean[None, :, None, None], (3, len(mean), 80, 80)).copy()
    x += rng.normal(0, 0.05, x.shape).astype(np.float32)
    x[1, 0, 10:20, 10:20] = np.nan  # no clear observation
    days = np.array([20557, 20588, 20618]) if model.module.season_channels else None  # mid April-June 2026
    result = run_comparison(model, x, chunk=40, repeats=1, days=days)
    assert [r["method"] for r in result["rows"]] == ["engine", "engine bf16 (opt-in)", "naive"]
    assert result["checks"]["max_abs_diff_inside_windows"] < 1e-4
    assert result["checks"]["engine_vs_whole_image_max_abs_diff"] < 1e-5  # no seams
    assert result["checks"]["bf16_vs_float32_max_abs_diff"] < 0.1
    assert set(result["ratios"]) == {
        "speed engine / naive (target >= 2)",
        "speed engine bf16 (opt-in) / naive",
        "CPU time naive / engine",
        "CPU time naive / engine bf16 (opt-in)",
    }


def test_run_rejects_unknown_benchmark():
    with pytest.raises(SystemExit):
        bench_run.main(["--only", "nope"])


def test_e2e_rows_give_throughput_and_the_slowest_stage():
    from benchmarks.bench_e2e import breakdown, throughput_row

    summary = {
        "area_km2": 25.0,
        "periods": [["2026-04-01", "2026-05-01"], ["2026-05-01", "2026-06-01"]],
        "timings_s": {"search": 1.0, "cube": 20.0},
        "worker_seconds": {"by_phase": {"read": 30.0, "composite": 5.0, "infer": 8.0, "write": 2.0}},
    }
    assert breakdown(summary, wall_s=30.0, threads=2) == {
        "search": 1.0,
        "read": 30.0,
        "composite": 5.0,
        "infer": 8.0,
        "write": 2.0,
        "other": 14.0,  # 60 core seconds allocated, 46 accounted for
    }
    row = throughput_row(2, summary, wall_s=30.0, cpu_s=45.0)
    assert row["km2_per_core_hour"] == 1500.0  # 25 km² in 60 core seconds
    assert row["km2_per_cpu_hour"] == 2000.0
    assert row["slowest_stage"] == "read" and row["other_s"] == 14.0
    # a summary from before phases were recorded still gives a row
    assert throughput_row(1, {"area_km2": 1.0}, wall_s=3.6, cpu_s=0)["km2_per_cpu_hour"] is None


@pytest.mark.services
def test_cube_benchmark_config_is_optical_only_and_valid(served_small_archive, tmp_path):
    """The cube benchmark's run is checked with SAR (the default change model needs VV and VH) and then
    built without it, like its S2-only baselines."""
    import datetime as dt

    from benchmarks.bench_cube import monitor_config

    m = served_small_archive.manifest
    start, end = dt.date.fromisoformat(m["start"]), dt.date.fromisoformat(m["end"])
    config = monitor_config(served_small_archive, tmp_path / "out", start, end)
    assert config.s1_collection is None and config.vhr_collection is None
    assert config.start == start and config.end == end


def test_gpu_bench_dry_run_on_the_cpu(tmp_path):
    """``bench_gpu`` (run for real on a lent GPU) works end to end on tiny CPU inputs: both shipped change
    models, every variant agreeing with float32, the report files written."""
    from benchmarks import bench_gpu

    assert bench_gpu.main(["--out", str(tmp_path), "--dry-run"]) == 0
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert [m["model"].split()[0] for m in report["models"]] == ["siamese-s2s1-change", "siamese-vhr-change"]
    for result in report["models"]:
        assert len(result["rows"]) == 7 and result["flops_per_output_px"] > 0
        assert all(c["max_abs_diff"] == 0.0 for k, c in result["checks"].items() if k != "default_is")
    with pytest.raises(SystemExit):  # no GPU here: a real run is refused, not faked on the CPU
        bench_gpu.main(["--out", str(tmp_path)])
