"""Scores of the semantic change models against the planted truth, and the baselines they are compared with.

* **SECOND's scores** of the from/to maps (non-change pixels are 0 in both maps; the two dates' maps
  pooled into one confusion matrix, ``confusion.semantic_change_confusion``): SeK, mIoU (change /
  no-change), Fscd, and per land-cover class F1/IoU over that matrix.
* **Binary change** precision, recall, F1, IoU per pixel and transition (every change type).
* **Change types** read from the (from, to) pair (``change_type_of_pair``), scored exactly as
  ``pipelines.evaluate`` scores ``siamese-s2s1-change``'s types (SeK 0.247 on seed 42), so the two are
  comparable.
* **Post-classification comparison (PCC)**: a per-period nearest-centroid land-cover classifier (one
  centroid per month and class over the 8 normalised bands and NDVI, from the training columns); a pixel
  changed where the two periods' classes differ, from/to are those classes.

Every pixel of every transition is scored (as ``pipelines.evaluate`` does); the decision threshold is
calibrated for the best binary F1 on the held-out columns (observed pixels) and applied unchanged to the
test archive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eowatch.errors import ModelError
from eowatch.legend import CHANGE_TYPES

from .confusion import (
    class_scores,
    confusion_matrix,
    semantic_change_confusion,
    semantic_change_f1,
    semantic_change_scores,
)
from .dataset import open_cube
from .labels import period_middle_days, transition_labels
from .metrics import binary_scores
from .predict import normalize_bands
from .siamese_semantic import SEMANTIC_CLASSES, SemanticProbs, decode_semantic, predict_semantic_series
from .train import best_threshold, period_bounds
from .weights import LoadedModel, load_model, save_model

__all__ = [
    "NearestCentroid",
    "SemanticCounts",
    "change_type_of_pair",
    "evaluate_semantic_cube",
    "fit_nearest_centroid",
    "predict_columns",
    "score_and_save",
    "transition_truth",
]

_WATER, _FOREST, _BUILT, _BARE = 1, 2, 7, 8
_CROPLIKE = (3, 4, 5, 6)  # grassland, winter cereal, maize, rapeseed
_N_SEM = len(SEMANTIC_CLASSES)
_N_TYPES = len(CHANGE_TYPES)


def change_type_of_pair(from_map: np.ndarray, to_map: np.ndarray) -> np.ndarray:
    """``CHANGE_TYPES`` code of each (from, to) ``LANDCOVER`` pair (0 where both are 0 or no type fits).

    To water: flooding; from forest: forest clearing; to built-up or bare soil (a construction site):
    new building; between grassland and crops (from bare soil too): crop rotation. The planted changes of
    the archive map to their own types by this rule (``tests/models/test_semantic_change.py``).
    """
    out = np.zeros(np.shape(from_map), np.uint8)
    changed = (np.asarray(from_map) > 0) & (np.asarray(to_map) > 0)
    rotation = np.isin(from_map, (*_CROPLIKE, _BARE)) & np.isin(to_map, _CROPLIKE)
    out[changed & rotation] = 4
    out[changed & np.isin(to_map, (_BUILT, _BARE))] = 1
    out[changed & (from_map == _FOREST)] = 2
    out[changed & (to_map == _WATER)] = 3
    return out


def transition_truth(
    truth: Mapping[str, np.ndarray], bounds: list[tuple[np.datetime64, np.datetime64]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(types, from, to)`` uint8 ``(T - 1, y, x)``: the planted change type of each transition and
    SECOND's from/to maps (the planted ``from_class``/``to_class`` where a change shows, 0 elsewhere)."""
    types = transition_labels(truth["change_type"], truth["change_start"], truth["change_end"], bounds)
    shown = types > 0
    return (
        types,
        np.where(shown, truth["from_class"], 0).astype(np.uint8),
        np.where(shown, truth["to_class"], 0).astype(np.uint8),
    )


