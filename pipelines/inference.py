"""Change inference stage: the analysis cube → a change cube, chunk by chunk with a halo.

Each chunk is read with a halo of at least the model's receptive radius, so the result of a chunk equals
the result of whole-image inference on its pixels (no seams). The model is loaded once per worker
process (``models.registry.get`` is cached) and pinned to the worker's device (its GPU when it has one);
the chunk's periods go through the tiled engine (``models.engine``) together, each period encoded once.
With a gap model (``ChangeSpec.gap_model``), the pixel-transitions where a date has no S1 observation
(``s1_gap_transitions``: a month without S1 acquisitions over the pixel) take that model's
probabilities and its card's threshold instead, and ``s1_gap`` marks them; the gap model runs only on
chunks that have such a pixel, over the same halo window, so chunk results still equal whole-image
inference. Besides the model, two unsupervised baselines are written: change-vector analysis on the
optical composites and the VV log-ratio on SAR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from eowatch.operators.change import change_vector_magnitude, cva_change_probability, log_ratio_db
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.ledger import RunLayout, write_chunks
from eowatch.pipelines.phases import phase
from eowatch.pipelines.spec import ChangeSpec, CubeSpec
from eowatch.pipelines.zarr_store import create_template, set_attrs

if TYPE_CHECKING:  # torch loads on first inference, not when the flow imports its stages
    from eowatch.models.engine import Precision
    from eowatch.models.weights import LoadedModel


@dataclass(frozen=True)
class InferenceInputs:
    """References an inference task needs (picklable, no arrays)."""

    cube_spec: dict[str, Any]
    change: ChangeSpec
    cube_path: str
    store_path: str
    ledger_path: str
    halo: int
    torch_threads: int = 1
    precision: Precision = "auto"
    """Engine precision: ``auto`` is float32 on CPU and bf16 autocast on CUDA; ``bfloat16`` opts in to
    bf16 on CPU too (about 2x faster with avx512_bf16; probabilities move by up to ~2e-2)."""


def change_variables() -> dict[str, tuple[np.dtype, Any, dict[str, Any]]]:
    f32, u8 = np.dtype("float32"), np.dtype("uint8")
    return {
        "change_probability": (
            f32,
            np.nan,
            {"long_name": "probability of any change since the previous period", "units": "1"},
        ),
        "change_mask": (u8, 0, {"long_name": "change detected (1) or not (0)", "flag_values": [0, 1]}),
        "change_type": (u8, 0, {"long_name": "most likely change type where changed (eowatch legend code)"}),
        "cva_magnitude": (
            f32,
            np.nan,
            {"long_name": "change-vector magnitude of optical composites", "units": "1"},
        ),
        "cva_probability": (f32, np.nan, {"long_name": "unsupervised CVA change probability", "units": "1"}),
        "cva_mask": (u8, 0, {"long_name": "unsupervised CVA change mask"}),
        "sar_log_ratio_db": (
            f32,
            np.nan,
            {"long_name": "VV backscatter log-ratio, after minus before", "units": "dB"},
        ),
        "sar_mask": (u8, 0, {"long_name": "unsupervised SAR log-ratio change mask"}),
        "s1_gap": (
            u8,
            0,
            {
                "long_name": "decided by the gap model: a date of the transition has no S1 observation",
                "flag_values": [0, 1],
            },
        ),
    }


def read_window(cube: zarr.Group, names: Sequence[str], ys: slice, xs: slice) -> np.ndarray:
    """Read variables over a window: array (period, channel, y, x) float32."""
    with phase("read"):
        return np.stack([np.asarray(cube[n][:, ys, xs], dtype=np.float32) for n in names], axis=1)


def default_halo(change: ChangeSpec) -> int:
    """Pixels read around each chunk: ``change.halo``, else just over the widest receptive radius of the
    change model and its gap model (from their cards), so chunk results equal whole-image inference."""
    from eowatch.models.registry import card_of

    if change.halo is not None:
        return change.halo
    names = [change.model, *([change.gap_model] if change.gap_model else [])]
    return max(card_of(name).receptive_field_px for name in names) // 2 + 1


def halo_window(grid: GridSpec, key: ChunkKey, halo: int) -> tuple[slice, slice, slice, slice]:
    """Read slices (clipped to the grid) and the crop slices that recover the chunk from them."""
    h, w = grid.shape
    ys, xs = grid.chunk_slices(key)
    ry = slice(max(ys.start - halo, 0), min(ys.stop + halo, h))
    rx = slice(max(xs.start - halo, 0), min(xs.stop + halo, w))
    cy = slice(ys.start - ry.start, ys.start - ry.start + (ys.stop - ys.start))
    cx = slice(xs.start - rx.start, xs.start - rx.start + (xs.stop - xs.start))
    return ry, rx, cy, cx


def change_probabilities(
    model: LoadedModel,
    bands: np.ndarray,
    crop: tuple[slice, slice],
    precision: Precision = "auto",
    days: np.ndarray | None = None,
) -> np.ndarray:
    """The model's part of ``infer_region``: probabilities of every transition over the chunk.

    Args:
        model: loaded model, on the device it should run on.
        bands: ``(period, C, Hh, Wh)`` float32 model bands over the chunk's halo window, NaN = no data.
        crop: slices of the chunk inside the halo window.
        precision: engine precision (see ``InferenceInputs.precision``).
        days: the periods' middle days (days since 1970-01-01), for a model that reads the season.

    Returns:
        ``(period - 1, n_classes, h, w)`` float32 softmax probabilities over the chunk.
    """
    from eowatch.models.engine import default_config, module_device
    from eowatch.models.predict import predict_change_series

    config = default_config(module_device(model.module), model.module.receptive_field // 2, precision)
    return predict_change_series(model, bands, region=crop, config=config, days=days)


def s1_gap_transitions(bands: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Where a transition has an S1 gap: bool ``(period - 1, y, x)``, True where both dates have data and
    either lacks an S1 band among ``names`` (the bands of ``bands``, ``(period, C, y, x)``, NaN = none).

    A transition with no data on a date is no gap: it has no probability to decide.
    """
    from eowatch.models.card import S1_BANDS

    s1 = [i for i, n in enumerate(names) if n in S1_BANDS]
    observed = np.isfinite(bands).any(axis=1)
    s1_observed = np.isfinite(bands[:, s1]).all(axis=1) if s1 else observed
    both = observed[:-1] & observed[1:]
    return both & ~(s1_observed[:-1] & s1_observed[1:])


