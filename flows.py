"""Prefect flows of eowatch. This module only wires stages together; it touches no service on import.

The ``monitor`` flow: search the catalog → build the analysis cube → infer change → publish.
Stages pass references (paths, scheduler address), never arrays; each is idempotent, so Prefect retries
and re-runs resume from the chunk ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE as NO_CACHE

from eowatch.errors import EowatchError
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
