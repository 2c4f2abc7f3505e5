"""Publish stage: change statistics, quicklook picture and run summary of a finished change cube.

Outputs go to a local folder or an ``s3://`` prefix; each file is written atomically (a temporary file
and ``os.replace`` locally, one PUT on object storage).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
from PIL import Image

from eowatch.infra.storage import Location
from eowatch.legend import CHANGE_COLOURS, CHANGE_TYPES
from eowatch.pipelines.ledger import write_atomic
from eowatch.pipelines.spec import CubeSpec
from eowatch.pipelines.zarr_store import open_group

QUICKLOOK_MAX_PX = 1024
NO_OBSERVATION_GREY = (128, 128, 128)


def change_statistics(change_path: Location, spec: CubeSpec) -> dict[str, Any]:
    """Changed area (km²) per change type and per period, streamed chunk by chunk; with a gap model,
    the area (km²) per period that it decided (``s1_gap_km2``).

    A pixel's type over the run is the type of its first detected change.
    """
    cube = open_group(change_path)
    px_km2 = spec.grid.resolution**2 / 1e6
    n_t = cube["change_mask"].shape[0]
    by_type = dict.fromkeys(CHANGE_TYPES, 0)
    by_period = np.zeros(n_t, np.int64)
    gap_by_period = np.zeros(n_t, np.int64)
    has_gap = "s1_gap" in cube
    cva_px = 0
    for key in spec.grid.chunks():
        ys, xs = spec.grid.chunk_slices(key)
        mask = np.asarray(cube["change_mask"][:, ys, xs]).astype(bool)
        ctype = np.asarray(cube["change_type"][:, ys, xs])
        by_period += mask.reshape(n_t, -1).sum(1)
        first = np.argmax(mask, axis=0)
        first_type = np.take_along_axis(ctype, first[None], 0)[0] * mask.any(0)
        for code in CHANGE_TYPES:
            if code:
                by_type[code] += int((first_type == code).sum())
        cva_px += int(np.asarray(cube["cva_mask"][:, ys, xs]).any(0).sum())
        if has_gap:
            gap_by_period += np.asarray(cube["s1_gap"][:, ys, xs]).reshape(n_t, -1).sum(1, dtype=np.int64)
    after = [a for a, _ in spec.periods[1:]]
    stats = {
        "changed_km2": round(sum(v for k, v in by_type.items() if k) * px_km2, 4),
        "by_type_km2": {CHANGE_TYPES[k]: round(v * px_km2, 4) for k, v in by_type.items() if k},
        "by_period_km2": {p: round(int(v) * px_km2, 4) for p, v in zip(after, by_period, strict=True)},
        "cva_baseline_changed_km2": round(cva_px * px_km2, 4),
    }
    if has_gap:
        stats["s1_gap_km2"] = {
            p: round(int(v) * px_km2, 4) for p, v in zip(after, gap_by_period, strict=True) if v
        }
    return stats


def quicklook_step(spec: CubeSpec) -> int:
    """Stride that brings the grid's longer side down to at most ``QUICKLOOK_MAX_PX`` px."""
    return max(1, math.ceil(max(spec.grid.shape) / QUICKLOOK_MAX_PX))


def last_period_rgb(cube_path: Location, step: int) -> np.ndarray:
    """uint8 ``(y, x, 3)`` true colour of the analysis cube's last period, strided by ``step``: reflectance
    0-0.2 stretched with gamma 0.8, ``NO_OBSERVATION_GREY`` where the month has no clear observation."""
    cube = open_group(cube_path)
    rgb = np.stack([np.asarray(cube[b][-1, ::step, ::step]) for b in ("red", "green", "blue")], axis=-1)
    no_obs = np.isnan(rgb).any(axis=-1)
    rgb = np.clip(np.nan_to_num(rgb, nan=0.0) / 0.2, 0, 1)
    rgb = (255 * rgb**0.8).astype(np.uint8)
    rgb[no_obs] = NO_OBSERVATION_GREY  # no clear observation in the month: grey, not a black "feature"
    return rgb


def write_side_by_side(left: np.ndarray, right: np.ndarray, out: Location) -> Location:
    """PNG of two uint8 ``(y, x, 3)`` pictures with an 8 px white gap, written atomically to ``out``."""
    gap = np.full((left.shape[0], 8, 3), 255, np.uint8)
    png = io.BytesIO()
    Image.fromarray(np.concatenate([left, gap, right], axis=1)).save(png, format="PNG", optimize=True)
    return write_atomic(out, png.getvalue())


def render_quicklook(cube_path: Location, change_path: Location, spec: CubeSpec, out: Location) -> Location:
    """PNG: true colour of the last period beside the change-type map of the whole run (downsampled)."""
    step = quicklook_step(spec)
    rgb = last_period_rgb(cube_path, step)
    ctype = np.asarray(open_group(change_path)["change_type"][:, ::step, ::step]).max(0)
    overlay = rgb.copy()
    for code, colour in CHANGE_COLOURS.items():
        if code:
            overlay[ctype == code] = colour
    return write_side_by_side(rgb, overlay, out)


def write_summary(path: Location, summary: dict[str, Any]) -> Location:
    """Write the run summary JSON atomically."""
    return write_atomic(path, json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n")
