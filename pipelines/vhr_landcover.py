"""VHR land-cover stage: the VHR cube's acquisitions → a LandCover.ai class map per date, by chunk.

Each task reads its chunk of ``vhr.zarr`` plus the halo the model's tiling asks for (the VHR change
stage's ``chunk_window``: 128 px of context, windows on the 16 px pooling grid, the image padded with no
data to a multiple of 128 px as ``models.vhr_landcover.predict_vhr_landcover`` pads a whole image), so a
chunk's classes equal whole-image inference (probabilities within ``TILED_TOLERANCE``). The model is
loaded once per worker process.

The store ``vhr_landcover.zarr`` is on the VHR grid (1 m, nested in the analysis grid), one time step per
VHR date: ``land_cover`` (uint8 ``eowatch.legend.VHR_LANDCOVER`` codes: 0 background, 1 building,
2 woodland, 3 water, 4 road; 255 where the date has no data). Written and resumed like the other stages
(ledger per chunk, marked complete last).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from eowatch.errors import InputError
from eowatch.legend import VHR_LANDCOVER
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.ledger import RunLayout, write_chunks
from eowatch.pipelines.phases import phase
from eowatch.pipelines.vhr_change import ChunkWindow, chunk_window, read_vhr_window
from eowatch.pipelines.zarr_store import create_template, set_attrs

if TYPE_CHECKING:  # torch loads on the first chunk, not when the flow imports its stages
    from eowatch.models.card import ModelCard
    from eowatch.models.weights import LoadedModel

#: Name of the VHR land-cover store in a run's output (``<out>/vhr_landcover.zarr``).
STORE = "vhr_landcover"
#: Class value of pixels without data.
NODATA = 255


@dataclass(frozen=True)
class VhrLandCoverInputs:
    """References a VHR land-cover task needs (picklable, no arrays)."""

    grid: dict[str, Any]
    """The VHR grid (``GridSpec.to_dict``)."""
    model: str
    """Registered model name (``landcover-vhr-unet``)."""
    vhr_path: str
    """The finished VHR cube (local path or s3:// URL)."""
    store_path: str
    """The staging store of ``vhr_landcover.zarr``."""
    ledger_path: str
    """The stage's chunk ledger."""
    torch_threads: int = 1
    """Torch CPU threads per task."""


def predict_chunk(model: LoadedModel, images: np.ndarray, window: ChunkWindow) -> np.ndarray:
    """Class codes uint8 ``(T, h, w)`` of the chunk, ``NODATA`` where a date has no data.
    ``images``: ``pipelines.vhr_change.read_vhr_window`` of ``window`` (float DN, NaN = no data)."""
    from eowatch.models.engine import module_device
    from eowatch.models.vhr_change import vhr_engine_config
    from eowatch.models.vhr_landcover import predict_vhr_landcover

    config = vhr_engine_config(module_device(model.module))
    # one window per chunk, so that it starts on the pooling grid (balanced cores might not)
    side = max(s.stop - s.start for s in window.region)
    config = replace(config, tile=max(config.tile, side))
    probs = predict_vhr_landcover(model, images, region=window.region, config=config)
    (gy, gx), (cy, cx) = window.region, window.crop
    codes = probs[:, :, cy, cx].argmax(axis=1).astype(np.uint8)
    missing = np.isnan(images[:, :, gy, gx][:, :, cy, cx]).all(axis=1)
    codes[missing] = NODATA
    return codes


def vhr_landcover_region(
    key: ChunkKey, grid: GridSpec, inputs: VhrLandCoverInputs, vhr: zarr.Group
) -> dict[str, np.ndarray]:
    """The VHR land-cover variable of one chunk: ``land_cover`` ``(time, y, x)`` uint8."""
    from eowatch.models.engine import pin_module, worker_device
    from eowatch.models.registry import get
    from eowatch.models.vhr_change import chunk_tiling

    model = get(inputs.model)
    pin_module(model.module, worker_device())
    ys, xs = grid.chunk_slices(key)
    window = chunk_window(grid.shape, ys, xs, chunk_tiling(model.card))
    images = read_vhr_window(vhr, model.card.bands, window)
    with phase("infer"):
        codes = predict_chunk(model, images, window)
    return {"land_cover": codes}


def vhr_landcover_batch(keys: Sequence[tuple[int, int]], inputs: VhrLandCoverInputs) -> list[dict[str, Any]]:
    """Dask task: classify and write a batch of VHR chunks, recording each in the ledger after its write."""
    import torch

    from eowatch.pipelines.zarr_store import open_group

    torch.set_num_threads(max(1, inputs.torch_threads))
    grid = GridSpec.from_dict(inputs.grid)
    vhr = open_group(inputs.vhr_path)
    return write_chunks(
        keys,
        grid,
        inputs.store_path,
        inputs.ledger_path,
        lambda key: vhr_landcover_region(key, grid, inputs, vhr),
        lambda arrays: {"building_px": int((arrays["land_cover"] == 1).sum())},
        compute_phase="infer",
    )


def vhr_landcover_variables(model_name: str) -> dict[str, tuple[np.dtype, Any, dict[str, Any]]]:
    """Variables of the VHR land-cover store (name → dtype, fill value, attributes)."""
    return {
        "land_cover": (
            np.dtype("uint8"),
            NODATA,
            {
                "long_name": f"land cover, LandCover.ai classes ({model_name})",
                "flag_values": [*VHR_LANDCOVER, NODATA],
                "flag_meanings": " ".join([*VHR_LANDCOVER.values(), "nodata"]),
            },
        )
    }


def check_vhr_landcover_cube(card: ModelCard, bands: Sequence[str], resolution_m: float) -> None:
    """The VHR land-cover model ``card`` fits a VHR cube of ``bands`` at ``resolution_m`` (metres).

    Raises:
        ModelError: not a VHR land-cover model, a band the cube lacks, or another resolution (named).
    """
    from eowatch.models.vhr_landcover import check_vhr_landcover_inputs

    check_vhr_landcover_inputs(card, tuple(bands), resolution_m)


def init_vhr_landcover(
    layout: RunLayout, grid: GridSpec, days: np.ndarray, model_name: str, provenance: dict[str, Any]
) -> Any:
    """Create the VHR land-cover staging store (metadata only) unless an earlier attempt did.

    Args:
        days: the VHR cube's acquisition days (datetime64), in its time order: one time step each.

    Raises:
        InputError: no VHR date.
    """
    from eowatch.models.registry import get

    if len(days) == 0:
        raise InputError("VHR land cover needs at least one VHR acquisition date")
    path = layout.staging(STORE)
    if not (path / "zarr.json").exists():
        card = get(model_name).card
        create_template(
            path,
            grid,
            np.asarray(days).astype("datetime64[ns]"),
            vhr_landcover_variables(model_name),
            attrs={
                "title": "eowatch VHR land-cover map (LandCover.ai classes, one per VHR date)",
                "eowatch_status": "in-progress",
                **provenance,
                "vhr_landcover_model": {
                    "name": card.name,
                    "version": card.version,
                    "sha256": card.weights_sha256,
                },
            },
        )
    return path


def finalize_vhr_landcover(layout: RunLayout) -> Any:
    """Mark the staging store complete and move it into place as ``<out>/vhr_landcover.zarr``."""
    set_attrs(layout.staging(STORE), {"eowatch_status": "complete"})
    return layout.publish(STORE)


# --- publish: area per class, scores against the archive's labels ----------------------------------------


def _open(path: Any) -> zarr.Group:
    from eowatch.pipelines.zarr_store import open_group

    return open_group(path)


def _dates(path: Any) -> list[str]:
    import xarray as xr

    from eowatch.pipelines.zarr_store import zarr_store

    ds = xr.open_zarr(zarr_store(path, read_only=True), consolidated=True)
    return [str(d) for d in np.datetime_as_string(ds["time"].values, unit="D")]


def vhr_landcover_statistics(path: Any, grid: GridSpec) -> dict[str, Any]:
    """Area per class and date (m² and ha) of a VHR land-cover store, read chunk by chunk."""
    cover = _open(path)["land_cover"]
    n = cover.shape[0]
    counts = np.zeros((n, 256), np.int64)
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        block = np.asarray(cover[:, ys, xs]).reshape(n, -1)
        counts += np.stack([np.bincount(b, minlength=256) for b in block])
    px_m2 = grid.resolution**2
    dates = [
        {
            "date": day,
            "observed_m2": round(float(c[: len(VHR_LANDCOVER)].sum()) * px_m2, 2),
            "area_ha": {name: round(float(c[code]) * px_m2 / 1e4, 4) for code, name in VHR_LANDCOVER.items()},
        }
        for day, c in zip(_dates(path), counts, strict=True)
    ]
    meta = json.loads(str(_open(path).attrs["vhr_landcover_model"]))
    return {"model": meta["name"], "vhr_area_ha": round(grid.area_km2 * 100, 4), "dates": dates}


def evaluate_vhr_landcover(path: Any, grid: GridSpec, truth_dir: str) -> dict[str, Any]:
    """The class maps against the archive's LandCover.ai labels, per date and pooled over the dates.

    Labels come from the archive's own renderer (``eowatch.archive.vhr.render_vhr_labels``, the labels
    the model's card was scored with), for the archive's VHR dates that the store has; pixels of the
    grid outside the archive's VHR area and no-data pixels are not scored.

    Raises:
        InputError: ``truth_dir``'s parent is not an archive, or no date or pixel of the store is in its
            VHR area.
    """
    from eowatch.models.confusion import class_scores, confusion_matrix

    labels, origin = _archive_labels(Path(truth_dir).parent, _dates(path))
    rows, cols, inner = _overlap(grid, origin, next(iter(labels.values())).shape)
    cover, names, k = _open(path)["land_cover"], dict(VHR_LANDCOVER), len(VHR_LANDCOVER)
    per_date, total = [], np.zeros((k, k), np.int64)
    for t, day in enumerate(_dates(path)):
        if day not in labels:
            continue
        pred = np.asarray(cover[t, inner[0], inner[1]])
        cm = confusion_matrix(pred, labels[day][rows, cols], k)
        total += cm
        per_date.append({"date": day, **_summary(class_scores(cm, names))})
    if not per_date:
        raise InputError(f"no VHR date of the map is a VHR date of the archive {Path(truth_dir).parent}")
    return {
        "scope": "VHR pixels against the archive's LandCover.ai labels (render_vhr_labels)",
        **_summary(class_scores(total, names)),
        "confusion": total.tolist(),
        "dates": per_date,
    }


def _archive_labels(
    archive_dir: Path, days: Sequence[str]
) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """Labels of the archive's VHR dates among ``days`` (ISO day → ``(H, W)`` uint8) and the top-left
    corner ``(minx, maxy)`` of its VHR area."""
    from eowatch.archive.config import vhr_dates
    from eowatch.archive.vhr import render_vhr_labels
    from eowatch.archive.world import build_world
    from eowatch.models.vhr_landcover_data import archive_config

    world = build_world(archive_config(archive_dir))
    wanted = set(days)
    labels = {
        day.isoformat(): render_vhr_labels(world, k)
        for k, day in enumerate(vhr_dates(world.config))
        if day.isoformat() in wanted
    }
    if not labels:
        raise InputError(f"no VHR date of the map is a VHR date of the archive {archive_dir}")
    vhr = world.layout.vhr
    return labels, (vhr.minx, vhr.maxy)


def _overlap(
    grid: GridSpec, origin: tuple[float, float], shape: tuple[int, int]
) -> tuple[slice, slice, tuple[slice, slice]]:
    """Rows and columns of the label raster (top-left ``origin``, 1 m, ``shape``) and of the map's grid
    where they overlap."""
    minx, _, _, maxy = grid.bounds
    res = grid.resolution
    r0, c0 = round((origin[1] - maxy) / res), round((minx - origin[0]) / res)  # grid origin in labels
    h, w = grid.shape
    rows = slice(max(r0, 0), min(r0 + h, shape[0]))
    cols = slice(max(c0, 0), min(c0 + w, shape[1]))
    if rows.stop <= rows.start or cols.stop <= cols.start:
        raise InputError("the VHR grid does not overlap the archive's VHR area")
    inner = (slice(rows.start - r0, rows.stop - r0), slice(cols.start - c0, cols.stop - c0))
    return rows, cols, inner


def _summary(scores: dict[str, Any]) -> dict[str, Any]:
    """OA, kappa, mIoU and per-class IoU and F1 of ``class_scores``, rounded."""
    return {
        "oa": round(float(scores["oa"]), 4),
        "kappa": round(float(scores["kappa"]), 4),
        "miou": round(float(scores["miou"]), 4),
        "n_px": int(scores["n"]),
        "per_class": {
            name: {
                "iou": round(float(s["iou"]), 4),
                "f1": round(float(s["f1"]), 4),
                "n_truth": int(s["n_truth"]),
            }
            for name, s in scores["per_class"].items()
        },
    }


def publish_vhr_landcover(layout: RunLayout, grid: GridSpec, truth_dir: str | None) -> dict[str, Any]:
    """The summary of a run's finished VHR land-cover map on the VHR ``grid``: area per class and date
    and, with ``truth_dir``, the scores against the archive's labels."""
    path = layout.out / f"{STORE}.zarr"
    summary = vhr_landcover_statistics(path, grid)
    if truth_dir:
        summary["evaluation"] = evaluate_vhr_landcover(path, grid, truth_dir)
    return summary


def vhr_landcover_outputs(layout: RunLayout) -> dict[str, str]:
    """The summary's output URL of the VHR land-cover map, when it was written."""
    path = layout.out / f"{STORE}.zarr"
    return {"vhr_landcover_map": path.as_uri()} if (path / "zarr.json").exists() else {}
