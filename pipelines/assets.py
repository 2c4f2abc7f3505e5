"""Resolve what the cube needs from STAC metadata: asset keys per band and reflectance scaling.

Catalogs name the same band differently: Earth Search v1 has ``red``/``scl``, Planetary Computer
``B04``/``SCL``. Bands are asked for by their ``eo:bands`` common name (or a key such as ``scl``) and
resolved per collection. Sentinel-2 L2A digital numbers carry an offset since processing baseline 04.00
(January 2022): Earth Search states it in ``raster:bands``; Planetary Computer only gives
``s2:processing_baseline``, from which the ESA convention (BOA_ADD_OFFSET = -1000) applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eowatch.errors import InputError

L2A_SCALE = 1e-4
L2A_OFFSET_SINCE_BASELINE_04 = -0.1


def resolve_asset_keys(item: Mapping[str, Any], wanted: Sequence[str]) -> dict[str, str]:
    """Map each wanted band (common name or key, case-insensitive) to the item's asset key.

    Raises:
        InputError: a band has no matching asset; the message lists the assets the item has.
    """
    assets: Mapping[str, Any] = item.get("assets", {})
    by_key = {k.lower(): k for k in assets}
    by_common: dict[str, str] = {}
    for key, asset in assets.items():
        bands = asset.get("eo:bands") or asset.get("bands") or []
        if len(bands) == 1:
            name = bands[0].get("common_name") or bands[0].get("eo:common_name")
            if name:
                by_common.setdefault(name.lower(), key)
    out = {}
    for band in wanted:
        key = by_key.get(band.lower()) or by_common.get(band.lower())
        if key is None:
            raise InputError(
                f"collection {item.get('collection')!r} has no asset for band {band!r}; "
                f"its assets are {', '.join(sorted(assets))}"
            )
        out[band] = key
    return out


def reflectance_scaling(item: Mapping[str, Any], asset_key: str) -> tuple[float, float]:
    """(scale, offset) turning an optical asset's digital numbers into reflectance."""
    asset = item.get("assets", {}).get(asset_key, {})
    bands = asset.get("raster:bands") or []
    if bands and ("scale" in bands[0] or "offset" in bands[0]):
        return float(bands[0].get("scale", 1.0)), float(bands[0].get("offset", 0.0))
    baseline = item.get("properties", {}).get("s2:processing_baseline")
    if baseline is not None:
        try:
            major = float(str(baseline))
        except ValueError:
            major = 0.0
        return L2A_SCALE, (L2A_OFFSET_SINCE_BASELINE_04 if major >= 4.0 else 0.0)
    return L2A_SCALE, 0.0