def infer_region(
    key: ChunkKey,
    spec: CubeSpec,
    change: ChangeSpec,
    cube: zarr.Group,
    halo: int,
    precision: Precision = "auto",
) -> dict[str, np.ndarray]:
    """All change variables for one chunk: arrays (transition, y, x).

    Every variable is read once, with the halo; the baselines use the chunk's own window of it.
    """
    from eowatch.models.engine import pin_module, worker_device
    from eowatch.models.predict import season_days
    from eowatch.models.registry import get

    model = get(change.model)
    pin_module(model.module, worker_device())
    ry, rx, cy, cx = halo_window(spec.grid, key, halo)
    sar = ["vv_db"] if spec.s1_collection else []
    names = list(dict.fromkeys([*model.card.bands, *spec.s2_bands, *sar]))
    x = read_window(cube, names, ry, rx)  # (period, C, Hh, Wh)
    channel = {n: i for i, n in enumerate(names)}
    bands = x[:, [channel[b] for b in model.card.bands]]
    days = season_days(model, spec.middle_days)
    probs = change_probabilities(model, bands, (cy, cx), precision, days)  # (T-1, K, h, w)
    threshold = np.float32(
        change.threshold if change.threshold is not None else model.card.decision_threshold
    )
    gap = s1_gap_transitions(bands[:, :, cy, cx], model.card.bands) if change.gap_model else None
    if gap is not None and gap.any():
        gap_model = get(change.gap_model)
        pin_module(gap_model.module, worker_device())
        gap_days = season_days(gap_model, spec.middle_days)
        gap_probs = change_probabilities(gap_model, bands, (cy, cx), precision, gap_days)
        probs = np.where(gap[:, None], gap_probs, probs)
        if change.threshold is None:
            threshold = np.where(gap, np.float32(gap_model.card.decision_threshold), threshold)
    p_change = (1.0 - probs[:, 0]).astype(np.float32)
    mask = (p_change >= threshold).astype(np.uint8)
    ctype = (np.argmax(probs[:, 1:], axis=1) + 1).astype(np.uint8) * mask

    opt = x[:, [channel[b] for b in spec.s2_bands], cy, cx]
    mag = np.stack([change_vector_magnitude(opt[t - 1], opt[t]) for t in range(1, len(opt))])
    mag = mag.astype(np.float32)
    cva_p = cva_change_probability(mag, change.cva_threshold, change.cva_threshold / 4).astype(np.float32)
    out = {
        "change_probability": p_change,
        "change_mask": mask,
        "change_type": ctype,
        "cva_magnitude": mag,
        "cva_probability": cva_p,
        "cva_mask": (np.nan_to_num(mag, nan=0.0) >= change.cva_threshold).astype(np.uint8),
    }
    if gap is not None:
        out["s1_gap"] = gap.astype(np.uint8)
    if sar:
        vv = x[:, channel["vv_db"], cy, cx]
        lr = np.stack([log_ratio_db(vv[t - 1], vv[t]) for t in range(1, len(vv))]).astype(np.float32)
        out["sar_log_ratio_db"] = lr
        out["sar_mask"] = (np.abs(np.nan_to_num(lr, nan=0.0)) >= change.sar_threshold_db).astype(np.uint8)
    return out


