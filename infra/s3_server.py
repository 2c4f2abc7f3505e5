"""A real S3-protocol server on loopback (moto's ``ThreadedMotoServer``), and archive upload to it.

moto answers the S3 REST API (path-style addressing, SigV4 signing, multipart uploads, conditional
``If-None-Match``/``If-Match`` PUTs) from memory in a daemon thread of this process. Its buckets live in
moto's process-wide backend, so :meth:`S3Server.restart` (stop, then serve again on the same port) models
a server restart that keeps its data: clients see refused connections in between. Any access key works
and **signatures are not checked** by default; tests use made-up keys that they then grep for in every
output. :meth:`S3Server.verify_signatures` turns moto's SigV4 verification on (against the IAM users
that :meth:`S3Server.iam_credentials` creates), e.g. to show that a proxy keeps signed requests intact.

Needs ``moto[server]`` (the ``dev`` extra).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from eowatch.errors import ServiceError
from eowatch.infra._proc import ManagedService
from eowatch.infra.ports import DEFAULT_HOST, free_port, port_is_open
from eowatch.infra.storage import ObjectPath, StorageConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3ServerConfig:
    """How to run the local S3 server."""

    host: str = DEFAULT_HOST
    """Loopback interface to bind."""
    port: int | None = None
    """TCP port; None picks a free one."""
    region: str = "us-east-1"
    """Region clients should name (moto accepts any)."""
    startup_timeout_s: float = 10.0
    """Seconds to wait for the server to answer."""

    def __post_init__(self) -> None:
        if self.startup_timeout_s <= 0:
            raise ValueError("startup_timeout_s must be > 0")


class S3Server(ManagedService):
    """Context manager serving an S3 API at ``.url`` from a daemon thread.

    Example:
        >>> with S3Server() as s3:  # doctest: +SKIP
        ...     s3.create_bucket("eowatch")
        ...     cfg = s3.storage_config()  # endpoint and region; credentials from the environment
    """

    def __init__(self, config: S3ServerConfig | None = None) -> None:
        """Prepare the server; nothing starts until ``__enter__`` (or :meth:`start`)."""
        self.config = config or S3ServerConfig()
        self._port: int | None = None
        self._server: Any = None
        self._iam_keys: dict[str, tuple[str, str]] = {}
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        """Endpoint URL, e.g. ``http://127.0.0.1:54321``."""
        if self._port is None:
            raise ServiceError("S3Server is not running; use it as a context manager")
        return f"http://{self.config.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def storage_config(self, **overrides: Any) -> StorageConfig:
        """A :class:`StorageConfig` pointing at this server (``overrides`` replace its fields)."""
        return StorageConfig(**{"endpoint_url": self.url, "region": self.config.region, **overrides})

    def environment(self) -> dict[str, str]:
        """Non-secret environment variables that point eowatch (and its Dask workers) at this server."""
        return {"EOWATCH_S3_ENDPOINT": self.url, "AWS_REGION": self.config.region}

    def start(self) -> None:
        """Serve on the configured (or a free) port; returns once the server answers HTTP."""
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise ServiceError(f"moto is not installed ({exc}); pip install 'moto[server]'") from None
        port = self._port or self.config.port or free_port(self.config.host)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        t0 = time.monotonic()
        server = ThreadedMotoServer(ip_address=self.config.host, port=port, verbose=False)
        try:
            server.start()
        except OSError as exc:
            raise ServiceError(f"S3 server could not bind {self.config.host}:{port}: {exc}") from None
        self._server, self._port = server, port
        self._wait_ready(t0)
        self.startup_s = time.monotonic() - t0
        log.info("S3 server (moto) at %s, ready in %.2f s", self.url, self.startup_s)

    def _wait_ready(self, t0: float) -> None:
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.url}/moto-api/data.json").status_code < 500:
                        return
                if time.monotonic() - t0 > self.config.startup_timeout_s:
                    self.stop()
                    raise ServiceError(f"S3 server did not answer within {self.config.startup_timeout_s} s")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop serving (the data stays in moto's backend for a later :meth:`start`); idempotent."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds (connections are refused), serve again on the same port."""
        port = self._port
        self.stop()
        time.sleep(down_s)
        deadline = time.monotonic() + 10
        while port is not None and port_is_open(self.config.host, port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start()

    def iam_credentials(self, user: str = "eowatch") -> tuple[str, str]:
        """Create IAM user ``user`` allowed ``s3:*`` on this server and an access key for it (the same key
        on later calls for the same user: IAM allows two per user).

        Returns:
            (access key id, secret access key): what a client must sign with once
            :meth:`verify_signatures` is on.
        """
        if user in self._iam_keys:
            return self._iam_keys[user]
        iam = self._client("iam")
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_user(UserName=user)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName=user, PolicyName="eowatch-s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        self._iam_keys[user] = (str(key["AccessKeyId"]), str(key["SecretAccessKey"]))
        return self._iam_keys[user]

    @contextlib.contextmanager
    def verify_signatures(self) -> Iterator[None]:
        """Within the block, the server checks every request's SigV4 signature and answers
        ``SignatureDoesNotMatch`` (403) to a request whose signed parts (``Host`` included) changed.

        Only keys from :meth:`iam_credentials` are accepted then. The setting is moto's, process-wide:
        every moto server of this process checks signatures while the block runs.
        """
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            reply = http.post(f"{self.url}/moto-api/reset-auth", content=b"0")
            reply.raise_for_status()
            previous = reply.json().get("PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT", "inf")
            try:
                yield
            finally:
                http.post(f"{self.url}/moto-api/reset-auth", content=str(previous).encode())

    def _client(self, service: str) -> Any:
        """A botocore client of ``service`` on this server, signed with a made-up key (moto accepts any
        while it does not verify signatures)."""
        import botocore.session

        return botocore.session.Session().create_client(
            service,
            endpoint_url=self.url,
            region_name=self.config.region,
            aws_access_key_id="AKIAEOWATCHADMIN0000",
            aws_secret_access_key="moto-admin",  # made up: moto accepts any key
        )

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if it exists); return ``s3://name``."""
        client = self.storage_config().client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return f"s3://{name}"


def upload_archive(
    archive_dir: Path, url: str, config: StorageConfig | None = None, parts: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Upload a synthetic archive folder to ``url`` (``s3://bucket/prefix``); return its items.

    Every file under ``parts`` (sub-folders of the archive, e.g. ``("assets",)`` for the COGs only;
    None: everything, STAC JSON, truth rasters and manifest too) is copied to the same relative key
    under ``url``. The returned items (plain dicts, see :func:`eowatch.archive.load_items`) have asset
    hrefs ``s3://bucket/prefix/assets/...``, ready to be served by a STAC API.

    Raises:
        StorageError: the bucket is missing or not writable (message redacted).
    """
    from eowatch.archive import load_items
    from eowatch.errors import StorageError
    from eowatch.infra.storage import redact_secrets

    target = ObjectPath(url, config or StorageConfig.from_env())
    root = Path(archive_dir).resolve()
    tops = [root / p for p in parts] if parts is not None else [root]
    files = sorted(f for top in tops for f in top.rglob("*") if f.is_file())
    try:
        target.fs.put(
            [str(p) for p in files],
            [f"{target.url}/{p.relative_to(root).as_posix()}" for p in files],
        )
    except Exception as exc:
        raise StorageError(f"could not upload {root} to {target}: {redact_secrets(str(exc))}") from None
    return load_items(root, target.url)
