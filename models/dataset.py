"""Training chips (before, after, label) sampled lazily from an analysis cube Zarr store.

Only each chip's window is read (xarray's lazy backend indexing, no Dask, never the whole cube). The
dataset is picklable (the store is reopened in each worker) and deterministic given ``seed`` and the epoch.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from eowatch.errors import InputError

from .card import DEFAULT_BANDS, S1_BANDS
from .labels import period_middle_days, transition_labels
from .predict import normalize_bands
from .season import season_planes

__all__ = ["IGNORE_INDEX", "TRUTH_KEYS", "ChangeChipDataset", "open_cube", "read_truth"]

#: Truth rasters of the synthetic archive (GeoTIFF file stems) and their dtypes.
TRUTH_KEYS: dict[str, type] = {"change_type": np.uint8, "change_start": np.int32, "change_end": np.int32}

#: Label of pixels without any observation in either date (excluded from the loss and the metrics).
IGNORE_INDEX = 255


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube Zarr store lazily without Dask (indexing reads only the chunks it touches)."""
    with warnings.catch_warnings():
        # Stores without consolidated metadata are fine; xarray warns on the fallback.
        warnings.filterwarnings("ignore", message=".*consolidated metadata.*", category=RuntimeWarning)
        return xr.open_zarr(path, chunks=None)


