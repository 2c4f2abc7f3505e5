"""Describe a run's finished Zarr stores as a static STAC catalog, so STAC tools find and open them.

Per run, under ``<out>/stac/`` (written after the data it describes; only ``summary.json`` follows):

- ``catalog.json``: the root catalog of the run;
- one Collection per region and product, ``eowatch-<region>-<product>/collection.json`` (products:
  ``change`` for the change cube, ``cube`` for the analysis-ready cube, ``vhr`` for the VHR cube,
  ``crop_type`` for the crop-type map, ``vhr_change`` for the VHR change map, ``landcover`` for the
  land-cover map per period, ``vhr_landcover`` for the VHR land-cover map per VHR date);
- one Item per run in each collection (``<region>-<start>_<end>``), whose period is the run's, with the
  datacube extension (``cube:dimensions``, ``cube:variables``), the projection extension and a Zarr
  asset (``application/vnd+zarr``, role ``data``) pointing at the store by a relative href.

Every link and href is relative, so the catalog stays valid wherever the output folder or prefix is
copied, locally or on object storage. The region is the run's folder name, or its parent's name for a
backfill window folder ``<region>/<start>_<end>``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pystac
import xarray as xr
from pyproj import Transformer
from pystac.extensions.datacube import (
    DatacubeExtension,
    Dimension,
    DimensionType,
    HorizontalSpatialDimension,
    TemporalDimension,
    Variable,
    VariableType,
)
from pystac.extensions.projection import ProjectionExtension

from eowatch import __version__
from eowatch.infra.storage import Location
from eowatch.pipelines.grid import GridSpec
from eowatch.pipelines.ledger import RunLayout, write_atomic
from eowatch.pipelines.zarr_store import zarr_store

ZARR_MEDIA_TYPE = "application/vnd+zarr"
XARRAY_ASSETS = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"
PRODUCTS: dict[str, str] = {
    "change": "change cube: change probability, mask and type per monthly transition, CVA and SAR baselines",
    "cube": "analysis-ready cube: monthly median composites of clear Sentinel-2 and Sentinel-1 dB means",
    "vhr": "very-high-resolution acquisitions on a grid nested in the analysis grid",
    "crop_type": "crop-type map of the season: class per pixel and class probabilities",
    "vhr_change": "VHR change map: change probability and mask per pair of consecutive VHR dates",
    "landcover": "land-cover map per period of the analysis cube (WorldCover-like class codes)",
    "vhr_landcover": "VHR land-cover map per VHR date on the nested VHR grid (LandCover.ai class codes)",
    "semantic_change": "semantic change map: p(change) and from/to land cover per monthly transition",
}
_WINDOW = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}$")
_SLUG = re.compile(r"[^a-z0-9-]+")


def region_name(out: Location) -> str:
    """The region a run output belongs to: its parent's name for ``<region>/<start>_<end>``, else its own."""
    name = out.name if _WINDOW.match(out.name) is None else out.parent.name
    return _SLUG.sub("-", name.lower()).strip("-") or "aoi"


