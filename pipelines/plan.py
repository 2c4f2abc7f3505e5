"""Plan a monitoring run before running it: bytes to read, chunks, Dask tasks, peak memory, time.

Everything comes from STAC metadata and the run's spec; no pixel is read. The plan walks the chunks the
stages walk and, per chunk, selects the items they select (footprint intersecting the chunk's lon/lat
bounds), so chunk and task counts are exact and the per-chunk figures follow the data:

- **Bytes to read**, per chunk and asset read: the header (``COG_HEADER_BYTES``) plus the internal tiles
  the chunk's read window touches, rounded out to ``COG_BLOCK_PX`` tiles and clipped to the raster. A
  tile is counted at its uncompressed size (dtype from ``raster:bands`` x pixels, geometry from
  ``proj:shape``/``proj:transform``/``proj:bbox``, else the item bbox at the asset's resolution), or,
  when the asset has ``file:size``, at its share of the file. Uncompressed tiles are an upper bound for
  compressed COGs (1.8-2.6x the bytes served on the synthetic archive).
- **Peak memory per worker**: a task's working set (``pipelines.plan_stages``) is a measured factor
  (``*_WORKING_SET``) times the bytes of the arrays one chunk loads and writes, plus a fixed allowance
  for buffers outside numpy and the parsed STAC items every cube/VHR task loads. A worker runs
  ``threads_per_worker`` tasks at once on top of its runtime (an idle worker plus the libraries the
  stages imported so far).
- **Time**: per-thread rates derived from ``benchmarks/results/latest.json`` (``Throughput``): an
  estimate for hardware like the benchmark machine's, not a promise.

``check_fits`` refuses a plan whose peak per worker exceeds what Dask lets a worker use.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from eowatch.errors import InputError
from eowatch.pipelines import stages
from eowatch.pipelines.plan_cluster import ClusterResources, cluster_resources
from eowatch.pipelines.plan_reads import Notes
from eowatch.pipelines.plan_stages import (
    CHANGE_TASK_FIXED_BYTES,
    MIB,
    READER_TASK_FIXED_BYTES,
    Tally,
    change_tally,
    crop_tally,
    cube_tally,
    landcover_tally,
    semantic_change_tally,
    vhr_change_tally,
    vhr_landcover_tally,
    vhr_tally,
)

log = logging.getLogger("eowatch")
StageName = Literal[
    "cube", "vhr", "change", "crop_type", "landcover", "vhr_change", "vhr_landcover", "semantic_change"
]
#: Stages that run a model over a cube the run wrote (the analysis or the VHR cube, not the archive).
MODEL_STAGES: tuple[str, ...] = (
    "change",
    "crop_type",
    "landcover",
    "vhr_change",
    "vhr_landcover",
    "semantic_change",
)
#: Stages on the nested VHR grid, which keeps its own chunks whatever the run's ``chunk``.
VHR_GRID_STAGES: tuple[str, ...] = ("vhr", "vhr_change", "vhr_landcover")


#: RSS of an idle Dask worker (benchmarks/results/latest.json, memory benchmark: worker_idle_MiB 104).
WORKER_IDLE_BYTES = 104 * MIB
#: RSS a worker gains when it first runs a cube or VHR task, before any chunk-sized array: importing
#: ``eowatch.pipelines.cube`` (odc-stac, rasterio/GDAL, xarray, zarr, fsspec/boto3: 182 MiB, psutil RSS
#: of a process with ``distributed`` imported, before and after), the first read's GDAL/PROJ set-up and
#: reader threads (39 MiB: RSS after a 16 px ``compute_region``) and GDAL's 16 MiB /vsicurl/ cache.
READER_RUNTIME_BYTES = 240 * MIB
#: RSS the first change task adds: torch, the model and the first forward pass's set-up (200 MiB: RSS
#: before and after a 16 px ``infer_region`` in a process that had imported ``eowatch.pipelines.cube``;
#: a fresh CI venv measured ~30 MiB more for the change stage than the dev venv, and CI on 2026-11-25
#: sampled a change-stage worker 6.6 MiB above a 250 MiB allowance), set with margin.
TORCH_RUNTIME_BYTES = 290 * MIB

#: Peak memory of ``json.loads`` of the items file / its size (tracemalloc, 45 items: 4.75).
ITEMS_MEMORY_FACTOR = 5.0


@dataclass(frozen=True)
class Throughput:
    """Per worker-thread processing rates, for hardware like the benchmark machine's."""

    cube_bytes_per_s: float = 12.1e6
    """Planned read bytes (this module's estimate) a thread turns into composites per second. The cube
    benchmark of benchmarks/results/latest.json built its 512 x 512 px, 17-day S2 cube (seed-5 5.12 km
    archive) in 10.84 s on 2 worker threads; this module plans 262 MB of reads for that run."""
    vhr_bytes_per_s: float = 50e6
    """The same for VHR chunks (no benchmark covers them: the VHR stage of the seed-7 archive loaded its
    planned 201 MB in 1.3-2.0 s on 2 worker threads here)."""
    vhr_change_px_per_s: float = 0.2e6
    """Output pixels x pairs per second of ``vhr_change.vhr_change_region`` on one torch thread (no
    benchmark covers it: one 1024 px chunk with 3 dates, 2 pairs took 7-10 s here)."""
    landcover_px_per_s: float = 0.3e6
    """Output pixels x periods per second of ``landcover.landcover_region`` on one torch thread (no
    benchmark covers it: 256 and 512 px chunks of 3 periods ran at 0.36-0.38e6 here)."""
    vhr_landcover_px_per_s: float = 0.5e6
    """Output pixels x dates per second of ``vhr_landcover.vhr_landcover_region`` on one torch thread (no
    benchmark covers it: 1024 px chunks of 1-3 dates ran at 1.0-1.2e6 here)."""
    semantic_px_per_s: float = 0.15e6
    """Output pixels x transitions (x2 for a conditional model) per second of
    ``semantic_change.semantic_change_region`` on one torch thread (no benchmark covers it: 256 and
    512 px chunks of 6 periods ran at 0.12-0.16e6 here, while two trainings shared the 2 cores)."""
    infer_px_per_s: float = 0.3e6
    """Output pixels x transitions per second of ``infer_region`` (Zarr, tiled engine, CVA, SAR) on one
    torch thread: latest.json inference benchmark (2026-11-25T20:08), row "engine infer_region"."""
    source: str = "benchmarks/results/latest.json (2026-11-25, 2-core AMD EPYC, 2 workers x 1 thread)"
    """Where the rates come from (shown with the time estimate)."""


