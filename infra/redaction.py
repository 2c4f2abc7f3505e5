"""Keeping S3 credentials out of text: messages, exceptions and log records.

:func:`redact_secrets` removes from any text the credential values this process holds (the AWS
environment variables and the secrets loaded from Prefect credentials blocks), ``KEY=value`` spellings of
secret settings (GDAL and botocore debug output) and the user info of URLs;
:func:`install_log_redaction` attaches a filter doing that to the loggers of the storage libraries.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

from eowatch.errors import REDACTED, RedactingFilter, redact
from eowatch.infra.s3_credentials import cached_secret_values

__all__ = [
    "SECRET_ENV",
    "STORAGE_LOGGERS",
    "SecretRedactingFilter",
    "install_log_redaction",
    "redact_secrets",
]

#: Environment variables whose values are secrets: never logged, stored or shown.
SECRET_ENV: tuple[str, ...] = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
# "KEY=value" / "KEY: value" spellings of credential settings (GDAL and botocore debug output).
_SECRET_SETTING = re.compile(
    r"(?i)((?:aws_secret_access_key|aws_session_token|secret_access_key|session_token|"
    r"x-amz-security-token|signature)['\"]?\s*[:=]\s*['\"]?)[^'\",;&\s}]+"
)


def redact_secrets(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every credential this process holds replaced by ``***``.

    Removes the literal values of ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and
    ``AWS_ACCESS_KEY_ID`` found in ``env`` (default: the process environment) and of the credentials
    this process loaded from Prefect blocks, ``KEY=value`` spellings of secret settings, and everything
    :func:`eowatch.errors.redact` removes from URLs. Idempotent.
    """
    env = os.environ if env is None else env
    for value in (*(env.get(name, "") for name in SECRET_ENV), *cached_secret_values()):
        if len(value) >= 4:  # never replace trivially short strings all over a message
            text = text.replace(value, REDACTED)
    return redact(_SECRET_SETTING.sub(rf"\1{REDACTED}", text))


class SecretRedactingFilter(RedactingFilter):
    """Logging filter: :func:`redact_secrets` on a record's formatted message."""

    def redact(self, message: str) -> str:
        return redact_secrets(message)


#: Logger families that print requests, settings or credentials of S3 access at some level.
STORAGE_LOGGERS: tuple[str, ...] = (
    "botocore",
    "aiobotocore",
    "boto3",
    "s3fs",
    "fsspec",
    "rasterio",
    "odc",
    "distributed.worker",
    "eowatch",
)
_SECRET_FILTER = SecretRedactingFilter()
_SCANNED: dict[tuple[str, ...], int] = {}  # logger families → logger count when last scanned


def install_log_redaction(families: Iterable[str] = STORAGE_LOGGERS) -> None:
    """Attach :class:`SecretRedactingFilter` to the loggers ``families`` and their existing children.

    A logger's filters see only records logged through that very logger, so every child that exists now
    (libraries create theirs on import) gets the filter too. Idempotent and cheap to call again.
    """
    prefixes = tuple(families)
    known = len(logging.root.manager.loggerDict)
    if _SCANNED.get(prefixes) == known:
        return
    _SCANNED[prefixes] = known
    names = set(prefixes) | {
        n for n in list(logging.root.manager.loggerDict) if n.startswith(tuple(p + "." for p in prefixes))
    }
    for name in names:
        logger = logging.getLogger(name)
        if _SECRET_FILTER not in logger.filters:
            logger.addFilter(_SECRET_FILTER)