@dataclass
class SemanticCounts:
    """Confusion counts of semantic change maps, added up over blocks and transitions."""

    scd: np.ndarray = field(default_factory=lambda: np.zeros((_N_SEM, _N_SEM), np.int64))
    """SECOND's pooled from + to matrix (rows truth, columns prediction; ``SEMANTIC_CLASSES`` codes)."""
    types: np.ndarray = field(default_factory=lambda: np.zeros((_N_TYPES, _N_TYPES), np.int64))
    """Change types (planted vs read from the predicted pair)."""

    def add(
        self,
        pred: tuple[np.ndarray, np.ndarray],
        truth: tuple[np.ndarray, np.ndarray, np.ndarray],
        pred_types: np.ndarray | None = None,
    ) -> None:
        """Count predicted ``(from, to)`` maps against ``transition_truth`` output (same shapes).
        ``pred_types`` (default: ``change_type_of_pair`` of the prediction) fills the type matrix."""
        types, t_from, t_to = truth
        self.scd += semantic_change_confusion(pred[0], pred[1], t_from, t_to, _N_SEM)
        p_types = change_type_of_pair(*pred) if pred_types is None else pred_types
        self.types += confusion_matrix(p_types, types, _N_TYPES)

    def scores(self) -> dict[str, float]:
        """Flat scores: SeK, mIoU, Fscd, binary change, per class and per type (see the module doc)."""
        out = {k: v for k, v in semantic_change_scores(self.scd).items()}
        out["fscd"] = semantic_change_f1(self.scd)
        # binary change from the pooled matrix: each changed pixel counts once per map, so halve it
        tp, fp = int(self.scd[1:, 1:].sum()) // 2, int(self.scd[0, 1:].sum()) // 2
        fn, tn = int(self.scd[1:, 0].sum()) // 2, int(self.scd[0, 0]) // 2
        pred = np.array([1, 1, 0, 0], bool).repeat([tp, fp, fn, tn])
        ref = np.array([1, 0, 1, 0], bool).repeat([tp, fp, fn, tn])
        for key in ("precision", "recall", "f1", "iou"):
            out[f"binary.{key}"] = binary_scores(pred, ref)[key]
        per_class = class_scores(self.scd, SEMANTIC_CLASSES)["per_class"]
        assert isinstance(per_class, dict)
        for name, values in per_class.items():
            if name != "no_change" and values["n_truth"]:
                out[f"class.{name}.f1"], out[f"class.{name}.iou"] = values["f1"], values["iou"]
        for key, value in semantic_change_scores(self.types).items():
            out[f"type.{key}"] = value
        type_class = class_scores(self.types, dict(CHANGE_TYPES))["per_class"]
        assert isinstance(type_class, dict)
        for name, values in type_class.items():
            if name != "no_change":
                out[f"type.{name}.f1"], out[f"type.{name}.recall"] = values["f1"], values["recall"]
        return out


def predict_columns(
    model: LoadedModel, cube_path: str | Path, columns: tuple[int, int], condition: np.ndarray | None = None
) -> SemanticProbs:
    """Probabilities of every transition over pixel columns ``[c0, c1)`` of a cube, one transition at a
    time (input read with a halo west of ``c0``; ``condition`` ``(T - 1, y, c1 - c0)`` for conditional
    models)."""
    c0, c1 = columns
    x0 = max(c0 - model.module.receptive_field // 2, 0)
    with open_cube(cube_path) as cube:
        block = np.stack([cube[b].isel(x=slice(x0, c1)).values for b in model.card.bands], axis=1)
        middle = period_middle_days(period_bounds(cube["time"].values))
    season = model.module.season_channels > 0
    parts = []
    for t in range(1, block.shape[0]):
        cond = None
        if condition is not None:
            cond = np.zeros((1, *block.shape[2:]), np.uint8)
            cond[0, :, c0 - x0 :] = condition[t - 1]
        parts.append(
            predict_semantic_series(
                model,
                block[t - 1 : t + 1],
                cond,
                days=middle[t - 1 : t + 1] if season else None,
                region=(slice(None), slice(c0 - x0, None)),
            )
        )
    return SemanticProbs(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))


@dataclass(frozen=True)
class NearestCentroid:
    """Per-month nearest-centroid land-cover classifier (the PCC baseline)."""

    months: tuple[int, ...]
    """Month of year (1-12) of each centroid set."""
    centroids: np.ndarray
    """``(n_months, 8 classes, n_features)`` float64; NaN where a class had no pixel that month."""
    feature_std: float
    """Standard deviation of NDVI over the fitting pixels (its normalisation)."""

    def features(self, model: LoadedModel, bands: np.ndarray) -> np.ndarray:
        """``(F, y, x)`` features of one period's raw bands ``(C, y, x)``: the card-normalised bands and
        NDVI divided by its standard deviation (NaN -> 0, the mean)."""
        card = model.card
        mean = np.array([card.normalization[b][0] for b in card.bands])
        std = np.array([card.normalization[b][1] for b in card.bands])
        z = normalize_bands(bands, mean, std, validity=False)
        red, nir = bands[card.bands.index("red")], bands[card.bands.index("nir")]
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = np.nan_to_num((nir - red) / (nir + red)) / self.feature_std
        return np.concatenate([z, ndvi[None].astype(np.float32)])

    def classify(self, model: LoadedModel, bands: np.ndarray, month: int) -> np.ndarray:
        """``LANDCOVER`` codes ``(y, x)`` uint8 of one period (its month's centroids)."""
        feats = self.features(model, bands)
        cents = self.centroids[self.months.index(month)]
        dist = np.stack(
            [
                ((feats - c[:, None, None]) ** 2).sum(0)
                if np.isfinite(c).all()
                else np.full(feats.shape[1:], np.inf)
                for c in cents
            ]
        )
        return (dist.argmin(axis=0) + 1).astype(np.uint8)


