"""Phenology and surface reflectance (pure numpy).

Each unit is a linear mixture of endmember spectra whose fractions follow the crop calendar of its kind
(central Belgium): winter cereal green-up in March, peak in May, senescence late June, harvest mid July;
maize sown early May, peak in August; rapeseed flowering (yellow) late April, harvest early July;
grassland mown two or three times; deciduous forest leaf-on in April.

Autumn (day of year ``AUTUMN_DOY`` on, early September): maize and the crops sown after a rotation are
harvested from late September to late October and ploughed three weeks later; the next winter cereal is
sown on cereal fields in October–November and the next rapeseed emerges on rapeseed fields in
September–October, reaching the winter cover the spring curves start from on 1 January; grassland
thins to its January sward by December; deciduous leaves turn in mid-October and fall by early
November. Days before ``AUTUMN_DOY`` render exactly as
without these terms (archives of March–August are unchanged by them).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from eowatch.archive.changes import Plan
from eowatch.archive.config import epoch_day, from_epoch_day
from eowatch.archive.noise import smooth_white
from eowatch.archive.scene import (
    EV_BUILD,
    EV_CLEAR,
    EV_ROTATE,
    KIND_BARE,
    KIND_CONIF,
    KIND_DECID,
    KIND_GRASS,
    KIND_MAIZE,
    KIND_RAPE,
    KIND_ROAD,
    KIND_URBAN,
    KIND_WATER,
    KIND_WCEREAL,
    Scene,
    Units,
)

#: Band order of all reflectance arrays: S2 blue, green, red, nir, swir16, swir22.
BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
GREEN, FOREST, CONIFER, LEAFOFF, DRY, SOIL, WETSOIL, YELLOW, WATER, CONSTR, SLASH = range(11)
#: Endmember surface reflectance (rows in the order above, columns in BANDS order).
SPECTRA = np.array(
    [
        [0.030, 0.070, 0.030, 0.450, 0.220, 0.100],  # green vegetation
        [0.022, 0.048, 0.022, 0.360, 0.160, 0.065],  # broadleaf canopy
        [0.018, 0.034, 0.017, 0.240, 0.115, 0.048],  # conifer canopy
        [0.040, 0.058, 0.068, 0.170, 0.210, 0.140],  # leaf-off forest (bark, litter)
        [0.075, 0.115, 0.160, 0.280, 0.380, 0.280],  # dry vegetation / stubble
        [0.080, 0.110, 0.150, 0.220, 0.300, 0.250],  # dry soil
        [0.050, 0.068, 0.090, 0.140, 0.180, 0.140],  # wet soil
        [0.040, 0.130, 0.110, 0.420, 0.240, 0.110],  # rapeseed flowers
        [0.060, 0.050, 0.030, 0.015, 0.010, 0.005],  # clear water
        [0.120, 0.150, 0.190, 0.250, 0.330, 0.300],  # construction site
        [0.060, 0.080, 0.100, 0.200, 0.280, 0.220],  # logging slash
    ],
    dtype=np.float32,
)
TURBID = np.array([0.080, 0.100, 0.090, 0.040, 0.020, 0.010], dtype=np.float32)
_MATERIALS = np.array(
    [
        [0.180, 0.200, 0.220, 0.260, 0.300, 0.280],  # concrete / light roofs
        [0.080, 0.090, 0.150, 0.200, 0.250, 0.220],  # red tiles
        [0.070, 0.080, 0.090, 0.110, 0.130, 0.120],  # asphalt
        [0.060, 0.060, 0.062, 0.080, 0.090, 0.080],  # dark roofs
        [0.030, 0.070, 0.030, 0.400, 0.200, 0.090],  # gardens, street trees
    ],
    dtype=np.float32,
)


#: First day of year on which the autumn terms act (7 September in a common year).
AUTUMN_DOY = 250


def _ramp(t: np.ndarray, mid: np.ndarray | float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(t - mid) / width))


def day_of_year(day: int) -> float:
    d = from_epoch_day(day)
    return float(day - epoch_day(dt.date(d.year, 1, 1)) + 1)


def unit_fractions(units: Units, day: int, moisture: float) -> tuple[np.ndarray, np.ndarray]:
    """Endmember fractions per unit on epoch ``day``.

    Returns:
        (fractions float32 (n_units, 11), urban bool (n_units,)); urban units take their reflectance
        from the static per-pixel material map instead of the fractions.
    """
    n = len(units)
    t = day_of_year(day)
    o, a, k = units.offset, units.amp, units.kind
    f = np.zeros((n, len(SPECTRA)), dtype=np.float32)

    def canopy(rows: np.ndarray, cover: np.ndarray, sen: np.ndarray) -> None:
        f[rows, GREEN] = cover[rows] * (1 - sen[rows])
        f[rows, DRY] = cover[rows] * sen[rows]
        f[rows, SOIL] = 1 - cover[rows]

    def stubble(rows: np.ndarray, plough: np.ndarray) -> None:
        f[rows] = 0
        f[rows, DRY] = np.where(plough[rows], 0.0, 0.45)
        f[rows, SOIL] = np.where(plough[rows], 1.0, 0.55)

    ploughed = t >= units.plow + o
    rows = k == KIND_WCEREAL
    canopy(rows, a * (0.3 + 0.7 * _ramp(t, 100 + o, 9)), _ramp(t, 178 + o, 6))
    stubble(rows & (t >= 200 + o), ploughed)

    rows = k == KIND_MAIZE
    canopy(rows, a * 0.95 * _ramp(t, 180 + o, 11) * (t > 135 + o), 0.3 * _ramp(t, 240 + o, 6))
    autumn = t >= AUTUMN_DOY
    harvest = units.plow + 60 + o  # day of year of the autumn harvest: late September..late October
    if autumn:
        stubble(rows & (t >= harvest), t >= harvest + 21)
        sown = (k == KIND_WCEREAL) & (t >= units.plow + 70 + o)
        canopy(sown, a * 0.3 * _ramp(t, units.plow + 85 + o, 6), np.zeros(n, np.float32))

    rows = k == KIND_RAPE
    cover = a * (0.45 + 0.5 * _ramp(t, 88 + o, 8))
    canopy(rows, cover, _ramp(t, 168 + o, 6))
    yellow = 0.65 * np.exp(-0.5 * ((t - 120 - o) / 7) ** 2) * cover
    f[rows, YELLOW] = yellow[rows]
    f[rows, GREEN] = np.clip(f[rows, GREEN] - yellow[rows], 0, None)
    stubble(rows & (t >= 193 + o), ploughed)
    if autumn:
        canopy(rows & ploughed, a * 0.45 * _ramp(t, units.plow + 60 + o, 8), np.zeros(n, np.float32))

    rows = k == KIND_GRASS
    cover = a * (0.55 + 0.4 * _ramp(t, 100 + o, 10))
    hay = np.zeros(n, dtype=np.float32)
    for m in units.mow.T:
        since = np.where(np.isnan(m) | (t < m), np.inf, t - m)
        cover = cover * (1 - 0.55 * np.exp(-since / 14))
        hay = np.maximum(hay, 0.35 * np.exp(-since / 5))
    if autumn:  # growth stops: back to the winter sward of January by the end of the year
        cover = cover * (1 - 0.42 * _ramp(t, 320, 15))
    canopy(rows, cover, hay)

    rows = k == KIND_DECID
    leaf = 0.1 + 0.85 * _ramp(t, 112 + o / 2, 7)
    if autumn:
        turned, fallen = _ramp(t, 288 + o / 2, 6), _ramp(t, 305 + o / 2, 6)
        f[rows, FOREST] = (a * (leaf - 0.85 * turned))[rows]
        f[rows, DRY] = (a * 0.85 * (turned - fallen))[rows]
        f[rows, LEAFOFF] = 1 - f[rows, FOREST] - f[rows, DRY]
    else:
        f[rows, FOREST] = (a * leaf)[rows]
        f[rows, LEAFOFF] = 1 - f[rows, FOREST]
    f[k == KIND_CONIF, CONIFER] = 1.0
    f[k == KIND_WATER, WATER] = 1.0
    f[k == KIND_BARE, SOIL] = 1.0

    urban = (k == KIND_URBAN) | (k == KIND_ROAD)
    _apply_events(units, day, f, urban)
    if autumn:  # the crop sown after a rotation is harvested like maize, at least 100 days after sowing
        rotated = (units.event == EV_ROTATE) & (day >= units.t0)
        harvest = np.maximum(harvest, t - (day - units.t0) + 100)
        stubble(rotated & (t >= harvest), t >= harvest + 21)
    wet = 0.75 * moisture
    f[:, WETSOIL] = f[:, SOIL] * wet
    f[:, SOIL] *= 1 - wet
    return f, urban


def _apply_events(units: Units, day: int, f: np.ndarray, urban: np.ndarray) -> None:
    ev, t0, t1 = units.event, units.t0, units.t1
    rows = (ev == EV_BUILD) & (day >= t0)
    f[rows] = 0
    f[rows, CONSTR], f[rows, SOIL] = 0.85, 0.15
    urban |= (ev == EV_BUILD) & (day >= t1)

    rows = (ev == EV_CLEAR) & (day >= t0)
    regrow = 0.2 * _ramp(day - t0, 60, 10)
    f[rows] = 0
    f[rows, GREEN] = regrow[rows]
    f[rows, SLASH] = 0.75 - regrow[rows]
    f[rows, SOIL] = 0.25

    rows = (ev == EV_ROTATE) & (day >= t0)
    f[rows] = 0
    cover = 0.92 * _ramp(day, t0 + 45, 9) * (day >= t0 + 8)
    stub = (day < t0 + 6).astype(np.float32)
    f[rows, GREEN] = cover[rows]
    f[rows, DRY] = (0.45 * stub * (1 - cover))[rows]
    f[rows, SOIL] = ((1 - 0.45 * stub) * (1 - cover))[rows]


def urban_materials(rng: np.random.Generator, scene: Scene, plan: Plan) -> np.ndarray:
    """Static reflectance (6, H, W) float32 of built-up pixels: mixed roofs, asphalt and gardens.

    Pixels of planted buildings get one new-roof material per building.
    """
    shape = scene.grid.shape
    logits = np.stack([smooth_white(rng, shape, 0.8) * 1.5 + b for b in (0.3, 0.3, 0.2, -0.3, -0.4)])
    w = np.exp(logits)
    w /= w.sum(axis=0, keepdims=True)
    out = np.einsum("mhw,mb->bhw", w, _MATERIALS).astype(np.float32)
    road = scene.kind == KIND_ROAD
    out[:, road] = _MATERIALS[2][:, None] * (1 + 0.08 * smooth_white(rng, shape, 1.0)[road])
    for ev in plan.events:
        if ev["type"] != 1:
            continue
        mat = _MATERIALS[rng.choice([0, 1, 3], p=[0.6, 0.25, 0.15])] * rng.uniform(0.95, 1.2)
        win = ev["window"]
        mask = plan.event_id[win] == ev["id"]
        out[(slice(None), *win)][:, mask] = mat[:, None]
    return out


def surface_reflectance(
    scene: Scene, plan: Plan, urban_static: np.ndarray, day: int, moisture: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free surface reflectance of the world on epoch ``day``.

    Returns:
        reflectance float32 (6, H, W) in BANDS order, water mask bool (H, W) (incl. floods),
        fractions per unit float32 (n_units, 11).
    """
    frac, urban = unit_fractions(scene.units, day, moisture)
    refl_unit = frac @ SPECTRA
    soil_cols = [SOIL, WETSOIL, DRY]
    refl_unit += (scene.units.soil[:, None] - 1.0) * (frac[:, soil_cols] @ SPECTRA[soil_cols])
    u = scene.unit
    refl = np.empty((6, *u.shape), dtype=np.float32)
    for b in range(6):
        np.multiply(refl_unit[:, b][u], scene.texture, out=refl[b])
    is_urban = urban[u]
    refl[:, is_urban] = urban_static[:, is_urban]
    flooded = plan.flooded(day)
    refl[:, flooded] = TURBID[:, None]
    water = (frac[:, WATER] > 0.5)[u] | flooded
    return refl, water, frac
