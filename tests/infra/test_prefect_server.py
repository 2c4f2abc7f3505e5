"""PrefectServer: a real temporary Prefect 3 server; a flow run against it is visible through its API."""

from __future__ import annotations

import os

import httpx
import pytest

from eowatch.infra.services import PrefectServer, prefect_env

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_flow_runs_against_temporary_server() -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    @flow(name="eowatch-smoke")
    def smoke(x: int) -> int:
        return x + 1

    before = PREFECT_API_URL.value()
    with PrefectServer() as server:
        pid = server.pid
        assert server.startup_s is not None
        assert server.api_url.endswith("/api") and server.env()["PREFECT_API_URL"] == server.api_url
        assert httpx.get(f"{server.api_url}/health").json() is True
        assert httpx.get(server.ui_url).status_code == 200
        with prefect_env(server.api_url):
            assert PREFECT_API_URL.value() == server.api_url
            assert smoke(41) == 42
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs()
                flow_name = client.read_flow(runs[0].flow_id).name
        assert len(runs) == 1 and runs[0].state is not None and runs[0].state.is_completed()
        assert flow_name == "eowatch-smoke"
    assert PREFECT_API_URL.value() == before
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
