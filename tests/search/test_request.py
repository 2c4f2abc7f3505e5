"""SearchRequest parsing and validation (pure, no services)."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import pytest
from dask.base import tokenize
from pystac_client.conformance import ConformanceClasses

from eowatch.errors import InputError
from eowatch.pipelines.search import (
    SearchRequest,
    cloud_mode,
    geometry_from_geojson,
    redact,
    search_parameters,
    select_items,
)

SQUARE = {"type": "Polygon", "coordinates": [[[10, 40], [11, 40], [11, 41], [10, 41], [10, 40]]]}
BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}


def test_parse_strings() -> None:
    req = SearchRequest.parse(
        "sentinel-2-l2a, sentinel-1-grd",
        bbox="10,40,11,41",
        dates="2026-03-01/2026-08-31",
        max_cloud_cover="20",
    )
    assert req.collections == ("sentinel-2-l2a", "sentinel-1-grd")
    assert req.bbox == (10.0, 40.0, 11.0, 41.0)
    assert (req.start, req.end) == (date(2026, 3, 1), date(2026, 8, 31))
    assert req.max_cloud_cover == 20.0
    assert req.datetime_range == "2026-03-01T00:00:00Z/2026-08-31T23:59:59.999999Z"


def test_parse_lists_and_start_end() -> None:
    req = SearchRequest.parse(["s2"], bbox=[10, 40, 11, 41], start="2026-01-01", end=date(2026, 1, 1))
    assert req.start == req.end == date(2026, 1, 1)
    assert req.max_items is None


def test_round_trip_and_tokenize() -> None:
    req = SearchRequest.parse("s2", geojson=SQUARE, dates="2026-03-01/2026-03-31", max_items=5)
    again = SearchRequest.from_dict(json.loads(json.dumps(req.to_dict())))
    assert again == req
    assert tokenize(again) == tokenize(req)
    assert req.bounds == (10.0, 40.0, 11.0, 41.0)


def test_geojson_feature_collection_union(tmp_path: Path) -> None:
    other = {"type": "Polygon", "coordinates": [[[11, 40], [12, 40], [12, 41], [11, 41], [11, 40]]]}
    fc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in (SQUARE, other)],
    }
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(fc))
    geom = geometry_from_geojson(path)
    assert geom["type"] == "Polygon"
    req = SearchRequest.parse("s2", geojson=str(path), dates="2026-03-01/2026-03-02")
    assert req.bounds == (10.0, 40.0, 12.0, 41.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bbox": "10,40,11"}, "4 numbers"),
        ({"bbox": "a,40,11,41"}, "must be a number"),
        ({"bbox": "190,40,191,41"}, "longitude 190.0 is outside"),
        ({"bbox": "10,-95,11,41"}, "latitude -95.0 is outside"),
        ({"bbox": "11,40,10,41"}, "ordered minlon"),
        ({"bbox": "10,41,11,40"}, "ordered minlon"),
        ({"bbox": "10,40,10,41"}, "zero area"),
        ({"geojson": BOWTIE}, "Self-intersection"),
        ({"geojson": {"type": "Point", "coordinates": [1, 2]}}, "Polygon or MultiPolygon"),
        ({"geojson": {"type": "FeatureCollection", "features": []}}, "no geometry"),
        ({"geojson": "/nonexistent/aoi.geojson"}, "cannot read GeoJSON"),
        ({"geojson": "{not json"}, "not valid JSON"),
        ({"bbox": "10,40,11,41", "geojson": SQUARE}, "not both"),
        ({"bbox": "10,40,11,41", "dates": "2026-13-01/2026-12-31"}, "YYYY-MM-DD"),
        ({"bbox": "10,40,11,41", "dates": "2026-03-01"}, "YYYY-MM-DD/YYYY-MM-DD"),
        ({"bbox": "10,40,11,41", "dates": "2026-08-31/2026-03-01"}, "before start"),
        ({"bbox": "10,40,11,41", "max_cloud_cover": 101}, "between 0 and 100"),
        ({"bbox": "10,40,11,41", "max_cloud_cover": -1}, "between 0 and 100"),
        ({"bbox": "10,40,11,41", "max_items": 0}, "max_items"),
    ],
)
def test_invalid_input(kwargs: dict, message: str) -> None:
    kwargs = {"dates": "2026-03-01/2026-08-31", **kwargs}
    with pytest.raises(InputError, match=message) as info:
        SearchRequest.parse("sentinel-2-l2a", **kwargs)
    assert "\n" not in str(info.value)


def test_no_area_and_empty_collections() -> None:
    with pytest.raises(InputError, match="exactly one area"):
        SearchRequest(collections=("s2",), start=date(2026, 1, 1), end=date(2026, 1, 2))
    with pytest.raises(InputError, match="collection"):
        SearchRequest.parse("", bbox="10,40,11,41", dates="2026-03-01/2026-08-31")


def test_redact() -> None:
    text = "GET https://user:pw@stac.example.com/search?token=abc&limit=5&sig=xyz failed"
    out = redact(text)
    assert "pw" not in out and "abc" not in out and "xyz" not in out
    # Every query value goes (signed URLs spread their secret over parameters whose names vary);
    # the host, the path and the parameter names stay, so the message still names the resource.
    assert out == "GET https://***@stac.example.com/search?token=***&limit=***&sig=*** failed"
    assert redact(out) == out


def test_select_items_filters_dedups_sorts() -> None:
    def item(cid: str, iid: str, when: str, cloud: float | None) -> dict:
        props = {"datetime": when} | ({"eo:cloud_cover": cloud} if cloud is not None else {})
        return {"id": iid, "collection": cid, "properties": props}

    items = [
        item("s2", "b", "2026-03-02T00:00:00Z", 10),
        item("s2", "a", "2026-03-02T00:00:00Z", 50),
        item("s1", "z", "2026-03-05T00:00:00Z", None),
        item("s2", "c", "2026-03-01T00:00:00Z", 5),
        item("s2", "b", "2026-03-02T00:00:00Z", 10),
    ]
    req = SearchRequest.parse("s2,s1", bbox="0,0,1,1", dates="2026-03-01/2026-03-31", max_cloud_cover=20)
    assert [i["id"] for i in select_items(items, req)] == ["z", "c", "b"]


class _StubClient:
    def __init__(self, *classes: ConformanceClasses) -> None:
        self.classes = classes

    def conforms_to(self, cls: ConformanceClasses) -> bool:
        return cls in self.classes


def test_cloud_filter_pushed_down_only_with_cql2_filter() -> None:
    req = SearchRequest.parse(
        "s2,s1", bbox="0,0,1,1", dates="2026-03-01/2026-03-31", max_cloud_cover=20, max_items=4
    )
    assert cloud_mode(_StubClient(), req) == "client"  # type: ignore[arg-type]
    assert cloud_mode(_StubClient(ConformanceClasses.QUERY), req) == "client"  # type: ignore[arg-type]
    assert cloud_mode(_StubClient(ConformanceClasses.FILTER), req) == "filter"  # type: ignore[arg-type]
    client_side = search_parameters(req, "client")
    assert "filter" not in client_side and "max_items" not in client_side  # counted after filtering
    pushed = search_parameters(req, "filter")
    assert pushed["filter_lang"] == "cql2-json" and pushed["max_items"] == 4
    # Items without eo:cloud_cover (Sentinel-1) must survive the server-side filter.
    assert pushed["filter"]["op"] == "or" and pushed["filter"]["args"][1]["op"] == "isNull"
    no_cloud = dataclasses.replace(req, max_cloud_cover=None)
    assert cloud_mode(_StubClient(ConformanceClasses.FILTER), no_cloud) == "none"  # type: ignore[arg-type]
