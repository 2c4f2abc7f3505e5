"""Security: asset hrefs outside the run's stores are refused before any read, region names cannot climb
out of the output root, weights never unpickle, and secrets in URLs never reach logs, artifacts,
exception messages, the summary or Zarr attributes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from eowatch.errors import AssetError, InputError, ModelError, RefusedAssetError
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.reader import StacRegionReader, check_asset_href, normalize_store
from tests.reliability.conftest import ONE_CHUNK_BOUNDS, THREADS, assert_nothing_complete, run_params

REPO = Path(__file__).resolve().parents[2]
STORE = "http://127.0.0.1:8081/archive/"

# --- asset stores ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "stores", "why"),
    [
        ("file:///etc/passwd", (), "is a local file"),
        ("/etc/passwd", (), "is a local file"),
        ("red.tif", (), "is relative"),
        ("./assets/red.tif", (STORE,), "is relative"),
        ("ftp://example.org/red.tif", (), "is a ftp:// URL"),
        ("/vsizip//tmp/x.zip/red.tif", (), "is a local file"),
        ("https://example.org/a/../../etc/passwd", (), "'..' path segments"),
        ("https://example.org/a/%2e%2e/%2E%2E/etc/passwd", (), "'..' path segments"),
        ("http://127.0.0.1:8081/archive/../secret/red.tif", (STORE,), "'..' path segments"),
        ("http://127.0.0.1:8081/other/red.tif", (STORE,), "outside the allowed asset stores"),
        ("http://127.0.0.1:8082/archive/red.tif", (STORE,), "outside the allowed asset stores"),
        ("http://127.0.0.1:8081.evil.org/archive/red.tif", (STORE,), "outside the allowed asset stores"),
        ("https://127.0.0.1:8081/archive/red.tif", (STORE,), "outside the allowed asset stores"),
        ("s3://bucket/archive/red.tif", (STORE,), "outside the allowed asset stores"),
        ("file:///etc/passwd", ("file:///srv/archive/",), "outside the allowed asset stores"),
    ],
)
def test_hrefs_outside_the_stores_are_refused(href: str, stores: tuple[str, ...], why: str) -> None:
    with pytest.raises(RefusedAssetError, match=re.escape(why)):
        check_asset_href(href, tuple(normalize_store(s) for s in stores))


@pytest.mark.parametrize(
    ("href", "stores"),
    [
        ("https://example.org/cogs/red.tif", ()),
        ("s3://bucket/cogs/red.tif", ()),
        ("http://127.0.0.1:8081/archive/S2/red.tif?token=x", (STORE,)),
        ("HTTP://127.0.0.1:8081/archive/S2/red.tif", (STORE,)),
    ],
)
def test_hrefs_inside_the_stores_pass(href: str, stores: tuple[str, ...]) -> None:
    check_asset_href(href, tuple(normalize_store(s) for s in stores))


def test_local_files_pass_only_under_a_file_store(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "red.tif").touch()
    (tmp_path / "archive" / "escape.tif").symlink_to("/etc/passwd")
    store = normalize_store((tmp_path / "archive").as_uri())
    check_asset_href(str(tmp_path / "archive" / "red.tif"), (store,))
    check_asset_href((tmp_path / "archive" / "red.tif").as_uri(), (store,))
    with pytest.raises(RefusedAssetError, match="outside the allowed asset stores"):  # symlinks resolved
        check_asset_href(str(tmp_path / "archive" / "escape.tif"), (store,))


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("ftp://example.org/", "must be a URL prefix with one of the schemes"),
        ("example.org/cogs", "must be a URL prefix with one of the schemes"),
        ("https:///cogs", "has no host or bucket"),
        ("https://example.org/cogs/../x", "'..' path segments"),
        ("https://example.org/cogs?sig=abc", "must not carry a query string"),
    ],
)
def test_bad_asset_stores_are_input_errors(store: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as info:
        normalize_store(store)
    assert "abc" not in str(info.value)


def test_store_prefix_matches_whole_path_segments() -> None:
    assert normalize_store("HTTP://Example.org:8000") == "http://example.org:8000/"
    assert normalize_store("s3://bucket/cogs") == "s3://bucket/cogs/"
    with pytest.raises(RefusedAssetError):
        check_asset_href("s3://bucket/cogs-private/red.tif", (normalize_store("s3://bucket/cogs"),))


def test_reader_refuses_before_any_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import odc.stac

    def no_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("a refused href was read")

    monkeypatch.setattr(odc.stac, "load", no_read)
    item = {"id": "x", "collection": "c", "assets": {"red": {"href": "file:///etc/passwd"}}}
    grid = GridSpec("EPSG:32631", 10.0, ONE_CHUNK_BOUNDS, 128)
    reader = StacRegionReader(asset_stores=(STORE,))
    with pytest.raises(RefusedAssetError, match="refused asset href file:///etc/passwd"):
        reader.load([item], ["red"], grid.chunk_geobox(ChunkKey(0, 0)), "uint16", {"*": "nearest"})


@pytest.mark.services
def test_a_run_refuses_an_item_pointing_outside_its_store(
    small_archive: Path, prefect_server: Any, tmp_path: Path
) -> None:
    """One catalog item's red band points at a local file: the run stops at the search, writes nothing."""
    from eowatch.archive import load_collections, load_items, load_manifest
    from eowatch.infra.services import AssetServer, StacApiServer
    from flows import monitor

    with AssetServer(small_archive) as assets:
        items = load_items(small_archive, assets.url)
        evil = next(d for d in items if d["collection"] == "sentinel-2-l2a")
        evil["assets"]["red"]["href"] = "file:///etc/passwd"
        with StacApiServer(items, load_collections(small_archive)) as stac:
            served = _Served(stac.url, assets.url, load_manifest(small_archive))
            out = tmp_path / "out"
            with pytest.raises(
                RefusedAssetError, match=r"refused asset href file:///etc/passwd: it is outside"
            ):
                monitor(run_params(served, out, bounds=ONE_CHUNK_BOUNDS), THREADS)
    assert_nothing_complete(out)
    assert not list(out.glob(".eowatch/*/items.json"))  # refused before the search result was recorded


