"""Run artifacts: the summary markdown with its embedded quicklook, the change table, and both on a real
Prefect server."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from eowatch.legend import CHANGE_COLOURS
from eowatch.pipelines.artifacts import (
    ARTIFACT_QUICKLOOK_MAX_BYTES,
    ARTIFACT_QUICKLOOK_MAX_PX,
    change_table,
    plan_markdown,
    plan_table,
    plan_text,
    publish_plan_artifacts,
    publish_run_artifacts,
    quicklook_data_uri,
    run_markdown,
)
from eowatch.pipelines.plan import ClusterResources, RunPlan, StagePlan

DATA_URI = re.compile(r"!\[[^\]]*\]\((data:image/png;base64,[A-Za-z0-9+/=]+)\)")


def _summary(by_type: dict[str, float], changed: float | None = None) -> dict[str, Any]:
    """A summary shaped like ``stages.publish_stage``'s (2.56 km grid at 10 m, three months)."""
    return {
        "run_token": "0123456789abcdef",
        "status": "complete",
        "output": {"change_cube": "file:///out/change.zarr", "quicklook": "file:///out/quicklook.png"},
        "area_km2": 6.5536,
        "grid": {"crs": "EPSG:32631", "resolution": 10.0, "bounds": [600000, 5640000, 602560, 5642560]},
        "periods": [["2026-04-01", "2026-05-01"], ["2026-05-01", "2026-06-01"], ["2026-06-01", "2026-07-01"]],
        "items": {"sentinel-2-l2a": 30, "sentinel-1-grd": 15},
        "model": {"name": "siamese-s2s1-change", "version": "0.2.0", "sha256": "ab" * 32},
        "changes_found": {
            "changed_km2": sum(by_type.values()) if changed is None else changed,
            "by_type_km2": by_type,
            "by_period_km2": {"2026-05-01": 0.01, "2026-06-01": 0.02},
            "cva_baseline_changed_km2": 0.05,
        },
        "evaluation": {
            "scope": "whole grid",
            "model": {"per_pixel": {"precision": 0.9, "recall": 0.8, "f1": 0.847}},
            "cva_baseline": {"per_pixel": {"precision": 0.4, "recall": 0.5, "f1": 0.444}},
        },
        "timings_s": {"search": 1.2, "cube": 20.5, "inference": 3.1, "publish": 0.4, "total": 25.2},
        "worker_seconds": {
            "by_stage": {
                "cube": {"read": 20.0, "composite": 8.0, "write": 1.0},
                "change": {"read": 0.5, "infer": 4.0, "write": 0.5},
            },
            "by_phase": {"read": 20.5, "composite": 8.0, "infer": 4.0, "write": 1.5},
        },
    }


def _plan() -> RunPlan:
    """A two-stage plan (numbers as ``plan_run`` gives them for the small archive)."""
    mib = 1024**2
    cube = StagePlan(
        "cube", 4, 2, (134, 134), 16, 206 * mib, 6 * mib, 40 * mib, mib, 344 * mib, 384 * mib, 8.5
    )
    change = StagePlan(
        "change", 4, 1, (134, 134), 3, 7 * mib, 3 * mib, 55 * mib, 0, 554 * mib, 609 * mib, 1.0
    )
    return RunPlan(
        run_token="0123456789abcdef",
        area_km2=6.5536,
        grid={"crs": "EPSG:32631", "resolution": 10.0, "bounds": [0, 0, 2560, 2560], "chunk": 128},
        periods=3,
        items={"sentinel-2-l2a": 30, "sentinel-1-grd": 15},
        cluster=ClusterResources(2, 1, 3 * 1024**3, cores=2),
        stages=(cube, change),
        headroom=0.8,
        throughput_source="test",
    )


BY_TYPE = {"new_building": 0.0123, "forest_clearing": 0.02, "flooding": 0.0, "crop_rotation": 0.0477}


