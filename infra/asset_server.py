"""A loopback HTTP file server with Range support, for COGs read through GDAL's ``/vsicurl/``.

``python -m http.server`` ignores Range headers and GDAL then refuses to read; Starlette's ``StaticFiles``
answers single and multi-range requests (206), so it serves here under uvicorn in a daemon thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from eowatch.errors import ServiceError
from eowatch.infra._proc import ManagedService
from eowatch.infra.ports import DEFAULT_HOST, free_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetServerConfig:
    """How to serve the asset directory."""

    host: str = DEFAULT_HOST
    """Loopback interface to bind."""
    port: int | None = None
    """TCP port; None picks a free one."""
    file_threads: int = 64
    """Threads reading files (Starlette runs file I/O in anyio's thread pool); bounds concurrent reads."""
    limit_concurrency: int = 256
    """Open connections above which uvicorn answers 503 (Dask workers keep connections alive)."""
    backlog: int = 512
    """Listen backlog, so bursts of connections from many worker processes are queued, not refused."""
    startup_timeout_s: float = 10.0
    """Seconds to wait for the socket to accept connections."""

    def __post_init__(self) -> None:
        if self.file_threads < 1 or self.limit_concurrency < 1 or self.backlog < 1:
            raise ValueError("file_threads, limit_concurrency and backlog must be >= 1")


class AssetServer(ManagedService):
    """Context manager serving ``root`` at ``.url`` (``GET``/``HEAD`` with ``Range``), in a daemon thread.

    Example:
        >>> with AssetServer(tmp_path) as assets:  # doctest: +SKIP
        ...     rasterio.open(f"/vsicurl/{assets.url}/scene.tif")
    """

    def __init__(self, root: Path, config: AssetServerConfig | None = None) -> None:
        """Prepare to serve the directory ``root``; nothing starts until ``__enter__``."""
        self.root = Path(root)
        self.config = config or AssetServerConfig()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        """Base URL of ``root``, without a trailing slash."""
        if self._url is None:
            raise ServiceError("AssetServer is not running; use it as a context manager")
        return self._url

    def url_for(self, path: Path | str) -> str:
        """URL of ``path``, a file under ``root`` (absolute or relative to it)."""
        rel = Path(path).resolve().relative_to(self.root.resolve()) if Path(path).is_absolute() else path
        return f"{self.url}/{Path(rel).as_posix()}"

    def start(self) -> None:
        """Start uvicorn in a daemon thread; returns once it accepts connections."""
        if not self.root.is_dir():
            raise ServiceError(f"asset root {self.root} is not a directory")
        cfg = self.config
        port = cfg.port or free_port(cfg.host)
        app = Starlette(routes=[Mount("/", app=StaticFiles(directory=self.root))], lifespan=self._lifespan)
        uv_config = uvicorn.Config(
            app,
            host=cfg.host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            limit_concurrency=cfg.limit_concurrency,
            backlog=cfg.backlog,
        )
        self._server = uvicorn.Server(uv_config)
        t0 = time.monotonic()
        self._thread = threading.Thread(target=self._server.run, name=f"asset-server-{port}", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                self._server = None
                raise ServiceError(f"asset server on {cfg.host}:{port} exited during start-up (port taken?)")
            if time.monotonic() - t0 > cfg.startup_timeout_s:
                self.stop()
                raise ServiceError(
                    f"asset server on {cfg.host}:{port} not ready in {cfg.startup_timeout_s} s"
                )
            time.sleep(0.01)
        self.startup_s = time.monotonic() - t0
        self._url = f"http://{cfg.host}:{port}"
        log.info("asset server for %s at %s, ready in %.2f s", self.root, self._url, self.startup_s)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Runs inside the server's event loop: the limiter is per loop, so no other loop is touched.
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.config.file_threads
        yield

    def stop(self) -> None:
        """Ask uvicorn to exit and join its thread; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                log.warning("asset server thread did not stop within 10 s")
        self._server = None
        self._thread = None
        self._url = None
