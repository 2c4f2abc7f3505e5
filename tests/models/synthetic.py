"""Generator of small synthetic analysis cubes with planted changes (test fixture, written at test time).

Land is a patchwork of blocks with simple spectra; changes are planted as squares with a known type and
start day, so the truth rasters follow the archive's contract (change_type, change_start, change_end).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22", "vv_db", "vh_db")
#: Spectra (8 bands) of the states before/after each change type, and of the background classes.
SPECTRA = {
    "forest": (0.03, 0.05, 0.03, 0.35, 0.15, 0.07, -8.0, -14.0),
    "grass": (0.05, 0.08, 0.06, 0.30, 0.22, 0.12, -11.0, -17.0),
    "crop_a": (0.06, 0.09, 0.07, 0.40, 0.25, 0.13, -10.0, -16.0),
    "crop_b": (0.09, 0.11, 0.13, 0.22, 0.30, 0.22, -13.0, -20.0),
    "built": (0.12, 0.13, 0.14, 0.20, 0.25, 0.22, 2.0, -6.0),
    "bare": (0.14, 0.16, 0.20, 0.24, 0.35, 0.30, -14.0, -22.0),
    "water": (0.04, 0.05, 0.03, 0.02, 0.01, 0.01, -24.0, -29.0),
}
#: change code -> (state before, state after).
CHANGES = {1: ("grass", "built"), 2: ("forest", "bare"), 3: ("grass", "water"), 4: ("crop_a", "crop_b")}


def month_starts(n: int) -> np.ndarray:
    """``n`` monthly period starts from January 2024, datetime64[ns]."""
    first = np.datetime64("2024-01", "M")
    return np.arange(first, first + n).astype("datetime64[ns]")


def _day(value: np.datetime64) -> int:
    return int((np.datetime64(value, "D") - np.datetime64("1970-01-01", "D")).astype(int))


def make_scene(size: int, periods: int, seed: int, n_changes: int, square: int = 8):
    """Return ``(cube Dataset, truth dict)`` of a ``size`` x ``size`` scene."""
    rng = np.random.default_rng(seed)
    times = month_starts(periods)
    states = np.empty((size, size), dtype=object)
    names = ["forest", "grass", "crop_a"]
    block = max(size // 8, 1)
    for by in range(0, size, block):
        for bx in range(0, size, block):
            states[by : by + block, bx : bx + block] = names[rng.integers(len(names))]
    truth = {
        "change_type": np.zeros((size, size), np.uint8),
        "change_start": np.zeros((size, size), np.int32),
        "change_end": np.zeros((size, size), np.int32),
    }
    events = []
    for _ in range(n_changes):
        code = int(rng.integers(1, 5))
        y, x = (int(v) for v in rng.integers(0, size - square, 2))
        p = int(rng.integers(1, periods))
        start = _day(times[p]) + 3
        end = start + 40 if code == 3 else 0
        win = np.s_[y : y + square, x : x + square]
        truth["change_type"][win], truth["change_start"][win], truth["change_end"][win] = code, start, end
        events.append((code, win, p))
    cube = _render(states, events, times, rng)
    return cube, truth


def _render(states: np.ndarray, events: list, times: np.ndarray, rng: np.random.Generator) -> xr.Dataset:
    size, periods = states.shape[0], len(times)
    spectra = {k: np.array(v, np.float32) for k, v in SPECTRA.items()}
    data = np.empty((periods, len(BANDS), size, size), np.float32)
    for t in range(periods):
        for name, spec in spectra.items():
            data[t][:, states == name] = spec[:, None]
        for code, win, p in events:
            before, after = CHANGES[code]
            active = t == p if code == 3 else t >= p
            data[t][(slice(None), *win)] = spectra[after if active else before][:, None, None]
    noise = rng.normal(0.0, 1.0, data.shape).astype(np.float32)
    scale = np.array([0.005] * 6 + [0.8, 0.8], np.float32)[None, :, None, None]
    data += noise * scale
    clouds = rng.random((periods, 1, size, size)) < 0.05
    data[:, :6][np.broadcast_to(clouds, data[:, :6].shape)] = np.nan
    coords = {
        "time": times,
        "y": 5_000_000.0 - 5.0 - 10.0 * np.arange(size),
        "x": 500_005.0 + 10.0 * np.arange(size),
    }
    variables = {b: (("time", "y", "x"), data[:, i]) for i, b in enumerate(BANDS)}
    variables["clear_count"] = (("time", "y", "x"), (~clouds[:, 0]).astype(np.uint16))
    return xr.Dataset(variables, coords=coords)


def write_scene(
    path: Path, size: int = 96, periods: int = 4, seed: int = 0, n_changes: int = 12, chunk: int = 32
):
    """Write the scene's cube as a Zarr v3 store and return its truth dict."""
    cube, truth = make_scene(size, periods, seed, n_changes)
    cube.chunk({"time": 1, "y": chunk, "x": chunk}).to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return truth


def write_truth_tifs(directory: Path, truth: dict[str, np.ndarray]) -> None:
    """Write the truth rasters as GeoTIFFs on the scene's grid (EPSG:32631, 10 m)."""
    import rasterio
    from rasterio.transform import from_origin

    directory.mkdir(parents=True, exist_ok=True)
    transform = from_origin(500_000.0, 5_000_000.0, 10.0, 10.0)
    for key, array in truth.items():
        profile = {
            "driver": "GTiff",
            "height": array.shape[0],
            "width": array.shape[1],
            "count": 1,
            "dtype": array.dtype.name,
            "crs": "EPSG:32631",
            "transform": transform,
        }
        with rasterio.open(directory / f"{key}.tif", "w", **profile) as dst:
            dst.write(array, 1)


#: LANDCOVER codes of the scene states (crop_a / crop_b stand for winter cereal / maize).
STATE_CODES = {"water": 1, "forest": 2, "grass": 3, "crop_a": 4, "crop_b": 5, "built": 7, "bare": 8}


def semantic_scene(path: Path, size: int, periods: int, seed: int) -> dict[str, np.ndarray]:
    """A synthetic cube (``tests/models/synthetic``'s spectra) with land cover and from/to truth."""
    rng = np.random.default_rng(seed)
    times = month_starts(periods)
    names = ["forest", "grass", "crop_a"]
    states = (
        np.array(names, dtype=object)[rng.integers(0, 3, (size // 8, size // 8))].repeat(8, 0).repeat(8, 1)
    )
    truth = {k: np.zeros((size, size), np.int32) for k in ("change_start", "change_end")}
    truth |= {k: np.zeros((size, size), np.uint8) for k in ("change_type", "from_class", "to_class")}
    truth["landcover_start"] = np.vectorize(STATE_CODES.get, otypes=[np.uint8])(states)
    events = []
    for code in (1, 2, 4, 1, 2, 4):
        before, after = CHANGES[code]
        y, x = (int(v) for v in rng.integers(0, size - 8, 2))
        win = np.s_[y : y + 8, x : x + 8]
        states[win] = before
        truth["landcover_start"][win] = STATE_CODES[before]
        p = int(rng.integers(1, periods))
        truth["change_type"][win], truth["change_start"][win] = (
            code,
            int((np.datetime64(times[p], "D") - np.datetime64("1970-01-01", "D")).astype(int) + 3),
        )
        truth["from_class"][win], truth["to_class"][win] = STATE_CODES[before], STATE_CODES[after]
        events.append((code, win, p))
    cube = _render(states, events, times, rng)
    cube.chunk({"time": 1, "y": 32, "x": 32}).to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return truth
