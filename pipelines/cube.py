"""Cube build stage: STAC items → monthly analysis-ready composites in Zarr, written chunk by chunk.

Per chunk (on a Dask worker): read Sentinel-2 bands + SCL and Sentinel-1 VV/VH onto the chunk's GeoBox
(tiles mosaicked per solar day, 20 m bands resampled to the grid), mask clouds and shadows from SCL,
composite the clear observations per period, average SAR in linear power and convert to dB, write the
chunk into the staging store and record it in the ledger. Memory per task is bounded by one chunk's
time series, whatever the region size.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eowatch.infra.storage import location
from eowatch.operators.cloudmask import scl_clear_mask
from eowatch.operators.composite import period_composite
from eowatch.operators.periods import assign_periods
from eowatch.operators.reflectance import dn_to_reflectance
from eowatch.operators.sar import temporal_mean_db
from eowatch.pipelines.assets import reflectance_scaling, resolve_asset_keys
from eowatch.pipelines.grid import ChunkKey
from eowatch.pipelines.ledger import RunLayout, write_chunks
from eowatch.pipelines.reader import StacRegionReader, items_intersecting, solar_days
from eowatch.pipelines.spec import CubeSpec
from eowatch.pipelines.zarr_store import create_template, set_attrs

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class CubeInputs:
    """References a cube task needs; small and picklable (no arrays)."""

    spec: dict[str, Any]
    items_path: str
    store_path: str
    ledger_path: str
    reader: StacRegionReader


def period_bounds(spec: CubeSpec) -> list[tuple[np.datetime64, np.datetime64]]:
    return [(np.datetime64(a, "D"), np.datetime64(b, "D")) for a, b in spec.periods]


def cube_variables(spec: CubeSpec) -> dict[str, tuple[np.dtype, Any, dict[str, Any]]]:
    """Variables of the analysis cube: name → (dtype, fill, attrs)."""
    out: dict[str, tuple[np.dtype, Any, dict[str, Any]]] = {}
    for band in spec.s2_bands:
        out[band] = (
            np.dtype("float32"),
            np.nan,
            {
                "long_name": f"{band} surface reflectance, {spec.composite} of clear observations",
                "units": "1",
            },
        )
    out["clear_count"] = (np.dtype("uint16"), 0, {"long_name": "clear Sentinel-2 observations in the period"})
    if spec.s1_collection:
        for band in spec.s1_bands:
            out[f"{band}_db"] = (
                np.dtype("float32"),
                np.nan,
                {
                    "long_name": f"Sentinel-1 {band.upper()} backscatter, period mean in linear power",
                    "units": "dB",
                },
            )
    return out


def compute_region(
    key: ChunkKey, spec: CubeSpec, items: Sequence[dict[str, Any]], reader: StacRegionReader
) -> dict[str, np.ndarray]:
    """Compute every cube variable for one chunk: arrays of shape (period, y, x)."""
    geobox = spec.grid.chunk_geobox(key)
    lonlat = tuple(geobox.extent.to_crs("EPSG:4326").boundingbox)
    periods = period_bounds(spec)
    h, w = geobox.shape
    out = _optical_region(spec, items, reader, key, lonlat, periods, (h, w))
    if spec.s1_collection:
        out.update(_sar_region(spec, items, reader, geobox, lonlat, periods, (h, w)))
    return out


def _optical_region(spec, items, reader, key, lonlat, periods, hw) -> dict[str, np.ndarray]:
    n = len(periods)
    s2 = [d for d in items_intersecting(items, lonlat) if d.get("collection") == spec.s2_collection]
    if not s2:
        comp = np.full((n, len(spec.s2_bands), *hw), np.nan, np.float32)
        count = np.zeros((n, *hw), np.uint16)
    else:
        keys = resolve_asset_keys(s2[0], [*spec.s2_bands, "scl"])
        # Read a margin as wide as the cloud buffer so that the buffered mask, and so every pixel of the
        # chunk, is the same as if the whole region had been read at once (no seams at chunk edges).
        b = spec.cloud_buffer_px
        geobox = spec.grid.chunk_geobox(key, halo=b)
        inner = (slice(None), slice(b, b + hw[0]), slice(b, b + hw[1]))
        resampling = {keys["scl"]: "nearest", "*": "bilinear"}
        ds = reader.load(s2, list(keys.values()), geobox, "uint16", resampling, nodata=0)
        days = solar_days(ds)
        index = assign_periods(days, periods)
        clear = scl_clear_mask(ds[keys["scl"]].values, invalid=frozenset(spec.scl_invalid), dilate_px=b)[
            inner
        ]
        centre_lon = (lonlat[0] + lonlat[2]) / 2
        refl = np.stack(
            [
                _to_reflectance(ds[keys[band]].values[inner], s2, keys[band], days, centre_lon)
                for band in spec.s2_bands
            ],
            axis=1,
        )
        refl[~np.broadcast_to(clear[:, None], refl.shape)] = np.nan
        comp, count = period_composite(refl, index, n, method=spec.composite)
    out = {b: comp[:, i].astype(np.float32) for i, b in enumerate(spec.s2_bands)}
    out["clear_count"] = count.astype(np.uint16)
    return out


def item_solar_day(item: dict[str, Any], lon: float) -> np.datetime64:
    """Local solar day (datetime64[D]) of an item's acquisition at longitude ``lon`` (degrees)."""
    props = item["properties"]
    when = dt.datetime.fromisoformat(props.get("datetime") or props["start_datetime"])
    if when.tzinfo is not None:  # "Z" or "+02:00": to UTC, as odc-stac does
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    t = np.datetime64(when.replace(microsecond=0), "s")
    return (t + np.timedelta64(round(lon / 15 * 3600), "s")).astype("datetime64[D]")


