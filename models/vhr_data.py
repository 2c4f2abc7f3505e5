"""VHR change pairs of a synthetic archive: images in memory, per-pair change labels from the planted truth.

An archive (``eowatch.archive.make_archive``) holds ``vhr_dates`` 1 m RGBN acquisitions of one sub-area and
10 m truth rasters (``change_type``, ``change_start``, ``change_end``, ``events.geojson``). The label of a
pair of acquisition days ``(d_i, d_j)`` follows the planted **state** of each pixel on each day:

* ``new_building``: 0 before the construction starts, 1 while it is a construction site (foundation),
  2 once completed (``completed`` in ``events.geojson``);
* ``forest_clearing``: 0 before the change starts, 1 from its first day;
* ``crop_rotation``: always 0. A rotation keeps the land cover (cropland): at 1 m its harvest looks like
  the harvest of any other field and its new crop like any crop, so a pair of dates cannot tell it from
  the season's own change. It is not VHR change (the season-aware S2 models map rotations); its pixels
  are negatives like every other field;
* ``flooding``: 1 while the pixel is under water (``change_start <= d < change_end``), else 0.

A pixel is **changed** between two days when its state differs (in either direction: the label does not
depend on the order of the dates, like ``SiameseDiffUNet``). Labels live on the 10 m truth grid; each
10 m pixel covers 10 x 10 VHR pixels with the same origin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eowatch.errors import InputError

__all__ = ["PlantedChange", "VhrArchive", "pair_label", "read_planted_change", "read_vhr_archive"]

_EPOCH = np.datetime64("1970-01-01", "D")
_BUILD, _CLEAR, _FLOOD = 1, 2, 3
_VHR_COLLECTION = "vhr-rgbn"


@dataclass(frozen=True)
class VhrArchive:
    """The VHR acquisitions of one archive and the planted change state they show.

    ``images`` are on the 1 m VHR grid, the truth arrays on the 10 m grid over the same bounds
    (``images.shape[-2:] == 10 * change_type.shape``).
    """

    name: str
    """Archive folder name (for logs and the card)."""
    images: np.ndarray
    """``(T, 3, H, W)`` uint8 red, green, blue digital numbers, dates in time order."""
    days: np.ndarray
    """``(T,)`` int64 acquisition days since 1970-01-01."""
    change_type: np.ndarray
    """``(H / 10, W / 10)`` uint8 ``eowatch.legend.CHANGE_TYPES`` codes (0 = no change)."""
    change_start: np.ndarray
    """``(H / 10, W / 10)`` int32 first day of the change (days since 1970-01-01, 0 = none)."""
    change_end: np.ndarray
    """``(H / 10, W / 10)`` int32 first dry day of a flood (0 for permanent changes)."""
    completed: np.ndarray
    """``(H / 10, W / 10)`` int32 completion day of a new building (0 elsewhere)."""

    @property
    def factor(self) -> int:
        """VHR pixels per truth pixel along each axis."""
        return self.images.shape[-1] // self.change_type.shape[-1]

    def state(self, day: int) -> np.ndarray:
        """``(H / 10, W / 10)`` int8 planted state of each truth pixel on ``day`` (see the module doc)."""
        return self.planted.state(day)

    @property
    def planted(self) -> PlantedChange:
        """The truth rasters of the archive's VHR footprint."""
        return PlantedChange(self.change_type, self.change_start, self.change_end, self.completed)


@dataclass(frozen=True)
class PlantedChange:
    """The planted change of an archive over one window of its 10 m truth grid (labels without images:
    what a monitoring run scores its VHR change map against)."""

    change_type: np.ndarray
    """``(h, w)`` uint8 ``eowatch.legend.CHANGE_TYPES`` codes (0 = no change)."""
    change_start: np.ndarray
    """``(h, w)`` int32 first day of the change (days since 1970-01-01, 0 = none)."""
    change_end: np.ndarray
    """``(h, w)`` int32 first dry day of a flood (0 for permanent changes)."""
    completed: np.ndarray
    """``(h, w)`` int32 completion day of a new building (0 elsewhere)."""

    def state(self, day: int) -> np.ndarray:
        """``(h, w)`` int8 planted state of each truth pixel on ``day`` (see the module doc)."""
        ct, start = self.change_type, self.change_start
        begun = (ct > 0) & (start > 0) & (start <= day)
        state = np.zeros(ct.shape, np.int8)
        state[begun & (ct == _CLEAR)] = 1
        build = begun & (ct == _BUILD)
        state[build] = np.where((self.completed[build] > 0) & (self.completed[build] <= day), 2, 1)
        flood = begun & (ct == _FLOOD) & (day < self.change_end)
        state[flood] = 1
        return state

    def label(self, day_a: int, day_b: int) -> np.ndarray:
        """``(h, w)`` uint8: 1 where the planted state differs between two days (days since 1970-01-01)."""
        return (self.state(day_a) != self.state(day_b)).astype(np.uint8)


