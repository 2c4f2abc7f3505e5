"""Network shape, size, receptive field and exact tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eowatch.models import LoadedModel, SiameseChangeNet, predict_change, predict_change_batch
from eowatch.models.predict import preprocess


def test_default_size_and_output_shape() -> None:
    net = SiameseChangeNet(9)
    n_params = sum(p.numel() for p in net.parameters())
    assert 30_000 <= n_params <= 150_000
    x = torch.zeros(2, 9, 17, 23)
    assert net(x, x).shape == (2, 5, 17, 23)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def test_encode_decode_is_forward_and_state_dict_keys_are_stable() -> None:
    """The split keeps ``forward`` and the parameter names the shipped safetensors are stored under."""
    torch.manual_seed(2)
    net = SiameseChangeNet(9, width=8, depth=2).eval()
    assert list(net.state_dict()) == [
        "encoder.0.0.weight",
        "encoder.0.0.bias",
        "encoder.1.0.weight",
        "encoder.1.0.bias",
        "head.0.0.weight",
        "head.0.0.bias",
        "head.1.weight",
        "head.1.bias",
    ]
    before, after = torch.randn(3, 9, 12, 14), torch.randn(3, 9, 12, 14)
    with torch.no_grad():
        split = net.decode(net.encode(before), net.encode(after))
        torch.testing.assert_close(split, net(before, after), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="differ in shape"):
        net.decode(torch.zeros(1, 8, 4, 4), torch.zeros(1, 8, 4, 5))


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        SiameseChangeNet(9, n_classes=1)


@pytest.mark.parametrize(("width", "depth"), [(8, 1), (8, 3), (32, 4)])
def test_receptive_field_matches_perturbation(width: int, depth: int) -> None:
    torch.manual_seed(1)
    net = SiameseChangeNet(3, width=width, depth=depth).eval()
    size, centre = 41, 20
    before, after = torch.randn(1, 3, size, size), torch.randn(1, 3, size, size)
    with torch.no_grad():
        base = net(before, after)
        poked = after.clone()
        poked[0, :, centre, centre] += 10.0
        changed = (net(before, poked) - base).abs().amax(dim=1)[0] > 0
    rows, cols = np.nonzero(changed.numpy())
    assert rows.max() - rows.min() + 1 == net.receptive_field
    assert cols.max() - cols.min() + 1 == net.receptive_field
    assert net.receptive_field == 2 * (depth + 1) + 1


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    x = rng.normal(0.2, 0.1, (8, h, w)).astype(np.float32)
    x[:3, 5:12, 7:20] = np.nan  # a cloud: NaN in the optical bands
    return x


@pytest.mark.parametrize("tile", [5, 16, 33])
def test_tiled_prediction_equals_whole_image(tiny_model: LoadedModel, tile: int) -> None:
    rng = np.random.default_rng(0)
    before, after = _scene(rng, 61, 47), _scene(rng, 61, 47)
    with torch.no_grad():
        inputs = (torch.from_numpy(preprocess(tiny_model.card, x[None])) for x in (before, after))
        whole = tiny_model.module(*inputs)
    whole = whole.softmax(dim=1)[0].numpy()
    tiled = predict_change(tiny_model, before, after, batch_tiles=3, tile=tile)
    assert tiled.shape == (5, 61, 47) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)
    assert np.isfinite(tiled).all()


def test_prediction_is_deterministic_and_batch_matches(tiny_model: LoadedModel) -> None:
    rng = np.random.default_rng(3)
    before = np.stack([_scene(rng, 20, 20) for _ in range(5)])
    after = np.stack([_scene(rng, 20, 20) for _ in range(5)])
    batch = predict_change_batch(tiny_model, before, after, batch_tiles=2)
    assert batch.shape == (5, 5, 20, 20)
    np.testing.assert_array_equal(batch, predict_change_batch(tiny_model, before, after, batch_tiles=2))
    single = predict_change(tiny_model, before[3], after[3], tile=64)
    np.testing.assert_allclose(batch[3], single, atol=1e-5)


def test_wrong_band_count_is_an_input_error(tiny_model: LoadedModel) -> None:
    x = np.zeros((7, 8, 8), np.float32)
    with pytest.raises(ValueError, match="band order"):
        predict_change(tiny_model, x, x)
