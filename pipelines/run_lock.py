"""The lock that keeps two runs from writing into one output at the same time.

Local folder: an ``flock`` on ``<out>/.eowatch/lock`` (released by the kernel when the holder dies).
Object storage: :class:`ObjectLease`, an expiring lease object created with a conditional PUT, renewed
while held and taken over once expired. See docs/storage.md.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eowatch.errors import StorageError
from eowatch.infra.storage import Location, ObjectPath, redact_secrets

__all__ = ["ObjectLease", "run_lock"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextmanager
def run_lock(out: Location) -> Iterator[None]:
    """Hold an exclusive lock on an output location so two runs never interleave writes.

    Local folder: an ``flock`` on ``<out>/.eowatch/lock``; the kernel releases it when the holder dies,
    so a killed run never leaves a stale lock behind. Object storage: an :class:`ObjectLease` on
    ``<out>/.eowatch/lock`` (conditional PUT, renewed while held, taken over once expired).

    Raises:
        StorageError: another run holds the lock.
    """
    if isinstance(out, ObjectPath):
        with ObjectLease(out / ".eowatch" / "lock"):
            yield
        return
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


class ObjectLease:
    """An exclusive, expiring lease on an object-storage output, held as one small JSON object.

    Acquire: ``PUT`` with ``If-None-Match: *`` (create only if absent; S3, MinIO and moto support it).
    Hold: a daemon thread renews the lease every ``ttl_s / 3`` with ``If-Match: <ETag>`` (compare and
    swap), pushing its expiry forward. Release: ``DELETE`` with ``If-Match``. A holder that dies leaves
    the object behind; once its expiry has passed the next run takes it over, again with ``If-Match`` on
    the ETag it read, so of two runs racing for a stale lease exactly one wins. A holder that failed to
    renew (e.g. the store was unreachable for longer than the TTL) may have lost the lease: it says so
    when the block exits (raises StorageError), and its writes were in any case idempotent chunk writes
    that the new holder's ledger rewrites.
    """

    def __init__(self, path: ObjectPath, ttl_s: float = 120.0) -> None:
        import socket
        import uuid

        if ttl_s < 3:
            raise ValueError("ttl_s must be >= 3 s")
        self.path, self.ttl_s = path, ttl_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._etag: str | None = None
        self._lost = ""
        self._stop: Any = None
        self._thread: Any = None

    def _body(self) -> bytes:
        return json.dumps(
            {"owner": self.owner, "expires": time.time() + self.ttl_s, "ttl_s": self.ttl_s}
        ).encode()

    def _put(self, client: Any, **condition: str) -> str:
        r = client.put_object(Bucket=self.path.bucket, Key=self.path.key, Body=self._body(), **condition)
        return str(r["ETag"])

    def acquire(self) -> None:
        """Take the lease or raise StorageError naming the current holder and its expiry."""
        from botocore.exceptions import ClientError

        client = self.path.config.client()
        for _ in range(3):  # a lease released between our create and our read: create again
            try:
                self._etag = self._put(client, IfNoneMatch="*")
                return
            except ClientError as exc:
                if not _precondition_failed(exc):
                    raise StorageError(
                        f"cannot create the lease {self.path}: {redact_secrets(_first_line(exc))}"
                    ) from None
            try:
                current = client.get_object(Bucket=self.path.bucket, Key=self.path.key)
            except ClientError as exc:
                if _not_found(exc):
                    continue
                raise StorageError(
                    f"cannot read the lease {self.path}: {redact_secrets(_first_line(exc))}"
                ) from None
            self._take_over(client, current)
            return
        raise StorageError(f"cannot take the lease {self.path}: other runs keep creating and releasing it")

    def _take_over(self, client: Any, current: Any) -> None:
        """Hold the lease ``current`` (an S3 GetObject answer) if it is ours or expired; else raise."""
        from botocore.exceptions import ClientError

        held = json.loads(current["Body"].read() or b"{}")
        if held.get("owner") == self.owner:  # our own create, answered late and retried by botocore
            self._etag = str(current["ETag"])
            return
        if float(held.get("expires", 0)) > time.time():
            until = time.strftime("%H:%M:%S UTC", time.gmtime(float(held["expires"])))
            raise StorageError(
                f"another eowatch run ({held.get('owner', '?')}) is writing to {self.path.parent.parent} "
                f"(its lease runs until {until}); wait for it to finish or choose another output"
            )
        try:
            self._etag = self._put(client, IfMatch=str(current["ETag"]))
        except ClientError as exc:
            if not _precondition_failed(exc):
                raise
            etag = self._etag_if_ours(client)  # our takeover landed, its answer was lost and retried
            if etag is None:
                raise StorageError(
                    f"another eowatch run took over the expired lease on {self.path.parent.parent} just now"
                ) from None
            self._etag = etag

    def _renew_loop(self) -> None:
        from botocore.exceptions import ClientError

        client = self.path.config.client()
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._etag = self._put(client, IfMatch=str(self._etag))
            except ClientError as exc:
                # Our own renewal may have landed with its answer lost: botocore's retry of the same
                # conditional PUT then finds the new ETag. The lease is still ours if it names us.
                etag = self._etag_if_ours(client) if _precondition_failed(exc) else None
                if etag is not None:
                    self._etag, self._lost = etag, ""
                    continue
                if _precondition_failed(exc):
                    self._lost = "another run took the lease over"
                    return
                self._lost = f"renewal failed: {redact_secrets(_first_line(exc))}"
            except Exception as exc:  # unreachable store: try again at the next period
                self._lost = f"renewal failed: {redact_secrets(_first_line(exc))}"
            else:
                self._lost = ""

    def _etag_if_ours(self, client: Any) -> str | None:
        """The lease object's ETag if it names this holder; None if it names another or cannot be read."""
        try:
            current = client.get_object(Bucket=self.path.bucket, Key=self.path.key)
            held = json.loads(current["Body"].read() or b"{}")
        except Exception:
            return None
        return str(current["ETag"]) if held.get("owner") == self.owner else None

    def release(self) -> None:
        """Stop renewing and delete the lease object if it is still ours (a delete whose answer was lost
        and whose retry finds the object gone counts as done)."""
        from botocore.exceptions import ClientError

        if self._stop is not None:
            self._stop.set()
            self._thread.join(timeout=30)
        if self._etag is None:
            return
        try:
            self.path.config.client().delete_object(
                Bucket=self.path.bucket, Key=self.path.key, IfMatch=self._etag
            )
        except ClientError as exc:
            if not (_precondition_failed(exc) or _not_found(exc)):
                raise
        finally:
            self._etag = None

    def __enter__(self) -> ObjectLease:
        import threading

        self.acquire()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="eowatch-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        lost = self._lost
        self.release()
        if lost and exc_type is None:
            raise StorageError(f"the run may have lost its lease on {self.path.parent.parent}: {lost}")


def _not_found(exc: Any) -> bool:
    err = getattr(exc, "response", {}) or {}
    code = str(err.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404") or err.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404


def _precondition_failed(exc: Any) -> bool:
    err = getattr(exc, "response", {}) or {}
    code = str(err.get("Error", {}).get("Code", ""))
    status = err.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or status in (409, 412)
