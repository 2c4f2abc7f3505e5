"""Search and cube planning on REAL recorded STAC items (Earth Search and Planetary Computer).

No pixels of these items are here (their hrefs point to the internet), so the tests stop at metadata:
search through a real local STAC API, the target grid, the time axis odc-stac would build, asset-key
resolution across catalogs and the reflectance offset of each processing baseline.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import odc.stac
import pytest

from eowatch.errors import InputError
from eowatch.infra.services import StacApiServer
from eowatch.pipelines.assets import reflectance_scaling, resolve_asset_keys
from eowatch.pipelines.reader import to_pystac
from eowatch.pipelines.search import SearchRequest, search_catalog
from eowatch.pipelines.spec import MonitorConfig

pytestmark = pytest.mark.realdata

S2_BANDS = ["blue", "green", "red", "nir", "swir16", "swir22", "scl"]


def _features(path: Path) -> list[dict]:
    return json.loads(path.read_text())["features"]


@pytest.fixture(scope="module")
def site2(shared_data: Path) -> list[dict]:
    """13 real Sentinel-2 L2A items of tile 35MNM (Planetary Computer asset keys B02.., SCL)."""
    return _features(shared_data / "stac" / "odc_stac_items" / "site2-2020_jun_jul-35MNM.geojson")


@pytest.mark.services
def test_search_and_plan_a_real_time_series(site2: list[dict]) -> None:
    lon = np.mean([f["bbox"][0] for f in site2]) + 0.2
    lat = np.mean([f["bbox"][1] for f in site2]) + 0.2
    bbox = (lon, lat, lon + 0.1, lat + 0.1)
    with StacApiServer(site2) as stac:
        items = search_catalog(
            stac.url,
            SearchRequest(
                collections=("sentinel-2-l2a",),
                bbox=bbox,
                start=dt.date(2020, 6, 1),
                end=dt.date(2020, 7, 31),
                max_cloud_cover=50,
            ),
        )
    assert items and all(f["properties"]["eo:cloud_cover"] <= 50 for f in items)
    config = MonitorConfig(
        stac_url="http://unused",
        bbox=bbox,
        start=dt.date(2020, 6, 1),
        end=dt.date(2020, 7, 31),
        out="/tmp/unused",
    )
    spec = config.cube_spec()
    assert spec.grid.crs == "EPSG:32735"  # UTM 35S, the zone of tile 35MNM
    assert all(v % 10 == 0 for v in spec.grid.bounds)
    assert spec.periods == (("2020-06-01", "2020-07-01"), ("2020-07-01", "2020-08-01"))

    keys = resolve_asset_keys(items[0], S2_BANDS)
    assert keys == {
        "blue": "B02",
        "green": "B03",
        "red": "B04",
        "nir": "B08",
        "swir16": "B11",
        "swir22": "B12",
        "scl": "SCL",
    }
    # A lazy load builds the cube's shape from metadata alone: no pixel is read.
    lazy = odc.stac.load(
        to_pystac(items),
        bands=list(keys.values()),
        geobox=spec.grid.geobox(),
        groupby="solar_day",
        chunks={"x": 256, "y": 256},
        dtype="uint16",
    )
    assert (lazy.sizes["y"], lazy.sizes["x"]) == spec.grid.shape
    assert lazy.odc.geobox.crs.epsg == 32735
    days = lazy.time.values.astype("datetime64[D]")
    expected = sorted({np.datetime64(f["properties"]["datetime"][:10]) for f in items})
    assert list(days) == expected
    assert lazy["B04"].dtype == np.uint16 and lazy["SCL"].dtype == np.uint16


def test_asset_keys_across_catalogs(shared_data: Path) -> None:
    items_dir = shared_data / "stac" / "pystac_client_responses" / "items"
    es = _features(items_dir / "earth-search__sentinel-2-l2a.json")[0]
    pc = _features(items_dir / "planetarycomputer__sentinel-2-l2a.json")[0]
    assert resolve_asset_keys(es, S2_BANDS)["red"] == "red"
    assert resolve_asset_keys(es, S2_BANDS)["scl"] == "scl"
    assert resolve_asset_keys(pc, S2_BANDS)["red"] == "B04"
    assert resolve_asset_keys(pc, S2_BANDS)["swir16"] == "B11"
    s1 = _features(items_dir / "earth-search__sentinel-1-grd.json")[0]  # a real HH-only (polar) scene
    assert resolve_asset_keys(s1, ["hh"]) == {"hh": "hh"}
    with pytest.raises(InputError, match="no asset for band 'vv'; its assets are hh"):
        resolve_asset_keys(s1, ["vv"])


def test_reflectance_offset_follows_the_processing_baseline(shared_data: Path, site2: list[dict]) -> None:
    items_dir = shared_data / "stac" / "pystac_client_responses" / "items"
    es = _features(items_dir / "earth-search__sentinel-2-l2a.json")[0]  # baseline 05.11, raster:bands
    assert reflectance_scaling(es, "red") == (0.0001, -0.1)
    pc = _features(items_dir / "planetarycomputer__sentinel-2-l2a.json")[0]  # baseline 02.12, no raster ext
    assert reflectance_scaling(pc, "B04") == (0.0001, 0.0)
    newer = {**pc, "properties": {**pc["properties"], "s2:processing_baseline": "05.10"}}
    assert reflectance_scaling(newer, "B04") == (0.0001, -0.1)


def test_odc_stac_items_grid_metadata(shared_data: Path) -> None:
    """A real 9-tile strip (one datatake, MGRS rows 35L..35M) plans onto one grid and one time step."""
    items = _features(shared_data / "stac" / "odc_stac_items" / "site1-20200606-tall-strip-africa.geojson")
    epsgs = {f["properties"].get("proj:epsg") for f in items}
    lons = [c for f in items for c in (f["bbox"][0], f["bbox"][2])]
    lats = [c for f in items for c in (f["bbox"][1], f["bbox"][3])]
    bbox = (min(lons), min(lats), max(lons), max(lats))
    config = MonitorConfig(
        stac_url="http://unused",
        bbox=bbox,
        start=dt.date(2020, 6, 1),
        end=dt.date(2020, 7, 31),
        out="/tmp/unused",
        resolution=60.0,
    )
    grid = config.cube_spec().grid
    assert grid.crs in {f"EPSG:{e}" for e in epsgs}
    lazy = odc.stac.load(
        to_pystac(items), bands=["B04"], geobox=grid.geobox(), chunks={}, groupby="solar_day"
    )
    assert lazy.sizes["time"] == 1 and (lazy.sizes["y"], lazy.sizes["x"]) == grid.shape
