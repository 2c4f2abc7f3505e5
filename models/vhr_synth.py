"""Procedural houses and trees with per-date sun and cast shadows, drawn into VHR training pairs.

The archive's VHR imagery has no relief: its roofs do not cast shadows and their shading ignores the sun,
while in real pairs (aerial or satellite mosaics of different dates) every building and tree casts a
shadow whose direction and length change with the date, pitched roofs turn a bright and a dark face to
the sun, and new houses appear on graded lots. ``draw_objects`` adds such objects to a pair of chips:

* **static** houses and trees are drawn in both dates under each date's own sun (elevation and azimuth
  drawn per date), so shadows and roof shading move while nothing changes: they teach the network that
  illumination is not change;
* **new** houses are drawn in one date only (the other date may show a bare, graded lot) and their roof
  footprint is labelled as change, like the building labels of real benchmarks (roofs, not shadows);
* **construction sites** (a new house not built yet) are a graded lot with a concrete foundation slab
  in one date and the untouched ground in the other; the whole lot is labelled change, as the archive
  labels a construction site (``models.vhr_data``: state 0 -> 1). A bare lot that appears is change,
  a ploughed field is not: the slab, the lot's small rectangular shape and its sharp edges tell them apart.

Chip pixels are taken as 1 m (the card's resolution). Images are float32 DN 0-255 ``(2, 3, h, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Sun", "Synthesis", "draw_objects"]

_ROOFS = np.array(  # DN red, green, blue: greys, white, terracotta, brown, blue-grey, blue, red
    [
        [70, 72, 75],
        [115, 115, 118],
        [165, 165, 168],
        [215, 215, 212],
        [160, 90, 65],
        [115, 88, 70],
        [95, 105, 125],
        [60, 95, 170],
        [175, 65, 55],
    ],
    dtype=np.float32,
)
_SOIL = np.array([150.0, 128.0, 105.0], np.float32)
_SLAB = np.array([178.0, 177.0, 171.0], np.float32)  # fresh concrete (the archive's foundations: 0.28)
_CANOPY = np.array([45.0, 70.0, 40.0], np.float32)
_BARE_CROWN = np.array([100.0, 90.0, 80.0], np.float32)
_SHADOW_TINT = np.array([1.0, 1.02, 1.12], np.float32)[:, None]


@dataclass(frozen=True)
class Sun:
    """Sun position of one date."""

    azimuth: float
    """Radians clockwise from image up (north)."""
    elevation: float
    """Radians above the horizon."""

    @property
    def toward(self) -> np.ndarray:
        """Horizontal unit vector ``(dx, dy)`` towards the sun in image axes (x right, y down)."""
        return np.array([np.sin(self.azimuth), -np.cos(self.azimuth)])

    def shadow_offset(self, height_m: float) -> np.ndarray:
        """``(dx, dy)`` px from an object's footprint to the shadow of its top (1 m pixels)."""
        return -self.toward * height_m / np.tan(self.elevation)


@dataclass(frozen=True)
class Synthesis:
    """How many objects to draw per chip and how (uniform draws in the given ranges)."""

    houses_p: float = 0.6
    """Probability that a chip gets houses."""
    houses: tuple[int, int] = (1, 10)
    """Number of houses (inclusive range)."""
    new_p: float = 0.5
    """Probability that a house is new (drawn in one date only, labelled change)."""
    lot_p: float = 0.5
    """Probability that a new house stands on a graded lot visible in the other date."""
    site_p: float = 0.0
    """Probability that a new house is still a construction site (lot and slab, no roof; lot labelled).
    0 (no draw at all) for the shipped models; 0.25 was tried for ``siamese-vhr-change`` and lost on the
    validation archive (docs/models.md, run 6)."""
    large_p: float = 0.2
    """Probability that a house is a large flat-roofed building (sheds, warehouses, schools)."""
    trees_p: float = 0.5
    """Probability that a chip gets trees."""
    trees: tuple[int, int] = (1, 20)
    """Number of trees (inclusive range)."""
    roads_p: float = 0.0
    """Probability that a chip gets a straight road (3-9 m wide, asphalt, concrete or gravel), the same
    in both dates and labelled unchanged: a line across a field whose crop changes is not change. 0 (no
    draw at all, older chips unchanged) up to ``siamese-vhr-change`` 0.5.0."""
    road_width_m: tuple[float, float] = (3.0, 9.0)
    """Road width (metres, 1 m pixels)."""
    elevation_deg: tuple[float, float] = (25.0, 70.0)
    """Sun elevation per date (degrees)."""
    shadow_darkness: tuple[float, float] = (0.35, 0.65)
    """Factor applied to ground in shadow, per date."""


