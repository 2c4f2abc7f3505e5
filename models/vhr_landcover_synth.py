"""Drawn houses and trees, with a sun and cast shadows, in single-date VHR land-cover chips, labelled.

The land-cover counterpart of ``models.vhr_synth.draw_objects`` (same house and tree geometry, roof
colours, shading and shadows; the helpers are that module's): one date, every object present, and the
label follows what is drawn: a **roof** is ``building``, a **crown** is ``woodland`` (drawn last, so a
crown over a roof is woodland, as seen from above), a **shadow** keeps the class of the ground it
falls on (LandCover.ai labels shadows by what lies under them). Chip pixels are taken as 1 m.
"""

from __future__ import annotations

import numpy as np

from eowatch.legend import VHR_LANDCOVER

from .vhr_synth import (
    _SHADOW_TINT,
    Sun,
    Synthesis,
    _crown,
    _disk_mask,
    _houses,
    _polygon_mask,
    _roof,
    _texture,
    _trees,
)

__all__ = ["draw_labelled_objects"]

_CODE = {name: code for code, name in VHR_LANDCOVER.items()}


def draw_labelled_objects(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, synthesis: Synthesis
) -> None:
    """Draw houses and trees into ``image`` (float32 DN ``(3, h, w)``) in place and label them in
    ``label`` (uint8 ``(h, w)`` ``VHR_LANDCOVER`` codes): roofs ``building``, crowns ``woodland``."""
    h, w = label.shape
    houses = _houses(rng, synthesis, h, w) if rng.random() < synthesis.houses_p else []
    trees = _trees(rng, synthesis, h, w) if rng.random() < synthesis.trees_p else []
    if not houses and not trees:
        return
    lo, hi = np.radians(synthesis.elevation_deg)
    sun = Sun(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(lo, hi)))
    darkness = np.float32(rng.uniform(*synthesis.shadow_darkness))
    fine = _texture(rng, (h, w), 0.7)
    shadow = np.zeros((h, w), bool)
    for house in houses:
        corners = house.corners()
        shadow |= _polygon_mask(np.vstack([corners, corners + sun.shadow_offset(house.height)]), h, w)
    for tree in trees:
        shadow |= _disk_mask(np.array(tree.centre) + sun.shadow_offset(tree.height * 0.8), tree.radius, h, w)
    image[:, shadow] *= darkness * _SHADOW_TINT
    for house in houses:
        _roof(image, house, sun, fine)
        label[_polygon_mask(house.corners(), h, w)] = _CODE["building"]
    for tree in trees:
        _crown(image, tree, sun, fine, rng.uniform(0.8, 1.25), leaf_off=rng.random() < 0.25)
        label[_disk_mask(np.array(tree.centre), tree.radius, h, w)] = _CODE["woodland"]
