"""Prefect flows and deployments of eowatch. This module only wires stages together; it touches no
service on import.

The ``monitor`` flow: search the catalog → build the analysis cube → infer change → publish.
Stages pass references (paths, scheduler address), never arrays; each is idempotent, so Prefect retries
and re-runs resume from the chunk ledger. ``backfill`` runs one ``monitor`` subflow per window of a named
region; ``monitor_region`` is what a region's schedule runs. ``deployments`` lists what ``eowatch deploy``
registers and serves (built by ``eowatch.infra.deployments``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE as NO_CACHE
from pydantic import Field

from eowatch.errors import EowatchError, InputError
from eowatch.infra.cluster import ClusterConfig, cluster_client, load_cluster_config
from eowatch.infra.deployments import MAX_PARALLEL_WINDOWS
from eowatch.pipelines import model_stages, stages
from eowatch.pipelines.params import MonitorParams
from eowatch.pipelines.run_lock import run_lock

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

    from eowatch.infra.deployments import DeployConfig
    from eowatch.pipelines.regions import Region


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
    return str(stages.search_stage(run, _info, _warning))


def _warning(msg: str) -> None:
    get_run_logger().warning(msg)


def _on_cluster(
    stage: Callable[..., Path | None], run: stages.Run, scheduler: str, **kwargs: Any
) -> str | None:
    """Run a chunked stage on the flow's Dask cluster (tasks get the scheduler address, not a client)."""
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client:
        path = stage(run, client, _info, **kwargs)
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


@task(name="map-crop-types", **_CLUSTER_TASK)
def map_crop_types(run: stages.Run, scheduler: str) -> str | None:
    return _on_cluster(model_stages.crop_stage_run, run, scheduler)


@task(name="detect-vhr-change", **_CLUSTER_TASK)
def detect_vhr_change(run: stages.Run, scheduler: str) -> str | None:
    return _on_cluster(model_stages.vhr_change_stage_run, run, scheduler, warn=_warning)


@task(name="map-land-cover", **_CLUSTER_TASK)
def map_land_cover(run: stages.Run, scheduler: str) -> str | None:
    return _on_cluster(model_stages.landcover_stage_run, run, scheduler)


@task(name="map-vhr-land-cover", **_CLUSTER_TASK)
def map_vhr_land_cover(run: stages.Run, scheduler: str) -> str | None:
    return _on_cluster(model_stages.vhr_landcover_stage_run, run, scheduler, warn=_warning)


@task(name="map-semantic-change", **_CLUSTER_TASK)
def map_semantic_change(run: stages.Run, scheduler: str) -> str | None:
    return _on_cluster(model_stages.semantic_change_stage_run, run, scheduler)


@task(
    name="publish",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_unexpected,
)
def publish(run: stages.Run, timings: dict[str, float]) -> dict[str, Any]:
    from eowatch.pipelines.artifacts import publish_run_artifacts
    from eowatch.pipelines.landcover import QUICKLOOK as LANDCOVER_QUICKLOOK
    from eowatch.pipelines.vhr_change import QUICKLOOK as VHR_QUICKLOOK

    summary = stages.publish_stage(run, timings, _info)
    out = run.layout.out
    publish_run_artifacts(summary, run.layout.quicklook, out / VHR_QUICKLOOK, out / LANDCOVER_QUICKLOOK)
    return summary


@task(name="plan-run", cache_policy=NO_CACHE, retries=0)
def plan_run_task(run: stages.Run, cluster: ClusterConfig) -> dict[str, Any]:
    """Estimate bytes, chunks, tasks, memory and time from the pinned items; refuse what cannot fit."""
    from eowatch.pipelines.artifacts import publish_plan_artifacts
    from eowatch.pipelines.plan import plan_stage

    return plan_stage(run, cluster, _info, on_plan=publish_plan_artifacts).to_dict()