@dataclass(frozen=True)
class StagePlan:
    """The estimate for one chunked stage."""

    name: StageName
    chunks: int
    """Chunks of the stage's grid (the VHR stage has its own nested grid)."""
    tasks: int
    """Dask tasks (batches of chunks) the stage submits."""
    chunk_px: tuple[int, int]
    """(height, width) of the largest window one chunk reads, halo included, pixels."""
    acquisitions: int
    """Most time steps one chunk loads (solar days for cube/VHR, periods for change)."""
    read_bytes: int
    """Bytes read: COG bytes from the archive (cube, vhr) or analysis-cube values (change)."""
    output_bytes: int
    """Uncompressed bytes of the Zarr chunks written."""
    task_bytes: int
    """Peak working set of one task (its largest chunk), bytes."""
    items_bytes: int
    """Part of ``task_bytes`` that is the parsed STAC items every task of the stage loads."""
    runtime_bytes: int
    """Worker RSS before the task's arrays: idle worker plus the libraries the stages loaded so far."""
    peak_bytes: int
    """Peak RSS of one worker in this stage: its runtime plus one task per thread, or, if larger, what
    the earlier stages left resident plus the libraries this stage adds (freed task memory stays in the
    worker process: the allocator keeps it and later tasks reuse it)."""
    seconds: float
    """Estimated wall time of the stage on the cluster."""


