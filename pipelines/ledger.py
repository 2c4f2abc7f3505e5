"""Exactly-once bookkeeping: the run's output layout, its chunk ledger and its lock.

Outputs go to a local folder (the default) or an object-storage prefix (``s3://bucket/prefix``).

Local folder: work for a run lives under ``<out>/.eowatch/<run-token>/`` until a stage is complete; only
then is the finished Zarr store moved into place (``os.replace``, atomic on one filesystem). So the final
paths ``<out>/cube.zarr`` and ``<out>/change.zarr`` exist only when complete, a killed run leaves only its
work folder, and a re-run with the same token resumes from the ledger: chunks recorded as written are
skipped. Two runs on one folder are kept apart by an ``flock``.

Object storage has no rename of a prefix, so a store is written in place at its final URL: its root
``zarr.json`` says ``eowatch_status: in-progress`` (and which run token owns it) from the start, and
``complete`` only after every chunk is written; that attribute, then the STAC catalog and
``summary.json``, are the last writes (each one PUT, visible whole or not at all). The ledger and the
search results stay under ``<out>/.eowatch/<run-token>/`` as on disk, and two runs are kept apart by a
lease object created with a conditional PUT (``pipelines.run_lock``). See docs/storage.md.
"""

from __future__ import annotations

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
from eowatch.infra.storage import Location, ObjectPath, location, redact_secrets
from eowatch.pipelines.grid import ChunkKey, GridSpec
from eowatch.pipelines.phases import chunk_phases, phase


@dataclass(frozen=True)
class RunLayout:
    """Where a run's outputs and work files live: ``out`` is a local folder or an object-storage prefix."""

    out: Location
    token: str

    @property
    def in_place(self) -> bool:
        """True on object storage: stores are written at their final URL (no atomic rename there)."""
        return isinstance(self.out, ObjectPath)

    @property
    def cube(self) -> Location:
        return self.out / "cube.zarr"

    @property
    def change(self) -> Location:
        return self.out / "change.zarr"

    @property
    def vhr(self) -> Location:
        return self.out / "vhr.zarr"

    @property
    def summary(self) -> Location:
        return self.out / "summary.json"

    @property
    def quicklook(self) -> Location:
        return self.out / "quicklook.png"

    @property
    def catalog(self) -> Location:
        """Root of the static STAC catalog that describes the outputs."""
        return self.out / "stac" / "catalog.json"

    @property
    def work(self) -> Location:
        return self.out / ".eowatch" / self.token

    @property
    def items(self) -> Location:
        """Search results (plain STAC item dicts), the reference stages pass to each other."""
        return self.work / "items.json"

    def staging(self, name: str) -> Location:
        """Where the store ``name`` is written while the run works on it.

        Local: ``<work>/<name>.zarr``, moved into place by :meth:`publish`. Object storage: the final
        URL itself; a store there that another run token owns is refused, so a run never writes into
        someone else's partial output.

        Raises:
            StorageError: (object storage) ``<out>/<name>.zarr`` belongs to another run.
        """
        if not self.in_place:
            return self.work / f"{name}.zarr"
        from eowatch.pipelines.zarr_store import read_attrs

        path = self.out / f"{name}.zarr"
        owner = read_attrs(path).get("eowatch_run_token")
        if owner and owner != self.token:
            raise StorageError(
                f"{path} holds the output of a different run ({owner}); choose another output location"
            )
        return path

    def ledger(self, stage: str) -> ChunkLedger:
        return ChunkLedger(self.work / "ledger" / stage)

    def publish(self, name: str) -> Location:
        """Move a finished staging store into its final place, atomically (locally).

        On object storage the store already is in place and was marked complete by its last write
        (see the module docstring); nothing moves.
        """
        dst = self.out / f"{name}.zarr"
        if self.in_place:
            return dst
        src = self.work / f"{name}.zarr"
        assert isinstance(src, Path) and isinstance(dst, Path)
        if dst.exists():
            shutil.rmtree(dst)  # only reached for a store of this same token (checked by the caller)
        os.replace(src, dst)
        return dst

    def clean_work(self) -> None:
        if isinstance(self.work, ObjectPath):
            self.work.rmtree()
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def write_atomic(path: Location, data: bytes | str) -> Location:
    """Write a small file so readers see the old content or the whole new one, never a part.

    Local: a temporary file beside it, then ``os.replace``. Object storage: one PUT.
    """
    raw = data.encode() if isinstance(data, str) else data
    if isinstance(path, ObjectPath):
        path.write_bytes(raw)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return path


