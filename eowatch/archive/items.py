"""Item and Collection documents of the three collections (sentinel-2-l2a, sentinel-1-grd, vhr-rgbn)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import shapely
from shapely.geometry import box

from eowatch.archive.config import Grid, Layout
from eowatch.archive.s1 import S1Product
from eowatch.archive.s2 import S2_ASSETS, S2Product
from eowatch.archive.stac import (
    S2_BANDS,
    VHR_BANDS,
    asset,
    collection,
    feature,
    iso,
    lonlat_bbox,
    raster_band,
)

S2, S1, VHR = "sentinel-2-l2a", "sentinel-1-grd", "vhr-rgbn"
_S2_EXT = ["eo", "raster", "proj", "view", "sat", "grid", "mgrs"]


def href(collection_id: str, item_id: str, key: str) -> str:
    """Asset href relative to the item file ``stac/items/<collection>/<item>.json``."""
    return f"../../../assets/{collection_id}/{item_id}/{key}.tif"


def _s2_asset_doc(key: str, grid: Grid | None, item_id: str) -> dict[str, Any]:
    res, _ = S2_ASSETS[key]
    if key == "scl":
        doc = {
            "title": "Scene classification map (SCL)",
            "roles": ["data"],
            "raster:bands": [raster_band("uint8", res, 0)],
        }
    else:
        name, cw, fwhm = S2_BANDS[key]
        doc = {
            "title": f"{key.capitalize()} ({name}) - {res}m",
            "roles": ["data", "reflectance"],
            "eo:bands": [
                {
                    "name": key,
                    "common_name": key,
                    "description": f"{key} (band {name[1:]})",
                    "center_wavelength": cw,
                    "full_width_half_max": fwhm,
                }
            ],
            "raster:bands": [raster_band("uint16", res, 0, scaled=True)],
            "gsd": res,
        }
    if grid is None:
        return {"type": "image/tiff; application=geotiff; profile=cloud-optimized", **doc}
    return asset(href(S2, item_id, key), doc.pop("title"), doc.pop("roles"), grid, **doc)


def s2_item(p: S2Product, grid10: Grid, footprint: shapely.Geometry) -> dict[str, Any]:
    """STAC Item of one S2 tile product; ``grid10`` is the tile's 10 m grid."""
    grid20 = Grid(grid10.minx, grid10.maxy, 20.0, grid10.width // 2, grid10.height // 2)
    assets = {k: _s2_asset_doc(k, grid10 if S2_ASSETS[k][0] == 10 else grid20, p.item_id) for k in S2_ASSETS}
    props = {
        "datetime": iso(p.datetime),
        "created": iso(p.datetime + dt.timedelta(hours=3)),
        "platform": p.platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "gsd": 10,
        "eo:cloud_cover": p.cloud_cover,
        "mgrs:utm_zone": int(p.tile[:2]),
        "mgrs:latitude_band": p.tile[2],
        "mgrs:grid_square": p.tile[3:],
        "grid:code": f"MGRS-{p.tile}",
        "sat:orbit_state": "descending",
        "sat:relative_orbit": p.relative_orbit,
        "view:sun_azimuth": p.sun_azimuth,
        "view:sun_elevation": p.sun_elevation,
        "s2:processing_baseline": "05.11",
        "s2:product_type": "S2MSI2A",
        "s2:nodata_pixel_percentage": p.nodata_percent,
        "s2:datatake_id": f"GS2{p.platform[-1].upper()}_{p.datetime:%Y%m%dT%H%M%S}_0_N05.11",
    }
    return feature(p.item_id, S2, footprint, props, assets, _S2_EXT)


def s1_item(p: S1Product, grid: Grid) -> dict[str, Any]:
    assets = {
        key: asset(
            href(S1, p.item_id, key),
            f"{key.upper()}: gamma0 (RTC-like), linear power",
            ["data", "backscatter"],
            grid,
            **{
                "raster:bands": [raster_band("float32", 10, "nan") | {"unit": "linear power"}],
                "sar:polarizations": [key.upper()],
            },
        )
        for key in ("vv", "vh")
    }
    props = {
        "datetime": iso(p.datetime),
        "start_datetime": iso(p.datetime),
        "end_datetime": iso(p.datetime + dt.timedelta(seconds=25)),
        "platform": p.platform,
        "constellation": "sentinel-1",
        "instruments": ["c-sar"],
        "gsd": 10,
        "sar:instrument_mode": "IW",
        "sar:frequency_band": "C",
        "sar:center_frequency": 5.405,
        "sar:polarizations": ["VV", "VH"],
        "sar:product_type": "GRD",
        "sar:resolution_range": 20,
        "sar:resolution_azimuth": 22,
        "sar:looks_equivalent_number": 4.4,
        "sat:orbit_state": p.orbit_state,
        "sat:relative_orbit": p.relative_orbit,
        "sat:absolute_orbit": p.absolute_orbit,
    }
    return feature(p.item_id, S1, box(*grid.bbox), props, assets, ["sar", "sat", "raster", "proj"])


def vhr_item(item_id: str, when: dt.datetime, grid: Grid) -> dict[str, Any]:
    bands = [
        {"name": n, "common_name": n, "center_wavelength": c, "full_width_half_max": w}
        for n, c, w in VHR_BANDS
    ]
    assets = {
        "image": asset(
            href(VHR, item_id, "image"),
            "RGBN image",
            ["data"],
            grid,
            **{"eo:bands": bands, "raster:bands": [raster_band("uint8", 1.0, None)] * 4},
        )
    }
    props = {
        "datetime": iso(when),
        "platform": "aerial",
        "instruments": ["digital-frame-camera"],
        "gsd": 1.0,
        "eo:cloud_cover": 0.0,
    }
    return feature(item_id, VHR, box(*grid.bbox), props, assets, ["eo", "raster", "proj"])


def collections(layout: Layout, start: dt.date, end: dt.date, with_s1: bool, with_vhr: bool) -> list[dict]:
    """Collection documents (extent: the AOI plus the S2 margin / the VHR sub-area)."""
    s2_bbox = lonlat_bbox(shapely.union_all([box(*t.grid.bbox) for t in layout.tiles]).bounds)
    out = [
        collection(
            S2,
            "Sentinel-2 Level-2A (synthetic)",
            "Synthetic Sentinel-2 L2A surface reflectance on MGRS-like tiles, encoded like processing "
            "baseline >= 04.00 (DN = (reflectance + 0.1) / 0.0001, nodata 0), with a Sen2Cor-like SCL.",
            s2_bbox,
            start,
            end,
            {
                "platform": ["sentinel-2a", "sentinel-2b", "sentinel-2c"],
                "constellation": ["sentinel-2"],
                "instruments": ["msi"],
                "gsd": [10, 20],
            },
            {k: _s2_asset_doc(k, None, "") for k in S2_ASSETS},
            ["eo", "raster", "proj", "view", "sat", "grid"],
        )
    ]
    if with_s1:
        out.append(
            collection(
                S1,
                "Sentinel-1 GRD, RTC-like (synthetic)",
                "Synthetic Sentinel-1 IW GRD backscatter, radiometrically terrain corrected and geocoded "
                "(RTC-like): gamma0 in linear power (not dB), float32, nodata NaN, 10 m on EPSG:32631. "
                "Unlike Earth Search's sentinel-1-grd (slant/ground range, no CRS) it is analysis-ready.",
                lonlat_bbox(layout.s1.bbox),
                start,
                end,
                {
                    "platform": ["sentinel-1a"],
                    "constellation": ["sentinel-1"],
                    "sar:instrument_mode": ["IW"],
                    "sar:polarizations": ["VV", "VH"],
                    "sar:frequency_band": ["C"],
                    "sar:product_type": ["GRD"],
                },
                {
                    k: {
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"],
                        "title": k.upper(),
                    }
                    for k in ("vv", "vh")
                },
                ["sar", "sat", "raster", "proj"],
            )
        )
    if with_vhr:
        out.append(
            collection(
                VHR,
                "Very-high-resolution aerial RGBN (synthetic, NAIP-like)",
                "Synthetic 1 m 4-band (red, green, blue, nir) uint8 aerial imagery over a sub-area "
                "of the AOI.",
                lonlat_bbox(layout.vhr.bbox),
                start,
                end,
                {"gsd": [1.0]},
                {
                    "image": {
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"],
                        "title": "RGBN image",
                    }
                },
                ["eo", "raster", "proj"],
            )
        )
    return out
