"""Dask worker preload for tests/reliability/test_worker_kill.py: SIGKILL the worker mid-inference.

Loaded into every worker process through ``distributed.worker.preload``. A daemon thread polls (every
50 ms) until this worker is executing an ``infer_batch`` task *and* the change stage's ledger holds at
least one marker; then it claims the kill flag (created with ``O_EXCL``, so exactly one worker of the
whole run dies, once: the restarted worker and the others see the flag) and sends itself SIGKILL. No
cleanup runs, as when the OOM killer or a preempted node takes a worker down.

Configured by environment variables the test sets before the cluster starts:

- ``EOWATCH_TEST_KILL_LEDGER``: glob of the change-ledger markers,
  e.g. ``<out>/.eowatch/*/ledger/change/*.json``
- ``EOWATCH_TEST_KILL_FLAG``: path of the flag file
"""

from __future__ import annotations

import glob
import os
import signal
import threading
import time
from typing import Any


def _executing_inference(worker: Any) -> bool:
    try:
        tasks = list(worker.state.tasks.values())
    except RuntimeError:  # the worker's event loop changed the dict meanwhile: look again next time
        return False
    return any(str(ts.key).startswith("infer_batch") and ts.state == "executing" for ts in tasks)


def _watch(worker: Any, ledger_glob: str, flag: str) -> None:
    while not os.path.exists(flag):
        if _executing_inference(worker) and glob.glob(ledger_glob):
            try:
                os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)


def dask_setup(worker: Any) -> None:
    """Start the watcher thread in this worker (a no-op unless both variables are set)."""
    ledger_glob = os.environ.get("EOWATCH_TEST_KILL_LEDGER")
    flag = os.environ.get("EOWATCH_TEST_KILL_FLAG")
    if ledger_glob and flag:
        threading.Thread(target=_watch, args=(worker, ledger_glob, flag), daemon=True).start()
