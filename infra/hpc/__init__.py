"""Cluster backends for shared compute: SLURM through dask-jobqueue, Kubernetes through the dask-kubernetes
operator. Their packages are optional extras (``eowatch[hpc]``, ``eowatch[k8s]``), imported only when a
cluster of that kind is made; the configs and the specs they describe need neither."""

from eowatch.infra.hpc.k8s import DaskSpecs, KubernetesConfig, load_dask_specs, make_kubernetes_cluster
from eowatch.infra.hpc.slurm import SlurmConfig, make_slurm_cluster, slurm_cluster_kwargs, slurm_job_script

__all__ = [
    "DaskSpecs",
    "KubernetesConfig",
    "SlurmConfig",
    "load_dask_specs",
    "make_kubernetes_cluster",
    "make_slurm_cluster",
    "slurm_cluster_kwargs",
    "slurm_job_script",
]