def fit_nearest_centroid(
    model: LoadedModel, sets: Sequence[tuple[str | Path, Mapping[str, np.ndarray]]], columns: tuple[int, int]
) -> NearestCentroid:
    """Centroids per month and land-cover class from every 5th pixel (rows and columns) of ``columns`` of
    each cube, pixels without planted change only (their land cover is ``landcover_start`` all season)."""
    from .train_semantic import period_landcover

    c0, c1 = columns
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, np.ndarray] = {}
    ndvi_all = []
    for cube_path, truth in sets:
        with open_cube(cube_path) as cube:
            months = [int(str(t)[5:7]) for t in cube["time"].values.astype("datetime64[M]")]
            bands = np.stack(
                [cube[b].isel(y=slice(0, None, 5), x=slice(c0, c1, 5)).values for b in model.card.bands], 1
            )
            bounds = period_bounds(cube["time"].values)
        cover = period_landcover(truth, bounds)[:, ::5, c0:c1:5]
        stable = (truth["change_type"][::5, c0:c1:5] == 0) & (cover[0] > 0)
        red, nir = bands[:, model.card.bands.index("red")], bands[:, model.card.bands.index("nir")]
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi_all.append(((nir - red) / (nir + red))[np.isfinite(nir + red)])
        for p, month in enumerate(months):
            sums.setdefault(month, np.zeros((8, bands.shape[1] + 1)))
            counts.setdefault(month, np.zeros(8))
            probe = NearestCentroid((month,), np.zeros((1, 8, bands.shape[1] + 1)), 1.0)
            feats = probe.features(model, bands[p])
            for k in range(8):
                sel = stable & (cover[p] == k + 1)
                sums[month][k] += feats[:, sel].sum(axis=1)
                counts[month][k] += sel.sum()
    std = float(np.std(np.concatenate(ndvi_all)))
    months_sorted = tuple(sorted(sums))
    cents = np.stack([sums[m] / np.where(counts[m] > 0, counts[m], np.nan)[:, None] for m in months_sorted])
    cents[..., -1] /= std  # NDVI features were summed unscaled (std 1.0 in the probe)
    return NearestCentroid(months_sorted, cents, std)


# -- scoring drivers --------------------------------------------------------------------------------------

Block = tuple[str | Path, Mapping[str, np.ndarray], tuple[int, int]]
"""A scored block: cube, semantic truth on the cube grid, ``[c0, c1)`` columns."""


def _observed(cube_path: str | Path, bands: Sequence[str], columns: tuple[int, int]) -> np.ndarray:
    """``(T - 1, y, x)`` True where both periods of a transition have a finite band."""
    with open_cube(cube_path) as cube:
        finite = np.stack([np.isfinite(cube[b].isel(x=slice(*columns)).values) for b in bands], axis=1).any(
            axis=1
        )
    return finite[:-1] & finite[1:]


def _bounds(cube_path: str | Path) -> list[tuple[np.datetime64, np.datetime64]]:
    with open_cube(cube_path) as cube:
        return period_bounds(cube["time"].values)


def _condition(block: Block, source: str, semantic: LoadedModel | None) -> np.ndarray | None:
    """The conditional model's date-1 land cover over a block: ``true`` (planted, ``period_landcover``),
    ``predicted`` (the semantic model's from-head, argmax everywhere) or None."""
    from .train_semantic import period_landcover

    cube_path, truth, (c0, c1) = block
    if source == "true":
        return period_landcover(truth, _bounds(cube_path))[:-1, :, c0:c1]
    if source == "predicted":
        if semantic is None:
            raise ValueError("a predicted condition needs the semantic model")
        return (predict_columns(semantic, cube_path, (c0, c1)).from_class.argmax(axis=1) + 1).astype(np.uint8)
    return None


