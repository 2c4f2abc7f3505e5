"""End-to-end throughput of the monitoring flow (km² per core-hour) and where its time goes.

The real ``monitor`` Prefect flow runs against a temporary Prefect server, the served synthetic archive
(STAC API + asset server on loopback) and a fresh ``LocalCluster``: search, plan, cube (S2 + S1), change
inference with the shipped model, publish (statistics, quicklook, STAC catalog, summary). VHR is left
out (the cached benchmark archives have none). The same run is made with 1 and with 2 single-threaded
workers, each into a fresh output folder, so the parallel speed-up is a ratio measured in one run.

Three throughput figures per run:

- **km² per core-hour (allocated)**: area / (flow wall time × worker threads) — what a cluster bill
  pays for;
- **km² per CPU-hour (consumed)**: area / (CPU time of the flow process + its workers), from
  ``getrusage`` (the services — Prefect server, STAC API, asset server — are not counted);
- the breakdown: search (flow process wall time) and the workers' seconds per phase — read,
  composite, infer, write — summed over chunk tasks (``summary["worker_seconds"]``), plus what is left
  of the allocated core time (cluster start-up, scheduling, plan and publish, idle workers).
"""

from __future__ import annotations

import datetime as dt
import resource
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._harness import Stopwatch, cached_archive, ratio

TITLE = "4. End-to-end monitoring flow: km² per core-hour and time per stage"
ARCHIVE_KM, START, END = 10.24, dt.date(2026, 4, 1), dt.date(2026, 6, 30)


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process plus its children that have ended (the Dask workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def breakdown(summary: dict[str, Any], wall_s: float, threads: int) -> dict[str, float]:
    """Seconds per stage of one run: search (flow wall), worker phases, and the allocated remainder.

    ``other`` = wall time × worker threads − search − worker phases: cluster start-up and shutdown,
    scheduling, planning, publishing and idle workers (search runs before the cluster exists, so it is
    charged once).
    """
    phases = dict((summary.get("worker_seconds") or {}).get("by_phase") or {})
    search = float(summary.get("timings_s", {}).get("search", 0.0))
    rows = {"search": round(search, 2), **{k: round(float(v), 2) for k, v in phases.items()}}
    rows["other"] = round(max(wall_s * threads - sum(rows.values()), 0.0), 2)
    return rows


def throughput_row(workers: int, summary: dict[str, Any], wall_s: float, cpu_s: float) -> dict[str, Any]:
    """One run's figures: area, times, km² per allocated core-hour and per consumed CPU-hour, breakdown."""
    area = float(summary["area_km2"])
    parts = breakdown(summary, wall_s, workers)
    slowest = max((k for k in parts if k != "other"), key=parts.__getitem__)
    return {
        "workers": workers,
        "area_km2": round(area, 2),
        "periods": len(summary.get("periods", [])),
        "wall_s": round(wall_s, 1),
        "cpu_s": round(cpu_s, 1),
        "km2_per_core_hour": round(area / (wall_s * workers / 3600), 1),
        "km2_per_cpu_hour": round(area / (cpu_s / 3600), 1) if cpu_s > 0 else None,
        "slowest_stage": slowest,
        **{f"{k}_s": v for k, v in parts.items()},
    }


def _services_cpu_seconds() -> float:
    """CPU seconds so far of this process's live descendants: the services (STAC API, asset server,
    Prefect server) while no cluster runs."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run_flow(served: Any, out: Path, workers: int) -> tuple[dict[str, Any], float, float, float]:
    """One monitoring flow run; its summary, wall seconds, CPU seconds of the flow process and its
    workers, and CPU seconds of the services it used (STAC API, asset server, Prefect server)."""
    from eowatch.demo import archive_run_params
    from eowatch.infra.cluster import ClusterConfig
    from flows import monitor

    params = archive_run_params(served, out, start=START, end=END, vhr_collection=None)
    cpu0, services0 = _cpu_seconds(), _services_cpu_seconds()
    with Stopwatch() as sw:
        summary = monitor(params, ClusterConfig(n_workers=workers, threads_per_worker=1, dashboard=False))
    return summary, sw.seconds, _cpu_seconds() - cpu0, _services_cpu_seconds() - services0


def run(quick: bool = False) -> dict[str, Any]:
    from eowatch.demo import served_archive
    from eowatch.infra.services import PrefectServer, prefect_env

    archive = cached_archive(ARCHIVE_KM, END)
    worker_counts = (2,) if quick else (1, 2)
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="eowatch-bench-e2e-") as tmp,
        served_archive(archive) as served,
        PrefectServer() as prefect,
        prefect_env(prefect.api_url),
    ):
        for workers in worker_counts:
            summary, wall, cpu, services = run_flow(served, Path(tmp) / f"out-{workers}w", workers)
            rows.append({**throughput_row(workers, summary, wall, cpu), "services_cpu_s": round(services, 1)})
    by_workers = {r["workers"]: r for r in rows}
    last = rows[-1]
    skip = ("wall_s", "cpu_s", "services_cpu_s")
    phase_total = sum(v for k, v in last.items() if k.endswith("_s") and k not in skip)
    ratios: dict[str, Any] = {
        f"share of allocated core time in {k[:-2]} ({last['workers']} workers)": ratio(v, phase_total)
        for k, v in last.items()
        if k.endswith("_s") and k not in ("wall_s", "cpu_s", "services_cpu_s")
    }
    if 1 in by_workers and 2 in by_workers:
        one, two = by_workers[1], by_workers[2]
        ratios["speed-up 2 workers / 1 worker (wall)"] = ratio(one["wall_s"], two["wall_s"])
        ratios["km² per core-hour, 2 workers / 1 worker"] = ratio(
            two["km2_per_core_hour"], one["km2_per_core_hour"]
        )
    return {
        "name": "e2e",
        "title": TITLE,
        "params": {
            "archive": archive.name,
            "period": f"{START}..{END}",
            "collections": "S2 L2A + S1 GRD (no VHR)",
            "model": "siamese-s2s1-change",
            "workers": list(worker_counts),
        },
        "rows": rows,
        "ratios": ratios,
        "checks": {"runs completed": sum(1 for r in rows if r["area_km2"] > 0)},
        "notes": [
            "Core-hour = flow wall time × worker threads; CPU-hour = CPU time of the flow process and its "
            "workers (getrusage; services not counted). Worker phases are summed over chunk tasks; 'other' "
            "is the allocated core time left: cluster start-up, scheduling, plan, publish, idle workers.",
            "services_cpu_s: CPU the STAC API, asset server and Prefect server used during the run; on "
            "this 2-core machine they compete with the workers, so a second worker adds no throughput.",
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=False), indent=1))
