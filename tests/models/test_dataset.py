"""Chips sampled lazily from a tiny Zarr v3 cube written in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from eowatch.errors import InputError
from eowatch.models import ChangeChipDataset, read_truth
from eowatch.models.dataset import IGNORE_INDEX
from eowatch.models.train import period_bounds

from .synthetic import BANDS, write_scene, write_truth_tifs

NORM = {b: (0.0, 1.0) for b in BANDS}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list]:
    path = tmp_path_factory.mktemp("cube") / "cube.zarr"
    truth = write_scene(path, size=64, periods=4, seed=1, n_changes=10)
    with xr.open_zarr(path, consolidated=False) as cube:
        bounds = period_bounds(cube["time"].values)
    return path, truth, bounds


def test_chips_have_the_right_shape_and_half_are_changed(scene: tuple) -> None:
    path, truth, bounds = scene
    ds = ChangeChipDataset(path, truth, bounds, chip=16, samples=20, seed=0, normalization=NORM)
    item = ds[0]
    assert item["before"].shape == item["after"].shape == (len(BANDS) + 1, 16, 16)
    assert item["label"].shape == (16, 16) and str(item["label"].dtype) == "torch.int64"
    changed = sum(int(((ds[i]["label"] > 0) & (ds[i]["label"] != IGNORE_INDEX)).any()) for i in range(20))
    assert changed >= 10
    raw = ChangeChipDataset(path, truth, bounds, chip=16, samples=4, seed=0)
    assert raw[0]["before"].shape == (len(BANDS), 16, 16)  # raw values, NaN kept, no validity channel


def test_chips_read_only_their_window(scene: tuple) -> None:
    path, truth, bounds = scene
    ds = ChangeChipDataset(path, truth, bounds, chip=16, samples=4, seed=0)
    t, y0, x0 = (int(v) for v in ds.positions[0])
    with xr.open_zarr(path, consolidated=False) as cube:
        expected = cube["nir"].values[t - 1 : t + 1, y0 : y0 + 16, x0 : x0 + 16]
    np.testing.assert_array_equal(ds.read_window(t, y0, x0)[:, BANDS.index("nir")], expected)


def _dihedral(x: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of the last two axes."""
    turns = [np.rot90(x, k, axes=(-2, -1)) for k in range(4)]
    return turns + [t[..., ::-1] for t in turns]


def _same_geometry(plain: dict, aug: dict, d: int) -> bool:
    """Whether transform ``d`` maps the plain chip onto the augmented one (bands up to gain/offset)."""
    if not np.array_equal(_dihedral(plain["label"].numpy())[d], aug["label"].numpy()):
        return False
    for date in ("before", "after"):
        moved, got = _dihedral(plain[date].numpy())[d], aug[date].numpy()
        if not np.array_equal(moved[-1], got[-1]):  # validity channel: never jittered
            return False
        keep = moved[-1] == 1.0  # all bands observed
        for band in range(len(BANDS)):
            x, y = moved[band][keep], got[band][keep]
            gain, offset = np.polyfit(x, y, 1)
            if np.abs(gain * x + offset - y).max() > 1e-3 or abs(gain - 1) > 0.06:
                return False
    return True


def test_flips_are_identical_for_before_after_and_label(scene: tuple) -> None:
    path, truth, bounds = scene
    plain = ChangeChipDataset(path, truth, bounds, chip=16, samples=12, seed=4, normalization=NORM)
    augmented = ChangeChipDataset(
        path, truth, bounds, chip=16, samples=12, seed=4, augment=True, normalization=NORM
    )
    used = set()
    for i in range(12):
        matches = [d for d in range(8) if _same_geometry(plain[i], augmented[i], d)]
        assert matches, f"chip {i}: no rotation/flip maps the plain chip onto the augmented one"
        used.update(matches)
    assert len(used) > 1