@dataclass(frozen=True)
class _House:
    centre: tuple[float, float]  # (x, y) px
    half: tuple[float, float]  # half length along the ridge, half width
    angle: float  # radians, ridge direction from image x
    height: float  # m
    colour: np.ndarray
    pitched: bool
    present: tuple[bool, bool]
    lot: bool
    site: bool = False
    """A construction site: lot and slab in the ``present`` date, the untouched ground in the other."""

    def corners(self, grow: float = 0.0) -> np.ndarray:
        """``(4, 2)`` corner (x, y) of the footprint grown by ``grow`` px."""
        u, v = self.half[0] + grow, self.half[1] + grow
        c, s = np.cos(self.angle), np.sin(self.angle)
        local = np.array([[-u, -v], [u, -v], [u, v], [-u, v]])
        return local @ np.array([[c, s], [-s, c]]) + np.array(self.centre)


@dataclass(frozen=True)
class _Tree:
    centre: tuple[float, float]
    radius: float
    height: float


def draw_objects(
    images: np.ndarray, label: np.ndarray, rng: np.random.Generator, synthesis: Synthesis
) -> None:
    """Draw houses and trees into a pair ``(2, 3, h, w)`` in place; mark new roofs in ``label`` ``(h, w)``."""
    h, w = label.shape
    if synthesis.roads_p > 0 and rng.random() < synthesis.roads_p:  # no draw at 0: older chips unchanged
        _road(images, label, rng, synthesis)
    houses = _houses(rng, synthesis, h, w) if rng.random() < synthesis.houses_p else []
    trees = _trees(rng, synthesis, h, w) if rng.random() < synthesis.trees_p else []
    if not houses and not trees:
        return
    lo, hi = np.radians(synthesis.elevation_deg)
    for date in range(2):
        sun = Sun(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(lo, hi)))
        darkness = np.float32(rng.uniform(*synthesis.shadow_darkness))
        fine, coarse = _texture(rng, (h, w), 0.7), _texture(rng, (h, w), 1.5)
        here = [house for house in houses if house.present[date] and not house.site]
        for house in houses:
            if house.lot and house.present[date] == house.site:  # the lot of a new house or a site
                lot = _polygon_mask(house.corners(grow=3.0), h, w)
                images[date][:, lot] = _SOIL[:, None] * rng.uniform(0.85, 1.15) * (1.0 + 0.12 * coarse[lot])
                if house.site:
                    slab = _polygon_mask(house.corners(grow=-min(house.half) / 3.0), h, w)
                    images[date][:, slab] = _SLAB[:, None] * rng.uniform(0.9, 1.1) * (1.0 + 0.03 * fine[slab])
        shadow = np.zeros((h, w), bool)
        for house in here:
            corners = house.corners()
            shadow |= _polygon_mask(np.vstack([corners, corners + sun.shadow_offset(house.height)]), h, w)
        for tree in trees:
            shadow |= _disk_mask(
                np.array(tree.centre) + sun.shadow_offset(tree.height * 0.8), tree.radius, h, w
            )
        images[date][:, shadow] *= darkness * _SHADOW_TINT
        for house in here:
            _roof(images[date], house, sun, fine)
        for tree in trees:
            _crown(images[date], tree, sun, fine, rng.uniform(0.8, 1.25), leaf_off=rng.random() < 0.25)
    for house in houses:
        if house.present[0] != house.present[1]:
            label[_polygon_mask(house.corners(grow=3.0 if house.site else 0.0), h, w)] = 1


