"""Run every benchmark and write ``benchmarks/results/latest.json`` and ``latest.md``.

Usage: ``python -m benchmarks.run [--quick] [--only cube,inference,memory,e2e,storage] [--out DIR]``
(``make bench``). A benchmark that fails is recorded as failed; the others still run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import bench_cube, bench_e2e, bench_inference, bench_memory, bench_storage
from benchmarks._harness import RESULTS, build_report, failed, write_report

BENCHMARKS: dict[str, tuple[str, Callable[[bool], dict[str, Any]]]] = {
    "cube": (bench_cube.TITLE, bench_cube.run),
    "inference": (bench_inference.TITLE, bench_inference.run),
    "memory": (bench_memory.TITLE, bench_memory.run),
    "e2e": (bench_e2e.TITLE, bench_e2e.run),
    "storage": (bench_storage.TITLE, bench_storage.run),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition each (about 3 minutes)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    results = []
    for name in names:
        title, fn = BENCHMARKS[name]
        print(f"running {name} ...", flush=True)
        try:
            results.append(fn(args.quick))
        except Exception as exc:  # keep the other benchmarks' figures
            logging.getLogger("eowatch").exception("benchmark %s failed", name)
            results.append(failed(name, title, exc))
        for label, value in results[-1].get("ratios", {}).items():
            print(f"  {label}: {value}", flush=True)
    json_path, md_path = write_report(build_report(results, args.quick), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
