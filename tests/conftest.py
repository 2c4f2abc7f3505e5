"""Shared fixtures: the real data folder, a small synthetic archive served on loopback, a Prefect server."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (present in CI); skip where it is absent."""
    path = (REPO / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent")
    return path


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic archive (2.56 km, three months), generated once per test session."""
    from eowatch.archive import ArchiveConfig, make_archive

    out = tmp_path_factory.mktemp("archive") / "archive"
    make_archive(
        out, ArchiveConfig(seed=7, size_km=2.56, start=dt.date(2026, 4, 1), end=dt.date(2026, 6, 30))
    )
    return out


@pytest.fixture(scope="session")
def served_small_archive(small_archive: Path) -> Iterator[object]:
    """The small archive behind a real STAC API (rustac) and a Range-capable asset server."""
    from eowatch.demo import served_archive

    with served_archive(small_archive) as served:
        yield served


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[object]:
    """A real temporary Prefect server; flows in this session report to it."""
    from eowatch.infra.services import PrefectServer, prefect_env

    with PrefectServer() as server, prefect_env(server.api_url):
        yield server
