"""map_batches: permanent eowatch errors fail the stage at once; other exceptions are retried by Dask."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from distributed import Client, LocalCluster

from eowatch.errors import AssetError
from eowatch.pipelines.dask_map import map_batches

CALLS: Counter[str] = Counter()
_LOCK = threading.Lock()


def _count(name: str) -> int:
    with _LOCK:
        CALLS[name] += 1
        return CALLS[name]


def ok_batch(batch: Sequence[tuple[int, int]], inputs: Any) -> list[dict[str, Any]]:
    from distributed import get_worker

    _count("ok")
    task = str(get_worker().get_current_task())
    return [{"key": key, "scale": inputs, "task": task} for key in batch]


def damaged_batch(batch: Sequence[tuple[int, int]], inputs: Any) -> list[dict[str, Any]]:
    _count("damaged")
    raise AssetError("cannot read http://assets/B04.tif: TIFFReadEncodedTile() failed")


def flaky_batch(batch: Sequence[tuple[int, int]], inputs: Any) -> list[dict[str, Any]]:
    if _count(f"flaky{batch[0]}") <= 2:
        raise OSError("connection reset by peer")
    return [{"key": key} for key in batch]


def broken_batch(batch: Sequence[tuple[int, int]], inputs: Any) -> list[dict[str, Any]]:
    _count("broken")
    raise OSError("still broken")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # Threads in this process: the call counters above are shared with the "workers".
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


def test_stats_of_every_batch_and_progress(client: Client) -> None:
    seen: list[tuple[int, int]] = []
    batches = [[(0, 0), (0, 1)], [(1, 0)], [(1, 1)]]
    stats = map_batches(client, ok_batch, batches, 3, progress=lambda d, n: seen.append((d, n)))
    assert sorted(s["key"] for s in stats) == list(itertools.chain(*batches))
    assert {s["scale"] for s in stats} == {3}
    assert all(s["task"].startswith("ok_batch-") for s in stats)  # task keys name the stage's function
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert map_batches(client, ok_batch, [], 3) == []


def test_a_permanent_error_is_raised_once_without_dask_retries(client: Client) -> None:
    with pytest.raises(AssetError, match=r"B04\.tif"):
        map_batches(client, damaged_batch, [[(0, 0)]], None, retries=2)
    assert CALLS["damaged"] == 1


def test_other_exceptions_are_retried_then_raised(client: Client) -> None:
    stats = map_batches(client, flaky_batch, [[(0, 0)], [(0, 1)]], None, retries=2)
    assert sorted(s["key"] for s in stats) == [(0, 0), (0, 1)]
    with pytest.raises(OSError, match="still broken"):
        map_batches(client, broken_batch, [[(0, 0)]], None, retries=2)
    assert CALLS["broken"] == 3
