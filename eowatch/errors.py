"""Errors that eowatch reports to users.

Every error a user can cause (bad input, unreachable service, unreadable asset, bad output URL) is an
``EowatchError`` subclass whose message is one line that names the problem and, where possible, how to fix
it. The CLI prints ``error: <message>`` and exits non-zero; it never prints a traceback for these.
Messages must never contain secrets (credentials, signed URLs): build them from redacted values.
"""

from __future__ import annotations


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


class StorageError(EowatchError):
    """The output location is invalid or could not be written."""

    exit_code = 5


class ServiceError(EowatchError):
    """A local service (STAC API, asset server, Prefect server) failed to start."""

    exit_code = 6


class ModelError(EowatchError):
    """A model could not be found or does not fit the cube it is given."""

    exit_code = 7
