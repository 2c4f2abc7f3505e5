"""Object storage configuration: where S3 is, how to reach it, and how to keep its secrets out of output.

:class:`StorageConfig` holds the *non-secret* settings of an S3-compatible store (endpoint, region,
anonymous access, AWS profile name, the name of a Prefect credentials block, retry and timeout policy).
Credentials are never part of it: botocore (for fsspec/s3fs and Zarr) and GDAL (for ``/vsis3/`` reads)
find them themselves in the process environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``) or the AWS profile, or each process loads them from the named Prefect block
(:mod:`eowatch.infra.s3_credentials`), so a config can travel in a Dask task graph, a Prefect parameter
or a log line without leaking anything.

From the config come (a) an fsspec filesystem (s3fs; botocore retries, ``adaptive`` mode by default, with
exponential backoff on throttling, 5xx, timeouts and dropped connections, plus HTTP 429 whatever its
error code: :mod:`eowatch.infra.s3_filesystem`), (b) the GDAL options of
``/vsis3/`` reads against a custom endpoint, (c) :func:`redact_secrets` (from
:mod:`eowatch.infra.redaction`), which removes the credential values this process holds from any
text. :class:`ObjectPath` is the small ``pathlib``-like handle the pipelines use for an ``s3://``
location (``/``, ``exists``, ``read_text``, ``write_bytes``...); each of its writes is a single PUT,
which object stores make visible all at once or not at all.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from eowatch.errors import InputError, StorageError, redact
from eowatch.infra.redaction import install_log_redaction, redact_secrets
from eowatch.infra.s3_credentials import S3Credentials, block_credentials, check_block_name

__all__ = [
    "OBJECT_SCHEMES",
    "Location",
    "ObjectPath",
    "StorageConfig",
    "install_log_redaction",
    "is_object_url",
    "location",
    "redact_secrets",
    "register_fsspec_defaults",
]

log = logging.getLogger(__name__)

#: URL schemes served by :class:`ObjectPath` (S3 and S3-compatible stores).
OBJECT_SCHEMES: tuple[str, ...] = ("s3",)
#: Endpoint variables, first match wins (the eowatch one, then the AWS SDKs' standard ones).
ENDPOINT_ENV: tuple[str, ...] = ("EOWATCH_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_TRUE = frozenset({"1", "true", "yes", "on"})
RetryMode = Literal["standard", "adaptive"]
"""botocore retry modes eowatch accepts (``legacy`` does not retry throttling by error code)."""


@dataclass(frozen=True)
class StorageConfig:
    """How to reach S3-compatible object storage. Holds no credentials (see the module docstring)."""

    endpoint_url: str | None = None
    """Endpoint of an S3-compatible server, e.g. ``http://127.0.0.1:9000``; None: AWS S3 itself."""
    region: str | None = None
    """Region name (``us-east-1`` when None and a custom endpoint is set: most servers accept any)."""
    anonymous: bool = False
    """Unsigned requests (public buckets); no credentials are looked up then."""
    profile: str | None = None
    """AWS profile (``~/.aws/credentials``) to take credentials from; None: the environment."""
    credentials_block: str | None = None
    """Name of a Prefect ``AwsCredentials`` block to take credentials from (each process that makes S3
    requests loads it from its Prefect API, once); None: the environment or ``profile``. Only the name
    is held here, never the secret."""
    max_attempts: int = 10
    """Attempts per request, the first included, of botocore's retry mode (throttling, 5xx, timeouts,
    connection errors), with exponential backoff and jitter up to 20 s between them."""
    retry_mode: RetryMode = "adaptive"
    """botocore's retry mode: ``adaptive`` (``standard`` plus client-side rate limiting once the store
    throttles: fewer requests wasted on a store that says SlowDown, at the cost of slowing that client
    for a while) or ``standard``."""
    connect_timeout_s: float = 5.0
    """Seconds to establish a connection before the attempt counts as failed."""
    read_timeout_s: float = 30.0
    """Seconds without response data before the attempt counts as failed."""

    def __post_init__(self) -> None:
        if self.credentials_block is not None:
            try:
                object.__setattr__(self, "credentials_block", check_block_name(self.credentials_block))
            except StorageError as exc:
                raise InputError(str(exc)) from None
            if self.anonymous or self.profile:
                raise InputError(
                    "choose one source of S3 credentials: a credentials block "
                    f"({self.credentials_block!r}) cannot be combined with "
                    f"{'anonymous access' if self.anonymous else 'an AWS profile'}"
                )
        if self.endpoint_url is not None:
            parts = urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                shown = redact_secrets(redact(self.endpoint_url))
                raise InputError(f"S3 endpoint {shown!r} must be an http(s):// URL with a host")
            if "@" in self.endpoint_url or parts.query:  # userinfo (a secret may contain "/")
                raise InputError(
                    "the S3 endpoint URL must not carry credentials or a query string; "
                    "give credentials through AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile"
                )
            object.__setattr__(self, "endpoint_url", self.endpoint_url.rstrip("/"))
        if self.retry_mode not in get_args(RetryMode):
            raise InputError(
                f"S3 retry mode must be one of {', '.join(get_args(RetryMode))}, got {self.retry_mode!r}"
            )
        if self.max_attempts < 1 or self.connect_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise InputError("max_attempts must be >= 1 and the timeouts > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageConfig:
        """Read the config from environment variables.

        ``EOWATCH_S3_ENDPOINT`` (else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``), ``AWS_REGION``
        (else ``AWS_DEFAULT_REGION``), ``EOWATCH_S3_ANONYMOUS`` or ``AWS_NO_SIGN_REQUEST`` (``yes``/``true``
        /``1``), ``AWS_PROFILE``, ``EOWATCH_S3_CREDENTIALS_BLOCK`` (a block name: with it, ``AWS_PROFILE``
        is ignored), ``EOWATCH_S3_MAX_ATTEMPTS``, ``EOWATCH_S3_CONNECT_TIMEOUT_S`` and
        ``EOWATCH_S3_READ_TIMEOUT_S`` (seconds), ``EOWATCH_S3_RETRY_MODE`` (``adaptive`` or
        ``standard``). Nothing is looked up over the network.

        Raises:
            InputError: a malformed endpoint, block name, attempt count or timeout.
        """
        env = os.environ if env is None else env
        endpoint = next((env[k] for k in ENDPOINT_ENV if env.get(k)), None)
        anonymous = any(
            env.get(k, "").lower() in _TRUE for k in ("EOWATCH_S3_ANONYMOUS", "AWS_NO_SIGN_REQUEST")
        )
        block = env.get("EOWATCH_S3_CREDENTIALS_BLOCK") or None
        return cls(
            endpoint_url=endpoint,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            anonymous=anonymous,
            profile=None if block else env.get("AWS_PROFILE") or None,
            credentials_block=block,
            **({"retry_mode": env["EOWATCH_S3_RETRY_MODE"]} if env.get("EOWATCH_S3_RETRY_MODE") else {}),
            **_numbers_from_env(env),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; inverse of :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StorageConfig:
        return cls(**dict(data))

    @property
    def region_name(self) -> str | None:
        return self.region or ("us-east-1" if self.endpoint_url else None)

    def botocore_config(self) -> dict[str, Any]:
        """Keyword arguments of ``botocore.config.Config``: retries (:attr:`retry_mode`) and timeouts."""
        return {
            "retries": {"mode": self.retry_mode, "max_attempts": self.max_attempts},
            "connect_timeout": self.connect_timeout_s,
            "read_timeout": self.read_timeout_s,
        }

    def credentials(self) -> S3Credentials | None:
        """The credentials of :attr:`credentials_block`, loaded in this process (cached); None without a
        block (botocore and GDAL then find credentials themselves).

        Raises:
            StorageError: the block cannot be loaded (see
                :func:`~eowatch.infra.s3_credentials.block_credentials`).
        """
        return block_credentials(self.credentials_block) if self.credentials_block else None

    def storage_options(self) -> dict[str, Any]:
        """Options of the s3fs filesystem (and of Zarr's ``FsspecStore.from_url``). No credentials: a
        block is only named (``credentials_block``); the filesystem registered for ``s3://``
        (:class:`~eowatch.infra.s3_filesystem.BlockCredentialsS3FileSystem`) resolves it in the process
        that connects."""
        opts: dict[str, Any] = {
            "anon": self.anonymous,
            "config_kwargs": self.botocore_config(),
            "use_listings_cache": False,  # several processes write the same prefixes: never trust a listing
        }
        client: dict[str, Any] = {}
        if self.endpoint_url:
            opts["endpoint_url"] = self.endpoint_url
        if self.region_name:
            client["region_name"] = self.region_name
        if client:
            opts["client_kwargs"] = client
        if self.profile:
            opts["profile"] = self.profile
        if self.credentials_block:
            opts["credentials_block"] = self.credentials_block
        return opts

    def filesystem(self) -> Any:
        """The (cached) s3fs filesystem of this config, for synchronous use."""
        import fsspec

        install_log_redaction()
        _register_filesystem()
        return fsspec.filesystem("s3", **self.storage_options())

    def client(self) -> Any:
        """A synchronous botocore S3 client (for conditional requests that s3fs does not expose), with the
        retry policy of :meth:`botocore_config` plus retries of HTTP 429
        (:class:`~eowatch.infra.s3_filesystem.Retry429`) and the credentials of the block, if any."""
        import botocore.config
        import botocore.session

        install_log_redaction()
        session = botocore.session.Session(profile=self.profile)
        kwargs: dict[str, Any] = {"config": botocore.config.Config(**self.botocore_config())}
        if self.anonymous:
            kwargs["config"] = kwargs["config"].merge(botocore.config.Config(signature_version=_unsigned()))
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        credentials = self.credentials()
        if credentials is not None:
            kwargs.update(credentials.botocore_kwargs())
        from eowatch.infra.s3_filesystem import install_retry_429

        client = session.create_client("s3", region_name=self.region_name, **kwargs)
        return install_retry_429(client, self.max_attempts)

    def gdal_env(self) -> dict[str, str]:
        """GDAL configuration options of ``/vsis3/`` reads for this config.

        With a custom endpoint: ``AWS_S3_ENDPOINT`` (host:port), ``AWS_HTTPS`` from its scheme and
        path-style addressing (``AWS_VIRTUAL_HOSTING=FALSE``). Credentials are not included: GDAL reads
        them from the environment or the profile (``AWS_PROFILE``) of the process doing the read, and
        those of a :attr:`credentials_block` go through :meth:`aws_session_options` (rasterio refuses
        them as options).
        """
        env: dict[str, str] = {}
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            env["AWS_S3_ENDPOINT"] = parts.netloc + parts.path
            env["AWS_HTTPS"] = "YES" if parts.scheme == "https" else "NO"
            env["AWS_VIRTUAL_HOSTING"] = "FALSE"
        if self.region_name:
            env["AWS_REGION"] = self.region_name
        if self.anonymous:
            env["AWS_NO_SIGN_REQUEST"] = "YES"
        if self.profile:
            env["AWS_PROFILE"] = self.profile
        return env

    def aws_session_options(self) -> dict[str, str] | None:
        """The credentials of :attr:`credentials_block` for GDAL ``/vsis3/`` reads, loaded in this process:
        keyword arguments of ``rasterio.session.AWSSession`` (odc-stac: ``configure_rio(aws=...)``;
        rasterio: ``rasterio.Env(session=AWSSession(**options), **gdal_env())``). rasterio refuses
        ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` as plain GDAL options, hence a session.

        None without a block: GDAL then finds credentials in the environment or the profile. Call it
        where the read runs (a Dask worker) and never ship or log the result.

        Raises:
            StorageError: the credentials block cannot be loaded.
        """
        credentials = self.credentials()
        if credentials is None:
            return None
        options = credentials.botocore_kwargs()
        if self.region_name:
            options["region_name"] = self.region_name
        return options


def _numbers_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``max_attempts`` and the timeouts from their ``EOWATCH_S3_*`` variables (only those set)."""
    out: dict[str, Any] = {}
    for var, name, kind in (
        ("EOWATCH_S3_MAX_ATTEMPTS", "max_attempts", int),
        ("EOWATCH_S3_CONNECT_TIMEOUT_S", "connect_timeout_s", float),
        ("EOWATCH_S3_READ_TIMEOUT_S", "read_timeout_s", float),
    ):
        raw = env.get(var)
        if not raw:
            continue
        try:
            out[name] = kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number of seconds"
            raise InputError(f"{var} must be {what}, got {raw!r}") from None
    return out


def _register_filesystem() -> None:
    """Make :class:`~eowatch.infra.s3_filesystem.BlockCredentialsS3FileSystem` (s3fs that can resolve
    a credentials block) fsspec's implementation of ``s3://`` in this process. Imported here, not at
    module level: s3fs takes half a second to import and only S3 work needs it."""
    import fsspec

    from eowatch.infra.s3_filesystem import BlockCredentialsS3FileSystem

    if fsspec.registry.get("s3") is not BlockCredentialsS3FileSystem:
        fsspec.register_implementation("s3", BlockCredentialsS3FileSystem, clobber=True)


def _unsigned() -> Any:
    from botocore import UNSIGNED

    return UNSIGNED


def register_fsspec_defaults(config: StorageConfig | None = None) -> StorageConfig:
    """Make ``config`` (default: :meth:`StorageConfig.from_env`) fsspec's default for ``s3://`` here.

    Code that opens an ``s3://`` URL without storage options (``zarr.open_group(url)``,
    ``xr.open_zarr(url)``) then reaches the configured endpoint with the retry policy; explicit options
    still win. The defaults hold no credentials. Returns the config registered.
    """
    import fsspec.config

    config = config or StorageConfig.from_env()
    opts = config.storage_options()
    _register_filesystem()  # before the defaults: they may name a credentials block
    current = fsspec.config.conf.get("s3")
    if current != opts:
        fsspec.config.conf["s3"] = opts
    install_log_redaction()
    return config


def is_object_url(text: str | os.PathLike[str]) -> bool:
    """True for an ``s3://`` URL (an object-storage location), False for local paths and ``file://``."""
    return isinstance(text, str) and urlsplit(text).scheme.lower() in OBJECT_SCHEMES


@dataclass(frozen=True)
class ObjectPath:
    """A ``pathlib``-like handle on an object-storage URL (``s3://bucket/prefix``).

    Object stores have no folders and no rename: :meth:`mkdir` does nothing, a "directory" exists when
    an object lies under its prefix, and every write is one PUT (whole object visible, or none).
    """

    url: str
    """``s3://bucket/key`` without a trailing slash."""
    config: StorageConfig = field(default_factory=StorageConfig.from_env)
    """How to reach the store (no credentials)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme.lower() not in OBJECT_SCHEMES or not parts.netloc:
            raise InputError(f"{redact(self.url)!r} is not an s3://bucket/prefix URL")
        if parts.query or parts.fragment or "@" in parts.netloc:
            raise InputError(f"{redact(self.url)!r} must not carry credentials, a query or a fragment")
        if ".." in parts.path.split("/"):
            raise InputError(f"{redact(self.url)!r} must not contain '..' segments")
        object.__setattr__(self, "url", f"s3://{parts.netloc}{parts.path.rstrip('/')}")

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(f"{self.url}/{str(name).strip('/')}", self.config)

    @property
    def bucket(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def key(self) -> str:
        """Object key (no leading slash); "" for the bucket itself."""
        return urlsplit(self.url).path.lstrip("/")

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0] if "." in self.name[1:] else self.name

    @property
    def parent(self) -> ObjectPath:
        head = self.url.rsplit("/", 1)[0]
        return ObjectPath(head, self.config) if self.key else self

    def with_suffix(self, suffix: str) -> ObjectPath:
        return ObjectPath(f"{self.parent.url}/{self.stem}{suffix}", self.config)

    def as_uri(self) -> str:
        return self.url

    @property
    def fs(self) -> Any:
        return self.config.filesystem()

    def exists(self) -> bool:
        """True if an object has this key or lies under ``<key>/``."""
        return bool(self.fs.exists(self.url))

    def is_dir(self) -> bool:
        return bool(self.fs.isdir(self.url))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: prefixes exist as soon as an object is written under them."""

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.url))

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """Write the object in one PUT (atomic: readers see the old object or the whole new one)."""
        self.fs.pipe_file(self.url, data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.url)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Delete every object under ``<key>/`` (batched deletes); nothing if there is none."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.url, recursive=True)

    def glob(self, pattern: str) -> list[ObjectPath]:
        """Objects directly under ``<key>/`` whose name matches ``pattern`` (no recursion)."""
        try:
            names = self.fs.ls(self.url, detail=False)
        except FileNotFoundError:
            return []
        found = [n.rsplit("/", 1)[-1] for n in names]
        return [self / n for n in sorted(found) if fnmatch.fnmatch(n, pattern)]


Location = Path | ObjectPath
"""Where outputs live: a local folder (``Path``) or an object-storage prefix (:class:`ObjectPath`)."""


def location(text: str | os.PathLike[str] | Location, config: StorageConfig | None = None) -> Location:
    """A ``Path`` for a local path or ``file://`` URL, an :class:`ObjectPath` for an ``s3://`` URL.

    Object URLs get ``config`` (default: from this process's environment), which is also registered as
    fsspec's ``s3`` default (see :func:`register_fsspec_defaults`).
    """
    if isinstance(text, Path | ObjectPath):
        return text
    text = os.fspath(text)
    if is_object_url(text):
        return ObjectPath(text, register_fsspec_defaults(config))
    if text.startswith("file://"):
        text = text[len("file://") :]
    return Path(text)
