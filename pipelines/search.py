"""Catalog-search stage: search a STAC API for a :class:`SearchRequest` and return plain item dicts.

A thin pystac-client call with a timeout, retries on transient HTTP failures, a check that the requested
collections exist, cloud-cover filtering pushed to the server only where its conformance allows it, and
a deterministic output order. The request itself (parsing, validation) lives in
:mod:`eowatch.pipelines.search_request` and is re-exported here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.stac_api_io import StacApiIO
from urllib3.util.retry import Retry

from eowatch.errors import CatalogError, EmptySearchError, InputError, redact, redact_logs
from eowatch.pipelines.search_request import Bbox, SearchRequest, check_lonlat_bbox, geometry_from_geojson

__all__ = [
    "Bbox",
    "CloudMode",
    "SearchRequest",
    "check_collections",
    "check_item",
    "check_lonlat_bbox",
    "cloud_mode",
    "geometry_from_geojson",
    "item_content",
    "item_sort_key",
    "open_catalog",
    "passes_cloud_cover",
    "redact",
    "retry_policy",
    "search_catalog",
    "search_parameters",
    "select_items",
]

log = logging.getLogger(__name__)

CloudMode = Literal["none", "filter", "client"]
"""How ``max_cloud_cover`` is applied: not at all, server-side CQL2 ``filter``, or client-side."""

_TRANSIENT_STATUS = (429, 500, 502, 503, 504)
_CLOUD = "eo:cloud_cover"


redact_logs()  # pystac-client and urllib3 print request URLs and headers at DEBUG


_READ_TIMEOUT = re.compile(r"read timeout=([0-9.]+)")


def _reason(err: BaseException) -> str:
    """One redacted line saying why a request failed: the HTTP status and body, or what went wrong on
    the connection (refused, timed out, dropped) instead of urllib3's nested exception reprs."""
    text = " ".join(str(err).split()) or type(err).__name__
    status = getattr(err, "status_code", None)
    retried = " after retries" if "Max retries exceeded" in text else ""
    if status is not None:
        text = f"HTTP {status}: {text}"
    elif timeout := _READ_TIMEOUT.search(text):
        text = f"timed out (no answer within {timeout.group(1)} s{retried})"
    elif "Connection refused" in text or "Failed to establish a new connection" in text:
        text = f"connection refused{retried}"
    elif "RemoteDisconnected" in text or "Connection aborted" in text or "Connection reset" in text:
        text = f"the server closed the connection without an answer{retried}"
    return redact(text)[:300]


def retry_policy(retries: int, backoff_s: float = 0.5) -> Retry:
    """urllib3 retries for transient failures: connect/read errors and HTTP 429/5xx, POST included.

    Searches are idempotent, so retrying POST is safe. Waits ``backoff_s * 2**(n-1)`` between tries
    (capped at 10 s) and honours ``Retry-After``; after the last try the error response is returned and
    reported as a :class:`CatalogError`.
    """
    return Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff_s,
        backoff_max=10.0,
        status_forcelist=_TRANSIENT_STATUS,
        allowed_methods=None,
        raise_on_status=False,
        respect_retry_after_header=True,
    )


def open_catalog(api_url: str, timeout_s: float = 30, retries: int = 3) -> Client:
    """Open a STAC API with a timeout and retries.

    Raises:
        CatalogError: unreachable, timed out, or not a STAC API (the URL is redacted in the message).
    """
    io = StacApiIO(timeout=timeout_s, max_retries=retry_policy(retries) if retries > 0 else None)
    try:
        # The timeout goes to open() too: it re-applies its own ``timeout`` (None: wait forever) to stac_io.
        return Client.open(api_url, stac_io=io, timeout=timeout_s)
    except Exception as err:
        raise CatalogError(f"cannot open STAC API at {redact(api_url)}: {_reason(err)}") from None


