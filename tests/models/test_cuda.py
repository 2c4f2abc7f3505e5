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


def _shipped_prediction(model: LoadedModel, x: np.ndarray, precision: str) -> np.ndarray:
    """A shipped change model's default engine on ``x`` (three periods), where the module lives."""
    from dataclasses import replace

    from eowatch.models.engine import default_config, module_device
    from eowatch.models.predict import predict_change_series, season_days
    from eowatch.models.vhr_change import VHR_TASK, predict_vhr_pairs, vhr_engine_config

    device = module_device(model.module)
    if model.card.task == VHR_TASK:
        return predict_vhr_pairs(model, x, config=vhr_engine_config(device, precision))  # type: ignore[arg-type]
    config = replace(default_config(device, model.module.receptive_field // 2), precision=precision)
    days = season_days(model, [20560, 20650, 20740])
    return predict_change_series(model, x, config=config, days=days)


def _raw_periods(model: LoadedModel, rng: np.random.Generator) -> np.ndarray:
    """Three periods around the card's normalisation statistics, no data in part of one."""
    from eowatch.models.predict import draw_raw_inputs

    vhr = model.card.task == "vhr-change-detection"
    x = draw_raw_inputs(model.card, 3, 300, 260, rng, digital_numbers=vhr)
    x[1, :, 40:90, 50:120] = np.nan
    return x


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["siamese-s2s1-change", "siamese-vhr-change"])
def test_shipped_change_models_on_cuda_match_the_cpu(name: str) -> None:
    """The shipped S2+S1 and VHR change models on the GPU (raw windows normalised there) against the CPU:
    equal to float32 rounding in IEEE float32, and the same change masks but for a few pixels in bf16."""
    import copy

    from eowatch.models.engine import pin_module
    from eowatch.models.registry import get

    cpu_model = get(name)
    gpu_model = LoadedModel(pin_module(copy.deepcopy(cpu_model.module), torch.device("cuda")), cpu_model.card)
    x = _raw_periods(cpu_model, np.random.default_rng(1))
    cpu = _shipped_prediction(cpu_model, x, "float32")
    np.testing.assert_allclose(_shipped_prediction(gpu_model, x, "float32"), cpu, atol=1e-4)
    bf16 = _shipped_prediction(gpu_model, x, "auto")
    masks = [(1 - p[:, 0]) >= cpu_model.card.decision_threshold for p in (cpu, bf16)]
    assert (masks[0] != masks[1]).mean() < 0.005
