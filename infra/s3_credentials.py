"""S3 credentials from a Prefect block, resolved by each process that makes S3 requests, once.

The block is prefect-aws's ``AwsCredentials`` (access key and secret, a session token, a profile or a
role to assume), saved on the Prefect server by the user (UI, or ``AwsCredentials(...).save(name)``).
Only its *name* is configuration (``EOWATCH_S3_CREDENTIALS_BLOCK``, the ``credentials_block`` field of
:class:`~eowatch.infra.storage.StorageConfig`): it may travel in task graphs, parameters and logs. The
secret values never do: the flow process, each Dask worker and each GDAL read ask the Prefect API for
the block themselves (``PREFECT_API_URL`` and, for Prefect Cloud, ``PREFECT_API_KEY`` of that process;
a ``LocalCluster``'s workers inherit them) and keep the resolved keys in a per-process cache, so a
process loads the block once however many filesystems, clients and reads it makes.

:class:`S3Credentials` is the resolved form: it never shows its values in ``repr``, and
:func:`cached_secret_values` lets :func:`eowatch.infra.storage.redact_secrets` remove them from any text.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

from eowatch.errors import StorageError, redact

__all__ = [
    "S3Credentials",
    "block_credentials",
    "cached_secret_values",
    "check_block_name",
    "forget_block_credentials",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
_CACHE: dict[str, S3Credentials] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True, repr=False)
class S3Credentials:
    """Resolved S3 credentials (secret: never logged, stored or put in a task graph)."""

    access_key_id: str
    """AWS access key id."""
    secret_access_key: str
    """AWS secret access key."""
    session_token: str | None = None
    """Session token of temporary credentials (an assumed role, STS); None for long-term keys."""

    def __repr__(self) -> str:
        return "S3Credentials(access_key_id='***', secret_access_key='***', session_token=...)"

    def botocore_kwargs(self) -> dict[str, str]:
        """Keyword arguments of ``botocore.session.Session.create_client``."""
        kwargs = {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}
        if self.session_token:
            kwargs["aws_session_token"] = self.session_token
        return kwargs

    def values(self) -> tuple[str, ...]:
        """The secret strings, for redaction."""
        return tuple(v for v in (self.access_key_id, self.secret_access_key, self.session_token) if v)


def check_block_name(name: str) -> str:
    """Validate a block document name (``name`` or ``aws-credentials/name``) and return it.

    Raises:
        StorageError: empty, or characters a Prefect block name cannot hold.
    """
    text = str(name).strip()
    if not _NAME.fullmatch(text) or len(text) > 200:
        raise StorageError(
            f"S3 credentials block name {redact(text)!r} is not a Prefect block name "
            "(letters, digits, '-', '_', '.'; optionally 'aws-credentials/NAME')"
        )
    return text


def block_credentials(name: str) -> S3Credentials:
    """The credentials held by the ``AwsCredentials`` block ``name``, loaded once per process.

    Resolution goes through the block's own boto3 session, so a block with keys, a session token, a
    profile or an ``assume_role_arn`` all work. Assumed-role credentials are resolved once per process:
    give the role a ``DurationSeconds`` longer than a run.

    Raises:
        StorageError: no Prefect API is configured in this process, prefect-aws is missing, the block
            does not exist or cannot be read, or it yields no credentials. Messages carry no secret.
    """
    name = check_block_name(name)
    with _LOCK:
        cached = _CACHE.get(name)
    if cached is not None:
        return cached
    credentials = _load(name)
    with _LOCK:
        _CACHE.setdefault(name, credentials)
        return _CACHE[name]


def _load(name: str) -> S3Credentials:
    from prefect.settings import get_current_settings

    what = f"S3 credentials block {name!r}"
    api = get_current_settings().api.url
    if not api:
        raise StorageError(
            f"{what} lives on a Prefect server, but PREFECT_API_URL is not set in this process; "
            "set it (workers need it too) or give credentials through AWS_* variables or a profile"
        )
    try:
        from prefect_aws import AwsCredentials
    except ImportError:
        raise StorageError(f"{what} needs prefect-aws: pip install prefect-aws") from None
    where = redact(str(api))
    try:
        block = AwsCredentials.load(name, _sync=True)
    except Exception as exc:
        if isinstance(exc, ValueError) and "unable to find" in str(exc).lower():
            raise StorageError(
                f"no AWS Credentials block named {name!r} on the Prefect server at {where}; "
                f"create it in the UI (Blocks) or with AwsCredentials(...).save({name!r})"
            ) from None
        raise StorageError(f"cannot load {what} from the Prefect server at {where}: {_why(exc)}") from None
    try:
        session_credentials = block.get_boto3_session().get_credentials()
    except Exception as exc:  # a profile the block names is missing, a role cannot be assumed...
        raise StorageError(f"{what} yields no credentials: {_why(exc)}") from None
    frozen = session_credentials.get_frozen_credentials() if session_credentials is not None else None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise StorageError(f"{what} holds no credentials: set its access key id and secret, or a profile")
    endpoint = getattr(block.aws_client_parameters, "endpoint_url", None)
    if endpoint:
        log.info(
            "%s names the endpoint %s; eowatch takes the endpoint from EOWATCH_S3_ENDPOINT, not the block",
            what,
            redact(str(endpoint)),
        )
    log.debug("%s loaded from %s", what, where)
    return S3Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def _why(exc: BaseException) -> str:
    """One line of an exception, with every credential this process holds removed."""
    from eowatch.infra.storage import redact_secrets

    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return redact_secrets(text)


def cached_secret_values() -> tuple[str, ...]:
    """Every secret string of the credentials this process has loaded from blocks."""
    with _LOCK:
        return tuple(v for creds in _CACHE.values() for v in creds.values())


def forget_block_credentials() -> None:
    """Drop the per-process cache (after a key rotation; tests). The next use loads the block again."""
    with _LOCK:
        _CACHE.clear()
