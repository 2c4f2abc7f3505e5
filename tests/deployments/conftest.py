"""Fixtures for the deployment tests: a Prefect server whose UI works, regions on the small archive,
and ``eowatch deploy`` (or a variant of it) running as a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _ui_prefect_server() -> Any:
    """A ``PrefectServer`` whose bundled UI talks to its own API.

    ``prefect server start --port P`` serves a UI that calls ``http://127.0.0.1:4200/api`` unless
    ``PREFECT_UI_API_URL`` is set, and ``PrefectServer`` clears every ``PREFECT_*`` variable from the
    server's environment; so this fixes the port first and sets the UI's API URL for that port.
    """
    from eowatch.infra.ports import DEFAULT_HOST, free_port
    from eowatch.infra.prefect_server import PrefectServer, PrefectServerConfig

    port = free_port(DEFAULT_HOST)

    class Server(PrefectServer):
        def _server_env(self, home: Path) -> dict[str, str]:
            env = super()._server_env(home)
            env["PREFECT_UI_API_URL"] = f"http://{DEFAULT_HOST}:{port}/api"
            return env

    return Server(PrefectServerConfig(port=port))


@pytest.fixture(scope="package")
def ui_prefect_server() -> Iterator[Any]:
    """A real temporary Prefect server (API, UI, scheduler); this process's flows report to it."""
    from eowatch.infra.services import prefect_env

    with _ui_prefect_server() as server, prefect_env(server.api_url):
        yield server


def write_regions(path: Path, manifest: dict[str, Any], name: str, schedule: str | None) -> Path:
    """A regions file with one region on the small archive's AOI; its STAC URL comes from the
    environment (``${EOWATCH_STAC_URL}``), as in the shipped regions.yaml."""
    region: dict[str, Any] = {
        "name": name,
        "stac_url": "${EOWATCH_STAC_URL}",
        "bbox": manifest["aoi_bbox_lonlat"],
        "crs": manifest["crs"],
        "bounds": manifest["aoi_bbox"],
        "collections": {"s2": "sentinel-2-l2a", "s1": "sentinel-1-grd", "vhr": None},
    }
    if schedule is not None:
        region["schedule"] = schedule
    path.write_text(json.dumps({"regions": [region]}))  # JSON is YAML
    return path


@dataclass
class Served:
    """A serving subprocess: its process, its log and the deployment URLs it printed."""

    proc: subprocess.Popen[bytes]
    log: Path
    urls: dict[str, str]


_URL_LINE = re.compile(r"^\s+(\S+/\S+)\s.*\s(https?://\S+/deployments/deployment/[0-9a-f-]+)\s*$")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the serving process (it pauses its schedules), then make sure its group is gone.

    Idle, it stops in about 1.5 s; with a flow run in flight it takes the full 30 s. A 10 s limit was
    tried: the UI-backfill test that follows the scheduled one then timed out once on its Submit (cause
    not found), so the limit stays 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Any]:
    """Start a serving command (``eowatch deploy ...``) in its own process group; wait for its URLs.

    Yields a function ``start(argv, env) -> Served``; every process started is stopped at teardown.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: Sequence[str], env: dict[str, str], expect: int, timeout_s: float = 120) -> Served:
        log = tmp_path / f"serve-{len(started)}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env={**os.environ, **env},
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        deadline = time.monotonic() + timeout_s
        while True:
            urls = dict(m.groups() for line in log.read_text().splitlines() if (m := _URL_LINE.match(line)))
            if len(urls) >= expect:
                return Served(proc, log, urls)
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{argv[:2]} did not print {expect} deployment URLs:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)

    yield start
    for proc in started:
        _stop(proc)


def eowatch_exe() -> str:
    """The ``eowatch`` console script of this interpreter's environment."""
    exe = Path(sys.executable).with_name("eowatch")
    return str(exe) if exe.exists() else "eowatch"
