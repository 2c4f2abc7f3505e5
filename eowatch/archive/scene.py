"""Static land cover of the simulated world (pure numpy).

The world is the AOI plus a margin on a 10 m grid. Every pixel belongs to a *unit* (a parcel, a forest
stand, a town block, the river...) that carries a kind (see ``KIND_*``) and phenology parameters; the
reflectance and backscatter of a unit at a date are computed once per unit, then gathered per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from eowatch.archive.config import ArchiveConfig, Grid, Layout, rng_for
from eowatch.archive.noise import fractal, smooth_white

# Unit kinds (internal; several kinds map to one LANDCOVER class).
KIND_WATER, KIND_DECID, KIND_CONIF, KIND_GRASS, KIND_WCEREAL = 0, 1, 2, 3, 4
KIND_MAIZE, KIND_RAPE, KIND_URBAN, KIND_ROAD, KIND_BARE = 5, 6, 7, 8, 9
#: LANDCOVER code of each kind (eowatch.legend).
KIND_CLASS = np.array([1, 2, 2, 3, 4, 5, 6, 7, 7, 8], dtype=np.uint8)

# Unit events (changes planted on a unit).
EV_NONE, EV_BUILD, EV_CLEAR, EV_ROTATE = 0, 1, 2, 3


@dataclass
class Units:
    """Per-unit attribute table (1-D arrays, one entry per unit)."""

    kind: np.ndarray  # int8 KIND_*
    offset: np.ndarray  # float32, phenology shift in days (+-10)
    amp: np.ndarray  # float32, maximum canopy cover (0.8..1)
    soil: np.ndarray  # float32, soil brightness factor (0.8..1.2)
    mow: np.ndarray  # float32 (n, 3), day-of-year of mowing events, NaN = none
    plow: np.ndarray  # float32, day-of-year of ploughing after harvest
    event: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # EV_*
    t0: np.ndarray = field(default_factory=lambda: np.zeros(0))  # epoch day of the change start
    t1: np.ndarray = field(default_factory=lambda: np.zeros(0))  # epoch day of completion

    def __len__(self) -> int:
        return len(self.kind)

    def copy_rows(self, rows: np.ndarray) -> np.ndarray:
        """Append copies of ``rows``; return the indices of the new units."""
        start = len(self)
        for name in ("kind", "offset", "amp", "soil", "mow", "plow", "event", "t0", "t1"):
            arr = getattr(self, name)
            setattr(self, name, np.concatenate([arr, arr[rows]]))
        return np.arange(start, len(self))


@dataclass
class Scene:
    """The static world: units, base land cover and helper layers on the 10 m world grid."""

    layout: Layout
    unit: np.ndarray  # int32 (H, W)
    units: Units
    floodplain: np.ndarray  # bool (H, W)
    height: np.ndarray  # float32 (H, W), 0 at the river .. 1 at the floodplain edge
    town_dist: np.ndarray  # float32 (H, W), distance to the nearest town centre / its radius
    road: np.ndarray  # bool (H, W)
    texture: np.ndarray  # float32 (H, W), multiplicative pixel texture

    @property
    def grid(self) -> Grid:
        return self.layout.world

    @property
    def kind(self) -> np.ndarray:
        return self.units.kind[self.unit]

    @property
    def landcover(self) -> np.ndarray:
        """Base LANDCOVER per pixel (uint8, before planted changes)."""
        return KIND_CLASS[self.kind]


def build_scene(config: ArchiveConfig, layout: Layout) -> Scene:
    """Generate the static land cover for ``config`` (deterministic)."""
    grid = layout.world
    x, y = grid.centers()
    edge = layout.aoi.bbox[2] - layout.aoi.bbox[0]
    cell, n_cells = _parcels(rng_for(config.seed, "parcels"), grid, x, y)
    kind = _crop_kinds(rng_for(config.seed, "crops"), n_cells)[cell]

    rng = rng_for(config.seed, "forest")
    forest = fractal(rng, grid.shape, beta=3.1, scale=4)
    forest_mask = forest > np.quantile(forest, 0.83)
    vx0, vy0, vx1, vy1 = layout.vhr.bbox
    fx, fy = vx0 + 0.28 * (vx1 - vx0), vy0 + 0.3 * (vy1 - vy0)
    r = min(350.0, 0.22 * (vx1 - vx0))
    forest_mask |= ((x - fx) / r) ** 2 + ((y - fy) / (0.8 * r)) ** 2 < 1.0 + 0.25 * forest / 3
    conifer = fractal(rng, grid.shape, beta=3.0, scale=4) > 0.6
    kind = np.where(forest_mask, np.where(conifer, KIND_CONIF, KIND_DECID), kind)

    floodplain, height, river = _river(rng_for(config.seed, "river"), grid, x, y, edge)
    kind = np.where(floodplain & np.isin(kind, (KIND_DECID, KIND_CONIF)), KIND_GRASS, kind)
    meadow = rng_for(config.seed, "meadow").random(n_cells) < 0.7
    kind = np.where(floodplain & meadow[cell], KIND_GRASS, kind)
    kind = np.where(river | _lake(rng_for(config.seed, "lake"), layout, x, y, floodplain), KIND_WATER, kind)

    town_dist, town, streets = _towns(rng_for(config.seed, "town"), layout, x, y)
    roads = streets | _main_roads(main_road_lines(config, layout), x, y)
    garden = rng_for(config.seed, "garden").random(n_cells) < 0.15
    kind = np.where(town & ~(kind == KIND_WATER), np.where(garden[cell], KIND_GRASS, KIND_URBAN), kind)
    kind = np.where(roads & (kind != KIND_WATER), KIND_ROAD, kind)

    unit, units = _units(rng_for(config.seed, "units"), cell, kind.astype(np.int8))
    texture = _texture(rng_for(config.seed, "texture"), grid, units.kind[unit])
    return Scene(layout, unit, units, floodplain, height, town_dist, roads, texture)


def _parcels(rng: np.random.Generator, grid: Grid, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Voronoi parcels (150-600 m) from seeds on a jittered, sheared grid."""
    spacing = 330.0
    minx, miny, maxx, maxy = grid.bbox
    gx = np.arange(minx - spacing, maxx + spacing, spacing)
    gy = np.arange(miny - spacing, maxy + spacing, spacing)
    sx, sy = np.meshgrid(gx, gy)
    sx = sx + 0.25 * (sy - miny) * 0.3 + rng.uniform(-0.35, 0.35, sx.shape) * spacing
    sy = sy + rng.uniform(-0.35, 0.35, sy.shape) * spacing
    tree = cKDTree(np.column_stack([sx.ravel(), sy.ravel()]))
    xx, yy = np.broadcast_arrays(x, y)
    _, idx = tree.query(np.column_stack([xx.ravel(), yy.ravel()]), workers=-1)
    cell = idx.reshape(grid.shape).astype(np.int32)
    return cell, sx.size


