"""Map a chunk-batch task over a Dask cluster with retries and progress.

Batches of chunks (not one task per chunk) keep the scheduler's task count small at country scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from distributed import Client, as_completed

ProgressFn = Callable[[int, int], None]


def map_batches(
    client: Client,
    func: Callable[..., list[dict[str, Any]]],
    batches: Sequence[Sequence[tuple[int, int]]],
    inputs: Any,
    progress: ProgressFn | None = None,
    retries: int = 2,
) -> list[dict[str, Any]]:
    """Run ``func(batch, inputs)`` for every batch; return the concatenated per-chunk stats.

    A failing batch is retried ``retries`` times by Dask (e.g. after a worker died); the first batch
    that still fails cancels the rest and re-raises its exception in the caller.
    """
    if not batches:
        return []
    futures = client.map(func, list(batches), inputs=inputs, retries=retries, pure=False)
    stats: list[dict[str, Any]] = []
    done = 0
    try:
        for fut in as_completed(futures, loop=client.loop):
            stats.extend(fut.result())
            done += 1
            if progress:
                progress(done, len(futures))
    except BaseException:
        client.cancel(futures)
        raise
    return stats
