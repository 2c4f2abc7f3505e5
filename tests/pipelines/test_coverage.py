"""Sensor gaps: periods without any acquisition of a collection, and the warning for an S1-reading model."""

from __future__ import annotations

from typing import Any

from eowatch.pipelines.coverage import periods_without, sensor_gap_warning, sensor_gaps
from eowatch.pipelines.grid import GridSpec
from eowatch.pipelines.spec import CubeSpec

PERIODS = (("2026-04-01", "2026-05-01"), ("2026-05-01", "2026-06-01"), ("2026-06-01", "2026-07-01"))
#: 20 km around 15° E, 46° N (UTM 33N): local solar time is UTC + 1 h.
GRID = GridSpec("EPSG:32633", 10.0, (500000.0, 5090000.0, 520000.0, 5110000.0), 512)


def _item(collection: str, when: str) -> dict[str, Any]:
    return {"id": f"{collection}-{when}", "collection": collection, "properties": {"datetime": when}}


def test_a_period_without_s1_is_a_gap_by_solar_day() -> None:
    items = [
        _item("sentinel-2-l2a", "2026-04-10T10:00:00Z"),
        _item("sentinel-2-l2a", "2026-05-12T10:00:00Z"),
        _item("sentinel-2-l2a", "2026-06-14T10:00:00Z"),
        _item("sentinel-1-grd", "2026-04-03T05:10:00Z"),
        # 23:30 UTC on 31 May is 00:30 on 1 June at 15° E: a June acquisition, as the cube counts it.
        _item("sentinel-1-grd", "2026-05-31T23:30:00Z"),
    ]
    assert periods_without(items, "sentinel-1-grd", PERIODS, lon=15.0) == [1]
    assert periods_without(items, "sentinel-1-grd", PERIODS, lon=-15.0) == [2]  # 22:30 on 31 May there
    assert periods_without(items, "sentinel-2-l2a", PERIODS, lon=15.0) == []
    assert periods_without([], "sentinel-1-grd", PERIODS, lon=15.0) == [0, 1, 2]

    spec = CubeSpec(grid=GRID, periods=PERIODS)
    gaps = sensor_gaps(items, spec)
    assert gaps == {"sentinel-1-grd": ["2026-05-01..2026-06-01"]}
    warning = sensor_gap_warning(gaps, spec, "siamese-s2s1-change", ("blue", "red", "vv_db", "vh_db"))
    assert warning is not None and "sentinel-1-grd: no acquisition in 2026-05-01..2026-06-01" in warning
    assert "siamese-s2s1-change" in warning and "unreliable" in warning
    assert sensor_gap_warning(gaps, spec, "optical-only", ("blue", "red")) is None
    assert sensor_gap_warning({}, spec, "siamese-s2s1-change", ("vv_db",)) is None
    with_gap_model = sensor_gap_warning(gaps, spec, "siamese-s2s1-change", ("vv_db",), "gap-net")
    assert with_gap_model is not None and "decided by the gap model gap-net" in with_gap_model
