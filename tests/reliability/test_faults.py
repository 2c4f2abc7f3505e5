"""Network faults on the STAC API and the asset server, injected by a proxy on loopback.

A run through the faults either completes with output byte-identical to the clean reference run, or
fails with one clear error and leaves nothing marked complete. The catalog search retries HTTP 429/5xx,
dropped connections and timeouts (urllib3, with backoff, honouring ``Retry-After``); COG reads retry
through GDAL (429/5xx, timeouts) and the reader (dropped connections), and GDAL's memory of a failed URL
is cleared so that a later attempt really reads again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eowatch.errors import AssetError, CatalogError
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.reader import DEFAULT_GDAL_ENV, StacRegionReader, clear_vsicurl_cache
from eowatch.pipelines.search import SearchRequest, search_catalog
from tests.reliability.conftest import (
    THREADS,
    FaultyArchive,
    assert_nothing_complete,
    assert_same_output,
    run_params,
)
from tests.reliability.fault_proxy import FaultPlan

pytestmark = [pytest.mark.services, pytest.mark.slow]

SCENE = "S2A_31UES_20260401_0_L2A"
"""A Sentinel-2 scene that covers the top-left chunk of the small archive's grid."""


@pytest.fixture
def faults(faulty_archive: FaultyArchive) -> Iterator[FaultyArchive]:
    """The faulty archive with GDAL's cache of earlier reads forgotten (in-process workers share it), reset
    to fault-free plans after the test (whatever it set)."""
    clear_vsicurl_cache()
    yield faulty_archive
    faulty_archive.stac_proxy.set_plan(FaultPlan())
    faulty_archive.asset_proxy.set_plan(FaultPlan())


def _injected(outcomes: dict[str, int]) -> int:
    return sum(n for k, n in outcomes.items() if k != "forwarded")


def _request(served: FaultyArchive) -> SearchRequest:
    m = served.manifest
    return SearchRequest(
        collections=("sentinel-2-l2a",),
        bbox=tuple(m["aoi_bbox_lonlat"]),
        start=dt.date.fromisoformat(m["start"]),
        end=dt.date.fromisoformat(m["end"]),
    )


def test_transient_faults_everywhere_give_identical_bytes(
    faults: FaultyArchive, clean_run: Path, tmp_path: Path, record_property: Any
) -> None:
    """30 % of STAC requests and 6 % of COG requests fail (5xx, 429, dropped), each at most twice."""
    from flows import monitor

    faults.stac_proxy.set_plan(FaultPlan(seed=11, share=0.3, faults=("500", "502", "503", "429", "drop")))
    faults.asset_proxy.set_plan(FaultPlan(seed=12, share=0.06, faults=("500", "502", "503", "429", "drop")))
    out = tmp_path / "out"
    summary = monitor(run_params(faults, out), THREADS)
    stac, assets = faults.stac_proxy.outcomes, faults.asset_proxy.outcomes
    record_property("stac_outcomes", json.dumps(stac))
    record_property("asset_outcomes", json.dumps(assets))
    assert summary["status"] == "complete"
    assert _injected(stac) >= 3 and _injected(assets) >= 10, (stac, assets)
    assert_same_output(out, clean_run)


def test_stac_api_down_fails_cleanly(faults: FaultyArchive, prefect_server: Any, tmp_path: Path) -> None:
    from flows import monitor

    faults.stac_proxy.set_plan(FaultPlan(share=1.0, faults=("503",), max_faults_per_request=None))
    out = tmp_path / "out"
    with pytest.raises(CatalogError, match=r"cannot open STAC API at http://127\.0\.0\.1:\d+.*HTTP 503"):
        monitor(run_params(faults, out), THREADS)
    assert faults.stac_proxy.outcomes["503"] == 4  # the first try and 3 retries, then a clear error
    assert_nothing_complete(out)


def test_asset_refused_by_the_server_fails_cleanly(
    faults: FaultyArchive, prefect_server: Any, tmp_path: Path
) -> None:
    """The server refuses one COG (403, e.g. an expired signed URL): the run fails naming it."""
    from flows import monitor

    faults.asset_proxy.set_plan(
        FaultPlan(share=1.0, faults=("403",), max_faults_per_request=None, path_contains=f"{SCENE}/nir.tif")
    )
    out = tmp_path / "out"
    with pytest.raises(
        AssetError, match=rf"could not read asset http://127\.0\.0\.1:\d+/.*{SCENE}/nir\.tif: .*403"
    ):
        monitor(run_params(faults, out), THREADS)
    assert_nothing_complete(out)
    assert not list(out.glob(".eowatch/*/ledger/cube/0000_0000.json"))  # the chunk under that scene


