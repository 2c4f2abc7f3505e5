"""Labelled VHR scenes for the land-cover model: 1 m RGB images of synthetic archives with their
LandCover.ai labels, held in memory.

Labels come from the archive's own renderer: ``eowatch.archive.vhr.render_vhr_labels`` replays the
draws of ``render_vhr`` (same random streams, same order), so **building** is exactly the roof pixels
the renderer draws (old-town houses, new buildings once completed), and woodland, water and road are the
scene's kinds on that day, upsampled from 10 m as the renderer does. Images of an archive's own VHR
area are read from the archive folder (the cache ``train_vhr`` fills); the labels are recomputed from
the archive's config (``archive.json``), which rebuilds the identical world.

The archives' VHR areas hold almost no water (the river and the lake lie elsewhere in the AOI), so a
**water window** (1 km x 1 km at 1 m, centred on the water pixel nearest the AOI centre) is rendered per
archive with the same renderer, the world's VHR grid moved there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from eowatch.archive import ArchiveConfig
from eowatch.archive.config import Grid, vhr_dates
from eowatch.archive.scene import KIND_WATER
from eowatch.archive.vhr import render_vhr, render_vhr_labels
from eowatch.archive.world import World, build_world
from eowatch.errors import InputError

from .vhr_data import read_vhr_archive

__all__ = ["LabelledScene", "archive_config", "read_labelled_archive", "water_scene"]

#: Side (m) of the extra water window rendered per archive.
WATER_WINDOW_M = 1000.0


@dataclass(frozen=True)
class LabelledScene:
    """VHR dates of one place with their labels, all on one 1 m grid."""

    name: str
    """Archive folder name plus the window (``"<archive>"`` or ``"<archive>/water"``)."""
    images: np.ndarray
    """``(T, 3, H, W)`` uint8 red, green, blue digital numbers, dates in time order."""
    labels: np.ndarray
    """``(T, H, W)`` uint8 ``eowatch.legend.VHR_LANDCOVER`` codes."""

    def __post_init__(self) -> None:
        if (
            self.images.ndim != 4
            or self.images.shape[1] != 3
            or self.labels.shape
            != (
                self.images.shape[0],
                *self.images.shape[2:],
            )
        ):
            raise InputError(f"scene {self.name}: images {self.images.shape} and labels {self.labels.shape}")


def archive_config(archive_dir: Path) -> ArchiveConfig:
    """The config an archive folder was generated from (``archive.json``)."""
    manifest = Path(archive_dir) / "archive.json"
    if not manifest.is_file():
        raise InputError(f"{archive_dir} is not an eowatch archive (no archive.json)")
    return ArchiveConfig.from_dict(json.loads(manifest.read_text())["config"])


def _labels(world: World) -> np.ndarray:
    return np.stack([render_vhr_labels(world, k) for k in range(len(vhr_dates(world.config)))])


def read_labelled_archive(archive_dir: Path, world: World | None = None) -> LabelledScene:
    """The VHR images of an archive folder with their labels (world rebuilt from ``archive.json``)."""
    archive = read_vhr_archive(Path(archive_dir))
    world = world or build_world(archive_config(archive_dir))
    labels = _labels(world)
    if labels.shape != (archive.images.shape[0], *archive.images.shape[2:]):
        raise InputError(
            f"labels {labels.shape} of {archive_dir} do not fit its images {archive.images.shape}"
        )
    return LabelledScene(archive.name, archive.images, labels)


def water_scene(world: World, name: str, size_m: float = WATER_WINDOW_M) -> LabelledScene | None:
    """Every VHR date rendered over a ``size_m`` window centred on the world's water pixel nearest the AOI
    centre (None when the world has no water away from its edges)."""
    window = _water_window(world, size_m)
    if window is None:
        return None
    moved = replace(world, layout=replace(world.layout, vhr=window))
    dates = range(len(vhr_dates(world.config)))
    images = np.stack([render_vhr(moved, k)[2][:3] for k in dates])
    return LabelledScene(f"{name}/water", images, _labels(moved))


def _water_window(world: World, size_m: float) -> Grid | None:
    """A 1 m grid of side ``size_m`` (snapped to the 10 m world grid) inside the world, centred on the
    permanent water pixel nearest the AOI centre."""
    grid = world.layout.world
    half = round(size_m / grid.res / 2)
    rows, cols = np.nonzero(world.scene.kind == KIND_WATER)
    inside = (rows >= half) & (rows < grid.height - half) & (cols >= half) & (cols < grid.width - half)
    if not inside.any():
        return None
    rows, cols = rows[inside], cols[inside]
    aoi = world.layout.aoi.window_in(grid)
    cy, cx = (aoi[0].start + aoi[0].stop) / 2, (aoi[1].start + aoi[1].stop) / 2
    i = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    r0, c0 = int(rows[i]) - half, int(cols[i]) - half
    minx, maxy = grid.minx + c0 * grid.res, grid.maxy - r0 * grid.res
    side = 2 * half * grid.res
    return Grid.from_bbox((minx, maxy - side, minx + side, maxy), 1.0)
