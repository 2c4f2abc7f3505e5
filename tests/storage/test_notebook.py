"""notebooks/explore_change.ipynb runs top to bottom (nbclient) against a run written to the S3 server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.services, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_change.ipynb"


def test_notebook_runs_against_the_s3_output(s3_run: dict[str, Any], tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_before = dict(os.environ)
    os.environ["EOWATCH_CHANGE_URL"] = s3_run["out"]  # the kernel inherits the S3 endpoint and credentials
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 2  # the change maps and the pixel time series
    table = nb.cells[-1].outputs[-1]["data"]["text/plain"]
    rows = dict(line.split()[:2] for line in table.splitlines()[1:] if len(line.split()) >= 2)
    for name, km2 in s3_run["summary"]["changes_found"]["by_type_km2"].items():
        assert float(rows[name]) == pytest.approx(km2, abs=1e-4)
    assert float(rows["total"]) == pytest.approx(s3_run["summary"]["changes_found"]["changed_km2"], abs=1e-3)
