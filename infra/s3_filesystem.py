"""S3 client plumbing: s3fs with credentials from a Prefect block, and retries of HTTP 429.

:class:`BlockCredentialsS3FileSystem` is the s3fs filesystem eowatch registers for ``s3://`` (see
:func:`eowatch.infra.storage.register_fsspec_defaults`): plain s3fs, plus the ``credentials_block``
option (:mod:`eowatch.infra.s3_credentials`) and :class:`Retry429` on its client.

Why :class:`Retry429`: botocore's retry modes treat throttling by *error code* (``SlowDown``,
``Throttling``...) and 500/502/503/504 by status, but not the status 429 itself. S3-compatible stores
and gateways that throttle with 429 send no error document with a ``HEAD`` answer (it has no body), so
botocore sees the code ``"429"`` and fails the request at once: a HEAD (``exists``, ``info``, Zarr's
metadata probes) failed a whole run on the first throttled answer (found by
``tests/reliability/test_s3_faults.py``). The handler retries such answers with botocore's backoff.
"""

from __future__ import annotations

import random
from typing import Any

import s3fs
from fsspec.asyn import sync_wrapper

from eowatch.infra.s3_credentials import block_credentials

__all__ = ["MAX_BACKOFF_S", "BlockCredentialsS3FileSystem", "Retry429", "install_retry_429"]

MAX_BACKOFF_S = 20.0
"""Longest wait between two attempts (seconds), as botocore's standard and adaptive modes."""


class Retry429:
    """A botocore ``needs-retry`` handler: retry answers with HTTP status 429, whatever their error code.

    Waits ``Retry-After`` seconds when the answer says so, else botocore's exponential backoff with full
    jitter (``random() * 2 ** attempt`` seconds), at most :data:`MAX_BACKOFF_S`; gives up after
    ``max_attempts`` attempts in all. Other answers are left to botocore's own retry handler.
    """

    def __init__(self, max_attempts: int) -> None:
        """``max_attempts``: attempts per request, the first included (the client's ``max_attempts``)."""
        self.max_attempts = max_attempts

    def __call__(self, response: Any = None, attempts: int = 1, **_: Any) -> float | None:
        """Seconds to wait before the next attempt, or None: not a 429, or no attempt left."""
        if response is None or attempts >= self.max_attempts:
            return None
        http_response = response[0]
        if getattr(http_response, "status_code", None) != 429:
            return None
        retry_after = (getattr(http_response, "headers", None) or {}).get("Retry-After", "")
        if retry_after.strip().isdigit():
            return min(float(retry_after), MAX_BACKOFF_S)
        return min(random.random() * 2**attempts, MAX_BACKOFF_S)


def install_retry_429(client: Any, max_attempts: int) -> Any:
    """Register :class:`Retry429` on an S3 client (botocore or aiobotocore) once; returns the client."""
    client.meta.events.register("needs-retry.s3", Retry429(max_attempts), unique_id="eowatch-retry-429")
    return client


class BlockCredentialsS3FileSystem(s3fs.S3FileSystem):
    """s3fs's filesystem, registered for ``s3://``, that can take its credentials from a Prefect block.

    ``credentials_block`` (a storage option holding only the block's name) is resolved where the
    filesystem is created, i.e. in the process that will connect: pickled into a Dask task or a lazy
    Zarr array, an instance carries the name, and unpickling it on a worker loads the block there
    (once per process, see :mod:`eowatch.infra.s3_credentials`). Its client retries HTTP 429 answers
    (:class:`Retry429`). Without ``credentials_block`` it is plain s3fs otherwise.
    """

    def __init__(self, *args: Any, credentials_block: str | None = None, **kwargs: Any) -> None:
        """Same arguments as ``s3fs.S3FileSystem``, plus ``credentials_block`` (a block name)."""
        super().__init__(*args, **kwargs)
        self.credentials_block = credentials_block
        if credentials_block and not (self.anon or self.key or self.secret):
            credentials = block_credentials(credentials_block)
            self.key, self.secret = credentials.access_key_id, credentials.secret_access_key
            self.token = credentials.session_token

    async def set_session(self, refresh: bool = False, kwargs: dict[str, Any] | None = None) -> Any:
        """s3fs's session set-up, then :class:`Retry429` on the new client."""
        client = await super().set_session(refresh=refresh, kwargs=kwargs or {})
        attempts = int(((self.config_kwargs or {}).get("retries") or {}).get("max_attempts") or 5)
        return install_retry_429(client, attempts)

    _connect = set_session
    connect = sync_wrapper(set_session)
