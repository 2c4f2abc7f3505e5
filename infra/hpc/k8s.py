"""Kubernetes clusters through the dask-kubernetes operator: a frozen config, the resources it describes.

A run of kind "kubernetes" creates its own ``DaskCluster`` (``kubernetes.dask.org/v1``) from a YAML file,
the same one ``infra/k8s/`` applies for the standing cluster, plus its ``DaskWorkerGroup`` resources (the
GPU group), and deletes them when the run ends. :func:`load_dask_specs` builds those resources from the
files without any cluster; :func:`make_kubernetes_cluster` submits them. dask-kubernetes is optional
(``pip install 'eowatch[k8s]'``) and imported only when a cluster is made.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from eowatch.errors import InputError, ServiceError
from eowatch.infra.hpc._fields import check_keys, check_types

if TYPE_CHECKING:
    from dask_kubernetes.operator import KubeCluster

API_VERSION = "kubernetes.dask.org/v1"
# dask-kubernetes' own rule: an RFC 1123 label short enough for "<name>-scheduler" to stay <= 63 chars.
_NAME = re.compile(r"^(?=.{1,53}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class KubernetesConfig:
    """Which DaskCluster to create for a run, from which files, in which namespace."""

    spec_path: str
    """YAML file with one ``DaskCluster`` resource, optionally followed by ``DaskWorkerGroup`` resources
    of that cluster (relative paths in a cluster config file are relative to that file)."""
    worker_group_paths: tuple[str, ...] = ()
    """More YAML files of ``DaskWorkerGroup`` resources for the cluster, e.g. the GPU group."""
    name: str | None = None
    """Cluster name; None keeps the file's ``metadata.name``. ``{uuid}`` is replaced by 8 random hex
    digits, so concurrent runs get their own clusters (e.g. ``eowatch-run-{uuid}``)."""
    namespace: str | None = None
    """Namespace; None uses the file's ``metadata.namespace``, else the current context's."""
    replicas: int | None = None
    """Workers of the cluster's default group; None keeps the file's ``spec.worker.replicas``."""
    resource_timeout_s: int = 300
    """Seconds to wait for the operator to start the scheduler pod."""
    shutdown_on_close: bool = True
    """Delete the DaskCluster (and its worker groups) when the run's client closes."""

    def __post_init__(self) -> None:
        check_types(self, "kubernetes")
        if not self.spec_path:
            raise InputError("kubernetes.spec_path must name the DaskCluster YAML file")
        if self.replicas is not None and self.replicas < 0:
            raise InputError(f"kubernetes.replicas must be >= 0, got {self.replicas}")
        if self.resource_timeout_s < 1:
            raise InputError(f"kubernetes.resource_timeout_s must be >= 1, got {self.resource_timeout_s}")
        if self.namespace is not None and not _NAMESPACE.match(self.namespace):
            raise InputError(f"kubernetes.namespace {self.namespace!r} is not a valid namespace name")
        if self.name is not None:
            _check_name(self.name.replace("{uuid}", "0" * 8), "kubernetes.name")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); inverse of :meth:`from_dict`."""
        out = asdict(self)
        out["worker_group_paths"] = list(self.worker_group_paths)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KubernetesConfig:
        """Build from a mapping (YAML, environment, :meth:`to_dict`); unknown keys are an error."""
        check_keys(cls, data, "kubernetes")
        fixed = dict(data)
        if isinstance(fixed.get("worker_group_paths"), list):
            fixed["worker_group_paths"] = tuple(fixed["worker_group_paths"])
        return cls(**fixed)


@dataclass(frozen=True)
class DaskSpecs:
    """The resources a kubernetes run creates: its DaskCluster and its DaskWorkerGroups."""

    cluster: dict[str, Any]
    """The ``DaskCluster`` resource, renamed and placed in its namespace."""
    worker_groups: tuple[tuple[str, dict[str, Any]], ...]
    """``(suffix, DaskWorkerGroup resource)`` per extra group; the group is named ``<cluster>-<suffix>``."""

    @property
    def name(self) -> str:
        """The cluster's name (``metadata.name``)."""
        return str(self.cluster["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        """The namespace, or None for the current context's."""
        return self.cluster["metadata"].get("namespace")


def _check_name(name: str, where: str) -> None:
    if not _NAME.match(name):
        raise InputError(
            f"{where} {name!r} is not a valid DaskCluster name: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 53 characters"
        )


def _read_documents(path: str) -> list[dict[str, Any]]:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"Dask spec file {path} does not exist")
    try:
        docs = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"Dask spec file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("apiVersion") != API_VERSION:
            raise InputError(f"Dask spec file {path} holds a document that is not a {API_VERSION} resource")
        if doc.get("kind") not in ("DaskCluster", "DaskWorkerGroup"):
            raise InputError(
                f"Dask spec file {path} holds a {doc.get('kind')}; expected DaskCluster/DaskWorkerGroup"
            )
    return docs


def _list_at(resource: dict[str, Any], *path: str) -> list[Any]:
    node: Any = resource
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, list) else []


