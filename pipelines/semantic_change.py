"""Semantic change stage: consecutive periods of the analysis cube → change and its from/to land cover.

A semantic change model (``siamese-s2s1-semantic``; task ``semantic-change-detection``) maps every
transition of the cube's monthly S2 + S1 series. Each chunk is read with a halo of half the model's
receptive field and goes through ``models.siamese_semantic.predict_semantic_series`` on the shared
engine, given each period's season (its middle day); the chunk equals whole-image inference to float
rounding (no seams). A **conditional** model (``siamese-s2s1-conditional``) also needs the land cover
of the earlier period: the stage takes it from ``CONDITION_MODEL``'s from-head (argmax), predicted over
a halo twice as wide so that map is exact where the conditional model reads it. (Its card says so: a
predicted map gives no better scores than the semantic model alone; a land-cover product of the
earlier period would.)

The store ``semantic_change.zarr`` (Zarr v3, on the analysis grid, one time step per transition;
``time`` = the later period's start, ``period_before`` = the earlier one's) holds

* ``change_probability`` float32, NaN where either period has no observation;
* ``from_class`` and ``to_class`` uint8, SECOND's maps in ``SEMANTIC_CLASSES`` codes (0 no change,
  1..8 the archive's ``LANDCOVER`` classes), decoded at the card's decision threshold by
  ``decode_semantic`` (a change always changes the class); 255 where either period has no observation.

Written and resumed like the other stages (ledger per chunk, marked complete last).
``semantic_change_statistics`` gives the changed area per transition and per (from → to) pair, and
``evaluate_semantic_change`` scores the maps chunk by chunk against an archive's planted truth (SeK,
mIoU, Fscd, binary and per-type scores, as ``models.semantic_eval``).
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
    "CONDITION_MODEL",
    "QUICKLOOK",
    "STORE",
    "SemanticChangeInputs",
    "check_semantic_change_model",
    "evaluate_semantic_change",
    "finalize_semantic_change",
    "init_semantic_change",
    "render_semantic_change_quicklook",
    "semantic_change_batch",
    "semantic_change_halo",
    "semantic_change_region",
    "semantic_change_statistics",
    "semantic_change_variables",
]

#: Name of the store in a run's output (``<out>/semantic_change.zarr``).
STORE = "semantic_change"
#: The semantic model whose from-head gives a conditional model its pre-change land cover.
CONDITION_MODEL = "siamese-s2s1-semantic"
#: The quicklook of the stage (``<out>/semantic_change_quicklook.png``).
QUICKLOOK = "semantic_change_quicklook.png"
_NODATA = 255


@dataclass(frozen=True)
class SemanticChangeInputs:
    """References a semantic change task needs (picklable, no arrays)."""

    cube_spec: dict[str, Any]
    """``CubeSpec.to_dict()`` of the analysis cube."""
    model: str
    """Registered semantic change model name."""
    cube_path: str
    """Analysis cube store (local path or ``s3://`` URL)."""
    store_path: str
    """Staging store."""
    ledger_path: str
    """Chunk ledger of this stage."""
    threshold: float
    """Decision threshold on p(change) (the card's)."""
    torch_threads: int = 1
    """Torch CPU threads per task."""


def check_semantic_change_model(name: str, spec: CubeSpec) -> None:
    """The model ``name`` is registered, shipped, a semantic change model, and fits the cube ``spec`` (its
    bands and resolution, at least two periods); a conditional model also needs ``CONDITION_MODEL``.
    Reads the cards only (no weights).

    Raises:
        ModelError: unknown model, card not shipped, another task, or a mismatch it names.
    """
    from eowatch.errors import ModelError
    from eowatch.models.card import ModelCard
    from eowatch.models.registry import card_file_of
    from eowatch.models.siamese_semantic import check_semantic_inputs

    card_file = card_file_of(name)
    if not card_file.is_file():
        raise ModelError(f"model {name!r} is registered but its card {card_file} is not shipped")
    card = ModelCard.read(card_file)
    check_semantic_inputs(card, spec.variables, spec.grid.resolution)
    if card.architecture_args.get("conditional"):
        source = ModelCard.read(card_file_of(CONDITION_MODEL))
        check_semantic_inputs(source, spec.variables, spec.grid.resolution)
    if len(spec.periods) < 2:
        raise ModelError(f"model {name!r} compares periods: the run has {len(spec.periods)} period")


def semantic_change_halo(model_name: str) -> int:
    """Halo (px) of a chunk's read: half the model's receptive field, plus half the condition model's
    for a conditional model (its predicted land cover must be exact where the model reads it)."""
    from eowatch.models.registry import get

    module = get(model_name).module
    halo = module.receptive_field // 2
    if module.conditional:
        halo += get(CONDITION_MODEL).module.receptive_field // 2
    return halo


def semantic_change_variables(model_name: str) -> dict[str, tuple[np.dtype, Any, dict[str, Any]]]:
    """Variables of the store: p(change) and the from/to maps with their legend and colours."""
    from eowatch.models.siamese_semantic import LANDCOVER_COLOURS, SEMANTIC_CLASSES

    legend = json.dumps({str(c): name for c, name in SEMANTIC_CLASSES.items()})
    colours = json.dumps({str(c): list(rgb) for c, rgb in LANDCOVER_COLOURS.items()})
    classes = {
        "flag_values": list(SEMANTIC_CLASSES),
        "flag_meanings": " ".join(SEMANTIC_CLASSES.values()),
        "legend": legend,
        "colours": colours,
        "nodata": _NODATA,
    }
    return {
        "change_probability": (
            np.dtype("float32"),
            np.float32(np.nan),
            {"long_name": f"probability of change between the two periods ({model_name})", "units": "1"},
        ),
        "from_class": (
            np.dtype("uint8"),
            _NODATA,
            {"long_name": "land cover of the earlier period where changed (0 = no change)", **classes},
        ),
        "to_class": (
            np.dtype("uint8"),
            _NODATA,
            {"long_name": "land cover of the later period where changed (0 = no change)", **classes},
        ),
    }


def semantic_change_region(
    key: ChunkKey, spec: CubeSpec, model_name: str, cube: zarr.Group, threshold: float
) -> dict[str, np.ndarray]:
    """Every transition of one chunk: ``change_probability`` float32 and ``from_class``/``to_class``
    uint8, each ``(period - 1, y, x)``."""
    from eowatch.models.engine import pin_module, worker_device
    from eowatch.models.predict import season_days
    from eowatch.models.registry import get
    from eowatch.models.siamese_semantic import decode_semantic, predict_semantic_series
    from eowatch.pipelines.phases import phase

    model = get(model_name)
    device = worker_device()
    pin_module(model.module, device)
    ry, rx, cy, cx = halo_window(spec.grid, key, semantic_change_halo(model_name))
    bands = read_window(cube, model.card.bands, ry, rx)  # (period, band, y, x) with the halo
    days = spec.middle_days
    with phase("infer"):
        condition = None
        if model.module.conditional:
            source = get(CONDITION_MODEL)
            pin_module(source.module, device)
            found = predict_semantic_series(source, bands, days=season_days(source, days))
            condition = (found.from_class.argmax(axis=1) + 1).astype(np.uint8)
        probs = predict_semantic_series(
            model, bands, condition, days=season_days(model, days), region=(cy, cx)
        )
    _, from_map, to_map = decode_semantic(probs, threshold)
    finite = np.isfinite(bands[:, :, cy, cx]).any(axis=1)
    observed = finite[:-1] & finite[1:]
    return {
        "change_probability": np.where(observed, probs.change, np.nan).astype(np.float32),
        "from_class": np.where(observed, from_map, _NODATA).astype(np.uint8),
        "to_class": np.where(observed, to_map, _NODATA).astype(np.uint8),
    }


def semantic_change_batch(
    keys: Sequence[tuple[int, int]], inputs: SemanticChangeInputs
) -> list[dict[str, Any]]:
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
        lambda key: semantic_change_region(key, spec, inputs.model, cube, inputs.threshold),
        lambda arrays: {
            "changed_px": int(((arrays["from_class"] > 0) & (arrays["from_class"] < _NODATA)).sum())
        },
        compute_phase="infer",
    )


