"""Cube build over HTTP: eowatch's cube stage vs odc-stac and stackstac with the same compositing.

All three read the same S2 items (6 bands + SCL) of a served synthetic archive onto the same 10 m
grid, mask clouds from SCL (buffered by the spec's ``cloud_buffer_px``), convert to reflectance and
take the monthly median of clear observations, on a fresh 2-worker LocalCluster each. eowatch also
writes the composites into Zarr and its chunk ledger; the baselines only return the composite array
to the client. Search time is excluded everywhere (the baselines get the items for free).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from benchmarks._harness import (
    MIB,
    MemorySampler,
    Stopwatch,
    best_of,
    cached_archive,
    cluster_pids,
    import_stackstac,
    ratio,
)

TITLE = "1. Cube build from the archive over HTTP"
ARCHIVE_KM, ARCHIVE_END = 5.12, dt.date(2026, 6, 30)


def _quiet(_msg: str) -> None:
    return None


def monitor_config(served: Any, out: Path, start: dt.date, end: dt.date) -> Any:
    """An optical-only run over the served archive's whole AOI (SAR left out: the baselines are S2).

    The parameters are checked with SAR (the default change model reads VV and VH); the cube stage then
    runs without it: these benchmarks build cubes, no change model runs on them.
    """
    from dataclasses import replace

    from eowatch.demo import archive_run_params

    overrides = {"start": start, "end": end, "vhr_collection": None}
    return replace(archive_run_params(served, out, **overrides).to_config(), s1_collection=None)


def day_scaling(items: Sequence[dict[str, Any]], key: str) -> dict[np.datetime64, tuple[float, float]]:
    """(scale, offset) of an asset per UTC acquisition day (the solar day at these longitudes)."""
    from eowatch.pipelines.assets import reflectance_scaling

    return {np.datetime64(d["properties"]["datetime"][:10], "D"): reflectance_scaling(d, key) for d in items}


def to_reflectance(dn: xr.DataArray, scaling: dict[np.datetime64, tuple[float, float]]) -> xr.DataArray:
    """Lazy DN → reflectance with each day's own scale and offset (eowatch's operator when uniform)."""
    from eowatch.operators import dn_to_reflectance

    if len(set(scaling.values())) == 1:
        scale, offset = next(iter(scaling.values()))
        return dn_to_reflectance(dn, scale=scale, offset=offset)
    days = dn.time.values.astype("datetime64[D]")
    first = next(iter(scaling.values()))
    scale = xr.DataArray([scaling.get(d, first)[0] for d in days], dims="time").astype(np.float32)
    offset = xr.DataArray([scaling.get(d, first)[1] for d in days], dims="time").astype(np.float32)
    return (dn.astype(np.float32) * scale + offset).where(dn != 0)


def composite_lazy(
    dn: xr.DataArray, scl: xr.DataArray, spec: Any, scaling: dict[np.datetime64, tuple[float, float]]
) -> Any:
    """Cloud mask + reflectance + monthly median with eowatch's operators on a lazy (time, band, y, x) cube.

    Returns a Dask array ``(period, band, y, x)`` float32 chunked like ``dn`` in space.
    """
    from eowatch.operators import assign_periods, period_composite, scl_clear_mask
    from eowatch.pipelines.cube import period_bounds

    clear = scl_clear_mask(scl, invalid=spec.scl_invalid, dilate_px=spec.cloud_buffer_px)
    refl = to_reflectance(dn, scaling).where(clear)
    data = refl.transpose("time", "band", "y", "x").data.rechunk({0: -1, 1: -1})
    periods = period_bounds(spec)
    index = assign_periods(dn.time.values.astype("datetime64[D]"), periods)
    n = len(periods)

    def block(values: np.ndarray) -> np.ndarray:
        return period_composite(values, index, n, method=spec.composite)[0]

    chunks = ((n,), data.chunks[1], data.chunks[2], data.chunks[3])
    return data.map_blocks(block, chunks=chunks, dtype=np.float32)


def _band_keys(spec: Any, items: Sequence[dict[str, Any]]) -> dict[str, str]:
    from eowatch.pipelines.assets import resolve_asset_keys

    return resolve_asset_keys(items[0], [*spec.s2_bands, "scl"])


def run_eowatch(served: Any, work: Path, client: Any, start: dt.date, end: dt.date) -> tuple[float, Path]:
    """The cube stage as the flow runs it (search excluded from the time); returns (seconds, cube path)."""
    from eowatch.pipelines.stages import cube_stage_run, prepare_run, search_stage

    run = prepare_run(monitor_config(served, work, start, end), with_model=False)
    search_stage(run, info=_quiet)
    with Stopwatch() as sw:
        cube = cube_stage_run(run, client, info=_quiet)
    return sw.seconds, cube


def run_odc(items: Sequence[dict[str, Any]], spec: Any, client: Any) -> tuple[float, np.ndarray]:
    """odc.stac.load with Dask chunks, then the same compositing, computed on the cluster."""
    import odc.stac

    from eowatch.pipelines.reader import DEFAULT_GDAL_ENV, to_pystac

    keys = _band_keys(spec, items)
    with Stopwatch() as sw:
        odc.stac.configure_rio(cloud_defaults=False, client=client, **DEFAULT_GDAL_ENV)
        ds = odc.stac.load(
            to_pystac(items),
            bands=list(keys.values()),
            geobox=spec.grid.geobox(),
            groupby="solar_day",
            chunks={"x": spec.grid.chunk, "y": spec.grid.chunk},
            dtype="uint16",
            nodata=0,
            resampling={keys["scl"]: "nearest", "*": "bilinear"},
        )
        dn = xr.concat([ds[keys[b]] for b in spec.s2_bands], dim="band")
        comp = composite_lazy(dn, ds[keys["scl"]], spec, day_scaling(items, keys[spec.s2_bands[0]]))
        out = client.compute(comp).result()
    return sw.seconds, out


def run_stackstac(
    stackstac: Any, items: Sequence[dict[str, Any]], spec: Any, client: Any
) -> tuple[float, np.ndarray]:
    """stackstac.stack (nearest resampling for every band, its default), per-day mosaic, same compositing."""
    from eowatch.pipelines.reader import DEFAULT_GDAL_ENV, to_pystac

    keys = _band_keys(spec, items)
    epsg = int(str(spec.grid.crs).split(":")[-1])
    with Stopwatch() as sw:
        stack = stackstac.stack(
            to_pystac(items),
            assets=list(keys.values()),
            epsg=epsg,
            resolution=spec.grid.resolution,
            bounds=tuple(spec.grid.bounds),
            dtype="uint16",
            fill_value=np.uint16(0),  # a Python 0 fails its can_cast check under numpy 2
            rescale=False,
            chunksize=spec.grid.chunk,
            gdal_env=stackstac.DEFAULT_GDAL_ENV.updated(always=DEFAULT_GDAL_ENV),
        )
        stack = stack.assign_coords(day=("time", stack.time.values.astype("datetime64[D]")))
        daily = stack.groupby("day").map(stackstac.mosaic, dim="time", nodata=0)
        daily = daily.rename(day="time").transpose("time", "band", "y", "x")
        dn = daily.sel(band=[keys[b] for b in spec.s2_bands])
        scl = daily.sel(band=keys["scl"]).drop_vars("band")
        comp = composite_lazy(dn, scl, spec, day_scaling(items, keys[spec.s2_bands[0]]))
        out = client.compute(comp).result()
    return sw.seconds, out


def eowatch_composite(cube: Path, bands: Sequence[str]) -> np.ndarray:
    """The eowatch cube's composites as ``(period, band, y, x)``."""
    import zarr

    group = zarr.open_group(str(cube), mode="r", zarr_format=3)
    return np.stack([np.asarray(group[b][:]) for b in bands], axis=1)


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float | None]:
    """How close two composites are: shape match, share of pixels finite in both, median |diff|."""
    if reference.shape != other.shape:
        return {"same_shape": 0.0, "both_finite": None, "median_abs_diff": None}
    both = np.isfinite(reference) & np.isfinite(other)
    either = np.isfinite(reference) | np.isfinite(other)
    diff = np.abs(reference[both] - other[both])
    return {
        "same_shape": 1.0,
        "both_finite": round(float(both.sum() / max(either.sum(), 1)), 4),
        "median_abs_diff": round(float(np.median(diff)), 5) if diff.size else None,
    }


