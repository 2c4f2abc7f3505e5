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

    def stripes(rng, base, kind, unit, xx, yy, n_units, built):  # the same draws, then loud stripes
        fields(rng, base, kind, unit, xx, yy, n_units, built)
        base *= np.where(np.mod(xx, 4) < 2, 1.6, 0.5)

    monkeypatch.setattr(vhr_render, "_fields", stripes)
    striped = vhr_render.render_vhr(world, 2)[2]
    inner = ndimage.binary_erosion(water, iterations=3)  # away from the blur at the shore
    assert inner.sum() > 500
    np.testing.assert_array_equal(plain[:, inner], striped[:, inner])
    assert (plain[:, ~water] != striped[:, ~water]).mean() > 0.5  # the stripes did land on the land


def _clearing_world():
    from eowatch.archive import ArchiveConfig
    from eowatch.archive.world import build_world

    # three clear-cuts in the VHR area: two between the first and the last VHR date (4 April, 27 June),
    # one of them (id 2) reaching beyond the VHR area's top-left corner
    config = ArchiveConfig(seed=7, size_km=2.56, start=dt.date(2026, 4, 1), end=dt.date(2026, 6, 30))
    return build_world(config)


def _event_mask(world, event_id: int) -> np.ndarray:
    """bool (H, W) at 1 m: the event's pixels inside the VHR area."""
    from eowatch.archive.config import Grid

    win = Grid.from_bbox(world.layout.vhr.bbox, 10.0).window_in(world.layout.world)
    return np.kron(world.plan.event_id[win] == event_id, np.ones((10, 10), bool))


