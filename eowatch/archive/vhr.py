"""1 m RGBN aerial imagery (NAIP-like) over the VHR sub-area, rendered from the 10 m scene.

The 10 m surface reflectance is upsampled (nearest, so class boundaries stay on the 10 m truth grid) and
sub-10 m detail is drawn on top: drill rows and tramlines in fields, tree crowns with shadows, house
roofs with ridge shading in town, new buildings (flat or pitched roofs on a paved yard), construction
sites with foundations, logging slash, and road markings. Open water (lakes, floods) covers that
texture: a flooded field shows turbid water, not its drill rows.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from scipy import ndimage

from eowatch.archive.changes import BUILD, CLEAR
from eowatch.archive.config import Grid, epoch_day, rng_for, vhr_dates
from eowatch.archive.noise import smooth_white
from eowatch.archive.phenology import surface_reflectance, unit_fractions
from eowatch.archive.scene import (
    EV_BUILD,
    EV_CLEAR,
    KIND_CONIF,
    KIND_DECID,
    KIND_MAIZE,
    KIND_RAPE,
    KIND_ROAD,
    KIND_URBAN,
    KIND_WCEREAL,
)
from eowatch.archive.world import World
from eowatch.legend import VHR_LANDCOVER

_ROOFS = np.array(  # reflectance in red, green, blue, nir
    [[0.30, 0.16, 0.12, 0.32], [0.22, 0.22, 0.23, 0.26], [0.09, 0.09, 0.10, 0.12], [0.34, 0.34, 0.35, 0.38]],
    dtype=np.float32,
)
_ASPHALT = np.array([0.09, 0.09, 0.10, 0.12], dtype=np.float32)
_CONCRETE = np.array([0.28, 0.28, 0.27, 0.30], dtype=np.float32)


def _hash_table(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.random((n, k), dtype=np.float32)


def render_vhr(world: World, k: int) -> tuple[str, dt.datetime, np.ndarray]:
    """Render VHR acquisition ``k``: (item id, UTC datetime, uint8 array (4, H, W) red/green/blue/nir)."""
    cfg, layout = world.config, world.layout
    day = vhr_dates(cfg)[k]
    eday = epoch_day(day)
    rng = rng_for(cfg.seed, f"vhr-{k}")
    static = rng_for(cfg.seed, "vhr-static")
    vhr = layout.vhr
    g10 = Grid.from_bbox(vhr.bbox, 10.0)
    win = g10.window_in(layout.world)
    refl10, water10, _ = surface_reflectance(
        world.scene, world.plan, world.urban, eday, world.weather.moisture[eday]
    )
    up = np.ones((10, 10), dtype=np.float32)
    base = np.stack([np.kron(refl10[b][win], up) for b in (2, 1, 0, 3)])  # R, G, B, N at 1 m
    unit10 = world.scene.unit[win]
    kind10 = world.scene.units.kind[unit10]
    _, urban_u = unit_fractions(world.scene.units, eday, world.weather.moisture[eday])
    kind = np.kron(kind10, np.ones((10, 10), np.int8))
    unit = np.kron(unit10, np.ones((10, 10), np.int32))
    h, w = kind.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    plain = base.copy()
    _fields(static, base, kind, unit, xx, yy, len(world.scene.units), _started(world, unit10, eday, EV_BUILD))
    _trees(static, base, kind, _started(world, unit10, eday, EV_CLEAR))
    houses = _town(static, base, kind, urban_u[unit], xx, yy)
    roofs = _events(world, base, eday, win)
    # open water (lakes, rivers, floods) hides what lies under it: drill rows, tramlines and soil texture
    # of a flooded field do not show through; only roofs stand above a flood
    water = np.kron(water10[win], np.ones((10, 10), bool)) & ~houses & ~roofs
    base[:, water] = plain[:, water] * (1 + 0.03 * smooth_white(static, (h, w), 3.0)[water])

    base = ndimage.gaussian_filter(base, (0, 0.5, 0.5))
    base *= rng.normal(1.0, 0.03)
    gain = np.array([255 / 0.42, 255 / 0.42, 255 / 0.42, 255 / 0.65], np.float32)[:, None, None]
    dn = (np.clip(base, 0, None) * gain) ** 0.85 * gain**0.15
    dn += rng.normal(0, 1.5, dn.shape).astype(np.float32)
    out = np.clip(np.rint(dn), 1, 255).astype(np.uint8)
    when = dt.datetime(day.year, day.month, day.day, 11, 15, 0, tzinfo=dt.UTC)
    return f"VHR_{day:%Y%m%d}_{int(vhr.minx)}_{int(vhr.bbox[1])}", when, out


_VHR_CODE = {name: code for code, name in VHR_LANDCOVER.items()}


def render_vhr_labels(world: World, k: int) -> np.ndarray:
    """LandCover.ai labels of VHR acquisition ``k`` on its 1 m grid: uint8 ``(H, W)`` ``VHR_LANDCOVER`` codes.

    Replays ``render_vhr``'s draws (same random streams, same order, onto a scratch array), so that
    **building** is exactly the roof pixels it draws: old-town houses and, once completed, the roofs of
    new buildings (their paved yards and construction sites are background). **woodland** is forest
    (deciduous and coniferous units) not yet cleared on that day, **water** the day's water mask with
    floods, **road** the road units: all upsampled from the 10 m scene as the renderer does. Priority
    follows the drawing order (water, then road, then roofs over the rest). Background is everything else.
    """
    cfg, layout = world.config, world.layout
    eday = epoch_day(vhr_dates(cfg)[k])
    static = rng_for(cfg.seed, "vhr-static")
    win = Grid.from_bbox(layout.vhr.bbox, 10.0).window_in(layout.world)
    _, water10, _ = surface_reflectance(
        world.scene, world.plan, world.urban, eday, world.weather.moisture[eday]
    )
    units = world.scene.units
    unit10 = world.scene.unit[win]
    _, urban_u = unit_fractions(units, eday, world.weather.moisture[eday])
    ones = np.ones((10, 10), np.int8)
    kind, unit = np.kron(units.kind[unit10], ones), np.kron(unit10, ones.astype(np.int32))
    h, w = kind.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scratch = np.ones((4, h, w), np.float32)
    cleared = _started(world, unit10, eday, EV_CLEAR)
    _fields(static, scratch, kind, unit, xx, yy, len(units), _started(world, unit10, eday, EV_BUILD))
    _trees(static, scratch, kind, cleared)
    houses = _town(static, scratch, kind, urban_u[unit], xx, yy)
    new_roofs = _events(world, scratch, eday, win)

    labels = np.zeros((h, w), np.uint8)
    labels[np.isin(kind, (KIND_DECID, KIND_CONIF)) & ~cleared] = _VHR_CODE["woodland"]
    labels[np.kron(water10[win], ones).astype(bool)] = _VHR_CODE["water"]
    labels[kind == KIND_ROAD] = _VHR_CODE["road"]
    labels[houses | new_roofs] = _VHR_CODE["building"]
    return labels


def _fields(
    rng: np.random.Generator,
    base: np.ndarray,
    kind: np.ndarray,
    unit: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
    n_units: int,
    built: np.ndarray,
) -> None:
    """Drill rows and tramlines oriented per field; soil texture. Not on ``built`` (bool, 1 m): a
    building's lot, graded once its construction has started, keeps no field or meadow texture."""
    crop = np.isin(kind, (KIND_WCEREAL, KIND_MAIZE, KIND_RAPE)) & ~built
    table = _hash_table(rng, n_units, 2)
    theta = table[unit, 0] * np.pi
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    spacing = 18.0 + 6.0 * table[unit, 1]
    tram = (np.mod(proj, spacing) < 1.3).astype(np.float32)
    rows = np.sin(2 * np.pi * proj / 3.0)
    mod = 1.0 + 0.04 * rows - 0.18 * tram + 0.04 * smooth_white(rng, kind.shape, 1.0)
    base[:, crop] *= mod[crop]
    grass = (kind == 3) & ~built
    base[:, grass] *= (1.0 + 0.06 * smooth_white(rng, kind.shape, 1.5))[grass]