class ChangeChipDataset(Dataset):
    """Chips of a change transition, half of them centred on changed pixels.

    Args:
        cube_path: analysis cube Zarr store (dims time, y, x).
        truth: ``change_type`` (uint8), ``change_start``, ``change_end`` (int32 days since 1970-01-01),
            each ``(y, x)`` on the cube's grid.
        period_bounds: ``(start, end)`` of each cube period, end exclusive.
        chip: chip side (pixels).
        samples: chips per epoch.
        seed: seed of chip positions and augmentations.
        augment: apply random 90° rotations and flips (identically to before, after and label) and a
            small per-band gain/offset jitter (per date, normalised units, observed pixels only).
        bands: cube variables stacked as channels, in order.
        normalization: per band ``(mean, std)``; ``None`` returns raw values with NaN (for statistics).
        columns: ``[start, stop)`` pixel columns to sample from (spatial train/validation split).
        validity_channel: append the per-date validity channel when normalising (as the card says).
        changed_fraction: share of chips centred on a changed pixel (the rest are drawn anywhere).
        season: append each date's ``season.season_planes`` (2 channels, its period's middle day of
            year) after its normalised bands, for models with ``season_channels=2``.
        s1_dropout: with ``augment``, the probability that a chip's S1 bands (``vv_db``, ``vh_db``) are
            missing on both dates (set to NaN before the labels' observation mask and the validity
            channel are computed): periods without any S1 acquisition, or optical-only input.
        s1_dropout_per_date: draw ``s1_dropout`` for each date on its own instead (one date without S1
            is what a month without S1 acquisitions gives the transitions into and out of it).

    Items are dicts: ``before``/``after`` float32 ``(C', chip, chip)`` tensors (``C' = C + 1`` with the
    validity channel when normalised, + 2 with the season), ``label`` int64 ``(chip, chip)``
    (``IGNORE_INDEX`` where a date has no observation), ``t`` the transition index (1..T-1).
    """

    def __init__(
        self,
        cube_path: str | Path,
        truth: Mapping[str, np.ndarray],
        period_bounds: list[tuple[np.datetime64, np.datetime64]],
        chip: int = 64,
        samples: int = 512,
        seed: int = 0,
        augment: bool = False,
        *,
        bands: tuple[str, ...] = DEFAULT_BANDS,
        normalization: Mapping[str, tuple[float, float]] | None = None,
        columns: tuple[int, int] | None = None,
        validity_channel: bool = True,
        changed_fraction: float = 0.5,
        season: bool = False,
        s1_dropout: float = 0.0,
        s1_dropout_per_date: bool = False,
    ) -> None:
        self.cube_path = str(cube_path)
        self.labels = transition_labels(
            truth["change_type"], truth["change_start"], truth["change_end"], period_bounds
        )
        height, width = self.labels.shape[1:]
        self.columns = columns or (0, width)
        if chip > height or chip > self.columns[1] - self.columns[0] or chip < 1:
            raise InputError(f"chip {chip} does not fit in {height} rows x columns {self.columns}")
        self.chip, self.samples, self.seed, self.augment, self.bands = chip, samples, seed, augment, bands
        self.normalization = dict(normalization) if normalization is not None else None
        self.validity_channel = validity_channel
        if not 0.0 <= changed_fraction <= 1.0:
            raise InputError(f"changed_fraction must be within 0..1, got {changed_fraction}")
        self.changed_fraction = changed_fraction
        if not 0.0 <= s1_dropout < 1.0:
            raise InputError(f"s1_dropout must be within [0, 1), got {s1_dropout}")
        self.s1_dropout, self.s1_dropout_per_date = s1_dropout, s1_dropout_per_date
        self._s1 = [i for i, b in enumerate(bands) if b in S1_BANDS]
        self.middle_days = period_middle_days(period_bounds) if season else None
        self._ds: xr.Dataset | None = None
        self._changed = self._changed_pixels()
        self.set_epoch(0)

    def _changed_pixels(self) -> np.ndarray:
        """``(n, 3)`` (t, y, x) of labelled changes inside the sampling columns (t is 1-based)."""
        c0, c1 = self.columns
        t, y, x = np.nonzero(self.labels[:, :, c0:c1])
        return np.stack([t + 1, y, x + c0], axis=1)

    def set_epoch(self, epoch: int) -> None:
        """Draw chip positions: ``changed_fraction`` of them centred on changed pixels, the rest anywhere."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch, 0])
        n_trans, height = self.labels.shape[:2]
        c0, c1 = self.columns
        half = self.chip // 2
        n_changed = round(self.samples * self.changed_fraction) if len(self._changed) else 0
        picks = self._changed[rng.integers(0, max(len(self._changed), 1), n_changed)]
        starts = np.stack([picks[:, 0], picks[:, 1] - half, picks[:, 2] - half], axis=1)
        n_random = self.samples - n_changed
        anywhere = np.stack(
            [
                rng.integers(1, n_trans + 1, n_random),
                rng.integers(0, height, n_random),
                rng.integers(c0, c1, n_random),
            ],
            axis=1,
        )
        starts = np.concatenate([starts, anywhere]).astype(np.int64)
        starts[:, 1] = np.clip(starts[:, 1], 0, height - self.chip)
        starts[:, 2] = np.clip(starts[:, 2], c0, c1 - self.chip)
        self.positions = starts[rng.permutation(len(starts))]

    def __len__(self) -> int:
        return self.samples

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_ds"] = None  # reopened lazily in the worker
        return state

    def _dataset(self) -> xr.Dataset:
        if self._ds is None:
            self._ds = open_cube(self.cube_path)
            missing = [b for b in self.bands if b not in self._ds.data_vars]
            if missing:
                raise InputError(f"cube {self.cube_path} lacks bands {', '.join(missing)}")
        return self._ds

    def read_window(self, t: int, y0: int, x0: int) -> np.ndarray:
        """Raw ``(2, C, chip, chip)`` float32 bands of periods ``t-1`` and ``t`` (NaN = no data)."""
        window = self._dataset()[list(self.bands)].isel(
            time=slice(t - 1, t + 1), y=slice(y0, y0 + self.chip), x=slice(x0, x0 + self.chip)
        )
        return np.stack([window[b].values for b in self.bands], axis=1).astype(np.float32, copy=False)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        t, y0, x0 = (int(v) for v in self.positions[index])
        raw = self.read_window(t, y0, x0)
        rng = np.random.default_rng([self.seed, self.epoch, 1, index])
        if self.augment and self.s1_dropout > 0 and self._s1:
            # Drawn from its own stream, so the other augmentations stay those of a run without it.
            stream = np.random.default_rng([self.seed, self.epoch, 2, index])
            if self.s1_dropout_per_date:
                for date in np.flatnonzero(stream.random(2) < self.s1_dropout):
                    raw[date, self._s1] = np.nan
            elif stream.random() < self.s1_dropout:
                raw[:, self._s1] = np.nan
        label = self.labels[t - 1, y0 : y0 + self.chip, x0 : x0 + self.chip].astype(np.int64)
        observed = np.isfinite(raw).any(axis=1).all(axis=0)
        label[~observed] = IGNORE_INDEX
        x = raw if self.normalization is None else self._normalise(raw, rng if self.augment else None)
        if self.augment:
            x, label = _rotate_flip(x, label, rng)
        if self.middle_days is not None and self.normalization is not None:
            x = np.concatenate([x, season_planes(self.middle_days[t - 1 : t + 1], x.shape[2:])], axis=1)
        return {
            "before": torch.from_numpy(np.ascontiguousarray(x[0])),
            "after": torch.from_numpy(np.ascontiguousarray(x[1])),
            "label": torch.from_numpy(np.ascontiguousarray(label)),
            "t": t,
        }

    def _normalise(self, raw: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Preprocess as at inference; with ``rng``, first jitter each date and band by a gain (±5 %) and
        an offset (±0.05 std), which keeps NaN as NaN."""
        mean = np.array([self.normalization[b][0] for b in self.bands], dtype=np.float32)
        std = np.array([self.normalization[b][1] for b in self.bands], dtype=np.float32)
        if rng is not None:
            gain = rng.uniform(0.95, 1.05, (2, len(self.bands), 1, 1)).astype(np.float32)
            offset = rng.uniform(-0.05, 0.05, (2, len(self.bands), 1, 1)).astype(np.float32)
            raw = raw * gain + offset * std[:, None, None]
        return normalize_bands(raw, mean, std, validity=self.validity_channel)


