"""Fixtures for the operator tests: the shared real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository root; skips the calling test only if it is absent."""
    path = (REPO_ROOT / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (``../shared/data`` from the repository root)."""
    return shared_data_dir()
