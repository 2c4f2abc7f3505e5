"""The tiled-inference engine: window plans, exact crop tiling, encoder reuse, blending, precision, CUDA.

Tolerances: float32 tiled inference equals whole-image inference within 1e-5 in probability (oneDNN
picks kernels by shape, so sums are ordered differently: observed differences are ~1e-6); bf16 (opt-in
on CPU, default on CUDA) within 5e-2.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from eowatch.errors import InputError, ModelError
from eowatch.models import LoadedModel
from eowatch.models.engine import (
    EngineConfig,
    blend_weights,
    default_config,
    fuse_conv_gelu,
    pin_module,
    plan_axis,
    run_tiled,
)
from eowatch.models.predict import predict_change_series, preprocess

EXACT = 1e-5
CPU = torch.device("cpu")


def _series(rng: np.random.Generator, periods: int, h: int, w: int) -> np.ndarray:
    """Raw bands ``(T, 8, H, W)`` around the tiny card's means, a NaN cloud in one period."""
    x = rng.normal(0.5, 1.0, (periods, 8, h, w)).astype(np.float32)
    x[1, :3, 20:31, 40:70] = np.nan
    return x


def _pairwise_whole_image(model: LoadedModel, bands: np.ndarray) -> np.ndarray:
    """Reference: the plain module's ``forward`` on each pair of the whole image, ``(T-1, K, H, W)``."""
    x = torch.from_numpy(preprocess(model.card, bands))
    with torch.no_grad():
        logits = [model.module(x[t - 1 : t], x[t : t + 1]) for t in range(1, len(x))]
    return torch.cat(logits).softmax(dim=1).numpy()


def _config(model: LoadedModel, **change: object) -> EngineConfig:
    return replace(default_config(CPU, model.module.receptive_field // 2), **change)


# --- window plans ---------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 300),
    data=st.data(),
    tile=st.integers(1, 80),
    halo=st.integers(0, 12),
    overlap=st.integers(0, 24),
)
def test_plan_cores_tile_the_region_and_windows_see_their_halo(
    size: int, data: st.DataObject, tile: int, halo: int, overlap: int
) -> None:
    overlap = min(overlap, tile)
    r0 = data.draw(st.integers(0, size - 1))
    r1 = data.draw(st.integers(r0 + 1, size))
    windows = plan_axis(size, slice(r0, r1), tile, halo, overlap)
    assert windows[0].core_start == r0 and windows[-1].core_stop == r1
    assert all(a.core_stop == b.core_start for a, b in itertools.pairwise(windows))
    cores = [w.core_stop - w.core_start for w in windows]
    assert max(cores) <= tile and max(cores) - min(cores) <= 1
    assert len({w.stop - w.start for w in windows}) == 1  # one shape: windows batch together
    total = np.zeros(size)
    for w in windows:
        assert w.start >= 0 and w.stop <= size
        lo = w.core_start if w.first else w.core_start - overlap // 2
        hi = w.core_stop if w.last else w.core_stop + overlap - overlap // 2
        assert w.start == 0 or lo - w.start >= halo  # context before what the window contributes
        assert w.stop == size or w.stop - hi >= halo
        weights = blend_weights(w, slice(r0, r1), overlap)
        outside = np.r_[np.arange(w.start, max(lo, r0)), np.arange(min(hi, r1), w.stop)] - w.start
        assert not weights[outside].any()
        total[w.start : w.stop] += weights
    assert (total[r0:r1] > 0).all()
    if overlap <= min(cores):
        np.testing.assert_allclose(total[r0:r1], 1.0, atol=1e-12)


@pytest.mark.parametrize(("size", "tile", "overlap"), [(100, 30, 10), (64, 64, 0), (97, 20, 18), (50, 7, 3)])
def test_blend_weights_sum_to_one(size: int, tile: int, overlap: int) -> None:
    """A partition of unity wherever the blending band is no wider than the cores (balanced cores can be
    a pixel or so shorter than ``tile``; wider bands still average, ``run_tiled`` divides by the sum)."""
    region = slice(3, size - 2)
    total = np.zeros(size)
    for w in plan_axis(size, region, tile, 4, overlap):
        total[w.start : w.stop] += blend_weights(w, region, overlap)
    np.testing.assert_allclose(total[region], 1.0, atol=1e-12)
    assert not total[: region.start].any() and not total[region.stop :].any()


def test_config_rejects_bad_values() -> None:
    with pytest.raises(InputError, match="overlap"):
        EngineConfig(tile=16, overlap=32)
    with pytest.raises(InputError, match="tile"):
        EngineConfig(tile=0)
    with pytest.raises(InputError, match="halo"):
        EngineConfig(halo=-1)
    with pytest.raises(InputError, match="precision"):
        EngineConfig(precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="region"):
        plan_axis(10, slice(5, 5), 4, 0, 0)


def test_precision_auto_is_float32_on_cpu_and_bf16_on_cuda() -> None:
    assert EngineConfig().autocast_dtype(CPU) is None
    assert EngineConfig().autocast_dtype(torch.device("cuda")) is torch.bfloat16
    assert EngineConfig(precision="bfloat16").autocast_dtype(CPU) is torch.bfloat16
    assert EngineConfig(precision="float32").autocast_dtype(torch.device("cuda")) is None


# --- change series: exact tiling and encoder reuse ----------------------------------------------------


@pytest.mark.parametrize(("tile", "batch_windows"), [(16, 1), (37, 3), (500, 1)])
def test_tiled_series_equals_whole_image(tiny_model: LoadedModel, tile: int, batch_windows: int) -> None:
    bands = _series(np.random.default_rng(0), 4, 150, 130)
    whole = _pairwise_whole_image(tiny_model, bands)
    config = _config(tiny_model, tile=tile, batch_windows=batch_windows)
    tiled = predict_change_series(tiny_model, bands, config=config)
    assert tiled.shape == (3, 5, 150, 130) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=EXACT)
    assert np.isfinite(tiled).all()