# --- region names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../x", "..", "a/../../etc", "/abs", "a/b", "x\\..\\y", "demo\n", ".hidden", ""]
)
def test_region_names_cannot_traverse(name: str, tmp_path: Path) -> None:
    from eowatch.pipelines.regions import load_regions

    path = tmp_path / "regions.yaml"
    path.write_text(
        json.dumps({"regions": [{"name": name, "stac_url": "https://x", "bbox": [3, 51, 4, 52]}]})
    )
    with pytest.raises(InputError, match="must be a lowercase slug"):
        load_regions(path)


# --- weights -----------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls ``os.system``: what a malicious "weights" file does."""

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, ("touch /tmp/eowatch-pwned",))


def test_a_pickle_posing_as_safetensors_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from eowatch.models import DEFAULT_BANDS, SiameseChangeNet, load_model, save_model
    from eowatch.models.weights import sha256_file
    from tests.models.conftest import make_card

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights were unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    module = SiameseChangeNet(len(DEFAULT_BANDS) + 1, width=4, depth=1)
    card = save_model(module, make_card(module), tmp_path)
    weights = tmp_path / card.weights_file
    weights.write_bytes(pickle.dumps({"state": _Payload()}))  # a torch.save-style pickle
    card_file = tmp_path / f"{card.name}.card.json"
    card_file.write_text(replace(card, weights_sha256=sha256_file(weights)).to_json())  # checksum matches
    with pytest.raises(ModelError, match=r"cannot read .*\.safetensors"):
        load_model(card_file)
    assert not Path("/tmp/eowatch-pwned").exists()