def lonlat_footprint(grid: GridSpec) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON polygon and bbox (EPSG:4326, densified edges) of a grid's bounds."""
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    minx, miny, maxx, maxy = grid.bounds
    n = 21
    xs = np.concatenate(
        [np.linspace(minx, maxx, n), np.full(n, maxx), np.linspace(maxx, minx, n), np.full(n, minx)]
    )
    ys = np.concatenate(
        [np.full(n, miny), np.linspace(miny, maxy, n), np.full(n, maxy), np.linspace(maxy, miny, n)]
    )
    lon, lat = to_ll.transform(xs, ys)
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    bbox = [round(float(v), 7) for v in (min(lon), min(lat), max(lon), max(lat))]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _datetime(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


def datacube_fields(ds: xr.Dataset, grid: GridSpec) -> tuple[dict[str, Dimension], dict[str, Variable]]:
    """``cube:dimensions`` and ``cube:variables`` of a (time, y, x) store opened with xarray."""
    from pyproj import CRS

    epsg = CRS.from_user_input(grid.crs).to_epsg()
    minx, miny, maxx, maxy = grid.bounds
    times = [str(np.datetime_as_string(t, unit="D")) for t in ds["time"].values]
    dims: dict[str, Dimension] = {
        "x": HorizontalSpatialDimension(
            {
                "type": "spatial",
                "axis": "x",
                "extent": [minx, maxx],
                "step": grid.resolution,
                "reference_system": epsg,
            }
        ),
        "y": HorizontalSpatialDimension(
            {
                "type": "spatial",
                "axis": "y",
                "extent": [miny, maxy],
                "step": -grid.resolution,
                "reference_system": epsg,
            }
        ),
        "time": TemporalDimension(
            {
                "type": DimensionType.TEMPORAL,
                "extent": [times[0], times[-1]] if times else [None, None],
                "values": times,
            }
        ),
    }
    variables: dict[str, Variable] = {}
    for name, var in sorted(ds.data_vars.items()):
        if not set(var.dims) >= {"y", "x"}:
            continue
        entry: dict[str, Any] = {
            "type": VariableType.DATA,
            "dimensions": list(var.dims),
            "description": str(var.attrs.get("long_name", name)),
            "data_type": var.dtype.name,
        }
        if var.attrs.get("units"):
            entry["unit"] = str(var.attrs["units"])
        variables[str(name)] = Variable(entry)
    return dims, variables


def store_grid(ds: xr.Dataset) -> GridSpec:
    """The grid of a (time, y, x) store, from its pixel-centre coordinates and ``spatial_ref``."""
    x, y = ds["x"].values, ds["y"].values
    res = float(abs(x[1] - x[0])) if len(x) > 1 else float(abs(y[1] - y[0]))
    bounds = (float(x[0]) - res / 2, float(y[-1]) - res / 2, float(x[-1]) + res / 2, float(y[0]) + res / 2)
    chunk = int(ds[next(iter(ds.data_vars))].encoding.get("chunks", (0, 256))[-1] or 256)
    return GridSpec(str(ds.rio.crs), res, bounds, chunk=chunk)


def product_item(
    product: str, store: Location, region: str, start: str, end: str, properties: Mapping[str, Any]
) -> pystac.Item:
    """The STAC Item of one finished store (its metadata is read, never its chunks)."""
    ds = xr.open_zarr(zarr_store(store, read_only=True), consolidated=True)
    grid = store_grid(ds)
    geometry, bbox = lonlat_footprint(grid)
    item = pystac.Item(
        id=f"{region}-{start}_{end}",
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        start_datetime=_datetime(start),
        end_datetime=_datetime(end),
        properties={"eowatch:version": __version__, **properties},
    )
    cube = DatacubeExtension.ext(item, add_if_missing=True)
    cube.apply(*datacube_fields(ds, grid))
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(
        code=str(grid.crs), bbox=list(grid.bounds), shape=list(grid.shape), transform=list(grid.transform)[:6]
    )
    item.stac_extensions.append(XARRAY_ASSETS)
    item.add_asset(
        "zarr",
        pystac.Asset(
            href=str(store),
            media_type=ZARR_MEDIA_TYPE,
            roles=["data"],
            title=f"{product} (Zarr v3)",
            description=PRODUCTS[product],
            extra_fields={"xarray:open_kwargs": {"engine": "zarr", "consolidated": True, "chunks": {}}},
        ),
    )
    return item


def product_collection(product: str, region: str, item: pystac.Item) -> pystac.Collection:
    """The Collection of a region's product, with the extent of ``item``."""
    start, end = item.common_metadata.start_datetime, item.common_metadata.end_datetime
    collection = pystac.Collection(
        id=f"eowatch-{region}-{product}",
        title=f"eowatch {product} · {region}",
        description=f"eowatch {PRODUCTS[product]} of region {region}, one item per run.",
        extent=pystac.Extent(pystac.SpatialExtent([item.bbox]), pystac.TemporalExtent([[start, end]])),
        license="other",
        keywords=["change detection", "sentinel-2", "sentinel-1", "zarr", "datacube"],
        providers=[pystac.Provider(name="eowatch", roles=[pystac.ProviderRole.PROCESSOR])],
    )
    collection.add_item(item)
    return collection


def build_catalog(
    out: Location, stores: Mapping[str, Location], start: str, end: str, properties: Mapping[str, Any]
) -> pystac.Catalog:
    """The catalog of a run's finished ``stores`` (product → store), hrefs normalised under ``<out>/stac``."""
    region = region_name(out)
    catalog = pystac.Catalog(
        id=f"eowatch-{region}-{start}_{end}",
        description=f"eowatch outputs of region {region}, {start} to {end}",
        title=f"eowatch · {region} · {start} to {end}",
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )
    for product, store in stores.items():
        item = product_item(product, store, region, start, end, properties)
        catalog.add_child(product_collection(product, region, item))
    catalog.normalize_hrefs(str(out / "stac"))
    return catalog


def write_catalog(catalog: pystac.Catalog, out: Location) -> Location:
    """Write every object of a normalised catalog under ``<out>/stac`` (items, collections, root last).

    Asset hrefs become relative to each item's own file, so the catalog moves with the outputs.
    """
    root = out / "stac"
    base = str(root)
    written: list[tuple[Location, dict[str, Any]]] = []
    for obj in [*catalog.get_items(recursive=True), *catalog.get_children(), catalog]:
        if isinstance(obj, pystac.Item):
            obj.make_asset_hrefs_relative()
        rel = (obj.get_self_href() or "")[len(base) :].lstrip("/")
        written.append((root / rel, obj.to_dict(include_self_link=False, transform_hrefs=True)))
    for path, doc in written:
        write_atomic(path, json.dumps(doc, indent=2, default=str) + "\n")
    return root / "catalog.json"


def publish_catalog(layout: RunLayout, start: dt.date, end: dt.date) -> Location:
    """Describe a run's finished stores (change, analysis and, when present, VHR cube, crop-type map, VHR
    change map, land-cover and VHR land-cover maps) as a static STAC catalog under ``<out>/stac``; return
    the root ``catalog.json``.

    Call it after the stores are complete: it is one of the run's last writes (only the summary follows).
    """
    stores = {"change": layout.change, "cube": layout.cube}
    if layout.vhr.exists():
        stores["vhr"] = layout.vhr
    for product in ("crop_type", "vhr_change", "landcover", "vhr_landcover", "semantic_change"):
        if (layout.out / f"{product}.zarr" / "zarr.json").exists():
            stores[product] = layout.out / f"{product}.zarr"
    catalog = build_catalog(
        layout.out, stores, start.isoformat(), end.isoformat(), {"eowatch:run_token": layout.token}
    )
    return write_catalog(catalog, layout.out)
