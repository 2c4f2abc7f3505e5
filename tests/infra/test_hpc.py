"""SLURM and Kubernetes cluster kinds, offline: rendered job scripts, DaskCluster specs, one-line errors.

No SLURM and no Kubernetes run here: the SLURM job script is rendered by dask-jobqueue itself (its
scheduler starts on loopback for the time of the call), and the kubernetes kind builds the resources it
would submit from the same files ``infra/k8s`` applies.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from eowatch.errors import InputError, ServiceError
from eowatch.infra.cluster import ClusterConfig, cluster_client, load_cluster_config
from eowatch.infra.hpc import KubernetesConfig, SlurmConfig, load_dask_specs, slurm_cluster_kwargs
from eowatch.infra.hpc.k8s import make_kubernetes_cluster
from eowatch.infra.hpc.slurm import make_slurm_cluster, slurm_job_script

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
HPC = REPO / "infra" / "hpc"


def _directives(script: str) -> list[str]:
    return [
        line.removeprefix("#SBATCH").strip() for line in script.splitlines() if line.startswith("#SBATCH")
    ]


# --- SLURM ------------------------------------------------------------------------------------------


def test_slurm_job_script_has_the_configured_directives(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    config = SlurmConfig(
        queue="cpu",
        account="geo42",
        cores=8,
        processes=4,
        memory="16GiB",
        walltime="06:30:00",
        job_extra_directives=("--qos=normal", "--constraint=avx512"),
        job_script_prologue=("module load gdal", "source /opt/eowatch/.venv/bin/activate"),
        interface="lo",
        local_directory=str(tmp_path / "scratch"),
        log_directory=str(tmp_path / "logs"),
        python="/opt/eowatch/.venv/bin/python",
        job_name="eowatch-fr",
    )
    script = slurm_job_script(config)
    directives = _directives(script)
    assert "-J eowatch-fr" in directives
    assert "-p cpu" in directives
    assert "-A geo42" in directives
    assert "--cpus-per-task=8" in directives
    assert "--mem=16G" in directives
    assert "-t 06:30:00" in directives
    assert directives[-2:] == ["--qos=normal", "--constraint=avx512"]
    assert f"-o {tmp_path / 'logs'}/eowatch-fr-%J.out" in directives
    body = script.split("\n#SBATCH")[-1]
    assert body.index("module load gdal") < body.index("source /opt/eowatch") < body.index("dask_worker")
    worker = next(line for line in script.splitlines() if "distributed.cli.dask_worker" in line)
    assert worker.startswith("/opt/eowatch/.venv/bin/python -m distributed.cli.dask_worker tcp://127.0.0.1:")
    for flag in ("--nthreads 2", "--nworkers 4", "--memory-limit 4.00GiB", "--interface lo"):
        assert flag in worker
    assert f"--local-directory {tmp_path / 'scratch'}" in worker


def test_example_slurm_config_renders() -> None:
    pytest.importorskip("dask_jobqueue")
    config = load_cluster_config(HPC / "slurm.example.yaml", environ={})
    assert config.kind == "slurm" and config.slurm is not None
    overrides = {"interface": "lo", "log_directory": None, "local_directory": None}
    script = slurm_job_script(SlurmConfig.from_dict({**config.slurm.to_dict(), **overrides}))
    directives = _directives(script)
    assert f"--cpus-per-task={config.slurm.cores}" in directives
    assert f"-t {config.slurm.walltime}" in directives


def test_example_slurm_workers_get_the_measured_memory() -> None:
    """Each worker process of the example gets at least what benchmark 3 scaled to 3-month windows needs."""
    from benchmarks.scaling_estimate import (
        load_memory,
        measure_torch_mib,
        window_acquisitions,
        worker_memory_mib,
        year_windows,
    )

    slurm = load_cluster_config(HPC / "slurm.example.yaml", environ={}).slurm
    assert slurm is not None
    s2, s1 = window_acquisitions(max((b - a).days + 1 for a, b in year_windows()))
    need = worker_memory_mib(load_memory(), s2, s1, slurm.threads_per_worker(), measure_torch_mib())
    assert slurm.worker_memory_bytes() >= need * 2**20


def test_slurm_kwargs_leave_unset_options_to_dask_jobqueue() -> None:
    kwargs = slurm_cluster_kwargs(SlurmConfig(), dashboard=False)
    assert kwargs["scheduler_options"] == {"dashboard_address": None}
    assert not {"interface", "local_directory", "log_directory", "python"} & set(kwargs)
    assert kwargs["cores"] == 8 and kwargs["processes"] == 4 and kwargs["memory"] == "16GiB"


def test_slurm_without_sbatch_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ServiceError, match="sbatch, which is not on PATH"):
        make_slurm_cluster(SlurmConfig())
    with (
        pytest.raises(ServiceError, match="sbatch"),
        cluster_client(ClusterConfig(kind="slurm", slurm=SlurmConfig())),
    ):
        pass


def test_slurm_without_dask_jobqueue_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails as if not installed
    with pytest.raises(
        InputError, match=r"needs the optional package dask-jobqueue: pip install 'eowatch\[hpc\]'"
    ):
        make_slurm_cluster(SlurmConfig(), submit=False)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cores": 6, "processes": 4}, "must be a multiple of slurm.processes"),
        ({"cores": "8"}, "slurm.cores must be int"),
        ({"jobs": 0}, "slurm.jobs must be >= 1"),
        ({"memory": "lots"}, "slurm.memory must be a size"),
        ({"memory": "512MiB", "processes": 4, "cores": 4}, "at least 256 MiB"),
        ({"walltime": "4h"}, "slurm.walltime must look like"),
        ({"job_extra_directives": ["qos=normal"]}, "single sbatch options"),
        ({"job_extra_directives": ["--qos=normal\nrm -rf ~"]}, "single sbatch options"),
        ({"job_script_prologue": ["a\nb"]}, "single shell lines"),
        ({"job_name": "my job"}, "job_name may hold"),
        ({"partition": "cpu"}, "unknown slurm setting"),
    ],
)
def test_bad_slurm_settings_are_one_line_input_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        ClusterConfig.from_dict({"kind": "slurm", "slurm": settings})
    assert "\n" not in str(err.value)


def test_unquoted_yaml_walltime_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("kind: slurm\nslurm:\n  walltime: 04:00:00\n")  # YAML 1.1 reads 14400
    config = load_cluster_config(path, environ={})
    assert config.slurm is not None and config.slurm.walltime == "04:00:00"


# --- Kubernetes -------------------------------------------------------------------------------------


def _specs(**overrides: object) -> KubernetesConfig:
    settings: dict[str, object] = {
        "spec_path": str(K8S / "dask" / "daskcluster.yaml"),
        "worker_group_paths": (str(K8S / "dask" / "gpu-workergroup.yaml"),),
    }
    return KubernetesConfig(**{**settings, **overrides})  # type: ignore[arg-type]


def test_kubernetes_kind_builds_the_cluster_and_gpu_group_specs() -> None:
    specs = load_dask_specs(_specs(name="eowatch-run-7", namespace="geo", replicas=12))
    cluster = specs.cluster
    assert (cluster["apiVersion"], cluster["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    assert cluster["metadata"]["name"] == specs.name == "eowatch-run-7"
    assert cluster["metadata"]["namespace"] == specs.namespace == "geo"
    assert cluster["spec"]["worker"]["replicas"] == 12
    assert cluster["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == "eowatch-run-7"
    ((suffix, group),) = specs.worker_groups
    assert suffix == "gpu"
    assert group["metadata"] == {**group["metadata"], "name": "eowatch-run-7-gpu", "namespace": "geo"}
    assert group["spec"]["cluster"] == "eowatch-run-7"
    container = group["spec"]["worker"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # The files themselves are left as they are.
    source = yaml.safe_load((K8S / "dask" / "daskcluster.yaml").read_text())
    assert source["metadata"]["name"] == "eowatch" and source["spec"]["worker"]["replicas"] == 4


def test_kubernetes_names_get_a_fresh_uuid_per_run() -> None:
    first, second = (load_dask_specs(_specs(name="eowatch-run-{uuid}")).name for _ in range(2))
    assert first != second
    assert first.startswith("eowatch-run-") and len(first) == len("eowatch-run-") + 8


def test_example_kubernetes_config_resolves_paths_beside_it() -> None:
    config = load_cluster_config(K8S / "dask" / "cluster-kubernetes.yaml", environ={})
    assert config.kind == "kubernetes" and config.kubernetes is not None
    specs = load_dask_specs(config.kubernetes)
    assert specs.name.startswith("eowatch-run-") and specs.namespace is None
    assert [s for s, _ in specs.worker_groups] == ["gpu"]


def test_bad_kubernetes_specs_are_one_line_input_errors(tmp_path: Path) -> None:
    source = yaml.safe_load((K8S / "dask" / "daskcluster.yaml").read_text())
    cases = {
        "missing.yaml": (None, "does not exist"),
        "notyaml.yaml": ("a: [1, 2\n", "is not valid YAML"),
        "deployment.yaml": (
            "apiVersion: apps/v1\nkind: Deployment\n",
            "not a kubernetes.dask.org/v1 resource",
        ),
        "two.yaml": (yaml.safe_dump_all([source, source]), "2 DaskCluster resources"),
        "noworkers.yaml": (
            yaml.safe_dump({**source, "spec": {**source["spec"], "worker": {"replicas": 1}}}),
            "no spec.worker.spec.containers",
        ),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(InputError, match=message) as err:
            load_dask_specs(KubernetesConfig(spec_path=str(path)))
        assert "\n" not in str(err.value)
    group = yaml.safe_load((K8S / "dask" / "gpu-workergroup.yaml").read_text())
    other = tmp_path / "other-group.yaml"
    other.write_text(yaml.safe_dump({**group, "spec": {**group["spec"], "cluster": "someone-else"}}))
    with pytest.raises(InputError, match="belongs to cluster 'someone-else'"):
        load_dask_specs(_specs(worker_group_paths=(str(other),)))
    with pytest.raises(InputError, match="not a valid DaskCluster name"):
        KubernetesConfig(spec_path="x.yaml", name="Eowatch_Run")
    with pytest.raises(InputError, match='kind="kubernetes" needs a kubernetes section'):
        ClusterConfig(kind="kubernetes")


def test_kubernetes_without_dask_kubernetes_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(
        InputError, match=r"needs the optional package dask-kubernetes: pip install 'eowatch\[k8s\]'"
    ):
        make_kubernetes_cluster(_specs())


def test_kubernetes_without_credentials_is_one_service_error(tmp_path: Path) -> None:
    """A real KubeCluster start with no kubeconfig and no in-cluster service account: one clear line."""
    pytest.importorskip("dask_kubernetes.operator")
    code = textwrap.dedent(
        f"""
        from eowatch.errors import EowatchError
        from eowatch.infra.cluster import ClusterConfig, cluster_client, load_cluster_config
        config = load_cluster_config({str(K8S / "dask" / "cluster-kubernetes.yaml")!r}, environ={{}})
        try:
            with cluster_client(config):
                pass
        except EowatchError as exc:
            print(type(exc).__name__, "|", exc)
        """
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    kind, _, message = out.stdout.strip().partition(" | ")
    assert kind == "ServiceError", out.stdout + out.stderr
    assert message.startswith("could not create DaskCluster 'eowatch-run-") and "credentials" in message
    assert "Traceback" not in out.stderr