def infer_batch(keys: Sequence[tuple[int, int]], inputs: InferenceInputs) -> list[dict[str, Any]]:
    """Dask task: infer and write a batch of chunks, recording each in the ledger after its write."""
    import torch

    torch.set_num_threads(max(1, inputs.torch_threads))
    spec = CubeSpec.from_dict(inputs.cube_spec)
    cube = zarr.open_group(inputs.cube_path, mode="r", zarr_format=3)
    return write_chunks(
        keys,
        spec.grid,
        inputs.store_path,
        inputs.ledger_path,
        lambda key: infer_region(key, spec, inputs.change, cube, inputs.halo, inputs.precision),
        lambda arrays: {"changed_px": int(arrays["change_mask"].sum())},
        compute_phase="infer",
    )


def init_change(
    layout: RunLayout, spec: CubeSpec, provenance: dict[str, Any], gap_model: str | None = None
) -> Path:
    """Create the change cube's staging store (metadata only) unless it already exists; with a
    ``gap_model`` it has ``s1_gap``, the pixel-transitions that model decided."""
    path = layout.staging("change")
    if not (path / "zarr.json").exists():
        starts = [np.datetime64(a, "ns") for a, _ in spec.periods]
        variables = change_variables()
        if not spec.s1_collection:
            variables = {k: v for k, v in variables.items() if not k.startswith("sar_")}
        if not gap_model:
            variables.pop("s1_gap")
        create_template(
            path,
            spec.grid,
            np.array(starts[1:]),
            variables,
            attrs={"title": "eowatch change cube", "eowatch_status": "in-progress", **provenance},
            extra_coords={"period_before": ("time", np.array(starts[:-1]))},
        )
    return path


def finalize_change(layout: RunLayout) -> Path:
    set_attrs(layout.staging("change"), {"eowatch_status": "complete"})
    return layout.publish("change")
