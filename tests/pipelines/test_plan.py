"""The run plan against what the stages really do on the small served archive.

One run of the cube, VHR and change stages (in-process Dask cluster, assets served by a byte-counting
copy of the asset server) gives the real chunk and task counts and the bytes served; one
``compute_region`` call under tracemalloc gives a real chunk's working set. The plan must match the
counts exactly, read between 1x and ``READ_FACTOR`` x the bytes served (it counts uncompressed tiles:
an upper bound), and bound the working set from above by at most ``MEMORY_FACTOR`` x.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from starlette.staticfiles import StaticFiles

from eowatch.errors import InputError
from eowatch.infra.cluster import ClusterConfig
from eowatch.pipelines import model_stages, plan_reads, stages
from eowatch.pipelines import plan as planning
from eowatch.pipelines.artifacts import plan_markdown, plan_table, plan_text
from eowatch.pipelines.params import MonitorParams
from eowatch.pipelines.plan import ClusterResources, RunPlan, check_fits, plan_run

pytestmark = [pytest.mark.services]

CHUNK = 128  # four analysis chunks on the 2.56 km archive, four VHR chunks
READ_FACTOR = 4.0
MEMORY_FACTOR = 4.0
MIB = 1024**2
GIB = 1024**3
ROOMY = ClusterResources(workers=1, threads_per_worker=2, memory_per_worker=16 * GIB, cores=2)
CLUSTER = ClusterConfig(n_workers=2, threads_per_worker=1, memory_limit="3GiB", dashboard=False)
VHR_MODEL = "siamese-vhr-change"
LANDCOVER_MODEL = "landcover-s2-unet"
SEMANTIC_MODEL = "siamese-s2s1-semantic"
VHR_LANDCOVER_MODEL = "landcover-vhr-unet"


def _vhr_landcover_shipped() -> bool:
    from eowatch.models.registry import card_file_of

    return card_file_of(VHR_LANDCOVER_MODEL).is_file()


#: The VHR land-cover model joins the measured run once its weights are shipped.
MEASURED_MODELS: dict[str, Any] = {
    "vhr_change_model": VHR_MODEL,
    "landcover_model": LANDCOVER_MODEL,
    "vhr_landcover_model": VHR_LANDCOVER_MODEL if _vhr_landcover_shipped() else None,
    "semantic_change_model": SEMANTIC_MODEL,
}


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


def _params(served: Any, archive: Path, out: Path, **extra: Any) -> MonitorParams:
    from eowatch.demo import archive_run_params

    base = archive_run_params(served, out, archive)
    return MonitorParams(**{**base.model_dump(), "chunk": CHUNK, **extra})


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
            params = _params(served, small_archive, out, **MEASURED_MODELS)
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


@pytest.fixture(scope="module")
def planned(served_small_archive: Any, small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A prepared and searched run (items pinned) and its plan on ``CLUSTER``; no stage runs."""
    out = tmp_path_factory.mktemp("planned") / "out"
    run = stages.prepare_run(_params(served_small_archive, small_archive, out).to_config())
    stages.search_stage(run, info=lambda _m: None)
    items = json.loads(run.layout.items.read_text())
    return {"run": run, "items": items, "plan": plan_run(run, items, planning.cluster_resources(CLUSTER))}


def _stage_names(run: stages.Run) -> list[str]:
    """The stages a run has, in the flow's order (the VHR ones with VHR items, as on this archive)."""
    cfg = run.config
    optional = {
        "crop_type": cfg.crop_model,
        "landcover": cfg.landcover_model,
        "semantic_change": cfg.semantic_change_model,
        "vhr_change": cfg.vhr_change_model,
        "vhr_landcover": cfg.vhr_landcover_model,
    }
    names = ["cube", "vhr", "change"] if cfg.vhr_collection else ["cube", "change"]
    return [*names, *(name for name, model in optional.items() if model)]


