"""The simulated world: scene, planted changes, weather and static materials built once per archive."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from eowatch.archive.changes import Plan, plan_changes
from eowatch.archive.clouds import Weather, make_weather
from eowatch.archive.config import ArchiveConfig, Layout, rng_for
from eowatch.archive.phenology import urban_materials
from eowatch.archive.scene import Scene, build_scene


@dataclass
class World:
    """Everything the per-date renderers need (read-only once built)."""

    config: ArchiveConfig
    layout: Layout
    scene: Scene
    plan: Plan
    weather: Weather
    urban: np.ndarray  # float32 (6, H, W) static reflectance of built-up pixels


def build_world(config: ArchiveConfig) -> World:
    """Build the static world for ``config`` (deterministic)."""
    layout = Layout.from_config(config)
    scene = build_scene(config, layout)
    weather = make_weather(config)
    plan = plan_changes(config, scene, weather.cover, rng_for(config.seed, "changes"))
    urban = urban_materials(rng_for(config.seed, "urban"), scene, plan)
    return World(config, layout, scene, plan, weather, urban)


def solar_position(when: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """Sun (azimuth clockwise from north, elevation) in degrees for a UTC datetime (NOAA approximation)."""
    doy = when.timetuple().tm_yday
    hour = when.hour + when.minute / 60 + when.second / 3600
    g = 2 * math.pi / 365 * (doy - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    tst = hour * 60 + eqtime + 4 * lon
    ha = math.radians(tst / 4 - 180)
    phi = math.radians(lat)
    cos_zen = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(ha)
    zen = math.acos(max(-1.0, min(1.0, cos_zen)))
    az = math.degrees(math.atan2(math.sin(ha), math.cos(ha) * math.sin(phi) - math.tan(decl) * math.cos(phi)))
    return (az + 180.0) % 360.0, 90.0 - math.degrees(zen)
