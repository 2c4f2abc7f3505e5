"""The GPU path of the cluster: dask-cuda's LocalCUDACluster runs the shipped change model on each worker's
GPU (bf16 autocast, as the flow's workers do) and agrees with float32 on the CPU. Skips without dask_cuda
and a CUDA GPU (the CPU fallback is tested in test_cluster.py)."""

from __future__ import annotations

import sys

import cloudpickle
import numpy as np
import pytest

from eowatch.infra.cluster import ClusterConfig, cluster_client, cuda_available

MODEL = "siamese-s2s1-change"
MIDDLE_DAYS = (20560, 20650, 20740)  # three periods' middle days (days since 1970-01-01)


def _series(size: int = 320) -> np.ndarray:
    """Three periods ``(3, bands, size, size)`` drawn around the model's normalisation statistics."""
    from eowatch.models.predict import draw_raw_inputs
    from eowatch.models.registry import card_of

    return draw_raw_inputs(card_of(MODEL), 3, size, size, np.random.default_rng(3))


def _predict_on_worker(bands: np.ndarray) -> tuple[str, str, np.ndarray]:
    """What a flow worker does: the registry's model pinned to the worker's device, the default engine."""
    import os

    from eowatch.models.engine import module_device, pin_module, worker_device
    from eowatch.models.predict import predict_change_series, season_days
    from eowatch.models.registry import get

    model = get(MODEL)
    pin_module(model.module, worker_device())
    probs = predict_change_series(model, bands, days=season_days(model, MIDDLE_DAYS))
    return str(module_device(model.module)), os.environ.get("CUDA_VISIBLE_DEVICES", ""), probs


@pytest.mark.skipif(not cuda_available(), reason="needs dask_cuda and a CUDA GPU")
def test_cuda_cluster_runs_the_change_model_on_each_workers_gpu() -> None:
    import torch

    from eowatch.models.engine import pin_module
    from eowatch.models.predict import predict_change_series, season_days
    from eowatch.models.registry import get

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import the tests
    bands = _series()
    with cluster_client(ClusterConfig(kind="cuda", dashboard=False)) as client:
        assert type(client.cluster).__name__ == "LocalCUDACluster"
        workers = list(client.scheduler_info()["workers"])
        assert len(workers) == torch.cuda.device_count()
        results = [
            client.submit(_predict_on_worker, bands, workers=[w], pure=False).result() for w in workers
        ]
    visible = sorted(r[1].split(",")[0] for r in results)
    assert visible == sorted(str(i) for i in range(len(workers))), "each worker should own one GPU"
    model = get(MODEL)
    pin_module(model.module, torch.device("cpu"))
    cpu = predict_change_series(model, bands, days=season_days(model, MIDDLE_DAYS))
    threshold = model.card.decision_threshold
    for device, _, gpu in results:
        assert device.startswith("cuda"), device
        assert gpu.shape == cpu.shape and gpu.dtype == np.float32
        assert float(np.median(np.abs(gpu - cpu))) < 1e-2  # bf16 autocast vs float32
        differing = ((1 - gpu[:, 0]) >= threshold) != ((1 - cpu[:, 0]) >= threshold)
        assert differing.mean() < 0.01
