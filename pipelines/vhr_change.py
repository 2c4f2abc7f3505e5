"""VHR change stage: the VHR cube's acquisitions → a change map per pair of consecutive dates, by chunk.

Each task reads its chunk of ``vhr.zarr`` plus the halo the model's tiling asks for
(``models.vhr_change.chunk_tiling``: 128 px of context, windows on the 16 px pooling grid, the image
padded with no data to a multiple of 128 px as ``predict_vhr_pairs`` pads a whole image), so a chunk's
output equals whole-image inference within the tolerance of docs/models.md (1e-4 in probability). Every
date of the chunk is encoded once and each consecutive pair ``(t, t + 1)`` decoded; first→last is not
written (its time coordinate would collide with the last consecutive pair's; call ``predict_vhr_pairs``
with ``pairs=[(0, T - 1)]`` for it). The model is loaded once per worker process.

The store ``vhr_change.zarr`` is on the VHR grid (1 m, nested in the analysis grid), one time step per
pair, ``time`` = the later date, ``date_before`` = the earlier one:

- ``change_probability`` (float32): softmax probability of change, NaN where either date has no data;
- ``change_mask`` (uint8): 1 where the probability is at or above the card's decision threshold.

Written and resumed like the other stages (ledger per chunk, marked complete last).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from eowatch.errors import InputError
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.ledger import RunLayout, write_chunks
from eowatch.pipelines.phases import phase
from eowatch.pipelines.zarr_store import create_template, set_attrs

if TYPE_CHECKING:  # torch loads on the first chunk, not when the flow imports its stages
    from eowatch.models.card import ModelCard
    from eowatch.models.vhr_change import ChunkTiling
    from eowatch.models.weights import LoadedModel

#: Name of the VHR change store in a run's output (``<out>/vhr_change.zarr``).
STORE = "vhr_change"


@dataclass(frozen=True)
class VhrChangeInputs:
    """References a VHR change task needs (picklable, no arrays)."""

    grid: dict[str, Any]
    """The VHR grid (``GridSpec.to_dict``)."""
    pairs: tuple[tuple[int, int], ...]
    """Date indices ``(before, after)`` of the VHR cube's time axis, one per output time step."""
    model: str
    vhr_path: str
    """The finished VHR cube (local path or s3:// URL)."""
    store_path: str
    ledger_path: str
    threshold: float
    """Change probability at or above which ``change_mask`` is 1."""
    torch_threads: int = 1


@dataclass(frozen=True)
class ChunkWindow:
    """Where one chunk is read and predicted (px of the VHR grid, see ``chunk_window``)."""

    rows: slice
    """Rows read from the cube (clipped to the grid)."""
    cols: slice
    """Columns read from the cube."""
    pad: tuple[int, int]
    """No-data rows and columns appended below and right of the read (the whole image's padding)."""
    region: tuple[slice, slice]
    """The predicted region inside the padded read: the chunk widened to the pooling grid."""
    crop: tuple[slice, slice]
    """The chunk inside the predicted region."""


def consecutive_pairs(n_dates: int) -> tuple[tuple[int, int], ...]:
    """``((0, 1), (1, 2), ...)``: the date pairs a run writes (empty with fewer than two dates)."""
    return tuple((t, t + 1) for t in range(n_dates - 1))


