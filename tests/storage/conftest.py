"""Fixtures of the object-storage tests: a moto S3 server, the small archive uploaded to it and served by a
real STAC API (rustac) whose items point at ``s3://`` hrefs, and one finished monitoring run whose outputs
are on the server too.

Credentials are made up (moto accepts any) and distinctive, so tests can grep every output for them.
They are put into this process's environment before any Dask cluster starts: workers inherit them from
there, never from the task graph.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eowatch.infra.cluster import ClusterConfig

ACCESS_KEY = "AKIAEOWATCHTESTKEY42"
SECRET_KEY = "eowatchTestSecret/Do+Not+Leak/7f3a9c1e5b"
ARCHIVE_URL = "s3://eowatch-archive/small"
OUT_BUCKET = "eowatch-out"
CLUSTER = ClusterConfig(n_workers=2, threads_per_worker=1, memory_limit="3GiB", dashboard=False)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """A moto S3 server on loopback, with this process's environment pointing at it (and its secrets)."""
    from eowatch.infra.s3_server import S3Server

    with S3Server() as server, pytest.MonkeyPatch.context() as mp:
        for key, value in {
            **server.environment(),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
            "EOWATCH_S3_MAX_ATTEMPTS": "12",
        }.items():
            mp.setenv(key, value)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        server.create_bucket(ARCHIVE_URL.split("/")[2])
        server.create_bucket(OUT_BUCKET)
        yield server


@pytest.fixture(scope="session")
def s3_archive(s3_server: Any, small_archive: Path) -> Iterator[Any]:
    """The small archive uploaded to the S3 server, its items (``s3://`` hrefs) behind a rustac STAC API."""
    from eowatch.demo import served_archive
    from eowatch.infra.s3_server import upload_archive

    upload_archive(small_archive, ARCHIVE_URL, parts=("assets",))
    with served_archive(small_archive, asset_url=ARCHIVE_URL) as served:
        yield served


def run_params(served: Any, archive: Path, out: str, **extra: Any) -> Any:
    """Monitoring parameters over the whole small archive, 128 px chunks (four chunks), output ``out``."""
    from eowatch.demo import archive_run_params
    from eowatch.pipelines.params import MonitorParams

    base = archive_run_params(served, Path("unused"), archive)
    return MonitorParams(**{**base.model_dump(), "out": out, "chunk": 128, **extra})


class _Records(logging.Handler):
    """Keeps every formatted record (what a log file would hold)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="session")
def s3_run(s3_archive: Any, small_archive: Path, prefect_server: Any) -> dict[str, Any]:
    """One finished monitoring run, archive and outputs on the S3 server; its log lines (INFO and up of
    eowatch, botocore, s3fs, rasterio and odc) are kept for the credential checks."""
    from flows import monitor

    out = f"s3://{OUT_BUCKET}/runs/reference"
    records = _Records()
    names = ("eowatch", "botocore", "s3fs", "rasterio", "odc", "distributed")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    logging.getLogger().addHandler(records)
    for lg in loggers:
        lg.setLevel(logging.INFO)
    try:
        summary = monitor(run_params(s3_archive, small_archive, out), CLUSTER)
    finally:
        logging.getLogger().removeHandler(records)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    return {"out": out, "summary": summary, "log": records.lines}


def object_digests(url: str) -> dict[str, str]:
    """SHA-256 of every object under ``url`` by key relative to it."""
    from eowatch.infra.storage import StorageConfig

    fs = StorageConfig.from_env().filesystem()
    base = url.removeprefix("s3://").rstrip("/")
    return {
        key[len(base) + 1 :]: hashlib.sha256(fs.cat_file(key)).hexdigest() for key in sorted(fs.find(base))
    }