def _crop_kinds(rng: np.random.Generator, n: int) -> np.ndarray:
    kinds = np.array([KIND_WCEREAL, KIND_MAIZE, KIND_RAPE, KIND_GRASS, KIND_BARE])
    return rng.choice(kinds, size=n, p=[0.31, 0.24, 0.11, 0.31, 0.03]).astype(np.int8)


def _river(
    rng: np.random.Generator, grid: Grid, x: np.ndarray, y: np.ndarray, edge: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A meandering west-east river with its floodplain; returns (floodplain, height, river)."""
    x0, y0 = grid.bbox[0] + 1500.0, grid.bbox[1] + 1500.0
    amp = min(400.0, 0.06 * edge)
    wavelength = rng.uniform(2500.0, 4000.0)
    phase = rng.uniform(0, 2 * np.pi)
    xs = x[0]
    wiggle = np.cumsum(rng.standard_normal(xs.size)) * 2.0
    wiggle -= np.linspace(wiggle[0], wiggle[-1], xs.size)
    centre = y0 + 0.2 * edge + amp * np.sin(2 * np.pi * (xs - x0) / wavelength + phase) + wiggle
    dist = np.abs(y - centre[None, :])
    half = min(420.0, 0.12 * edge)
    bumps = fractal(rng, grid.shape, beta=3.0, scale=4)
    height = (dist / half + 0.12 * bumps).astype(np.float32)
    river = dist < 22.0
    return (height < 1.0) & ~river, np.clip(height, 0, None), river


def _lake(
    rng: np.random.Generator, layout: Layout, x: np.ndarray, y: np.ndarray, fp: np.ndarray
) -> np.ndarray:
    minx, miny, maxx, _maxy = layout.aoi.bbox
    edge = maxx - minx
    r = min(320.0, 0.08 * edge)
    # Upstream of the river, south-east of the town (which sits at the VHR area's north-east corner).
    cx = minx + rng.uniform(0.75, 0.9) * edge
    cy = miny + rng.uniform(0.3, 0.45) * edge
    angle = rng.uniform(0, np.pi)
    u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    return (u / r) ** 2 + (v / (0.6 * r)) ** 2 < 1.0


def _towns(
    rng: np.random.Generator, layout: Layout, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Towns: one at the VHR area's north-east corner, more for large AOIs; returns (dist, town, streets)."""
    minx, miny, maxx, _maxy = layout.aoi.bbox
    edge = maxx - minx
    vx0, vy0, vx1, vy1 = layout.vhr.bbox
    centres = [(vx0 + 0.95 * (vx1 - vx0), vy0 + 0.95 * (vy1 - vy0), min(1100.0, 0.25 * edge))]
    for _ in range(int(edge * edge / 150e6)):
        centres.append((minx + rng.uniform(0.1, 0.9) * edge, miny + rng.uniform(0.1, 0.9) * edge, 700.0))
    shape = np.broadcast_shapes(x.shape, y.shape)
    dist = np.full(shape, np.inf, dtype=np.float32)
    streets = np.zeros(shape, dtype=bool)
    rough = fractal(rng, shape, beta=3.0, scale=4)
    for cx, cy, radius in centres:
        d = np.hypot(x - cx, y - cy) / radius
        dist = np.minimum(dist, d.astype(np.float32))
        block = rng.uniform(90.0, 130.0)
        sx = np.mod(x - cx, block) < 10.0
        sy = np.mod(y - cy, block * 1.1) < 10.0
        streets |= (sx | sy) & (d < 1.05)
    town = dist + 0.12 * rough < 1.0
    return dist, town, streets & town


#: A 10 m pixel whose centre lies within this distance (metres) of a regional road's centre line is road.
ROAD_CELL_HALF_WIDTH_M = 5.0


@dataclass(frozen=True)
class RoadLine:
    """A straight regional road's centre line: a point on it (``x``, ``y``: metres in the archive's UTM
    CRS) and its direction (``angle``: radians counter-clockwise from east)."""

    x: float
    y: float
    angle: float

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance in metres of the points ``(x, y)`` (broadcast) from the centre line, float64."""
        return np.abs((x - self.x) * np.sin(self.angle) - (y - self.y) * np.cos(self.angle))


def main_road_lines(config: ArchiveConfig, layout: Layout) -> list[RoadLine]:
    """The centre lines of the two or three straight regional roads through the AOI (deterministic from
    the seed). The 10 m scene draws them ``2 * ROAD_CELL_HALF_WIDTH_M`` wide; the 1 m VHR renderer draws
    their carriageway from these lines (``eowatch.archive.vhr``)."""
    rng = rng_for(config.seed, "roads")
    minx, miny, maxx, _maxy = layout.aoi.bbox
    edge = maxx - minx
    lines = []
    for _ in range(2 + int(edge > 6000)):
        px, py = minx + rng.uniform(0.2, 0.8) * edge, miny + rng.uniform(0.2, 0.8) * edge
        lines.append(RoadLine(float(px), float(py), float(rng.uniform(0, np.pi))))
    return lines


def _main_roads(lines: list[RoadLine], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """bool mask of the regional roads (10 m wide) at the points ``(x, y)``."""
    roads = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=bool)
    for line in lines:
        roads |= line.distance(x, y) < ROAD_CELL_HALF_WIDTH_M
    return roads


def _units(rng: np.random.Generator, cell: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, Units]:
    """Units are (parcel cell, kind) pairs; draw their phenology parameters."""
    key = cell.astype(np.int64) * 16 + kind
    uniq, inverse = np.unique(key.ravel(), return_inverse=True)
    n = uniq.size
    ukind = (uniq % 16).astype(np.int8)
    mow = np.full((n, 3), np.nan, dtype=np.float32)
    meadow = rng.random(n) < 0.65
    first = rng.uniform(130, 150, n)
    mow[:, 0] = np.where(meadow, first, np.nan)
    mow[:, 1] = np.where(meadow, first + rng.uniform(35, 50, n), np.nan)
    mow[:, 2] = np.where(meadow & (rng.random(n) < 0.6), first + rng.uniform(80, 100, n), np.nan)
    units = Units(
        kind=ukind,
        offset=np.clip(rng.normal(0, 5, n), -10, 10).astype(np.float32),
        amp=rng.uniform(0.82, 1.0, n).astype(np.float32),
        soil=rng.uniform(0.8, 1.2, n).astype(np.float32),
        mow=mow,
        plow=rng.uniform(205, 240, n).astype(np.float32),
        event=np.zeros(n, np.int8),
        t0=np.zeros(n),
        t1=np.zeros(n),
    )
    return inverse.reshape(cell.shape).astype(np.int32), units


def _texture(rng: np.random.Generator, grid: Grid, kind: np.ndarray) -> np.ndarray:
    """Multiplicative pixel texture: gentle in fields, crown-scale in forests."""
    fine = smooth_white(rng, grid.shape, 0.7)
    broad = fractal(rng, grid.shape, beta=3.0, scale=2)
    amp_fine = np.array([0.02, 0.09, 0.08, 0.04, 0.03, 0.03, 0.03, 0.0, 0.0, 0.05], np.float32)
    amp_broad = np.array([0.03, 0.05, 0.05, 0.06, 0.05, 0.05, 0.05, 0.0, 0.0, 0.08], np.float32)
    tex = 1.0 + amp_fine[kind] * fine + amp_broad[kind] * broad
    return np.clip(tex, 0.6, 1.4).astype(np.float32)
