"""Open eowatch change cubes as xarray Datasets, from a local folder or object storage.

>>> from eowatch.open import open_change
>>> change = open_change("s3://bucket/eowatch-output/demo/2026-03-01_2026-05-31")  # doctest: +SKIP
>>> change = open_change("demo", root="s3://bucket/eowatch-output")  # all windows  # doctest: +SKIP
>>> change.rio.crs  # doctest: +SKIP
CRS.from_epsg(32631)

A target is a run's output location (``<out>``, holding ``change.zarr``), a change store itself
(``.../change.zarr``) or a region name: the region's windows ``<root>/<region>/<start>_<end>/`` (the layout
of ``eowatch backfill`` and of scheduled runs) are opened and joined along time, in order. Consecutive
windows share one month, so each month-to-month transition is in exactly one window and the joined cube
has every transition once. Stores that are not complete (a run still writing, or one that failed) are
refused, never opened half-written. ``s3://`` URLs are reached with the
:class:`~eowatch.infra.storage.StorageConfig` of the environment (``EOWATCH_S3_ENDPOINT``, ``AWS_*``).
"""

from __future__ import annotations

import os
import re

import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from eowatch.errors import InputError, StorageError
from eowatch.infra.storage import Location, ObjectPath, location, redact_secrets
from eowatch.pipelines.zarr_store import read_attrs, zarr_store

__all__ = ["DEFAULT_ROOT", "change_stores", "open_change", "open_store"]

DEFAULT_ROOT = "eowatch-output"
"""Output root of ``eowatch deploy`` and of scheduled runs (``<root>/<region>/<start>_<end>/``)."""
_WINDOW = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}$")
_REGION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def open_store(store: Location | str) -> xr.Dataset:
    """Open one complete eowatch Zarr store lazily (dask), with its CRS set (``.rio.crs``).

    Raises:
        StorageError: there is no store, or it is not complete (still being written, or its run failed).
    """
    store = location(store)
    attrs = read_attrs(store)
    if not attrs:
        raise StorageError(f"no eowatch Zarr store at {store}")
    if attrs.get("eowatch_status") != "complete":
        raise StorageError(
            f"{store} is not complete (eowatch_status={attrs.get('eowatch_status')!r}): its run is still "
            "writing or failed; run it again to finish it"
        )
    try:
        ds = xr.open_zarr(zarr_store(store, read_only=True), consolidated=True)
    except Exception as exc:
        raise StorageError(f"cannot open {store}: {redact_secrets(str(exc).splitlines()[0])}") from None
    crs = ds.rio.crs
    if crs is None:
        raise StorageError(f"{store} has no CRS (no spatial_ref grid mapping): not an eowatch store")
    return ds.rio.write_crs(crs)


def _children(root: Location) -> list[Location]:
    """Immediate sub-folders (prefixes) of a location, sorted by name."""
    if isinstance(root, ObjectPath):
        try:
            entries = root.fs.ls(root.url, detail=True)
        except FileNotFoundError:
            return []
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"]
        return [root / n for n in sorted(names)]
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def change_stores(
    target: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> list[Location]:
    """The change stores a target names (see the module docstring), in time order.

    Raises:
        InputError: the target is neither an output location, a store, nor a region with finished windows.
    """
    text = os.fspath(target)
    place = location(text)
    if place.name.endswith(".zarr"):
        return [place]
    if (place / "change.zarr").exists():
        return [place / "change.zarr"]
    if "/" in text or "://" in text or not _REGION.match(text):
        raise InputError(f"no change cube at {place} (no change.zarr there)")
    base = location(os.fspath(root) if root is not None else DEFAULT_ROOT) / text
    windows = [w for w in _children(base) if _WINDOW.match(w.name) and (w / "change.zarr").exists()]
    if not windows:
        raise InputError(
            f"region {text!r} has no finished window under {base} (expected {base}/<start>_<end>/change.zarr)"
        )
    return [w / "change.zarr" for w in windows]


def open_change(
    target: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, window: str | None = None
) -> xr.Dataset:
    """The change cube of a run or a region as one lazy Dataset with its CRS set.

    Args:
        target: a run's output location (local folder or ``s3://`` URL), a ``change.zarr`` store, or a
            region name (looked up under ``root``).
        root: output root of region windows (default ``eowatch-output``); only for a region name.
        window: ``<start>_<end>`` to open that window of a region only.

    Returns:
        Dataset of ``change_probability`` (float32), ``change_mask`` and ``change_type`` (uint8) and the
        baselines, dims ``(time, y, x)``: ``time`` is the start of the later period of each transition,
        ``period_before`` the earlier one; x/y in metres of the UTM CRS in ``.rio.crs``.

    Raises:
        InputError: nothing found for ``target``/``window``.
        StorageError: a store is not complete or cannot be read.
    """
    stores = change_stores(target, root)
    if window is not None:
        stores = [s for s in stores if s.parent.name == window]
        if not stores:
            raise InputError(f"{target!r} has no finished window {window!r}")
    parts = [open_store(s) for s in stores]
    if len(parts) == 1:
        return parts[0]
    joined = xr.concat(
        parts, dim="time", data_vars="minimal", coords="minimal", combine_attrs="drop_conflicts"
    )
    joined = joined.sortby("time")
    return joined.rio.write_crs(parts[0].rio.crs)
