"""``eowatch archive make|validate`` sub-commands (the lead wires :func:`add_cli` into argparse)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from eowatch.archive.config import ArchiveConfig


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from exc


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``archive make --out DIR --seed N [--size-km F] [--start D] [--end D]`` and
    ``archive validate DIR``; each sets ``func`` (parsed args -> exit code)."""
    defaults = ArchiveConfig()
    archive = subparsers.add_parser("archive", help="make or validate the synthetic archive")
    sub = archive.add_subparsers(dest="archive_command", required=True)
    make = sub.add_parser("make", help="generate a synthetic archive (deterministic from the seed)")
    make.add_argument("--out", type=Path, required=True, help="output directory (empty or absent)")
    make.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    make.add_argument("--size-km", type=float, default=defaults.size_km, help="AOI edge in km")
    make.add_argument("--start", type=_date, default=defaults.start, help="first day, YYYY-MM-DD")
    make.add_argument("--end", type=_date, default=defaults.end, help="last day (inclusive), YYYY-MM-DD")
    make.add_argument("--workers", type=int, default=2, help="render processes (default: %(default)s)")
    make.set_defaults(func=_make)
    validate = sub.add_parser("validate", help="validate an archive (STAC schemas, COG layout, truth)")
    validate.add_argument("dir", type=Path, help="archive directory")
    validate.set_defaults(func=_validate)


def _make(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from eowatch.archive.make import make_archive

    config = ArchiveConfig(
        seed=args.seed, size_km=args.size_km, start=args.start, end=args.end, workers=args.workers
    )
    with tqdm(total=100, file=sys.stderr, unit="%", bar_format="{l_bar}{bar}| {elapsed}") as bar:

        def progress(message: str, fraction: float) -> None:
            bar.set_description(message)
            bar.update(round(100 * fraction) - bar.n)

        path = make_archive(args.out, config, progress)
    print(path)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from eowatch.archive.validate import validate_archive

    problems = validate_archive(args.dir)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{args.dir}: {'valid' if not problems else f'{len(problems)} problems'}")
    return 0 if not problems else 1
