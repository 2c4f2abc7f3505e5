"""Session fixtures: one small archive (2.56 km, March 2026) generated once and shared read-only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from eowatch.archive import ArchiveConfig, make_archive

SMALL = ArchiveConfig(seed=7, size_km=2.56, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31), workers=1)


@pytest.fixture(scope="session")
def small_config() -> ArchiveConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the small archive (do not modify it in tests)."""
    out = tmp_path_factory.mktemp("archive") / "small"
    make_archive(out, SMALL)
    return out
