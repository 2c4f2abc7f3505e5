"""Phenology over a whole year: the crop calendar's autumn, and no jump at the new year."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from eowatch.archive.config import ArchiveConfig, epoch_day
from eowatch.archive.phenology import (
    AUTUMN_DOY,
    GREEN,
    SPECTRA,
    unit_fractions,
)
from eowatch.archive.scene import (
    EV_NONE,
    KIND_DECID,
    KIND_GRASS,
    KIND_MAIZE,
    KIND_RAPE,
    KIND_WCEREAL,
    Units,
)
from eowatch.archive.world import build_world


@pytest.fixture(scope="module")
def units() -> Units:
    config = ArchiveConfig(seed=3, size_km=2.56, start=dt.date(2026, 1, 1), end=dt.date(2026, 12, 31))
    return build_world(config).scene.units


def _ndvi(units: Units, date: dt.date, kind: int) -> np.ndarray:
    """NDVI per unit of ``kind`` without planted events on ``date`` (dry soil, moisture 0)."""
    frac, _ = unit_fractions(units, epoch_day(date), 0.0)
    refl = frac @ SPECTRA
    rows = (units.kind == kind) & (units.event == EV_NONE)
    assert rows.any()
    red, nir = refl[rows, 2], refl[rows, 3]
    return (nir - red) / (nir + red)


def test_autumn_harvests_sows_and_drops_leaves(units: Units) -> None:
    aug, nov = dt.date(2026, 8, 1), dt.date(2026, 11, 25)
    assert (_ndvi(units, aug, KIND_MAIZE) > 0.6).all()  # maize canopy in summer
    assert (_ndvi(units, nov, KIND_MAIZE) < 0.25).all()  # harvested and ploughed
    assert (_ndvi(units, aug, KIND_DECID) > 0.75).all() and (_ndvi(units, nov, KIND_DECID) < 0.55).all()
    sept = _ndvi(units, dt.date(2026, 9, 5), KIND_WCEREAL)  # ploughed after the harvest
    dec = _ndvi(units, dt.date(2026, 12, 20), KIND_WCEREAL)
    assert (sept < 0.25).all() and (dec > sept + 0.1).all()  # the next crop is up
    assert (_ndvi(units, nov, KIND_RAPE) > _ndvi(units, dt.date(2026, 8, 20), KIND_RAPE)).all()


@pytest.mark.parametrize("kind", [KIND_WCEREAL, KIND_MAIZE, KIND_RAPE, KIND_GRASS, KIND_DECID])
def test_no_jump_at_the_new_year(units: Units, kind: int) -> None:
    """31 December looks like 1 January (the calendars are of one year; the winter must close the loop)."""
    dec, jan = _ndvi(units, dt.date(2026, 12, 31), kind), _ndvi(units, dt.date(2026, 1, 1), kind)
    np.testing.assert_allclose(dec, jan, atol=0.05)


def test_summer_is_untouched_by_the_autumn_terms(units: Units) -> None:
    """The day before ``AUTUMN_DOY`` has no autumn term: green cover is still the summer's."""
    before = dt.date(2026, 1, 1) + dt.timedelta(days=AUTUMN_DOY - 2)
    frac, _ = unit_fractions(units, epoch_day(before), 0.0)
    rows = (units.kind == KIND_MAIZE) & (units.event == EV_NONE)
    assert (frac[rows, GREEN] > 0.5).all()