def pair_label(archive: VhrArchive, i: int, j: int) -> np.ndarray:
    """``(H / 10, W / 10)`` uint8: 1 where the planted state differs between dates ``i`` and ``j``."""
    return archive.planted.label(int(archive.days[i]), int(archive.days[j]))


def read_vhr_archive(archive_dir: Path) -> VhrArchive:
    """Load the VHR images (RGB only) and the truth over their footprint from an archive folder.

    Raises:
        InputError: not an archive, no VHR items, or truth rasters that do not cover the VHR area.
    """
    import rasterio

    archive_dir = Path(archive_dir)
    manifest = archive_dir / "archive.json"
    if not manifest.is_file():
        raise InputError(f"{archive_dir} is not an eowatch archive (no archive.json)")
    items = _vhr_items(archive_dir)
    days = np.array([_day(item["properties"]["datetime"]) for _, item in items], dtype=np.int64)
    images = []
    bounds = None
    for path, item in items:
        href = (path.parent / item["assets"]["image"]["href"]).resolve()
        with rasterio.open(href) as src:
            images.append(src.read((1, 2, 3)))
            bounds = bounds or tuple(src.bounds)
    planted = read_planted_change(archive_dir, bounds)
    shape = planted.change_type.shape
    if images[0].shape[-2] != 10 * shape[0] or images[0].shape[-1] != 10 * shape[1]:
        raise InputError(f"truth rasters of {archive_dir} do not cover the VHR footprint {bounds}")
    return VhrArchive(
        name=archive_dir.name,
        images=np.stack(images),
        days=days,
        change_type=planted.change_type,
        change_start=planted.change_start,
        change_end=planted.change_end,
        completed=planted.completed,
    )


def read_planted_change(archive_dir: Path, bounds: tuple[float, ...]) -> PlantedChange:
    """The planted change rasters of an archive over ``bounds`` (the archive's CRS, metres, snapped to its
    10 m truth grid), completion days of new buildings from ``events.geojson``.

    Raises:
        InputError: not an archive (no ``archive.json``) or no truth rasters.
    """
    import rasterio
    from rasterio.windows import from_bounds

    archive_dir = Path(archive_dir)
    if not (archive_dir / "archive.json").is_file():
        raise InputError(f"{archive_dir} is not an eowatch archive (no archive.json)")
    truth = {}
    for key in ("change_type", "change_start", "change_end"):
        path = archive_dir / "truth" / f"{key}.tif"
        if not path.is_file():
            raise InputError(f"archive {archive_dir} has no planted truth {path.name}")
        with rasterio.open(path) as src:
            window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
            truth[key] = src.read(1, window=window, boundless=False)
    shape = truth["change_type"].shape
    completed = _completion_days(archive_dir, bounds, shape)
    return PlantedChange(
        change_type=truth["change_type"].astype(np.uint8),
        change_start=truth["change_start"].astype(np.int32),
        change_end=truth["change_end"].astype(np.int32),
        completed=np.where(truth["change_type"] == _BUILD, completed, 0).astype(np.int32),
    )


def _vhr_items(archive_dir: Path) -> list[tuple[Path, dict]]:
    folder = archive_dir / "stac" / "items" / _VHR_COLLECTION
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise InputError(f"archive {archive_dir} has no {_VHR_COLLECTION} items")
    items = [(p, json.loads(p.read_text())) for p in paths]
    return sorted(items, key=lambda pair: pair[1]["properties"]["datetime"])


def _day(iso: str) -> int:
    return int((np.datetime64(iso[:10], "D") - _EPOCH).astype(int))


def _completion_days(archive_dir: Path, bounds: tuple[float, ...], shape: tuple[int, int]) -> np.ndarray:
    """Completion day of each new building rasterised on the 10 m grid over ``bounds`` (0 elsewhere)."""
    from pyproj import Transformer
    from rasterio import features
    from rasterio.transform import from_bounds as transform_from_bounds
    from shapely.geometry import shape as to_shape
    from shapely.ops import transform as reproject

    events = json.loads((archive_dir / "truth" / "events.geojson").read_text())["features"]
    crs = json.loads((archive_dir / "archive.json").read_text())["crs"]
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform
    shapes = [
        (reproject(to_utm, to_shape(f["geometry"])), _day(f["properties"]["completed"]))
        for f in events
        if f["properties"]["type"] == "new_building" and f["properties"].get("completed")
    ]
    if not shapes:
        return np.zeros(shape, np.int32)
    transform = transform_from_bounds(*bounds, width=shape[1], height=shape[0])
    return features.rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="int32")
