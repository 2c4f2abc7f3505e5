"""The `archive make|validate` sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from eowatch.archive import add_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eowatch")
    add_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def test_parse_make() -> None:
    args = _parser().parse_args(
        [
            "archive",
            "make",
            "--out",
            "x",
            "--seed",
            "4",
            "--size-km",
            "3",
            "--start",
            "2026-04-01",
            "--end",
            "2026-05-01",
        ]
    )
    assert args.seed == 4 and args.size_km == 3.0 and args.out == Path("x") and callable(args.func)
    with pytest.raises(SystemExit):
        _parser().parse_args(["archive", "make", "--out", "x", "--start", "April"])


def test_validate_and_noop_make(small_archive: Path, small_config, capsys) -> None:
    args = _parser().parse_args(["archive", "validate", str(small_archive)])
    assert args.func(args) == 0
    c = small_config
    args = _parser().parse_args(
        [
            "archive",
            "make",
            "--out",
            str(small_archive),
            "--seed",
            str(c.seed),
            "--size-km",
            str(c.size_km),
            "--start",
            str(c.start),
            "--end",
            str(c.end),
        ]
    )
    assert args.func(args) == 0
    assert "archive.json" in capsys.readouterr().out


def test_validate_fails_on_empty(tmp_path: Path) -> None:
    args = _parser().parse_args(["archive", "validate", str(tmp_path)])
    assert args.func(args) == 1
