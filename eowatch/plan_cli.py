"""``eowatch plan``: estimate a monitoring run before running it, and refuse one that cannot fit.

Takes the arguments of ``eowatch run`` (plus the cluster's size), searches the catalog without pinning
anything, and prints the plan of ``pipelines.plan``: bytes to read, chunks, Dask tasks, peak memory per
worker and time. When the peak does not fit a worker it prints the plan, then ``error: ...`` saying
what to change, and exits non-zero. Nothing is written (an output folder the check had to create is
removed again).

``eowatch.cli`` wires :func:`add_plan_arguments` and :func:`cmd_plan` in as the ``plan`` subcommand;
:func:`main` runs them on their own (``python -m eowatch.plan_cli ...``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eowatch.cli import _date, _floats4
from eowatch.errors import EowatchError

log = logging.getLogger("eowatch")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``eowatch run`` (AOI, dates, output, grid, collections, model, workers)."""
    parser.add_argument("--stac-url", required=True)
    parser.add_argument("--bbox", type=_floats4, help="min_lon,min_lat,max_lon,max_lat")
    parser.add_argument("--geojson", help="AOI GeoJSON file (EPSG:4326)")
    parser.add_argument("--start", type=_date, required=True)
    parser.add_argument("--end", type=_date, required=True)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--crs", help="target CRS (default: UTM zone of the AOI)")
    parser.add_argument("--bounds", type=_floats4, help="target grid bounds in the target CRS")
    parser.add_argument("--resolution", type=float, default=10.0)
    parser.add_argument("--max-cloud-cover", type=float, default=90.0)
    parser.add_argument("--model", default="siamese-s2s1-change")
    parser.add_argument("--s2-collection", default="sentinel-2-l2a", help="optical collection id")
    parser.add_argument("--s1-collection", default="sentinel-1-grd", help="SAR collection id ('' for none)")
    parser.add_argument("--truth", help="planted-truth folder to score against")
    parser.add_argument("--workers", type=int, default=2)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """``eowatch run``'s arguments plus what sizes the plan: chunk, threads and memory per worker."""
    from eowatch.infra.cluster import ClusterConfig

    defaults = ClusterConfig()
    add_run_arguments(parser)
    parser.add_argument("--vhr-collection", help="VHR collection id, loaded on a nested grid (default: none)")
    parser.add_argument("--chunk", type=int, default=256, help="spatial chunk edge in pixels")
    parser.add_argument("--threads-per-worker", type=int, default=defaults.threads_per_worker)
    parser.add_argument(
        "--memory-limit", default=defaults.memory_limit, help="memory per worker, e.g. 4GiB or auto"
    )
    parser.add_argument(
        "--cluster-config", help="cluster config YAML (as EOWATCH_CLUSTER_CONFIG); overrides the three above"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def _cluster_config(args: argparse.Namespace) -> Any:
    """The cluster the run would get: a config file, else --workers/--threads/--memory; then the
    ``EOWATCH_CLUSTER__*`` environment overrides (``infra.cluster.load_cluster_config``)."""
    from eowatch.infra.cluster import ClusterConfig, load_cluster_config

    default = ClusterConfig(
        n_workers=args.workers, threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit
    )
    return load_cluster_config(args.cluster_config, default=default)


def _local_out(out: str) -> Path | None:
    """The local folder ``ledger.check_output_location`` would create for ``out``; None for object storage."""
    if "://" in out and not out.startswith("file://"):
        return None
    return Path(out.removeprefix("file://")).expanduser().resolve()


def search_items(run: Any) -> list[dict[str, Any]]:
    """The items a run would search, collection by collection as ``stages.search_stage`` does, without
    pinning them in the run's work folder (a later ``eowatch run`` searches afresh).

    Raises:
        CatalogError, InputError, EmptySearchError: as ``pipelines.search.search_catalog``.
    """
    from eowatch.pipelines.search import SearchRequest, search_catalog

    cfg = run.config
    items: list[dict[str, Any]] = []
    for coll in (c for c in (cfg.s2_collection, cfg.s1_collection, cfg.vhr_collection) if c):
        request = SearchRequest(
            collections=(coll,),
            bbox=cfg.bbox if cfg.intersects is None else None,
            intersects=cfg.intersects,
            start=cfg.start,
            end=cfg.end,
            max_cloud_cover=cfg.max_cloud_cover if coll == cfg.s2_collection else None,
        )
        found = search_catalog(cfg.stac_url, request)
        log.info(f"{coll}: {len(found)} items")
        items.extend(found)
    return items


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the plan of the run ``args`` describe; 0 when it fits.

    Raises:
        InputError: the run does not fit its cluster (after the plan is printed), or bad arguments.
        EowatchError: the other user errors of a run (catalog, model, output location).
    """
    from eowatch.pipelines.artifacts import plan_text
    from eowatch.pipelines.params import parse_params
    from eowatch.pipelines.plan import check_fits, cluster_resources, plan_run
    from eowatch.pipelines.stages import prepare_run

    params = parse_params(
        stac_url=args.stac_url,
        start=args.start,
        end=args.end,
        out=args.out,
        bbox=args.bbox,
        geojson=args.geojson,
        crs=args.crs,
        bounds=args.bounds,
        resolution=args.resolution,
        chunk=args.chunk,
        model=args.model,
        s2_collection=args.s2_collection,
        s1_collection=args.s1_collection or None,
        vhr_collection=args.vhr_collection or None,
        truth_dir=args.truth,
        max_cloud_cover=args.max_cloud_cover,
    )
    config = params.to_config()
    cluster = cluster_resources(_cluster_config(args))
    out = _local_out(config.out)
    existed = out is None or out.exists()
    try:
        run = prepare_run(config)
    finally:  # planning writes nothing: remove the empty folder the output check created
        if not existed and out is not None and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    plan = plan_run(run, search_items(run), cluster)
    print(json.dumps(plan.to_dict(), indent=1) if args.json else plan_text(plan), flush=True)
    check_fits(plan)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``eowatch plan`` on its own: parse, plan, print; ``error: ...`` and the error's exit code on a
    user error (a run that does not fit exits with InputError's code, 2)."""
    parser = argparse.ArgumentParser(prog="eowatch plan", description="Estimate a monitoring run.")
    add_plan_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return cmd_plan(args)
    except EowatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
