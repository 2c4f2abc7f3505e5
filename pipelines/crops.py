"""Crop-type stage: the analysis cube's monthly series → a crop-type map for the season, chunk by chunk.

Each chunk's ``(period, band, y, x)`` block goes through the crop-type model
(``models.croptype.predict_croptype``, an L-TAE per pixel); pixels are independent, so chunks need no
halo and the map equals whole-image inference exactly. The model is loaded once per worker process
(``models.registry.get`` is cached). The store ``crop_type.zarr`` has one time step, the season (the
run's first period start; ``season_end`` holds the last period's end), on the analysis grid:

- ``crop_type`` (uint8): the model's class code (legend in the attributes), 255 where no month the
  model was trained on was observed;
- ``p_<class>`` (float32, one per class): the softmax probability of that class, NaN where no data.

Written and resumed like the other stages (ledger per chunk, marked complete last).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from eowatch.pipelines.grid import ChunkKey
from eowatch.pipelines.inference import read_window
from eowatch.pipelines.ledger import RunLayout, write_chunks
from eowatch.pipelines.spec import CubeSpec
from eowatch.pipelines.zarr_store import create_template, set_attrs

#: Name of the crop-type store in a run's output (``<out>/crop_type.zarr``).
STORE = "crop_type"


@dataclass(frozen=True)
class CropInputs:
    """References a crop-type task needs (picklable, no arrays)."""

    cube_spec: dict[str, Any]
    model: str
    cube_path: str
    store_path: str
    ledger_path: str
    torch_threads: int = 1


def period_months(spec: CubeSpec) -> list[int]:
    """Month of the year (1-12) of each period of the cube (its start)."""
    return [int(str(a)[5:7]) for a, _ in spec.periods]


def crop_variables(model_name: str) -> dict[str, tuple[np.dtype, Any, dict[str, Any]]]:
    """Variables of the crop-type store: the class map and one probability per class (card legend)."""
    from eowatch.models.card import ModelCard
    from eowatch.models.croptype import NODATA_CLASS
    from eowatch.models.registry import card_file_of

    card = ModelCard.read(card_file_of(model_name))
    legend = {str(code): info.name for code, info in sorted(card.classes.items())}
    out: dict[str, tuple[np.dtype, Any, dict[str, Any]]] = {
        "crop_type": (
            np.dtype("uint8"),
            NODATA_CLASS,
            {
                "long_name": f"crop type of the season ({model_name})",
                "flag_values": [int(c) for c in legend],
                "flag_meanings": " ".join(legend.values()),
                "legend": json.dumps(legend),
                "nodata": NODATA_CLASS,
            },
        )
    }
    for code, info in sorted(card.classes.items()):
        out[f"p_{info.name}"] = (
            np.dtype("float32"),
            np.nan,
            {"long_name": f"probability of {info.name} (class {code})", "units": "1"},
        )
    return out


def crop_region(key: ChunkKey, spec: CubeSpec, model_name: str, cube: zarr.Group) -> dict[str, np.ndarray]:
    """The crop-type variables of one chunk: arrays ``(1, y, x)``."""
    from eowatch.models.croptype import predict_croptype
    from eowatch.models.engine import pin_module, worker_device
    from eowatch.models.registry import get
    from eowatch.pipelines.phases import phase

    model = get(model_name)
    pin_module(model.module, worker_device())
    ys, xs = spec.grid.chunk_slices(key)
    series = read_window(cube, model.card.bands, ys, xs)  # (period, band, y, x)
    with phase("infer"):
        result = predict_croptype(model, series, period_months(spec))
    out = {"crop_type": result.classes[None]}
    for i, (_, info) in enumerate(sorted(model.card.classes.items())):
        out[f"p_{info.name}"] = result.probabilities[i][None].astype(np.float32)
    return out


def crop_batch(keys: Sequence[tuple[int, int]], inputs: CropInputs) -> list[dict[str, Any]]:
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
        lambda key: crop_region(key, spec, inputs.model, cube),
        lambda arrays: {"mapped_px": int((arrays["crop_type"] != 255).sum())},
        compute_phase="infer",
    )


def init_crops(layout: RunLayout, spec: CubeSpec, model_name: str, provenance: dict[str, Any]) -> Any:
    """Create the crop-type staging store (metadata only) unless it already exists."""
    from eowatch.models.registry import get

    path = layout.staging(STORE)
    if not (path / "zarr.json").exists():
        card = get(model_name).card
        create_template(
            path,
            spec.grid,
            np.array([np.datetime64(spec.periods[0][0], "ns")]),
            crop_variables(model_name),
            attrs={
                "title": "eowatch crop-type map",
                "eowatch_status": "in-progress",
                **provenance,
                "crop_model": {"name": card.name, "version": card.version, "sha256": card.weights_sha256},
            },
            extra_coords={"season_end": ("time", np.array([np.datetime64(spec.periods[-1][1], "ns")]))},
        )
    return path


def finalize_crops(layout: RunLayout) -> Any:
    set_attrs(layout.staging(STORE), {"eowatch_status": "complete"})
    return layout.publish(STORE)


def crop_statistics(path: Any, spec: CubeSpec) -> dict[str, Any]:
    """Area per crop class (km²) of a crop-type store, read chunk by chunk (never the whole map)."""
    group = zarr.open_group(_store(path), mode="r", zarr_format=3)
    arr = group["crop_type"]
    legend = {int(k): v for k, v in json.loads(str(arr.attrs["legend"])).items()}
    counts = np.zeros(256, np.int64)
    for key in spec.grid.chunks():
        ys, xs = spec.grid.chunk_slices(key)
        counts += np.bincount(np.asarray(arr[0, ys, xs]).ravel(), minlength=256)
    px_km2 = spec.grid.resolution**2 / 1e6
    return {
        "model": json.loads(str(group.attrs["crop_model"]))["name"],
        "mapped_km2": round(float(counts[list(legend)].sum()) * px_km2, 4),
        "nodata_km2": round(float(counts[255]) * px_km2, 4),
        "by_class_km2": {name: round(float(counts[code]) * px_km2, 4) for code, name in legend.items()},
    }


def crop_confusion(path: Any, spec: CubeSpec, truth_dir: str) -> tuple[np.ndarray, dict[int, str]]:
    """Confusion matrix (truth class, predicted class) of the map against the planted land cover where it
    is stable over the season and unchanged (the archive's land cover through the card's
    ``eowatch_landcover`` mapping), and the class names by code."""
    from eowatch.models.confusion import confusion_matrix
    from eowatch.models.croptype import CROP_CLASSES
    from eowatch.models.stable_landcover import landcover_to_crop, read_landcover
    from eowatch.pipelines.zarr_store import grid_coords

    coords = grid_coords(spec.grid)
    truth = landcover_to_crop(read_landcover(truth_dir, coords["x"], coords["y"]))
    group = zarr.open_group(_store(path), mode="r", zarr_format=3)
    names = {c: info.name for c, info in CROP_CLASSES.items()}
    cm = np.zeros((len(names), len(names)), np.int64)
    for key in spec.grid.chunks():  # chunk by chunk: the map is never read whole
        ys, xs = spec.grid.chunk_slices(key)
        pred = np.asarray(group["crop_type"][0, ys, xs]).astype(np.int64)
        cm += confusion_matrix(pred, truth[ys, xs], len(names), valid=pred != 255)
    return cm, names


def evaluate_crops(path: Any, spec: CubeSpec, truth_dir: str) -> dict[str, Any]:
    """The map against the archive's planted land cover where it is stable over the season.

    Scored pixels: land cover unchanged from start to end and no planted change (the truth's crop
    classes through the card's ``eowatch_landcover`` mapping); OA, kappa, macro F1, per-class F1/IoU.
    Unmapped pixels (no trained month observed) count as errors.
    """
    from eowatch.models.confusion import class_scores

    cm, names = crop_confusion(path, spec, truth_dir)
    unmapped = _unmapped_labelled(path, spec, truth_dir)
    scores = class_scores(cm, names)
    n = int(scores["n"]) + unmapped  # type: ignore[call-overload]
    oa = float(np.trace(cm)) / n if n else 0.0
    per_class = scores["per_class"]
    assert isinstance(per_class, dict)
    return {
        "scope": "pixels whose planted land cover is stable over the season",
        "n_px": n,
        "unmapped_px": unmapped,
        "oa": round(oa, 4),
        "kappa": round(float(scores["kappa"]), 4),  # type: ignore[arg-type]
        "macro_f1": round(float(scores["macro_f1"]), 4),  # type: ignore[arg-type]
        "miou": round(float(scores["miou"]), 4),  # type: ignore[arg-type]
        "f1_by_class": {k: round(float(v["f1"]), 4) for k, v in per_class.items()},
        "iou_by_class": {k: round(float(v["iou"]), 4) for k, v in per_class.items()},
    }


def _unmapped_labelled(path: Any, spec: CubeSpec, truth_dir: str) -> int:
    """Labelled truth pixels the map left unmapped (255)."""
    from eowatch.models.stable_landcover import landcover_to_crop, read_landcover
    from eowatch.pipelines.zarr_store import grid_coords

    coords = grid_coords(spec.grid)
    truth = landcover_to_crop(read_landcover(truth_dir, coords["x"], coords["y"]))
    group = zarr.open_group(_store(path), mode="r", zarr_format=3)
    total = 0
    for key in spec.grid.chunks():
        ys, xs = spec.grid.chunk_slices(key)
        pred = np.asarray(group["crop_type"][0, ys, xs])
        total += int(((pred == 255) & (truth[ys, xs] >= 0)).sum())
    return total


def _store(path: Any) -> Any:
    from eowatch.pipelines.zarr_store import zarr_store

    return zarr_store(path, read_only=True)
