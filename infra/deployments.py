"""Prefect deployments of eowatch built from a regions file: names, schedules, forms, concurrency limits.

``flows.deployments`` defines *what* is deployed; this module does the building that depends on the
regions file and on the registered models, which are only known when the deployments are built:

- ``monitor-region/<region>``: one per region that has a ``schedule``, with that cron (UTC). Its
  parameters name the region and the regions file (both read-only in the UI) and leave the dates empty,
  so each scheduled run monitors the closed calendar months before its scheduled time
  (:func:`closed_months_before`).
- ``backfill/on-demand``: one, unscheduled, launched from the UI. Its form offers the regions of the file
  and the registered models as drop-down choices and the dates as date pickers.

Concurrency (so that a large backfill never starves the scheduled runs):

- every deployment has a Prefect deployment concurrency limit (``DeployConfig.backfill_limit`` and
  ``monitor_limit``, 1 by default) with the ``ENQUEUE`` strategy: a run beyond the limit waits in
  ``AwaitingConcurrencySlot`` instead of being dropped;
- the runner that serves them (``eowatch deploy``) runs at most ``DeployConfig.process_limit`` flow runs,
  the sum of those limits, so a running backfill can never hold the process slot a scheduled run needs;
- inside a backfill, windows run ``max_parallel`` at a time (at most ``MAX_PARALLEL_WINDOWS``), each with
  its own Dask cluster of ``DeployConfig.workers`` workers.

Prefect builds a deployment's parameter schema from the flow's signature and docstring (types,
constraints, defaults, descriptions) but titles every field with the bare parameter name and cannot know
choices that live in files; :func:`form_schema` adds the titles, the choices and the read-only values.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eowatch.errors import InputError, ServiceError

if TYPE_CHECKING:
    from uuid import UUID

    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment
    from prefect.utilities.callables import ParameterSchema

    from eowatch.pipelines.regions import Region

BACKFILL_DEPLOYMENT = "on-demand"
"""Name of the one backfill deployment: ``backfill/on-demand``."""
MAX_PARALLEL_WINDOWS = 4
"""Upper bound of a backfill's ``max_parallel`` (each window starts its own Dask cluster)."""
TAGS = ("eowatch",)

MONITOR_TITLES: dict[str, str] = {
    "region": "Region",
    "start": "Start date (empty: the closed months before the scheduled time)",
    "end": "End date (empty: the closed months before the scheduled time)",
    "out_root": "Output root folder",
    "regions_file": "Regions file",
    "months": "Months per scheduled run",
    "model": "Change model (empty: the region's)",
    "cluster": "Dask cluster",
}
"""Form titles of ``monitor_region``'s parameters, in form order."""

BACKFILL_TITLES: dict[str, str] = {
    "region": "Region",
    "start": "Start date",
    "end": "End date",
    "out_root": "Output root folder",
    "window_months": "Months per window",
    "max_parallel": "Windows at a time",
    "model": "Change model (empty: the region's)",
    "regions_file": "Regions file",
    "cluster": "Dask cluster (one per window)",
}
"""Form titles of ``backfill``'s parameters, in form order."""

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def closed_months_before(moment: dt.datetime | dt.date, months: int) -> tuple[dt.date, dt.date]:
    """The ``months`` whole calendar months that closed before the month of ``moment``.

    This is the period a scheduled monitoring run without explicit dates covers: a run scheduled at
    2026-07-01 06:00 UTC with ``months=2`` monitors 2026-05-01 to 2026-06-30. With the monthly schedule
    ``0 6 1 * *`` and ``months=2`` consecutive runs share one month, so every month-to-month change is
    detected by exactly one run (as in ``pipelines.regions.backfill_windows``); a run on another day of
    the month covers the same closed months again, which is a no-op once they are done.

    Args:
        moment: the scheduled start time of the run (its date is taken as is, in its own time zone).
        months: number of closed months, >= 2 (changes are detected between consecutive months).

    Raises:
        InputError: ``months`` < 2.
    """
    if months < 2:
        raise InputError(f"a monitoring run needs at least 2 months, got {months}")
    day = moment.date() if isinstance(moment, dt.datetime) else moment
    end = day.replace(day=1) - dt.timedelta(days=1)
    y, m = divmod(end.year * 12 + end.month - 1 - (months - 1), 12)
    return dt.date(y, m + 1, 1), end