@dataclass(frozen=True)
class RunPlan:
    """The estimate for a whole run (methods in the module docstring)."""

    run_token: str
    area_km2: float
    grid: dict[str, Any]
    """The analysis grid (``GridSpec.to_dict``)."""
    periods: int
    items: dict[str, int]
    """Searched items per collection."""
    cluster: ClusterResources
    stages: tuple[StagePlan, ...]
    headroom: float
    """Share of a worker's memory limit a plan may use: Dask pauses a worker there."""
    throughput_source: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
    """Metadata the estimate had to guess (no proj information, no data type)."""

    @property
    def chunks(self) -> int:
        return sum(s.chunks for s in self.stages)

    @property
    def tasks(self) -> int:
        return sum(s.tasks for s in self.stages)

    @property
    def read_bytes(self) -> int:
        """Bytes read from the archive (cube and VHR stages)."""
        return sum(s.read_bytes for s in self.stages if s.name not in MODEL_STAGES)

    @property
    def output_bytes(self) -> int:
        return sum(s.output_bytes for s in self.stages)

    @property
    def seconds(self) -> float:
        return round(sum(s.seconds for s in self.stages), 1)

    def peak_stage(self) -> StagePlan:
        """The stage with the largest peak per worker."""
        return max(self.stages, key=lambda s: s.peak_bytes)

    @property
    def peak_worker_bytes(self) -> int:
        return self.peak_stage().peak_bytes

    @property
    def usable_worker_bytes(self) -> int:
        return int(self.cluster.memory_per_worker * self.headroom)

    @property
    def fits(self) -> bool:
        return self.peak_worker_bytes <= self.usable_worker_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with the totals."""
        return {
            **asdict(self),
            "chunks": self.chunks,
            "tasks": self.tasks,
            "read_bytes": self.read_bytes,
            "output_bytes": self.output_bytes,
            "seconds": self.seconds,
            "peak_worker_bytes": self.peak_worker_bytes,
            "usable_worker_bytes": self.usable_worker_bytes,
            "fits": self.fits,
        }


def _default(func: Callable[..., Any], name: str) -> int:
    """A function's default for one parameter (the stages' batch sizes live there)."""
    return int(inspect.signature(func).parameters[name].default)


def _stage(
    name: StageName, tally: Tally, per_task: int, items_bytes: int, runtime: int, rate: float, cluster: Any
) -> StagePlan:
    """A stage's plan from its tally (``peak_bytes`` is filled in by ``plan_run``)."""
    tasks = math.ceil(tally.chunks / per_task)
    slots = min(cluster.threads, cluster.cores or cluster.threads, max(tasks, 1))
    return StagePlan(
        name=name,
        chunks=tally.chunks,
        tasks=tasks,
        chunk_px=tally.window,
        acquisitions=tally.steps,
        read_bytes=tally.read,
        output_bytes=tally.output,
        task_bytes=tally.task + items_bytes,
        items_bytes=items_bytes,
        runtime_bytes=runtime,
        peak_bytes=0,
        seconds=round(tally.work / rate / slots, 1),
    )


def _worker_peaks(stages: Sequence[tuple[str, int, int]], threads: int) -> list[int]:
    """Peak RSS of a worker in each stage, from (name, runtime, task bytes) in run order.

    Freed task memory stays in the worker process (the allocator keeps it for later tasks), so a stage
    starts from the previous stage's peak plus the libraries it adds, unless its own tasks need more.
    """
    peaks: list[int] = []
    for name, runtime, task in stages:
        resident = peaks[-1] + (TORCH_RUNTIME_BYTES if name == "change" else 0) if peaks else 0
        peaks.append(max(resident, runtime + threads * task))
    return peaks


def _headroom() -> float:
    """Share of its memory limit at which Dask pauses a worker (``distributed.worker.memory.pause``)."""
    import dask.config

    pause = dask.config.get("distributed.worker.memory.pause", 0.8)
    return float(pause) if pause else 0.95


