"""Exactly-once bookkeeping: ledger markers, atomic publish, the run lock and output checks."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from eowatch.errors import StorageError
from eowatch.pipelines.grid import ChunkKey
from eowatch.pipelines.ledger import RunLayout, check_output_location, run_lock


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
