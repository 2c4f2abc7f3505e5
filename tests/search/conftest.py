"""Fixtures for the catalog-search tests: real recorded STAC items served by a real local STAC API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eowatch.infra.services import StacApiServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_STAC = REPO_ROOT.parent / "shared" / "data" / "stac"

# Real items from Earth Search and Planetary Computer (see MANIFEST.txt beside them).
ITEM_FILES = (
    "pystac_client_responses/items/earth-search__sentinel-2-l2a.json",
    "pystac_client_responses/items/earth-search__sentinel-1-grd.json",
    "pystac_client_responses/items/earth-search__landsat-c2-l2.json",
    "odc_stac_items/site2-2020_jun_jul-35MNM.geojson",
)
S2_COLLECTION_FILE = "odc_stac_items/sentinel-2-l2a.collection.json"


@pytest.fixture(scope="session")
def shared_stac() -> Path:
    """The shared real-data folder; the tests that need it skip only where it is absent."""
    if not SHARED_STAC.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_STAC}")
    return SHARED_STAC


@pytest.fixture(scope="session")
def real_items(shared_stac: Path) -> list[dict[str, Any]]:
    """All items of ITEM_FILES as plain dicts, without their links to the live catalogs."""
    items = []
    for name in ITEM_FILES:
        data = json.loads((shared_stac / name).read_text())
        for feature in data["features"]:
            items.append({**feature, "links": []})
    return items


@pytest.fixture(scope="session")
def s2_collection(shared_stac: Path) -> dict[str, Any]:
    """Planetary Computer's real sentinel-2-l2a collection document."""
    return json.loads((shared_stac / S2_COLLECTION_FILE).read_text())


@pytest.fixture(scope="session")
def stac_url(real_items: list[dict[str, Any]], s2_collection: dict[str, Any]) -> Iterator[str]:
    """URL of a rustac STAC API serving ``real_items`` (other collections synthesized)."""
    with StacApiServer(real_items, [s2_collection]) as server:
        yield server.url
