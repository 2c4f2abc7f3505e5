"""Readers for the real WorldCereal crop data in ``../shared/data/crops/worldcereal`` and the crop-type
model's evaluation on it (see that folder's MANIFEST.txt).

Encodings (WorldCereal / openEO GFMAP): optical bands are uint16 surface reflectance x 1e4 (65535 = no
data; 2020-2021 data carry no L2A offset); Sentinel-1 sigma0 is compressed to uint16 as
``DN = 10 ** ((10 * log10(power) + 83) / 20)``, so ``dB = 20 * log10(DN) - 83`` (0 and 65535 = no data),
the inverse of ``openeo_gfmap.preprocessing.sar.compress_backscatter_uint16``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eowatch.errors import InputError

from .card import ModelCard
from .croptype import (
    NODATA_CLASS,
    map_labels,
    multiclass_scores,
    predict_croptype,
    predict_croptype_pixels,
    predict_ndvi_centroids,
)
from .metrics import binary_scores, flatten_scores
from .weights import LoadedModel

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "S2_CODES",
    "SEASON_START",
    "WorldCerealSamples",
    "crossfit_finetune",
    "decode_reflectance",
    "decode_s1_db",
    "evaluate_cube",
    "evaluate_samples",
    "evaluate_worldcereal",
    "parcel_folds",
    "read_croptype_map",
    "read_cube",
    "read_samples",
    "reference_classes",
]

#: eowatch band name -> Sentinel-2 band code in WorldCereal files.
S2_CODES: dict[str, str] = {
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "nir": "B08",
    "swir16": "B11",
    "swir22": "B12",
}
_S1_CODES = {"vv_db": "VV", "vh_db": "VH"}
#: Our classes that WorldCereal counts as (temporary) cropland.
ARABLE = ("winter_cereal", "maize", "rapeseed")
#: First month of the 12-month WorldCereal season of the Belgian data (2020-11 .. 2021-10).
SEASON_START = np.datetime64("2020-11", "M")
#: Class names of WorldCereal's crop-type product, in the order of its ``classification`` values.
WC_CROPTYPE_NAMES = (
    "barley",
    "maize",
    "millet_sorghum",
    "other_crop",
    "rapeseed_rape",
    "soy_soybeans",
    "sunflower",
    "wheat",
)


def decode_reflectance(dn: np.ndarray) -> np.ndarray:
    """float32 reflectance (0-1) of uint16 reflectance x 1e4; NaN where 0 or 65535 (no data)."""
    dn = np.asarray(dn, dtype=np.float64)
    return np.where((dn > 0) & (dn < 65535), dn / 1e4, np.nan).astype(np.float32)


def decode_s1_db(dn: np.ndarray) -> np.ndarray:
    """float32 backscatter (dB) of WorldCereal's uint16 compressed sigma0; NaN where 0 or 65535."""
    dn = np.asarray(dn, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 20.0 * np.log10(dn) - 83.0
    return np.where((dn > 0) & (dn < 65535), db, np.nan).astype(np.float32)


def _decode(band: str, dn: np.ndarray) -> np.ndarray:
    return decode_s1_db(dn) if band in _S1_CODES else decode_reflectance(dn)


@dataclass(frozen=True)
class WorldCerealSamples:
    """Labelled point time series."""

    raw: np.ndarray
    """float32 ``(N, T, B)`` bands in the requested order, cube units (reflectance, dB), NaN = no data."""
    months: np.ndarray
    """int64 ``(T,)`` month of the year (1-12) of each step."""
    croptype: np.ndarray
    """int64 ``(N,)`` WorldCereal legacy crop-type code (``CROPTYPE_LABEL``; 0 = no information)."""
    landcover: np.ndarray
    """int64 ``(N,)`` WorldCereal land-cover code (``LANDCOVER_LABEL``; 99 = no cropland)."""
    ids: tuple[str, ...]
    """Sample ids (one parcel each)."""


def read_samples(
    path: Path, bands: Sequence[str], start: np.datetime64 = SEASON_START, n_months: int = 12
) -> WorldCerealSamples:
    """The labelled samples of a WorldCereal point parquet (prometheo layout), ``n_months`` from ``start``.

    Column ``OPTICAL-B04-ts<i>-10m`` (``SAR-VV-ts<i>-20m``) holds the month ``start_date + i``.
    """
    import pandas as pd

    df = pd.read_parquet(path)
    first = df["start_date"].astype("datetime64[ns]").values.astype("datetime64[M]")
    offsets = (np.datetime64(start, "M") - first).astype(np.int64)
    if np.any(offsets != offsets[0]) or offsets[0] < 0:
        raise InputError(f"{path}: samples must share a start_date on or before {start}")
    steps = range(int(offsets[0]), int(offsets[0]) + n_months)
    raw = np.stack([_sample_band(df, b, steps) for b in bands], axis=-1)
    months = (np.arange(n_months) + (np.datetime64(start, "M").astype(np.int64) % 12)) % 12 + 1
    return WorldCerealSamples(
        raw=raw,
        months=months.astype(np.int64),
        croptype=df["CROPTYPE_LABEL"].to_numpy(np.int64),
        landcover=df["LANDCOVER_LABEL"].to_numpy(np.int64),
        ids=tuple(str(i) for i in df.index),
    )


def _sample_band(df: pd.DataFrame, band: str, steps: range) -> np.ndarray:
    if band in S2_CODES:
        res = "20m" if S2_CODES[band] in ("B11", "B12") else "10m"
        columns = [f"OPTICAL-{S2_CODES[band]}-ts{i}-{res}" for i in steps]
    elif band in _S1_CODES:
        columns = [f"SAR-{_S1_CODES[band]}-ts{i}-20m" for i in steps]
    else:
        raise InputError(f"band {band!r} is not in WorldCereal samples")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"WorldCereal samples lack columns {missing[:3]}")
    return _decode(band, df[columns].to_numpy())