def test_region_uses_the_context_around_it(tiny_model: LoadedModel) -> None:
    """A chunk predicted from its halo window equals the same pixels of the whole image."""
    bands = _series(np.random.default_rng(1), 3, 120, 110)
    whole = _pairwise_whole_image(tiny_model, bands)
    window = bands[:, :, 20:100, 0:70]  # the chunk rows 26:94, cols 0:64 with a 6 px halo
    region = (slice(6, 74), slice(0, 64))
    part = predict_change_series(tiny_model, window, region=region, config=_config(tiny_model, tile=24))
    np.testing.assert_allclose(part, whole[:, :, 26:94, 0:64], atol=EXACT)


def test_encoder_reuse_equals_pairwise_forward(tiny_model: LoadedModel) -> None:
    """Each period encoded once (shared by both of its transitions) gives the pairwise forward's output."""
    bands = _series(np.random.default_rng(2), 5, 40, 50)
    x = torch.from_numpy(preprocess(tiny_model.card, bands))
    with torch.no_grad():
        features = tiny_model.module.encode(x)
        shared = tiny_model.module.decode(features[:-1], features[1:]).softmax(dim=1).numpy()
    pairwise = _pairwise_whole_image(tiny_model, bands)
    np.testing.assert_allclose(shared, pairwise, atol=1e-6)
    np.testing.assert_allclose(predict_change_series(tiny_model, bands), pairwise, atol=EXACT)


def test_series_is_deterministic(tiny_model: LoadedModel) -> None:
    bands = _series(np.random.default_rng(3), 3, 70, 90)
    config = _config(tiny_model, tile=32, batch_windows=2)
    first = predict_change_series(tiny_model, bands, config=config)
    np.testing.assert_array_equal(first, predict_change_series(tiny_model, bands, config=config))


def test_series_rejects_a_single_period(tiny_model: LoadedModel) -> None:
    with pytest.raises(InputError, match="T >= 2"):
        predict_change_series(tiny_model, np.zeros((1, 8, 8, 8), np.float32))


