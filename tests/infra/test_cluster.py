"""cluster_client: local cluster life cycle, CUDA fallback without a GPU, connecting by address."""

from __future__ import annotations

import logging

import distributed
import pytest

from eowatch.infra.cluster import ClusterConfig, cluster_client, cuda_available, resolve_kind


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
