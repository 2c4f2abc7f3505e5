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