def test_bfloat16_on_cpu_is_opt_in_and_close(tiny_model: LoadedModel) -> None:
    bands = _series(np.random.default_rng(4), 3, 64, 64)
    whole = _pairwise_whole_image(tiny_model, bands)
    default = predict_change_series(tiny_model, bands)
    np.testing.assert_allclose(default, whole, atol=EXACT)  # "auto" on CPU: float32
    bf16 = predict_change_series(tiny_model, bands, config=_config(tiny_model, precision="bfloat16"))
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, default)
    np.testing.assert_allclose(bf16, whole, atol=5e-2)
    assert (bf16.argmax(axis=1) == whole.argmax(axis=1)).mean() > 0.97


# --- conv + GELU fusion ---------------------------------------------------------------------------------


def test_fused_view_matches_and_shares_parameters(tiny_model: LoadedModel) -> None:
    module = tiny_model.module
    fused = fuse_conv_gelu(module)
    assert {id(p) for p in fused.parameters()} == {id(p) for p in module.parameters()}
    assert isinstance(module.encoder[0][1], nn.GELU)  # the module itself is left as it was
    x = torch.randn(2, module.in_channels, 23, 31)
    with torch.no_grad():
        np.testing.assert_allclose(fused.encode(x).numpy(), module.encode(x).numpy(), atol=1e-5)
        module.encoder[0][0].bias.add_(1.0)  # an in-place update shows through the view
        np.testing.assert_allclose(fused.encode(x).numpy(), module.encode(x).numpy(), atol=1e-5)
        module.encoder[0][0].bias.sub_(1.0)


def test_fused_view_keeps_gradients_for_training() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU())
    x = torch.randn(1, 3, 8, 8)
    fuse_conv_gelu(net)(x).sum().backward()  # grad needed: the separate ops run, autograd works
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


# --- blending for models without a finite receptive field -----------------------------------------------


