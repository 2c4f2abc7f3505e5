"""Fixtures of the reliability suite: the small archive behind fault-injecting proxies, a clean reference
run to compare faulted runs with byte for byte, and helpers to say what a run left behind.

Every run here uses ``chunk=128`` (four chunks over the 2.56 km archive), no VHR and no truth scoring,
and a thread-only Dask cluster unless a test needs worker processes: the whole folder must stay within
its CI budget on two cores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eowatch.infra.cluster import ClusterConfig
from eowatch.pipelines.params import MonitorParams
from tests.reliability.fault_proxy import FaultProxy

THREADS = ClusterConfig(
    n_workers=1, threads_per_worker=2, processes=False, memory_limit="3GiB", dashboard=False
)
"""A cluster that starts in well under a second: one in-process worker with two threads."""

CHUNK = 128
ONE_CHUNK_BOUNDS = (600000.0, 5641280.0, 601280.0, 5642560.0)
"""The top-left 128 × 128 px chunk of the small archive's grid (EPSG:32631, metres)."""


@dataclass(frozen=True)
class FaultyArchive:
    """An archive served through fault proxies: the URLs a run uses and the proxies that fault them.

    Quacks like :class:`eowatch.demo.ServedArchive` (``stac_url``, ``asset_url``, ``manifest``), so
    ``archive_run_params`` takes it.
    """

    stac_url: str
    asset_url: str
    manifest: dict[str, Any]
    stac_proxy: FaultProxy
    asset_proxy: FaultProxy


@pytest.fixture(scope="session")
def faulty_archive(small_archive: Path) -> Iterator[FaultyArchive]:
    """The small archive: assets behind one fault proxy, a real rustac STAC API behind another.

    The items' hrefs point at the asset proxy, so every COG read of a run goes through it. Both proxies
    start fault-free; a test sets its plan and restores a fault-free one when it is done.
    """
    from eowatch.archive import load_collections, load_items, load_manifest
    from eowatch.infra.services import AssetServer, StacApiServer

    with AssetServer(small_archive) as assets, FaultProxy(assets.url) as asset_proxy:
        items = load_items(small_archive, asset_proxy.url)
        with (
            StacApiServer(items, load_collections(small_archive)) as stac,
            FaultProxy(stac.url) as stac_proxy,
        ):
            yield FaultyArchive(
                stac_proxy.url, asset_proxy.url, load_manifest(small_archive), stac_proxy, asset_proxy
            )


def run_params(served: Any, out: Path, **extra: Any) -> MonitorParams:
    """Parameters of a reliability run over a served archive: 4 chunks of 128 px, no VHR, no scoring."""
    from eowatch.demo import archive_run_params

    base = archive_run_params(served, out, vhr_collection=None).model_dump()
    return MonitorParams(**{**base, "chunk": CHUNK, **extra})


@pytest.fixture(scope="session")
def clean_run(
    served_small_archive: Any, prefect_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Output folder of an uninterrupted, fault-free run: the reference every faulted run must equal."""
    from flows import monitor

    out = tmp_path_factory.mktemp("clean") / "out"
    summary = monitor(run_params(served_small_archive, out), THREADS)
    assert summary["status"] == "complete"
    return out


def store_fingerprint(store: Path) -> dict[str, Any]:
    """What must be identical between two runs of the same computation: every Zarr chunk file's bytes
    (SHA-256 by relative path) and every metadata document, with the dataset attribute ``parameters``
    left out (it records where the catalog and the assets were served from, e.g. through a proxy)."""
    out: dict[str, Any] = {}
    for path in sorted(p for p in store.rglob("*") if p.is_file()):
        rel = str(path.relative_to(store))
        if path.name == "zarr.json":
            doc = json.loads(path.read_text())
            doc.get("attributes", {}).pop("parameters", None)
            for meta in (doc.get("consolidated_metadata") or {}).get("metadata", {}).values():
                meta.get("attributes", {}).pop("parameters", None)
            out[rel] = doc
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_same_output(out: Path, reference: Path) -> None:
    """The change cube and the analysis cube under ``out`` equal the reference run's, chunk for chunk."""
    for name in ("cube.zarr", "change.zarr"):
        got, want = store_fingerprint(out / name), store_fingerprint(reference / name)
        assert sorted(got) == sorted(want), f"{name}: other files than the reference"
        differing = [k for k in want if got[k] != want[k]]
        assert not differing, (
            f"{name}: {len(differing)} files differ from the reference, e.g. {differing[:3]}"
        )


def assert_nothing_complete(out: Path) -> None:
    """A failed run left no finished output: no published store, no summary, nothing marked complete."""
    from eowatch.pipelines.zarr_store import read_attrs

    for name in ("cube.zarr", "change.zarr", "vhr.zarr", "summary.json", "quicklook.png"):
        assert not (out / name).exists(), f"{name} exists after a failed run"
    for store in out.glob(".eowatch/*/*.zarr"):
        assert read_attrs(store).get("eowatch_status") != "complete", f"{store} is marked complete"


def copy_archive(archive: Path, dest: Path) -> Path:
    """A private copy of an archive that a test may damage."""
    shutil.copytree(archive, dest)
    return dest
