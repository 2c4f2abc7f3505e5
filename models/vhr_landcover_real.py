"""Building detection of the VHR land-cover model on real imagery: the LEVIR-CD samples.

No LandCover.ai tiles are available, but the LEVIR-CD samples (``../shared/data/change/levir_samples``,
0.5 m aerial RGB, 256 x 256 px) label **new buildings**: pixels that are a building roof in image B (the
later date) and were not one in image A. So, on exactly those pixels:

* ``building_recall_b``: share called building in B (recall of real roofs; higher is better);
* ``building_share_a``: share called building in A (the same ground before construction: mostly bare
  soil, grass or trees; lower is better);
* ``building_share_b_unlabelled`` (context, not an error rate): share of the other B pixels called
  building; B holds older buildings too, which LEVIR-CD does not label.

Each image is resampled from 0.5 m to the card's 1 m (area mean) as ``models.vhr_real.predict_pairs``
does, the class probabilities back onto the label grid (bilinear) before the argmax. Pooled over images.
Nothing here is used for training or tuning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eowatch.legend import VHR_LANDCOVER

from .vhr_landcover import predict_vhr_landcover
from .vhr_landcover_eval import ColourCentroids
from .vhr_real import REAL_DATASETS, RealPairs, read_pairs, resample
from .weights import LoadedModel

__all__ = [
    "BUILDING",
    "building_scores",
    "predict_pair_classes",
    "predict_real",
    "read_levir",
    "real_building_scores",
]

#: The building class code of ``eowatch.legend.VHR_LANDCOVER``.
BUILDING = next(code for code, name in VHR_LANDCOVER.items() if name == "building")


def read_levir(root: Path) -> RealPairs:
    """The LEVIR-CD samples under ``root`` (the ``change`` folder of the shared data)."""
    folder, gsd = REAL_DATASETS["levir"]
    return read_pairs(Path(root) / folder, gsd)


def predict_real(model: LoadedModel, images: np.ndarray, gsd_m: float) -> np.ndarray:
    """Class codes uint8 ``(N, H, W)`` of 8-bit RGB images ``(N, 3, H, W)`` of pixel size ``gsd_m``."""
    scale = gsd_m / model.card.resolution_m
    height, width = images.shape[-2:]
    grid = (max(round(height * scale), 1), max(round(width * scale), 1))
    out = []
    for image in images:
        x = resample(torch.from_numpy(image[None].astype(np.float32)), grid)[0].numpy()
        probs = predict_vhr_landcover(model, x)
        back = resample(torch.from_numpy(np.ascontiguousarray(probs))[None], (height, width))[0].numpy()
        out.append(back.argmax(axis=0).astype(np.uint8))
    return np.stack(out)


def predict_pair_classes(model: LoadedModel, pairs: RealPairs) -> tuple[np.ndarray, np.ndarray]:
    """Class codes uint8 ``(N, H, W)`` of the pairs' A (before) and B (after) images, on the label grid."""
    return predict_real(model, pairs.before, pairs.gsd_m), predict_real(model, pairs.after, pairs.gsd_m)


def building_scores(codes_a: np.ndarray, codes_b: np.ndarray, new_buildings: np.ndarray) -> dict[str, float]:
    """The scores of the module docstring from class maps of A and B and the new-building labels."""
    labelled = new_buildings.astype(bool)
    return {
        "building_recall_b": float((codes_b[labelled] == BUILDING).mean()) if labelled.any() else 0.0,
        "building_share_a": float((codes_a[labelled] == BUILDING).mean()) if labelled.any() else 0.0,
        "building_share_b_unlabelled": float((codes_b[~labelled] == BUILDING).mean()),
        "n_labelled": float(labelled.sum()),
    }


def real_building_scores(
    model: LoadedModel, root: Path, baseline: ColourCentroids | None = None
) -> dict[str, float]:
    """``levir.<score>`` of the model and ``levir.baseline.<score>`` of the colour baseline."""
    pairs = read_levir(root)
    codes_a, codes_b = predict_pair_classes(model, pairs)
    out = {f"levir.{k}": v for k, v in building_scores(codes_a, codes_b, pairs.labels).items()}
    if baseline is not None:
        base = building_scores(baseline.predict(pairs.before), baseline.predict(pairs.after), pairs.labels)
        out.update({f"levir.baseline.{k}": v for k, v in base.items()})
    return out
