"""A real multispectral change pair (Landsat, ``../shared/data/change/landsat_taizhou``): reading it,
running an S2 change model on it, scoring.

The folder holds two ENVI images (six bands: TM/ETM+ B1-B5 and B7 as 8-bit DN, 30 m, the CRS and grid
in the headers; the acquisition date is in the headers' MTL file names) and two partial reference masks:
``change.bmp`` and ``unchanged.bmp`` (255 = a labelled sample, 0 = unlabelled; on Taizhou 2.6 % and
10.7 % of the pixels). Only labelled pixels are scored.

How an S2 change model meets the pair (the evaluation's only adaptations, none of them fitted to labels):

- **Bands.** TM/ETM+ B1, B2, B3, B4, B5, B7 are the S2 model's blue, green, red, nir, swir16, swir22 (the
  same spectral regions as S2 B02, B03, B04, B08, B11, B12). Bands the pair lacks (S1 ``vv_db``,
  ``vh_db``) are NaN: the card's validity channel marks them unobserved, as in a run without S1.
- **Radiometry.** The files are uncalibrated 8-bit DN (no MTL), so each date's bands are standardised over
  the image (as the CVA baseline's are) and put on the scale of the card's training statistics
  (``z * std + mean``), after which the card's own normalisation is applied unchanged. This is relative
  radiometric normalisation per date: it also removes the dates' differences in sun elevation and haze.
- **Resolution.** The 30 m bands are resampled to the card's pixel size (bilinear; 30 / 10 = 3), and the
  change probability is averaged back over each 30 m pixel's 3 x 3 block.
- **Season.** The acquisition dates give a season-aware model its season channels.

Scores (flat keys under the pair's name, e.g. ``taizhou.``): ``model.*`` binary scores at the card's
decision threshold (calibrated on synthetic validation, never on these files) and ``model.auc`` (ROC AUC
over the labelled pixels, threshold-free); ``recalibrated_2fold.*`` the same probabilities with the
threshold that gives the best F1 on one half of the image (west or east) applied to the other half,
counts pooled; ``cva.*`` the CVA baseline (standardised bands, Otsu threshold over the whole image) and
``cva.auc``. ``landsat_finetune`` adds the two-fold fine-tuning check.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eowatch.errors import InputError, ModelError
from eowatch.operators.change import change_vector_magnitude, otsu_threshold, standardize_bands

from .card import S1_BANDS, S2_BANDS
from .metrics import binary_scores, roc_auc
from .predict import predict_change, season_days
from .weights import LoadedModel

__all__ = [
    "LANDSAT_BANDS",
    "ChangePair",
    "cva_magnitude",
    "harmonise",
    "image_halves",
    "inputs_at_model_resolution",
    "is_change_pair_folder",
    "predict_pair",
    "quicklook",
    "read_change_pair",
    "resolution_factor",
    "score_pair",
]

#: Card band names of TM/ETM+ B1, B2, B3, B4, B5, B7 (the files' band order): the S2 bands.
LANDSAT_BANDS: tuple[str, ...] = S2_BANDS
#: Reference masks: labelled changed and labelled unchanged samples (255), 0 = unlabelled.
MASK_FILES: tuple[str, str] = ("change.bmp", "unchanged.bmp")
_MTL_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})_MTL")


@dataclass(frozen=True)
class ChangePair:
    """A co-registered image pair with a partial change reference, on one grid."""

    name: str
    """Short name used as the score prefix (the folder name without ``landsat_``)."""
    before: np.ndarray
    """``(6, H, W)`` float32 DN of the earlier date, bands as ``LANDSAT_BANDS``."""
    after: np.ndarray
    """Same for the later date."""
    changed: np.ndarray
    """``(H, W)`` bool: labelled changed samples."""
    unchanged: np.ndarray
    """``(H, W)`` bool: labelled unchanged samples."""
    dates: tuple[np.datetime64, np.datetime64]
    """Acquisition dates (days), earlier first."""
    gsd_m: float
    """Pixel size (metres, from the headers' map info)."""
    crs: str
    """CRS of the grid (``EPSG:...`` or WKT)."""

    @property
    def labelled(self) -> np.ndarray:
        """``(H, W)`` bool: pixels with a reference label."""
        return self.changed | self.unchanged


def _images(folder: Path) -> list[Path]:
    """The folder's ENVI images (files with a ``.hdr``/``.HDR`` header beside them)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.suffix and any(p.with_suffix(s).is_file() for s in (".HDR", ".hdr"))
    )


def is_change_pair_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a Landsat change pair: two ENVI images and the two reference masks."""
    folder = Path(folder)
    return folder.is_dir() and all((folder / m).is_file() for m in MASK_FILES) and len(_images(folder)) == 2


def _acquired(image: Path) -> np.datetime64:
    header = next(image.with_suffix(s) for s in (".HDR", ".hdr") if image.with_suffix(s).is_file())
    found = _MTL_DATE.search(header.read_text(errors="replace"))
    if found is None:
        raise InputError(f"{header}: no acquisition date (no '<YYYYMMDD>_MTL' name in the header)")
    return np.datetime64("-".join(found.groups()), "D")


def read_change_pair(folder: Path) -> ChangePair:
    """Read a pair folder (see the module docstring).

    Raises:
        InputError: the folder is not a pair, the images differ in grid or band count, a date is missing,
            or the masks overlap or do not match the images.
    """
    import rasterio

    folder = Path(folder)
    if not is_change_pair_folder(folder):
        raise InputError(
            f"{folder} is not a change pair folder (two ENVI images with headers, {' and '.join(MASK_FILES)})"
        )
    (date0, image0), (date1, image1) = sorted((_acquired(image), image) for image in _images(folder))
    images = (image0, image1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the BMP masks carry no georeferencing
        with rasterio.open(images[0]) as a, rasterio.open(images[1]) as b:
            if (a.crs, a.transform, a.shape) != (b.crs, b.transform, b.shape):
                raise InputError(f"{images[0].name} and {images[1].name} are not on the same grid")
            if a.count != len(LANDSAT_BANDS) or b.count != len(LANDSAT_BANDS):
                raise InputError(f"expected {len(LANDSAT_BANDS)} bands (TM/ETM+ B1-B5, B7), got {a.count}")
            before, after = a.read().astype(np.float32), b.read().astype(np.float32)
            gsd, crs = abs(a.transform.a), a.crs.to_string() if a.crs else ""
        masks = []
        for mask in MASK_FILES:
            with rasterio.open(folder / mask) as src:
                masks.append(src.read(1) == 255)
    changed, unchanged = masks
    if changed.shape != before.shape[1:]:
        raise InputError(f"reference masks are {changed.shape}, the images {before.shape[1:]}")
    if (changed & unchanged).any():
        both = int((changed & unchanged).sum())
        raise InputError(f"{MASK_FILES[0]} and {MASK_FILES[1]} both label {both} px")
    name = folder.name.removeprefix("landsat_")
    return ChangePair(name, before, after, changed, unchanged, (date0, date1), float(gsd), crs)


def harmonise(image: np.ndarray, model: LoadedModel) -> np.ndarray:
    """``(C, H, W)`` float32 raw bands in ``model.card.bands`` order from ``(6, H, W)`` DN of one date.

    Each band is standardised over the image and mapped to the card's training mean and std; S1 bands are
    NaN (see the module docstring).

    Raises:
        ModelError: the model needs a band that neither the pair nor the S1 rule provides.
    """
    card = model.card
    missing = [b for b in card.bands if b not in LANDSAT_BANDS and b not in S1_BANDS]
    if missing:
        raise ModelError(f"model {card.name!r} needs bands {', '.join(missing)} that a Landsat pair lacks")
    z = standardize_bands(image.astype(np.float32))
    out = np.full((len(card.bands), *image.shape[1:]), np.nan, dtype=np.float32)
    for i, band in enumerate(card.bands):
        if band in LANDSAT_BANDS:
            mean, std = card.normalization[band]
            out[i] = z[LANDSAT_BANDS.index(band)] * np.float32(std) + np.float32(mean)
    return out


def resolution_factor(pair: ChangePair, model: LoadedModel) -> int:
    """How many model pixels a pair pixel spans per axis (30 m pair, 10 m model: 3).

    Raises:
        ModelError: the pair's pixel size is not a whole multiple of the model's.
    """
    factor = pair.gsd_m / model.card.resolution_m
    if factor < 1 or abs(factor - round(factor)) > 1e-6:
        raise ModelError(
            f"model {model.card.name!r} runs at {model.card.resolution_m:g} m; the pair's {pair.gsd_m:g} m "
            "pixels are not a whole multiple of it"
        )
    return round(factor)


def inputs_at_model_resolution(model: LoadedModel, pair: ChangePair) -> tuple[np.ndarray, np.ndarray | None]:
    """Both dates as raw bands at the card's resolution, float32 ``(2, C, H * k, W * k)`` (``harmonise``,
    then bilinear upsampling by ``resolution_factor``), and the dates as ``season_days`` gives them."""
    k = resolution_factor(pair, model)
    raw = torch.from_numpy(np.stack([harmonise(pair.before, model), harmonise(pair.after, model)]))
    raw = F.interpolate(raw, scale_factor=k, mode="bilinear", align_corners=False).numpy()
    return raw, season_days(model, np.array(pair.dates, dtype="datetime64[D]").astype(np.int64))


def image_halves(pair: ChangePair) -> tuple[tuple[int, int], tuple[int, int]]:
    """Column ranges ``[c0, c1)`` of the pair's western and eastern halves (the two-fold checks' folds)."""
    width = pair.changed.shape[1]
    return (0, width // 2), (width // 2, width)


def predict_pair(model: LoadedModel, pair: ChangePair) -> np.ndarray:
    """Change probability ``(H, W)`` float32 on the pair's grid: ``1 - P(no change)`` (a semantic change
    model's change head) predicted at the card's resolution (bilinear upsampling) and averaged back over
    each pair pixel's block.

    Raises:
        ModelError: the model is neither a change-detection nor an unconditional semantic change model,
            or its resolution does not divide the pair's.
    """
    from .predict import SEMANTIC_TASK

    card = model.card
    if card.task not in ("change-detection", SEMANTIC_TASK):
        raise ModelError(
            f"model {card.name!r} is a {card.task} model; a change pair scores change-detection models "
            "and the change head of semantic change models"
        )
    if card.architecture_args.get("conditional"):
        raise ModelError(f"model {card.name!r} needs a pre-change land-cover map, which a change pair lacks")
    k = resolution_factor(pair, model)
    raw, days = inputs_at_model_resolution(model, pair)
    if card.task == SEMANTIC_TASK:
        from .siamese_semantic import predict_semantic_series

        p = predict_semantic_series(model, raw, days=days).change[0]
    else:
        p = 1.0 - predict_change(model, raw[0], raw[1], days=days)[0]
    h, w = pair.changed.shape
    return p.reshape(h, k, w, k).mean(axis=(1, 3)).astype(np.float32)


def cva_magnitude(pair: ChangePair) -> np.ndarray:
    """CVA change magnitude ``(H, W)`` of the per-date standardised bands."""
    return change_vector_magnitude(standardize_bands(pair.before), standardize_bands(pair.after))


def _two_fold(p_change: np.ndarray, pair: ChangePair) -> dict[str, float]:
    """Threshold for the best F1 on one half (west/east) applied to the other; pooled scores."""
    from .train import best_threshold

    called = np.zeros_like(pair.changed)
    thresholds = {}
    for k, (c0, c1) in enumerate(image_halves(pair)):
        fit = np.zeros_like(pair.changed)
        fit[:, c0:c1] = True
        thr = best_threshold(p_change, pair.changed, pair.labelled & fit)
        thresholds[f"threshold_fold{k}"] = thr
        called |= ~fit & (p_change >= thr)
    return {**binary_scores(called, pair.changed, pair.labelled), **thresholds}


def score_pair(model: LoadedModel, pair: ChangePair, p_change: np.ndarray | None = None) -> dict[str, float]:
    """Flat scores ``<pair.name>.model.*``, ``.recalibrated_2fold.*``, ``.cva.*`` and the label counts (see
    the module docstring); ``p_change`` is ``predict_pair``'s output when already computed."""
    p = predict_pair(model, pair) if p_change is None else p_change
    magnitude = cva_magnitude(pair)
    labelled = pair.labelled
    parts = {
        "model": {
            **binary_scores(p >= model.card.decision_threshold, pair.changed, labelled),
            "auc": roc_auc(p[pair.changed], p[pair.unchanged]),
            "threshold": float(model.card.decision_threshold),
        },
        "recalibrated_2fold": _two_fold(p, pair),
        "cva": {
            **binary_scores(magnitude >= otsu_threshold(magnitude), pair.changed, labelled),
            "auc": roc_auc(magnitude[pair.changed], magnitude[pair.unchanged]),
        },
    }
    out = {f"{pair.name}.{who}.{k}": float(v) for who, scores in parts.items() for k, v in scores.items()}
    out[f"{pair.name}.n_changed"] = float(pair.changed.sum())
    out[f"{pair.name}.n_unchanged"] = float(pair.unchanged.sum())
    return out


def _stretch(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` true colour (red, green, blue) with a 2-98 % stretch per band."""
    rgb = image[[2, 1, 0]].astype(np.float32)
    lo, hi = np.percentile(rgb, [2, 98], axis=(1, 2), keepdims=True)
    return (np.clip((rgb - lo) / np.maximum(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def quicklook(pair: ChangePair, p_change: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 ``(H, 4 W + 12, 3)`` picture: before, after (true colour), the model's change probability
    (grey) with its calls at ``threshold`` in red, and the reference (changed red, unchanged green)."""
    h, w = pair.changed.shape
    prob = np.repeat((np.clip(p_change, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    prob[p_change >= threshold] = (230, 25, 75)
    reference = np.full((h, w, 3), 40, np.uint8)
    reference[pair.changed] = (230, 25, 75)
    reference[pair.unchanged] = (60, 180, 75)
    gap = np.full((h, 4, 3), 255, np.uint8)
    panels = [_stretch(pair.before), gap, _stretch(pair.after), gap, prob, gap, reference]
    return np.concatenate(panels, axis=1)
