"""Map a chunk-batch task over a Dask cluster with retries and progress.

Batches of chunks (not one task per chunk) keep the scheduler's task count small at country scale.

Two kinds of failure are told apart. An :class:`~eowatch.errors.EowatchError` raised by a batch (a
damaged COG, a refused asset, a store that stayed unreachable after the storage client's own retries)
is *permanent*: the component that raised it has already retried what could be retried, so running the
batch again only repeats the failure (a damaged COG was read three more times, a refused store hit three
more times). Such a batch returns the error as a value and the stage fails at once with it. Any other
exception (an unexpected ``OSError``, a library bug that depends on timing) is retried by Dask
``retries`` times; a worker that dies mid-task is handled by the scheduler (``allowed-failures``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dask.utils import funcname
from distributed import Client, as_completed

from eowatch.errors import EowatchError

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PermanentFailure:
    """What a batch returns instead of raising a permanent (``EowatchError``) failure."""

    error: EowatchError


@dataclass(frozen=True)
class _FailFast:
    """Picklable wrapper of a batch function: permanent errors come back as a value, not an exception."""

    func: Callable[..., list[dict[str, Any]]]

    def __call__(
        self, batch: Sequence[tuple[int, int]], inputs: Any
    ) -> list[dict[str, Any]] | PermanentFailure:
        try:
            return self.func(batch, inputs)
        except EowatchError as exc:
            return PermanentFailure(exc)


def map_batches(
    client: Client,
    func: Callable[..., list[dict[str, Any]]],
    batches: Sequence[Sequence[tuple[int, int]]],
    inputs: Any,
    progress: ProgressFn | None = None,
    retries: int = 2,
) -> list[dict[str, Any]]:
    """Run ``func(batch, inputs)`` for every batch; return the concatenated per-chunk stats.

    A batch that raises an ``EowatchError`` is not retried: the rest is cancelled and the error re-raised
    in the caller. Other exceptions are retried ``retries`` times by Dask; the first batch that still
    fails cancels the rest and re-raises its exception. Chunks finished before a failure stay written and
    recorded (a later run resumes from them).
    """
    if not batches:
        return []
    # Keys keep the batch function's name (``infer_batch-<uuid>``): the dashboard, the logs and tests
    # that watch a stage's tasks see which stage a task belongs to, not the wrapper.
    name = funcname(func)
    keys = [f"{name}-{uuid.uuid4().hex}" for _ in batches]
    futures = client.map(_FailFast(func), list(batches), inputs=inputs, retries=retries, key=keys)
    stats: list[dict[str, Any]] = []
    done = 0
    try:
        for fut in as_completed(futures, loop=client.loop):
            result = fut.result()
            if isinstance(result, PermanentFailure):
                raise result.error
            stats.extend(result)
            done += 1
            if progress:
                progress(done, len(futures))
    except BaseException:
        client.cancel(futures)
        raise
    return stats
