"""The Dask cluster factory: a local CPU or GPU cluster, an existing scheduler, SLURM jobs or Kubernetes.

``ClusterConfig`` says which; :func:`cluster_client` starts it (or connects) and closes it. The SLURM and
Kubernetes kinds live in :mod:`eowatch.infra.hpc` and import their optional packages (``eowatch[hpc]``,
``eowatch[k8s]``) only when such a cluster is made. :func:`load_cluster_config` reads the config from a
YAML file and ``EOWATCH_CLUSTER__*`` environment variables, so a deployment chooses its cluster without
code changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import distributed
import yaml

from eowatch.errors import InputError
from eowatch.infra.hpc._fields import check_keys, check_types
from eowatch.infra.hpc.k8s import KubernetesConfig, make_kubernetes_cluster
from eowatch.infra.hpc.slurm import SlurmConfig, make_slurm_cluster

log = logging.getLogger(__name__)

ClusterKind = Literal["local", "cuda", "address", "auto", "slurm", "kubernetes"]
_KINDS = ("local", "cuda", "address", "auto", "slurm", "kubernetes")
CONFIG_ENV = "EOWATCH_CLUSTER_CONFIG"
"""Environment variable naming a cluster config YAML file (read by :func:`load_cluster_config`)."""
ENV_PREFIX = "EOWATCH_CLUSTER__"
"""Prefix of per-field overrides: ``EOWATCH_CLUSTER__KIND=address``, ``EOWATCH_CLUSTER__SLURM__QUEUE=cpu``."""

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
    GPU or no dask_cuda), "address" (connect to ``address``), "auto" (cuda when usable, else local),
    "slurm" (workers as SLURM jobs, see ``slurm``) or "kubernetes" (a DaskCluster, see ``kubernetes``)."""
    n_workers: int = 2
    """Worker count for "local" (for "cuda" the GPU count decides; slurm and kubernetes have their own)."""
    threads_per_worker: int = 1
    """Threads per worker process of "local" and "cuda"."""
    memory_limit: str = "4GiB"
    """Memory limit per worker of "local" and "cuda" (Dask spills, then pauses, then restarts workers
    beyond it)."""
    address: str | None = None
    """Scheduler address for kind="address", e.g. ``tcp://10.0.0.5:8786``."""
    processes: bool = True
    """Workers as processes (True; GDAL and numpy release the GIL only partly) or threads."""
    dashboard: bool = True
    """Serve the Dask dashboard on a free port (``client.dashboard_link``)."""
    slurm: SlurmConfig | None = None
    """Queue, account, cores, memory, walltime ... of the SLURM jobs; required by (and only for) "slurm"."""
    kubernetes: KubernetesConfig | None = None
    """DaskCluster spec file, name and namespace; required by (and only for) "kubernetes"."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InputError(f"kind must be {', '.join(_KINDS[:-1])} or {_KINDS[-1]}, got {self.kind!r}")
        check_types(self, "cluster")
        if self.kind == "address" and not self.address:
            raise InputError('kind="address" needs address="tcp://host:port" of a running scheduler')
        if self.n_workers < 1 or self.threads_per_worker < 1:
            raise InputError("n_workers and threads_per_worker must be >= 1")
        for section in ("slurm", "kubernetes"):
            given = getattr(self, section) is not None
            if self.kind == section and not given:
                raise InputError(f'kind="{section}" needs a {section} section (see infra/hpc/*.example.yaml)')
            if given and self.kind != section:
                raise InputError(
                    f'{section} settings are given but kind is "{self.kind}": set kind: {section}'
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; inverse of :meth:`from_dict`."""
        out = asdict(self)
        out["slurm"] = self.slurm.to_dict() if self.slurm else None
        out["kubernetes"] = self.kubernetes.to_dict() if self.kubernetes else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterConfig:
        """Build from :meth:`to_dict` output or a YAML mapping; unknown keys are an InputError."""
        check_keys(cls, data, "cluster")
        fixed = dict(data)
        if isinstance(fixed.get("slurm"), Mapping):
            fixed["slurm"] = SlurmConfig.from_dict(fixed["slurm"])
        if isinstance(fixed.get("kubernetes"), Mapping):
            fixed["kubernetes"] = KubernetesConfig.from_dict(fixed["kubernetes"])
        return cls(**fixed)


