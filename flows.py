"""Prefect flows of eowatch. This module only wires stages together; it touches no service on import.

The ``monitor`` flow: search the catalog → build the analysis cube → infer change → publish.
Stages pass references (paths, scheduler address), never arrays; each is idempotent, so Prefect retries
and re-runs resume from the chunk ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE as NO_CACHE

from eowatch.errors import EowatchError, InputError
from eowatch.infra.cluster import ClusterConfig, cluster_client
from eowatch.pipelines import stages
from eowatch.pipelines.ledger import run_lock
from eowatch.pipelines.params import MonitorParams
from eowatch.pipelines.publish import summary_markdown


def _info(msg: str) -> None:
    get_run_logger().info(msg)


def _retry_unexpected(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a task only for unexpected failures: user errors (bad input, empty search, unreadable
    asset) fail at once with their message; stages already retry their own I/O with backoff."""
    try:
        state.result()
    except EowatchError:
        return False
    except Exception:
        return True
    return True


@task(
    name="search-catalog",
    retries=3,
    retry_delay_seconds=[2, 5, 10],
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_unexpected,
)
def search_catalog(run: stages.Run) -> str:
    return str(stages.search_stage(run, _info))


def _on_cluster(stage: Callable[..., Path | None], run: stages.Run, scheduler: str) -> str | None:
    """Run a chunked stage on the flow's Dask cluster (tasks get the scheduler address, not a client)."""
    from distributed import Client

    with Client(scheduler) as client:
        path = stage(run, client, _info)
        return str(path) if path else None


_CLUSTER_TASK = {
    "retries": 1,
    "retry_delay_seconds": 5,
    "cache_policy": NO_CACHE,
    "retry_condition_fn": _retry_unexpected,
}


@task(name="build-cube", **_CLUSTER_TASK)
def build_cube(run: stages.Run, scheduler: str) -> str | None:
    return _on_cluster(stages.cube_stage_run, run, scheduler)


@task(name="build-vhr", **_CLUSTER_TASK)
def build_vhr(run: stages.Run, scheduler: str) -> str | None:
    return _on_cluster(stages.vhr_stage_run, run, scheduler)


@task(name="infer-change", **_CLUSTER_TASK)
def infer_change(run: stages.Run, scheduler: str) -> str | None:
    return _on_cluster(stages.change_stage_run, run, scheduler)


@task(
    name="publish",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_unexpected,
)
def publish(run: stages.Run, timings: dict[str, float]) -> dict[str, Any]:
    summary = stages.publish_stage(run, timings, _info)
    create_markdown_artifact(
        markdown=summary_markdown(summary),
        key="monitor-summary",
        description="eowatch monitoring run summary",
    )
    return summary


@flow(name="monitor", log_prints=True)
def monitor(params: MonitorParams, cluster: ClusterConfig | None = None) -> dict[str, Any]:
    """Monitor an AOI over a date range and write its change cube."""
    logger = get_run_logger()
    run = stages.prepare_run(params.to_config())
    if run.is_complete():
        logger.info(f"run {run.token} is already complete at {run.layout.change}; nothing to do")
        return stages.existing_summary(run)
    timings: dict[str, float] = {}
    with run_lock(run.layout.out), cluster_client(cluster or ClusterConfig()) as client:
        logger.info(f"Dask dashboard: {client.dashboard_link}")
        scheduler = client.scheduler.address
        t = time.perf_counter()
        search_catalog(run)
        timings["search"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        build_cube(run, scheduler)
        build_vhr(run, scheduler)
        timings["cube"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        infer_change(run, scheduler)
        timings["inference"] = round(time.perf_counter() - t, 2)
        return publish(run, timings)


# --- backfill: one monitoring run per window of a named region (issue 5) ---------------------------


def _window_row(params: MonitorParams, state: Any) -> dict[str, Any]:
    """Roll-up row of one window's subflow state (the summary only when it completed)."""
    row: dict[str, Any] = {
        "window": f"{params.start}_{params.end}",
        "status": state.name,
        "out": params.out,
        "by_type_km2": {},
    }
    if state.is_completed():
        found = state.result().get("changes_found") or {}
        row["by_type_km2"] = found.get("by_type_km2", {})
    return row


@flow(name="backfill", log_prints=True)
def backfill(
    region: str,
    start: date,
    end: date,
    out_root: str,
    regions_file: str = "regions.yaml",
    max_parallel: int = 1,
    window_months: int = 3,
    cluster: ClusterConfig | None = None,
) -> list[dict[str, Any]]:
    """Monitor a named region over a long range, one ``monitor`` subflow run per window.

    Windows are ``window_months`` calendar months and consecutive windows share their boundary month
    (``pipelines.regions.backfill_windows``), so every month-to-month change is detected in exactly one
    window. Each window writes ``<out_root>/<region>/<start>_<end>/`` and is its own subflow run, so it
    shows (and can be retried) on its own in the UI; re-running the backfill skips finished windows
    (``monitor`` is a no-op for them) and resumes the others from their ledgers. Windows run in order,
    ``max_parallel`` at a time (each starts its own Dask cluster: size ``cluster`` accordingly).

    Raises:
        InputError: unknown region, bad regions file or date range (before any window runs).
        EowatchError: some windows failed (after all have run and the roll-up is published).
    """
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import copy_context

    from eowatch.pipelines.regions import backfill_windows, get_region, rollup_markdown

    if max_parallel < 1:
        raise InputError(f"max_parallel must be >= 1, got {max_parallel}")
    spec = get_region(regions_file, region)
    plan = [spec.monitor_params(a, b, out_root) for a, b in backfill_windows(start, end, window_months)]
    _info(f"backfill {region}: {len(plan)} windows, {max_parallel} at a time")

    def run_window(params: MonitorParams) -> Any:
        name = f"monitor-{region}-{params.start}_{params.end}"
        return monitor.with_options(flow_run_name=name)(params, cluster, return_state=True)

    if max_parallel == 1:
        states = [run_window(p) for p in plan]
    else:  # threads carry the flow-run context along so each window stays a subflow of this run
        with ThreadPoolExecutor(max_parallel) as pool:
            futures = [pool.submit(copy_context().run, run_window, p) for p in plan]
            states = [f.result() for f in futures]
    rows = [_window_row(p, s) for p, s in zip(plan, states, strict=True)]
    create_markdown_artifact(
        markdown=rollup_markdown(region, rows),
        key=f"backfill-{region}",
        description=f"eowatch backfill of {region}: windows, status, changed area per type",
    )
    failed = [r["window"] for r in rows if r["status"] != "Completed"]
    if failed:
        raise EowatchError(
            f"backfill {region}: {len(failed)} of {len(rows)} windows failed ({', '.join(failed)}); "
            "run the backfill again to retry them"
        )
    return rows
