"""Bad input gets a one-line error naming the problem, a non-zero exit, and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eowatch.cli import main
from eowatch.infra.ports import free_port


def _run_args(served: Any, out: Path, **override: str) -> list[str]:
    m = served.manifest
    args = {
        "--stac-url": served.stac_url,
        "--bbox": ",".join(str(v) for v in m["aoi_bbox_lonlat"]),
        "--start": m["start"],
        "--end": m["end"],
        "--out": str(out),
        **override,
    }
    return ["run", *[x for kv in args.items() for x in kv], "--workers", "1"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"--bbox": "4.4,50.9,4.3,51.0"}, "bbox"),
        ({"--bbox": "4.4,95,4.5,96"}, "latitude 95.0 is outside"),
        ({"--start": "2026-06-30", "--end": "2026-04-01"}, "before start"),
        ({"--s2-collection": "sentinel-2-l3z"}, "sentinel-2-l3z"),
        ({"--start": "2019-01-01", "--end": "2019-03-31"}, "no items"),
        ({"--out": "ftp://example.org/out"}, "not supported"),
        ({"--model": "no-such-model"}, "no-such-model"),
    ],
)
@pytest.mark.services
def test_bad_run_input(
    override: dict[str, str],
    message: str,
    served_small_archive: Any,
    prefect_server: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    code = main(_run_args(served_small_archive, out, **override))
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err and err[-1].startswith("error: ") and message in err[-1]
    assert not (out / "change.zarr").exists() and not (out / "cube.zarr").exists()


@pytest.mark.services
def test_unreachable_stac_api(served_small_archive: Any, prefect_server: Any, tmp_path: Path, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = main(_run_args(served_small_archive, tmp_path / "out", **{"--stac-url": url}))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and err.startswith("error: ") and "127.0.0.1" in err


def test_malformed_date_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    """Through the real entry point: argparse rejects a malformed date before anything starts."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eowatch.cli",
            "run",
            "--stac-url",
            "http://127.0.0.1:9",
            "--bbox",
            "4,50,5,51",
            "--start",
            "2026-13-01",
            "--end",
            "2026-08-31",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PREFECT_API_URL": ""},
    )
    assert proc.returncode != 0
    assert "malformed date" in proc.stderr
    assert not (tmp_path / "o").exists()
