"""Truth rasters and events: internal consistency, date ranges, nesting of the VHR grid."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import rasterio

from eowatch.archive import ArchiveConfig
from eowatch.archive.config import epoch_day


def _truth(archive: Path) -> dict[str, np.ndarray]:
    out = {}
    for name in (
        "landcover_start",
        "landcover_end",
        "change_type",
        "from_class",
        "to_class",
        "change_start",
        "change_end",
        "vhr_change_type",
    ):
        with rasterio.open(archive / "truth" / f"{name}.tif") as src:
            out[name] = src.read(1)
            out[name + "_grid"] = (src.bounds, src.res, src.crs.to_epsg())
    return out


def test_grids(small_archive: Path) -> None:
    t = _truth(small_archive)
    m = json.loads((small_archive / "archive.json").read_text())
    assert t["change_type_grid"] == (rasterio.coords.BoundingBox(*m["aoi_bbox"]), (10.0, 10.0), 32631)
    assert t["vhr_change_type_grid"] == (rasterio.coords.BoundingBox(*m["vhr_bbox"]), (1.0, 1.0), 32631)
    assert t["change_type"].dtype == np.uint8 and t["change_start"].dtype == np.int32


def test_consistency(small_archive: Path, small_config: ArchiveConfig) -> None:
    t = _truth(small_archive)
    ct, fc, tc = t["change_type"], t["from_class"], t["to_class"]
    change = ct > 0
    assert set(np.unique(ct)) == {0, 1, 2, 3, 4}
    assert (fc[change] != tc[change]).all() and (fc[~change] == 0).all() and (tc[~change] == 0).all()
    s, e = epoch_day(small_config.start), epoch_day(small_config.end)
    start, end = t["change_start"], t["change_end"]
    assert ((start[change] > s) & (start[change] < e)).all() and (start[~change] == 0).all()
    flood = ct == 3
    assert ((end[flood] > start[flood]) & (end[flood] <= e)).all() and (end[~flood] == 0).all()
    assert (tc[flood] == 1).all() and (tc[ct == 1] == 7).all() and (fc[ct == 2] == 2).all()
    assert ((fc[ct == 4] == 4) & (tc[ct == 4] == 5)).all()
    assert (t["landcover_start"][change] == fc[change]).all()
    perm = np.isin(ct, (1, 2, 4))
    assert (t["landcover_end"][perm] == tc[perm]).all()
    assert (t["landcover_end"][flood] == fc[flood]).all()  # floods have receded by the end
    assert (t["landcover_start"] > 0).all()


def test_vhr_nesting(small_archive: Path) -> None:
    t = _truth(small_archive)
    m = json.loads((small_archive / "archive.json").read_text())
    vx0, vy0, vx1, vy1 = m["vhr_bbox"]
    ax0, _ay0, _ax1, ay1 = m["aoi_bbox"]
    r0, c0 = round((ay1 - vy1) / 10), round((vx0 - ax0) / 10)
    h, w = round((vy1 - vy0) / 10), round((vx1 - vx0) / 10)
    coarse = t["change_type"][r0 : r0 + h, c0 : c0 + w]
    np.testing.assert_array_equal(t["vhr_change_type"], np.kron(coarse, np.ones((10, 10), np.uint8)))
    vhr = t["vhr_change_type"]
    assert (vhr == 1).any() and (vhr == 2).any()  # new buildings and a clearing inside the VHR area


def test_events(small_archive: Path, small_config: ArchiveConfig) -> None:
    t = _truth(small_archive)
    events = json.loads((small_archive / "truth" / "events.geojson").read_text())["features"]
    types = [f["properties"]["type"] for f in events]
    assert {"new_building", "forest_clearing", "flooding", "crop_rotation"} <= set(types)
    assert sum(f["properties"]["area_m2"] for f in events) == 100.0 * (t["change_type"] > 0).sum()
    for f in events:
        p = f["properties"]
        start = dt.date.fromisoformat(p["start"])
        assert small_config.start < start < small_config.end
        assert (p["end"] is not None) == (p["type"] == "flooding")
        lon, lat = np.asarray(
            f["geometry"]["coordinates"][0]
            if f["geometry"]["type"] == "Polygon"
            else f["geometry"]["coordinates"][0][0]
        ).T
        assert (lon > 3).all() and (lon < 6).all() and (lat > 50).all() and (lat < 52).all()
        if p["type"] == "new_building":
            assert p["area_m2"] >= 1600 and p["to_class"] == "built_up"
        if p["type"] == "crop_rotation":  # the truth dates it when the maize shows, VHR sees the harvest
            assert dt.date.fromisoformat(p["harvested"]) <= start
        else:
            assert p["harvested"] is None
    buildings = [f for f in events if f["properties"]["type"] == "new_building"]
    assert sum(f["properties"]["in_vhr_area"] for f in buildings) >= 4


def test_rotation_dated_when_the_new_crop_shows() -> None:
    """A rotation's truth is the day the maize canopy is half grown (harvest + 45 days), inside the period."""
    from eowatch.archive.changes import ROTATE, ROTATION_SHOWS_DAYS
    from eowatch.archive.scene import EV_ROTATE
    from eowatch.archive.world import build_world

    cfg = ArchiveConfig(seed=7, size_km=2.56, start=dt.date(2026, 3, 1), end=dt.date(2026, 8, 31), workers=1)
    world = build_world(cfg)
    plan, scene = world.plan, world.scene
    rotations = [ev for ev in plan.events if ev["type"] == ROTATE]
    assert rotations
    for ev in rotations:
        units = np.unique(scene.unit[ev["window"]][plan.event_id[ev["window"]] == ev["id"]])
        assert (scene.units.event[units] == EV_ROTATE).all()
        harvest = int(scene.units.t0[units][0])
        assert ev["start"] == min(harvest + ROTATION_SHOWS_DAYS, epoch_day(cfg.end) - 18)
        assert ev["harvested"] == harvest
        assert epoch_day(cfg.start) < ev["start"] < epoch_day(cfg.end)
        assert (plan.change_start[plan.event_id == ev["id"]] == ev["start"]).all()
