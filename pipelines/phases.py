"""Where a chunk's time goes: wall-clock seconds per phase (read, composite, infer, write).

A chunk task opens a :func:`chunk_phases` clock; code inside it marks its phases with :func:`phase`.
Phases nest *exclusively*: time spent in an inner phase is charged to the inner phase only (the cube's
``composite`` phase encloses the asset reads, which count as ``read``), so the phases of a chunk add up
to the clock's total. Outside a clock, :func:`phase` costs one context-variable lookup and records
nothing, so operators and readers can mark phases whoever calls them.

Seconds are wall clock (``time.perf_counter``) of the thread that runs the chunk: a reader's pool of
asset reads counts once, as the time the chunk waited for it. Summed over a stage's chunks they are
worker-thread seconds (core seconds with one thread per worker).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

#: The phases eowatch marks, in pipeline order (reports list known phases in this order).
PHASES: tuple[str, ...] = ("read", "composite", "infer", "write")


class PhaseClock:
    """Exclusive wall-clock seconds per phase name (a stack: entering a phase pauses the enclosing one)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[str] = []
        self._since = time.perf_counter()

    def _charge(self, now: float) -> None:
        if self._stack:
            name = self._stack[-1]
            self.seconds[name] = self.seconds.get(name, 0.0) + (now - self._since)
        self._since = now

    def enter(self, name: str) -> None:
        self._charge(time.perf_counter())
        self._stack.append(name)

    def exit(self) -> None:
        self._charge(time.perf_counter())
        self._stack.pop()

    def rounded(self, digits: int = 3) -> dict[str, float]:
        """Seconds per phase, rounded (milliseconds by default), in :data:`PHASES` order first."""
        return {name: round(self.seconds[name], digits) for name in ordered(self.seconds)}


_CLOCK: ContextVar[PhaseClock | None] = ContextVar("eowatch_phase_clock", default=None)


@contextmanager
def chunk_phases() -> Iterator[PhaseClock]:
    """Activate a fresh clock for the work of one chunk (in this thread / context)."""
    clock = PhaseClock()
    token = _CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CLOCK.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Charge the time of the ``with`` block to phase ``name`` of the active clock (if any)."""
    clock = _CLOCK.get()
    if clock is None:
        yield
        return
    clock.enter(name)
    try:
        yield
    finally:
        clock.exit()


def ordered(names: Iterable[str]) -> list[str]:
    """Phase names in pipeline order (:data:`PHASES`), then any others alphabetically."""
    names = set(names)
    return [p for p in PHASES if p in names] + sorted(names - set(PHASES))


def add_phases(total: Mapping[str, float], more: Mapping[str, float]) -> dict[str, float]:
    """Sum of two phase → seconds mappings (rounded to milliseconds), in pipeline order."""
    keys = ordered([*total, *more])
    return {k: round(float(total.get(k, 0.0)) + float(more.get(k, 0.0)), 3) for k in keys}


def stage_phases(stats: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """Total seconds per phase over per-chunk stats that carry a ``phases_s`` mapping."""
    total: dict[str, float] = {}
    for row in stats:
        phases = row.get("phases_s")
        if isinstance(phases, Mapping):
            total = add_phases(total, phases)
    return total
