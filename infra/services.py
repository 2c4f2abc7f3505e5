"""Real local services for tests and single-machine runs: STAC API, asset HTTP server, Prefect server.

Each is a context manager that starts the service on a free loopback port, waits until it answers, exposes
its URL and stops it (and any child processes) on exit, also when the block raises.

- :class:`StacApiServer` — ``rustac serve`` over item/collection dicts (no ``query``/``filter`` support).
- :class:`AssetServer` — Starlette ``StaticFiles`` under uvicorn, with HTTP Range for ``/vsicurl/``.
- :class:`PrefectServer` — ``prefect server start`` with a temporary ``PREFECT_HOME`` and sqlite DB;
  :func:`prefect_env` points in-process flows at it.
"""

from eowatch.infra.asset_server import AssetServer, AssetServerConfig
from eowatch.infra.ports import free_port
from eowatch.infra.prefect_server import PrefectServer, PrefectServerConfig, prefect_env
from eowatch.infra.stac_server import StacApiServer, StacServerConfig, minimal_collection

__all__ = [
    "AssetServer",
    "AssetServerConfig",
    "PrefectServer",
    "PrefectServerConfig",
    "StacApiServer",
    "StacServerConfig",
    "free_port",
    "minimal_collection",
    "prefect_env",
]