def plan_run(
    run: stages.Run,
    items: Sequence[dict[str, Any]],
    cluster: ClusterResources,
    throughput: Throughput | None = None,
) -> RunPlan:
    """Estimate a run from its spec and its searched STAC items, reading no pixel.

    Args:
        run: the prepared run (``stages.prepare_run``).
        items: the searched items as plain dicts (what ``stages.search_stage`` writes to
            ``run.layout.items``).
        cluster: the workers it will run on (``cluster_resources``).
        throughput: processing rates; default ``Throughput()``, this machine's benchmark.

    Returns:
        Per stage, in the flow's order (cube; vhr when VHR items cover the grid; change; crop_type,
        landcover, semantic_change, vhr_change and vhr_landcover when the run names their models, the
        VHR ones only with VHR over the grid and vhr_change with two VHR dates): chunks, tasks, bytes
        read and written, task working set, worker runtime and time, and the run's totals.
    """
    rate = throughput or Throughput()
    notes: Notes = {}
    items_bytes = round(ITEMS_MEMORY_FACTOR * len(json.dumps(list(items))))
    reader = WORKER_IDLE_BYTES + READER_RUNTIME_BYTES
    per_task = _default(stages.cube_stage_run, "per_task")
    plans = [
        _stage(
            "cube",
            cube_tally(run, items, notes),
            per_task,
            items_bytes,
            reader,
            rate.cube_bytes_per_s,
            cluster,
        )
    ]
    vhr = vhr_tally(run, items, notes)
    if vhr.chunks:  # one chunk per task (stages.vhr_stage_run)
        plans.append(_stage("vhr", vhr, 1, items_bytes, reader, rate.vhr_bytes_per_s, cluster))
    if run.provenance.get("model"):  # a cube-only run (prepare_run(with_model=False)) infers nothing
        torch, per_task = reader + TORCH_RUNTIME_BYTES, run.config.change.regions_per_task
        change = change_tally(run, "cuda" if cluster.kind == "cuda" else "cpu")
        plans.append(_stage("change", change, per_task, 0, torch, rate.infer_px_per_s, cluster))
    if run.config.crop_model:
        torch, per_task = reader + TORCH_RUNTIME_BYTES, run.config.change.regions_per_task
        crops = _stage("crop_type", crop_tally(run), per_task, 0, torch, rate.infer_px_per_s, cluster)
        plans.append(crops)
    torch, per_task = reader + TORCH_RUNTIME_BYTES, run.config.change.regions_per_task
    if run.config.landcover_model:
        landcover = landcover_tally(run, "cuda" if cluster.kind == "cuda" else "cpu")
        plans.append(_stage("landcover", landcover, per_task, 0, torch, rate.landcover_px_per_s, cluster))
    if run.config.semantic_change_model:
        semantic = semantic_change_tally(run, "cuda" if cluster.kind == "cuda" else "cpu")
        plans.append(_stage("semantic_change", semantic, per_task, 0, torch, rate.semantic_px_per_s, cluster))
    vhr_change = vhr_change_tally(run, items)
    if vhr_change.chunks:  # one chunk per task (model_stages.vhr_change_stage_run)
        plans.append(_stage("vhr_change", vhr_change, 1, 0, torch, rate.vhr_change_px_per_s, cluster))
    vhr_landcover = vhr_landcover_tally(run, items)
    if vhr_landcover.chunks:  # one chunk per task (model_stages.vhr_landcover_stage_run)
        plans.append(
            _stage("vhr_landcover", vhr_landcover, 1, 0, torch, rate.vhr_landcover_px_per_s, cluster)
        )
    peaks = _worker_peaks(
        [(p.name, p.runtime_bytes, p.task_bytes) for p in plans], cluster.threads_per_worker
    )
    plans = [replace(p, peak_bytes=peak) for p, peak in zip(plans, peaks, strict=True)]
    counts: dict[str, int] = {}
    for d in items:
        counts[str(d.get("collection"))] = counts.get(str(d.get("collection")), 0) + 1
    return RunPlan(
        run_token=run.token,
        area_km2=round(run.spec.grid.area_km2, 4),
        grid=run.spec.grid.to_dict(),
        periods=len(run.spec.periods),
        items=counts,
        cluster=cluster,
        stages=tuple(plans),
        headroom=_headroom(),
        throughput_source=rate.source,
        warnings=tuple(f"{what} (assets {', '.join(sorted(keys))})" for what, keys in sorted(notes.items())),
    )


# --- refusing what cannot fit ------------------------------------------------------------------------


def format_bytes(n: float) -> str:
    """Bytes as MiB below 1 GiB, else GiB (binary units), e.g. "850 MiB", "1.9 GiB"."""
    if n < 1024**3:
        return f"{n / MIB:,.0f} MiB" if n >= 10 * MIB else f"{n / MIB:.1f} MiB"
    return f"{n / 1024**3:,.1f} GiB"


def _fixed_task_bytes(stage: StagePlan) -> int:
    """The part of a task's working set that does not scale with the chunk's area."""
    return stage.items_bytes + (
        CHANGE_TASK_FIXED_BYTES if stage.name in MODEL_STAGES else READER_TASK_FIXED_BYTES
    )


def _peak_with(plan: RunPlan, chunk: int | None = None, threads: int | None = None) -> int:
    """The plan's peak per worker with another chunk size or threads per worker (tasks scaled by the
    chunk's area; the VHR grid keeps its own chunks)."""
    scale = (chunk / int(plan.grid["chunk"])) ** 2 if chunk else 1.0
    rows = []
    for s in plan.stages:
        fixed = _fixed_task_bytes(s)
        task = s.task_bytes if s.name in VHR_GRID_STAGES else round(fixed + (s.task_bytes - fixed) * scale)
        rows.append((s.name, s.runtime_bytes, task))
    return max(_worker_peaks(rows, threads or plan.cluster.threads_per_worker))


