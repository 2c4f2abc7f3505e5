"""VHR stage: very-high-resolution acquisitions on a grid nested in the analysis grid.

The VHR grid covers the VHR footprint snapped outward to whole pixels of the analysis grid, and its
pixel size divides the analysis pixel exactly (``factor`` × ``factor`` VHR pixels per 10 m pixel), so
a VHR pixel never straddles two Sentinel-2 pixels. Each acquisition date is kept (no compositing: VHR
is tasked, cloud-free), written chunk by chunk like the other stages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyproj import Transformer

from eowatch.infra.storage import Location, location
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.ledger import RunLayout, write_chunks
from eowatch.pipelines.reader import StacRegionReader, items_intersecting
from eowatch.pipelines.zarr_store import create_template, set_attrs

VHR_BANDS: tuple[str, ...] = ("red", "green", "blue", "nir")
VHR_CHUNK = 1024


def _item_resolution(item: dict[str, Any]) -> float:
    for asset in item["assets"].values():
        transform = asset.get("proj:transform")
        if transform:
            return abs(float(transform[0]))
    raise ValueError(f"VHR item {item['id']} has no proj:transform")


def _item_bounds(item: dict[str, Any], crs: str) -> tuple[float, float, float, float]:
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return tuple(to_crs.transform_bounds(*item["bbox"], densify_pts=21))  # type: ignore[return-value]


def vhr_grid(grid: GridSpec, items: Sequence[dict[str, Any]]) -> GridSpec | None:
    """The nested VHR grid over the items' footprint within ``grid``, or None if they miss it."""
    if not items:
        return None
    factor = max(1, round(grid.resolution / min(_item_resolution(d) for d in items)))
    boxes = [_item_bounds(d, grid.crs) for d in items]
    minx, miny = max(min(b[0] for b in boxes), grid.bounds[0]), max(min(b[1] for b in boxes), grid.bounds[1])
    maxx, maxy = min(max(b[2] for b in boxes), grid.bounds[2]), min(max(b[3] for b in boxes), grid.bounds[3])
    if minx >= maxx or miny >= maxy:
        return None
    r, (ox, oy) = grid.resolution, (grid.bounds[0], grid.bounds[3])
    snapped = (
        ox + math.floor((minx - ox) / r) * r,
        oy - math.ceil((oy - miny) / r) * r,
        ox + math.ceil((maxx - ox) / r) * r,
        oy - math.floor((oy - maxy) / r) * r,
    )
    return GridSpec(grid.crs, grid.resolution / factor, snapped, chunk=VHR_CHUNK)


def acquisition_days(items: Sequence[dict[str, Any]]) -> np.ndarray:
    """Sorted distinct UTC acquisition days (datetime64[D])."""
    return np.unique([np.datetime64(d["properties"]["datetime"][:10], "D") for d in items])


@dataclass(frozen=True)
class VhrInputs:
    """References a VHR task needs (picklable)."""

    grid: dict[str, Any]
    days: tuple[str, ...]
    collection: str
    items_path: str
    """Search results (local path or s3:// URL)."""
    store_path: str
    """The VHR store (local path or s3:// URL)."""
    ledger_path: str
    reader: StacRegionReader


def compute_vhr_region(
    key: ChunkKey, grid: GridSpec, days: np.ndarray, items: Sequence[dict[str, Any]], reader: StacRegionReader
) -> dict[str, np.ndarray]:
    """Every VHR band for one chunk: uint8 arrays (day, y, x), 0 where not acquired."""
    geobox = grid.chunk_geobox(key)
    h, w = geobox.shape
    out = {b: np.zeros((len(days), h, w), np.uint8) for b in VHR_BANDS}
    lonlat = tuple(geobox.extent.to_crs("EPSG:4326").boundingbox)
    hits = items_intersecting(items, lonlat)
    if not hits:
        return out
    ds = reader.load(hits, list(VHR_BANDS), geobox, "uint8", {"*": "bilinear"}, nodata=0)
    index = np.searchsorted(days, ds.time.values.astype("datetime64[D]"))
    for b in VHR_BANDS:
        out[b][index] = ds[b].values
    return out


def build_vhr_batch(keys: Sequence[tuple[int, int]], inputs: VhrInputs) -> list[dict[str, Any]]:
    """Dask task: compute and write a batch of VHR chunks, recording each in the ledger."""
    grid = GridSpec.from_dict(inputs.grid)
    days = np.array(inputs.days, dtype="datetime64[D]")
    items = [
        d
        for d in json.loads(location(inputs.items_path).read_text())
        if d.get("collection") == inputs.collection
    ]
    return write_chunks(
        keys,
        grid,
        inputs.store_path,
        inputs.ledger_path,
        lambda key: compute_vhr_region(key, grid, days, items, inputs.reader),
        compute_phase="composite",
    )


def init_vhr(layout: RunLayout, grid: GridSpec, days: np.ndarray, provenance: dict[str, Any]) -> Location:
    """Create the VHR staging store (metadata only) unless an earlier attempt did."""
    path = layout.staging("vhr")
    if not (path / "zarr.json").exists():
        variables = {
            b: (np.dtype("uint8"), 0, {"long_name": f"VHR {b} digital number", "units": "1"})
            for b in VHR_BANDS
        }
        create_template(
            path,
            grid,
            days.astype("datetime64[ns]"),
            variables,
            attrs={"title": "eowatch VHR cube (nested grid)", "eowatch_status": "in-progress", **provenance},
        )
    return path


def finalize_vhr(layout: RunLayout) -> Location:
    set_attrs(layout.staging("vhr"), {"eowatch_status": "complete"})
    return layout.publish("vhr")