def model_scores(
    model: LoadedModel,
    blocks: Sequence[Block],
    threshold: float | None,
    condition: str = "none",
    semantic: LoadedModel | None = None,
) -> tuple[dict[str, float], SemanticCounts, float]:
    """Scores of ``model`` over ``blocks``; ``threshold=None`` calibrates it there (best binary F1 over
    observed pixels) and returns it."""
    predicted = []
    for block in blocks:
        cube_path, truth, columns = block
        probs = predict_columns(model, cube_path, columns, _condition(block, condition, semantic))
        tt = transition_truth(
            {k: v[:, columns[0] : columns[1]] for k, v in truth.items()}, _bounds(cube_path)
        )
        predicted.append((probs, tt, _observed(cube_path, model.card.bands, columns)))
    if threshold is None:
        threshold = best_threshold(
            np.concatenate([p.change.ravel() for p, _, _ in predicted]),
            np.concatenate([(t[0] > 0).ravel() for _, t, _ in predicted]),
            np.concatenate([o.ravel() for _, _, o in predicted]),
        )
    counts = SemanticCounts()
    for probs, tt, _ in predicted:
        _, from_map, to_map = decode_semantic(probs, threshold)
        counts.add((from_map, to_map), tt)
    return counts.scores(), counts, float(threshold)


def pcc_scores(
    model: LoadedModel, classifier: NearestCentroid, blocks: Sequence[Block]
) -> tuple[dict[str, float], SemanticCounts]:
    """Post-classification comparison: per-period nearest-centroid maps, changed where they differ."""
    counts = SemanticCounts()
    for cube_path, truth, (c0, c1) in blocks:
        with open_cube(cube_path) as cube:
            months = [int(str(t)[5:7]) for t in cube["time"].values.astype("datetime64[M]")]
            bands = np.stack([cube[b].isel(x=slice(c0, c1)).values for b in model.card.bands], axis=1)
        maps = np.stack([classifier.classify(model, bands[p], m) for p, m in enumerate(months)])
        changed = maps[:-1] != maps[1:]
        tt = transition_truth({k: v[:, c0:c1] for k, v in truth.items()}, _bounds(cube_path))
        counts.add((np.where(changed, maps[:-1], 0), np.where(changed, maps[1:], 0)), tt)
    return counts.scores(), counts


def shipped_type_scores(
    change_store: Path, truth: Mapping[str, np.ndarray], cube_path: Path
) -> dict[str, float]:
    """``siamese-s2s1-change``'s change-type SeK/mIoU from a run's ``change.zarr`` (its mask and type), as
    ``pipelines.evaluate`` computes them (every pixel and transition)."""
    import zarr

    group = zarr.open_group(str(change_store), mode="r")
    mask = np.asarray(group["change_mask"][:]).astype(bool)
    pred = np.where(mask, np.asarray(group["change_type"][:]), 0)
    types = transition_truth(truth, _bounds(cube_path))[0]
    return {
        f"type.{k}": v for k, v in semantic_change_scores(confusion_matrix(pred, types, _N_TYPES)).items()
    }


