"""The bad-input table: every row is an input, the error it must give, and a piece of its message.

Four edges take user input: the CLI (``eowatch run``: exit code and one ``error:`` line, nothing written,
no service started), the flow parameters (``parse_params``), region files (``load_regions`` and
``Region.monitor_params``) and the STAC items a catalog returns (in tests/reliability/test_bad_items.py).
tests/pipelines/test_bad_input.py, tests/pipelines/test_regions.py and tests/search/test_request.py pin
further cases; the rows here are the others.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from eowatch.errors import InputError, ModelError
from tests.reliability.bad_input_row import Row

BASE_RUN = {
    "--stac-url": "http://127.0.0.1:9",
    "--bbox": "4.42,50.90,4.45,50.92",
    "--start": "2026-04-01",
    "--end": "2026-06-30",
}
BASE_PARAMS: dict[str, Any] = {
    "stac_url": "http://127.0.0.1:9",
    "bbox": (4.42, 50.90, 4.45, 50.92),
    "start": dt.date(2026, 4, 1),
    "end": dt.date(2026, 6, 30),
}
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[4.42, 50.9], [4.45, 50.9], [4.45, 50.92], [4.42, 50.92], [4.42, 50.9]]],
}
BOWTIE = {
    "type": "Polygon",
    "coordinates": [[[4.4, 50.9], [4.5, 51.0], [4.5, 50.9], [4.4, 51.0], [4.4, 50.9]]],
}
UTM_SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[600000, 5640000], [601000, 5640000], [601000, 5641000], [600000, 5641000], [600000, 5640000]]
    ],
}


# --- the CLI: `eowatch run` argv overrides → exit code and the `error:` line --------------------------

CLI: dict[str, Row] = {
    "bbox reversed": Row(
        {"--bbox": "4.45,50.90,4.42,50.92"}, 2, "must be ordered minlon,minlat,maxlon,maxlat"
    ),
    "bbox zero area": Row({"--bbox": "4.42,50.90,4.42,50.92"}, 2, "has zero area"),
    "bbox NaN": Row({"--bbox": "4.42,50.90,4.45,nan"}, 2, "bbox value must be finite, got nan"),
    "bbox 3 numbers": Row({"--bbox": "4.42,50.90,4.45"}, 2, "must be 4 comma-separated numbers"),
    "bbox not numbers": Row({"--bbox": "a,b,c,d"}, 2, "must be 4 comma-separated numbers"),
    "bbox longitude out of range": Row(
        {"--bbox": "184,50,185,51"}, 2, "longitude 184.0 is outside [-180, 180]"
    ),
    "bbox too large": Row({"--bbox": "-10,35,30,60"}, 2, "the AOI is too large for one run"),
    "bbox beyond UTM": Row({"--bbox": "10,85,11,86"}, 2, "no UTM zone for lon=10.5, lat=85.5"),
    "date malformed": Row({"--start": "2026/04/01"}, 2, "malformed date '2026/04/01'"),
    "dates reversed": Row(
        {"--start": "2026-06-30", "--end": "2026-04-01"}, 2, "end date 2026-04-01 is before"
    ),
    "dates future only": Row({"--start": "2099-01-01", "--end": "2099-06-30"}, 2, "is in the future"),
    "dates within one month": Row({"--end": "2026-04-20"}, 2, "at least two periods"),
    "crs unknown EPSG": Row({"--crs": "EPSG:999999"}, 2, "unknown CRS 'EPSG:999999'"),
    "crs geographic": Row({"--crs": "EPSG:4326"}, 2, "not a projected CRS in metres"),
    "crs in feet": Row({"--crs": "EPSG:2263"}, 2, "has units US survey foot; the grid needs metres"),
    "crs gibberish": Row({"--crs": "utm please"}, 2, "unknown CRS 'utm please'"),
    "resolution zero": Row({"--resolution": "0"}, 2, "invalid resolution: Input should be greater than 0"),
    "resolution negative": Row(
        {"--resolution": "-10"}, 2, "invalid resolution: Input should be greater than 0"
    ),
    "resolution not the model's": Row({"--resolution": "20"}, 7, "trained at 10 m but the cube is at 20 m"),
    "model unknown": Row({"--model": "resnet-9000"}, 7, "unknown model 'resnet-9000'; known models:"),
    "change model is a land-cover model": Row(
        {"--model": "landcover-s2-unet"}, 7, "is a land-cover model, not a change-detection model"
    ),
    "semantic change model is a change model": Row(
        {"--semantic-change-model": "siamese-s2s1-change"},
        7,
        "is a change-detection model, not a semantic change model",
    ),
    "semantic change model without SAR": Row(
        {"--semantic-change-model": "siamese-s2s1-semantic", "--s1-collection": ""},
        7,
        "needs bands vv_db, vh_db",
    ),
    "crop model unknown": Row({"--crop-model": "tempcnn-x"}, 7, "unknown model 'tempcnn-x'; known models:"),
    "crop model is a change model": Row(
        {"--crop-model": "siamese-s2s1-change"}, 7, "is a change-detection model, not a crop-type model"
    ),
    "crop model without SAR": Row(
        {"--crop-model": "crop-type-ltae", "--s1-collection": ""}, 7, "needs bands vv_db, vh_db"
    ),
    "vhr change model is a change model": Row(
        {"--vhr-change-model": "siamese-s2s1-change", "--vhr-collection": "vhr-rgbn"},
        7,
        "is a change-detection model, not a VHR change model",
    ),
    "vhr change model without VHR": Row(
        {"--vhr-change-model": "siamese-vhr-change"}, 2, "needs a VHR collection to run on"
    ),
    "landcover model is a change model": Row(
        {"--landcover-model": "siamese-s2s1-change"}, 7, "is a change-detection model, not a land-cover model"
    ),
    "landcover model unknown": Row(
        {"--landcover-model": "worldcover-x"}, 7, "unknown model 'worldcover-x'; known models:"
    ),
    "vhr landcover model is a VHR change model": Row(
        {"--vhr-landcover-model": "siamese-vhr-change", "--vhr-collection": "vhr-rgbn"},
        7,
        "is a vhr-change-detection model, not a VHR land-cover model",
    ),
    "vhr landcover model unknown": Row(
        {"--vhr-landcover-model": "landcover-ai-x", "--vhr-collection": "vhr-rgbn"},
        7,
        "unknown model 'landcover-ai-x'; known models:",
    ),
    "url without scheme": Row({"--stac-url": "127.0.0.1:9/stac"}, 2, "must be an http:// or https:// URL"),
    "url ftp": Row({"--stac-url": "ftp://example.org/stac"}, 2, "must be an http:// or https:// URL"),
    "url credentials redacted": Row(
        {"--stac-url": "ftp://alice:s3cr3t@example.org/"}, 2, "STAC API URL 'ftp://***@example.org/'"
    ),
    "collection empty": Row({"--s2-collection": ""}, 2, "s2 collection id '' must be a non-empty id"),
    "collection with spaces": Row(
        {"--s2-collection": "sentinel 2"}, 2, "must be a non-empty id without spaces"
    ),
    "cloud cover over 100": Row({"--max-cloud-cover": "150"}, 2, "invalid max_cloud_cover"),
    "truth folder missing": Row(
        {"--truth": "/nonexistent/truth"}, 2, "truth folder /nonexistent/truth does not"
    ),
    "bounds reversed": Row(
        {"--crs": "EPSG:32631", "--bounds": "601000,5640000,600000,5641000"}, 2, "are empty or reversed"
    ),
    "geojson missing file": Row(
        {"--bbox": None, "--geojson": "/nonexistent/aoi.json"}, 2, "cannot read GeoJSON"
    ),
    "geojson self-intersecting": Row({"--bbox": None, "--geojson": BOWTIE}, 2, "Self-intersection"),
    "geojson a point": Row(
        {"--bbox": None, "--geojson": {"type": "Point", "coordinates": [4.4, 50.9]}}, 2, "got Point"
    ),
    "geojson not lon/lat": Row({"--bbox": None, "--geojson": UTM_SQUARE}, 2, "outside lon/lat EPSG:4326"),
    "geojson not JSON": Row({"--bbox": None, "--geojson": "{not json"}, 2, "cannot read GeoJSON"),
    "geojson and bbox": Row({"--geojson": SQUARE}, 2, "give exactly one AOI: bbox or geojson"),
    "no AOI": Row({"--bbox": None}, 2, "give exactly one AOI: bbox or geojson"),
    "stac url missing": Row({"--stac-url": None}, 2, "the following arguments are required: --stac-url"),
}


def _argv(override: dict[str, Any], tmp_path: Path) -> list[str]:
    args: dict[str, Any] = {**BASE_RUN, "--out": str(tmp_path / "out"), **override}
    argv = ["run"]
    for flag, value in args.items():
        if value is None:
            continue
        if isinstance(value, dict):  # a GeoJSON document: written to a file
            path = tmp_path / "aoi.geojson"
            path.write_text(json.dumps(value))
            value = str(path)
        elif flag == "--geojson" and value.startswith("{"):
            path = tmp_path / "aoi.geojson"
            path.write_text(value)
            value = str(path)
        argv.append(f"{flag}={value}")  # "--bbox=-10,..." (a value may start with "-")
    return argv


@pytest.mark.parametrize("case", list(CLI))
def test_cli(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eowatch.cli import main

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # no flow may start: it would fail here
    row = CLI[case]
    try:
        code = main(_argv(row.input, tmp_path))
    except SystemExit as exc:  # argparse rejects the command line itself
        code = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == row.expected, err
    assert err and "error: " in err[-1] and row.message in err[-1], err
    assert "s3cr3t" not in "\n".join(err)
    assert not (tmp_path / "out").exists()


# --- flow parameters: parse_params(**kwargs) ----------------------------------------------------------

PARAMS: dict[str, Row] = {
    "bbox infinite": Row({"bbox": (4.42, 50.9, float("inf"), 50.92)}, InputError, "must be finite, got inf"),
    "bbox latitude out of range": Row(
        {"bbox": (4.4, -95, 4.5, -94)}, InputError, "latitude -95.0 is outside"
    ),
    "bbox from a string": Row({"bbox": "4.45,50.9,4.42,50.92"}, InputError, "must be ordered minlon"),
    "bbox of 5 numbers": Row({"bbox": (4.4, 50.9, 4.5, 51.0, 1)}, InputError, "bbox must be 4 numbers"),
    "geojson a LineString": Row(
        {"bbox": None, "geojson": {"type": "LineString", "coordinates": [[4.4, 50.9], [4.5, 51]]}},
        InputError,
        "must be a Polygon or MultiPolygon",
    ),
    "geojson unknown type": Row(
        {"bbox": None, "geojson": {"type": "Blob", "coordinates": []}}, InputError, "not a GeoJSON geometry"
    ),
    "geojson empty collection": Row(
        {"bbox": None, "geojson": {"type": "FeatureCollection", "features": []}}, InputError, "no geometry"
    ),
    "geojson not an object": Row({"bbox": None, "geojson": [1, 2]}, InputError, "invalid geojson"),
    "start not a date": Row({"start": "2026-02-30"}, InputError, "invalid start"),
    "chunk too small": Row(
        {"chunk": 8}, InputError, "invalid chunk: Input should be greater than or equal to 16"
    ),
    "threshold out of (0, 1)": Row({"threshold": 1.5}, InputError, "invalid threshold"),
    "unknown parameter": Row({"colour": "red"}, InputError, "invalid colour: Extra inputs are not permitted"),
    "vhr collection empty": Row({"vhr_collection": ""}, InputError, "vhr collection id '' must be"),
    "asset store ftp": Row({"asset_stores": ("ftp://example.org/",)}, InputError, "must be a URL prefix"),
    "asset store with a token": Row(
        {"asset_stores": ("https://example.org/cogs?sig=s3cr3t",)},
        InputError,
        "must not carry a query string",
    ),
    "cloud cover negative": Row({"max_cloud_cover": -5}, InputError, "invalid max_cloud_cover"),
    "stac url blank": Row({"stac_url": "  "}, InputError, "must be an http:// or https:// URL"),
    "stac url without host": Row(
        {"stac_url": "https:///stac"}, InputError, "must be an http:// or https:// URL"
    ),
}


@pytest.mark.parametrize("case", list(PARAMS))
def test_params(case: str, tmp_path: Path) -> None:
    from eowatch.pipelines.params import parse_params

    row = PARAMS[case]
    with pytest.raises(row.expected) as info:  # type: ignore[call-overload]
        parse_params(**{**BASE_PARAMS, "out": str(tmp_path / "out"), **row.input})
    assert row.message in str(info.value) and "\n" not in str(info.value) and "s3cr3t" not in str(info.value)


# --- region files: load_regions, then Region.monitor_params ---------------------------------------------

REGION = {"name": "ghent-port", "stac_url": "https://example.com/stac", "bbox": [3.7, 51.0, 3.8, 51.1]}

REGIONS: dict[str, Row] = {
    "bbox NaN": Row({"bbox": [3.7, 51.0, float("nan"), 51.1]}, InputError, "bbox: bbox value must be finite"),
    "bbox zero area": Row(
        {"bbox": [3.7, 51.0, 3.7, 51.1]}, InputError, "bbox: bbox [3.7, 51.0, 3.7, 51.1] has zero"
    ),
    "geojson self-intersecting": Row(
        {"bbox": None, "geojson": BOWTIE}, InputError, "geojson: invalid GeoJSON"
    ),
    "geojson a point": Row(
        {"bbox": None, "geojson": {"type": "Point", "coordinates": [3.7, 51]}}, InputError, "got Point"
    ),
    "geojson not lon/lat": Row({"bbox": None, "geojson": UTM_SQUARE}, InputError, "outside lon/lat"),
    "crs geographic": Row({"crs": "EPSG:4326"}, InputError, "crs: CRS EPSG:4326 is not a projected CRS"),
    "crs unknown": Row({"crs": "EPSG:0"}, InputError, "crs: unknown CRS 'EPSG:0'"),
    "resolution zero": Row({"resolution": 0}, InputError, "resolution: Input should be greater than 0"),
    "collection empty": Row({"collections": {"s2": ""}}, InputError, "collections.s2: s2 collection id ''"),
    "asset store ftp": Row({"asset_stores": ["ftp://example.org/"]}, InputError, "asset_stores: asset store"),
    "stac url without scheme": Row({"stac_url": "example.com/stac"}, InputError, "must be an http(s) URL"),
    "model unknown (at planning)": Row({"model": "resnet-9000"}, ModelError, "unknown model 'resnet-9000'"),
    "resolution not the model's (at planning)": Row({"resolution": 30}, ModelError, "trained at 10 m"),
    "asset store variable unset (at planning)": Row(
        {"asset_stores": ["${EOWATCH_TEST_UNSET_STORE}"]},
        InputError,
        "asset_stores uses ${EOWATCH_TEST_UNSET_STORE}",
    ),
}


@pytest.mark.parametrize("case", list(REGIONS))
def test_region_file(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eowatch.pipelines.regions import load_regions

    monkeypatch.delenv("EOWATCH_TEST_UNSET_STORE", raising=False)
    row = REGIONS[case]
    region = {k: v for k, v in {**REGION, **row.input}.items() if v is not None}
    path = tmp_path / "regions.yaml"
    path.write_text(json.dumps({"regions": [region]}))  # JSON is YAML
    with pytest.raises(row.expected) as info:  # type: ignore[call-overload]
        load_regions(path)["ghent-port"].monitor_params(dt.date(2026, 4, 1), dt.date(2026, 6, 30), tmp_path)
    assert row.message in str(info.value) and "\n" not in str(info.value)
