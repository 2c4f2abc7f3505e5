"""A real STAC API on loopback: ``rustac serve`` over items and collections written to a temp dir.

rustac's in-memory backend implements STAC API core, collections, features and item-search (GET and POST,
``bbox``/``intersects``/``datetime``/``collections``/``ids``/``limit`` with ``next`` links), but neither the
``query`` extension nor CQL2 ``filter``: a search that uses them returns 0 items without an error. Its
conformance list says so, and :func:`eowatch.pipelines.search.search_catalog` reads it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eowatch.errors import InputError, ServiceError
from eowatch.infra._proc import ManagedService, ServiceProcess, find_executable
from eowatch.infra.ports import DEFAULT_HOST, free_port

log = logging.getLogger(__name__)

_ITEMS_FILE = "items.ndjson"


@dataclass(frozen=True)
class StacServerConfig:
    """How to run the local STAC API."""

    host: str = DEFAULT_HOST
    """Loopback interface to bind."""
    port: int | None = None
    """TCP port; None picks a free one."""
    startup_timeout_s: float = 30.0
    """Seconds to wait for ``/`` and ``/conformance`` to answer."""
    strip_links: bool = True
    """Drop the items' and collections' own ``links`` (they point at the live catalog they came from)."""
    executable: str = "rustac"
    """Name of the rustac CLI, looked up beside ``sys.executable`` first, then on PATH."""
    start_attempts: int = 3
    """Attempts with a fresh free port when the chosen one was taken in between."""

    def __post_init__(self) -> None:
        if self.startup_timeout_s <= 0:
            raise ValueError("startup_timeout_s must be > 0")
        if self.start_attempts < 1:
            raise ValueError("start_attempts must be >= 1")


def minimal_collection(collection_id: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A minimal valid STAC Collection whose extent covers ``items`` (lon/lat EPSG:4326, UTC).

    Args:
        collection_id: Collection id.
        items: STAC item dicts of that collection (may be empty: then the extent is the whole world).
    """
    boxes = [item["bbox"] for item in items if item.get("bbox")]
    bbox = (
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[-2] for b in boxes),
            max(b[-1] for b in boxes),
        ]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    times = sorted(t for item in items if (t := _item_time(item)))
    interval = [times[0], times[-1]] if times else [None, None]
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": f"Collection {collection_id} synthesized from {len(items)} items for a local STAC API",
        "license": "other",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
        "links": [],
    }


def _item_time(item: Mapping[str, Any]) -> str | None:
    props = item.get("properties", {})
    return props.get("datetime") or props.get("start_datetime")


def write_catalog_files(
    root: Path,
    items: Iterable[Mapping[str, Any]],
    collections: Iterable[Mapping[str, Any]] = (),
    strip_links: bool = True,
) -> list[Path]:
    """Write one JSON file per collection and one ndjson file of items; return them in load order.

    Collections missing from ``collections`` but referenced by items are synthesized with
    :func:`minimal_collection` so that the served collection metadata is always ours, never guessed.

    Raises:
        InputError: an item has no ``collection`` or no ``id``, or a collection has no ``id``.
    """
    items = [dict(item) for item in items]
    given = {}
    for col in collections:
        if "id" not in col:
            raise InputError("a collection given to the STAC server has no 'id'")
        given[col["id"]] = dict(col)
    by_collection: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if not item.get("id") or not item.get("collection"):
            raise InputError(f"STAC item {item.get('id', '<no id>')!r} lacks an 'id' or 'collection'")
        by_collection.setdefault(item["collection"], []).append(item)
    for cid, members in by_collection.items():
        given.setdefault(cid, minimal_collection(cid, members))
    paths = []
    # Collections first: rustac invents a collection for items whose collection it has not seen yet.
    for n, col in enumerate(given.values()):
        if strip_links:
            col["links"] = []
        path = root / f"collection-{n:03d}.json"
        path.write_text(json.dumps(col))
        paths.append(path)
    if items:
        path = root / _ITEMS_FILE
        with path.open("w") as fh:
            for item in items:
                if strip_links:
                    item["links"] = []
                fh.write(json.dumps(item) + "\n")
        paths.append(path)
    return paths


class StacApiServer(ManagedService):
    """Context manager serving STAC item and collection dicts through ``rustac serve`` on loopback.

    Example:
        >>> with StacApiServer(items, collections) as stac:  # doctest: +SKIP
        ...     Client.open(stac.url).search(bbox=..., datetime=...)
    """

    def __init__(
        self,
        items: Iterable[Mapping[str, Any]],
        collections: Iterable[Mapping[str, Any]] = (),
        config: StacServerConfig | None = None,
    ) -> None:
        """Prepare the server; nothing starts until ``__enter__``.

        Args:
            items: STAC item dicts; each needs ``id`` and ``collection``.
            collections: STAC collection dicts; missing ones are synthesized from their items.
            config: Server settings.
        """
        self._items = list(items)
        self._collections = list(collections)
        self.config = config or StacServerConfig()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: ServiceProcess | None = None
        self._url: str | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        """Root URL of the STAC API, e.g. ``http://127.0.0.1:40123``, without a trailing slash."""
        if self._url is None:
            raise ServiceError("StacApiServer is not running; use it as a context manager")
        return self._url

    def start(self) -> None:
        """Write the catalog files and start rustac; returns once the API answers."""
        cfg = self.config
        exe = find_executable(cfg.executable)
        self._tmp = tempfile.TemporaryDirectory(prefix="eowatch-stac-")
        root = Path(self._tmp.name)
        try:
            files = write_catalog_files(root, self._items, self._collections, cfg.strip_links)
            t0 = time.monotonic()
            for attempt in range(cfg.start_attempts):
                port = cfg.port or free_port(cfg.host)
                url = f"http://{cfg.host}:{port}"
                argv = [exe, "serve", "--addr", f"{cfg.host}:{port}", *map(str, files)]
                self._process = ServiceProcess("rustac serve", argv, root / f"rustac-{attempt}.log")
                try:
                    self._process.wait_http([f"{url}/", f"{url}/conformance"], cfg.startup_timeout_s)
                except ServiceError:
                    in_use = "in use" in self._process.tail().lower()
                    self._process.stop()
                    if in_use and cfg.port is None and attempt + 1 < cfg.start_attempts:
                        continue
                    raise
                break
            self._url = url
            self.startup_s = time.monotonic() - t0
            log.info(
                "STAC API (rustac) at %s with %d items, ready in %.2f s",
                url,
                len(self._items),
                self.startup_s,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop rustac and delete the temp dir; safe to call twice."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._url = None