def cuda_available() -> bool:
    """True if dask_cuda imports and torch sees a CUDA device."""
    try:
        import dask_cuda  # noqa: F401
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_kind(config: ClusterConfig) -> Literal["local", "cuda", "address", "slurm", "kubernetes"]:
    """The kind actually used: "auto" and unusable "cuda" become "local" (the latter with a warning)."""
    if config.kind in ("address", "local", "slurm", "kubernetes"):
        return config.kind  # type: ignore[return-value]
    if cuda_available():
        return "cuda"
    if config.kind == "cuda":
        log.warning("kind='cuda' asked for, but dask_cuda or a CUDA GPU is missing: using a CPU LocalCluster")
    return "local"


def _make_cluster(kind: str, config: ClusterConfig) -> distributed.deploy.Cluster:
    if kind == "slurm" and config.slurm is not None:
        return make_slurm_cluster(config.slurm, dashboard=config.dashboard)
    if kind == "kubernetes" and config.kubernetes is not None:
        return make_kubernetes_cluster(config.kubernetes)
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
    kind="address" only the client is closed; the remote cluster keeps running. SLURM worker jobs are
    cancelled and a kubernetes run's DaskCluster is deleted on exit. Workers of those kinds join as their
    jobs or pods start; tasks wait for them.

    Example:
        >>> with cluster_client(ClusterConfig(n_workers=2)) as client:  # doctest: +SKIP
        ...     client.submit(sum, [1, 2]).result()
    """
    config = config or ClusterConfig()
    kind = resolve_kind(config)
    cluster = None
    if kind == "address":
        client = distributed.Client(config.address, set_as_default=False)
    else:
        cluster = _make_cluster(kind, config)
        try:
            client = distributed.Client(cluster, set_as_default=False)
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


# --- configuration from a YAML file and the environment ---------------------------------------------


def load_cluster_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    default: ClusterConfig | None = None,
) -> ClusterConfig:
    """The cluster config of this process: a YAML file, then ``EOWATCH_CLUSTER__*`` overrides.

    The file is ``path``, else the one named by ``EOWATCH_CLUSTER_CONFIG``; it holds the fields of
    :class:`ClusterConfig` (``slurm:`` and ``kubernetes:`` as nested mappings; relative
    ``kubernetes.spec_path``/``worker_group_paths`` are relative to the file). Without a file, ``default``
    (or ``ClusterConfig()``) is the base. Environment overrides name one field each, nesting with ``__``:
    ``EOWATCH_CLUSTER__KIND=address``, ``EOWATCH_CLUSTER__ADDRESS=tcp://eowatch-scheduler:8786``,
    ``EOWATCH_CLUSTER__SLURM__ACCOUNT=geo42``; values are read as int, float, true/false, null, a
    ``[a, b]`` list, or else a plain string.

    Raises:
        InputError: the file is missing or not a YAML mapping, a key is unknown, or a value is invalid.
    """
    env = os.environ if environ is None else environ
    source = path or env.get(CONFIG_ENV)
    overrides = _env_overrides(env)
    if source:
        data = _read_config_file(Path(source))
    elif overrides:
        data = (default or ClusterConfig()).to_dict()
    else:
        return default or ClusterConfig()
    return ClusterConfig.from_dict(_merge(data, overrides))


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"cluster config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(
            f"cluster config file {path} is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"cluster config file {path} must hold a mapping of ClusterConfig fields")
    k8s = data.get("kubernetes")
    if isinstance(k8s, dict):  # paths in the file are relative to the file, wherever the process runs
        base = path.resolve().parent
        if isinstance(k8s.get("spec_path"), str):
            k8s["spec_path"] = str(base / k8s["spec_path"])
        if isinstance(k8s.get("worker_group_paths"), list):
            k8s["worker_group_paths"] = [str(base / p) for p in k8s["worker_group_paths"]]
    return data


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX:
            continue
        *parents, leaf = key[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _env_value(raw)
    return out


def _env_value(raw: str) -> Any:
    """int, float, bool, None or a list from an environment string; anything else stays a string.

    YAML's own scalar rules are not used for plain values: they read ``04:00:00`` (a walltime) as 14400.
    """
    text = raw.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("", "null", "none"):
        return None
    if text.startswith("["):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            below = out.get(key)
            out[key] = _merge(below if isinstance(below, dict) else {}, value)
        else:
            out[key] = value
    return out