def reference_classes(
    samples: WorldCerealSamples, mapping: Mapping[str, Mapping[str, str]], card: ModelCard
) -> np.ndarray:
    """Reference class codes (-1 = unknown) from the card's ``worldcereal_croptype`` table, or, for
    samples without crop-type information (code 0), its ``worldcereal_landcover`` table."""
    by_type = map_labels(samples.croptype, mapping["worldcereal_croptype"], card)
    by_cover = map_labels(samples.landcover, mapping["worldcereal_landcover"], card)
    return np.where(samples.croptype == 0, by_cover, by_type)


def read_cube(path: Path, bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(series float32 (T, B, y, x), months int64 (T,))`` of a WorldCereal preprocessed-inputs NetCDF."""
    import xarray as xr

    names = {
        **{b: f"S2-L2A-{c}" for b, c in S2_CODES.items()},
        **{b: f"S1-SIGMA0-{c}" for b, c in _S1_CODES.items()},
    }
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        series = np.stack([_decode(b, ds[names[b]].values) for b in bands], axis=1)
        months = ds["t"].values.astype("datetime64[M]").astype(np.int64) % 12 + 1
    return series, months.astype(np.int64)


def read_croptype_map(croptype_path: Path, cropland_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """WorldCereal's own maps: crop-type names (``WC_CROPTYPE_NAMES``) and cropland, both ``(y, x)``.

    Cropland is where the band labelled ``probability_cropland`` is at least ``probability_other``. The
    cropland file's ``classification`` band is 1 exactly where ``probability_other`` wins, i.e. on the
    village, gardens and grassland of this patch and not on its arable fields (winter-cereal and
    summer-crop NDVI profiles); the labelled probabilities agree with the imagery and with WorldCereal's
    inference-benchmark GeoTIFF of the same patch, so they are what is read.
    """
    import xarray as xr

    with xr.open_dataset(croptype_path, engine="h5netcdf") as ds:
        codes = next(iter(ds.data_vars.values())).sel(bands="classification").values.astype(np.int64)
    with xr.open_dataset(cropland_path, engine="h5netcdf") as ds:
        layers = next(iter(ds.data_vars.values()))
        cropland = (
            layers.sel(bands="probability_cropland").values >= layers.sel(bands="probability_other").values
        )
    if codes.max() >= len(WC_CROPTYPE_NAMES):
        raise InputError(f"{croptype_path}: unknown crop-type code {codes.max()}")
    return np.array(WC_CROPTYPE_NAMES, dtype=object)[codes], cropland


def _majority(reference: np.ndarray) -> int:
    known = reference[reference >= 0]
    return int(np.bincount(known).argmax()) if known.size else 0


def evaluate_samples(
    model: LoadedModel, samples: WorldCerealSamples, centroids: Mapping[int, Mapping[int, float]]
) -> dict[str, float]:
    """Model vs the samples' labels (mapped by the card), beside the NDVI nearest-centroid and majority
    baselines. Flat scores ``model.*``, ``ndvi_centroid.*``, ``majority.*``."""
    card = model.card
    reference = reference_classes(samples, card.label_mapping, card)
    probs = predict_croptype_pixels(model, samples.raw, samples.months)
    pred = np.where(np.isnan(probs[:, 0]), NODATA_CLASS, np.nan_to_num(probs).argmax(axis=1))
    in_season = np.isin(samples.months, card.months)
    baseline = predict_ndvi_centroids(
        samples.raw[:, in_season], samples.months[in_season], card.bands, centroids
    )
    names = {c: info.name for c, info in card.classes.items()}
    scores = {
        "model": multiclass_scores(pred, reference, names),
        "ndvi_centroid": multiclass_scores(baseline, reference, names),
        "majority": multiclass_scores(np.full_like(reference, _majority(reference)), reference, names),
    }
    return flatten_scores(scores)


def evaluate_cube(
    model: LoadedModel,
    series: np.ndarray,
    months: np.ndarray,
    wc_types: np.ndarray,
    wc_cropland: np.ndarray,
    centroids: Mapping[int, Mapping[int, float]],
) -> dict[str, float]:
    """Agreement of our crop-type map with WorldCereal's on WorldCereal's cropland pixels (its crop types
    mapped by the card's ``worldcereal_croptype_map`` table), beside the NDVI nearest-centroid and
    majority baselines; plus ``model.share.<class>``, the share of each of our classes over the patch, and
    ``<method>.arable.*``: our arable classes (winter cereal, maize, rapeseed) vs WorldCereal's cropland
    mask over the whole patch (binary scores; grassland is not cropland in WorldCereal's legend)."""
    card = model.card
    ours = predict_croptype(model, series, months).classes.ravel().astype(np.int64)
    reference = map_labels(wc_types.ravel(), card.label_mapping["worldcereal_croptype_map"], card)
    reference = np.where(wc_cropland.ravel(), reference, -1)
    in_season = np.isin(months, card.months)
    _, b, h, w = series.shape
    raw = series[in_season].reshape(int(in_season.sum()), b, h * w).transpose(2, 0, 1)
    baseline = predict_ndvi_centroids(raw, months[in_season], card.bands, centroids)
    names = {c: info.name for c, info in card.classes.items()}
    scores: dict[str, dict] = {
        "model": multiclass_scores(ours, reference, names),
        "ndvi_centroid": multiclass_scores(baseline, reference, names),
        "majority": multiclass_scores(np.full_like(reference, _majority(reference)), reference, names),
    }
    arable = np.array([card.class_code(n) for n in ARABLE], dtype=np.int64)
    for method, pred in (("model", ours), ("ndvi_centroid", baseline)):
        scores[method]["arable"] = binary_scores(np.isin(pred, arable), wc_cropland.ravel())
    flat = flatten_scores(scores)
    flat.update({f"model.share.{n}": float((ours == c).mean()) for c, n in names.items()})
    return flat


def parcel_folds(samples: WorldCerealSamples, reference: np.ndarray) -> np.ndarray:
    """Fold (0 or 1) of each sample: sorted by reference class then sample id, alternately assigned, so
    every class is split evenly and each parcel (one sample each) sits in exactly one fold."""
    order = np.lexsort((np.array(samples.ids), reference))
    folds = np.empty(len(reference), dtype=np.int64)
    folds[order] = np.arange(len(reference)) % 2
    return folds


def crossfit_finetune(
    model: LoadedModel, samples: WorldCerealSamples, steps: int = 150, seed: int = 0
) -> dict[str, float]:
    """Two-fold cross-fitted fine-tuning on the labelled samples (``parcel_folds``): the model is
    fine-tuned on one fold and predicts the other, so every sample is scored by a model that never saw
    it. Flat scores of the out-of-fold predictions (``oa``, ``kappa``, per class)."""
    from .train_croptype import finetune

    card = model.card
    reference = reference_classes(samples, card.label_mapping, card)
    folds = parcel_folds(samples, reference)
    pred = np.full(len(reference), NODATA_CLASS, dtype=np.int64)
    for fold in (0, 1):
        train, test = folds != fold, folds == fold
        tuned = finetune(model, samples.raw[train], reference[train], samples.months, steps, seed + fold)
        probs = predict_croptype_pixels(tuned, samples.raw[test], samples.months)
        pred[test] = np.where(np.isnan(probs[:, 0]), NODATA_CLASS, np.nan_to_num(probs).argmax(axis=1))
    names = {c: info.name for c, info in card.classes.items()}
    return flatten_scores(multiclass_scores(pred, reference, names))


#: Files of the WorldCereal folder that ``evaluate_worldcereal`` reads.
SAMPLES_FILE = "prometheo_worldcereal_dataset.parquet"
CUBE_FILE = "worldcereal_preprocessed_inputs.nc"
CROPTYPE_FILE = "worldcereal_croptype_classification.nc"
CROPLAND_FILE = "worldcereal_cropland_classification.nc"


def evaluate_worldcereal(
    model: LoadedModel, folder: Path, centroids: Mapping[int, Mapping[int, float]]
) -> dict[str, float]:
    """Both real evaluations of a crop-type model on a WorldCereal folder (``crops/worldcereal``).

    ``flanders.*``: the 50 labelled Flanders 2021 LPIS samples (``evaluate_samples``), and
    ``flanders.finetuned_2fold.*`` after two-fold cross-fitted fine-tuning on them (``crossfit_finetune``);
    ``worldcereal_patch.*``: the 100 x 100 px Belgian patch vs WorldCereal's maps (``evaluate_cube``).
    """
    folder = Path(folder)
    samples = read_samples(folder / SAMPLES_FILE, model.card.bands)
    series, months = read_cube(folder / CUBE_FILE, model.card.bands)
    wc_types, wc_cropland = read_croptype_map(folder / CROPTYPE_FILE, folder / CROPLAND_FILE)
    scores = {f"flanders.{k}": v for k, v in evaluate_samples(model, samples, centroids).items()}
    scores.update({f"flanders.finetuned_2fold.{k}": v for k, v in crossfit_finetune(model, samples).items()})
    patch = evaluate_cube(model, series, months, wc_types, wc_cropland, centroids)
    scores.update({f"worldcereal_patch.{k}": v for k, v in patch.items()})
    return scores
