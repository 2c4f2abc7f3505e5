"""The Dask cluster factory: a local CPU cluster, a local GPU cluster, or an existing scheduler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import distributed

log = logging.getLogger(__name__)

ClusterKind = Literal["local", "cuda", "address", "auto"]

# Loggers that report expected events (closing comms, workers leaving) as warnings/errors at shutdown.
_NOISY_LOGGERS = (
    "distributed",
    "distributed.batched",
    "distributed.comm",
    "distributed.core",
    "distributed.nanny",
    "distributed.scheduler",
    "distributed.worker",
    "distributed.client",
)


@dataclass(frozen=True)
class ClusterConfig:
    """Which Dask cluster to use and how big."""

    kind: ClusterKind = "local"
    """"local" (LocalCluster), "cuda" (LocalCUDACluster, one worker per GPU; falls back to local when no
    GPU or no dask_cuda), "address" (connect to ``address``) or "auto" (cuda when usable, else local)."""
    n_workers: int = 2
    """Worker count for "local" (for "cuda" the GPU count decides)."""
    threads_per_worker: int = 1
    """Threads per worker process."""
    memory_limit: str = "4GiB"
    """Memory limit per worker (Dask spills, then pauses, then restarts workers beyond it)."""
    address: str | None = None
    """Scheduler address for kind="address", e.g. ``tcp://10.0.0.5:8786``."""
    processes: bool = True
    """Workers as processes (True; GDAL and numpy release the GIL only partly) or threads."""
    dashboard: bool = True
    """Serve the Dask dashboard on a free port (``client.dashboard_link``)."""

    def __post_init__(self) -> None:
        if self.kind not in ("local", "cuda", "address", "auto"):
            raise ValueError(f"kind must be local, cuda, address or auto, got {self.kind!r}")
        if self.kind == "address" and not self.address:
            raise ValueError('kind="address" needs address="tcp://host:port" of a running scheduler')
        if self.n_workers < 1 or self.threads_per_worker < 1:
            raise ValueError("n_workers and threads_per_worker must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; inverse of :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterConfig:
        """Build from :meth:`to_dict` output."""
        return cls(**data)


def cuda_available() -> bool:
    """True if dask_cuda imports and torch sees a CUDA device."""
    try:
        import dask_cuda  # noqa: F401
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_kind(config: ClusterConfig) -> Literal["local", "cuda", "address"]:
    """The kind actually used: "auto" and unusable "cuda" become "local" (the latter with a warning)."""
    if config.kind == "address":
        return "address"
    if config.kind == "local":
        return "local"
    if cuda_available():
        return "cuda"
    if config.kind == "cuda":
        log.warning("kind='cuda' asked for, but dask_cuda or a CUDA GPU is missing: using a CPU LocalCluster")
    return "local"


def _make_cluster(kind: str, config: ClusterConfig) -> distributed.deploy.Cluster:
    dashboard = ":0" if config.dashboard else None
    if kind == "cuda":
        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(
            threads_per_worker=config.threads_per_worker,
            memory_limit=config.memory_limit,
            dashboard_address=dashboard,
            host="127.0.0.1",
        )
    return distributed.LocalCluster(
        n_workers=config.n_workers,
        threads_per_worker=config.threads_per_worker,
        memory_limit=config.memory_limit,
        processes=config.processes,
        dashboard_address=dashboard,
        # Loopback only for TCP; thread workers talk over the in-process transport, which takes no host.
        host="127.0.0.1" if config.processes else None,
        silence_logs=logging.WARNING,
    )


@contextlib.contextmanager
def _quiet_shutdown() -> Iterator[None]:
    """Raise distributed's loggers to CRITICAL while closing (comm-closed noise is expected then)."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def cluster_client(config: ClusterConfig | None = None) -> Iterator[distributed.Client]:
    """Start (or connect to) a Dask cluster and yield a client; close both on exit.

    The client is the default Dask scheduler inside the block (``dask.compute`` uses it). For
    kind="address" only the client is closed; the remote cluster keeps running.

    Example:
        >>> with cluster_client(ClusterConfig(n_workers=2)) as client:  # doctest: +SKIP
        ...     client.submit(sum, [1, 2]).result()
    """
    config = config or ClusterConfig()
    kind = resolve_kind(config)
    cluster = None
    if kind == "address":
        client = distributed.Client(config.address)
    else:
        cluster = _make_cluster(kind, config)
        try:
            client = distributed.Client(cluster)
        except BaseException:
            with _quiet_shutdown():
                cluster.close()
            raise
    log.info(
        "dask %s cluster ready: %s (dashboard %s)", kind, client.scheduler.address, client.dashboard_link
    )
    try:
        yield client
    finally:
        with _quiet_shutdown():
            client.close()
            if cluster is not None:
                cluster.close()
