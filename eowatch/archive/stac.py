"""STAC 1.1.0 Items and Collections (plain dicts) mirroring Earth Search's field names."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import box, mapping

from eowatch.archive.config import CRS, EPSG, Grid

STAC_VERSION = "1.1.0"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "grid": "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "mgrs": "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
}
#: Sentinel-2 MSI band metadata: asset key -> (band name, centre wavelength um, FWHM um).
S2_BANDS = {
    "blue": ("B02", 0.49, 0.098),
    "green": ("B03", 0.56, 0.045),
    "red": ("B04", 0.665, 0.038),
    "nir": ("B08", 0.842, 0.145),
    "swir16": ("B11", 1.61, 0.143),
    "swir22": ("B12", 2.19, 0.242),
}
VHR_BANDS = (("red", 0.635, 0.07), ("green", 0.555, 0.07), ("blue", 0.465, 0.07), ("nir", 0.83, 0.1))
_TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def to_lonlat(geom: shapely.Geometry) -> shapely.Geometry:
    """Reproject a UTM 31N geometry to lon/lat (densified edges, 7 decimals)."""
    dense = shapely.segmentize(geom, 500.0)
    out = shapely.transform(dense, lambda xy: np.column_stack(_TO_LONLAT.transform(xy[:, 0], xy[:, 1])))
    return shapely.set_precision(out, 1e-7)


def lonlat_bbox(bbox: tuple[float, float, float, float]) -> list[float]:
    return [round(v, 7) for v in to_lonlat(box(*bbox)).bounds]


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def proj_fields(grid: Grid) -> dict[str, Any]:
    """Per-asset projection fields (shape, transform as 9 numbers, bbox)."""
    t = grid.transform
    return {
        "proj:shape": [grid.height, grid.width],
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f, 0.0, 0.0, 1.0],
        "proj:bbox": list(grid.bbox),
    }


def raster_band(dtype: str, res: float, nodata: float | str | None, scaled: bool = False) -> dict[str, Any]:
    band: dict[str, Any] = {"data_type": dtype, "spatial_resolution": res}
    if nodata is not None:
        band["nodata"] = nodata
    if scaled:
        band.update(scale=0.0001, offset=-0.1, unit="reflectance")
    return band


def asset(href: str, title: str, roles: list[str], grid: Grid, **extra: Any) -> dict[str, Any]:
    return {"href": href, "type": COG_TYPE, "title": title, "roles": roles, **proj_fields(grid), **extra}


def feature(
    item_id: str,
    collection: str,
    footprint: shapely.Geometry,
    properties: dict[str, Any],
    assets: dict[str, Any],
    extensions: list[str],
) -> dict[str, Any]:
    """A STAC Item dict; ``footprint`` in UTM 31N metres; links relative to the item file."""
    geom = to_lonlat(footprint)
    props = {"proj:code": f"EPSG:{EPSG}", **properties}
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted(EXT[e] for e in {"proj", *extensions}),
        "id": item_id,
        "collection": collection,
        "bbox": [round(v, 7) for v in geom.bounds],
        "geometry": mapping(geom),
        "properties": dict(sorted(props.items())),
        "links": [
            {"rel": "collection", "href": f"../../collections/{collection}.json", "type": "application/json"},
            {"rel": "parent", "href": f"../../collections/{collection}.json", "type": "application/json"},
        ],
        "assets": assets,
    }


def collection(
    cid: str,
    title: str,
    description: str,
    bbox_lonlat: list[float],
    start: dt.date,
    end: dt.date,
    summaries: dict[str, Any],
    item_assets: dict[str, Any],
    extensions: list[str],
) -> dict[str, Any]:
    """A STAC Collection dict (STAC 1.1.0, ``item_assets`` in core)."""
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted(EXT[e] for e in extensions),
        "id": cid,
        "title": title,
        "description": description,
        "license": "CC0-1.0",
        "keywords": ["synthetic", "eowatch"],
        "providers": [{"name": "eowatch synthetic archive", "roles": ["producer", "processor", "host"]}],
        "extent": {
            "spatial": {"bbox": [bbox_lonlat]},
            "temporal": {"interval": [[f"{start}T00:00:00Z", f"{end}T23:59:59Z"]]},
        },
        "summaries": summaries,
        "item_assets": item_assets,
        "links": [],
    }