def _axis(start: int, stop: int, size: int, tiling: ChunkTiling) -> tuple[slice, int, slice, slice]:
    """One axis of ``chunk_window``: read slice, padding, region and crop."""
    padded = -(-size // tiling.align) * tiling.align
    a0 = start - start % tiling.cell
    a1 = min(-(-stop // tiling.cell) * tiling.cell, padded)
    w0, w1 = max(a0 - tiling.halo, 0), min(a1 + tiling.halo, padded)
    read = slice(w0, min(w1, size))
    return read, w1 - read.stop, slice(a0 - w0, a1 - w0), slice(start - a0, stop - a0)


def chunk_window(shape: tuple[int, int], rows: slice, cols: slice, tiling: ChunkTiling) -> ChunkWindow:
    """The read of the chunk ``rows`` x ``cols`` of an image of ``shape`` (px) whose prediction equals the
    whole image's: the chunk widened to whole pooling cells, plus ``tiling.halo`` px of context, clipped
    to the image padded to a multiple of ``tiling.align`` (the padding is no data, as in
    ``predict_vhr_pairs``). Every offset is then a multiple of the pooling cell."""
    ry, py, gy, cy = _axis(rows.start, rows.stop, shape[0], tiling)
    rx, px, gx, cx = _axis(cols.start, cols.stop, shape[1], tiling)
    return ChunkWindow(ry, rx, (py, px), (gy, gx), (cy, cx))


def read_vhr_window(vhr: zarr.Group, bands: Sequence[str], window: ChunkWindow) -> np.ndarray:
    """``(T, C, h, w)`` float32 digital numbers of the window, NaN where a date has no data (every band
    0 in the VHR cube) and in the padding."""
    from eowatch.models.vhr_change import dn_to_float

    with phase("read"):
        dn = np.stack([np.asarray(vhr[b][:, window.rows, window.cols]) for b in bands], axis=1)
    images = dn_to_float(dn)
    if any(window.pad):
        widths = [(0, 0), (0, 0), (0, window.pad[0]), (0, window.pad[1])]
        images = np.pad(images, widths, constant_values=np.nan)
    return images


def predict_chunk(
    model: LoadedModel, images: np.ndarray, window: ChunkWindow, pairs: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Change probabilities ``(len(pairs), h, w)`` float32 of the chunk, NaN where either date of a pair
    has no data. ``images``: ``read_vhr_window`` of ``window``."""
    from eowatch.models.engine import module_device
    from eowatch.models.vhr_change import predict_vhr_pairs, vhr_engine_config

    config = vhr_engine_config(module_device(model.module))
    # one window per chunk, so that it starts on the pooling grid (balanced cores of a larger region
    # might not)
    side = max(s.stop - s.start for s in window.region)
    config = replace(config, tile=max(config.tile, side))
    probs = predict_vhr_pairs(model, images, pairs, region=window.region, config=config)[:, 1]
    (gy, gx), (cy, cx) = window.region, window.crop
    missing = np.isnan(images[:, 0, gy, gx][:, cy, cx])  # (T, h, w)
    out = probs[:, cy, cx].astype(np.float32)
    for k, (i, j) in enumerate(pairs):
        out[k][missing[i] | missing[j]] = np.nan
    return out


def vhr_change_region(
    key: ChunkKey, grid: GridSpec, inputs: VhrChangeInputs, vhr: zarr.Group
) -> dict[str, np.ndarray]:
    """The VHR change variables of one chunk: arrays ``(pair, y, x)``."""
    from eowatch.models.engine import pin_module, worker_device
    from eowatch.models.registry import get
    from eowatch.models.vhr_change import chunk_tiling

    model = get(inputs.model)
    pin_module(model.module, worker_device())
    ys, xs = grid.chunk_slices(key)
    window = chunk_window(grid.shape, ys, xs, chunk_tiling(model.card))
    images = read_vhr_window(vhr, model.card.bands, window)
    with phase("infer"):
        p = predict_chunk(model, images, window, inputs.pairs)
    mask = (np.nan_to_num(p, nan=0.0) >= inputs.threshold).astype(np.uint8)
    return {"change_probability": p, "change_mask": mask}


def vhr_change_batch(keys: Sequence[tuple[int, int]], inputs: VhrChangeInputs) -> list[dict[str, Any]]:
    """Dask task: predict and write a batch of VHR chunks, recording each in the ledger after its write."""
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
        lambda key: vhr_change_region(key, grid, inputs, vhr),
        lambda arrays: {"changed_px": int(arrays["change_mask"].sum())},
        compute_phase="infer",
    )


def vhr_change_variables(
    model_name: str, threshold: float
) -> dict[str, tuple[np.dtype, Any, dict[str, Any]]]:
    """Variables of the VHR change store (name → dtype, fill value, attributes)."""
    return {
        "change_probability": (
            np.dtype("float32"),
            np.nan,
            {"long_name": f"probability of change since date_before ({model_name})", "units": "1"},
        ),
        "change_mask": (
            np.dtype("uint8"),
            0,
            {
                "long_name": f"change detected (1) or not (0) at probability >= {threshold:g}",
                "flag_values": [0, 1],
                "threshold": threshold,
            },
        ),
    }


def check_vhr_cube(card: ModelCard, bands: Sequence[str], resolution_m: float) -> None:
    """The VHR change model ``card`` fits a VHR cube of ``bands`` at ``resolution_m`` (metres).

    Raises:
        ModelError: not a VHR change model, a band the cube lacks, or another resolution (named).
    """
    from eowatch.models.vhr_change import check_vhr_inputs

    check_vhr_inputs(card, tuple(bands), resolution_m)


def init_vhr_change(
    layout: RunLayout,
    grid: GridSpec,
    days: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    model_name: str,
    provenance: dict[str, Any],
) -> Any:
    """Create the VHR change staging store (metadata only) unless an earlier attempt did.

    Args:
        days: the VHR cube's acquisition days (datetime64), in its time order.
        pairs: ``(before, after)`` indices into ``days``, one time step each.

    Raises:
        InputError: no pair (fewer than two dates).
    """
    from eowatch.models.registry import get

    if not pairs:
        raise InputError("VHR change needs at least two VHR acquisition dates")
    path = layout.staging(STORE)
    if not (path / "zarr.json").exists():
        card = get(model_name).card
        before = np.array([days[i] for i, _ in pairs]).astype("datetime64[ns]")
        after = np.array([days[j] for _, j in pairs]).astype("datetime64[ns]")
        create_template(
            path,
            grid,
            after,
            vhr_change_variables(model_name, card.decision_threshold),
            attrs={
                "title": "eowatch VHR change map (pairs of consecutive VHR dates)",
                "eowatch_status": "in-progress",
                **provenance,
                "vhr_change_model": {
                    "name": card.name,
                    "version": card.version,
                    "sha256": card.weights_sha256,
                    "threshold": card.decision_threshold,
                },
            },
            extra_coords={"date_before": ("time", before)},
        )
    return path


def finalize_vhr_change(layout: RunLayout) -> Any:
    set_attrs(layout.staging(STORE), {"eowatch_status": "complete"})
    return layout.publish(STORE)


# --- publish: area, scores against planted truth, quicklook ----------------------------------------------


def _open(path: Any) -> zarr.Group:
    from eowatch.pipelines.zarr_store import open_group

    return open_group(path)


def pair_dates(path: Any) -> list[tuple[str, str]]:
    """``(date_before, date_after)`` ISO days of each time step of a VHR change store."""
    import xarray as xr

    from eowatch.pipelines.zarr_store import zarr_store

    ds = xr.open_zarr(zarr_store(path, read_only=True), consolidated=True)
    before = np.datetime_as_string(ds["date_before"].values, unit="D")
    after = np.datetime_as_string(ds["time"].values, unit="D")
    return [(str(a), str(b)) for a, b in zip(before, after, strict=True)]


def vhr_change_statistics(path: Any, grid: GridSpec) -> dict[str, Any]:
    """Changed area per pair (m² and ha) of a VHR change store, read chunk by chunk.

    ``observed_m2``: pixels with a probability (both dates acquired); ``changed_any_m2``: changed in at
    least one pair.
    """
    group = _open(path)
    prob, mask = group["change_probability"], group["change_mask"]
    n = mask.shape[0]
    changed, observed = np.zeros(n, np.int64), np.zeros(n, np.int64)
    any_changed = 0
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        m = np.asarray(mask[:, ys, xs]).astype(bool)
        changed += m.reshape(n, -1).sum(1)
        observed += np.isfinite(np.asarray(prob[:, ys, xs])).reshape(n, -1).sum(1)
        any_changed += int(m.any(0).sum())
    px_m2 = grid.resolution**2
    meta = _model_meta(group)
    pairs = [
        {
            "date_before": a,
            "date_after": b,
            "changed_m2": round(float(c) * px_m2, 2),
            "changed_ha": round(float(c) * px_m2 / 1e4, 4),
            "observed_m2": round(float(o) * px_m2, 2),
        }
        for (a, b), c, o in zip(pair_dates(path), changed, observed, strict=True)
    ]
    return {
        "model": meta["name"],
        "threshold": meta["threshold"],
        "vhr_area_m2": round(grid.area_km2 * 1e6, 2),
        "vhr_area_ha": round(grid.area_km2 * 100, 4),
        "changed_any_m2": round(any_changed * px_m2, 2),
        "changed_any_ha": round(any_changed * px_m2 / 1e4, 4),
        "pairs": pairs,
    }


def _model_meta(group: zarr.Group) -> dict[str, Any]:
    return json.loads(str(group.attrs["vhr_change_model"]))


def _days_since_epoch(iso: str) -> int:
    return int((np.datetime64(iso, "D") - np.datetime64("1970-01-01", "D")).astype(int))


def evaluate_vhr_change(path: Any, grid: GridSpec, truth_dir: str) -> dict[str, Any]:
    """The VHR change masks against the archive's planted change, per pair and pooled over the pairs.

    A pixel is changed between two dates when its planted state differs on them
    (``models.vhr_data.PlantedChange.label``: the labels the model's card was scored with); labels are on
    the 10 m truth grid, each covering ``factor`` x ``factor`` VHR pixels. Pixels without a probability
    (a date not acquired) are not scored.

    Raises:
        InputError: ``truth_dir``'s parent is not an archive, or its truth does not cover the VHR grid.
    """
    from eowatch.models.confusion import class_scores, confusion_matrix
    from eowatch.models.vhr_data import read_planted_change

    planted = read_planted_change(Path(truth_dir).parent, grid.bounds)
    h10, w10 = planted.change_type.shape
    factor = grid.shape[0] // max(h10, 1)
    if factor < 1 or (h10 * factor, w10 * factor) != grid.shape:
        raise InputError(f"the planted truth in {truth_dir} does not cover the VHR grid {grid.bounds}")
    group = _open(path)
    names = {0: "no_change", 1: "change"}
    per_pair, total = [], np.zeros((2, 2), np.int64)
    for k, (a, b) in enumerate(pair_dates(path)):
        label = planted.label(_days_since_epoch(a), _days_since_epoch(b))
        cm = np.zeros((2, 2), np.int64)
        for key in grid.chunks():  # chunk by chunk: the map is never read whole
            ys, xs = grid.chunk_slices(key)
            truth = label[np.arange(ys.start, ys.stop) // factor][:, np.arange(xs.start, xs.stop) // factor]
            pred = np.asarray(group["change_mask"][k, ys, xs]).astype(np.int64)
            valid = np.isfinite(np.asarray(group["change_probability"][k, ys, xs]))
            cm += confusion_matrix(pred, truth.astype(np.int64), 2, valid=valid)
        total += cm
        per_pair.append({"date_before": a, "date_after": b, **_binary(class_scores(cm, names))})
    return {
        "scope": "VHR pixels of consecutive-date pairs against the planted change state (10 m truth)",
        **_binary(class_scores(total, names)),
        "confusion": total.tolist(),
        "pairs": per_pair,
    }


def _binary(scores: dict[str, Any]) -> dict[str, Any]:
    """Precision, recall, F1, IoU of the change class, kappa, OA and pixel counts of ``class_scores``."""
    change = scores["per_class"]["change"]
    return {
        "precision": round(float(change["precision"]), 4),
        "recall": round(float(change["recall"]), 4),
        "f1": round(float(change["f1"]), 4),
        "iou": round(float(change["iou"]), 4),
        "kappa": round(float(scores["kappa"]), 4),
        "oa": round(float(scores["oa"]), 4),
        "n_px": int(scores["n"]),
        "n_changed_truth": int(change["n_truth"]),
        "n_changed_pred": int(change["n_pred"]),
    }


#: Longest side of the VHR change quicklook, pixels (each of its two panels).
QUICKLOOK_MAX_PX = 1024
#: The VHR change quicklook of a run, beside its change quicklook (``<out>/vhr_change_quicklook.png``).
QUICKLOOK = "vhr_change_quicklook.png"


def publish_vhr_change(layout: RunLayout, grid: GridSpec, truth_dir: str | None) -> dict[str, Any]:
    """The summary of a run's finished VHR change map on the VHR ``grid`` (changed area per pair and,
    with ``truth_dir``, the scores against the planted change); writes its quicklook."""
    path = layout.out / f"{STORE}.zarr"
    summary = vhr_change_statistics(path, grid)
    if truth_dir:
        summary["evaluation"] = evaluate_vhr_change(path, grid, truth_dir)
    render_vhr_quicklook(layout.vhr, path, layout.out / QUICKLOOK)
    return summary


def vhr_change_outputs(layout: RunLayout) -> dict[str, str]:
    """The summary's output URLs of the VHR change map and its quicklook, when the map was written."""
    path = layout.out / f"{STORE}.zarr"
    if not (path / "zarr.json").exists():
        return {}
    return {"vhr_change_map": path.as_uri(), "vhr_change_quicklook": (layout.out / QUICKLOOK).as_uri()}


def render_vhr_quicklook(vhr_path: Any, change_path: Any, out: Any) -> Any:
    """PNG: true colour of the last VHR date beside it with the pixels changed in any pair in the card's
    change colour (both downsampled by striding to at most ``QUICKLOOK_MAX_PX``)."""
    from PIL import Image

    from eowatch.models.card import ModelCard
    from eowatch.models.registry import card_file_of
    from eowatch.pipelines.ledger import write_atomic

    vhr, change = _open(vhr_path), _open(change_path)
    h, w = vhr["red"].shape[-2:]
    step = max(1, math.ceil(max(h, w) / QUICKLOOK_MAX_PX))
    rgb = np.stack([np.asarray(vhr[b][-1, ::step, ::step]) for b in ("red", "green", "blue")], axis=-1)
    changed = np.asarray(change["change_mask"][:, ::step, ::step]).max(0).astype(bool)
    card = ModelCard.read(card_file_of(_model_meta(change)["name"]))
    colour = next((info.colour for info in card.classes.values() if info.name == "change"), (230, 25, 75))
    overlay = rgb.copy()
    overlay[changed] = colour
    gap = np.full((rgb.shape[0], 8, 3), 255, np.uint8)
    png = io.BytesIO()
    Image.fromarray(np.concatenate([rgb, gap, overlay], axis=1)).save(png, format="PNG", optimize=True)
    return write_atomic(out, png.getvalue())
