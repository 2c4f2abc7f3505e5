"""A real, temporary Prefect 3 server on loopback with its own PREFECT_HOME and sqlite database."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from eowatch.errors import ServiceError
from eowatch.infra._proc import ManagedService, ServiceProcess, find_executable
from eowatch.infra.ports import DEFAULT_HOST, free_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefectServerConfig:
    """How to run the temporary Prefect server."""

    host: str = DEFAULT_HOST
    """Loopback interface to bind."""
    port: int | None = None
    """TCP port; None picks a free one."""
    startup_timeout_s: float = 90.0
    """Seconds to wait for ``/api/health`` (start-up takes ~13 s on 2 cores: migrations + UI)."""
    ui: bool = True
    """Serve the bundled UI at ``ui_url``."""
    services: bool = True
    """Run the server's background services (scheduler, late runs...); False runs only API and UI."""
    executable: str = "prefect"
    """Name of the Prefect CLI, looked up beside ``sys.executable`` first, then on PATH."""

    def __post_init__(self) -> None:
        if self.startup_timeout_s <= 0:
            raise ValueError("startup_timeout_s must be > 0")


class PrefectServer(ManagedService):
    """Context manager running ``prefect server start`` with an isolated home; stops it on exit.

    The server's state (sqlite DB, profiles) lives in a temp ``PREFECT_HOME`` that is deleted on exit. The
    calling process is not reconfigured: apply :meth:`env` to child processes, or use
    :func:`prefect_env` in-process.
    """

    def __init__(self, config: PrefectServerConfig | None = None) -> None:
        """Prepare the server; nothing starts until ``__enter__``."""
        self.config = config or PrefectServerConfig()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: ServiceProcess | None = None
        self._base: str | None = None
        self.startup_s: float | None = None

    @property
    def api_url(self) -> str:
        """The API root, ``http://host:port/api``."""
        return f"{self._base_url()}/api"

    @property
    def ui_url(self) -> str:
        """The dashboard URL."""
        return self._base_url()

    def _base_url(self) -> str:
        if self._base is None:
            raise ServiceError("PrefectServer is not running; use it as a context manager")
        return self._base

    def env(self) -> dict[str, str]:
        """Environment variables that point a Prefect client (e.g. a subprocess) at this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_UI_URL": self.ui_url}

    def _server_env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(home),
            PREFECT_PROFILES_PATH=str(home / "profiles.toml"),
            PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        )
        return env

    def start(self) -> None:
        """Start the server; returns once ``/api/health`` answers."""
        cfg = self.config
        exe = find_executable(cfg.executable)
        self._tmp = tempfile.TemporaryDirectory(prefix="eowatch-prefect-")
        home = Path(self._tmp.name)
        port = cfg.port or free_port(cfg.host)
        argv = [exe, "server", "start", "--host", cfg.host, "--port", str(port), "--analytics-off"]
        argv.append("--ui" if cfg.ui else "--no-ui")
        if not cfg.services:
            argv.append("--no-services")
        base = f"http://{cfg.host}:{port}"
        try:
            self._process = ServiceProcess(
                "prefect server",
                argv,
                home / "server.log",
                {**self._server_env(home), "PREFECT_UI_API_URL": f"{base}/api"},
            )
            self.startup_s = self._process.wait_http([f"{base}/api/health"], cfg.startup_timeout_s, 0.25)
        except BaseException:
            self.stop()
            raise
        self._base = base
        log.info("Prefect server at %s, ready in %.1f s", base, self.startup_s)

    def stop(self) -> None:
        """Stop the server process group and delete its home; safe to call twice."""
        if self._process is not None:
            self._process.stop(grace_s=15.0)
            self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._base = None


@contextlib.contextmanager
def prefect_env(api_url: str) -> Iterator[None]:
    """Point this process's Prefect client at ``api_url`` for the duration of the block.

    Uses ``prefect.settings.temporary_settings``, so the previous setting is restored on exit and flows run
    inside the block report to that server instead of starting an ephemeral one. Buffered logs and events
    are sent before the block ends.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        try:
            yield
        finally:
            _drain_prefect_workers()


def _drain_prefect_workers(timeout_s: float = 10.0) -> None:
    """Send Prefect's buffered logs and events now, while the API URL still points at this server.

    Without this they are flushed at interpreter exit, to whatever URL is configured then (often a server
    that has stopped), and Prefect prints "Error logging to API".
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout_s)
        except Exception as err:  # draining is best effort; never mask the block's own outcome
            log.debug("could not drain %s: %s", worker.__name__, err)
