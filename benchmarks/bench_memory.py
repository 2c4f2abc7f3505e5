"""Peak memory per worker as the region grows 1x, 4x, 16x (2.56, 5.12, 10.24 km, two months).

Each size runs eowatch's full cube stage (S2 + S1) on a fresh 2-worker LocalCluster while the client
samples every worker process's RSS in a thread. A chunk-bounded stage keeps the per-worker peak flat.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._harness import MIB, MemorySampler, Stopwatch, cached_archive, cluster_pids, ratio

TITLE = "3. Peak memory per worker as the region grows"
SIZES_KM = (2.56, 5.12, 10.24)
START, END = dt.date(2026, 4, 1), dt.date(2026, 5, 31)


def measure_size(size_km: float, work: Path) -> dict[str, Any]:
    """Build the cube of one archive size; the workers' idle and peak RSS and the time."""
    from eowatch.demo import archive_run_params, served_archive
    from eowatch.infra.cluster import ClusterConfig, cluster_client
    from eowatch.pipelines.stages import cube_stage_run, prepare_run, search_stage

    archive = cached_archive(size_km, END)
    with served_archive(archive) as served:
        overrides = {"start": START, "end": END, "vhr_collection": None}
        config = archive_run_params(served, work, **overrides).to_config()
        run = prepare_run(config, with_model=False)
        search_stage(run, info=lambda _m: None)
        with cluster_client(ClusterConfig(n_workers=2, threads_per_worker=1, dashboard=False)) as client:
            pids = cluster_pids(client)
            idle = MemorySampler(pids)
            idle.sample()
            with MemorySampler(pids) as mem, Stopwatch() as sw:
                cube_stage_run(run, client, info=lambda _m: None)
    h, w = run.spec.grid.shape
    return {
        "size_km": size_km,
        "grid_px": f"{w}x{h}",
        "chunks": sum(1 for _ in run.spec.grid.chunks()),
        "seconds": round(sw.seconds, 1),
        "worker_idle_MiB": round(max(idle.peak_by_pid.values()) / MIB),
        "worker_peak_MiB": round(max(mem.peak_by_pid.values()) / MIB),
        "worker_peaks_MiB": [round(v / MIB) for v in mem.peak_by_pid.values()],
    }


def growth_ratios(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Peak worker RSS (and its growth above idle) of each size relative to the smallest region."""
    first = rows[0]
    out: dict[str, float | None] = {}
    for row in rows[1:]:
        factor = round((row["size_km"] / first["size_km"]) ** 2)
        out[f"worker peak RSS {factor}x/1x"] = ratio(row["worker_peak_MiB"], first["worker_peak_MiB"])
        grown = row["worker_peak_MiB"] - row["worker_idle_MiB"]
        grown_first = first["worker_peak_MiB"] - first["worker_idle_MiB"]
        out[f"worker RSS above idle {factor}x/1x"] = ratio(grown, grown_first)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark (``quick`` changes nothing: every size runs once)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="eowatch-bench-mem-") as tmp:
        for size in SIZES_KM:
            rows.append(measure_size(size, Path(tmp) / f"{size:g}km"))
    return {
        "name": "memory",
        "title": TITLE,
        "params": {
            "archives": f"seed 5, {', '.join(f'{s:g}' for s in SIZES_KM)} km, {START}..{END}",
            "stage": "cube (S2 6 bands + SCL, S1 VV/VH), chunk 256 px, 2 chunks per task",
            "cluster": "LocalCluster 2 workers x 1 thread, a fresh one per size",
            "sampling": "psutil RSS of each worker process every 50 ms from the client",
        },
        "rows": rows,
        "ratios": growth_ratios(rows),
        "notes": [
            "Flat means the ratios stay near 1 while the region grows 16x: memory per task is bounded by "
            "one batch of chunks, not by the region.",
        ],
    }