def test_no_code_path_unpickles() -> None:
    """No production module calls torch.load, pickle.load(s), numpy's allow_pickle or joblib.load."""
    pattern = re.compile(r"torch\.load\(|pickle\.loads?\(|allow_pickle\s*=\s*True|joblib\.load\(|dill\.load")
    sources = [REPO / "flows.py"]
    for folder in ("eowatch", "models", "pipelines", "operators", "infra", "benchmarks"):
        sources += (REPO / folder).rglob("*.py")
    offenders = [
        f"{p.relative_to(REPO)}:{n}"
        for p in sources
        if ".cache" not in p.parts
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


# --- secrets -----------------------------------------------------------------------------------------

SECRETS = ("s3cr3t-pass", "s3cr3t-query", "s3cr3t-asset")
BASIC = base64.b64encode(b"alice:s3cr3t-pass").decode()  # what requests sends for userinfo


@dataclass(frozen=True)
class _Served:
    stac_url: str
    asset_url: str
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def secret_archive(small_archive: Path) -> Iterator[_Served]:
    """The small archive behind a STAC URL with credentials and a token, its hrefs signed with a token."""
    from eowatch.archive import load_collections, load_items, load_manifest
    from eowatch.infra.services import AssetServer, StacApiServer

    with AssetServer(small_archive) as assets:
        items = copy.deepcopy(load_items(small_archive, assets.url))
        for item in items:
            for asset in item["assets"].values():
                asset["href"] += "?token=s3cr3t-asset&se=2030-01-01"
        with StacApiServer(items, load_collections(small_archive)) as stac:
            url = stac.url.replace("http://", "http://alice:s3cr3t-pass@") + "/?token=s3cr3t-query"
            yield _Served(url, assets.url, load_manifest(small_archive))


class _Capture(logging.Handler):
    """Every record, formatted with its arguments, from every logger (even those that do not propagate)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("uvicorn"):
            self.lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")


@contextlib.contextmanager
def _all_logs_at_debug() -> Iterator[_Capture]:
    """Capture every logger of the process at DEBUG, except uvicorn's: that is the test's own asset
    server, on the far side of the connection, logging the URLs it was sent (as any server does)."""
    capture = _Capture()
    quiet = [
        name
        for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and not lg.propagate and not name.startswith("uvicorn")
    ]
    loggers = [logging.getLogger(n) for n in dict.fromkeys(["", "prefect", *quiet])]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(capture)
            lg.setLevel(level)


def _leaks(text: str) -> list[str]:
    return [s for s in (*SECRETS, BASIC) if s in text]


def _prefect_texts(flow_run_id: Any) -> dict[str, str]:
    """Logs and artifacts of a flow run (and its task runs) as the Prefect server stores them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    async def query() -> dict[str, str]:
        async with get_client() as client:
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            artifacts = await client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            run = await client.read_flow_run(flow_run_id)
            return {
                "parameters": json.dumps(run.parameters, default=str),
                "logs": "\n".join(log.message for log in logs),
                "artifacts": "\n".join(str(a.data) for a in artifacts),
            }

    return asyncio.run(query())


@pytest.mark.services
def test_secrets_never_leave_the_process(
    secret_archive: _Served, prefect_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flows import monitor

    out = tmp_path / "out"
    params = run_params(secret_archive, out, bounds=ONE_CHUNK_BOUNDS)
    caplog.set_level("DEBUG")
    with _all_logs_at_debug() as logs:
        state = monitor(params, THREADS, return_state=True)
    assert state.is_completed(), state
    text = "\n".join(logs.lines) + caplog.text
    assert "pystac_client.stac_api_io GET http://" in text  # the debug log of every request is there
    assert not _leaks(text), [line for line in logs.lines if _leaks(line)][:5]
    files = {str(p.relative_to(out)): p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file()}
    assert "summary.json" in files and "change.zarr/zarr.json" in files
    assert "s3cr3t" not in "".join(files.values())
    attrs = json.loads(files["change.zarr/zarr.json"])["attributes"]
    assert json.loads(attrs["parameters"])["stac_url"].startswith("http://***@127.0.0.1:")
    prefect = _prefect_texts(state.state_details.flow_run_id)
    assert "found" in prefect["logs"] or "items" in prefect["logs"]
    assert not _leaks(prefect["logs"]) and not _leaks(prefect["artifacts"])
    assert not _leaks(prefect["parameters"]), prefect["parameters"]


@pytest.mark.services
def test_secrets_stay_out_of_error_messages(secret_archive: _Served, small_archive: Path) -> None:
    from eowatch.archive import load_items
    from eowatch.pipelines.search import SearchRequest, search_catalog

    request = SearchRequest.parse("nope", bbox="4,50,5,51", dates="2026-04-01/2026-05-01")
    with pytest.raises(InputError, match=r"unknown collection\(s\) nope at http://\*\*\*@127") as info:
        search_catalog(secret_archive.stac_url, request)
    assert not _leaks(str(info.value))

    item = next(
        d
        for d in load_items(small_archive, secret_archive.asset_url)
        if d["id"] == "S2A_31UES_20260401_0_L2A"
    )
    item["assets"]["red"]["href"] = f"{secret_archive.asset_url}/assets/missing.tif?token=s3cr3t-asset"
    grid = GridSpec("EPSG:32631", 10.0, ONE_CHUNK_BOUNDS, 128)
    with pytest.raises(AssetError) as read_error:
        StacRegionReader().load(
            [item], ["red"], grid.chunk_geobox(ChunkKey(0, 0)), "uint16", {"*": "nearest"}
        )
    assert "missing.tif?token=***" in str(read_error.value) and not _leaks(str(read_error.value))