def test_sampling_is_deterministic_and_respects_columns(scene: tuple) -> None:
    path, truth, bounds = scene

    def make(seed):
        return ChangeChipDataset(
            path,
            truth,
            bounds,
            chip=8,
            samples=16,
            seed=seed,
            augment=True,
            normalization=NORM,
            columns=(0, 40),
        )

    a, b = make(3), make(3)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a[5]["before"].numpy(), b[5]["before"].numpy())
    assert not np.array_equal(a.positions, make(4).positions)
    assert (a.positions[:, 2] + 8 <= 40).all()
    a.set_epoch(1)
    assert not np.array_equal(a.positions, b.positions)


def test_read_truth_cuts_the_cube_window(scene: tuple, tmp_path: Path) -> None:
    path, truth, _ = scene
    write_truth_tifs(tmp_path, truth)
    with xr.open_zarr(path, consolidated=False) as cube:
        x, y = cube["x"].values, cube["y"].values
    got = read_truth(tmp_path, x[10:30], y[5:25])
    np.testing.assert_array_equal(got["change_type"], truth["change_type"][5:25, 10:30])
    assert got["change_start"].dtype == np.int32


def _augmented_chips(
    scene: tuple, samples: int, s1_dropout: float, per_date: bool = False
) -> ChangeChipDataset:
    """8 px augmented chips of the scene with ``s1_dropout`` (both dates, or ``per_date``), seed 2."""
    path, truth, bounds = scene
    return ChangeChipDataset(
        path,
        truth,
        bounds,
        chip=8,
        samples=samples,
        seed=2,
        augment=True,
        normalization=NORM,
        s1_dropout=s1_dropout,
        s1_dropout_per_date=per_date,
    )


def test_s1_dropout_blanks_both_dates_s1_and_leaves_the_rest_as_without_it(scene: tuple) -> None:
    s1 = [i for i, b in enumerate(BANDS) if b in ("vv_db", "vh_db")]
    assert s1, "the synthetic scene has S1 bands"

    def make(dropout: float) -> ChangeChipDataset:
        return _augmented_chips(scene, 40, dropout)

    plain, dropped = make(0.0), make(0.5)
    validity = len(BANDS)  # the validity channel follows the bands
    blanked = 0
    for i in range(40):
        a, b = plain[i], dropped[i]
        if np.array_equal(a["before"].numpy(), b["before"].numpy()):
            continue  # this chip kept its S1
        blanked += 1
        for date in ("before", "after"):
            assert (b[date][s1].numpy() == 0).all()  # NaN -> 0 after normalisation
            others = [c for c in range(len(BANDS)) if c not in s1]
            np.testing.assert_array_equal(a[date][others].numpy(), b[date][others].numpy())
            assert (b[date][validity].numpy() <= a[date][validity].numpy()).all()
    assert 10 <= blanked <= 30
    with pytest.raises(InputError, match="s1_dropout"):
        make(1.0)


def test_s1_dropout_per_date_blanks_one_date_or_both_on_their_own(scene: tuple) -> None:
    s1 = [i for i, b in enumerate(BANDS) if b in ("vv_db", "vh_db")]
    others = [c for c in range(len(BANDS)) if c not in s1]
    plain, dropped = (_augmented_chips(scene, 60, p, per_date=True) for p in (0.0, 0.5))
    blanked = {"before": 0, "after": 0}
    one_date = 0
    for i in range(60):
        a, b = plain[i], dropped[i]
        lost = []
        for date in ("before", "after"):
            np.testing.assert_array_equal(a[date][others].numpy(), b[date][others].numpy())
            if not np.array_equal(a[date].numpy(), b[date].numpy()):
                assert (b[date][s1].numpy() == 0).all()
                blanked[date] += 1
                lost.append(date)
        one_date += len(lost) == 1
    assert all(15 <= n <= 45 for n in blanked.values())  # about half of each date, drawn apart
    assert one_date >= 15
