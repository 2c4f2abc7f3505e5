"""The 1 m VHR rendering (``eowatch.archive.vhr``): what shows through open water."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy import ndimage

from eowatch.legend import VHR_LANDCOVER


def test_open_water_hides_field_texture(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drill rows and soil texture are drawn under water, then covered: a flooded field or a lake shows the
    same pixels whatever the field texture below it was."""
    from eowatch.archive import ArchiveConfig
    from eowatch.archive import vhr as vhr_render
    from eowatch.archive.world import build_world

    config = ArchiveConfig(seed=7, size_km=2.56, start=dt.date(2026, 4, 1), end=dt.date(2026, 6, 30))
    world = build_world(config)
    water_code = {name: code for code, name in VHR_LANDCOVER.items()}["water"]
    water = vhr_render.render_vhr_labels(world, 2) == water_code
    assert water.sum() > 1000
    plain = vhr_render.render_vhr(world, 2)[2]
    fields = vhr_render._fields

    def stripes(rng, base, kind, unit, xx, yy, n_units):  # the same draws, then loud stripes everywhere
        fields(rng, base, kind, unit, xx, yy, n_units)
        base *= np.where(np.mod(xx, 4) < 2, 1.6, 0.5)

    monkeypatch.setattr(vhr_render, "_fields", stripes)
    striped = vhr_render.render_vhr(world, 2)[2]
    inner = ndimage.binary_erosion(water, iterations=3)  # away from the blur at the shore
    assert inner.sum() > 500
    np.testing.assert_array_equal(plain[:, inner], striped[:, inner])
    assert (plain[:, ~water] != striped[:, ~water]).mean() > 0.5  # the stripes did land on the land
