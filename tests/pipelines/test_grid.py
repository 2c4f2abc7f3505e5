"""Grid and chunk arithmetic against a numpy oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eowatch.errors import InputError
from eowatch.pipelines.grid import GridSpec
from eowatch.pipelines.spec import month_periods, utm_crs_for


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    chunk=st.integers(16, 64),
    x0=st.integers(-500, 500),
    y0=st.integers(-500, 500),
)
def test_chunks_partition_the_grid(h: int, w: int, chunk: int, x0: int, y0: int) -> None:
    r = 10.0
    minx, miny = 600000 + x0 * r, 5640000 + y0 * r
    grid = GridSpec("EPSG:32631", r, (minx, miny, minx + w * r * 3, miny + h * r * 3), chunk)
    cover = np.zeros(grid.shape, np.int32)
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        cover[ys, xs] += 1
        gb = grid.chunk_geobox(key)
        assert gb.shape == (ys.stop - ys.start, xs.stop - xs.start)
        # the chunk's GeoBox sits exactly on the grid's pixels
        assert gb.affine.c == pytest.approx(minx + xs.start * r)
        assert gb.affine.f == pytest.approx(grid.bounds[3] - ys.start * r)
    assert (cover == 1).all()


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(0, 1e5),
    b=st.floats(0, 1e5),
    dx=st.floats(1, 5e4),
    dy=st.floats(1, 5e4),
    res=st.sampled_from([10.0, 20.0, 60.0]),
)
def test_from_bbox_snaps_outward(a: float, b: float, dx: float, dy: float, res: float) -> None:
    bbox = (500000 + a, 5600000 + b, 500000 + a + dx, 5600000 + b + dy)
    grid = GridSpec.from_bbox(bbox, "EPSG:32631", res)
    gx0, gy0, gx1, gy1 = grid.bounds
    assert gx0 <= bbox[0] + 1e-6 and gy0 <= bbox[1] + 1e-6
    assert gx1 >= bbox[2] - 1e-6 and gy1 >= bbox[3] - 1e-6
    assert gx1 - bbox[2] < res + 1e-6 and bbox[0] - gx0 < res + 1e-6


def test_nested_grid_divides_pixels_exactly() -> None:
    grid = GridSpec("EPSG:32631", 10.0, (600000, 5640000, 602000, 5642000))
    fine = grid.nested(10)
    assert fine.resolution == 1.0
    assert fine.shape == (grid.shape[0] * 10, grid.shape[1] * 10)
    assert fine.transform.c == grid.transform.c and fine.transform.f == grid.transform.f


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ((600010, 5640000, 600000, 5650000), "empty or reversed"),
        ((600005, 5640000, 610000, 5650000), "not multiples"),
    ],
)
def test_bad_grids_are_refused(bounds: tuple[float, ...], message: str) -> None:
    with pytest.raises(InputError, match=message):
        GridSpec("EPSG:32631", 10.0, bounds)  # type: ignore[arg-type]


def test_geographic_crs_is_refused() -> None:
    with pytest.raises(InputError, match="not projected"):
        GridSpec("EPSG:4326", 0.001, (4.0, 50.0, 4.1, 50.1))


def test_roundtrip_and_lonlat() -> None:
    grid = GridSpec("EPSG:32631", 10.0, (600000, 5640000, 610000, 5650000))
    assert GridSpec.from_dict(grid.to_dict()) == grid
    lon0, lat0, lon1, lat1 = grid.lonlat_bbox()
    assert 4.0 < lon0 < lon1 < 5.0 and 50.0 < lat0 < lat1 < 51.5
    back = GridSpec.from_lonlat_bbox((lon0, lat0, lon1, lat1), "EPSG:32631", 10.0)
    b = back.bounds
    assert b[0] <= 600000 and b[1] <= 5640000 and b[2] >= 610000 and b[3] >= 5650000


def test_month_periods_and_utm() -> None:
    import datetime as dt

    periods = month_periods(dt.date(2026, 3, 10), dt.date(2026, 5, 31))
    assert periods == (
        ("2026-03-10", "2026-04-01"),
        ("2026-04-01", "2026-05-01"),
        ("2026-05-01", "2026-06-01"),
    )
    with pytest.raises(InputError, match="before start"):
        month_periods(dt.date(2026, 5, 1), dt.date(2026, 3, 1))
    assert utm_crs_for(4.4, 50.9) == "EPSG:32631"
    assert utm_crs_for(-70.0, -33.0) == "EPSG:32719"


def test_chunk_geobox_with_halo_may_leave_the_grid() -> None:
    grid = GridSpec("EPSG:32631", 10.0, (600000, 5640000, 602560, 5642560), chunk=128)
    gb = grid.chunk_geobox(grid.chunks().__next__(), halo=3)
    assert gb.shape == (134, 134)
    assert gb.affine.c == 600000 - 30 and gb.affine.f == 5642560 + 30
