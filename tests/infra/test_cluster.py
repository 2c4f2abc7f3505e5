"""cluster_client: local cluster life cycle, CUDA fallback without a GPU, connecting by address; the
cluster config read from YAML and the environment. (SLURM and Kubernetes kinds: test_hpc.py.)"""

from __future__ import annotations

import logging
from pathlib import Path

import distributed
import pytest

from eowatch.errors import InputError
from eowatch.infra.cluster import (
    ClusterConfig,
    cluster_client,
    cuda_available,
    load_cluster_config,
    resolve_kind,
)


def test_local_cluster_runs_a_task_and_closes() -> None:
    config = ClusterConfig(n_workers=2, memory_limit="1GiB", dashboard=False)
    with cluster_client(config) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        assert client.submit(sum, [1, 2, 3]).result() == 6
        cluster = client.cluster
    assert client.status == "closed"
    assert cluster.status.name == "closed"


@pytest.mark.skipif(cuda_available(), reason="tests the fallback on a machine without a GPU")
def test_cuda_falls_back_to_local(caplog: pytest.LogCaptureFixture) -> None:
    config = ClusterConfig(kind="cuda", n_workers=1, processes=False, dashboard=False)
    with caplog.at_level(logging.WARNING, logger="eowatch.infra.cluster"), cluster_client(config) as client:
        assert isinstance(client.cluster, distributed.LocalCluster)
        assert client.submit(lambda: 41 + 1).result() == 42
    assert "using a CPU LocalCluster" in caplog.text
    assert resolve_kind(ClusterConfig(kind="auto")) == "local"


def test_connect_by_address_leaves_cluster_running() -> None:
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with cluster_client(ClusterConfig(kind="address", address=cluster.scheduler_address)) as client:
            assert client.submit(pow, 2, 5).result() == 32
        assert cluster.status.name == "running"


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="needs address"):
        ClusterConfig(kind="address")
    with pytest.raises(ValueError, match="kind must be"):
        ClusterConfig(kind="gpu")  # type: ignore[arg-type]
    config = ClusterConfig(kind="auto", n_workers=3)
    assert ClusterConfig.from_dict(config.to_dict()) == config


# --- configuration from YAML and the environment ----------------------------------------------------


def test_nested_configs_round_trip_and_tokenize_stably() -> None:
    from dask.base import tokenize

    from eowatch.infra.hpc import KubernetesConfig, SlurmConfig

    slurm = ClusterConfig(kind="slurm", slurm=SlurmConfig(queue="cpu", job_extra_directives=("--qos=low",)))
    k8s = ClusterConfig(kind="kubernetes", kubernetes=KubernetesConfig(spec_path="d.yaml", namespace="geo"))
    for config in (slurm, k8s):
        again = ClusterConfig.from_dict(config.to_dict())
        assert again == config
        assert tokenize(again) == tokenize(config)
    assert slurm.to_dict()["slurm"]["job_extra_directives"] == ["--qos=low"]  # JSON-ready


def test_load_cluster_config_from_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("kind: slurm\nslurm:\n  queue: cpu\n  cores: 16\n  processes: 8\n  memory: 32GiB\n")
    env = {
        "EOWATCH_CLUSTER_CONFIG": str(path),
        "EOWATCH_CLUSTER__SLURM__ACCOUNT": "geo42",
        "EOWATCH_CLUSTER__SLURM__JOBS": "12",
        "EOWATCH_CLUSTER__SLURM__WALLTIME": "1-00:00:00",
        "EOWATCH_CLUSTER__SLURM__JOB_EXTRA_DIRECTIVES": "[--qos=low, --exclusive]",
        "EOWATCH_CLUSTER__DASHBOARD": "false",
        "UNRELATED": "x",
    }
    config = load_cluster_config(environ=env)
    assert config.kind == "slurm" and config.dashboard is False
    assert config.slurm is not None
    assert (config.slurm.queue, config.slurm.account, config.slurm.jobs) == ("cpu", "geo42", 12)
    assert (config.slurm.cores, config.slurm.processes, config.slurm.memory) == (16, 8, "32GiB")
    assert config.slurm.walltime == "1-00:00:00"
    assert config.slurm.job_extra_directives == ("--qos=low", "--exclusive")
    assert config.slurm.worker_memory_bytes() == 4 * 2**30 and config.slurm.threads_per_worker() == 2


def test_load_cluster_config_without_file_keeps_the_default() -> None:
    default = ClusterConfig(n_workers=3)
    assert load_cluster_config(environ={}) == ClusterConfig()
    assert load_cluster_config(environ={}, default=default) is default
    env = {"EOWATCH_CLUSTER__KIND": "address", "EOWATCH_CLUSTER__ADDRESS": "tcp://eowatch-scheduler:8786"}
    config = load_cluster_config(environ=env, default=default)
    assert (config.kind, config.address, config.n_workers) == ("address", "tcp://eowatch-scheduler:8786", 3)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (None, {}, "does not exist"),
        ("kind: [local\n", {}, "is not valid YAML"),
        ("- local\n", {}, "must hold a mapping"),
        ("kind: local\nworkers: 4\n", {}, "unknown cluster setting"),
        ("kind: local\n", {"EOWATCH_CLUSTER__N_WORKERS": "many"}, "n_workers must be int"),
        ("kind: local\nslurm:\n  queue: cpu\n", {}, 'kind is "local": set kind: slurm'),
        ("kind: address\n", {}, "needs address="),
    ],
)
def test_bad_cluster_config_is_one_input_error(
    tmp_path: Path, text: str | None, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "cluster.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        load_cluster_config(path, environ=env)
    assert "\n" not in str(err.value)