def _stage(plan: RunPlan, name: str) -> planning.StagePlan:
    return next(s for s in plan.stages if s.name == name)


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
    assert [s.name for s in plan.stages] == _stage_names(run)
    for stage in plan.stages:
        done = batches[funcs[stage.name]]
        assert stage.tasks == len(done), stage.name
        assert stage.chunks == sum(map(len, done)) == len(run.layout.ledger(stage.name).done()), stage.name
    assert plan.chunks == sum(len(k) for b in batches.values() for k in b)
    assert plan.tasks == sum(len(b) for b in batches.values())


@pytest.mark.slow
def test_bytes_to_read_bound_the_bytes_served(measured_run: dict[str, Any]) -> None:
    plan, served = measured_run["plan"], measured_run["served"]
    names = _stage_names(measured_run["run"])
    for name in (n for n in names if n not in planning.MODEL_STAGES):
        estimate = _stage(plan, name).read_bytes
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
    task = _stage(measured_run["plan"], "cube").task_bytes
    assert peak <= task <= MEMORY_FACTOR * peak, (task, peak)


@pytest.mark.slow
def test_worker_peak_bounds_the_workers_measured_rss(measured_run: dict[str, Any]) -> None:
    """Each stage's planned peak per worker >= the largest worker RSS sampled during it, <= 2x."""
    plan, measured = measured_run["plan"], measured_run["worker_peak"]
    for stage in plan.stages:
        assert measured[stage.name] <= stage.peak_bytes <= 2 * measured[stage.name], (stage, measured)


def test_worker_peak_adds_runtime_threads_and_resident_memory(planned: dict[str, Any]) -> None:
    plan = planned["plan"]
    cube, change = plan.stages[0], plan.stages[-1]
    threads = plan.cluster.threads_per_worker
    assert cube.peak_bytes == cube.runtime_bytes + threads * cube.task_bytes
    for before, stage in zip(plan.stages, plan.stages[1:], strict=False):
        libraries = planning.TORCH_RUNTIME_BYTES if stage is change else 0
        assert stage.peak_bytes >= before.peak_bytes + libraries  # what a stage freed stays resident
        assert stage.peak_bytes >= stage.runtime_bytes + threads * stage.task_bytes
    assert plan.peak_worker_bytes == max(s.peak_bytes for s in plan.stages)
    assert plan.fits and check_fits(plan) is plan
    assert json.loads(json.dumps(plan.to_dict()))["fits"] is True


def _refusal(plan: RunPlan, usable: float, threads: int = 1) -> str:
    cluster = ClusterResources(workers=2, threads_per_worker=threads, memory_per_worker=int(usable / 0.8))
    refused = plan_run_again(plan, cluster)
    with pytest.raises(InputError) as err:
        check_fits(refused)
    return str(err.value)


def plan_run_again(plan: RunPlan, cluster: ClusterResources) -> RunPlan:
    """The same plan on another cluster (the headroom pinned to 0.8 for exact arithmetic)."""
    from dataclasses import replace

    peaks = planning._worker_peaks(
        [(s.name, s.runtime_bytes, s.task_bytes) for s in plan.stages], cluster.threads_per_worker
    )
    refit = [replace(s, peak_bytes=p) for s, p in zip(plan.stages, peaks, strict=True)]
    return replace(plan, cluster=cluster, stages=tuple(refit), headroom=0.8)


def test_a_crop_type_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a crop-type model the plan has its stage: the cube's chunks and tasks, no archive read."""
    from dataclasses import replace

    run = planned["run"]
    crop_run = replace(run, config=replace(run.config, crop_model="crop-type-ltae"))
    plan = plan_run(crop_run, planned["items"], planning.cluster_resources(CLUSTER))
    crops, change = _stage(plan, "crop_type"), _stage(plan, "change")
    assert [s.name for s in plan.stages] == [*_stage_names(run), "crop_type"]
    assert (crops.chunks, crops.tasks) == (change.chunks, change.tasks)
    assert crops.acquisitions == len(run.spec.periods) and crops.seconds > 0
    assert plan.read_bytes == planned["plan"].read_bytes  # reads the cube, not the archive
    assert 0 < crops.task_bytes < change.task_bytes  # a per-pixel model over a chunk without halo
    assert crops.output_bytes == crops.chunks * run.spec.grid.chunk**2 * (1 + 4 * 5)