class ChunkLedger:
    """One JSON marker per finished chunk, written atomically after the chunk's data is written."""

    def __init__(self, root: Location | str) -> None:
        self.root = location(root)

    def _marker(self, key: ChunkKey) -> Location:
        return self.root / f"{key}.json"

    def is_done(self, key: ChunkKey) -> bool:
        return self._marker(key).exists()

    def mark_done(self, key: ChunkKey, info: dict[str, Any]) -> None:
        write_atomic(self._marker(key), json.dumps(info, sort_keys=True))

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
    compute_phase: str = "compute",
) -> list[dict[str, Any]]:
    """Compute and write chunks exactly once: skip those in the ledger, record each after its write.

    ``store_path`` and ``ledger_path`` are local paths or ``s3://`` URLs (object storage is reached with
    the :class:`~eowatch.infra.storage.StorageConfig` of this process's environment: a Dask worker's
    own credentials, never ones shipped in the task). The ledger marker is written only after every
    variable of the chunk is in the store, so a chunk recorded as done is complete, and a chunk
    interrupted mid-write is simply computed again. Each chunk's stats carry ``phases_s``: its wall
    seconds in ``compute_phase`` (the phase name of ``compute``, e.g. ``composite``), in the phases that
    ``compute`` marks itself (``read``) and in ``write`` (:mod:`eowatch.pipelines.phases`).
    (Test hook: ``EOWATCH_TEST_CHUNK_DELAY_S`` sleeps after each recorded chunk; see below.)

    Raises:
        StorageError: a chunk or its ledger marker could not be written (after the store's own retries);
            the message names the chunk and the store, never a credential.
    """
    from eowatch.pipelines.zarr_store import write_region

    ledger = ChunkLedger(ledger_path)
    store = location(store_path)
    delay_s = _test_chunk_delay_s(ledger.root.name)
    stats = []
    done = ledger.done()  # one listing per batch instead of one request per chunk
    for r, c in keys:
        key = ChunkKey(r, c)
        if key in done:
            continue
        t0 = time.perf_counter()
        with chunk_phases() as clock:
            with phase(compute_phase):
                arrays = compute(key)
            ys, xs = grid.chunk_slices(key)
            with phase("write"), _storage_errors(f"cannot write chunk {key} to {store}"):
                write_region(store, grid, ys, xs, arrays)
        info = {"key": str(key), "seconds": round(time.perf_counter() - t0, 3), "phases_s": clock.rounded()}
        info.update(summarise(arrays) if summarise else {})
        with _storage_errors(f"cannot record chunk {key} of {store} in its ledger {ledger.root}"):
            ledger.mark_done(key, info)
        stats.append(info)
        if delay_s:
            time.sleep(delay_s)
    return stats


@contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Turn an I/O failure of the block (after the store's retries) into one StorageError line.

    I/O failures are ``OSError`` (s3fs translates S3 errors into it; timeouts are ``TimeoutError``) and
    botocore's own exceptions; anything else (a dtype mismatch, a bug) passes unchanged.
    """
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        if not _is_io_failure(exc):
            raise
        raise StorageError(f"{what}: {redact_secrets(_first_line(exc))}") from None


def _is_io_failure(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - botocore comes with s3fs
        return False
    return isinstance(exc, BotoCoreError | ClientError)


def _test_chunk_delay_s(stage_name: str) -> float:
    """Test hook: seconds to sleep after each recorded chunk, from ``EOWATCH_TEST_CHUNK_DELAY_S``.

    Only tests set it (tests/pipelines/test_kill_resume.py), to hold a run open between two ledger
    markers long enough to kill it there; ``EOWATCH_TEST_CHUNK_DELAY_STAGE`` (e.g. ``change``) limits it to
    one stage's ledger. Unset (the normal case) it is 0 and costs two lookups per batch, none per chunk.
    """
    stage = os.environ.get("EOWATCH_TEST_CHUNK_DELAY_STAGE")
    if stage and stage_name != stage:
        return 0.0
    return float(os.environ.get("EOWATCH_TEST_CHUNK_DELAY_S") or 0)


def check_output_location(out: str) -> Location:
    """Validate the output location before any work starts.

    Returns a local ``Path`` for a folder or ``file://`` URL, an ``ObjectPath`` for ``s3://bucket/prefix``.

    Raises:
        StorageError: the URL scheme is not supported, the path is a file or cannot be created, or the
            bucket does not exist, cannot be reached or written (message without credentials).
    """
    if "://" in out:
        scheme = out.split("://", 1)[0]
        if scheme == "s3":
            return _check_object_output(out)
        if scheme != "file":
            raise StorageError(
                f"output URL scheme {scheme!r} is not supported for --out; "
                "use a local folder, a file:// URL or s3://bucket/prefix"
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


def _check_object_output(out: str) -> ObjectPath:
    from eowatch.errors import InputError

    try:
        path = location(out)
    except InputError as exc:
        raise StorageError(str(exc)) from None
    assert isinstance(path, ObjectPath)
    if not path.key:
        raise StorageError(f"output {path} needs a prefix under the bucket, e.g. {path}/eowatch-output")
    client = path.config.client()
    try:
        client.head_bucket(Bucket=path.bucket)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        why = {"404": "does not exist", "NoSuchBucket": "does not exist", "403": "is not accessible"}.get(
            str(code), f"cannot be reached ({redact_secrets(_first_line(exc))})"
        )
        raise StorageError(f"output bucket s3://{path.bucket} {why}") from None
    probe = f"{path.key}/.eowatch/probe-{os.getpid()}"  # credentials may read but not write: find out now
    try:
        client.put_object(Bucket=path.bucket, Key=probe, Body=b"")
        client.delete_object(Bucket=path.bucket, Key=probe)
    except Exception as exc:
        raise StorageError(f"output {path} is not writable ({redact_secrets(_first_line(exc))})") from None
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
