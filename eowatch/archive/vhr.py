"""1 m RGBN aerial imagery (NAIP-like) over the VHR sub-area, rendered from the 10 m scene.

The 10 m surface reflectance is upsampled (nearest, so class boundaries stay on the 10 m truth grid) and
sub-10 m detail is drawn on top: drill rows and tramlines in fields, tree crowns with shadows, house
roofs with ridge shading in town, new buildings (flat or pitched roofs on a paved yard), construction
sites with foundations, logging slash, and road markings. Open water (lakes, floods) covers that
texture: a flooded field shows turbid water, not its drill rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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
    KIND_WATER,
    KIND_WCEREAL,
    ROAD_CELL_HALF_WIDTH_M,
    main_road_lines,
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


#: Half the width (metres) of a regional road's asphalt carriageway at 1 m: two 3.5 m lanes.
CARRIAGEWAY_HALF_WIDTH_M = 3.5


@dataclass(frozen=True)
class VhrGround:
    """The static ground of the VHR sub-area on its 1 m grid, from the 10 m scene.

    The 10 m scene draws a regional road as the 10 m pixels whose centre lies within 5 m of its centre
    line: a staircase of 10 m blocks across the fields. At 1 m the road is its carriageway, drawn from
    the centre line (``CARRIAGEWAY_HALF_WIDTH_M``); a road block's pixels off the carriageway show the
    nearest ground outside the road's blocks (the field, meadow or forest beside the road), and a
    carriageway pixel outside the road's blocks is road. Town streets and everything else are the 10 m
    scene upsampled (nearest), so class edges stay on the 10 m truth grid.

    ``kind`` (int8 ``KIND_*``) and ``unit`` (int32 unit index) are ``(H, W)`` arrays; ``carriageway`` is
    bool ``(H, W)``; ``source`` holds, per 1 m pixel, the flat index of the pixel whose 10 m data it
    shows (itself except beside a regional road).
    """

    kind: np.ndarray
    unit: np.ndarray
    carriageway: np.ndarray
    source: np.ndarray

    def upsample(self, array10: np.ndarray) -> np.ndarray:
        """``array10`` (the VHR sub-area's window of a 10 m ``(h, w)`` array) on the 1 m grid: upsampled
        (nearest), the roadside pixels taken from their ``source``; same dtype."""
        return np.kron(array10, np.ones((10, 10), array10.dtype)).ravel()[self.source]


def vhr_ground(world: World) -> VhrGround:
    """The 1 m ground of ``world``'s VHR sub-area (deterministic; see ``VhrGround``)."""
    layout = world.layout
    g10 = Grid.from_bbox(layout.vhr.bbox, 10.0)
    g1 = Grid.from_bbox(layout.vhr.bbox, 1.0)
    unit10 = world.scene.unit[g10.window_in(layout.world)]
    units = world.scene.units
    x10, y10 = g10.centers()
    x1, y1 = g1.centers()
    blocks10 = np.zeros(g10.shape, bool)
    carriageway = np.zeros(g1.shape, bool)
    for line in main_road_lines(world.config, layout):
        blocks10 |= line.distance(x10, y10) < ROAD_CELL_HALF_WIDTH_M
        carriageway |= line.distance(x1, y1) < CARRIAGEWAY_HALF_WIDTH_M
    blocks10 &= units.kind[unit10] == KIND_ROAD  # not where the road crosses open water
    blocks = np.kron(blocks10, np.ones((10, 10), bool))
    h, w = blocks.shape
    source = np.arange(h * w, dtype=np.int64).reshape(h, w)
    if blocks.any() and not blocks.all():
        _, (iy, ix) = ndimage.distance_transform_edt(blocks, return_indices=True)
        source = np.where(blocks, iy.astype(np.int64) * w + ix, source)
    unit = np.kron(unit10, np.ones((10, 10), np.int32)).ravel()[source]
    kind = units.kind[unit]
    carriageway &= kind != KIND_WATER
    kind = np.where(carriageway, np.int8(KIND_ROAD), kind).astype(np.int8)
    return VhrGround(kind, unit, carriageway, source)


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
    ground = vhr_ground(world)
    kind, unit = ground.kind, ground.unit
    base = np.stack([ground.upsample(refl10[b][win]) for b in (2, 1, 0, 3)])  # R, G, B, N at 1 m
    _, urban_u = unit_fractions(world.scene.units, eday, world.weather.moisture[eday])
    h, w = kind.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    plain = base.copy()
    _fields(static, base, kind, unit, xx, yy, len(world.scene.units), _started(world, unit, eday, EV_BUILD))
    _trees(static, base, kind, _started(world, unit, eday, EV_CLEAR))
    houses = _town(static, base, kind, urban_u[unit], xx, yy)
    roofs = _events(world, base, eday, win, ground.carriageway)
    # open water (lakes, rivers, floods) hides what lies under it: drill rows, tramlines and soil texture
    # of a flooded field do not show through; only roofs and the raised carriageways stand above a flood
    water = ground.upsample(water10[win]) & ~houses & ~roofs
    water &= ~ground.carriageway
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
    ground = vhr_ground(world)
    kind, unit = ground.kind, ground.unit
    _, urban_u = unit_fractions(units, eday, world.weather.moisture[eday])
    h, w = kind.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scratch = np.ones((4, h, w), np.float32)
    cleared = _started(world, unit, eday, EV_CLEAR)
    _fields(static, scratch, kind, unit, xx, yy, len(units), _started(world, unit, eday, EV_BUILD))
    _trees(static, scratch, kind, cleared)
    houses = _town(static, scratch, kind, urban_u[unit], xx, yy)
    new_roofs = _events(world, scratch, eday, win, ground.carriageway)

    labels = np.zeros((h, w), np.uint8)
    labels[np.isin(kind, (KIND_DECID, KIND_CONIF)) & ~cleared] = _VHR_CODE["woodland"]
    labels[ground.upsample(water10[win])] = _VHR_CODE["water"]
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


def _started(world: World, unit: np.ndarray, eday: int, event: int) -> np.ndarray:
    """bool ``(H, W)`` at 1 m: the pixels of ``unit`` (int, 1 m) whose unit's ``event`` (``EV_CLEAR``: a
    clear-cut, ``EV_BUILD``: a construction) started on or before epoch day ``eday``."""
    units = world.scene.units
    return ((units.event == event) & (units.t0 <= eday))[unit]


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


def _placed(full: np.ndarray, shape: tuple[int, ...], a0: int, b0: int) -> np.ndarray:
    """The part of ``full`` (bool, 1 m) under an array of ``shape`` placed with its top-left corner at row
    ``a0``, column ``b0`` (possibly outside ``full``: False there)."""
    out = np.zeros(shape, bool)
    h, w = full.shape
    ya, yb, xa, xb = max(a0, 0), min(a0 + shape[0], h), max(b0, 0), min(b0 + shape[1], w)
    if ya < yb and xa < xb:
        out[ya - a0 : yb - a0, xa - b0 : xb - b0] = full[ya:yb, xa:xb]
    return out


def _events(
    world: World, base: np.ndarray, eday: int, win: tuple[slice, slice], carriageway: np.ndarray
) -> np.ndarray:
    """New buildings (roof, paved yard) or construction sites; logging slash in clearings. A regional
    road's ``carriageway`` (bool, 1 m) stays road where it runs along the edge of one. Returns the mask of
    the completed buildings' roofs (bool, (H, W))."""
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
        mask &= ~_placed(carriageway, mask.shape, a0, b0)
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
