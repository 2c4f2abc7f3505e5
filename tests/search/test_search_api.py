"""search_catalog against a real STAC API (rustac) serving real recorded Earth Search / PC items."""

from __future__ import annotations

import dataclasses
import logging
from datetime import date, datetime
from typing import Any

import pytest
import shapely
from pystac_client import Client
from shapely.geometry import box, shape

from eowatch.errors import CatalogError, EmptySearchError, InputError
from eowatch.infra.ports import free_port
from eowatch.pipelines.search import SearchRequest, item_sort_key, search_catalog

pytestmark = [pytest.mark.services, pytest.mark.realdata]

SITE2_BBOX = "27.2,-8.1,27.8,-7.4"  # inside tile 35MNM (site2 series)
S2_ES_BBOX = "-60,-60.6,-59,-60.3"  # Earth Search S2/L2A items off the Antarctic peninsula


def oracle(items: list[dict[str, Any]], request: SearchRequest) -> list[dict[str, Any]]:
    """What a correct STAC search + cloud filter returns, computed directly from the input items."""
    area = box(*request.bbox) if request.bbox else shape(request.intersects)
    lo = datetime.combine(request.start, datetime.min.time()).isoformat()
    hi = datetime.combine(request.end, datetime.max.time()).isoformat()
    out = []
    for item in items:
        props = item["properties"]
        when = props["datetime"].replace("Z", "")
        cloud = props.get("eo:cloud_cover")
        if (
            item["collection"] in request.collections
            and shapely.intersects(area, shape(item["geometry"]))
            and lo <= when <= hi
            and (request.max_cloud_cover is None or cloud is None or cloud <= request.max_cloud_cover)
        ):
            out.append(item)
    return sorted(out, key=item_sort_key)


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in items]


def test_collection_metadata_kept(stac_url: str, s2_collection: dict[str, Any]) -> None:
    client = Client.open(stac_url)
    served = client.get_collection("sentinel-2-l2a")
    assert served.title == s2_collection["title"]
    assert served.to_dict()["keywords"] == s2_collection["keywords"]
    assert {c.id for c in client.get_collections()} == {"sentinel-2-l2a", "sentinel-1-grd", "landsat-c2-l2"}


def test_bbox_datetime_cloud_matches_oracle(
    stac_url: str, real_items: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    request = SearchRequest.parse(
        "sentinel-2-l2a", bbox=SITE2_BBOX, dates="2020-06-05/2020-07-21", max_cloud_cover=5
    )
    with caplog.at_level(logging.INFO, logger="eowatch.pipelines.search"):
        found = search_catalog(stac_url, request)
    expected = oracle(real_items, request)
    assert ids(found) == ids(expected)
    assert len(found) == 7  # 10 dates in range, 3 over 5 % cloud (6 Jun..21 Jul, 35MNM)
    assert "client-side" in caplog.text


def test_date_bounds_inclusive(stac_url: str, real_items: list[dict[str, Any]]) -> None:
    request = SearchRequest.parse("sentinel-2-l2a", bbox=SITE2_BBOX, dates="2020-06-01/2020-06-01")
    found = search_catalog(stac_url, request)
    assert ids(found) == ids(oracle(real_items, request))
    assert len(found) == 1


def test_intersects_and_several_collections(stac_url: str, real_items: list[dict[str, Any]]) -> None:
    geojson = {
        "type": "Feature",
        "properties": {},
        "geometry": shapely.geometry.mapping(box(-60, -61, 80, -44)),
    }
    request = SearchRequest.parse(
        ["sentinel-2-l2a", "sentinel-1-grd"],
        geojson=geojson,
        dates="2025-07-01/2025-08-31",
        max_cloud_cover=60,
    )
    found = search_catalog(stac_url, request)
    assert ids(found) == ids(oracle(real_items, request))
    # S1 items have no eo:cloud_cover and are kept; the result is sorted by collection first.
    assert [i["collection"] for i in found][:3] == ["sentinel-1-grd"] * 3
    assert {i["collection"] for i in found} == {"sentinel-1-grd", "sentinel-2-l2a"}


def test_paging_with_small_limit(stac_url: str, real_items: list[dict[str, Any]]) -> None:
    full = SearchRequest.parse("sentinel-2-l2a", bbox=SITE2_BBOX, dates="2020-01-01/2020-12-31")
    paged = dataclasses.replace(full, page_size=2)
    assert ids(search_catalog(stac_url, paged)) == ids(oracle(real_items, full))
    assert len(ids(oracle(real_items, full))) == 13
    # max_items stops early through pystac-client's paging.
    capped = SearchRequest(
        **{**full.to_dict(), "start": full.start, "end": full.end, "page_size": 3, "max_items": 5}
    )
    assert len(search_catalog(stac_url, capped)) == 5
    # The same through pystac-client directly: 13 items over 5 pages of 3 (rustac's default page is 10).
    search = Client.open(stac_url).search(collections=["sentinel-2-l2a"], bbox=full.bbox, limit=3)
    pages = list(search.pages_as_dicts())
    assert [len(p["features"]) for p in pages] == [3, 3, 3, 3, 1]


def test_max_items_counts_after_client_side_cloud_filter(stac_url: str) -> None:
    request = SearchRequest.parse(
        "sentinel-2-l2a", bbox=SITE2_BBOX, dates="2020-06-01/2020-07-31", max_cloud_cover=1, max_items=6
    )
    found = search_catalog(stac_url, request)
    assert len(found) == 6
    assert all(i["properties"]["eo:cloud_cover"] <= 1 for i in found)


def test_unknown_collection_lists_available(stac_url: str) -> None:
    request = SearchRequest.parse("sentinel-2-l3", bbox=SITE2_BBOX, dates="2020-06-01/2020-07-31")
    with pytest.raises(InputError, match=r"unknown collection\(s\) sentinel-2-l3 .*available: landsat-c2-l2"):
        search_catalog(stac_url, request)


def test_empty_search_names_request(stac_url: str) -> None:
    request = SearchRequest.parse("sentinel-2-l2a", bbox=S2_ES_BBOX, dates="2021-01-01/2021-01-31")
    with pytest.raises(EmptySearchError, match=r"sentinel-2-l2a .*-60.6.* 2021-01-01 and 2021-01-31"):
        search_catalog(stac_url, request)


def test_unreachable_api_is_catalog_error() -> None:
    url = f"http://user:secret@127.0.0.1:{free_port()}/stac?token=abc"
    request = SearchRequest.parse("s2", bbox="0,0,1,1", start=date(2020, 1, 1), end=date(2020, 1, 2))
    with pytest.raises(CatalogError, match="cannot open STAC API") as info:
        search_catalog(url, request, timeout_s=2, retries=1)
    assert "secret" not in str(info.value) and "abc" not in str(info.value)
