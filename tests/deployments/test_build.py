"""Deployments built from a regions file: names, schedules, forms, concurrency limits; no server needed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from eowatch.errors import InputError, ServiceError
from eowatch.infra.deployments import (
    BACKFILL_TITLES,
    MAX_PARALLEL_WINDOWS,
    DeployConfig,
    closed_months_before,
    form_schema,
    model_names,
    prefect_urls,
)

D = dt.date
REGIONS = """\
regions:
  - name: ghent-port
    stac_url: https://example.com/stac
    bbox: [3.7, 51.0, 3.8, 51.1]
    schedule: "0 6 1 * *"
  - name: antwerp
    stac_url: ${EOWATCH_STAC_URL}
    bbox: [4.3, 51.2, 4.4, 51.3]
    schedule: "30 5 * * 1"
  - name: adhoc
    stac_url: https://example.com/stac
    bbox: [4.4, 50.9, 4.5, 51.0]
"""


@pytest.fixture
def built(tmp_path: Path) -> dict[str, Any]:
    from flows import deployments

    (tmp_path / "regions.yaml").write_text(REGIONS)
    config = DeployConfig(regions_file=tmp_path / "regions.yaml", out_root=tmp_path / "out", workers=3)
    return {d.full_name: d for d in deployments(config)}


def _schema(deployment: Any) -> dict[str, Any]:
    return deployment._parameter_openapi_schema.model_dump_for_openapi()


def test_one_scheduled_deployment_per_scheduled_region_and_one_backfill(built: dict[str, Any]) -> None:
    assert list(built) == ["monitor-region/ghent-port", "monitor-region/antwerp", "backfill/on-demand"]
    crons = {name: [s.schedule.cron for s in d.schedules] for name, d in built.items()}
    assert crons == {
        "monitor-region/ghent-port": ["0 6 1 * *"],
        "monitor-region/antwerp": ["30 5 * * 1"],
        "backfill/on-demand": [],  # the region without a schedule ("adhoc") gets no deployment
    }
    assert all(s.active and s.schedule.timezone in (None, "UTC") for d in built.values() for s in d.schedules)
    assert built["monitor-region/ghent-port"].entrypoint == "flows.monitor_region"
    assert built["backfill/on-demand"].entrypoint == "flows.backfill"
    assert all(d.paused is False and "eowatch" in d.tags for d in built.values())


def test_concurrency_limits_keep_backfills_from_starving_scheduled_runs(built: dict[str, Any]) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    for d in built.values():
        assert d.concurrency_limit == 1
        assert d.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    config = DeployConfig(regions_file=Path("r.yaml"), out_root=Path("o"), backfill_limit=2, monitor_limit=1)
    assert config.process_limit(n_scheduled=2) == 4  # a slot for each scheduled region beside the backfills


def test_backfill_form_offers_regions_models_and_date_pickers(built: dict[str, Any], tmp_path: Path) -> None:
    schema = _schema(built["backfill/on-demand"])
    props = schema["properties"]
    assert props["region"]["enum"] == ["ghent-port", "antwerp", "adhoc"]
    assert props["model"]["enum"] == model_names() and "siamese-s2s1-change" in model_names()
    assert props["model"]["type"] == "string" and "model" not in schema["required"]  # empty: the region's
    assert props["start"] == {**props["start"], "type": "string", "format": "date"}
    assert props["end"]["format"] == "date"
    assert set(schema["required"]) == {"region", "start", "end", "out_root"}
    assert props["max_parallel"]["minimum"] == 1 and props["max_parallel"]["maximum"] == MAX_PARALLEL_WINDOWS
    assert props["window_months"]["minimum"] == 2
    assert props["regions_file"]["readOnly"] and props["regions_file"]["enum"] == [
        str(tmp_path / "regions.yaml")
    ]
    assert [name for name, _ in sorted(props.items(), key=lambda p: p[1]["position"])] == list(
        BACKFILL_TITLES
    )
    assert all(p["title"] == BACKFILL_TITLES[name] and p.get("description") for name, p in props.items())
    assert (
        props["cluster"]["$ref"] == "#/definitions/ClusterConfig" and "ClusterConfig" in schema["definitions"]
    )
    json.dumps(schema)  # what the API stores


def test_backfill_parameters_default_to_absolute_paths_and_the_worker_count(
    built: dict[str, Any], tmp_path: Path
) -> None:
    params = built["backfill/on-demand"].parameters
    assert params["regions_file"] == str(tmp_path / "regions.yaml")
    assert params["out_root"] == str(tmp_path / "out")
    assert params["cluster"]["n_workers"] == 3


def test_scheduled_deployment_fixes_its_region_and_leaves_dates_empty(built: dict[str, Any]) -> None:
    d = built["monitor-region/antwerp"]
    assert {k: v for k, v in d.parameters.items() if k != "cluster"} == {
        "region": "antwerp",
        "regions_file": d.parameters["regions_file"],
        "out_root": d.parameters["out_root"],
    }
    props = _schema(d)["properties"]
    assert props["region"]["readOnly"] and props["region"]["enum"] == ["antwerp"]
    assert props["start"]["format"] == "date" and "default" not in props["start"]  # empty: closed months
    assert props["months"]["default"] == 2


def test_form_titles_must_match_the_flow_signature() -> None:
    from flows import backfill

    with pytest.raises(ValueError, match="do not match backfill's parameters"):
        form_schema(backfill, {k: v for k, v in BACKFILL_TITLES.items() if k != "model"})
    with pytest.raises(ValueError, match="is not a string"):
        form_schema(backfill, BACKFILL_TITLES, choices={"window_months": ["2"]})


@pytest.mark.parametrize(
    ("moment", "months", "expected"),
    [
        (dt.datetime(2026, 7, 1, 6, 0, tzinfo=dt.UTC), 2, (D(2026, 5, 1), D(2026, 6, 30))),
        (dt.datetime(2026, 7, 31, 23, 59, tzinfo=dt.UTC), 2, (D(2026, 5, 1), D(2026, 6, 30))),
        (D(2026, 1, 15), 3, (D(2025, 10, 1), D(2025, 12, 31))),
        (D(2024, 3, 1), 2, (D(2024, 1, 1), D(2024, 2, 29))),
        (D(2026, 12, 1), 12, (D(2025, 12, 1), D(2026, 11, 30))),
    ],
)
def test_scheduled_runs_without_dates_cover_the_closed_months(
    moment: dt.datetime | dt.date, months: int, expected: tuple[dt.date, dt.date]
) -> None:
    assert closed_months_before(moment, months) == expected


def test_closed_months_need_two_months() -> None:
    with pytest.raises(InputError, match="at least 2 months"):
        closed_months_before(D(2026, 7, 1), 1)


def test_monitor_region_checks_its_input_before_running(tmp_path: Path) -> None:
    from flows import monitor_region

    (tmp_path / "regions.yaml").write_text(REGIONS)
    regions = str(tmp_path / "regions.yaml")
    with pytest.raises(InputError, match="give both start and end dates, or neither"):
        monitor_region.fn("adhoc", start=D(2026, 4, 1), regions_file=regions)
    known = r"unknown model 'nope'; registered change models: siamese-s2s1-change, siamese-s2s1-gap-change$"
    with pytest.raises(InputError, match=known):
        monitor_region.fn("adhoc", regions_file=regions, model="nope")
    with pytest.raises(InputError, match="no region 'nowhere'"):
        monitor_region.fn("nowhere", regions_file=regions)


def test_deploy_config_rejects_bad_sizes() -> None:
    with pytest.raises(InputError, match="--workers must be >= 1"):
        DeployConfig(regions_file=Path("r.yaml"), out_root=Path("o"), workers=0)


def test_no_server_configured_is_a_clear_error() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(ServiceError, match="PREFECT_API_URL is not set: start a server"),
    ):
        prefect_urls()


def test_unreachable_server_fails_the_deploy_command_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from eowatch.cli import main
    from eowatch.infra.ports import free_port

    url = f"http://127.0.0.1:{free_port('127.0.0.1')}/api"  # nothing listens there
    with temporary_settings(updates={PREFECT_API_URL: url}):
        code = main(["deploy", "--regions-file", "regions.yaml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ServiceError.exit_code
    assert err == [f"error: no Prefect server answers at PREFECT_API_URL={url} (ConnectError)"]
