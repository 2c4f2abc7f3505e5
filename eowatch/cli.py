"""The ``eowatch`` command line: archive, serve, run, backfill, deploy, demo, models, train.

User errors (``EowatchError``) print one line ``error: ...`` and exit non-zero; nothing else is printed
for them (no traceback).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eowatch import __version__
from eowatch.errors import EowatchError
from eowatch.report import print_summary

DEMO_SEED = 42


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"malformed date {text!r}; use YYYY-MM-DD") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _floats4(text: str) -> tuple[float, float, float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bbox {text!r} must be 4 comma-separated numbers") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(
            f"bbox {text!r} must be 4 comma-separated numbers, got {len(values)}"
        )
    return values  # type: ignore[return-value]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``eowatch run`` (AOI, dates, output, grid, collections, model, asset stores,
    workers); ``eowatch plan`` takes the same ones."""
    parser.add_argument("--stac-url", required=True)
    parser.add_argument("--bbox", type=_floats4, help="min_lon,min_lat,max_lon,max_lat")
    parser.add_argument("--geojson", help="AOI GeoJSON file (EPSG:4326)")
    parser.add_argument("--start", type=_date, required=True)
    parser.add_argument("--end", type=_date, required=True)
    parser.add_argument("--out", required=True, help="output folder or s3://bucket/prefix")
    parser.add_argument("--crs", help="target CRS (default: UTM zone of the AOI)")
    parser.add_argument("--bounds", type=_floats4, help="target grid bounds in the target CRS")
    parser.add_argument("--resolution", type=float, default=10.0)
    parser.add_argument("--max-cloud-cover", type=float, default=90.0)
    parser.add_argument("--model", default="siamese-s2s1-change", help="change model (see `eowatch models`)")
    parser.add_argument(
        "--gap-model",
        default="auto",
        help="model for the pixel-transitions where a date has no S1 observation (default auto: the "
        "change model's gap model, siamese-s2s1-gap-change; '' for none)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="change-model inference precision (default auto: float32 on CPU, bf16 autocast on CUDA; "
        "bfloat16 is ~2x faster on CPUs with bf16 instructions, a few pixels flip)",
    )
    parser.add_argument(
        "--crop-model", help="also map crop types over the season with this model, e.g. crop-type-ltae"
    )
    parser.add_argument(
        "--vhr-change-model",
        help="also detect change between consecutive VHR dates with this model, e.g. siamese-vhr-change "
        "(needs --vhr-collection)",
    )
    parser.add_argument(
        "--landcover-model",
        help="also map land cover for every period with this model, e.g. landcover-s2-unet",
    )
    parser.add_argument(
        "--vhr-landcover-model",
        help="also map land cover for every VHR date with this model, e.g. landcover-vhr-unet "
        "(needs --vhr-collection)",
    )
    parser.add_argument(
        "--semantic-change-model",
        help="also map change with its from/to land cover between consecutive periods with this model, "
        "e.g. siamese-s2s1-semantic",
    )
    parser.add_argument("--s2-collection", default="sentinel-2-l2a", help="optical collection id")
    parser.add_argument("--s1-collection", default="sentinel-1-grd", help="SAR collection id ('' for none)")
    parser.add_argument("--truth", help="planted-truth folder to score against")
    parser.add_argument(
        "--asset-store",
        action="append",
        default=[],
        dest="asset_stores",
        metavar="URL_PREFIX",
        help="read assets only under this URL prefix (repeatable; default: any http(s):// or s3:// href)",
    )
    parser.add_argument("--workers", type=_positive_int, default=2)


def run_params(args: argparse.Namespace, **extra: Any) -> Any:
    """``MonitorParams`` from the arguments of :func:`add_run_arguments` (``extra``: more fields, or
    fields that replace them).

    Raises:
        InputError: a bad bbox, geometry, date range, collection or output location.
    """
    from eowatch.pipelines.params import parse_params

    fields: dict[str, Any] = {
        "stac_url": args.stac_url,
        "start": args.start,
        "end": args.end,
        "out": args.out,
        "bbox": args.bbox,
        "geojson": args.geojson,
        "crs": args.crs,
        "bounds": args.bounds,
        "resolution": args.resolution,
        "model": args.model,
        "gap_model": getattr(args, "gap_model", "auto") or None,
        "precision": args.precision,
        "crop_model": args.crop_model or None,
        "vhr_collection": getattr(args, "vhr_collection", None) or None,
        "vhr_change_model": args.vhr_change_model or None,
        "landcover_model": args.landcover_model or None,
        "vhr_landcover_model": args.vhr_landcover_model or None,
        "semantic_change_model": getattr(args, "semantic_change_model", None) or None,
        "s2_collection": args.s2_collection,
        "s1_collection": args.s1_collection or None,
        "truth_dir": args.truth,
        "max_cloud_cover": args.max_cloud_cover,
        "asset_stores": tuple(args.asset_stores),
    }
    return parse_params(**{**fields, **extra})


def cmd_run(args: argparse.Namespace) -> int:
    from eowatch.infra.cluster import ClusterConfig

    params = run_params(args)
    from flows import monitor

    summary = monitor(params, ClusterConfig(n_workers=args.workers))
    print_summary(summary)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from eowatch.infra.cluster import ClusterConfig
    from eowatch.pipelines.regions import backfill_windows, get_region
    from flows import backfill

    region = get_region(args.regions_file, args.region)
    for a, b in backfill_windows(args.start, args.end, args.window_months):
        region.monitor_params(a, b, args.out)  # bad input fails here in one line, before Prefect starts
    rows = backfill(
        args.region,
        args.start,
        args.end,
        args.out,
        regions_file=args.regions_file,
        max_parallel=args.max_parallel,
        window_months=args.window_months,
        cluster=ClusterConfig(n_workers=args.workers),
    )
    for r in rows:
        changed = sum(r["by_type_km2"].values())
        print(f"{r['window']}: {r['status']}, {changed:.4f} km² changed → {r['out']}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from eowatch.infra.deployments import (
        DeployConfig,
        describe,
        prefect_urls,
        serve,
        unset_variables,
    )
    from eowatch.pipelines.regions import load_regions
    from flows import deployments

    config = DeployConfig(regions_file=args.regions_file, out_root=args.out_root, workers=args.workers)
    regions = load_regions(config.regions_file)
    _, ui_url = prefect_urls()
    for name, names in unset_variables(regions).items():
        refs = ", ".join(f"${{{n}}}" for n in names)
        print(
            f"warning: region {name} uses {refs}, which is not set here: its runs will fail", file=sys.stderr
        )
    built = deployments(config)
    limit = config.process_limit(sum(bool(d.schedules) for d in built))

    def ready(ids: dict[str, Any]) -> None:
        print(f"Serving {len(ids)} deployments from {config.regions_file} (at most {limit} runs at a time):")
        print("\n".join(describe(built, ids, ui_url)))
        print(
            f"Outputs go to {config.out_root}/<region>/<start>_<end>/. Ctrl-C stops (schedules are paused)."
        )
        sys.stdout.flush()

    try:
        serve(built, limit, ready)
    except KeyboardInterrupt:
        print("stopped serving; the schedules are paused until `eowatch deploy` runs again")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from eowatch.demo import run_demo

    summary = run_demo(Path(args.workdir), seed=args.seed, workers=args.workers)
    print_summary(summary)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from eowatch.demo import serve_archive

    serve_archive(Path(args.archive))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from eowatch.models.registry import WEIGHTS_DIR
    from eowatch.pipelines.training import train_croptype_shipped, train_shipped_model

    out = Path(args.out) if args.out else WEIGHTS_DIR
    seeds = [int(s) for s in args.archive_seeds.split(",") if s.strip()]
    crop = args.model == "crop-type-ltae"
    epochs = args.epochs if args.epochs is not None else (30 if crop else 12)
    if crop:
        model, scores = train_croptype_shipped(
            Path(args.workdir), out, seeds, epochs, args.seed, args.workers
        )
    else:
        model, scores = train_shipped_model(
            Path(args.workdir), out, seeds, epochs, args.seed, args.workers, name=args.model
        )
    print(f"saved {model.card.name} v{model.card.version} to {out}")
    for key in sorted(scores):
        print(f"  {key}: {scores[key]:.4f}")
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    from eowatch.open import open_change

    change = open_change(args.target, root=args.root, window=args.window)
    print(change)
    months = ", ".join(str(t)[:7] for t in change.time.values)
    print(f"CRS {change.rio.crs}, {abs(change.rio.resolution()[0]):g} m pixels; changes into {months}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from eowatch.models.registry import list_models

    for card in list_models():
        if args.json:
            print(card.to_json())
        else:
            bands = ", ".join(card.bands)
            print(f"{card.name} v{card.version}: {card.task}; bands {bands} at {card.resolution_m} m")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eowatch", description="Satellite archives → change maps.")
    parser.add_argument("--version", action="version", version=f"eowatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)

    from eowatch.archive import add_cli

    add_cli(sub)

    run = sub.add_parser("run", help="run the monitoring flow against a STAC API")
    add_run_arguments(run)
    run.add_argument("--vhr-collection", help="VHR collection id, loaded on a nested grid (default: none)")
    run.set_defaults(func=cmd_run)

    backfill = sub.add_parser("backfill", help="monitor a named region (regions.yaml) window by window")
    backfill.add_argument("--region", required=True, help="region name in the regions file")
    backfill.add_argument("--start", type=_date, required=True)
    backfill.add_argument("--end", type=_date, required=True)
    backfill.add_argument("--out", required=True, help="output root; a window goes to OUT/REGION/START_END/")
    backfill.add_argument("--regions-file", default="regions.yaml", help="regions YAML file")
    backfill.add_argument(
        "--window-months", type=int, default=3, help="months per window (consecutive windows share one)"
    )
    backfill.add_argument("--max-parallel", type=int, default=1, help="windows run at a time")
    backfill.add_argument("--workers", type=_positive_int, default=2, help="Dask workers per window")
    backfill.set_defaults(func=cmd_backfill)

    deploy = sub.add_parser(
        "deploy", help="register the scheduled and backfill deployments with Prefect and serve them"
    )
    deploy.add_argument("--regions-file", default="regions.yaml", help="regions YAML file")
    deploy.add_argument(
        "--out-root", default="eowatch-output", help="output root; a run goes to OUT_ROOT/REGION/START_END/"
    )
    deploy.add_argument("--workers", type=_positive_int, default=2, help="Dask workers per monitoring run")
    deploy.set_defaults(func=cmd_deploy)

    demo = sub.add_parser("demo", help="make the synthetic archive, start the services, run the flow")
    demo.add_argument("--workdir", default="eowatch-demo", help="folder for the archive and the outputs")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help="archive seed (not used in training)")
    demo.add_argument("--workers", type=_positive_int, default=2)
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="serve an archive through a local STAC API and asset server")
    serve.add_argument("archive")
    serve.set_defaults(func=cmd_serve)

    from eowatch.evaluate_cli import add_evaluate_arguments, cmd_evaluate

    evaluate = sub.add_parser(
        "evaluate", help="score a model on labelled data (archive, run output, WorldCereal); metrics, picture"
    )
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    from eowatch.plan_cli import add_plan_arguments, cmd_plan

    plan = sub.add_parser(
        "plan", help="estimate a run (bytes, chunks, tasks, memory, time); refuse what cannot fit"
    )
    add_plan_arguments(plan)
    plan.set_defaults(func=cmd_plan)

    open_ = sub.add_parser("open", help="open a change cube (run output, store or region) and describe it")
    open_.add_argument(
        "target", help="a run's output folder or s3:// URL, a change.zarr, or a region name (under --root)"
    )
    open_.add_argument("--root", help="output root of a region's windows (default: eowatch-output)")
    open_.add_argument("--window", help="START_END: only this window of a region")
    open_.set_defaults(func=cmd_open)

    train = sub.add_parser("train", help="reproduce a shipped model from synthetic archives")
    train.add_argument(
        "model",
        nargs="?",
        default="siamese-s2s1-change",
        choices=["siamese-s2s1-change", "siamese-s2s1-gap-change", "crop-type-ltae"],
    )
    train.add_argument("--workdir", default="eowatch-train", help="folder for the training archive and cube")
    train.add_argument("--out", help="weights folder (default: the package's models/weights)")
    from eowatch.pipelines.training import TRAIN_ARCHIVE_SEEDS

    seeds = ",".join(str(s) for s in TRAIN_ARCHIVE_SEEDS)
    train.add_argument("--archive-seeds", default=seeds, help="seeds of the training archives")
    train.add_argument("--epochs", type=int, default=None, help="default 12 (change), 30 (crop type)")
    train.add_argument("--seed", type=int, default=0, help="training seed")
    train.add_argument("--workers", type=_positive_int, default=2)
    train.set_defaults(func=cmd_train)

    models = sub.add_parser("models", help="list the shipped models and their cards")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not args.verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # worker processes read it at start
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        for name in ("distributed", "rasterio", "httpx", "prefect._internal"):
            logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    try:
        return int(args.func(args) or 0)
    except EowatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