def test_a_clear_cut_shows_no_tree_crowns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once cut, a forest's pixels do not depend on the canopy texture any more (slash, windrows and
    stumps instead); before the cut they do. The cut reaching beyond the VHR area is textured too."""
    from eowatch.archive import vhr as vhr_render
    from eowatch.archive.changes import CLEAR
    from eowatch.archive.config import epoch_day, vhr_dates

    world = _clearing_world()
    last = epoch_day(vhr_dates(world.config)[2])
    first = epoch_day(vhr_dates(world.config)[0])
    cuts = [ev for ev in world.plan.events if ev["type"] == CLEAR and first < ev["start"] <= last]
    masks = [ndimage.binary_erosion(_event_mask(world, ev["id"]), iterations=3) for ev in cuts]
    assert len(cuts) >= 2 and all(m.sum() > 1000 for m in masks)
    before, after = vhr_render.render_vhr(world, 0)[2], vhr_render.render_vhr(world, 2)[2]
    crowns = vhr_render._crowns
    monkeypatch.setattr(vhr_render, "_crowns", lambda rng, shape: 2.0 - crowns(rng, shape))  # same draws
    loud_before, loud_after = vhr_render.render_vhr(world, 0)[2], vhr_render.render_vhr(world, 2)[2]
    for m in masks:
        np.testing.assert_array_equal(after[:, m], loud_after[:, m])
        assert (before[:, m] != loud_before[:, m]).mean() > 0.5  # still forest on 4 April

    partial = next(ev for ev in cuts if ev["window"][0].start < 196)  # starts above the VHR area
    inside = _event_mask(world, partial["id"])
    monkeypatch.setattr(vhr_render, "_clearcut", lambda rng, hh, ww: np.full((hh, ww), 1.5, np.float32))
    bright = vhr_render.render_vhr(world, 2)[2]
    core = ndimage.binary_erosion(inside, iterations=3)
    assert (bright[:3, core].astype(int) > after[:3, core]).mean() > 0.9


def test_a_clear_cut_keeps_its_slash_pattern() -> None:
    """The slash, windrows and stumps of a cut are the same on every date after it (their own random
    stream): two post-cut dates differ in brightness and colour, not in pattern."""
    from eowatch.archive import vhr as vhr_render
    from eowatch.archive.changes import CLEAR
    from eowatch.archive.config import epoch_day, vhr_dates

    world = _clearing_world()
    mid = epoch_day(vhr_dates(world.config)[1])
    cut = next(ev for ev in world.plan.events if ev["type"] == CLEAR and ev["start"] <= mid)
    m = ndimage.binary_erosion(_event_mask(world, cut["id"]), iterations=3)
    a = vhr_render.render_vhr(world, 1)[2][0].astype(float)
    b = vhr_render.render_vhr(world, 2)[2][0].astype(float)
    detail_a, detail_b = (x - ndimage.gaussian_filter(x, 6.0) for x in (a, b))
    assert np.corrcoef(detail_a[m], detail_b[m])[0, 1] > 0.8


def test_a_construction_lot_keeps_no_field_texture() -> None:
    """Drill rows, tramlines and meadow texture are drawn by land-cover kind, and a building's unit
    keeps its field's kind: once construction starts its graded lot must not show them (a site on a
    field would look like a ploughed field with a slab on it)."""
    from eowatch.archive import vhr as vhr_render
    from eowatch.archive.config import epoch_day, vhr_dates
    from eowatch.archive.scene import EV_BUILD, KIND_WCEREAL

    shape = (60, 80)
    kind = np.full(shape, KIND_WCEREAL, np.int8)
    kind[:, 60:] = 3  # a meadow
    unit = np.zeros(shape, np.int32)
    unit[:, 60:] = 1
    built = np.zeros(shape, bool)
    built[10:30, 10:30] = built[10:30, 65:75] = True
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    base = np.ones((4, *shape), np.float32)
    vhr_render._fields(np.random.default_rng(0), base, kind, unit, xx, yy, 2, built)
    assert (base[:, built] == 1.0).all()
    assert (base[:, ~built] != 1.0).mean() > 0.9

    world = _clearing_world()  # its new building 3 starts between the first two VHR dates
    site = next(ev for ev in world.plan.events if ev["id"] == 3)
    days = [epoch_day(d) for d in vhr_dates(world.config)]
    assert days[0] < site["start"] <= days[1] < site["completed"]
    unit = vhr_render.vhr_ground(world).unit
    lot = _event_mask(world, site["id"])
    assert not vhr_render._started(world, unit, days[0], EV_BUILD)[lot].any()
    assert vhr_render._started(world, unit, days[1], EV_BUILD)[lot].all()


def test_a_regional_road_is_its_carriageway_at_1m() -> None:
    """At 1 m a regional road is a 7 m carriageway along its straight centre line, not the staircase of
    10 m blocks the 10 m scene draws: outside towns the pixels labelled road are exactly those within
    3.5 m of a centre line (but where it crosses the river: no bridges), the image shows asphalt there
    and the ground beside it elsewhere in the road's blocks; the blocks' pixels off the carriageway take
    the land cover of the nearest pixel outside them."""
    from eowatch.archive import vhr as vhr_render
    from eowatch.archive.config import Grid
    from eowatch.archive.scene import KIND_ROAD, main_road_lines

    world = _clearing_world()
    layout = world.layout
    g1 = Grid.from_bbox(layout.vhr.bbox, 1.0)
    x, y = g1.centers()
    dist = np.min([line.distance(x, y) for line in main_road_lines(world.config, layout)], axis=0)
    win = Grid.from_bbox(layout.vhr.bbox, 10.0).window_in(layout.world)
    rural = np.kron(world.scene.town_dist[win] > 1.2, np.ones((10, 10), bool))
    ground = vhr_render.vhr_ground(world)
    road_code = {name: code for code, name in VHR_LANDCOVER.items()}["road"]
    labels = vhr_render.render_vhr_labels(world, 0)
    road = labels == road_code
    river = labels == {name: code for code, name in VHR_LANDCOVER.items()}["water"]
    assert (dist < 3.5).sum() > 5000  # a road crosses the VHR area
    assert ((dist < 3.5) & river).any()  # and the river (no bridges are drawn)
    np.testing.assert_array_equal(road[rural], ((dist < 3.5) & ~river)[rural])
    np.testing.assert_array_equal(ground.carriageway[rural], road[rural])
    np.testing.assert_array_equal((ground.kind == KIND_ROAD)[rural], road[rural])
    blocks10 = world.scene.kind[win] == KIND_ROAD
    verge = np.kron(blocks10, np.ones((10, 10), bool)) & rural & ~road
    assert verge.sum() > 5000  # the staircase's corners, now field or meadow
    assert (ground.kind[verge] != KIND_ROAD).all()

    image = vhr_render.render_vhr(world, 0)[2].astype(np.float32)
    inner = rural & (dist < 2.0)
    beside = verge & (dist > 4.5)
    asphalt = np.median(image[:3, inner], axis=1)
    assert (np.abs(image[:3, inner] - asphalt[:, None]) < 12).mean() > 0.9  # one surface along the road
    assert (np.abs(image[:3, beside] - asphalt[:, None]).max(axis=0) >= 12).mean() > 0.8
