"""The change stage's gap model, on a small analysis cube written by the test: where a date of a
transition has no S1 (a month without S1 acquisitions over part of the grid), the gap model's
probabilities and threshold decide; everywhere else the change model's do; chunked inference equals
whole-image inference of both models merged the same way; the run's parameters resolve and check it.

The cube is 144 x 144 px in 64 px chunks, four monthly periods of S2 + S1 (``tests/models/synthetic``);
S1 is removed in the third period over rows 30-99 and columns 40-119 (across chunk borders).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

from eowatch.errors import ModelError
from eowatch.models import registry
from eowatch.models.predict import predict_change_series, season_days
from eowatch.models.train import period_bounds
from eowatch.pipelines import inference
from eowatch.pipelines.grid import GridSpec
from eowatch.pipelines.params import check_gap_model, resolve_gap_model
from eowatch.pipelines.spec import ChangeSpec, CubeSpec

from ..models import synthetic

SIZE, CHUNK, PERIODS = 144, 64, 4
X0, Y0 = 500_000.0, 5_000_000.0  # tests/models/synthetic's grid
MAIN, GAP = "siamese-s2s1-change", "siamese-s2s1-gap-change"
ROWS, COLS, GAP_PERIOD = slice(30, 100), slice(40, 120), 2

pytestmark = pytest.mark.skipif(not registry.card_file_of(GAP).is_file(), reason=f"{GAP} is not shipped")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("gap-model")
    cube_path = root / "cube.zarr"
    synthetic.write_scene(cube_path, SIZE, PERIODS, seed=3, n_changes=14)
    cube = zarr.open_group(cube_path, mode="r+", zarr_format=3)
    for band in ("vv_db", "vh_db"):
        cube[band][GAP_PERIOD, ROWS, COLS] = np.nan
    bands = np.stack([np.asarray(cube[b][:]) for b in synthetic.BANDS], axis=1)  # (period, band, y, x)
    with xr.open_zarr(cube_path, consolidated=False) as ds:
        bounds = period_bounds(ds["time"].values)
    grid = GridSpec("EPSG:32631", 10.0, (X0, Y0 - 10 * SIZE, X0 + 10 * SIZE, Y0), chunk=CHUNK)
    spec = CubeSpec(grid=grid, periods=tuple((str(a), str(b)) for a, b in bounds))
    return {"cube": zarr.open_group(cube_path, mode="r"), "bands": bands, "spec": spec}


def _chunked(scene: dict, change: ChangeSpec) -> dict[str, np.ndarray]:
    spec = scene["spec"]
    out: dict[str, np.ndarray] = {}
    for key in spec.grid.chunks():
        arrays = inference.infer_region(key, spec, change, scene["cube"], halo=CHUNK)
        ys, xs = spec.grid.chunk_slices(key)
        for name, arr in arrays.items():
            out.setdefault(name, np.zeros((PERIODS - 1, SIZE, SIZE), arr.dtype))[:, ys, xs] = arr
    return out


def _whole(name: str, scene: dict) -> np.ndarray:
    model = registry.get(name)
    bands = scene["bands"][:, [synthetic.BANDS.index(b) for b in model.card.bands]]
    days = season_days(model, np.asarray(scene["spec"].middle_days))
    return predict_change_series(model, bands, days=days)


def test_s1_gap_transitions_are_those_into_and_out_of_the_gap(scene: dict) -> None:
    gap = inference.s1_gap_transitions(scene["bands"], synthetic.BANDS)
    expected = np.zeros_like(gap)
    expected[GAP_PERIOD - 1 : GAP_PERIOD + 1, ROWS, COLS] = True
    observed = np.isfinite(scene["bands"]).any(axis=1)
    expected &= observed[:-1] & observed[1:]  # clouded with S1 gone: no data on that date, no gap
    assert expected.sum() > 0.9 * 2 * 70 * 80
    np.testing.assert_array_equal(gap, expected)
    no_data = scene["bands"].copy()
    no_data[GAP_PERIOD, :, ROWS, COLS] = np.nan  # no data at all on that date: nothing to decide
    assert not inference.s1_gap_transitions(no_data, synthetic.BANDS).any()


def test_gap_pixels_take_the_gap_model_and_chunks_equal_whole_image(scene: dict) -> None:
    got = _chunked(scene, ChangeSpec(model=MAIN, gap_model=GAP))
    main, gap_probs = _whole(MAIN, scene), _whole(GAP, scene)
    gap = inference.s1_gap_transitions(scene["bands"], synthetic.BANDS)
    np.testing.assert_array_equal(got["s1_gap"], gap.astype(np.uint8))
    expected = np.where(gap, 1.0 - gap_probs[:, 0], 1.0 - main[:, 0])
    np.testing.assert_allclose(got["change_probability"], expected, atol=1e-5)  # no seams
    thresholds = np.where(
        gap, registry.get(GAP).card.decision_threshold, registry.get(MAIN).card.decision_threshold
    )
    clear = np.abs(expected - thresholds) > 1e-4
    np.testing.assert_array_equal(got["change_mask"][clear], (expected >= thresholds)[clear])
    without = _chunked(scene, ChangeSpec(model=MAIN))
    assert "s1_gap" not in without
    off_gap = ~gap
    np.testing.assert_array_equal(without["change_mask"][off_gap], got["change_mask"][off_gap])
    np.testing.assert_allclose(without["change_probability"], 1.0 - main[:, 0], atol=1e-5)


def test_a_given_threshold_applies_to_both_models(scene: dict) -> None:
    got = _chunked(scene, ChangeSpec(model=MAIN, gap_model=GAP, threshold=0.5))
    p = got["change_probability"]
    clear = np.abs(p - 0.5) > 1e-4
    np.testing.assert_array_equal(got["change_mask"][clear], (p >= 0.5)[clear])


def test_the_gap_model_resolves_and_is_checked() -> None:
    assert resolve_gap_model("auto", MAIN) == GAP
    assert resolve_gap_model(None, MAIN) is None and resolve_gap_model("", MAIN) is None
    assert resolve_gap_model("auto", "siamese-s2s1-semantic") is None  # it has no gap model
    check_gap_model(GAP, MAIN)
    with pytest.raises(ModelError, match="not a change-detection model"):
        check_gap_model("landcover-s2-unet", MAIN)
    with pytest.raises(ModelError, match="unknown model"):
        check_gap_model("resnet-9000", MAIN)
