"""Exactly-once bookkeeping: the run's output layout, its chunk ledger and its lock.

Work for a run lives under ``<out>/.eowatch/<run-token>/`` until a stage is complete; only then is the
finished Zarr store moved into place (``os.replace``, atomic on one filesystem). So the final paths
``<out>/cube.zarr`` and ``<out>/change.zarr`` exist only when complete, a killed run leaves only its work
folder, and a re-run with the same token resumes from the ledger: chunks recorded as written are skipped.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eowatch.errors import StorageError
from eowatch.pipelines.grid import ChunkKey, GridSpec


@dataclass(frozen=True)
class RunLayout:
    """Where a run's outputs and work files live. ``out`` is a local folder."""

    out: Path
    token: str

    @property
    def cube(self) -> Path:
        return self.out / "cube.zarr"

    @property
    def change(self) -> Path:
        return self.out / "change.zarr"

    @property
    def summary(self) -> Path:
        return self.out / "summary.json"

    @property
    def quicklook(self) -> Path:
        return self.out / "quicklook.png"

    @property
    def work(self) -> Path:
        return self.out / ".eowatch" / self.token

    @property
    def items(self) -> Path:
        """Search results (plain STAC item dicts), the reference stages pass to each other."""
        return self.work / "items.json"

    def staging(self, name: str) -> Path:
        return self.work / f"{name}.zarr"

    def ledger(self, stage: str) -> ChunkLedger:
        return ChunkLedger(self.work / "ledger" / stage)

    def publish(self, name: str) -> Path:
        """Move a finished staging store into its final place, atomically."""
        src, dst = self.staging(name), self.out / f"{name}.zarr"
        if dst.exists():
            shutil.rmtree(dst)  # only reached for a store of this same token (checked by the caller)
        os.replace(src, dst)
        return dst

    def clean_work(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


class ChunkLedger:
    """One JSON marker per finished chunk, written atomically after the chunk's data is written."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _marker(self, key: ChunkKey) -> Path:
        return self.root / f"{key}.json"

    def is_done(self, key: ChunkKey) -> bool:
        return self._marker(key).exists()

    def mark_done(self, key: ChunkKey, info: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._marker(key).with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(info, sort_keys=True))
        os.replace(tmp, self._marker(key))

    def done(self) -> set[ChunkKey]:
        if not self.root.exists():
            return set()
        keys = set()
        for p in self.root.glob("*.json"):
            r, c = p.stem.split("_")
            keys.add(ChunkKey(int(r), int(c)))
        return keys


def write_chunks(
    keys: Sequence[tuple[int, int]],
    grid: GridSpec,
    store_path: str,
    ledger_path: str,
    compute: Callable[[ChunkKey], dict[str, np.ndarray]],
    summarise: Callable[[dict[str, np.ndarray]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Compute and write chunks exactly once: skip those in the ledger, record each after its write.

    The ledger marker is written only after every variable of the chunk is in the store, so a chunk
    recorded as done is complete, and a chunk interrupted mid-write is simply computed again.
    (Test hook: ``EOWATCH_TEST_CHUNK_DELAY_S`` sleeps after each recorded chunk; see below.)
    """
    from eowatch.pipelines.zarr_store import write_region

    ledger = ChunkLedger(Path(ledger_path))
    delay_s = _test_chunk_delay_s(ledger_path)
    stats = []
    for r, c in keys:
        key = ChunkKey(r, c)
        if ledger.is_done(key):
            continue
        t0 = time.perf_counter()
        arrays = compute(key)
        ys, xs = grid.chunk_slices(key)
        write_region(Path(store_path), grid, ys, xs, arrays)
        info = {"key": str(key), "seconds": round(time.perf_counter() - t0, 3)}
        info.update(summarise(arrays) if summarise else {})
        ledger.mark_done(key, info)
        stats.append(info)
        if delay_s:
            time.sleep(delay_s)
    return stats


def _test_chunk_delay_s(ledger_path: str) -> float:
    """Test hook: seconds to sleep after each recorded chunk, from ``EOWATCH_TEST_CHUNK_DELAY_S``.

    Only tests set it (tests/pipelines/test_kill_resume.py), to hold a run open between two ledger
    markers long enough to kill it there; ``EOWATCH_TEST_CHUNK_DELAY_STAGE`` (e.g. ``change``) limits it to
    one stage's ledger. Unset (the normal case) it is 0 and costs two lookups per batch, none per chunk.
    """
    stage = os.environ.get("EOWATCH_TEST_CHUNK_DELAY_STAGE")
    if stage and Path(ledger_path).name != stage:
        return 0.0
    return float(os.environ.get("EOWATCH_TEST_CHUNK_DELAY_S") or 0)


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on an output folder so two runs never interleave writes.

    The lock is an ``flock`` on ``<out>/.eowatch/lock``: the kernel releases it when the holder dies, so a
    killed run never leaves a stale lock behind.
    """
    lock_dir = out / ".eowatch"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"another eowatch run is writing to {out}; wait for it to finish or choose another output"
            ) from None
        yield
    finally:
        os.close(fd)


def check_output_location(out: str) -> Path:
    """Validate the output location before any work starts; return it as a local path.

    Raises:
        StorageError: the URL scheme is not supported, the path is a file, or it cannot be created.
    """
    if "://" in out:
        scheme = out.split("://", 1)[0]
        if scheme != "file":
            raise StorageError(
                f"output URL scheme {scheme!r} is not supported for --out; use a local folder or file:// URL"
            )
        out = out.split("://", 1)[1]
    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise StorageError(f"output location {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create output folder {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise StorageError(f"output folder {path} is not writable")
    return path