def test_search_retries_stalls_past_the_timeout(faults: FaultyArchive) -> None:
    clean = search_catalog(faults.stac_url, _request(faults))
    faults.stac_proxy.set_plan(FaultPlan(seed=5, share=0.5, faults=("stall",), stall_s=3.0))
    found = search_catalog(faults.stac_url, _request(faults), timeout_s=1.0)
    assert faults.stac_proxy.outcomes["stall"] >= 1
    assert found == clean


def test_search_gives_up_on_a_stalled_api_with_a_clear_error(faults: FaultyArchive) -> None:
    faults.stac_proxy.set_plan(
        FaultPlan(share=1.0, faults=("stall",), stall_s=2.0, max_faults_per_request=None)
    )
    with pytest.raises(CatalogError, match=r"cannot open STAC API at .*timed out \(no answer within 0.5 s"):
        search_catalog(faults.stac_url, _request(faults), timeout_s=0.5, retries=1)


def test_search_honours_retry_after(faults: FaultyArchive) -> None:
    """Each request is first answered 429 with ``Retry-After: 1``: the client waits, then retries."""
    faults.stac_proxy.set_plan(
        FaultPlan(share=1.0, faults=("429",), retry_after_s=1, max_faults_per_request=1)
    )
    assert search_catalog(faults.stac_url, _request(faults))
    history = faults.stac_proxy.history()
    refused = {key: t for t, key, outcome in history if outcome == "429"}
    answered = {key: t for t, key, outcome in history if outcome == "forwarded"}
    assert len(refused) >= 3 and set(refused) == set(answered)
    assert all(answered[key] - refused[key] >= 0.9 for key in refused)


# --- the reader alone, on one chunk --------------------------------------------------------------------


def _chunk_read(
    served: FaultyArchive, archive: Path, **env: str
) -> tuple[StacRegionReader, list[dict[str, Any]], Any, Any]:
    """A reader through the asset proxy, the scene's items, the top-left chunk's GeoBox and a reference
    read of the same pixels straight from the files (no network)."""
    from eowatch.archive import load_items

    m = served.manifest
    grid = GridSpec.from_bbox(tuple(m["aoi_bbox"]), m["crs"], 10.0, 128)
    geobox = grid.chunk_geobox(ChunkKey(0, 0))
    items = [d for d in load_items(archive, served.asset_url) if d["id"] == SCENE]
    local = json.loads(json.dumps(items).replace(served.asset_url, str(archive)))
    reference = StacRegionReader(asset_stores=(archive.as_uri(),)).load(
        local, ["red", "nir"], geobox, "uint16", {"*": "nearest"}, nodata=0
    )
    reader = StacRegionReader(gdal_env={**DEFAULT_GDAL_ENV, **env}, asset_stores=(served.asset_url,))
    return reader, items, geobox, reference


def _same_pixels(a: Any, b: Any) -> bool:
    return all(np.array_equal(a[v].values, b[v].values) for v in b.data_vars)


def test_reader_retries_stalled_reads(faults: FaultyArchive, small_archive: Path) -> None:
    reader, items, geobox, reference = _chunk_read(faults, small_archive, GDAL_HTTP_TIMEOUT="1")
    faults.asset_proxy.set_plan(
        FaultPlan(seed=3, share=0.5, faults=("stall",), stall_s=3.0, max_faults_per_request=1)
    )
    got = reader.load(items, ["red", "nir"], geobox, "uint16", {"*": "nearest"}, nodata=0)
    assert faults.asset_proxy.outcomes["stall"] >= 1
    assert _same_pixels(got, reference)


def test_reader_recovers_after_a_failure_in_the_same_process(
    faults: FaultyArchive, small_archive: Path
) -> None:
    """GDAL remembers a failed URL as missing; the reader clears that, so a retried task reads again."""
    reader, items, geobox, reference = _chunk_read(faults, small_archive, GDAL_HTTP_RETRY_DELAY="0.05")
    faults.asset_proxy.set_plan(
        FaultPlan(share=1.0, faults=("503",), max_faults_per_request=None, path_contains=f"{SCENE}/red.tif")
    )
    with pytest.raises(AssetError, match=rf"asset http://.*{SCENE}/red\.tif: HTTP response code: 503"):
        reader.load(items, ["red", "nir"], geobox, "uint16", {"*": "nearest"}, nodata=0)
    faults.asset_proxy.set_plan(FaultPlan())  # the server is back
    got = reader.load(items, ["red", "nir"], geobox, "uint16", {"*": "nearest"}, nodata=0)
    assert faults.asset_proxy.outcomes["forwarded"] > 0
    assert _same_pixels(got, reference)
