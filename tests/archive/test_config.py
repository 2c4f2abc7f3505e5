"""Config validation, round-tripping and layout geometry."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eowatch.archive import ArchiveConfig
from eowatch.archive.config import Layout, s1_dates, s2_dates, vhr_dates
from eowatch.errors import InputError


def test_roundtrip() -> None:
    cfg = ArchiveConfig(seed=3, size_km=4.0, start=dt.date(2026, 4, 2), end=dt.date(2026, 6, 1))
    assert ArchiveConfig.from_dict(cfg.to_dict()) == cfg
    assert "workers" not in cfg.identity()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"size_km": 0.5},
        {"size_km": 100.0},
        {"start": dt.date(2026, 5, 1), "end": dt.date(2026, 4, 1)},
        {"end": dt.date(2026, 3, 5)},
        {"s2_revisit_days": 0},
        {"vhr_dates": 1},
    ],
)
def test_invalid(kwargs: dict) -> None:
    with pytest.raises(InputError):
        ArchiveConfig(**kwargs)


def test_from_dict_rejects_unknown_and_bad_dates() -> None:
    with pytest.raises(InputError):
        ArchiveConfig.from_dict({"colour": "red"})
    with pytest.raises(InputError):
        ArchiveConfig.from_dict({"start": "2026-13-01"})


def test_default_layout() -> None:
    lay = Layout.from_config(ArchiveConfig())
    assert lay.aoi.bbox == (600000.0, 5640000.0, 610000.0, 5650000.0)
    assert [t.code for t in lay.tiles] == ["31UES", "31UFS"]
    assert lay.vhr.bbox[2] - lay.vhr.bbox[0] == 2000.0


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=1.0, max_value=60.0))
def test_layout_properties(size_km: float) -> None:
    lay = Layout.from_config(ArchiveConfig(size_km=size_km))
    minx, miny, maxx, maxy = lay.aoi.bbox
    assert (minx, miny) == (600000.0, 5640000.0)
    assert all(v % 20 == 0 for v in lay.aoi.bbox) and maxx - minx == maxy - miny
    # S2 tiles: bounds on the 20 m grid, union covers AOI + 500 m, neighbours overlap >= 1 km.
    tiles = [t.grid.bbox for t in lay.tiles]
    assert len(tiles) >= 2 and all(v % 20 == 0 for b in tiles for v in b)
    assert min(b[0] for b in tiles) <= minx - 500 and max(b[2] for b in tiles) >= maxx + 500
    assert min(b[1] for b in tiles) <= miny - 500 and max(b[3] for b in tiles) >= maxy + 500
    row = sorted(b for b in tiles if b[1] == tiles[0][1])
    assert all(a[2] - b[0] >= 1000 for a, b in itertools.pairwise(row))
    # Every grid nests in the world grid; the S1 origin differs from the S2 tiles'; VHR on 10 m.
    for grid in [lay.aoi, lay.s1, *(t.grid for t in lay.tiles)]:
        grid.window_in(lay.world)
    assert (lay.s1.minx - tiles[0][0]) % 20 != 0 and lay.s1.minx % 10 == 0
    vx0, vy0, vx1, vy1 = lay.vhr.bbox
    assert all(v % 10 == 0 for v in lay.vhr.bbox)
    assert minx <= vx0 < vx1 <= maxx and miny <= vy0 < vy1 <= maxy


def test_dates() -> None:
    cfg = ArchiveConfig()
    s2 = s2_dates(cfg)
    assert s2[0] == cfg.start and s2[-1] <= cfg.end and len(s2) == 37
    assert all((b - a).days == 5 for a, b in itertools.pairwise(s2))
    s1 = s1_dates(cfg)
    assert {o for _, o in s1} == {"ascending", "descending"}
    assert all((b[0] - a[0]).days == 6 for a, b in itertools.pairwise(s1))
    v = vhr_dates(cfg)
    assert len(v) == 3 and v[0] > cfg.start and v[-1] < cfg.end