def test_a_vhr_change_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a VHR change model the plan has its stage after the change stage: the VHR grid's chunks, one
    per task, every VHR date read from the VHR cube (not the archive), two pairs written."""
    from dataclasses import replace

    run, items = planned["run"], planned["items"]
    vhr_run = replace(run, config=replace(run.config, vhr_change_model=VHR_MODEL))
    plan = plan_run(vhr_run, items, planning.cluster_resources(CLUSTER))
    stage, vhr = _stage(plan, "vhr_change"), _stage(plan, "vhr")
    assert [s.name for s in plan.stages] == [*_stage_names(run), "vhr_change"]
    assert stage.chunks == stage.tasks == vhr.chunks == 4  # 1530 px at 1 m in 1024 px chunks
    assert stage.acquisitions == 3 and stage.chunk_px == (1152, 1152)  # 1024 px + 128 px halo
    assert stage.output_bytes == 4 * 1024**2 * 2 * (4 + 1)  # two pairs: float32 + uint8
    assert plan.read_bytes == planned["plan"].read_bytes and stage.seconds > 0
    assert stage.peak_bytes >= _stage(plan, "change").peak_bytes  # what the change stage left resident


def test_a_vhr_change_model_is_checked_against_the_vhr_cube(planned: dict[str, Any]) -> None:
    """VHR imagery at 0.5 m makes a 0.5 m VHR cube: the 1 m model is refused before anything runs."""
    import copy
    from dataclasses import replace

    from eowatch.errors import ModelError

    run, items = planned["run"], copy.deepcopy(planned["items"])
    for item in (d for d in items if d["collection"] == "vhr-rgbn"):
        for asset in item["assets"].values():
            if asset.get("proj:transform"):
                asset["proj:transform"][0] = 0.5
    vhr_run = replace(run, config=replace(run.config, vhr_change_model=VHR_MODEL))
    with pytest.raises(ModelError, match=r"trained at 1 m but the cube is at 0\.5 m"):
        plan_run(vhr_run, items, planning.cluster_resources(CLUSTER))


def test_a_landcover_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a land-cover model the plan has its stage after the change stage: the cube's chunks read with
    the model's 56 px halo for every period (from the cube, not the archive), one uint8 map per period."""
    from dataclasses import replace

    run = planned["run"]
    lc_run = replace(run, config=replace(run.config, landcover_model=LANDCOVER_MODEL))
    plan = plan_run(lc_run, planned["items"], planning.cluster_resources(CLUSTER))
    stage, change = _stage(plan, "landcover"), _stage(plan, "change")
    assert [s.name for s in plan.stages] == [*_stage_names(run), "landcover"]
    assert (stage.chunks, stage.tasks) == (change.chunks, change.tasks)
    assert stage.acquisitions == len(run.spec.periods) and stage.seconds > 0
    assert stage.chunk_px == (CHUNK + 56, CHUNK + 56)  # 2 x 2 chunks: the halo on one side of each
    assert stage.output_bytes == stage.chunks * CHUNK**2 * len(run.spec.periods)
    assert plan.read_bytes == planned["plan"].read_bytes
    assert stage.peak_bytes >= change.peak_bytes  # what the change stage left resident


