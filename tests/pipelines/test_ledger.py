"""Exactly-once bookkeeping: ledger markers, atomic publish, the run lock and output checks."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from eowatch.errors import StorageError
from eowatch.pipelines.grid import ChunkKey
from eowatch.pipelines.ledger import RunLayout, check_output_location
from eowatch.pipelines.run_lock import run_lock


def test_ledger_records_chunks(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, "abc")
    ledger = layout.ledger("cube")
    assert ledger.done() == set()
    ledger.mark_done(ChunkKey(0, 1), {"seconds": 1.0})
    ledger.mark_done(ChunkKey(2, 3), {"seconds": 1.0})
    assert ledger.done() == {ChunkKey(0, 1), ChunkKey(2, 3)}
    assert ledger.is_done(ChunkKey(0, 1)) and not ledger.is_done(ChunkKey(1, 1))
    assert not list(ledger.root.glob("*.tmp*"))


def test_publish_is_atomic_rename(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, "abc")
    staging = layout.staging("change")
    staging.mkdir(parents=True)
    (staging / "zarr.json").write_text("{}")
    assert not layout.change.exists()
    layout.publish("change")
    assert (layout.change / "zarr.json").exists() and not staging.exists()


def _try_lock(path: str, q: mp.Queue) -> None:  # runs in a child process
    try:
        with run_lock(Path(path)):
            q.put("locked")
    except StorageError as exc:
        q.put(str(exc))


def test_second_run_on_same_output_is_refused(tmp_path: Path) -> None:
    q: mp.Queue = mp.get_context("spawn").Queue()
    with run_lock(tmp_path):
        p = mp.get_context("spawn").Process(target=_try_lock, args=(str(tmp_path), q))
        p.start()
        p.join(30)
        assert "another eowatch run is writing" in q.get(timeout=5)
    with run_lock(tmp_path):  # released on exit
        pass


@pytest.mark.parametrize("url", ["ftp://host/out", "s3x://bucket/out"])
def test_unsupported_output_url(url: str) -> None:
    with pytest.raises(StorageError, match="not supported"):
        check_output_location(url)


def test_output_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StorageError, match="not a folder"):
        check_output_location(str(f))
    assert check_output_location(f"file://{tmp_path}/new") == (tmp_path / "new").resolve()


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    from eowatch.pipelines.ledger import write_atomic

    target = tmp_path / "deep" / "summary.json"
    write_atomic(target, '{"a": 1}')
    write_atomic(target, b'{"a": 2}')
    assert target.read_text() == '{"a": 2}'
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]  # no temporary file left


def test_local_layout_stages_in_the_work_folder(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, "abc")
    assert not layout.in_place
    assert layout.staging("cube") == tmp_path / ".eowatch" / "abc" / "cube.zarr"
    assert layout.catalog == tmp_path / "stac" / "catalog.json"
    layout.ledger("change").mark_done(ChunkKey(0, 0), {})
    layout.clean_work()
    assert not layout.work.exists()


def test_ledger_and_chunk_writer_take_string_paths(tmp_path: Path) -> None:
    """Dask tasks pass plain strings (``store_path``, ``ledger_path``); local paths keep working."""
    import numpy as np

    from eowatch.pipelines.grid import GridSpec
    from eowatch.pipelines.ledger import write_chunks
    from eowatch.pipelines.zarr_store import create_template, open_group

    grid = GridSpec("EPSG:32631", 10.0, (600000.0, 5700000.0, 600640.0, 5700320.0), chunk=32)
    times = np.array(["2026-04-01", "2026-05-01"], dtype="datetime64[ns]")
    store = tmp_path / "c.zarr"
    create_template(store, grid, times, {"v": (np.dtype("float32"), np.nan, {})}, {})
    calls: list[ChunkKey] = []

    def compute(key: ChunkKey) -> dict[str, np.ndarray]:
        calls.append(key)
        return {"v": np.full((2, 32, 32), key.row * 10 + key.col, np.float32)}

    keys = [(k.row, k.col) for k in grid.chunks()]
    ledger = str(tmp_path / "ledger" / "v")
    assert len(write_chunks(keys, grid, str(store), ledger, compute)) == len(keys)
    assert write_chunks(keys, grid, str(store), ledger, compute) == []  # all recorded: nothing recomputed
    assert len(calls) == len(keys)
    v = np.asarray(open_group(str(store))["v"][:])
    assert v[0, 0, 0] == 0 and v[1, -1, -1] == 10 * (grid.shape[0] // 32 - 1) + grid.shape[1] // 32 - 1
