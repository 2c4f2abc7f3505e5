"""Country-scale backfill estimate from the project's own benchmarks and real STAC metadata.

``python -m benchmarks.scaling_estimate [--bench PATH] [--shared DIR] [--json]`` prints the figures that
docs/scaling.md quotes: data volume, chunks and tasks, worker memory, worker-hours, wall time and cost of a
one-year monthly backfill of a 100,000 km² region and of metropolitan France.

Where each number comes from:

- **Throughput and memory**: ``benchmarks/results/latest.json`` (``make bench``). Benchmark 3 (memory) runs
  the real cube stage, S2 + S1, on the largest region with every worker busy for several tasks: its
  grid pixels x acquisitions per second per worker is the central cube throughput, and its worker peak
  RSS the memory base. Benchmark 1 (cube) is S2 only with one task per worker (start-up included): its
  lower throughput gives the upper bound. Benchmark 2's ``engine infer_region`` row is the inference
  throughput (one torch thread).
- **Bytes per km² and acquisition**: the ``file:size`` of real assets in ``../shared/data``: Earth Search
  ``sentinel-2-c1-l2a`` items (the 7 assets eowatch reads) and Planetary Computer ``sentinel-1-rtc``
  items (VV + VH, float32, the RTC product eowatch's SAR stage expects), divided by each item's footprint
  area in its UTM CRS.
- **Mission facts and prices**: the constants below, each with its source; prices are assumptions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import inspect
import json
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH_JSON = REPO / "benchmarks" / "results" / "latest.json"
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
S2_ITEMS = "stac/pystac_client_responses/items/earth-search__sentinel-2-c1-l2a.json"
S1_ITEMS = "stac/stac_geoparquet_items/sentinel-1-rtc-pc.json"
S2_ASSETS = ("blue", "green", "red", "nir", "swir16", "swir22", "scl")
"""The Earth Search asset keys eowatch reads (``CubeSpec.s2_bands`` + ``scl``)."""
S1_ASSETS = ("vv", "vh")

S2_REVISIT_DAYS = 2.5
"""ESA Sentinel-2 mission: 5-day revisit at the equator with two satellites, 2-3 days at mid-latitudes
(side-lap of adjacent orbits); France lies at 42-51 °N, so the midpoint."""
S1_REVISIT_DAYS = 3.0
"""ESA Sentinel-1: 6-day repeat cycle with two satellites (S1A and S1C since 2025), one ascending and
one descending pass each: 3 days. Orbit overlap gives more over Europe, so S1 figures are a lower bound."""
MGRS_OVERLAP = (109.8 / 100.0) ** 2
"""S2 L2A tiles are 109.8 km squares on a 100 km MGRS grid: overlaps are read from both tiles."""
USD_PER_VCPU_HOUR = 0.714 / 16
"""Assumption: AWS c7i.4xlarge (16 vCPU, 32 GiB) on-demand, us-west-2 (where Earth Search's COGs are),
0.714 USD/h in 2025 price lists; one Dask worker thread per vCPU."""
SCENARIOS: tuple[tuple[str, float, float], ...] = (
    ("region 100,000 km²", 100_000.0, 1.0),
    ("France (metropolitan)", 550_000.0, 1.25),
)
"""(name, land area km², grid overhang): the grid covers each region's bounding box; a country tiled
into ~50 km regions processes ~25 % more than its land area at coasts and borders (assumption)."""
YEAR = 2025
WINDOW_MONTHS = 3


@dataclass(frozen=True)
class MemoryFigures:
    """Benchmark 3 (memory): its largest region, workers of 1 thread."""

    worker_idle_mib: float
    worker_peak_mib: float
    """Worker RSS idle and at peak."""
    bench_s2_acq: int
    bench_s1_acq: int
    """S2 and S1 acquisitions of the benchmark's window in the synthetic archive."""
    px_acq_per_s: float
    """Cube stage, grid pixels x (S2 + S1) acquisitions per second per worker."""


@dataclass(frozen=True)
class BenchFigures:
    """What the estimate takes from ``latest.json``."""

    memory: MemoryFigures
    cube_px_acq_per_s_low: float
    """Benchmark 1 (S2 only, start-up included), grid pixels x acquisitions per second per worker: the
    upper bound of time."""
    infer_px_per_s: float
    """Benchmark 2, change inference, output pixels x transitions per second per thread."""

    @property
    def cube_px_acq_per_s(self) -> float:
        """Central cube throughput per 1-thread worker (benchmark 3)."""
        return self.memory.px_acq_per_s


@dataclass(frozen=True)
class Volumes:
    """Bytes per km² of footprint and per acquisition, medians over real items."""

    s2_bytes_per_km2: float
    s1_bytes_per_km2: float
    s2_items: int
    s1_items: int


def _bench(report: dict[str, Any], name: str) -> dict[str, Any]:
    for bench in report["benchmarks"]:
        if bench.get("name") == name and bench.get("rows"):
            return bench
    raise SystemExit(f"benchmark {name!r} is missing from the report: run `make bench`")


def archive_acquisitions(start: dt.date, end: dt.date) -> tuple[int, int]:
    """S2 and S1 acquisitions between two dates in the synthetic archive (its own schedule)."""
    from eowatch.archive.config import ArchiveConfig, s1_dates, s2_dates

    config = ArchiveConfig(start=start, end=end)
    return len(s2_dates(config)), len(s1_dates(config))


def _workers(bench: dict[str, Any]) -> int:
    found = re.search(r"(\d+) workers x 1 thread", bench["params"]["cluster"])
    if found is None:
        raise SystemExit(
            f"benchmark {bench['name']!r} ran on another cluster shape: {bench['params']['cluster']}"
        )
    return int(found.group(1))


def _row(bench: dict[str, Any], prefix: str) -> dict[str, Any]:
    for row in bench["rows"]:
        if str(row.get("method", "")).startswith(prefix):
            return row
    raise SystemExit(
        f"benchmark {bench['name']!r} has no row {prefix!r}: {[r.get('method') for r in bench['rows']]}"
    )


def load_memory(path: Path = BENCH_JSON) -> MemoryFigures:
    """Benchmark 3's figures: worker memory and the full cube stage's throughput."""
    memory = _bench(json.loads(path.read_text()), "memory")
    window = re.search(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", memory["params"]["archives"])
    if window is None:
        raise SystemExit("benchmark 3 params name no date window (YYYY-MM-DD..YYYY-MM-DD)")
    s2, s1 = archive_acquisitions(*(dt.date.fromisoformat(d) for d in window.groups()))
    big = max(memory["rows"], key=lambda r: r["size_km"])
    w, h = (int(v) for v in big["grid_px"].split("x"))
    return MemoryFigures(
        worker_idle_mib=big["worker_idle_MiB"],
        worker_peak_mib=big["worker_peak_MiB"],
        bench_s2_acq=s2,
        bench_s1_acq=s1,
        px_acq_per_s=w * h * (s2 + s1) / big["seconds"] / _workers(memory),
    )


def load_bench(path: Path = BENCH_JSON) -> BenchFigures:
    """Throughput and memory figures from a benchmark report."""
    report = json.loads(path.read_text())
    cube, infer = _bench(report, "cube"), _bench(report, "inference")
    return BenchFigures(
        memory=load_memory(path),
        cube_px_acq_per_s_low=_row(cube, "eowatch")["Mpx_per_s"] * 1e6 / _workers(cube),
        infer_px_per_s=_row(infer, "engine infer_region")["Mpx_per_s"] * 1e6,
    )


def _footprint_km2(item: dict[str, Any]) -> float:
    import shapely
    from pyproj import Transformer
    from shapely.geometry import shape

    props = item["properties"]
    crs = props.get("proj:code") or f"EPSG:{props['proj:epsg']}"
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    geom = shapely.transform(shape(item["geometry"]), lambda xy: np.column_stack(to_utm.transform(*xy.T)))
    return float(geom.area) / 1e6


def bytes_per_km2(
    items: Sequence[dict[str, Any]], assets: Sequence[str], min_km2: float = 1000.0
) -> list[float]:
    """Bytes of ``assets`` per km² of footprint, per item with every asset's ``file:size``.

    Items whose footprint is under ``min_km2`` are left out (COG headers and overviews dominate there).
    """
    out = []
    for item in items:
        sizes = [item.get("assets", {}).get(a, {}).get("file:size") for a in assets]
        area = _footprint_km2(item) if all(sizes) else 0.0
        if area >= min_km2:
            out.append(sum(sizes) / area)  # type: ignore[arg-type]
    return out


def load_volumes(shared: Path = SHARED_DATA) -> Volumes:
    """Median bytes per km² and acquisition of real S2 L2A and S1 RTC assets."""
    s2_doc = json.loads((shared / S2_ITEMS).read_text())
    s1_doc = json.loads((shared / S1_ITEMS).read_text())
    s2 = bytes_per_km2(s2_doc["features"], S2_ASSETS)
    s1 = bytes_per_km2(s1_doc["features"] if isinstance(s1_doc, dict) else s1_doc, S1_ASSETS)
    if not s2 or not s1:
        raise SystemExit("no real item with file:size for every asset: check ../shared/data")
    return Volumes(median(s2), median(s1), len(s2), len(s1))


def year_windows(year: int = YEAR, months: int = WINDOW_MONTHS) -> list[tuple[dt.date, dt.date]]:
    """Backfill windows of a calendar year, as ``eowatch backfill`` makes them (sharing boundary months)."""
    from eowatch.pipelines.regions import backfill_windows

    return backfill_windows(dt.date(year, 1, 1), dt.date(year, 12, 31), months)


def _days(window: tuple[dt.date, dt.date]) -> int:
    return (window[1] - window[0]).days + 1


def _months(window: tuple[dt.date, dt.date]) -> int:
    a, b = window
    return (b.year - a.year) * 12 + b.month - a.month + 1


def window_acquisitions(days: int) -> tuple[int, int]:
    """S2 and S1 acquisitions of one pixel in a window of ``days`` at France's latitudes."""
    return math.ceil(days / S2_REVISIT_DAYS), math.ceil(days / S1_REVISIT_DAYS)


def acquisition_bytes(chunk: int, cloud_buffer: int) -> tuple[int, int]:
    """Working-set bytes one more S2 and one more S1 acquisition add to a cube chunk (pipelines/cube.py).

    S2: the uint16 assets read with the cloud-buffer halo, float32 reflectance of the bands plus the
    compositing copy, and the boolean masks. S1: the float32 bands plus the averaging copy.
    """
    from eowatch.pipelines.spec import S1_BANDS, S2_BANDS

    halo_px, px = (chunk + 2 * cloud_buffer) ** 2, chunk**2
    s2 = len(S2_ASSETS) * halo_px * 2 + len(S2_BANDS) * px * 4 * 2 + halo_px + len(S2_BANDS) * px
    s1 = len(S1_BANDS) * px * 4 * 2
    return s2, s1


def _defaults() -> tuple[int, int, int, int]:
    """Chunk size, cloud buffer, chunks per cube task and per change task: the pipeline's defaults."""
    from eowatch.pipelines import stages
    from eowatch.pipelines.spec import ChangeSpec, CubeSpec, MonitorConfig

    chunk = MonitorConfig.__dataclass_fields__["chunk"].default
    buffer = CubeSpec.__dataclass_fields__["cloud_buffer_px"].default
    cube_per_task = inspect.signature(stages.cube_stage_run).parameters["per_task"].default
    return int(chunk), int(buffer), int(cube_per_task), ChangeSpec().regions_per_task


@functools.cache
def measure_torch_mib() -> float:
    """RSS that torch and the shipped model add to a cube worker process (MiB, measured in a fresh one).

    The process first imports what a cube task imports (benchmark 3's peak already holds those), then
    loads the change model as an inference task does.
    """
    code = (
        "import psutil, distributed, eowatch.pipelines.cube\n"
        "p = psutil.Process(); a = p.memory_info().rss\n"
        "from eowatch.models.registry import get; get('siamese-s2s1-change')\n"
        "print((p.memory_info().rss - a) / 2**20)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def worker_memory_mib(mem: MemoryFigures, s2_acq: int, s1_acq: int, threads: int, torch_mib: float) -> int:
    """Memory limit (MiB) a worker of ``threads`` threads needs for windows of ``s2_acq``/``s1_acq``.

    Per thread: benchmark 3's peak above idle, plus the working set of the acquisitions beyond the
    benchmark's; per process: the idle RSS and torch. Divided by Dask's pause fraction (a worker pauses
    above it), rounded up to 256 MiB.
    """
    import dask

    chunk, buffer, _, _ = _defaults()
    s2_bytes, s1_bytes = acquisition_bytes(chunk, buffer)
    extra = max(s2_acq - mem.bench_s2_acq, 0) * s2_bytes + max(s1_acq - mem.bench_s1_acq, 0) * s1_bytes
    per_thread = mem.worker_peak_mib - mem.worker_idle_mib + extra / 2**20
    need = mem.worker_idle_mib + torch_mib + threads * per_thread
    pause = float(dask.config.get("distributed.worker.memory.pause"))
    return math.ceil(need / pause / 256) * 256


def output_bytes_per_px() -> tuple[int, int]:
    """Uncompressed bytes per pixel of one cube period and one change transition (the stores' dtypes)."""
    from eowatch.pipelines.inference import change_variables
    from eowatch.pipelines.spec import S1_BANDS, S2_BANDS

    cube = 4 * len(S2_BANDS) + 2 + 4 * len(S1_BANDS)  # float32 bands, uint16 clear_count, float32 dB
    change = sum(dtype.itemsize for dtype, _, _ in change_variables().values())
    return cube, change


def estimate(
    name: str, area_km2: float, overhang: float, bench: BenchFigures, vol: Volumes
) -> dict[str, Any]:
    """Every figure of one scenario (a one-year monthly backfill in 3-month windows)."""
    chunk, _, cube_per_task, change_per_task = _defaults()
    grid_km2 = area_km2 * overhang
    px = grid_km2 * 1e4  # 10 m pixels
    chunks = math.ceil(px / chunk**2)
    windows = year_windows()
    s2_acq = sum(window_acquisitions(_days(w))[0] for w in windows)
    s1_acq = sum(window_acquisitions(_days(w))[1] for w in windows)
    periods = sum(_months(w) for w in windows)  # boundary months are built in both their windows
    transitions = periods - len(windows)  # each month-to-month change once
    s2_tb = grid_km2 * s2_acq * vol.s2_bytes_per_km2 * MGRS_OVERLAP / 1e12
    s1_tb = grid_km2 * s1_acq * vol.s1_bytes_per_km2 / 1e12
    cube_px, change_px = output_bytes_per_px()
    cube_h = px * (s2_acq + s1_acq) / bench.cube_px_acq_per_s / 3600
    # Benchmark 1 counts S2 only; charging each S1 acquisition (2 bands) like an S2 one (7) bounds it above.
    cube_h_high = px * (s2_acq + s1_acq) / bench.cube_px_acq_per_s_low / 3600
    infer_h = px * transitions / bench.infer_px_per_s / 3600
    return {
        "scenario": name,
        "land_km2": area_km2,
        "grid_km2": grid_km2,
        "grid_gpx": px / 1e9,
        "chunks": chunks,
        "windows": len(windows),
        "cube_tasks_per_window": math.ceil(chunks / cube_per_task),
        "change_tasks_per_window": math.ceil(chunks / change_per_task),
        "s2_acquisitions_read": s2_acq,
        "s1_acquisitions_read": s1_acq,
        "input_tb": {"s2": s2_tb, "s1": s1_tb, "total": s2_tb + s1_tb},
        "output_tb_uncompressed": {
            "cube": px * cube_px * periods / 1e12,
            "change": px * change_px * transitions / 1e12,
        },
        "periods_built": periods,
        "transitions": transitions,
        "vcpu_hours": {"cube": cube_h, "inference": infer_h, "total": cube_h + infer_h},
        "vcpu_hours_high": cube_h_high + infer_h,
    }


def wall_and_cost(vcpu_hours: float, threads_total: int) -> tuple[float, float]:
    """Ideal wall time (h) on ``threads_total`` worker threads, and the on-demand cost (USD)."""
    return vcpu_hours / threads_total, vcpu_hours * USD_PER_VCPU_HOUR


def _table(rows: list[dict[str, Any]]) -> list[str]:
    def both(r: dict[str, Any], threads: int | None) -> str:
        hours = (r["vcpu_hours"]["total"], r["vcpu_hours_high"])
        if threads is None:
            low, high = (wall_and_cost(h, 1)[1] for h in hours)
            return f"{low:,.0f} (≤ {high:,.0f})"
        low, high = (wall_and_cost(h, threads)[0] for h in hours)
        return f"{low:.1f} (≤ {high:.1f})"

    cells: list[tuple[str, Any]] = [
        ("grid area (km²)", lambda r: f"{r['grid_km2']:,.0f}"),
        ("grid pixels (10 m)", lambda r: f"{r['grid_gpx']:.2f} G"),
        ("chunks (256 px)", lambda r: f"{r['chunks']:,}"),
        (
            "windows; cube and change tasks per window",
            lambda r: f"{r['windows']}; {r['cube_tasks_per_window']:,} and {r['change_tasks_per_window']:,}",
        ),
        ("monthly periods built; transitions", lambda r: f"{r['periods_built']}; {r['transitions']}"),
        (
            "acquisitions read per pixel, S2 + S1",
            lambda r: f"{r['s2_acquisitions_read']} + {r['s1_acquisitions_read']}",
        ),
        (
            "input read (TB), S2 + S1",
            lambda r: f"{r['input_tb']['s2']:.1f} + {r['input_tb']['s1']:.1f} = {r['input_tb']['total']:.1f}",
        ),
        (
            "output uncompressed (TB), cube; change",
            lambda r: (
                f"{r['output_tb_uncompressed']['cube']:.2f}; {r['output_tb_uncompressed']['change']:.2f}"
            ),
        ),
        (
            "vCPU-hours, cube + inference",
            lambda r: (
                f"{r['vcpu_hours']['cube']:,.0f} + "
                f"{r['vcpu_hours']['inference']:,.0f} = {r['vcpu_hours']['total']:,.0f}"
            ),
        ),
        ("vCPU-hours, upper bound", lambda r: f"{r['vcpu_hours_high']:,.0f}"),
        ("wall time on 100 worker threads (h)", lambda r: both(r, 100)),
        ("wall time on 400 worker threads (h)", lambda r: both(r, 400)),
        ("compute cost on demand (USD)", lambda r: both(r, None)),
    ]
    head = ["| | " + " | ".join(r["scenario"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    return head + [f"| {label} | " + " | ".join(fmt(r) for r in rows) + " |" for label, fmt in cells]


def render(bench: BenchFigures, vol: Volumes, rows: list[dict[str, Any]], memory: dict[str, Any]) -> str:
    """Markdown quoted by docs/scaling.md."""
    days = ", ".join(str(_days(w)) for w in year_windows())
    lines = [
        "Inputs:",
        f"- cube throughput per 1-thread worker: {bench.cube_px_acq_per_s / 1e6:.3f} Mpx x acquisitions/s "
        f"(benchmark 3); {bench.cube_px_acq_per_s_low / 1e6:.3f} (benchmark 1, upper-bound time)",
        f"- inference throughput per thread: {bench.infer_px_per_s / 1e6:.3f} Mpx x transitions/s "
        "(benchmark 2)",
        f"- real S2 L2A, 7 assets: {vol.s2_bytes_per_km2 / 1e3:.1f} kB per km² and acquisition (median of "
        f"{vol.s2_items} Earth Search items); S1 RTC VV+VH: {vol.s1_bytes_per_km2 / 1e3:.1f} kB (median of "
        f"{vol.s1_items} Planetary Computer items)",
        f"- revisit assumed: S2 {S2_REVISIT_DAYS} d, S1 {S1_REVISIT_DAYS} d; {WINDOW_MONTHS}-month windows "
        f"of {YEAR}: {days} days",
        "",
        *_table(rows),
        "",
        f"Worker memory limit for {WINDOW_MONTHS}-month windows ({memory['s2_acq']} S2 + "
        f"{memory['s1_acq']} S1 acquisitions per chunk; torch and the model add "
        f"{memory['torch_mib']:.0f} MiB per worker, measured):",
    ]
    lines += [f"- {t} thread(s) per worker: {mib} MiB" for t, mib in memory["limit_mib"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling_estimate", description=__doc__)
    parser.add_argument("--bench", type=Path, default=BENCH_JSON, help="benchmark report (latest.json)")
    parser.add_argument("--shared", type=Path, default=SHARED_DATA, help="the shared real-data folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    bench, vol = load_bench(args.bench), load_volumes(args.shared)
    rows = [estimate(name, area, overhang, bench, vol) for name, area, overhang in SCENARIOS]
    s2_acq, s1_acq = window_acquisitions(max(_days(w) for w in year_windows()))
    torch_mib = measure_torch_mib()
    memory = {
        "s2_acq": s2_acq,
        "s1_acq": s1_acq,
        "torch_mib": torch_mib,
        "limit_mib": {t: worker_memory_mib(bench.memory, s2_acq, s1_acq, t, torch_mib) for t in (1, 2, 4)},
    }
    if args.json:
        print(
            json.dumps(
                {"bench": asdict(bench), "volumes": asdict(vol), "scenarios": rows, "memory": memory},
                indent=1,
            )
        )
    else:
        print(render(bench, vol, rows, memory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