_ROAD_SURFACES = np.array(  # DN red, green, blue: dark and worn asphalt, concrete, gravel
    [[62, 64, 68], [92, 93, 96], [150, 150, 146], [150, 138, 118]], dtype=np.float32
)


def _road(images: np.ndarray, label: np.ndarray, rng: np.random.Generator, s: Synthesis) -> None:
    """A straight road across the chip, identical in both dates but for each date's fine grain, with a
    dashed white centre line on a paved road (p 0.4); its pixels are labelled unchanged (0)."""
    h, w = label.shape
    angle = rng.uniform(0, np.pi)
    offset = rng.uniform(-0.35, 0.35) * min(h, w)
    half = rng.uniform(*s.road_width_m) / 2
    surface = int(rng.integers(len(_ROAD_SURFACES)))
    colour = _ROAD_SURFACES[surface] * rng.uniform(0.85, 1.15)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    across = (xx - w / 2) * np.sin(angle) - (yy - h / 2) * np.cos(angle) - offset
    along = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)
    road = np.abs(across) < half
    marked = surface < 2 and rng.random() < 0.4  # a paved road (asphalt) may carry a centre line
    marking = (np.abs(across) < 0.5) & (np.mod(along, 9.0) < 3.0) if marked else None
    grain = _texture(rng, (h, w), 1.0)
    for date in range(2):
        fine = _texture(rng, (h, w), 0.7)
        images[date][:, road] = colour[:, None] * (1.0 + 0.05 * grain[road] + 0.02 * fine[road])
        if marking is not None:
            images[date][:, marking] = 200.0
    label[road] = 0


def _houses(rng: np.random.Generator, s: Synthesis, h: int, w: int) -> list[_House]:
    """Houses in a row along a street (60 %) or scattered."""
    n = int(rng.integers(s.houses[0], s.houses[1] + 1))
    row = rng.random() < 0.6
    street = rng.uniform(0, np.pi)
    start = rng.uniform(0, [w, h])
    direction = np.array([np.cos(street), np.sin(street)])
    out, along = [], -float(rng.uniform(0, 0.5 * max(h, w)))
    for _ in range(n):
        large = rng.random() < s.large_p
        half = (
            (rng.uniform(12, 30), rng.uniform(8, 18)) if large else (rng.uniform(4, 11), rng.uniform(3.5, 7))
        )
        if row:
            along += half[0] + rng.uniform(2, 7)
            centre = start + direction * along + direction[::-1] * [-1, 1] * rng.normal(0, 1.5)
            along += half[0]
            angle = street + rng.normal(0, 0.05) + (np.pi / 2 if rng.random() < 0.3 else 0.0)
        else:
            centre, angle = rng.uniform(0, [w, h]), rng.uniform(0, np.pi)
        new = rng.random() < s.new_p
        present = (True, True) if not new else ((False, True) if rng.random() < 0.85 else (True, False))
        colour = _ROOFS[rng.integers(len(_ROOFS))] * rng.uniform(0.85, 1.15, 3).astype(np.float32)
        site = new and s.site_p > 0 and rng.random() < s.site_p  # no draw at 0: older chips unchanged
        out.append(
            _House(
                centre=(float(centre[0]), float(centre[1])),
                half=(float(half[0]), float(half[1])),
                angle=float(angle),
                height=float(rng.uniform(6, 14) if large else rng.uniform(3, 9)),
                colour=colour,
                pitched=not large and rng.random() < 0.8,
                present=present,
                lot=site or (new and rng.random() < s.lot_p),
                site=site,
            )
        )
    return out