def _split(config: KubernetesConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    docs = _read_documents(config.spec_path)
    for path in config.worker_group_paths:
        docs += _read_documents(path)
    clusters = [d for d in docs if d["kind"] == "DaskCluster"]
    if len(clusters) != 1:
        raise InputError(
            f"the Dask spec files hold {len(clusters)} DaskCluster resources; exactly one is needed"
        )
    cluster = clusters[0]
    if not _list_at(cluster, "spec", "worker", "spec", "containers"):
        raise InputError(f"DaskCluster in {config.spec_path} has no spec.worker.spec.containers")
    if not _list_at(cluster, "spec", "scheduler", "spec", "containers"):
        raise InputError(f"DaskCluster in {config.spec_path} has no spec.scheduler.spec.containers")
    return cluster, [d for d in docs if d["kind"] == "DaskWorkerGroup"]


def load_dask_specs(config: KubernetesConfig) -> DaskSpecs:
    """Read the DaskCluster and DaskWorkerGroup files and apply the config's name, namespace, replicas.

    The cluster is renamed everywhere the operator relies on the name: ``metadata.name``, the scheduler
    service's ``dask.org/cluster-name`` selector, each group's ``spec.cluster`` and its name
    ``<cluster>-<suffix>`` (the suffix is the group's name in its file minus ``<file's cluster name>-``).

    Raises:
        InputError: a file is missing or not YAML, holds other resources, no or several DaskClusters,
            a group of another cluster or named without the cluster's prefix, or a bad name.
    """
    source, groups = _split(config)
    original = str(source.get("metadata", {}).get("name", ""))
    _check_name(original, f"metadata.name in {config.spec_path}")
    name = (config.name or original).replace("{uuid}", uuid.uuid4().hex[:8])
    _check_name(name, "kubernetes.name")
    namespace = config.namespace or source["metadata"].get("namespace")
    cluster = copy.deepcopy(source)
    cluster["metadata"] = {**cluster["metadata"], "name": name}
    if namespace:
        cluster["metadata"]["namespace"] = namespace
    if config.replicas is not None:
        cluster["spec"]["worker"]["replicas"] = config.replicas
    selector = cluster["spec"]["scheduler"].get("service", {}).get("selector", {})
    if "dask.org/cluster-name" in selector:
        selector["dask.org/cluster-name"] = name
    return DaskSpecs(cluster, tuple(_rename_group(g, original, name, namespace) for g in groups))


def _rename_group(
    group: dict[str, Any], original: str, name: str, namespace: str | None
) -> tuple[str, dict[str, Any]]:
    group_name = str(group.get("metadata", {}).get("name", ""))
    owner = group.get("spec", {}).get("cluster")
    if owner != original:
        raise InputError(f"DaskWorkerGroup {group_name!r} belongs to cluster {owner!r}, not {original!r}")
    if not group_name.startswith(f"{original}-") or len(group_name) == len(original) + 1:
        raise InputError(f"DaskWorkerGroup {group_name!r} must be named '{original}-<suffix>'")
    if not _list_at(group, "spec", "worker", "spec", "containers"):
        raise InputError(f"DaskWorkerGroup {group_name!r} has no spec.worker.spec.containers")
    suffix = group_name[len(original) + 1 :]
    out = copy.deepcopy(group)
    out["metadata"] = {**out["metadata"], "name": f"{name}-{suffix}"}
    if namespace:
        out["metadata"]["namespace"] = namespace
    out["spec"]["cluster"] = name
    return suffix, out


def make_kubernetes_cluster(config: KubernetesConfig) -> KubeCluster:
    """Create the run's DaskCluster and worker groups through the operator; wait for the scheduler.

    Raises:
        InputError: dask-kubernetes is not installed, or the spec files are bad (see load_dask_specs).
        ServiceError: the Kubernetes API refused or could not be reached (no credentials, no operator,
            a name already taken, the scheduler did not start within ``resource_timeout_s``).
    """
    try:
        from dask_kubernetes.operator import KubeCluster
        from dask_kubernetes.operator.kubecluster.kubecluster import CreateMode
    except ImportError:
        raise InputError(
            "kind='kubernetes' needs the optional package dask-kubernetes: pip install 'eowatch[k8s]'"
        ) from None
    specs = load_dask_specs(config)
    where = f"DaskCluster {specs.name!r} in namespace {specs.namespace or '(current context)'}"
    before = set(KubeCluster._instances)
    try:
        cluster = KubeCluster(
            custom_cluster_spec=specs.cluster,
            namespace=specs.namespace,
            create_mode=CreateMode.CREATE_ONLY,
            shutdown_on_close=config.shutdown_on_close,
            resource_timeout=config.resource_timeout_s,
            quiet=True,
        )
    except Exception as exc:  # kr8s/httpx/operator errors: report them in one line, no traceback
        # The failed KubeCluster stays registered for dask-kubernetes' exit-time reaper, which would
        # fail the same way and print a traceback: unregister it. (KubeCluster itself deletes a cluster
        # whose scheduler did not come up.)
        for stale in set(KubeCluster._instances) - before:
            KubeCluster._instances.discard(stale)
        raise ServiceError(f"could not create {where}: {_one_line(exc)}") from None
    try:
        for suffix, group in specs.worker_groups:
            cluster.add_worker_group(suffix, custom_spec=group["spec"]["worker"])
    except Exception as exc:
        cluster.close()
        raise ServiceError(f"could not add the worker groups of {where}: {_one_line(exc)}") from None
    return cluster


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
