"""bf16 autocast prediction on a GPU agrees with float32 on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eowatch.models import LoadedModel, predict_change


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_matches_cpu(tiny_model: LoadedModel) -> None:
    rng = np.random.default_rng(0)
    before = rng.normal(0.2, 0.1, (8, 80, 70)).astype(np.float32)
    after = rng.normal(0.2, 0.1, (8, 80, 70)).astype(np.float32)
    cpu = predict_change(tiny_model, before, after, tile=32)
    gpu_model = LoadedModel(module=tiny_model.module.to("cuda"), card=tiny_model.card)
    try:
        gpu = predict_change(gpu_model, before, after, tile=32)
    finally:
        tiny_model.module.to("cpu")
    assert gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, atol=3e-2)
    assert (gpu.argmax(0) == cpu.argmax(0)).mean() > 0.98