@flow(name="monitor", log_prints=True)
def monitor(params: MonitorParams, cluster: ClusterConfig | None = None) -> dict[str, Any]:
    """Monitor an AOI over a date range and write its change cube."""
    logger = get_run_logger()
    run = stages.prepare_run(params.to_config())
    if run.is_complete():
        logger.info(f"run {run.token} is already complete at {run.layout.change}; nothing to do")
        from eowatch.pipelines.drift import catalog_drift

        drift = catalog_drift(run, logger.info)
        if drift:
            logger.warning(drift)
        return stages.existing_summary(run)
    timings: dict[str, float] = {}
    # A deployment's environment (EOWATCH_CLUSTER_CONFIG / EOWATCH_CLUSTER__*) decides over the parameter.
    cluster = load_cluster_config(default=cluster or ClusterConfig())
    with run_lock(run.layout.out):
        t = time.perf_counter()
        search_catalog(run)
        timings["search"] = round(time.perf_counter() - t, 2)
        plan_run_task(run, cluster)  # refuses a run that cannot fit before any cluster starts
        with cluster_client(cluster) as client:
            logger.info(f"Dask dashboard: {client.dashboard_link}")
            return _run_stages(run, client.scheduler.address, timings)


def _run_stages(run: stages.Run, scheduler: str, timings: dict[str, float]) -> dict[str, Any]:
    """The chunked stages on the cluster, then publish (timings in seconds per stage)."""
    t = time.perf_counter()
    build_cube(run, scheduler)
    build_vhr(run, scheduler)
    timings["cube"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    infer_change(run, scheduler)
    timings["inference"] = round(time.perf_counter() - t, 2)
    optional = (  # (the run's model field, its stage task, its timing key), in the flow's order
        ("crop_model", map_crop_types, "crop_types"),
        ("landcover_model", map_land_cover, "landcover"),
        ("semantic_change_model", map_semantic_change, "semantic_change"),
        ("vhr_change_model", detect_vhr_change, "vhr_change"),
        ("vhr_landcover_model", map_vhr_land_cover, "vhr_landcover"),
    )
    for field, stage_task, key in optional:
        if getattr(run.config, field):
            t = time.perf_counter()
            stage_task(run, scheduler)
            timings[key] = round(time.perf_counter() - t, 2)
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


def _region_with_model(regions_file: str, region: str, model: str | None) -> Region:
    """The region ``region`` of ``regions_file``, with its change model replaced by ``model`` if given.

    Raises:
        InputError: unknown region, bad regions file, or ``model`` is not a registered model.
    """
    from eowatch.infra.deployments import model_names
    from eowatch.pipelines.regions import get_region

    spec = get_region(regions_file, region)
    if model is None:
        return spec
    if model not in (known := model_names()):
        raise InputError(f"unknown model {model!r}; registered change models: {', '.join(known)}")
    return spec.model_copy(update={"model": model})


@flow(name="backfill", log_prints=True)
def backfill(
    region: str,
    start: date,
    end: date,
    out_root: str,
    regions_file: str = "regions.yaml",
    max_parallel: Annotated[int, Field(ge=1, le=MAX_PARALLEL_WINDOWS)] = 1,
    window_months: Annotated[int, Field(ge=2, le=24)] = 3,
    cluster: ClusterConfig | None = None,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """Monitor a named region over a long range, one ``monitor`` subflow run per window.

    Windows are ``window_months`` calendar months and consecutive windows share their boundary month
    (``pipelines.regions.backfill_windows``), so every month-to-month change is detected in exactly one
    window. Each window writes ``<out_root>/<region>/<start>_<end>/`` and is its own subflow run, so it
    shows (and can be retried) on its own in the UI; re-running the backfill skips finished windows
    (``monitor`` is a no-op for them) and resumes the others from their ledgers. Windows run in order,
    ``max_parallel`` at a time (each starts its own Dask cluster: size ``cluster`` accordingly).

    Args:
        region: Name of the region in the regions file.
        start: First day of the backfill (inclusive).
        end: Last day of the backfill (inclusive).
        out_root: Output root folder; each window writes `<out_root>/<region>/<start>_<end>/change.zarr`.
        regions_file: Regions YAML file that defines the region.
        max_parallel: Windows monitored at the same time (each starts its own Dask cluster).
        window_months: Calendar months per window (at least 2); consecutive windows share one month.
        cluster: Dask cluster of each window (default: a local cluster of 2 workers).
        model: Change model of every window (default: the region's model).

    Raises:
        InputError: unknown region or model, bad regions file or date range (before any window runs).
        EowatchError: some windows failed (after all have run and the roll-up is published).
    """
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import copy_context

    from eowatch.pipelines.regions import backfill_windows, rollup_markdown

    if max_parallel < 1:
        raise InputError(f"max_parallel must be >= 1, got {max_parallel}")
    spec = _region_with_model(regions_file, region, model)
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


# --- deployments: scheduled monitoring per region, backfills from the UI (issue 5) ----------------


@flow(name="monitor-region", log_prints=True)
def monitor_region(
    region: str,
    start: date | None = None,
    end: date | None = None,
    out_root: str = "eowatch-output",
    regions_file: str = "regions.yaml",
    months: Annotated[int, Field(ge=2, le=24)] = 2,
    model: str | None = None,
    cluster: ClusterConfig | None = None,
) -> dict[str, Any]:
    """Monitor a named region once: what a region's schedule runs (``monitor-region/<region>``).

    Without dates the run covers the ``months`` whole calendar months that closed before the month of
    its scheduled start time, in UTC (``infra.deployments.closed_months_before``): the monthly schedule
    ``0 6 1 * *`` with ``months=2`` monitors May-June on 1 July, June-July on 1 August, and so on, so
    every month-to-month change is detected once. The output goes to ``<out_root>/<region>/<start>_<end>/``
    (the layout of ``backfill``), so a scheduled run and a backfill window over the same months share
    their output: whichever comes second finds it complete and does nothing.

    Args:
        region: Name of the region in the regions file.
        start: First day to monitor (give both dates or neither).
        end: Last day to monitor, inclusive (give both dates or neither).
        out_root: Output root folder; the run writes `<out_root>/<region>/<start>_<end>/change.zarr`.
        regions_file: Regions YAML file that defines the region.
        months: Closed calendar months a run without dates covers (at least 2).
        model: Change model (default: the region's model).
        cluster: Dask cluster of the run (default: a local cluster of 2 workers).

    Raises:
        InputError: unknown region or model, bad regions file, only one date given, or bad dates.
    """
    from prefect.runtime import flow_run

    from eowatch.infra.deployments import closed_months_before

    spec = _region_with_model(regions_file, region, model)
    if (start is None) != (end is None):
        raise InputError("give both start and end dates, or neither (the closed months before the run)")
    if start is None or end is None:
        scheduled = flow_run.scheduled_start_time
        start, end = closed_months_before(scheduled, months)
        _info(f"no dates given: monitoring the {months} months closed before {scheduled:%Y-%m-%d %H:%M %Z}")
    params = spec.monitor_params(start, end, out_root)
    name = f"monitor-{region}-{start}_{end}"
    return monitor.with_options(flow_run_name=name)(params, cluster)


def deployments(config: DeployConfig) -> list[RunnerDeployment]:
    """The deployments ``eowatch deploy`` registers (``prefect.yaml`` describes the same ones).

    - ``monitor-region/<region>`` for each region of ``config.regions_file`` with a ``schedule``: runs
      ``monitor_region`` on that cron, one run at a time per region;
    - ``backfill/on-demand``: ``backfill`` from the UI, the regions and models as choices, one at a time.

    Raises:
        InputError: the regions file is invalid.
    """
    from eowatch.infra.deployments import backfill_deployment, monitor_deployments
    from eowatch.pipelines.regions import load_regions

    regions = load_regions(config.regions_file)
    return [
        *monitor_deployments(monitor_region, regions, config),
        backfill_deployment(backfill, regions, config),
    ]