def init_semantic_change(
    layout: RunLayout, spec: CubeSpec, model_name: str, provenance: dict[str, Any]
) -> Any:
    """Create the staging store (metadata only, one time step per transition) unless it exists."""
    from eowatch.models.registry import get

    path = layout.staging(STORE)
    if not (path / "zarr.json").exists():
        card = get(model_name).card
        model = {"name": card.name, "version": card.version, "sha256": card.weights_sha256}
        attrs: dict[str, Any] = {
            "title": "eowatch semantic change maps",
            "eowatch_status": "in-progress",
            **provenance,
            "semantic_change_model": model,
            "decision_threshold": card.decision_threshold,
        }
        if card.architecture_args.get("conditional"):
            source = get(CONDITION_MODEL).card
            attrs["condition_model"] = {"name": source.name, "version": source.version}
        starts = [np.datetime64(a, "ns") for a, _ in spec.periods]
        create_template(
            path,
            spec.grid,
            np.array(starts[1:]),
            semantic_change_variables(model_name),
            attrs=attrs,
            extra_coords={"period_before": ("time", np.array(starts[:-1]))},
        )
    return path


def finalize_semantic_change(layout: RunLayout) -> Any:
    """Mark the staging store complete (its last write) and publish it."""
    set_attrs(layout.staging(STORE), {"eowatch_status": "complete"})
    return layout.publish(STORE)


def _open(path: Any) -> zarr.Group:
    from eowatch.pipelines.zarr_store import zarr_store

    return zarr.open_group(zarr_store(path, read_only=True), mode="r", zarr_format=3)


