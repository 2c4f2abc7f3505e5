"""A bounded load test: several small monitoring runs at once against one Prefect server and one STAC API.

Four runs, one per chunk of the small archive (each its own output folder and in-process Dask cluster),
go through the fault proxies with a share of transient faults; a fifth points at a STAC API that is not
there. Every run is accounted for: the four complete, each analysis cube equal to the clean reference
run's chunk at that place, the fifth fails with its error, and the Prefect server holds exactly these
five flow runs in those states. None is lost.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eowatch.errors import CatalogError
from eowatch.infra.ports import free_port
from eowatch.pipelines.reader import clear_vsicurl_cache
from tests.reliability.conftest import CHUNK, THREADS, FaultyArchive, run_params
from tests.reliability.fault_proxy import FaultPlan

pytestmark = [pytest.mark.services, pytest.mark.slow]

RUNS = 4


def _chunk_bounds(grid_bounds: list[float], row: int, col: int) -> tuple[float, float, float, float]:
    """Bounds (metres) of chunk (row, col) of a grid whose chunks are CHUNK pixels of 10 m."""
    minx, _, _, maxy = grid_bounds
    size = CHUNK * 10.0
    return (minx + col * size, maxy - (row + 1) * size, minx + (col + 1) * size, maxy - row * size)


def _chunk_digests(cube: Path, key: str) -> dict[str, str]:
    """SHA-256 of chunk file ``key`` (e.g. ``c/0/1/0``) of every variable of a Zarr store."""
    return {
        var.name: hashlib.sha256((var / key).read_bytes()).hexdigest()
        for var in sorted(cube.iterdir())
        if (var / key).is_file()
    }


def _flow_run_states(prefix: str) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async def query() -> dict[str, str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix))
            )
            return {r.name: r.state.name if r.state else "?" for r in runs}

    return asyncio.run(query())


def test_concurrent_runs_are_all_accounted_for(
    faulty_archive: FaultyArchive, clean_run: Path, prefect_server: Any, tmp_path: Path
) -> None:
    from flows import monitor

    clear_vsicurl_cache()
    faulty_archive.stac_proxy.set_plan(FaultPlan(seed=21, share=0.2, faults=("500", "503", "429", "drop")))
    faulty_archive.asset_proxy.set_plan(FaultPlan(seed=22, share=0.05, faults=("500", "503", "429", "drop")))
    grid = faulty_archive.manifest["aoi_bbox"]
    keys = [(r, c) for r in range(2) for c in range(2)][:RUNS]
    tag = tmp_path.name[-12:]
    jobs: dict[str, Any] = {}
    for r, c in keys:
        name = f"load-{tag}-{r}{c}"
        jobs[name] = run_params(faulty_archive, tmp_path / name, bounds=_chunk_bounds(grid, r, c))
    dead = SimpleNamespace(
        stac_url=f"http://127.0.0.1:{free_port()}",
        asset_url=faulty_archive.asset_url,
        manifest=faulty_archive.manifest,
    )
    jobs[f"load-{tag}-dead"] = run_params(dead, tmp_path / "dead", bounds=_chunk_bounds(grid, 0, 0))

    def run(name: str) -> Any:
        return monitor.with_options(flow_run_name=name)(jobs[name], THREADS, return_state=True)

    try:
        with ThreadPoolExecutor(len(jobs)) as pool:  # each thread gets this thread's Prefect settings
            futures = [pool.submit(contextvars.copy_context().run, run, name) for name in jobs]
            states = dict(zip(jobs, (f.result() for f in futures), strict=True))
    finally:
        faulty_archive.stac_proxy.set_plan(FaultPlan())
        faulty_archive.asset_proxy.set_plan(FaultPlan())

    outcomes = Counter(s.name for s in states.values())
    assert outcomes == {"Completed": RUNS, "Failed": 1}, {n: s.name for n, s in states.items()}
    with pytest.raises(CatalogError, match="cannot open STAC API"):
        states[f"load-{tag}-dead"].result()
    assert _flow_run_states(f"load-{tag}-") == {n: s.name for n, s in states.items()}
    for (r, c), name in zip(keys, jobs, strict=False):
        summary = states[name].result()
        assert summary["status"] == "complete" and summary["area_km2"] == pytest.approx(1.6384)
        got = _chunk_digests(tmp_path / name / "cube.zarr", "c/0/0/0")
        assert got and got == _chunk_digests(clean_run / "cube.zarr", f"c/0/{r}/{c}"), name
