"""Phase clocks: exclusive nested phases, no-op outside a clock, sums in pipeline order."""

from __future__ import annotations

import time

from eowatch.pipelines.phases import add_phases, chunk_phases, ordered, phase, stage_phases


def test_nested_phases_are_exclusive_and_add_up() -> None:
    t0 = time.perf_counter()
    with chunk_phases() as clock:
        with phase("composite"):
            time.sleep(0.02)
            with phase("read"):
                time.sleep(0.05)
            time.sleep(0.02)
        with phase("write"):
            time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    s = clock.seconds
    assert list(clock.rounded()) == ["read", "composite", "write"]
    assert s["read"] >= 0.05 and s["composite"] >= 0.04 and s["write"] >= 0.01
    assert s["composite"] < s["read"] + 0.04  # the inner read is not charged to composite as well
    assert sum(s.values()) <= elapsed


def test_phase_outside_a_clock_records_nothing() -> None:
    with phase("read"):
        pass
    with chunk_phases() as clock:
        pass
    assert clock.seconds == {}


def test_sums_keep_pipeline_order() -> None:
    stats = [
        {"key": "0_0", "phases_s": {"write": 0.5, "read": 1.0}},
        {"key": "0_1", "phases_s": {"infer": 2.0, "read": 0.25, "custom": 1.0}},
        {"key": "0_2"},  # a chunk recorded before phases existed
    ]
    assert stage_phases(stats) == {"read": 1.25, "infer": 2.0, "write": 0.5, "custom": 1.0}
    assert add_phases({"write": 1}, {"read": 2}) == {"read": 2.0, "write": 1.0}
    assert ordered(["z", "write", "read"]) == ["read", "write", "z"]
