"""``eowatch evaluate MODEL DATA``: score a model on labelled data; print the metrics, save them as JSON
and the confusion matrix as a PNG.

What DATA may be (recognised by its content):

- **a synthetic archive** (``eowatch archive make``; has ``archive.json`` and ``truth/``): the archive is
  served on loopback and the monitoring flow runs over it with MODEL (and, for a crop-type MODEL, with it
  as the run's crop model, for a VHR MODEL as its VHR change or VHR land-cover model) into ``OUT/run``;
  the outputs are scored against the planted truth. Use a seed
  the models were not trained on (training used seeds 1-4; the demo's 42 is held out).
- **a finished run's output folder** (has ``change.zarr``) with ``--truth DIR``: scored as it is, nothing
  is recomputed; MODEL must be the one the change cube (or crop-type, land-cover, VHR change or VHR
  land-cover map) was made with.
- **a WorldCereal folder** (``../shared/data/crops/worldcereal``; a crop-type MODEL): the labelled Flanders
  samples and the patch against WorldCereal's own maps (``models.worldcereal``).
- **a Landsat change pair** (``../shared/data/change/landsat_taizhou``; an S2 change-detection MODEL): two
  ENVI images and partial change / no-change reference masks, scored on the labelled pixels beside CVA
  (``models.landsat_real``) and after fine-tuning on the other image half (``models.landsat_finetune``);
  ``OUT/quicklook.png`` shows the pair, the model's change probability and the
  reference. ``--record`` adds the scores to the model's card (the weights stay byte-identical).
- **VHR change pairs** (``A/``, ``B/``, ``label/`` PNGs, as LEVIR-CD and DSIFN-CD): every pair resampled
  from its pixel size (``--gsd``; known for ``levir_samples`` 0.5 m and ``dsifn_samples`` 2 m) to the
  card's. A VHR change MODEL is scored pooled at the card's threshold beside CVA (``models.vhr_real``);
  a VHR land-cover MODEL on pairs whose labels are new buildings (LEVIR-CD) by the share of those
  pixels it calls building after (B) and before (A) construction (``models.vhr_landcover_real``).

Metrics: change models get precision, recall, F1, IoU, kappa and OA per pixel and per transition for
the model and the CVA baseline, and the semantic change scores (SeK, mIoU, per-type F1/IoU) of the change
types; crop-type models OA, kappa, macro F1 and per-class F1; S2 land-cover models OA, kappa, mIoU,
macro F1 and per-class F1/IoU over every period; VHR change models (on a run or an archive) precision,
recall, F1, IoU and kappa of consecutive VHR dates, and VHR land-cover models OA, kappa, mIoU and
per-class F1/IoU of every VHR date, against the planted truth (the run summary's ``evaluation``);
semantic change models (from/to heads)
SeK, mIoU and Fscd of their from/to maps on the analysis cube (built without a model from an archive, or
a run's ``cube.zarr``). Files: ``OUT/metrics.json``,
``OUT/confusion.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from eowatch.errors import InputError, ModelError

DEFAULT_OUT = "eowatch-eval"


def _run_outputs() -> dict[str, tuple[str, str]]:
    """Per task that ``evaluate_run`` scores (semantic change models: ``evaluate_semantic``): the run's
    store, and the monitoring-flow parameter that runs the model, which is also the store attribute
    that names it."""
    vhr_change, vhr_landcover = vhr_tasks()
    return {
        "change-detection": ("change.zarr", "model"),
        "crop_type": ("crop_type.zarr", "crop_model"),
        "land-cover": ("landcover.zarr", "landcover_model"),
        vhr_change: ("vhr_change.zarr", "vhr_change_model"),
        vhr_landcover: ("vhr_landcover.zarr", "vhr_landcover_model"),
    }


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name (see `eowatch models`)")
    parser.add_argument(
        "data",
        help="a synthetic archive, a run's output folder, WorldCereal, a Landsat change pair or VHR pairs",
    )
    parser.add_argument("--truth", help="planted-truth folder, for a run's output folder")
    parser.add_argument(
        "--out", help=f"where metrics.json and confusion.png go (default: {DEFAULT_OUT}/MODEL-DATA)"
    )
    parser.add_argument("--workers", type=int, default=2, help="Dask workers, when DATA is an archive")
    parser.add_argument(
        "--gsd", type=float, help="pixel size (m) of VHR change pairs (default: known for LEVIR-CD, DSIFN-CD)"
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="a Landsat change pair only: add the scores to the model's card in the package's weights folder",
    )


def data_kind(path: Path) -> str:
    """``archive``, ``run``, ``worldcereal``, ``change-pair`` or ``vhr-pairs`` from what the folder holds.

    Raises:
        InputError: the folder does not exist or is none of these.
    """
    from eowatch.models.landsat_real import is_change_pair_folder
    from eowatch.models.worldcereal import SAMPLES_FILE

    if not path.is_dir():
        raise InputError(f"evaluation data {path} is not a folder")
    if (path / "archive.json").is_file() and (path / "truth").is_dir():
        return "archive"
    if (path / "change.zarr").is_dir():
        return "run"
    if (path / SAMPLES_FILE).is_file():
        return "worldcereal"
    if is_change_pair_folder(path):
        return "change-pair"
    if all((path / sub).is_dir() for sub in ("A", "B", "label")):
        return "vhr-pairs"
    raise InputError(
        f"{path} is neither a synthetic archive (archive.json + truth/), a run's output folder "
        "(change.zarr), a WorldCereal folder, a Landsat change pair (two ENVI images, change.bmp, "
        "unchanged.bmp) nor VHR change pairs (A/, B/, label/)"
    )


def _card(name: str) -> Any:
    from eowatch.models.card import ModelCard
    from eowatch.models.registry import card_file_of

    path = card_file_of(name)
    if not path.is_file():
        raise ModelError(f"model {name!r} is registered but its card {path} is not shipped")
    return ModelCard.read(path)


def _run_archive(model: str, archive: Path, out: Path, workers: int) -> tuple[Path, Path]:
    """Run the monitoring flow over a served archive with ``model``; its output folder and truth."""
    from contextlib import ExitStack

    from eowatch.demo import archive_run_params, served_archive
    from eowatch.infra.cluster import ClusterConfig
    from eowatch.infra.services import PrefectServer, prefect_env

    card = _card(model)
    extra = {_run_outputs()[card.task][1]: model}
    run_out = out / "run"
    with ExitStack() as stack:
        served = stack.enter_context(served_archive(archive))
        prefect = stack.enter_context(PrefectServer())
        stack.enter_context(prefect_env(prefect.api_url))
        params = archive_run_params(served, run_out, archive, **extra)
        from flows import monitor

        monitor(params, ClusterConfig(n_workers=workers))
    return run_out, archive / "truth"


def vhr_tasks() -> tuple[str, str]:
    """The VHR change and VHR land-cover tasks (``models.vhr_change``, ``models.vhr_landcover``)."""
    from eowatch.models.vhr_change import VHR_TASK
    from eowatch.models.vhr_landcover import VHR_LANDCOVER_TASK

    return VHR_TASK, VHR_LANDCOVER_TASK


def _check_task(model: str, task: str) -> None:
    """``InputError`` for a model whose task ``eowatch evaluate`` does not score (before anything runs)."""
    from eowatch.models.registry import TRAINING_COMMANDS

    if task not in (*_run_outputs(), "semantic-change-detection"):
        raise InputError(
            f"eowatch evaluate does not score {task} models: a monitoring run with --truth scores "
            f"{model!r} in its summary, and `{TRAINING_COMMANDS.get(model, 'its training command')} "
            "--skip-training` re-scores its card"
        )


def _made_with(store: Path, task: str) -> tuple[str | None, dict[str, Any]]:
    """The model name a store of a ``task`` model records and its cube spec (from its attributes)."""
    from eowatch.pipelines.zarr_store import read_attrs

    attrs = read_attrs(store)
    model = attrs.get(_run_outputs()[task][1])
    if isinstance(model, str):
        model = json.loads(model)
    spec = attrs.get("cube_spec")
    return (model or {}).get("name"), json.loads(spec) if isinstance(spec, str) else dict(spec or {})


def evaluate_run(model: str, run_out: Path, truth: Path, out: Path) -> dict[str, Any]:
    """Scores of a finished run's change cube, crop-type or land-cover map (by ``model``'s task) against
    ``truth``."""
    from eowatch.models.confusion import render_confusion
    from eowatch.pipelines.spec import CubeSpec

    card = _card(model)
    _check_task(model, card.task)
    store = run_out / _run_outputs()[card.task][0]
    if not (store / "zarr.json").is_file():
        raise InputError(f"{run_out} has no {store.name}: the run did not use {model!r}")
    made_with, spec_dict = _made_with(store, card.task)
    if made_with != model:
        raise ModelError(f"{store} was made with model {made_with!r}, not {model!r}")
    if not truth.is_dir():
        raise InputError(f"truth folder {truth} does not exist")
    if card.task in vhr_tasks():
        metrics, cm, names, title = _evaluate_vhr_store(model, card.task, store, truth)
        out.mkdir(parents=True, exist_ok=True)
        render_confusion(cm, names, out / "confusion.png", title)
        return metrics
    spec = CubeSpec.from_dict(spec_dict)
    if card.task == "crop_type":
        from eowatch.pipelines.crops import crop_confusion, evaluate_crops

        metrics = {"crop_type": evaluate_crops(store, spec, str(truth))}
        cm, names = crop_confusion(store, spec, str(truth))
        title = f"{model}: crop type vs planted land cover"
    elif card.task == "land-cover":
        from eowatch.pipelines.landcover import evaluate_landcover, landcover_confusion

        metrics = {"land_cover": evaluate_landcover(store, spec, str(truth))}
        cm, _, names = landcover_confusion(store, spec, str(truth))
        title = f"{model}: land cover of every period vs planted land cover"
    else:
        from eowatch.legend import CHANGE_TYPES
        from eowatch.pipelines.evaluate import evaluate_change

        result = evaluate_change(store, spec, truth)
        if result is None:
            raise InputError(
                f"{truth} lacks the change truth rasters (change_type, change_start, change_end)"
            )
        metrics = {"change": result}
        cm, names = np.array(result["semantic"]["confusion"]), dict(CHANGE_TYPES)
        title = f"{model}: change type per transition vs planted truth"
    out.mkdir(parents=True, exist_ok=True)
    render_confusion(cm, names, out / "confusion.png", title)
    return metrics


def _evaluate_vhr_store(
    model: str, task: str, store: Path, truth: Path
) -> tuple[dict[str, Any], np.ndarray, dict[int, str], str]:
    """Scores of a run's VHR change or VHR land-cover map against the archive's planted truth (the
    run summary's ``evaluation``), its pooled confusion matrix, class names and a title."""
    import xarray as xr

    from eowatch.pipelines.stac_output import store_grid
    from eowatch.pipelines.zarr_store import zarr_store

    with xr.open_zarr(zarr_store(store, read_only=True), consolidated=True) as ds:
        grid = store_grid(ds)
    if task == vhr_tasks()[0]:
        from eowatch.pipelines.vhr_change import evaluate_vhr_change

        scores = evaluate_vhr_change(store, grid, str(truth))
        names, key, what = {0: "no change", 1: "change"}, "vhr_change", "change of consecutive VHR dates"
    else:
        from eowatch.legend import VHR_LANDCOVER
        from eowatch.pipelines.vhr_landcover import evaluate_vhr_landcover

        scores = evaluate_vhr_landcover(store, grid, str(truth))
        names, key, what = dict(VHR_LANDCOVER), "vhr_land_cover", "land cover of every VHR date"
    return {key: scores}, np.array(scores["confusion"]), names, f"{model}: {what} vs planted truth"


def evaluate_vhr_buildings(model: str, folder: Path, gsd_m: float | None, out: Path) -> dict[str, Any]:
    """A VHR land-cover model on building-change pairs (``A/``, ``B/``, ``label/`` as LEVIR-CD, whose
    labels are new buildings; ``models.vhr_landcover_real``): on the labelled pixels, the share called
    building in B (recall of real roofs) and in A (the ground before construction), and the confusion of
    building vs not on those pixels of A and B."""
    from eowatch.models.confusion import confusion_matrix, render_confusion
    from eowatch.models.registry import get
    from eowatch.models.vhr_landcover_real import BUILDING, building_scores, predict_pair_classes
    from eowatch.models.vhr_real import read_pairs

    pairs = read_pairs(folder, _pairs_gsd(folder, gsd_m))
    codes_a, codes_b = predict_pair_classes(get(model), pairs)
    labelled = pairs.labels.astype(bool)
    called = np.concatenate([codes_a[labelled], codes_b[labelled]]) == BUILDING
    is_roof = np.repeat([False, True], int(labelled.sum()))  # A: not yet built; B: a new roof
    cm = confusion_matrix(called.astype(np.int64), is_roof.astype(np.int64), 2)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{model}: labelled new-building pixels of {folder.name} in A (before) and B (after)"
    render_confusion(cm, {0: "not building", 1: "building"}, out / "confusion.png", title)
    scores = building_scores(codes_a, codes_b, pairs.labels)
    return {"vhr_buildings": {**scores, "pairs": float(len(pairs.names)), "gsd_m": float(pairs.gsd_m)}}


def _pairs_gsd(folder: Path, gsd_m: float | None) -> float:
    """``--gsd``, else the known pixel size of the LEVIR-CD / DSIFN-CD samples.

    Raises:
        InputError: neither given nor known.
    """
    from eowatch.models.vhr_real import REAL_DATASETS

    known = {name: gsd for name, gsd in REAL_DATASETS.values()}
    gsd = gsd_m if gsd_m is not None else known.get(folder.name)
    if gsd is None or not gsd > 0:
        raise InputError(f"give the pixel size of the pairs in {folder} with --gsd METRES")
    return float(gsd)


def evaluate_worldcereal_folder(model: str, folder: Path, out: Path) -> dict[str, Any]:
    """A crop-type model on the real WorldCereal folder (samples and patch), with the samples' confusion."""
    from eowatch.models.confusion import confusion_matrix, render_confusion
    from eowatch.models.croptype import NODATA_CLASS, centroids_path, load_centroids, predict_croptype_pixels
    from eowatch.models.registry import WEIGHTS_DIR, get
    from eowatch.models.worldcereal import SAMPLES_FILE, evaluate_worldcereal, read_samples, reference_classes

    loaded = get(model)
    card = loaded.card
    if card.task != "crop_type":
        raise ModelError(f"model {model!r} is a {card.task} model; WorldCereal data scores crop-type models")
    centroids = load_centroids(centroids_path(WEIGHTS_DIR, model), card)
    scores = evaluate_worldcereal(loaded, folder, centroids)
    samples = read_samples(folder / SAMPLES_FILE, card.bands)
    reference = reference_classes(samples, card.label_mapping, card)
    probs = predict_croptype_pixels(loaded, samples.raw, samples.months)
    pred = np.where(np.isnan(probs[:, 0]), NODATA_CLASS, np.nan_to_num(probs).argmax(axis=1))
    names = {c: info.name for c, info in card.classes.items()}
    cm = confusion_matrix(pred, reference, len(names))
    out.mkdir(parents=True, exist_ok=True)
    render_confusion(cm, names, out / "confusion.png", f"{model}: Flanders 2021 samples (WorldCereal)")
    return {
        "worldcereal": scores,
        "flanders_confusion": {"classes": list(names.values()), "counts": cm.tolist()},
    }


def evaluate_change_pair(model: str, folder: Path, out: Path, record: bool) -> dict[str, Any]:
    """An S2 change-detection model on a real Landsat change pair: scores (with the two-fold fine-tuning
    check), confusion matrix of the labelled pixels at the card's threshold, a quicklook; with
    ``record``, the scores go into the card."""
    from PIL import Image

    from eowatch.models.confusion import confusion_matrix, render_confusion
    from eowatch.models.landsat_finetune import finetune_two_fold
    from eowatch.models.landsat_real import predict_pair, quicklook, read_change_pair, score_pair
    from eowatch.models.registry import WEIGHTS_DIR, get
    from eowatch.models.weights import record_metrics

    loaded = get(model)
    pair = read_change_pair(folder)
    p_change = predict_pair(loaded, pair)
    scores = score_pair(loaded, pair, p_change)
    if loaded.card.task == "change-detection":  # the check fine-tunes a single-head change network
        print(f"fine-tuning check: {model} fine-tuned on each half of {pair.name}, scored on the other")
        scores.update(finetune_two_fold(loaded, pair))
    threshold = loaded.card.decision_threshold
    cm = confusion_matrix(p_change >= threshold, pair.changed, 2, pair.labelled)
    out.mkdir(parents=True, exist_ok=True)
    render_confusion(
        cm, {0: "no change", 1: "change"}, out / "confusion.png", f"{model}: {pair.name} labelled pixels"
    )
    Image.fromarray(quicklook(pair, p_change, threshold)).save(out / "quicklook.png")
    if record:
        record_metrics(WEIGHTS_DIR, model, scores)
    return {"change_pair": scores, "pair": pair.name}


def evaluate_vhr_pairs(model: str, folder: Path, gsd_m: float | None, out: Path) -> dict[str, Any]:
    """A VHR change model on labelled image pairs (``A/``, ``B/``, ``label/``): pooled scores at the
    card's threshold beside CVA, and the confusion matrix of every pixel."""
    from eowatch.models.confusion import confusion_matrix, render_confusion
    from eowatch.models.registry import get
    from eowatch.models.vhr_real import cva_masks, predict_pairs, read_pairs, score

    loaded = get(model)
    pairs = read_pairs(folder, _pairs_gsd(folder, gsd_m))
    called = predict_pairs(loaded, pairs) >= loaded.card.decision_threshold
    scores = {
        **{f"model.{k}": v for k, v in score(called, pairs.labels).items()},
        **{f"cva.{k}": v for k, v in score(cva_masks(pairs), pairs.labels).items()},
        "pairs": float(len(pairs.names)),
        "gsd_m": float(pairs.gsd_m),
    }
    out.mkdir(parents=True, exist_ok=True)
    cm = confusion_matrix(called, pairs.labels, 2)
    title = f"{model}: {folder.name}, {len(pairs.names)} pairs"
    render_confusion(cm, {0: "no change", 1: "change"}, out / "confusion.png", title)
    return {"vhr_pairs": scores}


def evaluate_semantic(
    model: str, data: Path, kind: str, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    """A semantic (or conditional) change model on an archive's cube or a run's ``cube.zarr``.

    The monitoring flow does not run these models, so the analysis cube is built without a model (an
    archive) or taken from a finished run (its ``cube.zarr``), then scored with the card's threshold
    against the planted from/to land cover (``models.semantic_eval``).
    """
    from eowatch.models.semantic_eval import evaluate_semantic_cube

    if kind == "archive":
        from eowatch.pipelines.training import build_training_cube

        cube, truth = Path(build_training_cube(data, out / "run", args.workers)), data / "truth"
    elif kind == "run" and args.truth:
        cube, truth = data / "cube.zarr", Path(args.truth).expanduser().resolve()
        if not (cube / "zarr.json").is_file():
            raise InputError(f"{data} has no cube.zarr to score {model!r} on")
        if not truth.is_dir():
            raise InputError(f"truth folder {truth} does not exist")
    else:
        raise InputError(
            f"the semantic change model {model!r} is scored on a synthetic archive, or on a run's output "
            "folder with --truth DIR"
        )
    out.mkdir(parents=True, exist_ok=True)
    return evaluate_semantic_cube(model, cube, truth, out)


def cmd_evaluate(args: argparse.Namespace) -> int:
    data = Path(args.data).expanduser().resolve()
    card = _card(args.model)  # unknown model: fail before anything runs
    kind = data_kind(data)
    if kind == "vhr-pairs":
        if card.task not in vhr_tasks():
            raise InputError(
                "VHR change pairs (A/, B/, label/) score VHR change models and VHR land-cover models; "
                f"{args.model!r} is a {card.task} model"
            )
    else:
        _check_task(args.model, card.task)
    if args.record and kind != "change-pair":
        raise InputError("--record is for a Landsat change pair; trainers record their own scores")
    out = Path(args.out) if args.out else Path(DEFAULT_OUT) / f"{args.model}-{data.name}"
    if kind == "vhr-pairs" and card.task == vhr_tasks()[0]:
        metrics = evaluate_vhr_pairs(args.model, data, args.gsd, out)
    elif kind == "vhr-pairs":
        metrics = evaluate_vhr_buildings(args.model, data, args.gsd, out)
    elif kind == "change-pair":
        metrics = evaluate_change_pair(args.model, data, out, args.record)
    elif card.task == "semantic-change-detection":
        metrics = evaluate_semantic(args.model, data, kind, args, out)
    elif kind == "archive":
        run_out, truth = _run_archive(args.model, data, out, args.workers)
        metrics = evaluate_run(args.model, run_out, truth, out)
    elif kind == "run":
        if not args.truth:
            raise InputError("a run's output folder is scored against planted truth: give --truth DIR")
        metrics = evaluate_run(args.model, data, Path(args.truth).expanduser().resolve(), out)
    else:
        metrics = evaluate_worldcereal_folder(args.model, data, out)
    report = {"model": args.model, "data": str(data), "kind": kind, **metrics}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    from eowatch.evaluate_report import headline

    for line in headline(metrics):
        print(line)
    print(f"metrics: {out / 'metrics.json'}\nconfusion matrix: {out / 'confusion.png'}")
    if kind == "change-pair":
        print(f"quicklook: {out / 'quicklook.png'}")
        if args.record:
            print(f"scores recorded in the card of {args.model}")
    return 0
