"""What a run plan must fit into: the Dask workers a cluster config gives and the memory each may use.

``cluster_resources`` reads them from an ``infra.cluster.ClusterConfig`` without starting anything (a
local cluster's ``memory_limit`` parsed as distributed parses it, Slurm jobs, a Kubernetes DaskCluster
spec), or asks the scheduler of an "address" cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eowatch.errors import InputError

__all__ = ["ClusterResources", "cluster_resources"]

log = logging.getLogger("eowatch")


@dataclass(frozen=True)
class ClusterResources:
    """What a plan must fit into: Dask workers and the memory each may use."""

    workers: int
    """Worker processes."""
    threads_per_worker: int
    """Tasks a worker runs at once."""
    memory_per_worker: int
    """Memory limit of one worker, bytes."""
    cores: int | None = None
    """CPU cores the workers share (local clusters); None when unknown (a remote scheduler)."""
    system_memory: int | None = None
    """Memory of the machine local workers share, bytes; None for a remote scheduler."""
    kind: str = "local"
    """Cluster kind as ``infra.cluster.resolve_kind`` resolves it."""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1 or self.memory_per_worker < 1:
            raise InputError("a cluster needs at least one worker, one thread and some memory per worker")

    @property
    def threads(self) -> int:
        """Tasks the whole cluster runs at once."""
        return self.workers * self.threads_per_worker


def cluster_resources(config: Any) -> ClusterResources:
    """The resources ``infra.cluster.cluster_client(config)`` gives, for an ``infra.cluster.ClusterConfig``.

    A worker's memory is its ``memory_limit`` parsed as distributed parses it ("4GiB", "auto", a
    fraction, None), capped at the system memory divided among the workers, since local workers share
    one machine (LocalCluster's own default). For kind "address" the scheduler is asked.

    Raises:
        InputError: the scheduler of an "address" cluster cannot be reached or has no workers.
    """
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT
    from distributed.worker_memory import parse_memory_limit

    from eowatch.infra.cluster import resolve_kind

    kind = resolve_kind(config)
    if kind == "address":
        return _remote_resources(str(config.address))
    if kind == "slurm":
        slurm = config.slurm
        workers = slurm.jobs * slurm.processes
        return ClusterResources(workers, slurm.threads_per_worker(), slurm.worker_memory_bytes(), kind=kind)
    if kind == "kubernetes":
        return _kubernetes_resources(config.kubernetes)
    workers = config.n_workers
    if kind == "cuda":
        import torch

        workers = max(1, torch.cuda.device_count())
    limit = parse_memory_limit(config.memory_limit, config.threads_per_worker, logger=log) or MEMORY_LIMIT
    memory = min(int(limit), MEMORY_LIMIT // workers)
    return ClusterResources(workers, config.threads_per_worker, memory, CPU_COUNT, MEMORY_LIMIT, kind)


def _kubernetes_resources(config: Any) -> ClusterResources:
    """Workers of the DaskCluster's default group: replicas, ``--nthreads`` and ``--memory-limit`` of
    its worker container (the container's memory limit where the Dask limit is "auto" or absent)."""
    from dask.utils import parse_bytes

    from eowatch.infra.hpc.k8s import load_dask_specs

    worker = load_dask_specs(config).cluster["spec"]["worker"]
    container = worker["spec"]["containers"][0]
    args = [str(a) for a in container.get("args") or []]

    def option(name: str) -> str | None:
        return args[args.index(name) + 1] if name in args[:-1] else None

    resources = container.get("resources") or {}
    limit = option("--memory-limit")
    if limit in (None, "auto"):
        limit = (resources.get("limits") or {}).get("memory") or (resources.get("requests") or {}).get(
            "memory"
        )
    if not limit:
        raise InputError(f"cannot tell the workers' memory from {config.spec_path}: set --memory-limit")
    threads = int(option("--nthreads") or 1)
    return ClusterResources(int(worker.get("replicas", 1)), threads, parse_bytes(limit), kind="kubernetes")


def _remote_resources(address: str) -> ClusterResources:
    from distributed import Client

    try:
        with Client(address, timeout="10s", set_as_default=False) as client:
            workers = list(client.scheduler_info()["workers"].values())
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    if not workers:
        raise InputError(f"the Dask scheduler at {address} has no workers; start some and plan again")
    threads = min(int(w["nthreads"]) for w in workers)
    memory = min(int(w.get("memory_limit") or 2**50) for w in workers)
    return ClusterResources(len(workers), threads, memory, None, None, "address")