def test_a_semantic_change_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a semantic change model the plan has its stage after land cover: the cube's chunks read with
    the model's halo for every period, three maps (float32 + 2 x uint8) per transition; a conditional model's
    task is larger (its condition model runs first, over a wider halo)."""
    from dataclasses import replace

    run = planned["run"]
    cluster = planning.cluster_resources(CLUSTER)
    sem_run = replace(run, config=replace(run.config, semantic_change_model=SEMANTIC_MODEL))
    plan = plan_run(sem_run, planned["items"], cluster)
    stage, change = _stage(plan, "semantic_change"), _stage(plan, "change")
    assert [s.name for s in plan.stages] == _stage_names(sem_run) and "semantic_change" in _stage_names(
        sem_run
    )
    assert (stage.chunks, stage.tasks) == (change.chunks, change.tasks)
    assert stage.acquisitions == len(run.spec.periods) and stage.seconds > 0
    assert stage.chunk_px == (CHUNK + 5, CHUNK + 5)  # 2 x 2 chunks, a 5 px halo on one side of each
    assert stage.output_bytes == stage.chunks * CHUNK**2 * 6 * (len(run.spec.periods) - 1)
    cond_run = replace(run, config=replace(run.config, semantic_change_model="siamese-s2s1-conditional"))
    cond = _stage(plan_run(cond_run, planned["items"], cluster), "semantic_change")
    assert cond.chunk_px == (CHUNK + 10, CHUNK + 10) and cond.task_bytes > stage.task_bytes
    assert cond.seconds > stage.seconds


def test_a_landcover_model_task_grows_with_the_chunk(planned: dict[str, Any]) -> None:
    """The land-cover task's working set grows with the chunk (its halo window and engine windows)."""
    from dataclasses import replace

    run = planned["run"]
    tasks = []
    for chunk in (64, 128, 256):
        config = replace(run.config, chunk=chunk, landcover_model=LANDCOVER_MODEL)
        other = replace(run, config=config, spec=config.cube_spec())
        plan = plan_run(other, planned["items"], planning.cluster_resources(CLUSTER))
        tasks.append(_stage(plan, "landcover").task_bytes)
    assert tasks == sorted(tasks) and len(set(tasks)) == 3


