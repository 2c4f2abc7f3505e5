"""Sentinel-1: speckle statistics, per-class backscatter and orbit pattern."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from eowatch.archive.config import Grid
from eowatch.archive.s1 import ENL
from eowatch.archive.scene import KIND_BARE, KIND_GRASS, KIND_WCEREAL
from eowatch.archive.world import build_world


def _s1(archive: Path) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    out = []
    for p in sorted((archive / "stac" / "items" / "sentinel-1-grd").glob("*.json")):
        item = json.loads(p.read_text())
        bands = []
        for key in ("vv", "vh"):
            with rasterio.open(p.parent / item["assets"][key]["href"]) as src:
                bands.append(src.read(1))
        out.append((item, *bands))
    return out


def test_speckle_cv(small_archive: Path, small_config) -> None:
    world = build_world(small_config)
    rows, cols = world.layout.s1.window_in(world.layout.world)
    unit = world.scene.unit[rows, cols]
    kinds = world.scene.units.kind
    counts = np.bincount(unit.ravel(), minlength=len(kinds))
    counts[~np.isin(kinds, (KIND_GRASS, KIND_BARE, KIND_WCEREAL))] = 0
    counts[world.scene.units.event != 0] = 0
    big = int(counts.argmax())
    mask = ndimage.binary_erosion(unit == big, iterations=2) & (world.plan.change_type[rows, cols] == 0)
    assert mask.sum() > 500
    for _, vv, vh in _s1(small_archive):
        for band in (vv, vh):
            x = band[mask].astype(np.float64)
            cv = x.std() / x.mean()
            # Gamma speckle (ENL 4.5) times a mild static texture.
            assert abs(cv - 1 / np.sqrt(ENL)) < 0.06, cv


def test_classes_and_orbits(small_archive: Path, small_config) -> None:
    world = build_world(small_config)
    rows, cols = world.layout.s1.window_in(world.layout.world)
    lc = world.scene.landcover[rows, cols]
    water = ndimage.binary_erosion(lc == 1, iterations=1) & (world.plan.change_type[rows, cols] == 0)
    built = lc == 7
    states = set()
    for item, vv, vh in _s1(small_archive):
        states.add(item["properties"]["sat:orbit_state"])
        db = 10 * np.log10(np.nanmean(vv[water]))
        assert -24 < db < -15
        assert np.nanmean(vv[built]) > 3 * np.nanmean(vv[lc == 3])
        assert np.nanmean(vh) < np.nanmean(vv)
        assert vv.dtype == np.float32 and np.isfinite(vv).all()
    assert states == {"ascending", "descending"}
    s1 = Grid.from_bbox(tuple(json.loads((small_archive / "archive.json").read_text())["s1_bbox"]), 10.0)
    assert s1.minx % 20 != 599500 % 20 or s1.maxy % 20 != 5643060 % 20
