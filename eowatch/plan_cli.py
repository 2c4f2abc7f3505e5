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

from eowatch.cli import add_run_arguments, run_params
from eowatch.errors import EowatchError

log = logging.getLogger("eowatch")


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


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the plan of the run ``args`` describe; 0 when it fits.

    Raises:
        InputError: the run does not fit its cluster (after the plan is printed), or bad arguments.
        EowatchError: the other user errors of a run (catalog, model, output location).
    """
    from eowatch.pipelines.artifacts import plan_text
    from eowatch.pipelines.plan import check_fits, cluster_resources, plan_run
    from eowatch.pipelines.stages import prepare_run, search_items

    params = run_params(args, chunk=args.chunk, vhr_collection=args.vhr_collection or None)
    config = params.to_config()
    cluster = cluster_resources(_cluster_config(args))
    out = _local_out(config.out)
    existed = out is None or out.exists()
    try:
        run = prepare_run(config)
    finally:  # planning writes nothing: remove the empty folder the output check created
        if not existed and out is not None and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    plan = plan_run(run, search_items(run, log.info), cluster)
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