@pytest.fixture
def quicklook(tmp_path: Path) -> Path:
    """A 2200 x 1100 px two-panel picture: a fields-like true colour beside blocks of the change colours."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1100, 0:1096]
    fields = ((yy // 90 + xx // 130) % 5 * 40 + 30)[..., None] * np.array([0.6, 1.0, 0.5])
    rgb = np.clip(fields + rng.normal(0, 6, (1100, 1096, 3)), 0, 255).astype(np.uint8)
    types = np.zeros((1100, 1096, 3), np.uint8)
    for code, colour in CHANGE_COLOURS.items():
        types[:, code * 200 : code * 200 + 200] = colour
    canvas = np.concatenate([rgb, np.full((1100, 8, 3), 255, np.uint8), types], axis=1)
    path = tmp_path / "quicklook.png"
    Image.fromarray(canvas).save(path)
    return path


def _embedded(markdown: str) -> Image.Image:
    match = DATA_URI.search(markdown)
    assert match, "no embedded PNG"
    png = base64.b64decode(match.group(1).split(",", 1)[1])
    assert len(png) <= ARTIFACT_QUICKLOOK_MAX_BYTES
    return Image.open(io.BytesIO(png))


def test_change_table_has_area_pixels_and_shares() -> None:
    rows = change_table(_summary(BY_TYPE))
    assert [r["change type"] for r in rows] == list(BY_TYPE)
    assert [r["pixels"] for r in rows] == [123, 200, 0, 477]  # 10 m pixels: 1e-4 km² each
    assert sum(r["share of changed area (%)"] for r in rows) == pytest.approx(100, abs=0.05)
    assert rows[3]["share of AOI (%)"] == pytest.approx(100 * 0.0477 / 6.5536, abs=1e-3)
    pixels = {"new_building": 124, "forest_clearing": 200, "flooding": 0, "crop_rotation": 477}
    exact = _summary(BY_TYPE)
    exact["changes_found"]["by_type_px"] = pixels
    assert [r["pixels"] for r in change_table(exact)] == list(pixels.values())


def test_no_change_gives_zero_shares() -> None:
    rows = change_table(_summary(dict.fromkeys(BY_TYPE, 0.0)))
    assert all(r["share of changed area (%)"] == 0 and r["pixels"] == 0 for r in rows)


def test_markdown_summarises_the_run_and_embeds_a_small_quicklook(quicklook: Path) -> None:
    markdown = run_markdown(_summary(BY_TYPE), quicklook)
    assert markdown.startswith("# eowatch monitoring run `0123456789abcdef`")
    for text in (
        "Area processed: **6.55 km²**",
        "| crop_rotation | 0.0477 | 477 |",
        "`siamese-s2s1-change` v0.2.0",
        "| search | 1.2 |",
        "| CVA baseline | 0.400 | 0.500 | 0.444 |",
        "(slowest: **read**)",
        "| infer | 4.0 | 12 |",
    ):
        assert text in markdown
    picture = _embedded(markdown)
    assert max(picture.size) == ARTIFACT_QUICKLOOK_MAX_PX
    assert picture.size[0] == 2 * picture.size[1]  # aspect kept
    colours = {tuple(c) for c in np.asarray(picture.convert("RGB")).reshape(-1, 3)[::7]}
    assert set(CHANGE_COLOURS.values()) <= colours  # nearest neighbour keeps the legend's colours


def test_a_large_quicklook_is_halved_until_it_fits(quicklook: Path) -> None:
    uri = quicklook_data_uri(quicklook, max_px=4096)  # the full 2200 px picture is too big
    png = base64.b64decode(uri.split(",", 1)[1])
    assert len(png) <= ARTIFACT_QUICKLOOK_MAX_BYTES
    assert max(Image.open(io.BytesIO(png)).size) < 2200


def test_markdown_without_quicklook_or_evaluation(tmp_path: Path) -> None:
    summary = _summary(BY_TYPE)
    summary["evaluation"] = None
    markdown = run_markdown(summary, tmp_path / "missing.png")
    assert "data:image" not in markdown and "planted truth" not in markdown

    del summary["worker_seconds"]  # a summary written before phases were recorded
    assert "Worker time" not in run_markdown(summary)


def test_plan_renderings_agree_and_show_a_refusal() -> None:
    from dataclasses import replace

    plan = _plan()
    rows = plan_table(plan)
    assert [r["stage"] for r in rows] == ["cube", "change", "total"]
    assert rows[-1]["worker peak (MiB)"] == 609.0 and rows[-1]["read (MiB)"] == 206.0  # change reads no COG
    assert "**fits: peak 609 MiB per worker of 2.4 GiB usable**" in plan_markdown(plan)
    assert "2 workers x 1 thread, 2 cores, 3.0 GiB per worker" in plan_text(plan)
    tight = replace(plan, cluster=ClusterResources(2, 1, 512 * 1024**2))
    assert "does NOT fit: peak 609 MiB per worker, 410 MiB usable" in plan_text(tight)
    assert "**does NOT fit" in plan_markdown(tight)


@pytest.mark.services
def test_artifacts_reach_the_prefect_server(quicklook: Path, prefect_server: Any) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @flow(name="artifacts-test")
    def publish() -> None:
        publish_plan_artifacts(_plan())
        publish_run_artifacts(_summary(BY_TYPE), quicklook)

    publish()

    async def read() -> list[Any]:
        async with get_client() as client:
            keys = ArtifactFilterKey(
                any_=["monitor-plan", "monitor-plan-stages", "monitor-summary", "monitor-changes"]
            )
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=keys))

    artifacts = {a.key: a for a in asyncio.run(read())}
    assert artifacts["monitor-summary"].type == "markdown"
    _embedded(artifacts["monitor-summary"].data)
    assert artifacts["monitor-changes"].type == "table"
    assert "crop_rotation" in str(artifacts["monitor-changes"].data)
    assert artifacts["monitor-plan"].type == "markdown" and "**fits:" in artifacts["monitor-plan"].data
    assert artifacts["monitor-plan-stages"].type == "table"
    assert "worker peak (MiB)" in str(artifacts["monitor-plan-stages"].data)