def _measure(
    cluster_config: Any, fn: Callable[[Any], tuple[float, Any]]
) -> tuple[float, Any, dict[str, int]]:
    import os

    from eowatch.infra.cluster import cluster_client

    with cluster_client(cluster_config) as client:
        pids = [os.getpid(), *cluster_pids(client)]
        with MemorySampler(pids) as mem:
            seconds, out = fn(client)
        workers = [mem.peak_by_pid[p] for p in pids[1:]]
        memory = {"total": mem.peak_total, "client": mem.peak_by_pid[pids[0]], "worker_max": max(workers)}
    return seconds, out, memory


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; ``quick`` does one repetition instead of two."""
    from eowatch.demo import served_archive
    from eowatch.infra.cluster import ClusterConfig

    start, end = dt.date(2026, 4, 1), ARCHIVE_END
    archive = cached_archive(ARCHIVE_KM, ARCHIVE_END)
    repeats = 1 if quick else 2
    config = ClusterConfig(n_workers=2, threads_per_worker=1, dashboard=False)
    stackstac = import_stackstac()
    notes: list[str] = []
    times: dict[str, list[float]] = {}
    peaks: dict[str, dict[str, int]] = {}
    outputs: dict[str, np.ndarray] = {}
    with served_archive(archive) as served, tempfile.TemporaryDirectory(prefix="eowatch-bench-") as tmp:
        probe = monitor_config(served, Path(tmp) / "probe", start, end)
        from eowatch.pipelines.stages import prepare_run, search_stage

        probe_run = prepare_run(probe, with_model=False)
        search_stage(probe_run, info=_quiet)
        items = json.loads(probe_run.layout.items.read_text())
        spec = probe_run.spec
        methods: dict[str, Callable[[Any], tuple[float, Any]]] = {}
        for rep in range(repeats):
            work = Path(tmp) / f"eowatch-{rep}"
            methods["eowatch"] = lambda c, w=work: run_eowatch(served, w, c, start, end)
            methods["odc-stac"] = lambda c: run_odc(items, spec, c)
            if stackstac is not None:
                methods["stackstac"] = lambda c: run_stackstac(stackstac, items, spec, c)
            for name, fn in methods.items():
                seconds, out, memory = _measure(config, fn)
                times.setdefault(name, []).append(seconds)
                prev = peaks.get(name, memory)
                peaks[name] = {k: max(prev[k], memory[k]) for k in memory}
                if name == "eowatch":
                    out = eowatch_composite(out, spec.s2_bands)
                outputs[name] = out
        if stackstac is None:
            notes.append("stackstac is not installed: its row is missing (see docs/performance.md).")
    h, w = spec.grid.shape
    n_days = len({d["properties"]["datetime"][:10] for d in items})
    pixels = h * w * n_days
    rows = []
    for name, ts in times.items():
        t = best_of(ts)
        rows.append(
            {
                "method": name,
                "best_s": round(t, 2),
                "all_s": [round(x, 2) for x in ts],
                "Mpx_per_s": round(pixels / t / 1e6, 3),
                "peak_rss_total_MiB": round(peaks[name]["total"] / MIB),
                "peak_rss_worker_MiB": round(peaks[name]["worker_max"] / MIB),
                "peak_rss_client_MiB": round(peaks[name]["client"] / MIB),
            }
        )
    base = best_of(times["eowatch"])
    ratios: dict[str, float | None] = {}
    checks: dict[str, Any] = {}
    for name in times:
        if name == "eowatch":
            continue
        ratios[f"speed eowatch / {name} (>1: eowatch faster)"] = ratio(best_of(times[name]), base)
        ratios[f"peak RSS eowatch / {name} (<1: eowatch leaner)"] = ratio(
            peaks["eowatch"]["total"], peaks[name]["total"]
        )
        checks[f"{name} vs eowatch composite"] = agreement(outputs["eowatch"], outputs[name])
    return {
        "name": "cube",
        "title": TITLE,
        "params": {
            "archive": f"seed 5, {ARCHIVE_KM} km, {start}..{end}",
            "grid_px": f"{w}x{h} @ {spec.grid.resolution:g} m, chunk {spec.grid.chunk}",
            "bands": "+".join(spec.s2_bands) + "+scl",
            "s2_items": len(items),
            "solar_days": n_days,
            "periods": len(spec.periods),
            "cluster": "LocalCluster 2 workers x 1 thread",
            "repeats": repeats,
        },
        "rows": rows,
        "ratios": ratios,
        "checks": checks,
        "notes": [
            *notes,
            "Mpx/s counts grid pixels x acquisition days (the input time series), the same for every method.",
            "eowatch also writes Zarr and its chunk ledger; the baselines only return the array to the "
            "client.",
            "stackstac resamples every band with nearest (its default); eowatch and odc-stac use bilinear "
            "for the 20 m bands and nearest for SCL, so stackstac's composites may differ slightly.",
        ],
    }