class _WideStub(nn.Module):
    """A local 3x3 conv plus a smooth far field: a 33 x 33 Gaussian-tapered conv (receptive field 33 px).

    Stands in for models whose outputs depend on context far beyond any affordable halo.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.local = nn.Conv2d(2, 3, 3, padding=1)
        self.far = nn.Conv2d(2, 3, 33, padding=16, bias=False)
        r2 = (torch.arange(33) - 16.0).square()
        taper = torch.exp(-(r2[:, None] + r2[None, :]) / (2 * 8.0**2))
        with torch.no_grad():
            self.far.weight.copy_(torch.randn(3, 2, 1, 1) * taper / taper.sum() * 20.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.local(x) + self.far(x))


def _seam_jump(error: np.ndarray) -> float:
    """Largest jump of an error field between neighbouring pixels (a seam is a jump)."""
    return float(max(np.abs(np.diff(error, axis=-1)).max(), np.abs(np.diff(error, axis=-2)).max()))


def test_blending_has_no_seams_for_a_wide_receptive_field() -> None:
    stub = _WideStub().eval()
    x = torch.from_numpy(np.random.default_rng(6).normal(0, 1, (1, 2, 150, 140)).astype(np.float32))
    with torch.no_grad():
        whole = stub(x).numpy()
    blended = run_tiled(stub, x, EngineConfig(tile=48, halo=4, overlap=32))
    cropped = run_tiled(stub, x, EngineConfig(tile=48, halo=4, overlap=0))
    blend_error, crop_error = blended - whole, cropped - whole
    # The stub needs 16 px of context; pixels at the outer end of a blending band see only 4 (with
    # little weight). Both differ from the whole image, but the hard crop changes abruptly at core
    # edges (seams) where blending changes smoothly.
    # Measured: max |error| 0.022 blended vs 0.44 cropped; largest jump 0.013 vs 0.53.
    assert np.abs(blend_error).max() < 0.05
    assert _seam_jump(blend_error) < 0.03
    assert _seam_jump(crop_error) > 10 * _seam_jump(blend_error)


def test_blending_with_a_full_halo_is_exact() -> None:
    stub = _WideStub().eval()
    x = torch.from_numpy(np.random.default_rng(7).normal(0, 1, (2, 2, 90, 100)).astype(np.float32))
    with torch.no_grad():
        whole = stub(x).numpy()
    blended = run_tiled(stub, x, EngineConfig(tile=40, halo=16, overlap=16, batch_windows=2))
    np.testing.assert_allclose(blended, whole, atol=EXACT)


def test_blending_a_constant_gives_the_constant() -> None:
    x = torch.zeros(1, 1, 77, 91)
    out = run_tiled(
        lambda w: torch.full((w.shape[0], 2, *w.shape[-2:]), 0.25), x, EngineConfig(tile=20, overlap=14)
    )
    np.testing.assert_allclose(out, 0.25, rtol=1e-6)


def test_predictor_with_wrong_output_shape_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="window predictor"):
        run_tiled(lambda w: w[..., :-1], torch.zeros(1, 1, 20, 20), EngineConfig(tile=8))


# --- CUDA -----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_the_same_engine_in_bf16(tiny_model: LoadedModel) -> None:
    bands = _series(np.random.default_rng(8), 3, 90, 80)
    cpu = predict_change_series(tiny_model, bands)
    gpu_model = LoadedModel(
        module=pin_module(copy.deepcopy(tiny_model.module), torch.device("cuda")), card=tiny_model.card
    )
    gpu = predict_change_series(gpu_model, bands)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, atol=5e-2)
    assert (gpu.argmax(axis=1) == cpu.argmax(axis=1)).mean() > 0.98


def test_drawn_raw_inputs_follow_the_card_normalisation(tiny_model: LoadedModel) -> None:
    """The benchmarks' and device checks' inputs: normalised, each band is about N(0, 1); as digital
    numbers, whole values in 1-255."""
    from eowatch.models.predict import draw_raw_inputs

    card = tiny_model.card
    x = draw_raw_inputs(card, 2, 64, 48, np.random.default_rng(0))
    assert x.shape == (2, len(card.bands), 64, 48) and x.dtype == np.float32
    z = preprocess(card, x)[:, : len(card.bands)]
    assert np.abs(z.mean(axis=(0, 2, 3))).max() < 0.05 and np.abs(z.std(axis=(0, 2, 3)) - 1).max() < 0.05
    dn = draw_raw_inputs(card, 1, 8, 8, np.random.default_rng(0), digital_numbers=True)
    assert dn.min() >= 1 and dn.max() <= 255 and (dn == np.round(dn)).all()


def test_window_normalizer_equals_preprocess_with_season(tiny_model: LoadedModel) -> None:
    """The GPU path's per-window normalisation (run here on the CPU) gives ``with_season(preprocess)``'s
    values, validity and season channels included, for a batch of windows of three periods."""
    from eowatch.models.predict import window_normalizer, with_season
    from eowatch.models.season import season_planes
    from eowatch.models.siamese import SiameseChangeNet

    module = SiameseChangeNet(len(tiny_model.card.bands) + 1, width=8, depth=3, season_channels=2)
    seasonal = LoadedModel(module=module.eval(), card=tiny_model.card)
    days = np.array([20560, 20650, 20740])
    bands = _series(np.random.default_rng(5), 3, 30, 40)
    bands[1, 2:5, 3:9, 4:7] = np.nan
    expected = with_season(seasonal, preprocess(seasonal.card, bands), days)
    normalize = window_normalizer(seasonal.card, season_planes(days, (1, 1))[:, :, 0, 0])
    batch = torch.from_numpy(np.concatenate([bands, bands[:, :, ::-1].copy()]))  # two windows
    got = normalize(batch).numpy()
    np.testing.assert_array_equal(got[:3], expected)
    np.testing.assert_array_equal(got[3:], expected[:, :, ::-1])


def test_raw_windows_normalised_per_window_equal_the_cpu_path(tiny_model: LoadedModel) -> None:
    """The CUDA path (raw windows in, ``window_normalizer`` inside the predictor), run on the CPU, gives
    what the CPU path (the whole input normalised before tiling) gives."""
    from eowatch.models.engine import run_tiled
    from eowatch.models.predict import _series_predictor, window_normalizer

    bands = _series(np.random.default_rng(6), 3, 70, 90)
    config = _config(tiny_model, tile=32, batch_windows=3)
    predictor = _series_predictor(tiny_model.module, 3, window_normalizer(tiny_model.card))
    raw_path = run_tiled(predictor, torch.from_numpy(bands), config)
    np.testing.assert_allclose(raw_path, predict_change_series(tiny_model, bands, config=config), atol=EXACT)
