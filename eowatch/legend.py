"""Shared vocabularies: land-cover classes and change types used by the archive, models and reports.

Codes are stable on-disk values (uint8 rasters); never renumber them.
"""

from __future__ import annotations

from types import MappingProxyType

#: Land-cover classes of the synthetic archive (uint8 codes; 0 is nodata).
LANDCOVER: MappingProxyType[int, str] = MappingProxyType(
    {
        0: "nodata",
        1: "water",
        2: "forest",
        3: "grassland",
        4: "winter_cereal",
        5: "maize",
        6: "rapeseed",
        7: "built_up",
        8: "bare_soil",
    }
)

#: Change types (uint8 codes; 0 means no change).
CHANGE_TYPES: MappingProxyType[int, str] = MappingProxyType(
    {
        0: "no_change",
        1: "new_building",
        2: "forest_clearing",
        3: "flooding",
        4: "crop_rotation",
    }
)

#: Display colours (RGB, 0-255) for quicklooks.
CHANGE_COLOURS: MappingProxyType[int, tuple[int, int, int]] = MappingProxyType(
    {
        0: (0, 0, 0),
        1: (230, 25, 75),
        2: (245, 130, 48),
        3: (0, 130, 200),
        4: (255, 225, 25),
    }
)


def change_code(name: str) -> int:
    """Return the uint8 code of a change type name."""
    for code, label in CHANGE_TYPES.items():
        if label == name:
            return code
    raise KeyError(f"unknown change type {name!r}; known: {', '.join(CHANGE_TYPES.values())}")


#: WorldCover-like land-cover legend of the S2 land-cover models (uint8 codes and names of ESA WorldCover
#: 2021; 255 is nodata in land-cover maps). The models predict only the classes their training data has.
WORLDCOVER: MappingProxyType[int, str] = MappingProxyType(
    {
        10: "tree_cover",
        20: "shrubland",
        30: "grassland",
        40: "cropland",
        50: "built_up",
        60: "bare_sparse_vegetation",
        70: "snow_and_ice",
        80: "permanent_water",
        90: "herbaceous_wetland",
        95: "mangroves",
        100: "moss_and_lichen",
    }
)

#: Display colours (RGB, 0-255) of ``WORLDCOVER``, as in the ESA WorldCover 2021 product.
WORLDCOVER_COLOURS: MappingProxyType[int, tuple[int, int, int]] = MappingProxyType(
    {
        10: (0, 100, 0),
        20: (255, 187, 34),
        30: (255, 255, 76),
        40: (240, 150, 255),
        50: (250, 0, 0),
        60: (180, 180, 180),
        70: (240, 240, 240),
        80: (0, 100, 200),
        90: (0, 150, 160),
        95: (0, 207, 117),
        100: (250, 230, 160),
    }
)

#: The synthetic archive's land cover (``LANDCOVER`` names) -> ``WORLDCOVER`` code: the one table that
#: maps the archive onto the WorldCover-like legend (nodata has no class).
LANDCOVER_TO_WORLDCOVER: MappingProxyType[str, int] = MappingProxyType(
    {
        "water": 80,
        "forest": 10,
        "grassland": 30,
        "winter_cereal": 40,
        "maize": 40,
        "rapeseed": 40,
        "built_up": 50,
        "bare_soil": 60,
    }
)


#: Land-cover classes of VHR segmentation, exactly LandCover.ai's (Boguszewski et al. 2021; uint8 codes of
#: its masks; 255 is nodata in VHR land-cover maps).
VHR_LANDCOVER: MappingProxyType[int, str] = MappingProxyType(
    {0: "background", 1: "building", 2: "woodland", 3: "water", 4: "road"}
)

#: Display colours (RGB, 0-255) of ``VHR_LANDCOVER``.
VHR_LANDCOVER_COLOURS: MappingProxyType[int, tuple[int, int, int]] = MappingProxyType(
    {0: (235, 235, 220), 1: (220, 40, 40), 2: (30, 120, 40), 3: (30, 90, 200), 4: (120, 120, 120)}
)
