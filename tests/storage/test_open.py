"""eowatch.open: a run's output, a store, or a region's windows joined in time; incomplete stores refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from eowatch.errors import InputError, StorageError
from eowatch.pipelines.grid import GridSpec

pytestmark = pytest.mark.services

GRID = GridSpec("EPSG:32631", 10.0, (600000.0, 5700000.0, 600320.0, 5700320.0), chunk=16)


def _change_store(out: Path, months: list[str], value: float, status: str = "complete") -> Path:
    from eowatch.pipelines.ledger import write_chunks
    from eowatch.pipelines.zarr_store import create_template, set_attrs

    store = out / "change.zarr"
    times = np.array([f"{m}-01" for m in months], dtype="datetime64[ns]")
    create_template(store, GRID, times, {"change_probability": (np.dtype("float32"), np.nan, {})}, {})
    keys = [(k.row, k.col) for k in GRID.chunks()]
    shape = (len(months), GRID.chunk, GRID.chunk)
    write_chunks(
        keys,
        GRID,
        str(store),
        str(out / "ledger"),
        lambda k: {"change_probability": np.full(shape, value, np.float32)},
    )
    set_attrs(store, {"eowatch_status": status})
    return store


def test_a_run_output_or_its_store_opens_with_its_crs(tmp_path: Path) -> None:
    from eowatch.open import open_change

    store = _change_store(tmp_path / "run", ["2026-05", "2026-06"], 0.25)
    for target in (tmp_path / "run", store, f"file://{tmp_path}/run"):
        ds = open_change(str(target))
        assert str(ds.rio.crs) == "EPSG:32631" and ds.sizes == {"time": 2, "y": 32, "x": 32}
        assert float(ds.change_probability.mean()) == 0.25


def test_a_region_joins_its_windows_in_time_order(tmp_path: Path) -> None:
    from eowatch.open import open_change

    _change_store(tmp_path / "demo" / "2026-05-01_2026-07-31", ["2026-06", "2026-07"], 0.5)
    _change_store(tmp_path / "demo" / "2026-03-01_2026-05-31", ["2026-04", "2026-05"], 0.1)
    _change_store(tmp_path / "demo" / "2026-07-01_2026-09-30", ["2026-08", "2026-09"], 0.9, "in-progress")
    (tmp_path / "demo" / "notes").mkdir()
    with pytest.raises(StorageError, match="not complete"):
        open_change("demo", root=tmp_path)
    ds = open_change("demo", root=tmp_path, window="2026-05-01_2026-07-31")
    assert [str(t)[:7] for t in ds.time.values] == ["2026-06", "2026-07"]
    shutil.rmtree(tmp_path / "demo" / "2026-07-01_2026-09-30")  # the unfinished window goes away
    ds = open_change("demo", root=tmp_path)
    assert [str(t)[:7] for t in ds.time.values] == ["2026-04", "2026-05", "2026-06", "2026-07"]
    assert str(ds.rio.crs) == "EPSG:32631"
    np.testing.assert_allclose(ds.change_probability.mean(("y", "x")).values, [0.1, 0.1, 0.5, 0.5], rtol=1e-6)


def test_nothing_to_open_is_one_clear_error(tmp_path: Path) -> None:
    from eowatch.open import open_change

    with pytest.raises(InputError, match="no change cube"):
        open_change(str(tmp_path / "missing" / "out"))
    with pytest.raises(InputError, match="no finished window"):
        open_change("demo", root=tmp_path)
    with pytest.raises(InputError, match="no change cube"):  # never a path outside the root
        open_change("../etc", root=tmp_path)
