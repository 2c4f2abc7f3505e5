"""The run plan against what the stages really do on the small served archive.

One run of the cube, VHR and change stages (in-process Dask cluster, assets served by a byte-counting
copy of the asset server) gives the real chunk and task counts and the bytes served; one
``compute_region`` call under tracemalloc gives a real chunk's working set. The plan must match the
counts exactly, read between 1x and ``READ_FACTOR`` x the bytes served (it counts uncompressed tiles:
an upper bound), and bound the working set from above by at most ``MEMORY_FACTOR`` x.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from starlette.staticfiles import StaticFiles

from eowatch.pipelines import model_stages, stages
from eowatch.pipelines import plan as planning
from eowatch.pipelines.plan import plan_run
from tests.pipelines._plan_support import (
    CLUSTER,
    MEASURED_MODELS,
    MEMORY_FACTOR,
    READ_FACTOR,
    plan_params,
    stage_names,
    stage_of,
)

pytestmark = [pytest.mark.services]


class _ByteCounter:
    """Bytes of HTTP response bodies the asset server sent (thread-safe)."""

    def __init__(self) -> None:
        self.sent = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def take(self) -> int:
        with self._lock:
            sent, self.sent = self.sent, 0
        return sent


def _counting_static_files(counter: _ByteCounter) -> type[StaticFiles]:
    class CountingStaticFiles(StaticFiles):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            async def counted(message: Any) -> None:
                if message["type"] == "http.response.body":
                    counter.add(len(message.get("body", b"")))
                await send(message)

            await super().__call__(scope, receive, counted)

    return CountingStaticFiles


class _PeakRss:
    """Largest RSS of each of some processes (bytes), sampled every 20 ms in a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                self.peak[proc.pid] = max(self.peak[proc.pid], proc.memory_info().rss)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __enter__(self) -> _PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


@pytest.fixture(scope="module")
def measured_run(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The plan of a run, then its stages on a real 2-worker cluster: their batches, the bytes served
    and the workers' peak RSS per stage."""
    from eowatch.demo import served_archive
    from eowatch.infra import asset_server
    from eowatch.infra.cluster import cluster_client
    from eowatch.infra.services import AssetServer

    counter, batches = _ByteCounter(), {}
    real_map = stages.map_batches

    def recording_map(client: Any, func: Any, todo: Any, inputs: Any, *args: Any, **kw: Any) -> Any:
        batches[func.__name__] = [list(b) for b in todo]
        return real_map(client, func, todo, inputs, *args, **kw)

    out = tmp_path_factory.mktemp("plan") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asset_server, "StaticFiles", _counting_static_files(counter))
        mp.setattr(stages, "map_batches", recording_map)
        mp.setattr(model_stages, "map_batches", recording_map)
        with AssetServer(small_archive) as assets, served_archive(small_archive, assets.url) as served:
            params = plan_params(served, small_archive, out, **MEASURED_MODELS)
            run = stages.prepare_run(params.to_config())
            stages.search_stage(run, info=lambda _m: None)
            items = json.loads(run.layout.items.read_text())
            plan = plan_run(run, items, planning.cluster_resources(CLUSTER))
            bytes_served: dict[str, int] = {}
            worker_peak: dict[str, int] = {}
            with cluster_client(CLUSTER) as client:
                pids = sorted(client.run(os.getpid).values())
                counter.take()
                for name, stage in (
                    ("cube", stages.cube_stage_run),
                    ("vhr", stages.vhr_stage_run),
                    ("change", stages.change_stage_run),
                    ("landcover", model_stages.landcover_stage_run),
                    ("semantic_change", model_stages.semantic_change_stage_run),
                    ("vhr_change", model_stages.vhr_change_stage_run),
                    ("vhr_landcover", model_stages.vhr_landcover_stage_run),
                ):
                    with _PeakRss(pids) as rss:
                        stage(run, client, lambda _m: None)
                    bytes_served[name] = counter.take()
                    worker_peak[name] = max(rss.peak.values())
            yield {
                "run": run,
                "items": items,
                "plan": plan,
                "batches": batches,
                "served": bytes_served,
                "worker_peak": worker_peak,
            }


@pytest.mark.slow
def test_chunks_and_tasks_are_what_the_stages_do(measured_run: dict[str, Any]) -> None:
    plan, batches, run = measured_run["plan"], measured_run["batches"], measured_run["run"]
    funcs = {
        "cube": "build_batch",
        "vhr": "build_vhr_batch",
        "change": "infer_batch",
        "landcover": "landcover_batch",
        "vhr_change": "vhr_change_batch",
        "vhr_landcover": "vhr_landcover_batch",
        "semantic_change": "semantic_change_batch",
    }
    assert [s.name for s in plan.stages] == stage_names(run)
    for stage in plan.stages:
        done = batches[funcs[stage.name]]
        assert stage.tasks == len(done), stage.name
        assert stage.chunks == sum(map(len, done)) == len(run.layout.ledger(stage.name).done()), stage.name
    assert plan.chunks == sum(len(k) for b in batches.values() for k in b)
    assert plan.tasks == sum(len(b) for b in batches.values())


@pytest.mark.slow
def test_bytes_to_read_bound_the_bytes_served(measured_run: dict[str, Any]) -> None:
    plan, served = measured_run["plan"], measured_run["served"]
    names = stage_names(measured_run["run"])
    for name in (n for n in names if n not in planning.MODEL_STAGES):
        estimate = stage_of(plan, name).read_bytes
        assert served[name] > 0
        assert 1.0 <= estimate / served[name] <= READ_FACTOR, (name, estimate, served[name])
    # inference reads the local analysis and VHR cubes, not the archive
    assert {"vhr_change", "landcover"} <= set(names)
    assert served["change"] == served["landcover"] == served["vhr_change"] == served["vhr_landcover"] == 0
    assert served["semantic_change"] == 0
    assert plan.read_bytes == sum(s.read_bytes for s in plan.stages if s.name not in planning.MODEL_STAGES)


@pytest.mark.slow
def test_task_memory_bounds_a_measured_cube_chunk(measured_run: dict[str, Any]) -> None:
    """tracemalloc peak of one chunk's ``compute_region`` <= the plan's cube task <= MEMORY_FACTOR x.

    Every chunk of this grid is 128 x 128 px over the same items, so the plan's largest task is this
    chunk's too.
    """
    from eowatch.pipelines.cube import compute_region
    from eowatch.pipelines.grid import ChunkKey
    from eowatch.pipelines.reader import StacRegionReader

    run, items = measured_run["run"], measured_run["items"]
    tracemalloc.start()
    try:
        compute_region(
            ChunkKey(0, 0), run.spec, items, StacRegionReader(asset_stores=run.config.asset_stores)
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    task = stage_of(measured_run["plan"], "cube").task_bytes
    assert peak <= task <= MEMORY_FACTOR * peak, (task, peak)


@pytest.mark.slow
def test_worker_peak_bounds_the_workers_measured_rss(measured_run: dict[str, Any]) -> None:
    """Each stage's planned peak per worker >= the largest worker RSS sampled during it, <= 2x."""
    plan, measured = measured_run["plan"], measured_run["worker_peak"]
    for stage in plan.stages:
        assert measured[stage.name] <= stage.peak_bytes <= 2 * measured[stage.name], (stage, measured)
