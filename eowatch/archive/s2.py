"""Sentinel-2 L2A rendering: one datatake per date, cut into the MGRS-like tiles."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

from eowatch.archive.clouds import apply_atmosphere, cloud_layers, haze_blur, scene_classification
from eowatch.archive.config import CRS, epoch_day, rng_for, s2_dates
from eowatch.archive.phenology import surface_reflectance
from eowatch.archive.world import World, solar_position

#: Asset key -> (resolution m, index in the reflectance stack or None for SCL).
S2_ASSETS: dict[str, tuple[int, int | None]] = {
    "blue": (10, 0),
    "green": (10, 1),
    "red": (10, 2),
    "nir": (10, 3),
    "swir16": (20, 4),
    "swir22": (20, 5),
    "scl": (20, None),
}
PLATFORMS = ("sentinel-2a", "sentinel-2b", "sentinel-2c")


@dataclass
class S2Product:
    """One tile of one datatake: pixel arrays (uint16/uint8) and the metadata STAC needs."""

    item_id: str
    tile: str
    datetime: dt.datetime
    platform: str
    relative_orbit: int
    sun_azimuth: float
    sun_elevation: float
    cloud_cover: float  # percent of valid pixels flagged 8/9/10 in SCL
    nodata_percent: float
    arrays: dict[str, np.ndarray]


def encode(refl: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Reflectance -> uint16 DN of processing baseline >= 04.00: DN = (rho + 0.1) / 1e-4; 0 = nodata."""
    dn = np.clip(np.rint((refl + 0.1) * 10000.0), 1, 65535).astype(np.uint16)
    dn[~valid] = 0
    return dn


def _mean2(x: np.ndarray) -> np.ndarray:
    return 0.25 * (x[::2, ::2] + x[1::2, ::2] + x[::2, 1::2] + x[1::2, 1::2])


def acquisition(world: World, k: int) -> tuple[dt.datetime, str, int, float | None]:
    """(UTC time, platform, relative orbit, swath-edge position or None) of S2 date ``k``."""
    day = s2_dates(world.config)[k]
    rng = rng_for(world.config.seed, f"s2-acq-{k}")
    cut = rng.random() < 0.3 and k > 0
    orbit = 8 if cut else 51
    minute, second = (36, 10) if cut else (40, 30)
    when = dt.datetime(
        day.year, day.month, day.day, 10, minute, second + int(rng.integers(0, 25)), tzinfo=dt.UTC
    )
    return when, PLATFORMS[k % 3], orbit, (float(rng.uniform(0.15, 0.55)) if cut else None)


def swath_valid(world: World, edge: float | None) -> np.ndarray:
    """Pixels of the world grid inside the swath; ``edge`` places a tilted edge across the west tile."""
    grid = world.layout.world
    valid = np.ones(grid.shape, dtype=bool)
    if edge is None:
        return valid
    t0, t1 = world.layout.tiles[0].grid, world.layout.tiles[1].grid
    x_edge = t0.minx + edge * (t1.minx - t0.minx)
    yc = 0.5 * (grid.bbox[1] + grid.bbox[3])
    x, y = grid.centers()
    return x > x_edge + (y - yc) * math.tan(math.radians(14.0))


def render_s2(world: World, k: int) -> list[S2Product]:
    """Render S2 date ``k`` of the world once and cut it into every tile."""
    cfg, layout = world.config, world.layout
    day = s2_dates(cfg)[k]
    eday = epoch_day(day)
    when, platform, orbit, edge = acquisition(world, k)
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(*_centre(layout.aoi.bbox))
    az, el = solar_position(when, lon, lat)
    rng = rng_for(cfg.seed, f"s2-{k}")
    refl, water, _ = surface_reflectance(
        world.scene, world.plan, world.urban, eday, world.weather.moisture[eday]
    )
    layers = cloud_layers(rng, layout.world.shape, world.weather.cover[eday], az, el)
    valid = swath_valid(world, edge)
    scl = scene_classification(rng, layers, refl, water, valid)
    haze_blur(rng, apply_atmosphere(refl, layers))
    valid20 = scl > 0
    full = {}
    for key, (res, idx) in S2_ASSETS.items():
        if idx is None:
            full[key] = scl
        elif res == 10:
            full[key] = encode(refl[idx], valid)
        else:
            full[key] = encode(_mean2(refl[idx]), valid20)
    products = []
    for tile in layout.tiles:
        rows, cols = tile.grid.window_in(layout.world)
        arrays = {}
        for key, (res, _) in S2_ASSETS.items():
            f = res // 10
            arrays[key] = np.ascontiguousarray(
                full[key][rows.start // f : rows.stop // f, cols.start // f : cols.stop // f]
            )
        tscl = arrays["scl"]
        n_valid = max(1, int((tscl > 0).sum()))
        cloudy = int(np.isin(tscl, (8, 9, 10)).sum())
        products.append(
            S2Product(
                item_id=f"S2{platform[-1].upper()}_{tile.code}_{day:%Y%m%d}_0_L2A",
                tile=tile.code,
                datetime=when,
                platform=platform,
                relative_orbit=orbit,
                sun_azimuth=round(az, 4),
                sun_elevation=round(el, 4),
                cloud_cover=round(100.0 * cloudy / n_valid, 4),
                nodata_percent=round(100.0 * float((tscl == 0).mean()), 4),
                arrays=arrays,
            )
        )
    return products


def _centre(bbox: tuple[float, float, float, float]) -> tuple[float, float]:
    return 0.5 * (bbox[0] + bbox[2]), 0.5 * (bbox[1] + bbox[3])
