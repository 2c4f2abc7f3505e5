"""Subprocess plumbing shared by the local services: start, wait until ready, stop the whole tree."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from eowatch.errors import ServiceError

_TAIL_CHARS = 2000


def find_executable(name: str) -> str:
    """Find ``name`` next to the running interpreter first (the active venv), then on PATH.

    Raises:
        ServiceError: if the executable is in neither place.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"executable {name!r} not found beside {sys.executable} nor on PATH; install it")
    return found


class ManagedService:
    """The context-manager protocol every local service shares: ``start`` on enter, ``stop`` on exit.

    Subclasses implement ``start`` (return once the service answers) and ``stop`` (idempotent); ``stop``
    also runs when the ``with`` block raises.
    """

    _process: ServiceProcess | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """Process id (and process-group id) of a subprocess-backed service while it runs, else None."""
        return self._process.proc.pid if self._process is not None else None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ServiceProcess:
    """A child process in its own session whose output goes to a log file.

    The child is started with ``start_new_session=True`` so that :meth:`stop` can signal its whole process
    group (servers that fork workers leave no orphans).
    """

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        """Start ``argv``; stdout and stderr are appended to ``log_path``."""
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        except OSError as err:
            self._log.close()
            raise ServiceError(f"{name} failed to start: {err}") from err

    def tail(self, n_chars: int = _TAIL_CHARS) -> str:
        """The last ``n_chars`` characters of the process log, whitespace-collapsed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " ".join(text[-n_chars:].split())

    def wait_http(self, urls: Sequence[str], timeout_s: float, interval_s: float = 0.1) -> float:
        """Poll until every URL answers 2xx; return the seconds waited.

        Raises:
            ServiceError: if the process exits or ``timeout_s`` passes first; the message carries the tail
                of the process log.
        """
        start = time.monotonic()
        pending = list(urls)
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while pending:
                code = self.proc.poll()
                if code is not None:
                    raise ServiceError(f"{self.name} exited with code {code} during start-up: {self.tail()}")
                if time.monotonic() - start > timeout_s:
                    self.stop()
                    raise ServiceError(
                        f"{self.name} did not answer {pending[0]} within {timeout_s:.0f} s: {self.tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(pending[0]).is_success:
                        pending.pop(0)
                        continue
                time.sleep(interval_s)
        return time.monotonic() - start

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it after ``grace_s``; idempotent."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=grace_s)
        # Children that ignored SIGTERM while the leader exited.
        self._signal_group(signal.SIGKILL)
        self._log.close()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
