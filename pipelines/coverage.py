"""Sensor gaps: the periods of a run in which a collection has no acquisition at all (from the searched
items), and the warnings a run gives when its change or semantic change model reads that sensor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eowatch.operators.periods import assign_periods
from eowatch.pipelines.cube import item_solar_day
from eowatch.pipelines.spec import CubeSpec, MonitorConfig

__all__ = ["periods_without", "run_sensor_gap_warnings", "sensor_gap_warning", "sensor_gaps"]


def periods_without(
    items: Sequence[dict[str, Any]], collection: str, periods: Sequence[tuple[str, str]], lon: float
) -> list[int]:
    """Indices of ``periods`` (half-open ISO date pairs) in which no item of ``collection`` was acquired,
    by the items' local solar day at longitude ``lon`` (degrees), as the cube assigns them."""
    bounds = [(np.datetime64(a, "D"), np.datetime64(b, "D")) for a, b in periods]
    days = np.array([item_solar_day(d, lon) for d in items if d.get("collection") == collection])
    seen = set(assign_periods(days.astype("datetime64[D]"), bounds).tolist()) if days.size else set()
    return [i for i in range(len(bounds)) if i not in seen]


def sensor_gaps(items: Sequence[dict[str, Any]], spec: CubeSpec) -> dict[str, list[str]]:
    """Collection -> its periods without any acquisition (``"start..end"``, end exclusive), for the
    run's S2 and S1 collections that have such gaps."""
    west, _, east, _ = spec.grid.lonlat_bbox()
    lon = (west + east) / 2
    gaps = {}
    for collection in (spec.s2_collection, spec.s1_collection):
        if collection:
            empty = periods_without(items, collection, spec.periods, lon)
            if empty:
                gaps[collection] = [f"{spec.periods[i][0]}..{spec.periods[i][1]}" for i in empty]
    return gaps


def sensor_gap_warning(
    gaps: dict[str, list[str]],
    spec: CubeSpec,
    model: str,
    bands: Sequence[str],
    gap_model: str | None = None,
) -> str | None:
    """The warning for a change model that reads a sensor with gaps: the transitions into and out of an
    empty period are predicted without that sensor's bands, by ``gap_model`` when the run has one. None
    when the model does not read it."""
    sar = {f"{b}_db" for b in spec.s1_bands}
    if spec.s1_collection in gaps and sar & set(bands):
        months = f"{spec.s1_collection}: no acquisition in {', '.join(gaps[spec.s1_collection])}; "
        if gap_model:
            return (
                months + f"the changes into and out of those periods are decided by the gap model "
                f"{gap_model} (trained with S1 missing on a date; less accurate than {model} with S1, "
                "docs/models.md, 'Without S1')"
            )
        return (
            months + f"{model} reads S1 on both dates of a transition, so the changes into and out of "
            "those periods are predicted without it and are unreliable (docs/models.md, 'Without S1')"
        )
    return None


def run_sensor_gap_warnings(
    items: Sequence[dict[str, Any]], spec: CubeSpec, change_model: str | None, config: MonitorConfig
) -> list[str]:
    """The sensor-gap warnings of a run: its change model's ``change_model`` (with the run's gap model;
    None for a run without one, e.g. a training cube) and its semantic change model's, which has no gap
    model. Reads model cards only."""
    from eowatch.models.registry import card_of

    if not change_model:
        return []
    gaps = sensor_gaps(items, spec)
    found = [
        sensor_gap_warning(gaps, spec, change_model, card_of(change_model).bands, config.change.gap_model)
    ]
    semantic = config.semantic_change_model
    if semantic:
        found.append(sensor_gap_warning(gaps, spec, semantic, card_of(semantic).bands))
    return [w for w in found if w]
