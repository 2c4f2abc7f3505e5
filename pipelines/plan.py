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
- **Peak memory per worker**: a task's working set is a measured factor (``*_WORKING_SET``) times the
  bytes of the arrays one chunk loads and writes, plus a fixed allowance for buffers outside numpy and
  the parsed STAC items every cube/VHR task loads. A worker runs ``threads_per_worker`` tasks at once on
  top of its runtime (an idle worker plus the libraries the stages imported so far).
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
from eowatch.pipelines.assets import resolve_asset_keys
from eowatch.pipelines.cube import cube_variables
from eowatch.pipelines.inference import change_variables, halo_window
from eowatch.pipelines.plan_reads import (
    AssetReads,
    Footprints,
    Notes,
    band_assets,
    chunk_bounds,
    chunk_lonlat,
    note,
    solar_day_count,
)

log = logging.getLogger("eowatch")
MIB = 1024**2
StageName = Literal["cube", "vhr", "change", "crop_type", "landcover", "vhr_change", "vhr_landcover"]
#: Stages that run a model over a cube the run wrote (the analysis or the VHR cube, not the archive).
MODEL_STAGES: tuple[str, ...] = ("change", "crop_type", "landcover", "vhr_change", "vhr_landcover")
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

#: Cube task working set / bytes of the arrays one chunk loads (S2 bands + SCL as uint16 with the cloud
#: halo, S1 as float32) and writes (the composites). tracemalloc peak of one ``cube.compute_region``:
#: 2.2-2.4 for 128/256/512 px chunks on the seed-7 2.56 km and seed-5 5.12 km archives; set with margin.
CUBE_WORKING_SET = 2.8
#: The same for a VHR chunk (uint8 bands per acquisition day loaded + written): tracemalloc peak of
#: ``vhr.compute_vhr_region`` on the seed-7 archive (1024 px chunks, 3 dates): 1.15; set with margin.
VHR_WORKING_SET = 1.6
#: Memory a cube or VHR task holds outside numpy (GDAL decode buffers, odc-stac): peak RSS growth minus
#: tracemalloc peak of one ``compute_region`` call in a fresh process, 7-16 MiB.
READER_TASK_FIXED_BYTES = 16 * MIB
#: Change task working set / bytes of the float32 cube window (halo included), the network's input and,
#: per engine window, every period's input and features plus one transition's temporaries, and the
#: outputs (``_change_tally``). Peak RSS growth of one ``inference.infer_region`` call in a fresh process
#: (after a 16 px warm-up): 1.18-1.3 for 256/512 px chunks, up to 1.64 for 64/128 px ones, where the
#: fixed part covers the difference; set to 1.4 + 20 MiB.
CHANGE_WORKING_SET = 1.4
CHANGE_TASK_FIXED_BYTES = 20 * MIB
#: VHR change task bytes per pixel of its read window (halo and padding included), by part, for T dates,
#: P pairs and C bands: the read and its float, no-data and normalised copies (17 T C), the engine's
#: window batch and its channels-last copy (8 T C), every date's encoder features (4 x 15.5 channels of
#: ``SiameseDiffUNet`` width 16 summed over its scales: 62 T), one decoder pass's temporaries at full
#: resolution (differences, upsampled and concatenated features, a block's output: 4 x 66 channels) and
#: per pair the probabilities, the assembled region and the outputs (45 P).
VHR_CHANGE_BYTES_PER_BAND_DATE = 25
VHR_CHANGE_BYTES_PER_DATE = 62
VHR_CHANGE_BYTES_DECODER = 264
VHR_CHANGE_BYTES_PER_PAIR = 45
#: VHR change task working set / the bytes above. Peak RSS growth of one ``vhr_change.vhr_change_region``
#: call in a fresh process (after a 16 px warm-up, 1024 px chunks of a 1530 px cube): 821 MiB for a
#: 1152 px window with 3 dates (the formula: 925 MiB), 460 MiB for a 640 x 1152 px one, 656 MiB with 2
#: dates (formula 740 MiB): the formula bounds it by 1.13x; set to 1.0.
VHR_CHANGE_WORKING_SET = 1.0
#: Land-cover task bytes per byte of its float32 read window (halo included: ``read_window``'s per-band
#: reads and their stack, one period's NaN-padded copy and normalised network input) and per pixel of an
#: engine window (``LandCoverUNet`` width 12, three levels: its activations, ~136 float32 channels at
#: full resolution). Peak RSS growth of one ``landcover.landcover_region`` call in a fresh process (after
#: a 16 px warm-up, 3 periods): 49 MiB for a 184 px window (128 px chunk), 97-113 MiB for 312 px (256 px
#: chunk; 145 MiB with 6 periods), 162-171 MiB for 568 px (512 px chunk); the formula (plus the outputs
#: and ``CHANGE_TASK_FIXED_BYTES``) bounds them by 1.15-1.4x.
LANDCOVER_BYTES_PER_READ_BYTE = 5
LANDCOVER_BYTES_PER_WINDOW_PX = 544
#: VHR land-cover task bytes per pixel of its read window (halo and padding included) for T dates and C
#: bands: the uint8 read and its float, no-data and normalised copies (25 T C), the engine's window
#: batch per date (25 T) and ``VhrLandCoverUNet``'s activations over the window (width 16, four levels:
#: 270). Peak RSS growth of one ``vhr_landcover.vhr_landcover_region`` call (a randomly initialised
#: network of the trained shape: memory does not depend on the weights) in a fresh process after a
#: 16 px warm-up, 1024 px chunks of a 1530 px cube: 429 / 507 / 632 MiB for a 1152 px window with 1 / 2
#: / 3 dates, 412 MiB for 640 x 1152 px with 3; the formula (plus ``CHANGE_TASK_FIXED_BYTES``) bounds
#: them by 1.02-1.21x.
VHR_LANDCOVER_BYTES_PER_BAND_DATE = 25
VHR_LANDCOVER_BYTES_PER_DATE = 25
VHR_LANDCOVER_BYTES_NETWORK = 270
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
    infer_px_per_s: float = 0.3e6
    """Output pixels x transitions per second of ``infer_region`` (Zarr, tiled engine, CVA, SAR) on one
    torch thread: latest.json inference benchmark (2026-11-25T20:08), row "engine infer_region"."""
    source: str = "benchmarks/results/latest.json (2026-11-25, 2-core AMD EPYC, 2 workers x 1 thread)"
    """Where the rates come from (shown with the time estimate)."""