def semantic_change_statistics(path: Any, spec: CubeSpec) -> dict[str, Any]:
    """Changed area per transition and per (from → to) pair over all transitions (km²), and per change type
    read from the pair (``semantic_eval.change_type_of_pair``); read chunk by chunk (never whole)."""
    from eowatch.legend import CHANGE_TYPES
    from eowatch.models.semantic_eval import change_type_of_pair
    from eowatch.models.siamese_semantic import SEMANTIC_CLASSES

    group = _open(path)
    from_arr, to_arr = group["from_class"], group["to_class"]
    n = from_arr.shape[0]
    changed = np.zeros(n, np.int64)
    pairs = np.zeros((256, 256), np.int64)
    types = np.zeros(256, np.int64)
    for key in spec.grid.chunks():
        ys, xs = spec.grid.chunk_slices(key)
        f, t = np.asarray(from_arr[:, ys, xs]), np.asarray(to_arr[:, ys, xs])
        hit = (f > 0) & (f != _NODATA)
        changed += hit.reshape(n, -1).sum(axis=1)
        np.add.at(pairs, (f[hit], t[hit]), 1)
        types += np.bincount(change_type_of_pair(f[hit], t[hit]), minlength=256)
    px_km2 = spec.grid.resolution**2 / 1e6
    model = json.loads(str(group.attrs["semantic_change_model"]))
    by_pair = {
        f"{SEMANTIC_CLASSES.get(a, a)} -> {SEMANTIC_CLASSES.get(b, b)}": round(float(pairs[a, b]) * px_km2, 4)
        for a, b in zip(*np.nonzero(pairs), strict=True)
    }
    return {
        "model": model["name"],
        "transitions": [
            {
                "period_before": list(spec.periods[i]),
                "period_after": list(spec.periods[i + 1]),
                "changed_km2": round(float(changed[i]) * px_km2, 4),
            }
            for i in range(n)
        ],
        "changed_km2_by_pair": dict(sorted(by_pair.items(), key=lambda kv: -kv[1])),
        "changed_km2_by_type": {
            name: round(float(types[code]) * px_km2, 4)
            for code, name in CHANGE_TYPES.items()
            if code and types[code]
        },
    }


def evaluate_semantic_change(path: Any, spec: CubeSpec, truth_dir: str) -> dict[str, Any]:
    """The maps against an archive's planted truth, chunk by chunk, every pixel of every transition (as
    ``models.semantic_eval`` scores the shipped models): SeK, mIoU, Fscd, binary change, and the change
    types read from the predicted pairs. No-observation pixels count as "no change"."""
    from eowatch.models.semantic_eval import SemanticCounts, transition_truth
    from eowatch.models.train_semantic import read_semantic_truth
    from eowatch.pipelines.zarr_store import grid_coords

    group = _open(path)
    from_arr, to_arr = group["from_class"], group["to_class"]
    bounds = [(np.datetime64(a, "D"), np.datetime64(b, "D")) for a, b in spec.periods]
    coords = grid_coords(spec.grid)
    counts = SemanticCounts()
    for key in spec.grid.chunks():
        ys, xs = spec.grid.chunk_slices(key)
        truth = read_semantic_truth(truth_dir, coords["x"][xs], coords["y"][ys])
        f, t = np.asarray(from_arr[:, ys, xs]), np.asarray(to_arr[:, ys, xs])
        f, t = np.where(f == _NODATA, 0, f), np.where(t == _NODATA, 0, t)
        counts.add((f, t), transition_truth(truth, bounds))
    scores = counts.scores()
    keep = ("sek", "miou", "fscd", "binary.precision", "binary.recall", "binary.f1", "type.sek", "type.miou")
    out: dict[str, Any] = {"scope": "every pixel of every transition (no observation = no change)"}
    out.update({k.replace(".", "_"): round(float(scores[k]), 4) for k in keep if k in scores})
    out["type_f1"] = {
        k[len("type.") : -len(".f1")]: round(float(v), 4)
        for k, v in scores.items()
        if k.startswith("type.") and k.endswith(".f1")
    }
    return out


def render_semantic_change_quicklook(cube_path: Any, store_path: Any, spec: CubeSpec, out: Any) -> Any:
    """PNG: true colour of the last period beside the pixels changed in any transition, coloured by the
    land cover they became in their latest change (white where unchanged, grey where never observed);
    both strided down to at most ``publish.QUICKLOOK_MAX_PX`` px; written atomically to ``out``."""
    from eowatch.pipelines.publish import (
        NO_OBSERVATION_GREY,
        last_period_rgb,
        quicklook_step,
        write_side_by_side,
    )

    step = quicklook_step(spec)
    rgb = last_period_rgb(cube_path, step)
    to_arr = _open(store_path)["to_class"]
    lut = np.tile(np.array(NO_OBSERVATION_GREY, np.uint8), (256, 1))
    lut[0] = 255
    for code, colour in json.loads(str(to_arr.attrs["colours"])).items():
        lut[int(code)] = colour
    latest = np.zeros(rgb.shape[:2], np.uint8)
    seen = np.zeros(rgb.shape[:2], bool)
    for t in range(to_arr.shape[0]):
        block = np.asarray(to_arr[t, ::step, ::step])
        seen |= block != _NODATA
        latest = np.where((block > 0) & (block != _NODATA), block, latest)
    return write_side_by_side(rgb, lut[np.where(seen, latest, _NODATA)], out)
