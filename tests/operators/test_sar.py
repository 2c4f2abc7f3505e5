from __future__ import annotations

import warnings

import numpy as np
import pytest

from eowatch.errors import InputError
from eowatch.operators import db_to_linear, dn_to_db, linear_to_db, temporal_mean_db


def test_linear_db_round_trip_and_invalid_values() -> None:
    linear = np.array([1.0, 0.1, 0.01, 0.0, -1.0, np.nan], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        db = linear_to_db(linear)
    assert db.dtype == np.float32
    np.testing.assert_allclose(db[:3], [0.0, -10.0, -20.0], atol=1e-5)
    assert np.isnan(db[3:]).all()
    back = db_to_linear(db)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back[:3], linear[:3], rtol=1e-5)
    assert np.isnan(back[3:]).all()


def test_gfmap_encoding() -> None:
    # DN = 10 ** ((dB + 83) / 20): -83 dB -> 1, -23 dB -> 1000, -3 dB -> 10000
    dn = np.array([1, 1000, 10000, 0, 65534, 65535], dtype=np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        db = dn_to_db(dn)
    assert db.dtype == np.float32
    np.testing.assert_allclose(db[:3], [-83.0, -23.0, -3.0], atol=1e-4)
    assert np.isnan(db[3:]).all()
    assert not np.isnan(dn_to_db(dn, nodata=())[4:]).any()


def test_temporal_mean_is_taken_in_linear_power() -> None:
    # 0 dB and -10 dB: the linear mean is 0.55 (-2.60 dB), not the dB mean (-5 dB)
    db = np.array([[0.0, np.nan], [-10.0, np.nan], [-20.0, -20.0]], dtype=np.float32)
    out = temporal_mean_db(db_to_linear(db), np.array([0, 0, 1]), 2)
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_allclose(out[0, 0], 10 * np.log10(0.55), atol=1e-5)
    assert np.isnan(out[0, 1])
    np.testing.assert_allclose(out[1], [-20.0, -20.0], atol=1e-5)


def test_temporal_mean_does_not_modify_input() -> None:
    linear = np.array([[1.0], [np.inf]], dtype=np.float32)
    temporal_mean_db(linear, np.array([0, 0]), 1)
    assert np.isinf(linear[1, 0])


def test_invalid_inputs_raise() -> None:
    with pytest.raises(InputError):
        dn_to_db(np.ones(3, dtype=np.float32))
    with pytest.raises(InputError):
        temporal_mean_db(np.ones((2, 2), dtype=np.uint16), np.array([0, 0]), 1)
    with pytest.raises(InputError):
        temporal_mean_db(np.ones((2, 2), dtype=np.float32), np.array([0, 5]), 1)
