"""The change model's season input: each date's period middle day as two planes after its bands."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from eowatch.errors import InputError, ModelError
from eowatch.models import DEFAULT_BANDS, LoadedModel, SiameseChangeNet, predict_change, predict_change_batch
from eowatch.models.card import ModelCard
from eowatch.models.dataset import ChangeChipDataset
from eowatch.models.labels import period_middle_days
from eowatch.models.predict import predict_change_series, preprocess, with_season
from eowatch.models.season import season_planes
from eowatch.models.weights import load_model, save_model
from eowatch.pipelines.grid import GridSpec
from eowatch.pipelines.spec import CubeSpec, month_periods

from .conftest import make_card

#: Middle days of April, May and June 2026 (days since 1970-01-01).
DAYS = np.array([20557, 20588, 20618])


@pytest.fixture
def season_model() -> LoadedModel:
    torch.manual_seed(3)
    module = SiameseChangeNet(len(DEFAULT_BANDS) + 1, width=8, depth=2, season_channels=2).eval()
    return LoadedModel(module=module.requires_grad_(False), card=make_card(module, "tiny-season"))


def _bands(n: int = 3, size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(0.2, 0.1, (n, len(DEFAULT_BANDS), size, size)).astype(np.float32)
    x[1, :, 5:9, 5:9] = np.nan
    return x


def test_the_network_reads_two_season_channels_and_its_card_says_so(season_model: LoadedModel) -> None:
    module = season_model.module
    assert module.config["season_channels"] == 2
    assert "season_channels" not in SiameseChangeNet(9).config  # older cards stay as they were
    x = torch.zeros(1, 11, 8, 8)
    assert module(x, x).shape == (1, 5, 8, 8)
    with pytest.raises(ValueError, match="season_channels"):
        SiameseChangeNet(9, season_channels=1)
    data = season_model.card.to_dict()
    data["architecture_args"] = {**data["architecture_args"], "season": 2}
    with pytest.raises(ModelError, match="architecture_args must have keys"):
        ModelCard.from_dict(data)


def test_weights_round_trip_with_the_season(season_model: LoadedModel, tmp_path) -> None:
    save_model(season_model.module, season_model.card, tmp_path)
    again = load_model(tmp_path / "tiny-season.card.json")
    assert again.module.season_channels == 2
    x = _bands(2, 16)
    np.testing.assert_array_equal(
        predict_change(again, x[0], x[1], days=DAYS[:2]),
        predict_change(season_model, x[0], x[1], days=DAYS[:2]),
    )


def test_series_prediction_needs_the_days_and_equals_the_plain_forward(season_model: LoadedModel) -> None:
    x = _bands()
    with pytest.raises(InputError, match="reads the season: give the 3 periods' middle days, got None"):
        predict_change_series(season_model, x)
    with pytest.raises(InputError, match="got 2"):
        predict_change_series(season_model, x, days=DAYS[:2])
    got = predict_change_series(season_model, x, days=DAYS)
    z = torch.from_numpy(
        np.concatenate([preprocess(season_model.card, x), season_planes(DAYS, (40, 40))], axis=1)
    )
    with torch.no_grad():
        whole = torch.cat([season_model.module(z[t : t + 1], z[t + 1 : t + 2]) for t in range(2)]).softmax(
            dim=1
        )
    np.testing.assert_allclose(got, whole.numpy(), atol=1e-5)
    # The season matters: the same images a season apart give other probabilities.
    shifted = predict_change_series(season_model, x, days=DAYS + 120)
    assert np.abs(shifted - got).max() > 1e-4


def test_pairs_and_batches_take_the_two_dates(season_model: LoadedModel, tiny_model: LoadedModel) -> None:
    x = _bands()
    series = predict_change_series(season_model, x, days=DAYS)
    pair = predict_change(season_model, x[1], x[2], days=DAYS[1:])
    np.testing.assert_allclose(pair, series[1], atol=1e-5)
    batch = predict_change_batch(season_model, x[None, 1], x[None, 2], days=DAYS[1:])
    inside = (slice(None), slice(4, -4), slice(4, -4))  # the batch path pads window edges with zeros
    np.testing.assert_allclose(batch[0][inside], series[1][inside], atol=1e-5)
    with pytest.raises(InputError, match="reads the season"):
        predict_change_batch(season_model, x[None, 1], x[None, 2])
    with pytest.raises(InputError, match="does not read the season"):
        predict_change(tiny_model, x[1], x[2], days=DAYS[1:])


def test_with_season_appends_each_periods_planes(season_model: LoadedModel) -> None:
    z = preprocess(season_model.card, _bands(3, 4))
    out = with_season(season_model, z, DAYS)
    assert out.shape == (3, z.shape[1] + 2, 4, 4)
    np.testing.assert_array_equal(out[:, -2:], season_planes(DAYS, (4, 4)))


def test_cube_spec_middle_days_match_the_training_labels() -> None:
    periods = month_periods(dt.date(2026, 3, 1), dt.date(2026, 8, 31))
    grid = GridSpec(crs="EPSG:32633", resolution=10.0, bounds=(500000.0, 5000000.0, 500640.0, 5000640.0))
    spec = CubeSpec(grid=grid, periods=periods)
    bounds = [(np.datetime64(a, "D"), np.datetime64(b, "D")) for a, b in periods]
    assert spec.middle_days == tuple(int(d) for d in period_middle_days(bounds))
    assert str(np.datetime64(spec.middle_days[0], "D")) == "2026-03-16"


def test_chips_carry_their_dates_season(tmp_path) -> None:
    import xarray as xr

    bounds = [(np.datetime64(f"2026-0{m}-01"), np.datetime64(f"2026-0{m + 1}-01")) for m in (4, 5, 6)]
    rng = np.random.default_rng(1)
    data = {b: (("time", "y", "x"), rng.random((3, 32, 32), dtype=np.float32)) for b in DEFAULT_BANDS}
    times = np.array([a for a, _ in bounds], "datetime64[ns]")
    xr.Dataset(data, coords={"time": times, "y": np.arange(32.0), "x": np.arange(32.0)}).to_zarr(
        tmp_path / "cube.zarr", zarr_format=3, consolidated=False
    )
    truth = {
        "change_type": np.zeros((32, 32), np.uint8),
        "change_start": np.zeros((32, 32), np.int32),
        "change_end": np.zeros((32, 32), np.int32),
    }
    norm = {b: (0.5, 0.3) for b in DEFAULT_BANDS}
    plain, seasonal = (
        ChangeChipDataset(tmp_path / "cube.zarr", truth, bounds, 16, 4, 0, True, normalization=norm, season=s)
        for s in (False, True)
    )
    a, b = plain[0], seasonal[0]
    assert a["before"].shape == (9, 16, 16) and b["before"].shape == (11, 16, 16)
    torch.testing.assert_close(a["after"], b["after"][:9])
    days = period_middle_days(bounds)[b["t"] - 1 : b["t"] + 1]
    np.testing.assert_array_equal(b["before"][9:].numpy(), season_planes(days, (16, 16))[0])
    np.testing.assert_array_equal(b["after"][9:].numpy(), season_planes(days, (16, 16))[1])
