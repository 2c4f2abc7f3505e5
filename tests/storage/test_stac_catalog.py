"""The run's outputs described as a static STAC catalog on S3, found by a STAC API search and opened."""

from __future__ import annotations

import json
import posixpath
from typing import Any

import pytest

pytestmark = [pytest.mark.services, pytest.mark.slow]

DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"


def _read(url: str) -> dict[str, Any]:
    from eowatch.infra.storage import location

    return json.loads(location(url).read_text())


def _resolve(base_url: str, href: str) -> str:
    assert not href.startswith(("/", "s3://", "http")), f"href {href} is not relative"
    bucket_path = base_url.removeprefix("s3://").rsplit("/", 1)[0]
    return "s3://" + posixpath.normpath(posixpath.join(bucket_path, href))


def _walk(s3_run: dict[str, Any]) -> tuple[dict, list[tuple[str, dict]], list[tuple[str, dict]]]:
    root_url = s3_run["summary"]["output"]["stac_catalog"]
    root = _read(root_url)
    collections = []
    items = []
    for link in root["links"]:
        if link["rel"] == "child":
            url = _resolve(root_url, link["href"])
            collection = _read(url)
            collections.append((url, collection))
            for ilink in collection["links"]:
                if ilink["rel"] == "item":
                    item_url = _resolve(url, ilink["href"])
                    items.append((item_url, _read(item_url)))
    return root, collections, items


def test_catalog_has_a_collection_per_product_and_datacube_items(s3_run: dict[str, Any]) -> None:
    root, collections, items = _walk(s3_run)
    assert root["type"] == "Catalog" and root["stac_version"].startswith("1.")
    ids = sorted(c["id"] for _, c in collections)
    assert ids == ["eowatch-reference-change", "eowatch-reference-cube", "eowatch-reference-vhr"]
    for _, c in collections:
        assert c["type"] == "Collection" and c["license"] and c["description"]
        assert len(c["extent"]["spatial"]["bbox"][0]) == 4 and c["extent"]["temporal"]["interval"][0][0]
    by_product = {url.split("/stac/")[1].split("/")[0].rsplit("-", 1)[1]: (url, it) for url, it in items}
    url, item = by_product["change"]
    for field in ("type", "stac_version", "id", "geometry", "bbox", "properties", "links", "assets"):
        assert field in item
    props = item["properties"]
    assert props["start_datetime"].startswith("2026-04-01") and props["end_datetime"].startswith("2026-06-30")
    assert props["eowatch:run_token"] == s3_run["summary"]["run_token"] and props["proj:code"] == "EPSG:32631"
    assert DATACUBE in item["stac_extensions"]
    dims = props["cube:dimensions"]
    assert dims["x"]["type"] == "spatial" and dims["y"]["axis"] == "y"
    assert dims["x"]["reference_system"] == 32631
    assert dims["time"]["type"] == "temporal" and len(dims["time"]["values"]) == 2
    variables = props["cube:variables"]
    assert variables["change_probability"]["dimensions"] == ["time", "y", "x"]
    assert variables["change_mask"]["data_type"] == "uint8"
    asset = item["assets"]["zarr"]
    assert asset["type"] == "application/vnd+zarr" and asset["roles"] == ["data"]
    assert _resolve(url, asset["href"]) == s3_run["summary"]["output"]["change_cube"]


def test_pystac_reads_the_catalog_and_validates_it_where_schemas_are_at_hand(s3_run: dict[str, Any]) -> None:
    import pystac

    _, _, items = _walk(s3_run)
    for url, doc in items:
        item = pystac.Item.from_dict(doc)
        item.set_self_href(url)
        assert item.assets["zarr"].get_absolute_href().endswith(".zarr")
        try:
            item.validate()
        except pystac.errors.STACValidationError as exc:
            pytest.fail(f"{url} is not valid STAC: {exc}")
        except Exception:  # schemas are fetched from the web, unreachable here: fields checked above
            continue


def test_outputs_are_found_by_a_stac_search_and_open(s3_run: dict[str, Any]) -> None:
    """Serve the run's collections and items through a real STAC API (rustac), search, open the asset."""
    from pystac_client import Client

    from eowatch.infra.services import StacApiServer
    from eowatch.open import open_store

    _, collections, items = _walk(s3_run)
    docs = []
    for url, item in items:  # absolute hrefs: the API serves the items away from their folder
        item["assets"]["zarr"]["href"] = _resolve(url, item["assets"]["zarr"]["href"])
        docs.append(item)
    with StacApiServer(docs, [c for _, c in collections]) as api:
        found = list(
            Client.open(api.url)
            .search(collections=["eowatch-reference-change"], bbox=docs[0]["bbox"], datetime="2026-05")
            .items()
        )
    assert [i.id for i in found] == ["reference-2026-04-01_2026-06-30"]
    change = open_store(found[0].assets["zarr"].href)
    assert str(change.rio.crs) == "EPSG:32631" and "change_probability" in change