def _suggestions(plan: RunPlan) -> list[str]:
    """What would make ``plan`` fit, most specific first."""
    stage, c, usable = plan.peak_stage(), plan.cluster, plan.usable_worker_bytes
    fixes = []
    chunk = int(plan.grid["chunk"]) // 2
    while chunk >= 64 and _peak_with(plan, chunk=chunk) > usable:
        chunk //= 2
    if chunk >= 64:
        fixes.append(f"a smaller chunk size (--chunk {chunk}: about {format_bytes(_peak_with(plan, chunk))})")
    fixes.append(f"at least {format_bytes(math.ceil(stage.peak_bytes / plan.headroom))} of memory per worker")
    fit = [t for t in range(c.threads_per_worker - 1, 0, -1) if _peak_with(plan, threads=t) <= usable]
    if fit:
        fixes.append(f"fewer threads per worker ({fit[0]})")
    if c.system_memory and c.workers > 1 and c.memory_per_worker >= c.system_memory // c.workers:
        fewer = int(c.system_memory * plan.headroom // stage.peak_bytes)
        if 1 <= fewer < c.workers:
            fixes.append(f"fewer workers ({fewer}: each gets a larger share of the machine's memory)")
    if stage.items_bytes * 4 >= stage.task_bytes:
        fixes.append(
            f"a smaller AOI or shorter date range (every task parses all {sum(plan.items.values())} "
            f"searched items: {format_bytes(stage.items_bytes)})"
        )
    elif stage.name not in MODEL_STAGES:
        fixes.append("a shorter date range (fewer acquisitions per chunk)")
    return fixes


def refusal_message(plan: RunPlan) -> str:
    """Why a plan does not fit its cluster and what to change (numbers in MiB/GiB)."""
    stage, c = plan.peak_stage(), plan.cluster
    threads = f"{c.threads_per_worker} thread{'s' if c.threads_per_worker > 1 else ''}"
    steps = (
        "periods" if stage.name in ("change", "crop_type", "landcover", "semantic_change") else "acquisitions"
    )
    own = stage.runtime_bytes + c.threads_per_worker * stage.task_bytes
    parts = (
        f"{format_bytes(stage.runtime_bytes)} runtime + {threads} x {format_bytes(stage.task_bytes)} per "
        f"{stage.chunk_px[0]}x{stage.chunk_px[1]} px chunk with {stage.acquisitions} {steps}"
        if own >= stage.peak_bytes
        else "what the earlier stages left resident in the worker + the libraries it adds"
    )
    return (
        f"run {plan.run_token} does not fit the cluster: the {stage.name} stage needs about "
        f"{format_bytes(stage.peak_bytes)} per worker ({parts}) but a worker may use "
        f"{format_bytes(plan.usable_worker_bytes)} ({plan.headroom:.0%} of its "
        f"{format_bytes(c.memory_per_worker)} memory limit); use " + ", or ".join(_suggestions(plan))
    )


def check_fits(plan: RunPlan) -> RunPlan:
    """Return ``plan`` if its peak per worker fits the workers' usable memory.

    Raises:
        InputError: it does not; the one-line message says what to change.
    """
    if not plan.fits:
        raise InputError(refusal_message(plan))
    return plan


# --- the flow's first task ---------------------------------------------------------------------------


def plan_stage(
    run: stages.Run,
    cluster_config: Any,
    info: Callable[[str], None] = log.info,
    on_plan: Callable[[RunPlan], None] | None = None,
) -> RunPlan:
    """Plan a run and refuse it when it cannot fit: the first task of the monitor flow.

    Uses the items ``search_stage`` pinned for the run (``run.layout.items``), and runs that search (which
    pins them) when there are none yet.

    Args:
        run: the prepared run.
        cluster_config: the ``infra.cluster.ClusterConfig`` the run will use.
        info: logger for progress lines.
        on_plan: called with the plan before the fit check, e.g. to publish it as artifacts, so a
            refused run shows its numbers too.

    Raises:
        InputError: the run does not fit the cluster (see ``check_fits``), or a bad cluster address.
        CatalogError: the search failed.
    """
    if not run.layout.items.exists():
        stages.search_stage(run, info)
    items = json.loads(run.layout.items.read_text())
    plan = plan_run(run, items, cluster_resources(cluster_config))
    info(
        f"plan: {plan.chunks} chunks in {plan.tasks} tasks, {format_bytes(plan.read_bytes)} to read, peak "
        f"{format_bytes(plan.peak_worker_bytes)} of {format_bytes(plan.usable_worker_bytes)} per worker, "
        f"about {plan.seconds:.0f} s"
    )
    if on_plan is not None:
        on_plan(plan)
    return check_fits(plan)