@dataclass(frozen=True)
class DeployConfig:
    """What ``eowatch deploy`` registers: where regions come from, where outputs go, how big runs are."""

    regions_file: Path
    """Regions YAML file; deployments store its absolute path (runs may start in another folder)."""
    out_root: Path
    """Output root; a run writes ``<out_root>/<region>/<start>_<end>/`` (stored absolute)."""
    workers: int = 2
    """Dask workers of each monitoring run's cluster (each backfill window has its own cluster)."""
    backfill_limit: int = 1
    """Backfill runs at a time (deployment concurrency limit; further runs wait their turn)."""
    monitor_limit: int = 1
    """Scheduled runs at a time per region (deployment concurrency limit; further runs wait)."""
    memory_limit: str = "4GiB"
    """Memory limit of each Dask worker."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InputError(f"--workers must be >= 1, got {self.workers}")
        if self.backfill_limit < 1 or self.monitor_limit < 1:
            raise InputError("concurrency limits must be >= 1")
        object.__setattr__(self, "regions_file", Path(self.regions_file).absolute())
        object.__setattr__(self, "out_root", Path(self.out_root).absolute())

    def cluster(self) -> dict[str, Any]:
        """The ``cluster`` parameter of every run (a ``ClusterConfig`` as a dict)."""
        from eowatch.infra.cluster import ClusterConfig

        return ClusterConfig(n_workers=self.workers, memory_limit=self.memory_limit).to_dict()

    def process_limit(self, n_scheduled: int) -> int:
        """Flow runs the runner may run at once: one slot set per deployment, so none starves another."""
        return self.backfill_limit + self.monitor_limit * n_scheduled


def choice_schema(values: Sequence[str]) -> dict[str, Any]:
    """JSON schema of a drop-down of ``values``: what ``Literal[*values]`` means, always as an ``enum``.

    (pydantic writes a one-value ``Literal`` as ``const``, which the Prefect UI shows as a text box.)

    Raises:
        InputError: ``values`` is empty.
    """
    if not values:
        raise InputError("a choice needs at least one value")
    return {"type": "string", "enum": list(values)}


def form_schema(
    flow: Flow[..., Any],
    titles: Mapping[str, str],
    choices: Mapping[str, Sequence[str]] | None = None,
    read_only: Mapping[str, Any] | None = None,
) -> ParameterSchema:
    """The flow's parameter schema as a form: titles, order, drop-down choices, read-only values.

    Optional parameters (``X | None = None``) become plain ``X`` fields that may stay empty: the UI
    leaves an empty field out of the run's parameters, so the flow gets its default ``None`` (instead of
    a "str / None" switch for every optional field).

    Args:
        flow: the Prefect flow; its signature and docstring give types, constraints, defaults and
            descriptions (``prefect.utilities.callables.parameter_schema``).
        titles: ``{parameter: title}`` for every parameter of the flow, in the order of the form.
        choices: ``{parameter: values}``: the (string) field becomes a drop-down (JSON schema ``enum``).
        read_only: ``{parameter: value}``: the field shows ``value`` and cannot be changed.

    Raises:
        ValueError: ``titles`` do not name exactly the flow's parameters, or a choice is not a string.
    """
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(flow)
    props = {name: _may_stay_empty(prop) for name, prop in copy.deepcopy(schema.properties).items()}
    if set(titles) != set(props):
        raise ValueError(f"titles {sorted(titles)} do not match {flow.name}'s parameters {sorted(props)}")
    for position, (name, title) in enumerate(titles.items()):
        props[name].update(title=title, position=position)
    for name, values in (choices or {}).items():
        if props[name].get("type") != "string":
            raise ValueError(f"parameter {name!r} is not a string; it cannot be a choice")
        props[name].update(choice_schema(values))
    for name, value in (read_only or {}).items():
        props[name].update(readOnly=True, enum=[value], default=value, type=_json_type(value))
    return schema.model_copy(update={"properties": props})


def _may_stay_empty(prop: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` with default ``None`` as a plain, not required ``X`` field without a default."""
    alternatives = prop.get("anyOf", [])
    kept = [a for a in alternatives if a.get("type") != "null"]
    if "default" not in prop or prop["default"] is not None or len(kept) != 1 or len(alternatives) != 2:
        return prop
    return {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")}, **kept[0]}


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}[type(value)]


def unset_variables(regions: Mapping[str, Region]) -> dict[str, list[str]]:
    """``{region: [VAR, ...]}`` for ``${VAR}`` references in ``stac_url`` that are not set here.

    Runs started by the runner inherit this process's environment, so these regions' runs would fail.
    """
    missing: dict[str, list[str]] = {}
    for name, region in regions.items():
        unset = [v for v in _ENV.findall(region.stac_url) if v not in os.environ]
        if unset:
            missing[name] = unset
    return missing