def _started(world: World, unit10: np.ndarray, eday: int, event: int) -> np.ndarray:
    """bool ``(H, W)`` at 1 m: the pixels of the units whose ``event`` (``EV_CLEAR``: a clear-cut,
    ``EV_BUILD``: a construction) started on or before epoch day ``eday``."""
    units = world.scene.units
    started10 = (units.event == event) & (units.t0 <= eday)
    return np.kron(started10[unit10], np.ones((10, 10), bool))


def _trees(rng: np.random.Generator, base: np.ndarray, kind: np.ndarray, cleared: np.ndarray) -> None:
    """Tree crowns (3-8 m) with dark gaps in forests; a clear-cut (``cleared``) has no crowns left."""
    forest = np.isin(kind, (KIND_DECID, KIND_CONIF)) & ~cleared
    light = _crowns(rng, kind.shape)
    base[:, forest] *= light[forest]


def _crowns(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float ``shape`` brightness factor of a closed canopy at 1 m: lit crowns (0.55-1.45) and dark gaps."""
    crowns = smooth_white(rng, shape, 2.0)
    return 0.55 + 0.9 / (1.0 + np.exp(-1.8 * crowns))


def _roof_cells(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cw: float, ch: float):
    ix = np.floor(xx / cw).astype(np.int64)
    iy = np.floor(yy / ch).astype(np.int64)
    n = int(ix.max() + 1) * int(iy.max() + 1)
    cell = iy * int(ix.max() + 1) + ix
    tab = _hash_table(rng, n, 6)[cell]
    fx, fy = xx / cw - ix, yy / ch - iy
    return tab, fx, fy


def _town(
    rng: np.random.Generator,
    base: np.ndarray,
    kind: np.ndarray,
    urban: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
) -> np.ndarray:
    """Houses with pitched roofs in the old town; asphalt roads. Returns the roof mask (bool, (H, W))."""
    town = (kind == KIND_URBAN) & urban
    tab, fx, fy = _roof_cells(rng, xx, yy, 14.0, 11.0)
    inset = 0.1 + 0.15 * tab[..., 0]
    house = town & (tab[..., 1] < 0.75) & (fx > inset) & (fx < 1 - inset) & (fy > 0.12) & (fy < 0.88)
    colour = _ROOFS[np.minimum((tab[..., 2] * 3).astype(int), 2)]
    ridge = np.where(fy < 0.5, 1.08, 0.85)[..., None]
    roof = (colour * ridge * (0.9 + 0.2 * tab[..., 3:4])).transpose(2, 0, 1)
    base[:, house] = roof[:, house]
    yard = town & ~house & (tab[..., 4] < 0.5)
    base[:, yard] = _ASPHALT[:, None] * 1.4
    road = kind == KIND_ROAD
    base[:, road] = _ASPHALT[:, None] * (1 + 0.05 * smooth_white(rng, kind.shape, 1.0)[road])
    return house


def _clearcut(rng: np.random.Generator, hh: int, ww: int) -> np.ndarray:
    """float32 ``(H, W)`` brightness factor of a clear-cut at 1 m over its soil: fine logging slash,
    windrows of piled branches (2-4 m wide, 12-20 m apart, one direction per cut, darker and coarser)
    and bright fresh stumps (about one per 60 m²)."""
    slash = 1.0 + 0.25 * smooth_white(rng, (hh, ww), 0.8)
    theta, spacing, width = rng.uniform(0.0, np.pi), rng.uniform(12.0, 20.0), rng.uniform(2.0, 4.0)
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    along = np.mod(xx * np.cos(theta) + yy * np.sin(theta), spacing)
    wobble = 1.5 * smooth_white(rng, (hh, ww), 4.0)
    rows = np.abs(along + wobble - spacing / 2) < width / 2
    slash[rows] *= 0.62 + 0.2 * smooth_white(rng, (hh, ww), 0.7)[rows]
    stumps = rng.random((hh, ww)) < 1.0 / 60.0
    slash[stumps & ~rows] *= 1.45
    return slash.astype(np.float32)


def _draw_clearcut(rng: np.random.Generator, base: np.ndarray, mask: np.ndarray, a0: int, b0: int) -> None:
    """Texture a clear-cut in place: ``mask`` (bool, 1 m) placed with its top-left corner at row ``a0``,
    column ``b0`` of ``base`` (possibly outside it: only the overlap is drawn). The soil is smoothed over
    a few metres inside the cut (the 10 m reflectance would show as blocks), then ``_clearcut`` applied.
    The texture is drawn at the whole cut's size from ``rng`` (the cut's own generator)."""
    hh, ww = mask.shape
    texture = _clearcut(rng, hh, ww)
    _, h, w = base.shape
    ya, yb, xa, xb = max(a0, 0), min(a0 + hh, h), max(b0, 0), min(b0 + ww, w)
    if ya >= yb or xa >= xb:
        return
    inside = mask[ya - a0 : yb - a0, xa - b0 : xb - b0]
    patch = base[:, ya:yb, xa:xb]
    weight = ndimage.gaussian_filter(inside.astype(np.float32), 3.0)
    soil = ndimage.gaussian_filter(patch * inside, (0, 3.0, 3.0)) / np.maximum(weight, 1e-6)
    patch[:, inside] = soil[:, inside] * texture[ya - a0 : yb - a0, xa - b0 : xb - b0][inside]


def _events(world: World, base: np.ndarray, eday: int, win: tuple[slice, slice]) -> np.ndarray:
    """New buildings (roof, paved yard) or construction sites; logging slash in clearings. Returns the
    mask of the completed buildings' roofs (bool, (H, W))."""
    plan = world.plan
    r0, c0 = win[0].start, win[1].start
    roofs = np.zeros(base.shape[1:], bool)
    for ev in plan.events:
        rs, cs = ev["window"]
        if ev["start"] > eday or ev["type"] not in (BUILD, CLEAR):
            continue
        a0, a1 = (rs.start - r0) * 10, (rs.stop - r0) * 10
        b0, b1 = (cs.start - c0) * 10, (cs.stop - c0) * 10
        mask10 = plan.event_id[rs, cs] == ev["id"]
        mask = np.kron(mask10, np.ones((10, 10), bool))
        if ev["type"] == CLEAR:  # a clear-cut is textured where it lies in the sub-area, edges included;
            # its own stream: the same slash on every date, whatever other events began before it
            _draw_clearcut(rng_for(world.config.seed, f"vhr-clearcut-{ev['id']}"), base, mask, a0, b0)
            continue
        if a0 < 0 or b0 < 0 or a1 > base.shape[1] or b1 > base.shape[2]:
            continue  # only buildings wholly inside the sub-area are drawn
        sub = (slice(None), slice(a0, a1), slice(b0, b1))
        patch = base[sub]
        hh, ww = mask.shape
        yy, xx = np.mgrid[0:hh, 0:ww]
        inner = mask & (yy >= 4) & (yy < hh - 4) & (xx >= 4) & (xx < ww - 4)
        if ev["completed"] > eday:
            found = inner & (yy >= hh // 4) & (yy < 3 * hh // 4) & (xx >= ww // 4) & (xx < 3 * ww // 4)
            patch[:, found] = _CONCRETE[:, None]
            continue
        patch[:, mask] = _ASPHALT[:, None] * 1.3
        colour = _ROOFS[ev["id"] % 4]
        if min(hh, ww) >= 60:  # flat industrial roof with roof units
            patch[:, inner] = colour[:, None]
            dots = inner & (np.mod(yy, 15) < 2) & (np.mod(xx, 15) < 2)
            patch[:, dots] = 0.15
            roofs[a0:a1, b0:b1] |= inner
        else:  # a row of houses with pitched roofs
            cell = np.mod(xx - 4, 14)
            house = inner & (cell < 11) & (cell > 0)
            shade = np.where(yy < hh // 2, 1.08, 0.85)
            patch[:, house] = colour[:, None] * shade[house]
            roofs[a0:a1, b0:b1] |= house
    return roofs