def _trees(rng: np.random.Generator, s: Synthesis, h: int, w: int) -> list[_Tree]:
    n = int(rng.integers(s.trees[0], s.trees[1] + 1))
    return [
        _Tree(
            centre=(float(rng.uniform(0, w)), float(rng.uniform(0, h))),
            radius=float(rng.uniform(1.5, 6.0)),
            height=float(rng.uniform(4, 16)),
        )
        for _ in range(n)
    ]


def _polygon_mask(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pixels whose centres lie inside the convex hull of ``points`` ``(n, 2)`` (x, y)."""
    hull = _convex_hull(points)
    mask = np.zeros((h, w), bool)
    x0, y0 = np.floor(hull.min(axis=0)).astype(int)
    x1, y1 = np.ceil(hull.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return mask
    yy, xx = np.ogrid[y0:y1, x0:x1]
    yy, xx = yy + 0.5, xx + 0.5
    inside = np.ones((y1 - y0, x1 - x0), bool)
    for (ax, ay), (bx, by) in zip(hull, np.roll(hull, -1, axis=0), strict=True):
        inside &= (bx - ax) * (yy - ay) - (by - ay) * (xx - ax) >= 0
    mask[y0:y1, x0:x1] = inside
    return mask


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull, counter-clockwise in image axes (monotone chain)."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) < 3:
        return np.array(pts)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _disk_mask(centre: np.ndarray, radius: float, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    x0, y0 = np.floor(centre - radius).astype(int)
    x1, y1 = np.ceil(centre + radius).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 < x1 and y0 < y1:
        yy, xx = np.ogrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] = (xx + 0.5 - centre[0]) ** 2 + (yy + 0.5 - centre[1]) ** 2 <= radius**2
    return mask


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth zero-mean noise of unit standard deviation."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _roof(image: np.ndarray, house: _House, sun: Sun, texture: np.ndarray) -> None:
    """Roof of a house: two faces shaded by the sun (pitched) or one flat face, with a little texture."""
    h, w = image.shape[-2:]
    mask = _polygon_mask(house.corners(), h, w)
    if not mask.any():
        return
    yy, xx = np.nonzero(mask)
    c, s = np.cos(house.angle), np.sin(house.angle)
    v = -(xx + 0.5 - house.centre[0]) * s + (yy + 0.5 - house.centre[1]) * c
    shade = np.ones(v.shape, np.float32)
    if house.pitched:
        normal = np.array([-s, c])  # horizontal direction the v > 0 face looks to
        facing = float(normal @ sun.toward) * np.cos(sun.elevation)
        shade = np.where(v > 0, 1.0 + 0.45 * facing, 1.0 - 0.45 * facing).astype(np.float32)
        shade[np.abs(v) < 0.6] *= 1.1  # ridge
    image[:, mask] = house.colour[:, None] * shade * (1.0 + 0.04 * texture[mask])


def _crown(
    image: np.ndarray, tree: _Tree, sun: Sun, texture: np.ndarray, brightness: float, leaf_off: bool
) -> None:
    """A tree crown: textured canopy, brighter on the sun side; leaf-off crowns let the ground through."""
    h, w = image.shape[-2:]
    mask = _disk_mask(np.array(tree.centre), tree.radius, h, w)
    if not mask.any():
        return
    yy, xx = np.nonzero(mask)
    offset = np.stack([xx + 0.5 - tree.centre[0], yy + 0.5 - tree.centre[1]], axis=1) / tree.radius
    lit = 1.0 + 0.35 * (offset @ sun.toward).astype(np.float32)
    tex = 1.0 + 0.18 * texture[mask]
    if leaf_off:
        image[:, mask] = 0.5 * image[:, mask] + 0.5 * _BARE_CROWN[:, None] * tex
    else:
        image[:, mask] = _CANOPY[:, None] * brightness * lit * tex
