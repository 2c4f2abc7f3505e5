"""Reading STAC assets for one chunk of the target grid (odc-stac, GeoBox-first).

The reader is a small picklable object that travels to Dask workers with its GDAL settings and the run's
allowed asset stores, instead of relying on module-level environment state (odc-stac's
``capture_env``/``restore_env`` idea).

Failures are bounded and loud: GDAL retries HTTP 429/5xx, timeouts and dropped connections while reading
(``GDAL_HTTP_MAX_RETRY`` times, the delay growing from ``GDAL_HTTP_RETRY_DELAY`` by about 2.4 each time,
jittered: 0.5, 1.2, 2.9, 6.2 s); a connection-level failure while opening a file, which GDAL does not
retry, is retried here (``attempts`` reads in all). After any failure GDAL's
``/vsicurl/`` cache is cleared, because it remembers a failed URL as missing for the life of the process
and a retry (here or a Dask task retry) would otherwise fail at once. A read that still fails raises
:class:`~eowatch.errors.AssetError` naming the asset; it never returns fill values for data it could not
read. Hrefs outside the allowed stores are refused before anything is read.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import odc.stac
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from shapely.geometry import box, shape

from eowatch.errors import AssetError, InputError, RefusedAssetError, redact, redact_logs
from eowatch.pipelines.phases import phase

__all__ = [
    "DEFAULT_GDAL_ENV",
    "STORE_SCHEMES",
    "StacRegionReader",
    "check_asset_href",
    "check_asset_hrefs",
    "clear_vsicurl_cache",
    "items_intersecting",
    "normalize_store",
    "redact",
    "solar_days",
    "to_pystac",
]

log = logging.getLogger(__name__)
redact_logs()  # odc-stac and rasterio log the URL of a failed read

#: GDAL settings for reading COGs over HTTP(S)/S3 the cloud-native way.
DEFAULT_GDAL_ENV: dict[str, str | int] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    # Bounded retries of transient HTTP failures, with a doubling delay (0.5, 1, 2, 4 s).
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
    # Seconds: to connect, for a whole request, and a stall (< 1 byte/s for 10 s) counts as a timeout.
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_LOW_SPEED_TIME": "10",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    "VSI_CACHE": "TRUE",
    "GDAL_CACHEMAX": 256,
}

#: URL schemes an asset store (``--asset-store`` prefix) may have.
STORE_SCHEMES: tuple[str, ...] = ("http", "https", "s3", "gs", "az", "file")
#: Schemes an asset href may have when no store is configured (local files are refused then).
_DEFAULT_SCHEMES = ("http", "https", "s3")
#: Connection-level failures, which GDAL retries while reading blocks but not while opening a file.
_TRANSIENT = re.compile(
    r"(?i)empty reply|connection (was )?reset|couldn't connect|connection refused|recv failure|send failure"
)


def normalize_store(prefix: str) -> str:
    """Validate an asset-store URL prefix and return it in canonical form (lower-case scheme and host,
    a trailing ``/``, so ``http://host:8000`` never matches ``http://host:8000.evil.org/``).

    Raises:
        InputError: not a URL of a supported scheme, no host (bucket), or ``..`` in its path.
    """
    text = str(prefix).strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in STORE_SCHEMES:
        raise InputError(
            f"asset store {redact(text)!r} must be a URL prefix with one of the schemes "
            f"{', '.join(s + '://' for s in STORE_SCHEMES)}"
        )
    if scheme != "file" and not parts.netloc:
        raise InputError(f"asset store {redact(text)!r} has no host or bucket")
    if ".." in unquote(parts.path).split("/"):
        raise InputError(f"asset store {redact(text)!r} must not contain '..' path segments")
    if parts.query or parts.fragment:
        raise InputError(f"asset store {redact(text)!r} must not carry a query string or fragment")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return f"{scheme}://{parts.netloc.lower()}{path}"


def _href_url(href: str) -> tuple[str, str, str]:
    """(scheme, host, decoded path) of an href; a local absolute path counts as ``file``."""
    parts = urlsplit(href)
    if not parts.scheme or (len(parts.scheme) == 1 and os.name == "nt"):
        return "", "", unquote(href)
    return parts.scheme.lower(), parts.netloc.lower(), unquote(parts.path)


def check_asset_href(href: str, stores: Sequence[str] = ()) -> None:
    """Refuse an asset href that points outside the allowed asset stores, before anything reads it.

    Always refused: relative hrefs (the items travel without their self link, so they would resolve
    against the worker's working directory) and hrefs with ``..`` path segments (percent-encoded too).
    With no ``stores`` (the default policy) only ``http(s)://`` and ``s3://`` hrefs pass; local paths and
    ``file://`` URLs are refused. With ``stores`` (canonical prefixes from :func:`normalize_store`) an
    href passes only if it lies under one of them; local files are compared after resolving symlinks.

    Raises:
        RefusedAssetError: the href is refused; the message names it (redacted) and the allowed stores.
    """
    scheme, host, path = _href_url(href)
    why = ""
    if not scheme and not path.startswith("/"):
        why = "is relative (the item has no self link to resolve it against)"
    elif ".." in path.split("/"):
        why = "has '..' path segments"
    elif not stores and scheme not in _DEFAULT_SCHEMES:
        why = f"is a {'local file' if scheme in ('', 'file') else scheme + ':// URL'}"
    elif stores and not any(_under(scheme, host, path, store) for store in stores):
        why = "is outside the allowed asset stores"
    if why:
        allowed = ", ".join(redact(s) for s in stores) if stores else "any http(s):// or s3:// URL"
        raise RefusedAssetError(
            f"refused asset href {redact(href)}: it {why}; allowed: {allowed} "
            "(allow its store with --asset-store)"
        )


def _under(scheme: str, host: str, path: str, store: str) -> bool:
    s_scheme, s_host, s_path = _href_url(store)
    if s_scheme == "file":
        if scheme not in ("", "file") or host not in ("", "localhost"):
            return False
        return Path(path).resolve().is_relative_to(Path(s_path).resolve())
    return scheme == s_scheme and host == s_host and path.startswith(s_path)


def check_asset_hrefs(hrefs: Iterable[str], stores: Sequence[str] = ()) -> None:
    """:func:`check_asset_href` for each href (raises at the first refused one)."""
    for href in hrefs:
        check_asset_href(href, stores)


def to_pystac(items: Sequence[dict[str, Any]]) -> list[pystac.Item]:
    """Plain item dicts → pystac Items with links stripped (no live catalog is ever resolved)."""
    return [pystac.Item.from_dict({**d, "links": []}, preserve_dict=False) for d in items]


def items_intersecting(
    items: Sequence[dict[str, Any]], lonlat_bbox: tuple[float, ...]
) -> list[dict[str, Any]]:
    """Items whose footprint intersects a lon/lat bbox."""
    aoi = box(*lonlat_bbox)
    return [d for d in items if d.get("geometry") and shape(d["geometry"]).intersects(aoi)]


@dataclass(frozen=True)
class StacRegionReader:
    """Loads asset pixels of STAC items onto a GeoBox with odc-stac."""

    gdal_env: dict[str, str | int] = field(default_factory=lambda: dict(DEFAULT_GDAL_ENV))
    """GDAL configuration options applied to every read."""
    threads: int = 2
    """Concurrent asset reads per call (I/O overlap inside one task)."""
    asset_stores: tuple[str, ...] = ()
    """Allowed asset URL prefixes (canonical, see :func:`normalize_store`); empty: the default policy
    of :func:`check_asset_href` (http(s) and s3 only)."""
    attempts: int = 2
    """Reads of a call in all when a connection-level failure occurs that GDAL did not retry (it does
    not when opening a file); GDAL's own retries happen within each attempt."""
    retry_delay_s: float = 1.0
    """Wait before the second attempt (seconds); doubled before each later one."""

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.retry_delay_s < 0:
            raise ValueError("attempts must be >= 1 and retry_delay_s >= 0")
        object.__setattr__(self, "asset_stores", tuple(normalize_store(s) for s in self.asset_stores))

    def load(
        self,
        items: Sequence[dict[str, Any]],
        bands: Sequence[str],
        geobox: GeoBox,
        dtype: str,
        resampling: dict[str, str],
        nodata: float | int | None = None,
    ) -> xr.Dataset:
        """Read ``bands`` of ``items`` on ``geobox``, one time step per solar day (tiles mosaicked).

        Returns:
            Dataset of (time, y, x) arrays of ``dtype`` on ``geobox`` (numpy-backed, not lazy).

        Raises:
            RefusedAssetError: an href lies outside the allowed stores (nothing was read).
            AssetError: an item lacks one of ``bands``, or an asset could not be opened or read after the
                retries (names the asset, credentials redacted).
        """
        with phase("read"):  # the chunk's read phase, retries and their waits included
            return self._load(items, bands, geobox, dtype, resampling, nodata)

    def _load(
        self,
        items: Sequence[dict[str, Any]],
        bands: Sequence[str],
        geobox: GeoBox,
        dtype: str,
        resampling: dict[str, str],
        nodata: float | int | None,
    ) -> xr.Dataset:
        self.check(items, bands)
        failure = ""
        for attempt in range(1, self.attempts + 1):
            ds, failure = self._load_once(items, bands, geobox, dtype, resampling, nodata)
            if ds is not None:
                return ds
            if attempt == self.attempts or not _TRANSIENT.search(failure):
                break
            clear_vsicurl_cache()  # else GDAL answers the next attempt from its memory of the failure
            delay = self.retry_delay_s * 2 ** (attempt - 1)
            log.warning(
                "asset read failed (%s); attempt %d of %d in %.1f s",
                failure,
                attempt + 1,
                self.attempts,
                delay,
            )
            time.sleep(delay)
        # GDAL's message rarely names the file: find the failing asset (GDAL still remembers it) and name
        # it. Raised outside any except block so no GDAL exception rides along as __context__: Dask
        # serialises the chain, and a chain that does not pickle would reach the caller as a bare Exception.
        href = self._failing_href(items, bands, geobox)
        clear_vsicurl_cache()  # so that a retry of the task reads afresh
        what = f"asset {redact(href)}" if href else "assets"
        raise AssetError(f"could not read {what}: {redact(failure)}")

    def check(self, items: Sequence[dict[str, Any]], bands: Sequence[str]) -> None:
        """Refuse items that lack an asset for one of ``bands`` or whose href is not allowed.

        A band is an asset key, ``key.N`` (band N of a multi-band asset) or the name / common name of a
        band in an asset's ``eo:bands``/``bands`` (as odc-stac resolves them).

        Raises:
            AssetError: an item has no asset (or no href) for a band: its pixels would silently be nodata.
            RefusedAssetError: an href lies outside the allowed asset stores.
        """
        for item in items:
            assets = item.get("assets") or {}
            for band in bands:
                asset = _asset_of(assets, band)
                href = (asset or {}).get("href")
                if not href:
                    raise AssetError(
                        f"item {item.get('id')!r} of {item.get('collection')!r} has no href for asset "
                        f"{band!r} (its assets: {', '.join(sorted(assets)) or 'none'})"
                    )
                check_asset_href(href, self.asset_stores)

    def gdal_options(self) -> dict[str, str | int]:
        """GDAL options of a read: ``s3://`` access settings of this process's environment (endpoint,
        region, anonymous; see :meth:`eowatch.infra.storage.StorageConfig.gdal_env`), then ``gdal_env``.

        Resolved where the read runs (a Dask worker), so credentials stay in that worker's environment
        or AWS profile, where GDAL looks for them, and never travel in the reader.
        """
        from eowatch.infra.storage import StorageConfig

        return {**StorageConfig.from_env().gdal_env(), **self.gdal_env}

    def aws_session(self) -> dict[str, str] | None:
        """Credentials of the S3 credentials block (``EOWATCH_S3_CREDENTIALS_BLOCK``) for ``/vsis3/``
        reads, loaded in this process (a Dask worker), as keyword arguments of rasterio's ``AWSSession``
        (rasterio refuses them as GDAL options); None without a block: GDAL finds credentials itself."""
        from eowatch.infra.storage import StorageConfig

        return StorageConfig.from_env().aws_session_options()

    def _load_once(
        self,
        items: Sequence[dict[str, Any]],
        bands: Sequence[str],
        geobox: GeoBox,
        dtype: str,
        resampling: dict[str, str],
        nodata: float | int | None,
    ) -> tuple[xr.Dataset | None, str]:
        """One odc-stac read: (dataset, "") or (None, the first line of the failure)."""
        odc.stac.configure_rio(cloud_defaults=False, aws=self.aws_session(), **self.gdal_options())
        kwargs: dict[str, Any] = {} if nodata is None else {"nodata": nodata}
        try:
            ds = odc.stac.load(
                to_pystac(items),
                bands=list(bands),
                geobox=geobox,
                groupby="solar_day",
                resampling=resampling,
                dtype=dtype,
                chunks=None,
                pool=self.threads,
                fail_on_error=True,
                **kwargs,
            )
        except Exception as exc:
            return None, _first_line(exc)
        return ds, ""

    def _failing_href(
        self, items: Sequence[dict[str, Any]], bands: Sequence[str], geobox: GeoBox
    ) -> str | None:
        """The first asset among ``bands`` of ``items`` whose pixels under ``geobox`` cannot be read.

        Reads only the window that the load needed, without GDAL's retries (the load already retried).
        """
        import rasterio
        from rasterio.session import AWSSession
        from rasterio.warp import transform_bounds
        from rasterio.windows import from_bounds

        env = {**self.gdal_options(), "GDAL_HTTP_MAX_RETRY": "0"}
        aws = self.aws_session()
        with rasterio.Env(session=AWSSession(**aws) if aws else None, **env):
            for item in items:
                for band in bands:
                    href = item["assets"][band]["href"]
                    try:
                        with rasterio.open(href) as src:
                            bounds = transform_bounds(geobox.crs, src.crs, *geobox.boundingbox)
                            window = from_bounds(*bounds, transform=src.transform)
                            window = window.intersection(rasterio.windows.Window(0, 0, src.width, src.height))
                            src.read(1, window=window.round_offsets().round_lengths())
                    except rasterio.errors.WindowError:
                        continue  # the asset does not reach into the geobox: nothing of it was read
                    except Exception:
                        return href
        return None


def _asset_of(assets: dict[str, Any], band: str) -> dict[str, Any] | None:
    """The asset that holds ``band``: by key, ``key.N``, or a band name in its ``eo:bands``/``bands``."""
    if band in assets:
        return assets[band]
    key, _, index = band.rpartition(".")
    if key in assets and index.isdigit():
        return assets[key]
    for asset in assets.values():
        for info in asset.get("eo:bands") or asset.get("bands") or []:
            if band in (info.get("name"), info.get("common_name"), info.get("eo:common_name")):
                return asset
    return None


def _first_line(exc: BaseException) -> str:
    """One line saying why a read failed: the first specific message of the exception chain and, when
    the chain goes deeper, its root cause (rasterio's "Read failed. See previous exception" says nothing;
    GDAL's causes say which block and which codec failed)."""
    messages: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(messages) < 10:
        seen.add(id(current))
        text = (str(current).strip() or type(current).__name__).splitlines()[0]
        if "see previous exception" not in text.lower() and text not in messages:
            messages.append(text)
        current = current.__cause__ or current.__context__
    if not messages:
        return type(exc).__name__
    line = messages[0] if len(messages) == 1 else f"{messages[0]} ({messages[-1]})"
    return line[:400]


def _gdal_library() -> ctypes.CDLL | None:
    """The GDAL shared library this process already loaded (rasterio's), or None where not found."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as maps:  # Linux: the very library rasterio loaded
            paths = sorted({f[-1] for f in (ln.split() for ln in maps) if "/libgdal" in f[-1]})
    except OSError:
        pass
    if not paths:
        import rasterio

        paths = sorted(glob.glob(str(Path(rasterio.__file__).parent.parent / "rasterio.libs" / "libgdal*")))
    for path in paths:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


_GDAL: list[ctypes.CDLL | None] = []


def clear_vsicurl_cache() -> None:
    """Forget what GDAL's network file systems cached (file sizes, blocks, failures) in this process."""
    if not _GDAL:
        _GDAL.append(_gdal_library())
    lib = _GDAL[0]
    if lib is None or not hasattr(lib, "VSICurlClearCache"):
        log.debug("GDAL library not found; its /vsicurl/ cache is not cleared")
        return
    lib.VSICurlClearCache.restype = None
    lib.VSICurlClearCache()


def solar_days(ds: xr.Dataset) -> np.ndarray:
    """The time axis of a loaded dataset as datetime64[D]."""
    return ds.time.values.astype("datetime64[D]")
