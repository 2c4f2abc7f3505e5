"""StacApiServer: rustac serve on loopback, start-up failures, clean shutdown, retries in search."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from eowatch.errors import CatalogError, InputError, ServiceError
from eowatch.infra.services import StacApiServer, StacServerConfig, minimal_collection
from eowatch.pipelines.search import open_catalog

pytestmark = pytest.mark.services


def _item(iid: str, collection: str = "demo", cloud: float | None = 10.0) -> dict[str, Any]:
    props: dict[str, Any] = {"datetime": "2026-03-02T10:00:00Z"}
    if cloud is not None:
        props["eo:cloud_cover"] = cloud
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        "bbox": [0, 0, 1, 1],
        "properties": props,
        "assets": {},
        "links": [{"rel": "root", "href": "https://example.com/stac"}],
    }


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serves_items_and_stops_cleanly() -> None:
    items = [_item(f"i{n:02d}") for n in range(25)]
    with StacApiServer(items) as server:
        pid = server.pid
        assert pid is not None and server.startup_s is not None and server.startup_s < 10
        conformance = httpx.get(f"{server.url}/conformance").json()["conformsTo"]
        assert any(c.endswith("/item-search") for c in conformance)
        # rustac implements neither the query extension nor CQL2 filter.
        assert not any("#query" in c or "#filter" in c for c in conformance)
        page = httpx.get(f"{server.url}/search").json()
        assert len(page["features"]) == 10  # rustac's default page size
        collection = httpx.get(f"{server.url}/collections/demo").json()
        assert collection["extent"]["spatial"]["bbox"] == [[0, 0, 1, 1]]
    assert not _group_alive(pid)
    with pytest.raises(ServiceError, match="not running"):
        _ = server.url


def test_stops_on_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"), StacApiServer([_item("a")]) as server:
        pid = server.pid
        raise RuntimeError("boom")
    assert not _group_alive(pid)


def test_port_in_use_reports_log_tail() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = StacServerConfig(port=port, startup_timeout_s=10)
        with pytest.raises(ServiceError, match="rustac serve exited with code"):
            StacApiServer([_item("a")], config=config).start()


def test_missing_executable() -> None:
    with pytest.raises(ServiceError, match="not found"):
        StacApiServer([_item("a")], config=StacServerConfig(executable="no-such-rustac")).start()


def test_items_need_a_collection() -> None:
    bad = _item("a")
    del bad["collection"]
    with pytest.raises(InputError, match="lacks an 'id' or 'collection'"):
        StacApiServer([bad]).start()


def test_minimal_collection_extent() -> None:
    col = minimal_collection("x", [_item("a"), {**_item("b"), "bbox": [-5, -6, 0.5, 0.5]}])
    assert col["extent"]["spatial"]["bbox"] == [[-5, -6, 1, 1]]
    assert col["extent"]["temporal"]["interval"] == [["2026-03-02T10:00:00Z", "2026-03-02T10:00:00Z"]]


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests, then a minimal STAC landing page; 404 elsewhere."""

    fail = 2
    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        if self.path.startswith("/html"):
            body, status, ctype = b"<html>not stac</html>", 200, "text/html"
        elif type(self).calls <= self.fail:
            body, status, ctype = b"busy", 503, "text/plain"
        else:
            landing = {"type": "Catalog", "id": "x", "description": "x", "stac_version": "1.0.0", "links": []}
            body, status, ctype = json.dumps(landing).encode(), 200, "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_url() -> Iterator[str]:
    _Flaky.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.filterwarnings("ignore::pystac_client.warnings.NoConformsTo")
def test_transient_errors_are_retried(flaky_url: str) -> None:
    client = open_catalog(flaky_url, timeout_s=5, retries=3)
    assert client.id == "x"
    assert _Flaky.calls == 3


def test_persistent_errors_and_non_stac(flaky_url: str) -> None:
    with pytest.raises(CatalogError, match="cannot open STAC API"):
        open_catalog(flaky_url, timeout_s=5, retries=0)
    with pytest.raises(CatalogError, match="cannot open STAC API"):
        open_catalog(f"{flaky_url}/html", timeout_s=5, retries=0)