def _to_reflectance(dn: np.ndarray, items: Sequence[dict[str, Any]], key: str, days: np.ndarray, lon: float):
    """Digital numbers (time, y, x) → float32 reflectance with each day's own scale and offset."""
    scaling = {item_solar_day(d, lon): reflectance_scaling(d, key) for d in items}
    if len(set(scaling.values())) == 1:
        scale, offset = next(iter(scaling.values()))
        return dn_to_reflectance(dn, scale=scale, offset=offset)
    out = np.empty(dn.shape, np.float32)
    for t, day in enumerate(days):
        scale, offset = scaling.get(day, next(iter(scaling.values())))
        out[t] = dn_to_reflectance(dn[t], scale=scale, offset=offset)
    return out


def _sar_region(spec, items, reader, geobox, lonlat, periods, hw) -> dict[str, np.ndarray]:
    n = len(periods)
    s1 = [d for d in items_intersecting(items, lonlat) if d.get("collection") == spec.s1_collection]
    if not s1:
        return {f"{b}_db": np.full((n, *hw), np.nan, np.float32) for b in spec.s1_bands}
    keys = resolve_asset_keys(s1[0], spec.s1_bands)
    ds = reader.load(s1, list(keys.values()), geobox, "float32", {"*": "bilinear"}, nodata=np.nan)
    index = assign_periods(solar_days(ds), periods)
    linear = np.stack([ds[keys[b]].values for b in spec.s1_bands], axis=1)
    db = temporal_mean_db(linear, index, n)
    return {f"{b}_db": db[:, i].astype(np.float32) for i, b in enumerate(spec.s1_bands)}


def build_batch(keys: Sequence[tuple[int, int]], inputs: CubeInputs) -> list[dict[str, Any]]:
    """Dask task: compute and write a batch of chunks, recording each in the ledger after its write."""
    spec = CubeSpec.from_dict(inputs.spec)
    items = json.loads(location(inputs.items_path).read_text())  # a local path or an s3:// URL
    return write_chunks(
        keys,
        spec.grid,
        inputs.store_path,
        inputs.ledger_path,
        lambda key: compute_region(key, spec, items, inputs.reader),
        lambda arrays: {"clear_obs": int(arrays["clear_count"].sum())},
        compute_phase="composite",
    )


def init_cube(layout: RunLayout, spec: CubeSpec, provenance: dict[str, Any]) -> Path:
    """Create the staging store (metadata only) unless a previous attempt of this run already did."""
    path = layout.staging("cube")
    if not (path / "zarr.json").exists():
        times = np.array([np.datetime64(a, "ns") for a, _ in spec.periods])
        ends = np.array([np.datetime64(b, "ns") for _, b in spec.periods])
        create_template(
            path,
            spec.grid,
            times,
            cube_variables(spec),
            attrs={"title": "eowatch analysis-ready cube", "eowatch_status": "in-progress", **provenance},
            extra_coords={"period_end": ("time", ends)},
        )
    return path


def finalize_cube(layout: RunLayout) -> Path:
    set_attrs(layout.staging("cube"), {"eowatch_status": "complete"})
    return layout.publish("cube")


def pending_batches(
    spec: CubeSpec, layout: RunLayout, stage: str, per_task: int
) -> list[list[tuple[int, int]]]:
    """Chunks not yet in the ledger, grouped into batches of ``per_task`` (row-major, neighbours together)."""
    done = layout.ledger(stage).done()
    todo = [(k.row, k.col) for k in spec.grid.chunks() if k not in done]
    return [todo[i : i + per_task] for i in range(0, len(todo), per_task)]
