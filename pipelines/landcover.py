"""Land-cover stage: the analysis cube's per-period S2 composites → a land-cover map per period.

Each chunk is read from the analysis cube with a halo of ``models.landcover.LANDCOVER_HALO`` px (half
the U-Net's receptive field, a multiple of its pooling cell, so reads of chunks on a 256 px grid stay on
the pooling grid) and each period goes through ``models.landcover.predict_landcover`` on the shared
engine (with the periods before it for a multi-period model, ``landcover.period_history``); the result
over the chunk equals whole-image inference to float rounding (no seams). The model
is loaded once per worker process (``models.registry.get`` is cached) and pinned to the worker's device.

The store ``landcover.zarr`` (Zarr v3, on the analysis grid, one time step per period) holds
``landcover`` (uint8 WorldCover-like codes: 10 tree cover, 30 grassland, 40 cropland, 50 built-up,
60 bare / sparse vegetation, 80 permanent water; 255 where the period has no clear observation; the
legend and colours in its attributes). Written and resumed like the other stages (ledger per chunk,
marked complete last). ``landcover_statistics`` gives the area per class per period and
``evaluate_landcover`` scores the map against an archive's planted land cover.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from eowatch.pipelines.grid import ChunkKey
from eowatch.pipelines.inference import halo_window, read_window
from eowatch.pipelines.ledger import RunLayout, write_chunks
from eowatch.pipelines.spec import CubeSpec
from eowatch.pipelines.zarr_store import create_template, set_attrs

__all__ = [
    "QUICKLOOK",
    "STORE",
    "LandCoverInputs",
    "check_landcover_model",
    "evaluate_landcover",
    "finalize_landcover",
    "init_landcover",
    "landcover_batch",
    "landcover_confusion",
    "landcover_region",
    "landcover_statistics",
    "landcover_variables",
    "render_landcover_quicklook",
]

#: Name of the land-cover store in a run's output (``<out>/landcover.zarr``).
STORE = "landcover"
_NODATA = 255
#: The land-cover quicklook of a run, beside its change quicklook (``<out>/landcover_quicklook.png``).
QUICKLOOK = "landcover_quicklook.png"


@dataclass(frozen=True)
class LandCoverInputs:
    """References a land-cover task needs (picklable, no arrays)."""

    cube_spec: dict[str, Any]
    """``CubeSpec.to_dict()`` of the analysis cube."""
    model: str
    """Registered land-cover model name."""
    cube_path: str
    """Analysis cube store (local path or ``s3://`` URL)."""
    store_path: str
    """Staging land-cover store."""
    ledger_path: str
    """Chunk ledger of this stage."""
    torch_threads: int = 1
    """Torch CPU threads per task."""


def check_landcover_model(name: str, spec: CubeSpec) -> None:
    """The model ``name`` is registered, shipped, a land-cover model, and fits the cube ``spec`` (its
    S2 bands and resolution). Reads the card only (no weights), before any service is touched.

    Raises:
        ModelError: unknown model, card not shipped, not a land-cover model, or a mismatch it names.
    """
    from eowatch.errors import ModelError
    from eowatch.models.card import ModelCard
    from eowatch.models.landcover import check_landcover_inputs
    from eowatch.models.registry import card_file_of

    card_file = card_file_of(name)
    if not card_file.is_file():
        raise ModelError(f"model {name!r} is registered but its card {card_file} is not shipped")
    check_landcover_inputs(ModelCard.read(card_file), spec.variables, spec.grid.resolution)


def landcover_variables(model_name: str) -> dict[str, tuple[np.dtype, Any, dict[str, Any]]]:
    """Variables of the land-cover store: the class map, its legend (code -> name) and colours."""
    from eowatch.models.card import ModelCard
    from eowatch.models.landcover import worldcover_codes
    from eowatch.models.registry import card_file_of

    card = ModelCard.read(card_file_of(model_name))
    codes = worldcover_codes(card)
    classes = [card.classes[i] for i in sorted(card.classes)]
    legend = {str(int(c)): info.name for c, info in zip(codes, classes, strict=True)}
    colours = {str(int(c)): list(info.colour) for c, info in zip(codes, classes, strict=True)}
    return {
        "landcover": (
            np.dtype("uint8"),
            _NODATA,
            {
                "long_name": f"land cover of the period's S2 composite ({model_name})",
                "flag_values": [int(c) for c in codes],
                "flag_meanings": " ".join(legend.values()),
                "legend": json.dumps(legend),
                "colours": json.dumps(colours),
                "nodata": _NODATA,
            },
        )
    }


def landcover_region(
    key: ChunkKey, spec: CubeSpec, model_name: str, cube: zarr.Group
) -> dict[str, np.ndarray]:
    """The land cover of one chunk for every period: ``{"landcover": uint8 (period, y, x)}``."""
    from eowatch.models.engine import pin_module, worker_device
    from eowatch.models.landcover import LANDCOVER_HALO, model_periods, period_history, predict_landcover
    from eowatch.models.registry import get
    from eowatch.pipelines.phases import phase

    model = get(model_name)
    pin_module(model.module, worker_device())
    ry, rx, cy, cx = halo_window(spec.grid, key, LANDCOVER_HALO)
    bands = read_window(cube, model.card.bands, ry, rx)  # (period, band, y, x) with the halo
    periods = model_periods(model.card)  # a multi-period model also sees the periods before each one
    with phase("infer"):
        maps = [
            predict_landcover(model, period_history(bands, t, periods), region=(cy, cx)).codes
            for t in range(len(bands))
        ]
    return {"landcover": np.stack(maps)}


def landcover_batch(keys: Sequence[tuple[int, int]], inputs: LandCoverInputs) -> list[dict[str, Any]]:
    """Dask task: map and write a batch of chunks, recording each in the ledger after its write."""
    import torch

    torch.set_num_threads(max(1, inputs.torch_threads))
    spec = CubeSpec.from_dict(inputs.cube_spec)
    cube = zarr.open_group(inputs.cube_path, mode="r", zarr_format=3)
    return write_chunks(
        keys,
        spec.grid,
        inputs.store_path,
        inputs.ledger_path,
        lambda key: landcover_region(key, spec, inputs.model, cube),
        lambda arrays: {"mapped_px": int((arrays["landcover"] != _NODATA).sum())},
        compute_phase="infer",
    )


def init_landcover(layout: RunLayout, spec: CubeSpec, model_name: str, provenance: dict[str, Any]) -> Any:
    """Create the land-cover staging store (metadata only, one time step per period) unless it exists."""
    from eowatch.models.registry import card_of

    path = layout.staging(STORE)
    if not (path / "zarr.json").exists():
        card = card_of(model_name)
        create_template(
            path,
            spec.grid,
            np.array([np.datetime64(a, "ns") for a, _ in spec.periods]),
            landcover_variables(model_name),
            attrs={
                "title": "eowatch land-cover maps",
                "eowatch_status": "in-progress",
                **provenance,
                "landcover_model": {
                    "name": card.name,
                    "version": card.version,
                    "sha256": card.weights_sha256,
                },
            },
            extra_coords={
                "period_end": ("time", np.array([np.datetime64(b, "ns") for _, b in spec.periods]))
            },
        )
    return path


def finalize_landcover(layout: RunLayout) -> Any:
    """Mark the staging store complete (its last write) and publish it."""
    set_attrs(layout.staging(STORE), {"eowatch_status": "complete"})
    return layout.publish(STORE)


def _open(path: Any) -> tuple[zarr.Array, dict[int, str]]:
    from eowatch.pipelines.zarr_store import zarr_store

    group = zarr.open_group(zarr_store(path, read_only=True), mode="r", zarr_format=3)
    arr = group["landcover"]
    return arr, {int(k): v for k, v in json.loads(str(arr.attrs["legend"])).items()}


def landcover_statistics(path: Any, spec: CubeSpec) -> dict[str, Any]:
    """Area per class (km²) per period of a land-cover store, read chunk by chunk (never whole)."""
    arr, legend = _open(path)
    n_periods = arr.shape[0]
    counts = np.zeros((n_periods, 256), np.int64)
    for key in spec.grid.chunks():
        ys, xs = spec.grid.chunk_slices(key)
        block = np.asarray(arr[:, ys, xs])
        for t in range(n_periods):
            counts[t] += np.bincount(block[t].ravel(), minlength=256)
    px_km2 = spec.grid.resolution**2 / 1e6
    periods = []
    for t, (start, end) in enumerate(spec.periods[:n_periods]):
        periods.append(
            {
                "period": [start, end],
                "mapped_km2": round(float(counts[t, list(legend)].sum()) * px_km2, 4),
                "nodata_km2": round(float(counts[t, _NODATA]) * px_km2, 4),
                "by_class_km2": {name: round(float(counts[t, c]) * px_km2, 4) for c, name in legend.items()},
            }
        )
    model = json.loads(str(zarr.open_group(_store(path), mode="r", zarr_format=3).attrs["landcover_model"]))
    return {"model": model["name"], "periods": periods}


def landcover_confusion(path: Any, spec: CubeSpec, truth_dir: str) -> tuple[np.ndarray, int, dict[int, str]]:
    """Confusion matrix (truth, predicted class index) pooled over periods against the planted land cover
    where it is stable over the season and unchanged (through the card's ``eowatch_landcover`` table),
    the number of such pixel-periods left nodata, and the class names by index."""
    from eowatch.models.confusion import confusion_matrix
    from eowatch.models.landcover import landcover_codes_lut
    from eowatch.models.registry import card_of
    from eowatch.models.stable_landcover import read_landcover
    from eowatch.pipelines.zarr_store import grid_coords

    arr, legend = _open(path)
    model = json.loads(str(zarr.open_group(_store(path), mode="r", zarr_format=3).attrs["landcover_model"]))
    card = card_of(model["name"])
    coords = grid_coords(spec.grid)
    truth = landcover_codes_lut(card)[read_landcover(truth_dir, coords["x"], coords["y"])]
    index_of = np.full(256, -1, dtype=np.int64)
    index_of[list(legend)] = [card.class_code(name) for name in legend.values()]
    k = len(card.classes)
    cm, unmapped = np.zeros((k, k), np.int64), 0
    for key in spec.grid.chunks():  # chunk by chunk: the map is never read whole
        ys, xs = spec.grid.chunk_slices(key)
        block, labels = index_of[np.asarray(arr[:, ys, xs])], truth[ys, xs]
        for t in range(block.shape[0]):
            cm += confusion_matrix(block[t], labels, k)
            unmapped += int(((block[t] < 0) & (labels >= 0)).sum())
    return cm, unmapped, {c: info.name for c, info in card.classes.items()}


def evaluate_landcover(path: Any, spec: CubeSpec, truth_dir: str) -> dict[str, Any]:
    """The maps of every period against the archive's planted land cover where it is stable.

    Pooled over periods: OA (unmapped labelled pixels count as errors), kappa, mIoU, macro F1 and
    per-class F1/IoU (``models.landcover.confusion_summary``).
    """
    from eowatch.models.landcover import confusion_summary
    from eowatch.models.registry import card_of

    cm, unmapped, _ = landcover_confusion(path, spec, truth_dir)
    model = json.loads(str(zarr.open_group(_store(path), mode="r", zarr_format=3).attrs["landcover_model"]))
    card = card_of(model["name"])
    s = confusion_summary(cm, card, unmapped)
    names = [info.name for _, info in sorted(card.classes.items())]
    return {
        "scope": "pixel-periods whose planted land cover is stable over the season",
        "n_px": int(s["n"]),  # type: ignore[call-overload]
        "unmapped_px": unmapped,
        **{k: round(float(s[k]), 4) for k in ("oa", "kappa", "miou", "macro_f1")},  # type: ignore[arg-type]
        "f1_by_class": {n: round(float(s[n]["f1"]), 4) for n in names},  # type: ignore[index]
        "iou_by_class": {n: round(float(s[n]["iou"]), 4) for n in names},  # type: ignore[index]
    }


def _store(path: Any) -> Any:
    from eowatch.pipelines.zarr_store import zarr_store

    return zarr_store(path, read_only=True)


def render_landcover_quicklook(cube_path: Any, landcover_path: Any, spec: CubeSpec, out: Any) -> Any:
    """PNG: true colour of the last period beside its land-cover map in the legend's colours (no data
    grey), both strided down to at most ``publish.QUICKLOOK_MAX_PX`` px; written atomically to ``out``."""
    from eowatch.pipelines.publish import (
        NO_OBSERVATION_GREY,
        last_period_rgb,
        quicklook_step,
        write_side_by_side,
    )

    step = quicklook_step(spec)
    rgb = last_period_rgb(cube_path, step)
    arr, _ = _open(landcover_path)
    lut = np.tile(np.array(NO_OBSERVATION_GREY, np.uint8), (256, 1))
    for code, colour in json.loads(str(arr.attrs["colours"])).items():
        lut[int(code)] = colour
    return write_side_by_side(rgb, lut[np.asarray(arr[-1, ::step, ::step])], out)
