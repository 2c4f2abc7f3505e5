"""A Dask worker SIGKILLed in the middle of the change inference: the run still completes, and its
output is byte-identical to the clean reference run.

The kill comes from inside the worker (tests/reliability/kill_worker_preload.py, loaded into every
worker process): once that worker is executing the inference batch and the change ledger holds its first
marker, it SIGKILLs itself. ``EOWATCH_TEST_CHUNK_DELAY_S`` (the hook in ``pipelines.ledger``) makes each
chunk of the change stage take a second longer, so the kill lands between two chunks of one batch. The
Nanny restarts the worker, the scheduler gives the lost batch to a live worker, and the batch skips the
chunks its ledger already records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import pytest

from eowatch.infra.cluster import ClusterConfig
from tests.reliability.conftest import assert_same_output, run_params

pytestmark = [pytest.mark.services, pytest.mark.slow]

PRELOAD = Path(__file__).with_name("kill_worker_preload.py")
PROCESSES = ClusterConfig(n_workers=2, threads_per_worker=1, memory_limit="3GiB", dashboard=False)


def test_worker_killed_mid_inference_run_completes_identically(
    served_small_archive: Any, clean_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows import monitor

    out, flag = tmp_path / "out", tmp_path / "worker-killed"
    # Worker processes inherit the environment when the cluster starts them.
    monkeypatch.setenv("EOWATCH_TEST_CHUNK_DELAY_S", "1.0")
    monkeypatch.setenv("EOWATCH_TEST_CHUNK_DELAY_STAGE", "change")
    monkeypatch.setenv(
        "EOWATCH_TEST_KILL_LEDGER", str(out / ".eowatch" / "*" / "ledger" / "change" / "*.json")
    )
    monkeypatch.setenv("EOWATCH_TEST_KILL_FLAG", str(flag))
    with dask.config.set({"distributed.worker.preload": [str(PRELOAD)]}):
        summary = monitor(run_params(served_small_archive, out), PROCESSES)
    assert flag.exists(), "no worker was killed: the test did not test anything"
    assert summary["status"] == "complete"
    assert_same_output(out, clean_run)