@dataclass(frozen=True)
class ClusterResources:
    """What a plan must fit into: Dask workers and the memory each may use."""

    workers: int
    """Worker processes."""
    threads_per_worker: int
    """Tasks a worker runs at once."""
    memory_per_worker: int
    """Memory limit of one worker, bytes."""
    cores: int | None = None
    """CPU cores the workers share (local clusters); None when unknown (a remote scheduler)."""
    system_memory: int | None = None
    """Memory of the machine local workers share, bytes; None for a remote scheduler."""
    kind: str = "local"
    """Cluster kind as ``infra.cluster.resolve_kind`` resolves it."""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1 or self.memory_per_worker < 1:
            raise InputError("a cluster needs at least one worker, one thread and some memory per worker")

    @property
    def threads(self) -> int:
        """Tasks the whole cluster runs at once."""
        return self.workers * self.threads_per_worker


def cluster_resources(config: Any) -> ClusterResources:
    """The resources ``infra.cluster.cluster_client(config)`` gives, for an ``infra.cluster.ClusterConfig``.

    A worker's memory is its ``memory_limit`` parsed as distributed parses it ("4GiB", "auto", a
    fraction, None), capped at the system memory divided among the workers, since local workers share
    one machine (LocalCluster's own default). For kind "address" the scheduler is asked.

    Raises:
        InputError: the scheduler of an "address" cluster cannot be reached or has no workers.
    """
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT
    from distributed.worker_memory import parse_memory_limit

    from eowatch.infra.cluster import resolve_kind

    kind = resolve_kind(config)
    if kind == "address":
        return _remote_resources(str(config.address))
    if kind == "slurm":
        slurm = config.slurm
        workers = slurm.jobs * slurm.processes
        return ClusterResources(workers, slurm.threads_per_worker(), slurm.worker_memory_bytes(), kind=kind)
    if kind == "kubernetes":
        return _kubernetes_resources(config.kubernetes)
    workers = config.n_workers
    if kind == "cuda":
        import torch

        workers = max(1, torch.cuda.device_count())
    limit = parse_memory_limit(config.memory_limit, config.threads_per_worker, logger=log) or MEMORY_LIMIT
    memory = min(int(limit), MEMORY_LIMIT // workers)
    return ClusterResources(workers, config.threads_per_worker, memory, CPU_COUNT, MEMORY_LIMIT, kind)


def _kubernetes_resources(config: Any) -> ClusterResources:
    """Workers of the DaskCluster's default group: replicas, ``--nthreads`` and ``--memory-limit`` of
    its worker container (the container's memory limit where the Dask limit is "auto" or absent)."""
    from dask.utils import parse_bytes

    from eowatch.infra.hpc.k8s import load_dask_specs

    worker = load_dask_specs(config).cluster["spec"]["worker"]
    container = worker["spec"]["containers"][0]
    args = [str(a) for a in container.get("args") or []]

    def option(name: str) -> str | None:
        return args[args.index(name) + 1] if name in args[:-1] else None

    resources = container.get("resources") or {}
    limit = option("--memory-limit")
    if limit in (None, "auto"):
        limit = (resources.get("limits") or {}).get("memory") or (resources.get("requests") or {}).get(
            "memory"
        )
    if not limit:
        raise InputError(f"cannot tell the workers' memory from {config.spec_path}: set --memory-limit")
    threads = int(option("--nthreads") or 1)
    return ClusterResources(int(worker.get("replicas", 1)), threads, parse_bytes(limit), kind="kubernetes")


def _remote_resources(address: str) -> ClusterResources:
    from distributed import Client

    try:
        with Client(address, timeout="10s", set_as_default=False) as client:
            workers = list(client.scheduler_info()["workers"].values())
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    if not workers:
        raise InputError(f"the Dask scheduler at {address} has no workers; start some and plan again")
    threads = min(int(w["nthreads"]) for w in workers)
    memory = min(int(w.get("memory_limit") or 2**50) for w in workers)
    return ClusterResources(len(workers), threads, memory, None, None, "address")


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


# --- per-stage tallies -------------------------------------------------------------------------------


@dataclass
class _Tally:
    """Per-chunk figures of one stage, accumulated over its chunks."""

    chunks: int = 0
    read: int = 0
    output: int = 0
    work: float = 0.0
    task: int = 0
    steps: int = 0
    window: tuple[int, int] = (0, 0)

    def add(
        self, read: int, output: int, work: float, task: int, steps: int, window: tuple[int, int]
    ) -> None:
        self.chunks += 1
        self.read += read
        self.output += output
        self.work += work
        if task > self.task:
            self.task, self.window = task, window
        self.steps = max(self.steps, steps)


def _cube_tally(run: stages.Run, items: Sequence[dict[str, Any]], notes: Notes) -> _Tally:
    """``cube.compute_region`` per chunk: S2 bands + SCL with the cloud halo, S1 on the chunk."""
    spec, grid = run.spec, run.spec.grid
    s2 = Footprints([d for d in items if d.get("collection") == spec.s2_collection])
    s1 = Footprints([d for d in items if spec.s1_collection and d.get("collection") == spec.s1_collection])
    s2_reads, s1_reads = AssetReads(grid, "uint16"), AssetReads(grid, "float32")
    out_px = len(spec.periods) * sum(dt.itemsize for dt, _, _ in cube_variables(spec).values())
    b, tally = spec.cloud_buffer_px, _Tally()
    for key in grid.chunks():
        lonlat = chunk_lonlat(grid, key)
        lon = (lonlat[0] + lonlat[2]) / 2
        ys, xs = grid.chunk_slices(key)
        h, w = ys.stop - ys.start, xs.stop - xs.start
        hits2, hits1 = s2.query(lonlat), s1.query(lonlat)
        read = loaded = 0
        if hits2:  # loaded as uint16
            keys = dict.fromkeys(resolve_asset_keys(hits2[0], [*spec.s2_bands, "scl"]).values(), 1)
            read += s2_reads(hits2, keys, chunk_bounds(grid, key, b))
            loaded += 2 * solar_day_count(hits2, lon) * (h + 2 * b) * (w + 2 * b) * len(keys)
        if hits1:  # loaded as float32
            keys = dict.fromkeys(resolve_asset_keys(hits1[0], spec.s1_bands).values(), 1)
            read += s1_reads(hits1, keys, chunk_bounds(grid, key, 0))
            loaded += 4 * solar_day_count(hits1, lon) * h * w * len(keys)
        task = round(CUBE_WORKING_SET * (loaded + out_px * h * w)) + READER_TASK_FIXED_BYTES
        steps = max(solar_day_count(hits2, lon), solar_day_count(hits1, lon))
        tally.add(read, out_px * grid.chunk**2, read, task, steps, (h + 2 * b, w + 2 * b))
    for reads in (s2_reads, s1_reads):
        for what, keys in reads.notes.items():
            note(notes, what, *keys)
    return tally


def _vhr_tally(run: stages.Run, items: Sequence[dict[str, Any]], notes: Notes) -> _Tally:
    """``vhr.compute_vhr_region`` per chunk of the nested grid (none without VHR over the grid)."""
    from eowatch.pipelines import vhr

    coll = run.config.vhr_collection
    found = [d for d in items if coll and d.get("collection") == coll]
    grid = vhr.vhr_grid(run.spec.grid, found) if found else None
    tally = _Tally()
    if grid is None:
        return tally
    bands, all_days = len(vhr.VHR_BANDS), len(vhr.acquisition_days(found))
    footprints, reads = Footprints(found), AssetReads(grid, "uint8")
    for key in grid.chunks():
        lonlat = chunk_lonlat(grid, key)
        ys, xs = grid.chunk_slices(key)
        h, w = ys.stop - ys.start, xs.stop - xs.start
        hits = footprints.query(lonlat)
        days = solar_day_count(hits, (lonlat[0] + lonlat[2]) / 2)
        read = reads(hits, band_assets(hits[0], vhr.VHR_BANDS) if hits else {}, chunk_bounds(grid, key, 0))
        task = round(VHR_WORKING_SET * (days + all_days) * h * w * bands) + READER_TASK_FIXED_BYTES
        tally.add(read, all_days * bands * grid.chunk**2, read, task, days, (h, w))
    for what, keys in reads.notes.items():
        note(notes, what, *keys)
    return tally


def _change_tally(run: stages.Run, device: str = "cpu") -> _Tally:
    """``inference.infer_region`` per chunk: a halo window of the cube, the model's windows, baselines.

    The model runs through ``models.engine`` (``default_config`` for ``device``): windows of at most
    ``tile`` px plus its halo, ``batch_windows`` at a time, every period encoded once per window.
    """
    import torch

    from eowatch.models.engine import default_config, plan_axis
    from eowatch.models.registry import get

    spec, grid, change = run.spec, run.spec.grid, run.config.change
    card = get(change.model).card
    arch = card.architecture_args
    halo = change.halo if change.halo is not None else card.receptive_field_px // 2 + 1
    channels = len(dict.fromkeys([*card.bands, *spec.s2_bands, *(["vv_db"] if spec.s1_collection else [])]))
    t, inputs_ch, width, classes = (
        len(spec.periods),
        int(arch["in_channels"]),
        int(arch["width"]),
        int(arch["n_classes"]),
    )
    engine = default_config(torch.device(device), card.receptive_field_px // 2)
    variables = change_variables()
    if not spec.s1_collection:
        variables = {k: v for k, v in variables.items() if not k.startswith("sar_")}
    out_px = (t - 1) * sum(dt.itemsize for dt, _, _ in variables.values())
    tally = _Tally()
    for key in grid.chunks():
        ry, rx, cy, cx = halo_window(grid, key, halo)
        hh, ww = ry.stop - ry.start, rx.stop - rx.start
        px = (cy.stop - cy.start) * (cx.stop - cx.start)
        wy = plan_axis(hh, cy, engine.tile, engine.halo, engine.overlap)
        wx = plan_axis(ww, cx, engine.tile, engine.halo, engine.overlap)
        windows = min(engine.batch_windows, len(wy) * len(wx))
        window_px = windows * (wy[0].stop - wy[0].start) * (wx[0].stop - wx[0].start)
        read = 4 * t * channels * hh * ww  # read_window: (period, C, y, x) float32
        # the network's input over the halo window, then per window: every period's input and features,
        # and one transition's difference, concatenation and head output at a time
        network = 4 * t * inputs_ch * hh * ww + 4 * window_px * (t * (inputs_ch + width) + 5 * width)
        outputs = out_px * px + 2 * 4 * (t - 1) * classes * px  # variables + probabilities (engine, crop)
        task = round(CHANGE_WORKING_SET * (read + network + outputs)) + CHANGE_TASK_FIXED_BYTES
        tally.add(read, out_px * grid.chunk**2, (t - 1) * px, task, t, (hh, ww))
    return tally


def _crop_tally(run: stages.Run) -> _Tally:
    """``crops.crop_region`` per chunk (no halo): the chunk's series, the per-step features, the outputs.

    The work is counted in pixels of the season at the change model's per-pixel rate: an upper bound,
    since the L-TAE costs far less per pixel than the convolutional change model.
    """
    from eowatch.models.registry import get
    from eowatch.pipelines.crops import crop_variables

    name = run.config.crop_model
    assert name is not None
    card, grid, t = get(name).card, run.spec.grid, len(run.spec.periods)
    out_px = sum(dt.itemsize for dt, _, _ in crop_variables(name).values())
    tally = _Tally()
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        px = (ys.stop - ys.start) * (xs.stop - xs.start)
        read = 4 * t * len(card.bands) * px  # read_window: (period, band, y, x) float32
        # (N, T, B) series, (N, T, C) features and the attention's per-step embeddings, probabilities
        per_step = len(card.bands) + 2 * len(card.inputs_per_step) + 64
        network = 4 * px * t * per_step + 8 * px * len(card.classes)
        task = round(CHANGE_WORKING_SET * (read + network + out_px * px)) + CHANGE_TASK_FIXED_BYTES
        tally.add(read, out_px * grid.chunk**2, px, task, t, (ys.stop - ys.start, xs.stop - xs.start))
    return tally


def _vhr_change_tally(run: stages.Run, items: Sequence[dict[str, Any]]) -> _Tally:
    """``vhr_change.vhr_change_region`` per chunk of the VHR grid: the chunk's window with the model's
    halo and padding, every date encoded, each consecutive pair decoded (none without a VHR pair).

    Raises:
        ModelError: the model does not fit the VHR cube (bands, pixel size), before anything runs.
    """
    from eowatch.models.registry import get
    from eowatch.models.vhr_change import chunk_tiling
    from eowatch.pipelines import vhr, vhr_change

    name, coll = run.config.vhr_change_model, run.config.vhr_collection
    found = [d for d in items if coll and d.get("collection") == coll]
    grid = vhr.vhr_grid(run.spec.grid, found) if name and found else None
    tally = _Tally()
    if grid is None or name is None or len(vhr.acquisition_days(found)) < 2:
        return tally
    card = get(name).card
    vhr_change.check_vhr_cube(card, vhr.VHR_BANDS, grid.resolution)
    t, c, tiling = len(vhr.acquisition_days(found)), len(card.bands), chunk_tiling(card)
    per_px = (
        VHR_CHANGE_BYTES_PER_BAND_DATE * t * c
        + VHR_CHANGE_BYTES_PER_DATE * t
        + VHR_CHANGE_BYTES_DECODER
        + VHR_CHANGE_BYTES_PER_PAIR * (t - 1)
    )
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        window = vhr_change.chunk_window(grid.shape, ys, xs, tiling)
        hh = window.rows.stop - window.rows.start + window.pad[0]
        ww = window.cols.stop - window.cols.start + window.pad[1]
        read = t * c * (window.rows.stop - window.rows.start) * (window.cols.stop - window.cols.start)
        task = round(VHR_CHANGE_WORKING_SET * per_px * hh * ww) + CHANGE_TASK_FIXED_BYTES
        px = (ys.stop - ys.start) * (xs.stop - xs.start)
        tally.add(read, 5 * (t - 1) * grid.chunk**2, (t - 1) * px, task, t, (hh, ww))
    return tally


def _landcover_tally(run: stages.Run, device: str = "cpu") -> _Tally:
    """``landcover.landcover_region`` per chunk: the chunk's window with ``LANDCOVER_HALO`` px of halo
    read for every period, then one period at a time through the engine's windows; uint8 codes written.
    """
    import torch

    from eowatch.models.landcover import LANDCOVER_HALO, landcover_engine_config
    from eowatch.models.registry import get

    name = run.config.landcover_model
    assert name is not None
    card, grid, t = get(name).card, run.spec.grid, len(run.spec.periods)
    engine = landcover_engine_config(torch.device(device))
    k, tally = len(card.classes), _Tally()
    for key in grid.chunks():
        ry, rx, cy, cx = halo_window(grid, key, LANDCOVER_HALO)
        hh, ww = ry.stop - ry.start, rx.stop - rx.start
        h, w = cy.stop - cy.start, cx.stop - cx.start
        read = 4 * t * len(card.bands) * hh * ww  # read_window: (period, band, y, x) float32
        side_y, side_x = (min(engine.tile, n) + 2 * engine.halo + engine.overlap for n in (h, w))
        windows = min(engine.batch_windows, math.ceil(h / engine.tile) * math.ceil(w / engine.tile))
        network = LANDCOVER_BYTES_PER_WINDOW_PX * windows * side_y * side_x
        outputs = h * w * (8 * k + t)  # one period's probabilities (engine, masked copy), every code
        task = LANDCOVER_BYTES_PER_READ_BYTE * read + network + outputs + CHANGE_TASK_FIXED_BYTES
        tally.add(read, t * grid.chunk**2, t * h * w, task, t, (hh, ww))
    return tally


def _vhr_landcover_tally(run: stages.Run, items: Sequence[dict[str, Any]]) -> _Tally:
    """``vhr_landcover.vhr_landcover_region`` per chunk of the VHR grid: the chunk's window with the
    model's halo and padding, every date classified (none without VHR over the grid).

    Raises:
        ModelError: the model does not fit the VHR cube (bands, pixel size), before anything runs.
    """
    from eowatch.models.registry import get
    from eowatch.models.vhr_change import chunk_tiling
    from eowatch.pipelines import vhr, vhr_change, vhr_landcover

    name, coll = run.config.vhr_landcover_model, run.config.vhr_collection
    found = [d for d in items if coll and d.get("collection") == coll]
    grid = vhr.vhr_grid(run.spec.grid, found) if name and found else None
    tally = _Tally()
    if grid is None or name is None:
        return tally
    card = get(name).card
    vhr_landcover.check_vhr_landcover_cube(card, vhr.VHR_BANDS, grid.resolution)
    t, c, tiling = len(vhr.acquisition_days(found)), len(card.bands), chunk_tiling(card)
    per_px = (
        VHR_LANDCOVER_BYTES_PER_BAND_DATE * t * c
        + VHR_LANDCOVER_BYTES_PER_DATE * t
        + VHR_LANDCOVER_BYTES_NETWORK
    )
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        window = vhr_change.chunk_window(grid.shape, ys, xs, tiling)
        hh = window.rows.stop - window.rows.start + window.pad[0]
        ww = window.cols.stop - window.cols.start + window.pad[1]
        read = t * c * (window.rows.stop - window.rows.start) * (window.cols.stop - window.cols.start)
        px = (ys.stop - ys.start) * (xs.stop - xs.start)
        tally.add(read, t * grid.chunk**2, t * px, per_px * hh * ww + CHANGE_TASK_FIXED_BYTES, t, (hh, ww))
    return tally


def _default(func: Callable[..., Any], name: str) -> int:
    """A function's default for one parameter (the stages' batch sizes live there)."""
    return int(inspect.signature(func).parameters[name].default)


def _stage(
    name: StageName, tally: _Tally, per_task: int, items_bytes: int, runtime: int, rate: float, cluster: Any
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
        landcover, vhr_change and vhr_landcover when the run names their models, the VHR ones only with
        VHR over the grid and vhr_change with two VHR dates): chunks, tasks, bytes read and written, task
        working set, worker runtime and time, and the run's totals.
    """
    rate = throughput or Throughput()
    notes: Notes = {}
    items_bytes = round(ITEMS_MEMORY_FACTOR * len(json.dumps(list(items))))
    reader = WORKER_IDLE_BYTES + READER_RUNTIME_BYTES
    per_task = _default(stages.cube_stage_run, "per_task")
    plans = [
        _stage(
            "cube",
            _cube_tally(run, items, notes),
            per_task,
            items_bytes,
            reader,
            rate.cube_bytes_per_s,
            cluster,
        )
    ]
    vhr = _vhr_tally(run, items, notes)
    if vhr.chunks:  # one chunk per task (stages.vhr_stage_run)
        plans.append(_stage("vhr", vhr, 1, items_bytes, reader, rate.vhr_bytes_per_s, cluster))
    if run.provenance.get("model"):  # a cube-only run (prepare_run(with_model=False)) infers nothing
        torch, per_task = reader + TORCH_RUNTIME_BYTES, run.config.change.regions_per_task
        change = _change_tally(run, "cuda" if cluster.kind == "cuda" else "cpu")
        plans.append(_stage("change", change, per_task, 0, torch, rate.infer_px_per_s, cluster))
    if run.config.crop_model:
        torch, per_task = reader + TORCH_RUNTIME_BYTES, run.config.change.regions_per_task
        crops = _stage("crop_type", _crop_tally(run), per_task, 0, torch, rate.infer_px_per_s, cluster)
        plans.append(crops)
    torch, per_task = reader + TORCH_RUNTIME_BYTES, run.config.change.regions_per_task
    if run.config.landcover_model:
        landcover = _landcover_tally(run, "cuda" if cluster.kind == "cuda" else "cpu")
        plans.append(_stage("landcover", landcover, per_task, 0, torch, rate.landcover_px_per_s, cluster))
    vhr_change = _vhr_change_tally(run, items)
    if vhr_change.chunks:  # one chunk per task (stages.vhr_change_stage_run)
        plans.append(_stage("vhr_change", vhr_change, 1, 0, torch, rate.vhr_change_px_per_s, cluster))
    vhr_landcover = _vhr_landcover_tally(run, items)
    if vhr_landcover.chunks:  # one chunk per task (stages.vhr_landcover_stage_run)
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
    steps = "periods" if stage.name in ("change", "crop_type", "landcover") else "acquisitions"
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
