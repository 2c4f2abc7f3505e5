"""Errors that eowatch reports to users.

Every error a user can cause (bad input, unreachable service, unreadable asset, bad output URL) is an
``EowatchError`` subclass whose message is one line that names the problem and, where possible, how to fix
it. The CLI prints ``error: <message>`` and exits non-zero; it never prints a traceback for these.
Messages must never contain secrets (credentials, signed URLs): build them from redacted values
(:func:`redact`), and :func:`redact_logs` keeps third-party loggers that print URLs from leaking them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# userinfo of any URL: scheme://user:password@host
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s'\"]+@")
# the value of every query parameter (signed URLs spread their secret over several: sig, se, X-Amz-*)
_QUERY_VALUE = re.compile(r"([?&;][^=&;#?\s'\"]+)=[^&;#\s'\"]*")
# HTTP credentials as requests/urllib3 print them in debug logs
_AUTH_HEADER = re.compile(r"(?i)((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\n]+")

REDACTED = "***"
"""What replaces a secret in redacted text."""


def redact(text: str) -> str:
    """``text`` with the secrets of every URL in it replaced by ``***``.

    Removes the userinfo of URLs (``https://user:pw@host`` → ``https://***@host``), the value of every query
    parameter (``?token=abc&limit=5`` → ``?token=***&limit=***``: signed URLs carry their secret in several
    parameters whose names vary between clouds) and ``Authorization`` header values. Paths and hosts stay,
    so the message still names the resource. Idempotent.
    """
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _QUERY_VALUE.sub(rf"\1={REDACTED}", text)
    return _AUTH_HEADER.sub(rf"\1{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets (see :func:`redact`) from a record's formatted message;
    subclasses change what is removed by overriding :meth:`redact`."""

    def redact(self, message: str) -> str:
        """``message`` without its secrets."""
        return redact(message)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as it would have
            return True
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


#: Loggers of libraries eowatch uses that write request URLs (and, at DEBUG, request headers).
URL_LOGGERS: tuple[str, ...] = (
    "urllib3.connectionpool",
    "pystac_client.stac_api_io",
    "pystac_client",
    "odc.loader._rio",
    "rasterio._env",
    "rasterio._err",
    "rasterio._base",
    "rasterio._filepath",
    "httpx",
    "httpcore",
)

_FILTER = RedactingFilter()


def redact_logs(names: Iterable[str] = URL_LOGGERS) -> None:
    """Attach the redacting filter to the loggers ``names`` (idempotent).

    A logger's filters see only the records logged through that very logger, so each logger that writes
    URLs is listed, not a parent.
    """
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


class EowatchError(Exception):
    """Base class for errors reported to the user as a single line."""

    exit_code: int = 2

    def __str__(self) -> str:
        # Keep it to one line whatever the caller passed in.
        return " ".join(super().__str__().split())


class InputError(EowatchError, ValueError):
    """The user's input is invalid (bbox, geometry, dates, collection, parameters)."""


class CatalogError(EowatchError):
    """The STAC API could not be reached or answered with an error."""

    exit_code = 3


class EmptySearchError(CatalogError):
    """A catalog search matched no items."""


class AssetError(EowatchError):
    """An asset (COG) could not be read."""

    exit_code = 4


class RefusedAssetError(AssetError):
    """An asset href points outside the run's allowed asset stores; it is refused before any read."""


class StorageError(EowatchError):
    """The output location is invalid or could not be written."""

    exit_code = 5


class ServiceError(EowatchError):
    """A local service (STAC API, asset server, Prefect server) failed to start."""

    exit_code = 6


class ModelError(EowatchError):
    """A model could not be found or does not fit the cube it is given."""

    exit_code = 7
