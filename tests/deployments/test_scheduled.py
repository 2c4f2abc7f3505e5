"""Scheduled runs fire without a person: a region on a one-minute cron, served, monitored on time.

A real Prefect server (its scheduler service creates the runs from the deployment's cron) and a real
serving subprocess (tests/deployments/serve_child.py, ``eowatch deploy`` with fixed dates); nobody
triggers anything: the test only watches the API until a scheduled run has completed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deployments.conftest import write_regions

pytestmark = [pytest.mark.services, pytest.mark.slow]

CHILD = Path(__file__).with_name("serve_child.py")
START, END = "2026-04-01", "2026-06-30"
TIMEOUT_S = 240  # the next minute boundary (<= 60 s), the runner's poll, then the run itself


def _completed_scheduled_run(deployment_id: str, log: Path) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + TIMEOUT_S
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            failed = [
                r for r in runs if r.state is not None and r.state.is_final() and not r.state.is_completed()
            ]
            if failed:
                pytest.fail(
                    f"scheduled run {failed[0].name} ended {failed[0].state.name}:\n{log.read_text()}"
                )
            done = [r for r in runs if r.state is not None and r.state.is_completed()]
            if done:
                return done[0]
            time.sleep(2)
    pytest.fail(f"no scheduled run completed in {TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def test_scheduled_run_fires_and_completes(
    served_small_archive: Any, ui_prefect_server: Any, serve_process: Any, tmp_path: Path
) -> None:
    regions = write_regions(tmp_path / "regions.yaml", served_small_archive.manifest, "small", "* * * * *")
    out_root = tmp_path / "out"
    env = {
        **ui_prefect_server.env(),
        "EOWATCH_STAC_URL": served_small_archive.stac_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    served = serve_process(
        [sys.executable, str(CHILD), str(regions), str(out_root), START, END], env, expect=2
    )
    assert set(served.urls) == {"monitor-region/small", "backfill/on-demand"}

    run = _completed_scheduled_run(served.urls["monitor-region/small"].rsplit("/", 1)[1], served.log)
    assert "auto-scheduled" in run.tags  # created by the server's scheduler, not by a person
    assert run.expected_start_time.second == 0  # on the cron's minute
    assert run.parameters["region"] == "small"
    change = out_root / "small" / f"{START}_{END}" / "change.zarr"
    attrs = json.loads((change / "zarr.json").read_text())["attributes"]
    assert attrs["eowatch_status"] == "complete"
