"""Reading STAC assets for one chunk of the target grid (odc-stac, GeoBox-first).

The reader is a small picklable object that travels to Dask workers with its GDAL settings, instead of
relying on module-level environment state (odc-stac's ``capture_env``/``restore_env`` idea).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import odc.stac
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from shapely.geometry import box, shape

from eowatch.errors import AssetError

#: GDAL settings for reading COGs over HTTP(S)/S3 the cloud-native way.
DEFAULT_GDAL_ENV: dict[str, str | int] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_TIMEOUT": "30",
    "VSI_CACHE": "TRUE",
    "GDAL_CACHEMAX": 256,
}

_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_QUERY = re.compile(r"\?[^\s'\"]*")


def redact(text: str) -> str:
    """Remove userinfo and query strings (signed-URL tokens) from any URL in ``text``."""
    return _QUERY.sub("?<redacted>", _URL_CREDENTIALS.sub("<redacted>@", text))


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
            AssetError: an asset could not be opened or read (names the asset, credentials redacted).
        """
        odc.stac.configure_rio(cloud_defaults=False, **self.gdal_env)
        kwargs: dict[str, Any] = {}
        if nodata is not None:
            kwargs["nodata"] = nodata
        failure = ""
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
            failure = _first_line(exc)
        if failure:
            # Raised outside the except block so no GDAL exception rides along as __context__: Dask
            # serialises the chain, and a chain that does not pickle would reach the caller as a bare
            # Exception. GDAL's message rarely names the file, so find the failing asset and name it.
            href = self._failing_href(items, bands)
            what = f"asset {redact(href)}" if href else "assets"
            raise AssetError(f"could not read {what}: {redact(failure)}")
        return ds

    def _failing_href(self, items: Sequence[dict[str, Any]], bands: Sequence[str]) -> str | None:
        """The first asset among ``bands`` of ``items`` that cannot be opened and fully decoded."""
        import rasterio

        with rasterio.Env(**self.gdal_env):
            for item in items:
                for band in bands:
                    href = item.get("assets", {}).get(band, {}).get("href")
                    if not href:
                        continue
                    try:
                        with rasterio.open(href) as src:
                            src.read(1)
                    except Exception:
                        return href
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def solar_days(ds: xr.Dataset) -> np.ndarray:
    """The time axis of a loaded dataset as datetime64[D]."""
    return ds.time.values.astype("datetime64[D]")