def check_collections(client: Client, api_url: str, wanted: Iterable[str]) -> None:
    """Raise :class:`InputError` listing the available ids when a wanted collection is not served."""
    try:
        available = sorted(c.id for c in client.get_collections())
    except Exception as err:
        raise CatalogError(f"cannot list collections of {redact(api_url)}: {_reason(err)}") from None
    missing = [c for c in wanted if c not in available]
    if missing:
        shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
        raise InputError(
            f"unknown collection(s) {', '.join(missing)} at {redact(api_url)}; available: {shown or 'none'}"
        )


def cloud_mode(client: Client, request: SearchRequest) -> CloudMode:
    """Where ``max_cloud_cover`` is applied: server-side CQL2 ``filter`` only if the API conforms to it.

    The ``query`` extension is not used even where declared: it cannot keep items that lack
    ``eo:cloud_cover`` (e.g. Sentinel-1 beside Sentinel-2), so those would silently disappear. Servers
    without ``filter`` (rustac's memory backend is one) return 0 items for it without an error, so
    conformance decides, never trial and error.
    """
    if request.max_cloud_cover is None:
        return "none"
    return "filter" if client.conforms_to(ConformanceClasses.FILTER) else "client"


def search_parameters(request: SearchRequest, mode: CloudMode) -> dict[str, Any]:
    """Keyword arguments for ``Client.search`` (pure)."""
    params: dict[str, Any] = {
        "collections": list(request.collections),
        "datetime": request.datetime_range,
        "limit": request.page_size,
    }
    if request.bbox is not None:
        params["bbox"] = list(request.bbox)
    else:
        params["intersects"] = request.intersects
    if mode == "filter":
        prop = {"property": _CLOUD}
        params["filter_lang"] = "cql2-json"
        params["filter"] = {
            "op": "or",
            "args": [
                {"op": "<=", "args": [prop, request.max_cloud_cover]},
                {"op": "isNull", "args": [prop]},
            ],
        }
    if mode != "client" and request.max_items is not None:
        params["max_items"] = request.max_items
    return params


def passes_cloud_cover(item: Mapping[str, Any], max_cloud_cover: float | None) -> bool:
    """True if the item has no ``eo:cloud_cover`` or it is ≤ ``max_cloud_cover`` (percent).

    Raises:
        CatalogError: the item's ``eo:cloud_cover`` is not a number.
    """
    if max_cloud_cover is None:
        return True
    cover = (item.get("properties") or {}).get(_CLOUD)
    if cover is None:
        return True
    try:
        return float(cover) <= max_cloud_cover
    except (TypeError, ValueError):
        raise CatalogError(f"item {item.get('id')!r} has a non-numeric {_CLOUD} {cover!r}") from None


def check_item(item: Mapping[str, Any]) -> None:
    """Raise :class:`CatalogError` naming an item that lacks what a cube needs from it.

    An item needs an ``id``, a ``collection``, a footprint ``geometry``, an acquisition time
    (``datetime``, or ``start_datetime`` for a range) in ISO 8601, and ``assets``. Projection metadata
    (``proj:*``) is optional: odc-stac reads the grid from the file when it is missing.
    """
    from datetime import datetime

    name = f"STAC item {item.get('id')!r}" if isinstance(item, Mapping) else "a STAC item"
    if not isinstance(item, Mapping) or not item.get("id") or not item.get("collection"):
        raise CatalogError(f"{name} lacks an 'id' or a 'collection'")
    if not isinstance(item.get("geometry"), Mapping) or not item["geometry"].get("coordinates"):
        raise CatalogError(f"{name} of {item['collection']!r} has no footprint geometry")
    props = item.get("properties") if isinstance(item.get("properties"), Mapping) else {}
    when = props.get("datetime") or props.get("start_datetime")
    try:
        datetime.fromisoformat(str(when))
    except ValueError:
        raise CatalogError(f"{name} of {item['collection']!r} has no valid datetime ({when!r})") from None
    if not isinstance(item.get("assets"), Mapping) or not item["assets"]:
        raise CatalogError(f"{name} of {item['collection']!r} has no assets")


#: Asset fields that say where an asset is served from, not what it holds (re-signed URLs, mirrors).
_ASSET_LOCATION_FIELDS = frozenset({"href", "alternate"})


