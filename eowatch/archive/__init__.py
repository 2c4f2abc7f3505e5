"""Synthetic Earth Search-like archive (Sentinel-2 L2A, Sentinel-1 RTC-like GRD, 1 m VHR) with exact truth.

Public API: :class:`ArchiveConfig`, :func:`make_archive`, :func:`load_manifest`, :func:`load_collections`,
:func:`load_items`, :func:`validate_archive` and :func:`add_cli`.
"""

from eowatch.archive.cli import add_cli
from eowatch.archive.config import ArchiveConfig
from eowatch.archive.make import load_collections, load_items, load_manifest, make_archive
from eowatch.archive.validate import validate_archive

__all__ = [
    "ArchiveConfig",
    "add_cli",
    "load_collections",
    "load_items",
    "load_manifest",
    "make_archive",
    "validate_archive",
]
