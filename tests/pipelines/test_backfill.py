"""A two-window backfill of the small archive against the real Prefect server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from eowatch.infra.cluster import ClusterConfig

pytestmark = [pytest.mark.services, pytest.mark.slow]

CLUSTER = ClusterConfig(n_workers=1, threads_per_worker=1, memory_limit="3GiB")


def _regions_file(path: Path, manifest: dict[str, Any]) -> Path:
    """A regions file with the small archive's AOI; its STAC URL comes from the environment."""
    region = {
        "name": "small",
        "stac_url": "${EOWATCH_STAC_URL}",
        "bbox": manifest["aoi_bbox_lonlat"],
        "crs": manifest["crs"],
        "bounds": manifest["aoi_bbox"],
        "collections": {"s2": "sentinel-2-l2a", "s1": "sentinel-1-grd", "vhr": None},
        "schedule": "0 6 1 * *",
    }
    path.write_text(json.dumps({"regions": [region]}))  # JSON is YAML
    return path


def _query(flow_run_id: Any) -> tuple[list[Any], list[Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    async def query() -> tuple[list[Any], list[Any]]:
        async with get_client() as client:
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
                )
            )
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["backfill-small"]))
            )
            return children, artifacts

    return asyncio.run(query())


def test_two_window_backfill(
    served_small_archive: Any,
    prefect_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows import backfill

    monkeypatch.setenv("EOWATCH_STAC_URL", served_small_archive.stac_url)
    regions = _regions_file(tmp_path / "regions.yaml", served_small_archive.manifest)
    out_root = tmp_path / "out"
    state = backfill(
        "small",
        dt.date(2026, 4, 1),
        dt.date(2026, 6, 30),
        str(out_root),
        regions_file=str(regions),
        window_months=2,
        cluster=CLUSTER,
        return_state=True,
    )
    assert state.is_completed(), state.message
    rows = state.result()
    assert [r["window"] for r in rows] == ["2026-04-01_2026-05-31", "2026-05-01_2026-06-30"]
    for r in rows:
        out = out_root / "small" / r["window"]
        assert (out / "change.zarr" / "zarr.json").exists() and (out / "summary.json").exists()
        assert r["status"] == "Completed" and set(r["by_type_km2"]) >= {"new_building", "flooding"}

    children, artifacts = _query(state.state_details.flow_run_id)
    assert sorted(c.name for c in children) == [
        "monitor-small-2026-04-01_2026-05-31",
        "monitor-small-2026-05-01_2026-06-30",
    ]
    assert all(c.state is not None and c.state.is_completed() for c in children)
    assert artifacts and "2 of 2 windows completed" in (artifacts[0].data or "")


def test_unknown_region_fails_before_any_window(
    prefect_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eowatch.errors import InputError
    from flows import backfill

    regions = _regions_file(
        tmp_path / "regions.yaml", {"aoi_bbox_lonlat": [4.4, 50.9, 4.5, 51.0], "crs": None, "aoi_bbox": None}
    )
    with pytest.raises(InputError, match="no region 'nowhere'"):
        backfill("nowhere", dt.date(2026, 4, 1), dt.date(2026, 6, 30), str(tmp_path / "o"), str(regions))
    assert not (tmp_path / "o").exists()