def item_content(item: Mapping[str, Any]) -> dict[str, Any]:
    """What an item says about its data, without where the data is served from: id, collection,
    geometry, properties (``datetime``, ``updated``, processing baseline, ...) and each asset's fields
    except ``href``/``alternate`` (so ``file:checksum``, ``file:size``, bands, roles stay). Two searches
    returning equal contents for an id point at the same data, wherever it is served."""
    return {
        "id": item.get("id"),
        "collection": item.get("collection"),
        "geometry": item.get("geometry"),
        "properties": item.get("properties"),
        "assets": {
            key: {k: v for k, v in asset.items() if k not in _ASSET_LOCATION_FIELDS}
            for key, asset in (item.get("assets") or {}).items()
            if isinstance(asset, Mapping)
        },
    }


def item_tokens(items: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Item id -> token of its ``item_content``: equal tokens, same data."""
    from eowatch.pipelines.spec import stable_token

    return {str(d["id"]): stable_token(item_content(d)) for d in items}


def items_token(items: Iterable[Mapping[str, Any]]) -> str:
    """One token of search results, ids and content (``item_tokens``), in no particular order."""
    from eowatch.pipelines.spec import stable_token

    return stable_token(sorted(item_tokens(items).items()))


def item_sort_key(item: Mapping[str, Any]) -> tuple[str, str, str]:
    """Deterministic order: collection, acquisition time (ISO string), id."""
    props = item.get("properties", {})
    when = props.get("datetime") or props.get("start_datetime") or ""
    return (str(item.get("collection", "")), str(when), str(item.get("id", "")))


def select_items(items: Iterable[dict[str, Any]], request: SearchRequest) -> list[dict[str, Any]]:
    """Drop duplicates and items over the cloud limit, stop at ``max_items``, sort (pure)."""
    seen: set[tuple[str, str]] = set()
    kept: list[dict[str, Any]] = []
    for item in items:
        key = (str(item.get("collection")), str(item.get("id")))
        if key in seen or not passes_cloud_cover(item, request.max_cloud_cover):
            continue
        seen.add(key)
        kept.append(item)
        if request.max_items is not None and len(kept) >= request.max_items:
            break
    return sorted(kept, key=item_sort_key)


def search_catalog(
    api_url: str, request: SearchRequest, timeout_s: float = 30, retries: int = 3
) -> list[dict[str, Any]]:
    """Search a STAC API and return plain item dicts, sorted by (collection, datetime, id).

    Args:
        api_url: Root URL of the STAC API.
        request: The validated request.
        timeout_s: Per-request timeout in seconds.
        retries: Retries per request on connection errors, timeouts, HTTP 429 and 5xx (with backoff).

    Raises:
        CatalogError: the API is unreachable, times out, is not a STAC API or answers with an error.
        InputError: a requested collection is not served (the message lists those that are).
        EmptySearchError: nothing matched.
    """
    client = open_catalog(api_url, timeout_s, retries)
    check_collections(client, api_url, request.collections)
    mode = cloud_mode(client, request)
    if mode != "none":
        where = "server-side (CQL2 filter)" if mode == "filter" else "client-side (API lacks CQL2 filter)"
        log.info("max cloud cover %.1f%% applied %s", request.max_cloud_cover, where)
    try:
        search = client.search(**search_parameters(request, mode))
        # Re-checking cloud cover after a server-side filter is cheap and guards against lax servers.
        items = select_items(search.items_as_dicts(), request)
    except Exception as err:
        raise CatalogError(f"search failed at {redact(api_url)}: {_reason(err)}") from None
    if not items:
        cloud = (
            f" with cloud cover <= {request.max_cloud_cover}%" if request.max_cloud_cover is not None else ""
        )
        raise EmptySearchError(
            f"no items in {', '.join(request.collections)} for bbox {[round(v, 6) for v in request.bounds]} "
            f"between {request.start} and {request.end}{cloud}; widen the area, dates or cloud limit"
        )
    log.info("found %d items in %s (%s)", len(items), ", ".join(request.collections), request.datetime_range)
    return items
