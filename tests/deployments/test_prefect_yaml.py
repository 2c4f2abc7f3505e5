"""prefect.yaml (for `prefect deploy`) loads, its entrypoints import, its schedules validate, and it
declares what `eowatch deploy --regions-file regions.yaml` registers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from eowatch.infra.deployments import DeployConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    from flows import deployments

    return {d.full_name: d for d in deployments(DeployConfig(REPO / "regions.yaml", REPO / "eowatch-output"))}


def _flow(entrypoint: str) -> Any:
    from prefect.flows import load_flow_from_entrypoint

    file, func = entrypoint.split(":")
    return load_flow_from_entrypoint(f"{REPO / file}:{func}", use_placeholder_flow=False)


def test_prefect_yaml_is_a_valid_project_file(project: dict[str, Any]) -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(project)
    assert model.deployments and all(d.work_pool and d.work_pool.name == "eowatch" for d in model.deployments)


def test_entrypoints_import_and_schedules_validate(project: dict[str, Any]) -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.utilities.callables import parameter_schema

    for d in project["deployments"]:
        flow = _flow(d["entrypoint"])
        assert set(d["parameters"]) <= set(parameter_schema(flow).properties), d["name"]
        for s in d["schedules"]:
            CronSchedule(cron=s["cron"], timezone=s["timezone"])


def test_prefect_yaml_matches_eowatch_deploy(project: dict[str, Any], served: dict[str, Any]) -> None:
    declared = {f"{_flow(d['entrypoint']).name}/{d['name']}": d for d in project["deployments"]}
    assert set(declared) == set(served)
    for name, d in declared.items():
        runner = served[name]
        assert [s["cron"] for s in d["schedules"]] == [s.schedule.cron for s in runner.schedules], name
        assert d["concurrency_limit"]["limit"] == runner.concurrency_limit, name
        assert (
            d["concurrency_limit"]["collision_strategy"]
            == runner.concurrency_options.collision_strategy.value
        )
        assert set(d["parameters"]) == set(runner.parameters), name
        assert sorted(d["tags"]) == sorted(runner.tags), name
        assert d["parameters"]["cluster"]["n_workers"] == runner.parameters["cluster"]["n_workers"], name
