"""Bad STAC items, row by row: each malformed item, the check that must refuse it (``pipelines.search``,
``pipelines.assets``, the reader and the search stage's asset check) and a piece of its message; then
the same through a real STAC API (unknown collection, empty search, unreachable API, served bad items).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eowatch.errors import AssetError, CatalogError, EowatchError, InputError, RefusedAssetError
from tests.reliability.bad_input_row import Row


def _item() -> dict[str, Any]:
    """A well-formed Sentinel-2 item of the shape the synthetic archive and Earth Search serve."""
    asset = {"href": "https://data.example.org/S2/{}.tif", "type": "image/tiff; application=geotiff"}
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "S2A_TEST",
        "collection": "sentinel-2-l2a",
        "geometry": {"type": "Polygon", "coordinates": [[[4, 50], [5, 50], [5, 51], [4, 51], [4, 50]]]},
        "bbox": [4, 50, 5, 51],
        "properties": {"datetime": "2026-04-01T10:30:00Z", "eo:cloud_cover": 12.5},
        "assets": {b: {**asset, "href": asset["href"].format(b)} for b in ("blue", "red", "nir", "scl")},
        "links": [],
    }


def _without(*path: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(item: dict[str, Any]) -> dict[str, Any]:
        node = item
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return item

    return edit


def _setting(value: Any, *path: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(item: dict[str, Any]) -> dict[str, Any]:
        node = item
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return item

    return edit


def _check_item(item: dict[str, Any]) -> None:
    from eowatch.pipelines.search import check_item

    check_item(item)


def _resolve(item: dict[str, Any]) -> None:
    from eowatch.pipelines.assets import resolve_asset_keys

    resolve_asset_keys(item, ["blue", "red", "nir", "scl"])


def _reader_check(item: dict[str, Any]) -> None:
    from eowatch.pipelines.reader import StacRegionReader

    StacRegionReader(asset_stores=("https://data.example.org/S2/",)).check(
        [item], ["blue", "red", "nir", "scl"]
    )


def _cloud_filter(item: dict[str, Any]) -> None:
    from eowatch.pipelines.search import SearchRequest, select_items

    request = SearchRequest.parse(
        "sentinel-2-l2a", bbox="4,50,5,51", dates="2026-04-01/2026-04-30", max_cloud_cover=50
    )
    select_items([item], request)


ITEMS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], Callable[[dict[str, Any]], None], Row]] = {
    "no assets": (
        _setting({}, "assets"),
        _check_item,
        Row(None, CatalogError, "'S2A_TEST' of 'sentinel-2-l2a' has no assets"),
    ),
    "no geometry": (
        _setting(None, "geometry"),
        _check_item,
        Row(None, CatalogError, "has no footprint geometry"),
    ),
    "no datetime": (
        _setting(None, "properties", "datetime"),
        _check_item,
        Row(None, CatalogError, "no valid datetime (None)"),
    ),
    "datetime malformed": (
        _setting("yesterday", "properties", "datetime"),
        _check_item,
        Row(None, CatalogError, "no valid datetime ('yesterday')"),
    ),
    "no id": (_without("id"), _check_item, Row(None, CatalogError, "lacks an 'id' or a 'collection'")),
    "no collection": (
        _without("collection"),
        _check_item,
        Row(None, CatalogError, "lacks an 'id' or a 'collection'"),
    ),
    "band missing": (
        _without("assets", "nir"),
        _resolve,
        Row(None, InputError, "has no asset for band 'nir'; its assets are blue, red, scl"),
    ),
    "asset without href": (
        _without("assets", "red", "href"),
        _reader_check,
        Row(None, AssetError, "has no href for asset 'red'"),
    ),
    "asset href elsewhere": (
        _setting("https://evil.example.com/red.tif", "assets", "red", "href"),
        _reader_check,
        Row(None, RefusedAssetError, "refused asset href https://evil.example.com/red.tif: it is outside"),
    ),
    "cloud cover not a number": (
        _setting("cloudy", "properties", "eo:cloud_cover"),
        _cloud_filter,
        Row(None, CatalogError, "item 'S2A_TEST' has a non-numeric eo:cloud_cover 'cloudy'"),
    ),
}


@pytest.mark.parametrize("case", list(ITEMS))
def test_malformed_item(case: str) -> None:
    spoil, check, row = ITEMS[case]
    item = spoil(copy.deepcopy(_item()))
    with pytest.raises(row.expected) as info:  # type: ignore[call-overload]
        check(item)
    assert row.message in str(info.value) and "\n" not in str(info.value)


def test_the_well_formed_item_passes_every_check() -> None:
    for check in (_check_item, _resolve, _reader_check, _cloud_filter):
        check(_item())


@pytest.mark.slow  # generates the small archive
def test_items_without_projection_metadata_load_the_same(small_archive: Path) -> None:
    """``proj:*`` is optional: odc-stac then reads the grid from the file, and the pixels are the same."""
    import numpy as np

    from eowatch.archive import load_items, load_manifest
    from eowatch.pipelines.grid import ChunkKey, GridSpec
    from eowatch.pipelines.reader import StacRegionReader

    m = load_manifest(small_archive)
    geobox = GridSpec.from_bbox(tuple(m["aoi_bbox"]), m["crs"], 10.0, 128).chunk_geobox(ChunkKey(0, 0))
    items = [d for d in load_items(small_archive, str(small_archive)) if d["collection"] == "sentinel-2-l2a"][
        :3
    ]
    bare = copy.deepcopy(items)
    for item in bare:
        for node in (item["properties"], *item["assets"].values()):
            for key in [k for k in node if k.startswith("proj:")]:
                del node[key]
    reader = StacRegionReader(asset_stores=(small_archive.as_uri(),))
    full = reader.load(items, ["red"], geobox, "uint16", {"*": "nearest"}, nodata=0)
    stripped = reader.load(bare, ["red"], geobox, "uint16", {"*": "nearest"}, nodata=0)
    assert np.array_equal(full.red.values, stripped.red.values) and int(full.red.values.max()) > 0


# --- through a real STAC API: the catalog's side of bad input ----------------------------------------------


@pytest.mark.services
def test_served_catalog_errors(served_small_archive: Any, small_archive: Path, tmp_path: Path) -> None:
    """Unknown collection, a search that matches nothing, an unreachable API with credentials in its URL,
    and malformed items served by rustac (string cloud cover, a band missing), found by the search stage."""
    from eowatch.archive import load_collections, load_items
    from eowatch.errors import EmptySearchError
    from eowatch.infra.ports import free_port
    from eowatch.infra.services import StacApiServer
    from eowatch.pipelines import stages
    from eowatch.pipelines.search import SearchRequest, search_catalog
    from tests.reliability.conftest import ONE_CHUNK_BOUNDS, run_params

    bbox = ",".join(map(str, served_small_archive.manifest["aoi_bbox_lonlat"]))

    def request(collection: str, dates: str = "2026-04-01/2026-06-30", **extra: Any) -> SearchRequest:
        return SearchRequest.parse(collection, bbox=bbox, dates=dates, **extra)

    url = served_small_archive.stac_url
    unreachable = f"https://alice:s3cr3t@127.0.0.1:{free_port()}/stac?token=s3cr3t"
    cases: list[tuple[Callable[[], Any], type[EowatchError], str]] = [
        (
            lambda: search_catalog(url, request("sentinel-2-l2b")),
            InputError,
            "unknown collection(s) sentinel-2-l2b at http://127.0.0.1",
        ),
        (
            lambda: search_catalog(url, request("sentinel-2-l2a", "2019-01-01/2019-02-01")),
            EmptySearchError,
            "no items in sentinel-2-l2a",
        ),
        (
            lambda: search_catalog(unreachable, request("sentinel-2-l2a"), timeout_s=2, retries=1),
            CatalogError,
            "cannot open STAC API at https://***@127.0.0.1",
        ),
    ]
    for call, expected, message in cases:
        with pytest.raises(expected) as info:
            call()
        assert message in str(info.value) and "s3cr3t" not in str(info.value)

    items = load_items(small_archive, served_small_archive.asset_url)
    collections = load_collections(small_archive)
    first = next(d for d in items if d["collection"] == "sentinel-2-l2a")
    first["properties"]["eo:cloud_cover"] = "cloudy"
    with StacApiServer(items, collections) as stac:
        expected_message = f"item {first['id']!r} has a non-numeric eo:cloud_cover 'cloudy'"
        with pytest.raises(CatalogError, match=re.escape(expected_message)):
            search_catalog(stac.url, request("sentinel-2-l2a", max_cloud_cover=50))
    del first["properties"]["eo:cloud_cover"]
    del first["assets"]["nir"]
    with StacApiServer(items, collections) as stac:
        served = type(served_small_archive)(
            stac.url, served_small_archive.asset_url, served_small_archive.manifest
        )
        run = stages.prepare_run(run_params(served, tmp_path / "out", bounds=ONE_CHUNK_BOUNDS).to_config())
        with pytest.raises(InputError, match="has no asset for band 'nir'"):
            stages.search_stage(run)
    assert not run.layout.items.exists()  # refused before the search result was recorded


def test_a_resumed_run_refuses_items_that_changed_under_the_same_id(
    served_small_archive: Any, small_archive: Path, tmp_path: Path
) -> None:
    """The search stage records its items; a resumed run must find the same ones with the same content.
    Hrefs may move (a restarted or re-signed server); an item reprocessed in place (new ``updated``, other
    checksums) or one that disappeared is refused by name, before anything is read."""
    from eowatch.archive import load_collections, load_items
    from eowatch.infra.services import StacApiServer
    from eowatch.pipelines import stages
    from tests.reliability.conftest import ONE_CHUNK_BOUNDS, run_params

    items = load_items(small_archive, served_small_archive.asset_url)
    collections = load_collections(small_archive)

    def search(served_items: list[dict[str, Any]]) -> Path:
        with StacApiServer(served_items, collections) as stac:
            served = type(served_small_archive)(
                stac.url, served_small_archive.asset_url, served_small_archive.manifest
            )
            params = run_params(served, tmp_path / "out", bounds=ONE_CHUNK_BOUNDS)
            return stages.search_stage(stages.prepare_run(params.to_config()))

    recorded = search(items)
    found = [d["id"] for d in json.loads(recorded.read_text())]
    again = copy.deepcopy(items)
    for item in again:
        for asset in item["assets"].values():
            asset["href"] = asset["href"] + "?signed=2"  # served elsewhere: the same data
    assert search(again) == recorded

    reprocessed = copy.deepcopy(items)
    target = next(d for d in reprocessed if d["id"] == found[0])
    target["properties"]["updated"] = "2030-01-01T00:00:00Z"
    with pytest.raises(CatalogError, match=rf"0 new, 0 gone, 1 changed, e\.g\. '{re.escape(target['id'])}'"):
        search(reprocessed)
    with pytest.raises(CatalogError, match="0 new, 1 gone, 0 changed"):
        search([d for d in items if d["id"] != target["id"]])


def test_a_month_without_s1_is_decided_by_the_gap_model_and_its_scenes_arriving_later_are_noticed(
    served_small_archive: Any,
    small_archive: Path,
    prefect_server: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """The small archive without its May S1 scenes: the search stage warns (the change model reads S1),
    names the month and the gap model, and the run goes on; the summary's ``sensor_gaps`` comes from the
    same function. The transitions into and out of May are decided by the gap model (``s1_gap``), the
    others by the change model. When the May scenes reach the catalog after the run finished, a re-run
    is still a no-op but ``catalog_drift`` says what changed (the finished run is reused for this)."""
    import xarray as xr

    from eowatch.archive import load_collections, load_items
    from eowatch.infra.services import StacApiServer
    from eowatch.pipelines import stages
    from eowatch.pipelines.drift import catalog_drift
    from eowatch.report import print_summary
    from flows import monitor
    from tests.reliability.conftest import ONE_CHUNK_BOUNDS, THREADS, run_params

    items = [
        d
        for d in load_items(small_archive, served_small_archive.asset_url)
        if not (d["collection"] == "sentinel-1-grd" and d["properties"]["datetime"].startswith("2026-05"))
    ]
    warnings: list[str] = []
    with StacApiServer(items, load_collections(small_archive)) as stac:
        served = type(served_small_archive)(
            stac.url, served_small_archive.asset_url, served_small_archive.manifest
        )
        run = stages.prepare_run(run_params(served, tmp_path / "out", bounds=ONE_CHUNK_BOUNDS).to_config())
        stages.search_stage(run, warn=warnings.append)
        assert len(warnings) == 1, warnings
        assert "sentinel-1-grd: no acquisition in 2026-05-01..2026-06-01" in warnings[0]
        assert "gap model siamese-s2s1-gap-change" in warnings[0]
        assert run.layout.items.exists()  # a warning, not a refusal
        semantic = "siamese-s2s1-semantic"  # no gap model: its own warning
        extra = {"bounds": ONE_CHUNK_BOUNDS, "semantic_change_model": semantic}
        sem_run = stages.prepare_run(run_params(served, tmp_path / "sem", **extra).to_config())
        sem_warnings: list[str] = []
        stages.search_stage(sem_run, warn=sem_warnings.append)
        assert len(sem_warnings) == 2 and f"{semantic} reads S1" in sem_warnings[1]
        params = run_params(served, tmp_path / "out", bounds=ONE_CHUNK_BOUNDS)
        summary = monitor(params, THREADS)
        finished = stages.prepare_run(params.to_config())
        assert catalog_drift(finished) is None  # the catalog it ran on is unchanged
    assert summary["status"] == "complete"
    assert summary["sensor_gaps"] == {"sentinel-1-grd": ["2026-05-01..2026-06-01"]}
    assert summary["gap_model"]["name"] == "siamese-s2s1-gap-change"
    gap_km2 = summary["changes_found"]["s1_gap_km2"]
    assert sorted(gap_km2) == ["2026-05-01", "2026-06-01"]  # into and out of May (by the later period)
    with xr.open_zarr(tmp_path / "out" / "change.zarr") as change:
        gap = change["s1_gap"].values.astype(bool)
        months = [str(t)[:7] for t in change["time"].values]
        assert change.attrs["stage_models"]  # the gap model's weights are in the provenance
    print_summary(summary)
    assert "Without S1:         decided by siamese-s2s1-gap-change: 2026-05-01" in capsys.readouterr().out
    for t, month in enumerate(months):
        assert gap[t].mean() > 0.9 if month in ("2026-05", "2026-06") else not gap[t].any()

    # The May S1 scenes appear in the catalog after the run finished: a re-run says so and stays a no-op.
    full = stages.prepare_run(
        run_params(served_small_archive, tmp_path / "out", bounds=ONE_CHUNK_BOUNDS).to_config()
    )
    assert full.token == finished.token and full.is_complete()
    drift = catalog_drift(full)
    assert drift is not None and "the catalog has changed since this run finished (sentinel-1-grd " in drift
    assert "another output folder" in drift
    notes: list[str] = []
    assert catalog_drift(finished, notes.append) is None  # its catalog server is gone: noted, not raised
    assert len(notes) == 1 and "could not check the catalog" in notes[0]
