"""Kill -9 a monitoring run in the middle of its change stage, re-run it, and get the same bytes.

The run is a real subprocess (tests/pipelines/monitor_child.py) reporting to the test Prefect server.
``EOWATCH_TEST_CHUNK_DELAY_S`` (a test hook in ``pipelines.ledger.write_chunks``) makes it sleep after
each recorded chunk, so the window between the first change-ledger marker and the publish of
``change.zarr`` is wide enough to kill it there every time. The whole process group gets SIGKILL (the
flow process, the Dask scheduler and its workers): no cleanup code runs, the kernel drops the flock.
The uninterrupted reference run is a second subprocess started at the same time (the killed run spends
most of its time sleeping in the hook), which keeps the test under a minute on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from eowatch.infra.cluster import ClusterConfig
from eowatch.pipelines.params import MonitorParams
from tests.pipelines.test_monitor_flow import _params, tree_digest

pytestmark = [pytest.mark.services, pytest.mark.slow]

CHILD = Path(__file__).with_name("monitor_child.py")
CLUSTER = ClusterConfig(n_workers=1, threads_per_worker=1, memory_limit="3GiB")
DELAY_S = 2.0
# the change stage is what is killed and compared: no VHR cube, no other model stage after it
CHANGE_ONLY: dict[str, Any] = {
    "vhr_collection": None,
    "crop_model": None,
    "vhr_change_model": None,
    "landcover_model": None,
    "semantic_change_model": None,
    "vhr_landcover_model": None,
}


def _change_markers(out: Path) -> list[Path]:
    return sorted(out.glob(".eowatch/*/ledger/change/*.json"))


def _start_child(
    params: MonitorParams, api_url: str, workdir: Path, delay_s: float = 0.0
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start monitor_child.py on ``params`` in its own process group; return it and its log file."""
    params_file, log = workdir / "params.json", workdir / "child.log"
    workdir.mkdir(parents=True, exist_ok=True)
    params_file.write_text(json.dumps(params.model_dump(mode="json")))
    env = {**os.environ, "PREFECT_API_URL": api_url}
    if delay_s:
        env.update(EOWATCH_TEST_CHUNK_DELAY_S=str(delay_s), EOWATCH_TEST_CHUNK_DELAY_STAGE="change")
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(params_file)],
            cwd=CHILD.parents[2],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the flow, the scheduler and the workers
        )
    return proc, log


def _wait_for_marker(proc: subprocess.Popen[bytes], out: Path, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not _change_markers(out):
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before the change stage:\n{log.read_text()}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no change-ledger marker after {timeout_s} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole process group and wait until no member is left."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail("processes of the killed run are still alive")


def test_sigkill_mid_change_then_rerun_gives_identical_bytes(
    served_small_archive: Any, small_archive: Path, prefect_server: Any, tmp_path: Path
) -> None:
    from eowatch.pipelines.run_lock import run_lock
    from flows import monitor

    out, ref_out = tmp_path / "killed" / "out", tmp_path / "reference" / "out"
    params = _params(served_small_archive, small_archive, out, **CHANGE_ONLY)
    api = prefect_server.api_url
    proc, log = _start_child(params, api, tmp_path / "killed", delay_s=DELAY_S)
    ref_proc, ref_log = _start_child(
        _params(served_small_archive, small_archive, ref_out, **CHANGE_ONLY), api, tmp_path / "reference"
    )
    try:
        try:
            _wait_for_marker(proc, out, log)
            assert proc.poll() is None, "the run finished before it could be killed"
        finally:
            _kill_group(proc)
        assert proc.returncode == -signal.SIGKILL
        markers = _change_markers(out)
        assert 1 <= len(markers) <= 4, markers
        assert not (out / "change.zarr").exists()  # killed mid-stage: nothing looks finished
        with run_lock(out):  # the kernel dropped the dead run's flock
            pass

        resumed = monitor(params, CLUSTER)
        assert resumed["status"] == "complete"
        assert not (out / ".eowatch" / resumed["run_token"]).exists()

        assert ref_proc.wait(timeout=120) == 0, ref_log.read_text()[-3000:]
        assert tree_digest(out / "change.zarr") == tree_digest(ref_out / "change.zarr")
    finally:
        if ref_proc.poll() is None:  # the test failed early: leave nothing running
            os.killpg(ref_proc.pid, signal.SIGKILL)