@pytest.mark.skipif(not _vhr_landcover_shipped(), reason=f"{VHR_LANDCOVER_MODEL} weights are not shipped yet")
def test_a_vhr_landcover_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a VHR land-cover model the plan has its stage last: the VHR grid's chunks, one per task, every
    VHR date classified from the VHR cube (not the archive), one uint8 map per date."""
    from dataclasses import replace

    run, items = planned["run"], planned["items"]
    vhr_run = replace(run, config=replace(run.config, vhr_landcover_model=VHR_LANDCOVER_MODEL))
    plan = plan_run(vhr_run, items, planning.cluster_resources(CLUSTER))
    stage, vhr = _stage(plan, "vhr_landcover"), _stage(plan, "vhr")
    assert [s.name for s in plan.stages] == [*_stage_names(run), "vhr_landcover"]
    assert stage.chunks == stage.tasks == vhr.chunks == 4 and stage.acquisitions == 3
    assert stage.output_bytes == 4 * 1024**2 * 3  # three dates, uint8
    assert plan.read_bytes == planned["plan"].read_bytes and stage.seconds > 0


def test_runs_without_the_landcover_models_keep_their_tokens(planned: dict[str, Any]) -> None:
    """The new model fields stay out of a run's token (and provenance) unless set, so runs made before
    they existed are still recognised as finished; setting one makes another run."""
    from dataclasses import replace

    run = planned["run"]
    params = run.provenance["parameters"]
    assert not {"landcover_model", "vhr_landcover_model", "vhr_change_model"} & set(params)
    again = stages.prepare_run(run.config)
    assert again.token == run.token
    other = stages.prepare_run(replace(run.config, landcover_model=LANDCOVER_MODEL))
    assert other.token != run.token and other.provenance["parameters"]["landcover_model"] == LANDCOVER_MODEL


def test_a_tiny_worker_is_refused_with_what_to_change(planned: dict[str, Any]) -> None:
    message = _refusal(planned["plan"], usable=200 * MIB)
    assert message.startswith(f"run {planned['run'].token} does not fit the cluster")
    assert "change stage needs about" in message and "200 MiB" in message
    assert "of memory per worker" in message and "\n" not in message


def test_refusal_suggests_fewer_threads_when_one_fits(planned: dict[str, Any]) -> None:
    plan = planned["plan"]
    one = plan_run_again(plan, ClusterResources(2, 1, 16 * GIB)).peak_worker_bytes
    message = _refusal(plan, usable=one + MIB, threads=2)
    assert "fewer threads per worker (1)" in message


def test_refusal_suggests_a_chunk_size_that_fits(
    served_small_archive: Any, small_archive: Path, planned: dict[str, Any], tmp_path: Path
) -> None:
    items = planned["items"]
    coarse = stages.prepare_run(_params(served_small_archive, small_archive, tmp_path, chunk=256).to_config())
    fine = stages.prepare_run(_params(served_small_archive, small_archive, tmp_path, chunk=128).to_config())
    big, small = (plan_run(r, items, ROOMY) for r in (coarse, fine))
    assert small.peak_worker_bytes < big.peak_worker_bytes
    usable = (small.peak_worker_bytes + big.peak_worker_bytes) / 2
    assert "a smaller chunk size (--chunk 128" in _refusal(big, usable, threads=2)


def test_plan_renders_as_markdown_table_and_text(planned: dict[str, Any]) -> None:
    plan = planned["plan"]
    rows = plan_table(plan)
    assert [r["stage"] for r in rows] == [*_stage_names(planned["run"]), "total"]
    assert rows[-1]["chunks"] == sum(r["chunks"] for r in rows[:-1]) == plan.chunks
    assert rows[-1]["worker peak (MiB)"] == round(plan.peak_worker_bytes / MIB, 1)
    markdown = plan_markdown(plan)
    assert markdown.startswith(f"# eowatch plan for run `{plan.run_token}`")
    assert "**fits:" in markdown and "| stage | chunks | tasks |" in markdown
    assert markdown.count("\n| ") == len(rows) + 1
    text = plan_text(plan)
    assert "Peak memory per worker: fits" in text and "benchmarks/results/latest.json" in text
    assert all(name in text for name in [*_stage_names(planned["run"]), "total"])


def test_plan_stage_plans_the_pinned_items_and_refuses(planned: dict[str, Any]) -> None:
    run = planned["run"]
    plan = planning.plan_stage(run, ClusterConfig(n_workers=1, memory_limit="8GiB"), lambda _m: None)
    assert plan.fits and plan.chunks == planned["plan"].chunks
    seen: list[RunPlan] = []
    with pytest.raises(InputError, match="does not fit the cluster"):
        small = ClusterConfig(n_workers=1, memory_limit="300MiB")
        planning.plan_stage(run, small, lambda _m: None, on_plan=seen.append)
    assert len(seen) == 1 and not seen[0].fits  # published before the refusal


def _cli_args(served: Any, out: Path, *extra: str) -> list[str]:
    m = served.manifest
    return [
        "--stac-url",
        served.stac_url,
        "--bbox",
        ",".join(str(v) for v in m["aoi_bbox_lonlat"]),
        "--start",
        m["start"],
        "--end",
        m["end"],
        "--out",
        str(out),
        "--workers",
        "1",
        *extra,
    ]


def test_cli_prints_the_plan_and_exits_zero_when_it_fits(
    served_small_archive: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eowatch.plan_cli import main

    out = tmp_path / "new-out"
    assert main(_cli_args(served_small_archive, out, "--memory-limit", "8GiB")) == 0
    captured = capsys.readouterr()
    assert "Peak memory per worker: fits" in captured.out and "error:" not in captured.err
    assert not out.exists()  # planning writes nothing


def test_cli_refuses_a_run_that_does_not_fit(
    served_small_archive: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eowatch.plan_cli import add_plan_arguments, cmd_plan, main

    argv = _cli_args(served_small_archive, tmp_path / "out", "--memory-limit", "256MiB", "--json")
    assert main(argv) == InputError.exit_code
    captured = capsys.readouterr()
    assert json.loads(captured.out)["fits"] is False
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: run ") and "does not fit the cluster" in last and "MiB" in last
    parser = argparse.ArgumentParser()
    add_plan_arguments(parser)
    with pytest.raises(InputError):
        cmd_plan(parser.parse_args(argv))


# --- pure parts: cluster resources and per-asset reads --------------------------------------------


def test_cluster_resources_of_a_local_cluster() -> None:
    from distributed.system import MEMORY_LIMIT

    explicit = planning.cluster_resources(
        ClusterConfig(n_workers=2, threads_per_worker=3, memory_limit="1GiB")
    )
    assert (explicit.workers, explicit.threads, explicit.memory_per_worker) == (2, 6, GIB)
    auto = planning.cluster_resources(ClusterConfig(n_workers=4, memory_limit="auto"))
    assert auto.memory_per_worker <= MEMORY_LIMIT // 4 and auto.system_memory == MEMORY_LIMIT
    greedy = planning.cluster_resources(ClusterConfig(n_workers=2, memory_limit="100TiB"))
    assert greedy.memory_per_worker == MEMORY_LIMIT // 2


def test_cluster_resources_of_slurm_and_kubernetes(tmp_path: Path) -> None:
    from eowatch.infra.hpc.k8s import KubernetesConfig
    from eowatch.infra.hpc.slurm import SlurmConfig

    slurm = SlurmConfig(jobs=3, cores=8, processes=4, memory="16GiB")
    got = planning.cluster_resources(ClusterConfig(kind="slurm", slurm=slurm))
    assert (got.workers, got.threads_per_worker, got.memory_per_worker) == (12, 2, 4 * GIB)
    spec = {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": {"name": "plan-test"},
        "spec": {
            "scheduler": {"spec": {"containers": [{"name": "scheduler", "args": ["dask", "scheduler"]}]}},
            "worker": {
                "replicas": 5,
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "args": ["dask", "worker", "--nthreads", "2", "--memory-limit", "auto"],
                            "resources": {"limits": {"memory": "3Gi"}},
                        }
                    ]
                },
            },
        },
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    got = planning.cluster_resources(ClusterConfig(kind="kubernetes", kubernetes=KubernetesConfig(str(path))))
    assert (got.workers, got.threads_per_worker, got.memory_per_worker) == (5, 2, 3 * GIB)


def _item(**asset: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "collection": "c",
        "bbox": [4.42, 50.90, 4.46, 50.93],
        "properties": {"proj:code": "EPSG:32631"},
        "assets": {"b": asset},
    }


def test_read_bytes_count_touched_tiles_clipped_to_the_raster() -> None:
    from eowatch.pipelines.grid import GridSpec

    grid = GridSpec("EPSG:32631", 10.0, (600000, 5640000, 610240, 5650240), 256)
    raster = {"proj:shape": [1024, 1024], "proj:transform": [10, 0, 600000, 0, -10, 5650240]}
    notes: dict[str, set[str]] = {}
    geo = plan_reads.asset_raster(
        _item(**raster, **{"raster:bands": [{"data_type": "uint16"}]}), "b", grid, "uint8", notes
    )
    header, tile = plan_reads.COG_HEADER_BYTES, plan_reads.COG_BLOCK_PX**2 * 2
    inside_one_tile = (600010.0, 5650240.0 - 500, 600500.0, 5650230.0)
    assert plan_reads.read_bytes(geo, inside_one_tile, grid.crs) == header + tile
    across_four = (600000.0 + 5000, 5650240.0 - 5200, 600000.0 + 5200, 5650240.0 - 5000)
    assert plan_reads.read_bytes(geo, across_four, grid.crs) == header + 4 * tile
    assert plan_reads.read_bytes(geo, (0.0, 0.0, 10.0, 10.0), grid.crs) == 0
    sized = plan_reads.asset_raster(_item(**raster, **{"file:size": 1_000_000}), "b", grid, "uint16", notes)
    assert plan_reads.read_bytes(sized, inside_one_tile, grid.crs) == header + 250_000
    assert notes == {"c: no raster:bands data_type, assumed uint16": {"b"}}
    bare = plan_reads.asset_raster(_item(gsd=20), "b", grid, "uint16", notes)
    assert bare.transform.a == 20 and bare.crs == grid.crs
    assert notes["c: no proj:shape/proj:transform, footprint from the item bbox"] == {"b"}


def test_read_bytes_of_an_asset_in_another_crs() -> None:
    """A UTM 32N asset read for a UTM 31N grid: the window is reprojected before tiles are counted."""
    from eowatch.pipelines.grid import GridSpec

    grid = GridSpec("EPSG:32631", 10.0, (700000, 5640000, 702560, 5642560), 256)
    left, _, _, top = plan_reads.transformer("EPSG:32631", "EPSG:32632").transform_bounds(*grid.bounds)
    # the window starts 512-513 px right of and below the asset's corner: inside its second tile
    origin = (math.floor(left / 10) * 10 - 5120, math.ceil(top / 10) * 10 + 5120)
    item = _item(**{"proj:shape": [2048, 2048], "proj:transform": [10, 0, origin[0], 0, -10, origin[1]]})
    item["properties"] = {"proj:epsg": 32632}
    raster = plan_reads.asset_raster(item, "b", grid, "uint16", {})
    assert raster.crs == "EPSG:32632"
    read = plan_reads.read_bytes(raster, grid.bounds, grid.crs)
    assert read == plan_reads.COG_HEADER_BYTES + plan_reads.COG_BLOCK_PX**2 * 2


@pytest.mark.realdata
def test_plan_of_real_planetary_computer_items(shared_data: Path, tmp_path: Path) -> None:
    """13 real S2 L2A items of tile 35MNM (proj metadata, no data_type): an optical cube-only plan."""
    import datetime as dt

    from eowatch.pipelines.spec import MonitorConfig

    path = shared_data / "stac" / "odc_stac_items" / "site2-2020_jun_jul-35MNM.geojson"
    items = json.loads(path.read_text())["features"]
    lon = sum(f["bbox"][0] for f in items) / len(items) + 0.2
    lat = sum(f["bbox"][1] for f in items) / len(items) + 0.2
    config = MonitorConfig(
        stac_url="http://unused",
        bbox=(lon, lat, lon + 0.1, lat + 0.1),
        start=dt.date(2020, 6, 1),
        end=dt.date(2020, 7, 31),
        out=str(tmp_path),
        s1_collection=None,
    )
    run = stages.prepare_run(config, with_model=False)
    plan = plan_run(run, items, ROOMY)
    (cube,) = plan.stages  # no model: no change stage
    h, w = run.spec.grid.shape
    assert cube.chunks == math.ceil(h / 256) * math.ceil(w / 256) and cube.tasks == math.ceil(cube.chunks / 2)
    assert cube.acquisitions == len({f["properties"]["datetime"][:10] for f in items})
    # at least every pixel of every acquisition of the 7 assets once as uint16 (20 m ones a quarter)
    assert cube.read_bytes >= h * w * cube.acquisitions * 2 * (4 + 3 / 4)
    guessed = "sentinel-2-l2a: no raster:bands data_type, assumed uint16"
    assert plan.warnings == (f"{guessed} (assets B02, B03, B04, B08, B11, B12, SCL)",)