def monitor_deployments(
    flow: Flow[..., Any], regions: Mapping[str, Region], config: DeployConfig
) -> list[RunnerDeployment]:
    """One scheduled deployment of ``flow`` (``flows.monitor_region``) per region with a schedule.

    The deployment is named after the region, runs on the region's cron (UTC) and has the region and the
    regions file as read-only parameters; regions without a schedule get no deployment.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.deployments.runner import EntrypointType

    made = []
    for name, region in regions.items():
        if region.schedule is None:
            continue
        fixed = {"region": name, "regions_file": str(config.regions_file)}
        deployment = flow.to_deployment(
            name=name,
            cron=region.schedule,
            paused=False,
            concurrency_limit=ConcurrencyLimitConfig(limit=config.monitor_limit),
            parameters={
                **fixed,
                "out_root": str(config.out_root),
                "cluster": config.cluster(),
            },
            description=f"Scheduled monitoring of region {name!r} ({region.schedule}, UTC).",
            tags=[*TAGS, "scheduled", f"region:{name}"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment._parameter_openapi_schema = form_schema(
            flow, MONITOR_TITLES, choices={"model": model_names()}, read_only=fixed
        )
        made.append(deployment)
    return made


def backfill_deployment(
    flow: Flow[..., Any], regions: Mapping[str, Region], config: DeployConfig
) -> RunnerDeployment:
    """The unscheduled backfill deployment of ``flow`` (``flows.backfill``), launched from the UI.

    Its form offers the regions of ``config.regions_file`` and the registered models as choices; the
    regions file itself is read-only (the choices come from it).
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.deployments.runner import EntrypointType

    fixed = {"regions_file": str(config.regions_file)}
    deployment = flow.to_deployment(
        name=BACKFILL_DEPLOYMENT,
        paused=False,
        concurrency_limit=ConcurrencyLimitConfig(limit=config.backfill_limit),
        parameters={**fixed, "out_root": str(config.out_root), "cluster": config.cluster()},
        description=(
            "Backfill a region of the regions file over a date range, one monitoring subflow run per "
            f"window. At most {config.backfill_limit} backfill(s) at a time; further ones wait their turn."
        ),
        tags=[*TAGS, "backfill"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment._parameter_openapi_schema = form_schema(
        flow, BACKFILL_TITLES, choices={"region": list(regions), "model": model_names()}, read_only=fixed
    )
    return deployment


def model_names() -> list[str]:
    """Names of the registered change models (``eowatch models``)."""
    from eowatch.models.registry import list_models

    return [card.name for card in list_models() if card.task == "change-detection"]


def prefect_urls() -> tuple[str, str]:
    """``(api_url, ui_url)`` of the Prefect server this process is configured for, once it answers.

    Raises:
        ServiceError: ``PREFECT_API_URL`` is not set, or the server does not answer its health check.
    """
    import httpx
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    api = PREFECT_API_URL.value()
    if not api:
        raise ServiceError(
            "PREFECT_API_URL is not set: start a server (`prefect server start`) and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    try:
        healthy = httpx.get(f"{api.rstrip('/')}/health", timeout=10).status_code == 200
    except httpx.HTTPError as exc:
        raise ServiceError(
            f"no Prefect server answers at PREFECT_API_URL={api} ({type(exc).__name__})"
        ) from None
    if not healthy:
        raise ServiceError(f"the Prefect server at PREFECT_API_URL={api} is not healthy")
    ui = PREFECT_UI_URL.value() or api.rstrip("/").removesuffix("/api")
    return api, ui


def deployment_url(ui_url: str, deployment_id: UUID | str) -> str:
    """The deployment's page in the Prefect UI."""
    return f"{ui_url.rstrip('/')}/deployments/deployment/{deployment_id}"


def describe(deployments: Sequence[RunnerDeployment], ids: Mapping[str, UUID], ui_url: str) -> list[str]:
    """One line per registered deployment: full name, when it runs, its page in the UI."""
    lines = []
    for d in deployments:
        when = f"cron {d.schedules[0].schedule.cron} (UTC)" if d.schedules else "from the UI"
        lines.append(f"  {d.full_name:<32} {when:<28} {deployment_url(ui_url, ids[d.full_name])}")
    return lines


def serve(
    deployments: Sequence[RunnerDeployment],
    limit: int,
    on_ready: Callable[[dict[str, UUID]], None] | None = None,
) -> None:
    """Register ``deployments`` with the Prefect API and run their flow runs here until interrupted.

    Like ``prefect.serve`` (flow runs start as subprocesses of this process, at most ``limit`` at a
    time), but calls ``on_ready({full_name: deployment_id})`` once all are registered. Returns on SIGTERM;
    Ctrl-C raises ``KeyboardInterrupt``. Either way the deployments' schedules are paused first (no runs
    pile up while nobody serves them); serving them again resumes them.
    """
    import asyncio

    from prefect.runner import Runner

    async def run() -> None:
        runner = Runner(name="eowatch", limit=limit, pause_on_shutdown=True)
        ids = {d.full_name: await runner.aadd_deployment(d) for d in deployments}
        if on_ready is not None:
            on_ready(ids)
        await runner.start()

    asyncio.run(run())