def score_and_save(
    card_path: Path,
    sets: Sequence[tuple[Path, Mapping[str, np.ndarray]]],
    val_fraction: float,
    test: tuple[Path, Path, Path],
    semantic_card_path: Path | None = None,
) -> dict[str, float]:
    """Score a trained semantic (or conditional) model, calibrate its threshold on the held-out columns,
    and rewrite its card with the threshold and the metrics (the weights stay byte-identical). Also
    writes ``<name>.eval.json`` beside it with the confusion matrices.

    Args:
        card_path: the model's card (``train_semantic_sets`` output).
        sets: the training ``(cube, semantic truth)`` pairs (their eastern columns are the validation).
        val_fraction: held-out share of columns (as in training).
        test: ``(archive, cube, change.zarr)`` of the test archive (seed 42; ``change.zarr`` is the
            demo run's output of ``siamese-s2s1-change``, for its type scores).
        semantic_card_path: the conditional model's source of predicted pre-change maps.
    """
    from .train_semantic import read_semantic_truth

    model = load_model(card_path)
    conditional = bool(model.card.architecture_args["conditional"])
    semantic = load_model(semantic_card_path) if semantic_card_path else None
    val_blocks = []
    for cube_path, truth in sets:
        width = next(iter(truth.values())).shape[1]
        val_blocks.append((cube_path, truth, (round(width * (1 - val_fraction)), width)))
    archive, cube, change = test
    with open_cube(cube) as ds:
        test_truth = read_semantic_truth(archive / "truth", ds["x"].values, ds["y"].values)
    test_blocks = [(cube, test_truth, (0, ds.sizes["x"]))]
    first = "true" if conditional else "none"
    metrics: dict[str, float] = {}
    report: dict[str, Any] = {}
    val, val_counts, threshold = model_scores(model, val_blocks, None, first, semantic)
    test_scores, test_counts, _ = model_scores(model, test_blocks, threshold, first, semantic)
    metrics |= _prefixed("val.", val) | _prefixed("synthetic.", test_scores)
    report |= {"val": _matrices(val_counts), "synthetic": _matrices(test_counts)}
    if conditional and semantic is not None:
        for scope, blocks in (("val", val_blocks), ("synthetic", test_blocks)):
            scores, counts, _ = model_scores(model, blocks, threshold, "predicted", semantic)
            metrics |= _prefixed(f"{scope}.predicted_condition.", scores)
            report[f"{scope}.predicted_condition"] = _matrices(counts)
    if not conditional:
        classifier = fit_nearest_centroid(model, [(c, t) for c, t, _ in val_blocks], (0, val_blocks[0][2][0]))
        for scope, blocks in (("val", val_blocks), ("synthetic", test_blocks)):
            scores, counts = pcc_scores(model, classifier, blocks)
            metrics |= _prefixed(f"{scope}.pcc.", scores)
            report[f"{scope}.pcc"] = _matrices(counts)
        if change.is_dir():
            metrics |= _prefixed(
                "synthetic.shipped_change_model.", shipped_type_scores(change, test_truth, cube)
            )
    metrics["val.decision_threshold"] = threshold
    data = model.card.to_dict()
    data["metrics"] = {k: v for k, v in data["metrics"].items() if k.startswith("train.")} | metrics
    card = replace(model.card.from_dict(data), decision_threshold=threshold)
    save_model(model.module, card, card_path.parent)
    report["classes"] = SEMANTIC_CLASSES
    report["change_types"] = dict(CHANGE_TYPES)
    (card_path.parent / f"{model.card.name}.eval.json").write_text(json.dumps(report, indent=1) + "\n")
    for key in sorted(metrics):
        if ".class." not in key and (".type." not in key or key.endswith((".sek", ".miou"))):
            print(f"{key}: {metrics[key]:.4f}")
    return metrics


def _prefixed(prefix: str, scores: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in scores.items()}


def _matrices(counts: SemanticCounts) -> dict[str, list[list[int]]]:
    return {"scd_from_to_pooled": counts.scd.tolist(), "change_types": counts.types.tolist()}


def evaluate_semantic_cube(
    name: str, cube_path: Path, truth_dir: Path, out: Path, condition: str = "predicted"
) -> dict[str, Any]:
    """``eowatch evaluate`` for a registered semantic change model on an analysis cube with planted truth:
    every pixel and transition, the card's decision threshold; writes ``out/confusion.png`` (SECOND's
    pooled from/to matrix).

    Args:
        name: registered semantic or conditional model.
        cube_path: analysis cube (a run's ``cube.zarr``).
        truth_dir: the archive's ``truth/`` (``change_*``, ``landcover_start``, ``from_class``, ``to_class``).
        out: folder of the confusion picture.
        condition: conditional models: ``predicted`` (pre-change map from ``siamese-s2s1-semantic``'s
            from-head) or ``true`` (the planted land cover).

    Returns:
        ``{"semantic_change": flat scores, "confusion": {"classes", "counts"}}``.
    """
    from .confusion import render_confusion
    from .registry import get
    from .train_semantic import read_semantic_truth

    model = get(name)
    if model.card.task != "semantic-change-detection":
        raise ModelError(f"model {name!r} is a {model.card.task} model, not a semantic change model")
    conditional = bool(model.card.architecture_args["conditional"])
    with open_cube(cube_path) as ds:
        truth = read_semantic_truth(truth_dir, ds["x"].values, ds["y"].values)
        width = ds.sizes["x"]
    semantic = get("siamese-s2s1-semantic") if conditional and condition == "predicted" else None
    scores, counts, _ = model_scores(
        model,
        [(cube_path, truth, (0, width))],
        model.card.decision_threshold,
        condition if conditional else "none",
        semantic,
    )
    render_confusion(counts.scd, SEMANTIC_CLASSES, out / "confusion.png", f"{name}: from/to maps (SECOND)")
    return {
        "semantic_change": scores,
        "confusion": {"classes": list(SEMANTIC_CLASSES.values()), "counts": counts.scd.tolist()},
    }