def _rotate_flip(x: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random 90° rotation and horizontal flip of the images and their label."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    x, label = np.rot90(x, k, axes=(-2, -1)), np.rot90(label, k, axes=(-2, -1))
    if flip:
        x, label = x[..., ::-1], label[..., ::-1]
    return x, label


def _truth_file(truth_dir: Path, key: str) -> Path:
    exact = truth_dir / f"{key}.tif"
    if exact.is_file():
        return exact
    matches = sorted(truth_dir.glob(f"*{key}*.tif"))
    if len(matches) != 1:
        raise InputError(f"expected one {key} GeoTIFF in {truth_dir}, found {[m.name for m in matches]}")
    return matches[0]


def read_truth(truth_dir: Path, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Truth rasters cut to the cube grid given by its pixel-centre coordinates (metres, same CRS).

    Reads ``change_type``, ``change_start`` and ``change_end`` GeoTIFFs (``<key>.tif``, or the one file
    whose name contains the key); their pixel size must equal the cube's.
    """
    import rasterio
    from rasterio.windows import Window

    out = {}
    for key, dtype in TRUTH_KEYS.items():
        with rasterio.open(_truth_file(Path(truth_dir), key)) as src:
            a, e = src.transform.a, src.transform.e
            if len(x) > 1 and not np.isclose(abs(x[1] - x[0]), abs(a)):
                raise InputError(f"{key} pixel size {abs(a)} m differs from the cube's {abs(x[1] - x[0])} m")
            col = round((x[0] - src.transform.c) / a - 0.5)
            row = round((y[0] - src.transform.f) / e - 0.5)
            if col < 0 or row < 0 or col + len(x) > src.width or row + len(y) > src.height:
                raise InputError(f"{key} raster does not cover the cube grid")
            out[key] = src.read(1, window=Window(col, row, len(x), len(y))).astype(dtype)
    return out
