"""Sentinel-1 GRD rendering, RTC-like: gamma0 in linear power on the 10 m UTM grid, with gamma speckle.

Backscatter per unit mixes endmember values (linear power) with the same fractions as the optical model;
bare soil brightens with moisture; flooded pixels and open water are specular (dark); built-up areas
are bright and heterogeneous (double bounce). Speckle is multiplicative Gamma(ENL, 1/ENL).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from eowatch.archive.config import epoch_day, rng_for, s1_dates
from eowatch.archive.noise import smooth_white
from eowatch.archive.phenology import DRY, SOIL, SPECTRA, WATER, WETSOIL, unit_fractions
from eowatch.archive.world import World

#: Equivalent number of looks of the multiplicative speckle.
ENL = 4.5
#: Endmember gamma0 in dB, rows in phenology endmember order, columns (VV, VH).
SIGMA_DB = np.array(
    [
        [-10.0, -16.0],  # green vegetation (crop canopy)
        [-8.0, -14.0],  # broadleaf canopy
        [-8.0, -13.5],  # conifer canopy
        [-9.0, -15.5],  # leaf-off forest
        [-12.0, -19.0],  # dry vegetation / stubble
        [-13.0, -21.0],  # dry soil
        [-8.0, -16.5],  # wet soil
        [-10.0, -15.5],  # rapeseed flowers
        [-22.0, -28.0],  # water
        [-10.0, -18.0],  # construction site
        [-9.5, -16.0],  # logging slash
    ],
    dtype=np.float32,
)
assert SIGMA_DB.shape[0] == SPECTRA.shape[0]


@dataclass
class S1Product:
    """One S1 GRD scene on the S1 grid: gamma0 arrays (float32 linear) and metadata."""

    item_id: str
    datetime: dt.datetime
    platform: str
    orbit_state: str
    relative_orbit: int
    absolute_orbit: int
    arrays: dict[str, np.ndarray]


def _urban_db(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Static bright, heterogeneous built-up backscatter (dB) on the world grid."""
    rng = rng_for(world.config.seed, "s1-urban")
    shape = world.layout.world.shape
    vv = -1.0 + 4.0 * smooth_white(rng, shape, 0.7)
    vh = -9.0 + 3.0 * smooth_white(rng, shape, 0.7)
    return vv, vh


def render_s1(world: World, k: int) -> S1Product:
    """Render S1 acquisition ``k`` (see :func:`eowatch.archive.config.s1_dates`)."""
    cfg = world.config
    day, state = s1_dates(cfg)[k]
    eday = epoch_day(day)
    rng = rng_for(cfg.seed, f"s1-{k}")
    moisture = world.weather.moisture[eday]
    frac, urban = unit_fractions(world.scene.units, eday, moisture)
    frac = frac.copy()
    # Moisture also brightens soil under sparse canopies (already split SOIL/WETSOIL); stubble is drier.
    frac[:, SOIL] += 0.3 * frac[:, DRY] * moisture
    frac[:, DRY] *= 1 - 0.3 * moisture
    wind = rng.uniform(0.0, 5.0)
    sig = 10.0 ** (SIGMA_DB / 10.0)
    sig[WATER] *= 10.0 ** (wind / 10.0)
    sig[WETSOIL] *= 10.0 ** (moisture * 1.0 / 10.0)
    unit_lin = frac @ sig  # (n_units, 2)
    incidence = 0.4 if state == "ascending" else -0.4
    rows, cols = world.layout.s1.window_in(world.layout.world)
    u = world.scene.unit[rows, cols]
    tex = world.scene.texture[rows, cols]
    flooded = world.plan.flooded(eday)[rows, cols]
    is_urban = urban[u]
    uvv, uvh = _urban_db(world)
    arrays = {}
    for b, (key, urb) in enumerate((("vv", uvv), ("vh", uvh))):
        lin = unit_lin[:, b][u] * tex**2 * np.float32(10.0 ** (incidence / 10.0))
        lin[is_urban] = 10.0 ** (urb[rows, cols][is_urban] / 10.0)
        lin[flooded] = sig[WATER, b] * 1.2
        lin *= rng.gamma(ENL, 1.0 / ENL, lin.shape).astype(np.float32)
        # Keep ~0.4 % precision (bfloat16-like): zero low mantissa bits so the float COGs compress well.
        arrays[key] = (lin.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    asc = state == "ascending"
    hh, mm = (17, 32) if asc else (5, 49)
    start = dt.datetime(day.year, day.month, day.day, hh, mm, 10 + k % 7, tzinfo=dt.UTC)
    abs_orbit = 55000 + (eday - 20000) * 175 // 12
    rel = 88 if asc else 37
    stop = start + dt.timedelta(seconds=25)
    ident = (
        f"S1A_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{abs_orbit:06d}_"
        f"{(abs_orbit * 7919) % 0xFFFFFF:06X}"
    )
    return S1Product(ident, start, "sentinel-1a", state, rel, abs_orbit, arrays)
