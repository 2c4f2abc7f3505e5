"""A fault-injecting HTTP proxy on loopback, in front of the STAC API or the asset server.

It forwards ``GET``/``HEAD``/``POST`` requests (headers such as ``Range`` included) to one upstream base
URL and answers a configurable share of them with a fault instead: HTTP 500/502/503, 429 with a
``Retry-After`` header, a stall (no answer for ``stall_s`` seconds, longer than the client's timeout), a
dropped connection, or a permanent 403/404 (an expired signed URL, a deleted object). Which request gets
which fault is deterministic from a seed: the decision for the ``n``-th arrival of a request (method,
path, query, ``Range``, body) is a hash of ``(seed, request, n)``, so it does not depend on the order in
which concurrent clients' requests arrive.

``max_faults_per_request`` bounds how often one request is failed, so that a client retrying more often
than that always gets through (the "transient fault" case); ``None`` fails a request every time it is
drawn (with ``share=1`` every request fails: the "the service is down" case).

Response bodies whose type is JSON or text have every occurrence of the upstream base URL replaced by
the proxy's, so links a STAC API writes with its own address (``next`` pages) lead back through the proxy.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit

Fault = Literal["500", "502", "503", "429", "403", "404", "stall", "drop"]
"""What a faulted request gets: an HTTP status (5xx and 429 are transient, 403 and 404 are not), a stall
past the client timeout, or a socket closed without an answer."""

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "date",  # send_response writes its own Date and Server headers
    "server",
}


@dataclass(frozen=True)
class FaultPlan:
    """Which requests fail, and how."""

    seed: int = 0
    """Seed of the fault decisions (same seed and requests → same faults)."""
    share: float = 0.0
    """Probability (0–1) that an arrival of a request is answered with a fault."""
    faults: tuple[Fault, ...] = ("500", "502", "503", "429")
    """Faults drawn from (uniformly, deterministically) for a faulted request."""
    max_faults_per_request: int | None = 2
    """Faults at most per distinct request; later arrivals pass. None: no bound."""
    retry_after_s: int = 1
    """``Retry-After`` header value (seconds) sent with 429."""
    stall_s: float = 5.0
    """Seconds a stalled request waits before it is answered (normally, if the client still listens)."""
    path_contains: str = ""
    """Only requests whose path contains this substring may fail (e.g. ``".tif"`` or ``"/search"``)."""

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"share must be within 0..1, got {self.share}")
        if not self.faults:
            raise ValueError("faults must name at least one fault")
        if self.max_faults_per_request is not None and self.max_faults_per_request < 0:
            raise ValueError("max_faults_per_request must be >= 0 or None")


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts`` (SHA-256, not Python's salted ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class _Ledger:
    """Per-request arrival and fault counts, and per-outcome totals (guarded by the proxy's lock)."""

    arrivals: Counter[str] = field(default_factory=Counter)
    faulted: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    log: list[tuple[float, str, str]] = field(default_factory=list)
    """(monotonic time, request key, outcome) of every request, in arrival order."""


class FaultProxy:
    """Context manager: a threaded HTTP proxy to ``upstream`` at ``.url``, faulting per ``plan``.

    Example:
        >>> with FaultProxy(stac.url, FaultPlan(seed=1, share=0.3)) as proxy:  # doctest: +SKIP
        ...     search_catalog(proxy.url, request)
        ...     proxy.outcomes  # Counter({'forwarded': 12, '503': 3, ...})
    """

    def __init__(self, upstream: str, plan: FaultPlan | None = None, host: str = "127.0.0.1") -> None:
        """Prepare a proxy to ``upstream`` (``http://host:port``); nothing listens until ``__enter__``."""
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_addr = (parts.hostname, parts.port)
        self.plan = plan or FaultPlan()
        self._host = host
        self._ledger = _Ledger()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the proxy, without a trailing slash."""
        if self._server is None:
            raise RuntimeError("FaultProxy is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def outcomes(self) -> Counter[str]:
        """How requests were answered so far: ``forwarded`` or a fault name, with counts."""
        with self._lock:
            return Counter(self._ledger.outcomes)

    def history(self, path_contains: str = "") -> list[tuple[float, str, str]]:
        """(monotonic time s, request key, outcome) of the requests whose key contains ``path_contains``."""
        with self._lock:
            return [entry for entry in self._ledger.log if path_contains in entry[1]]

    def set_plan(self, plan: FaultPlan) -> None:
        """Change the fault plan for the requests that arrive from now on; counts start again from 0."""
        with self._lock:
            self.plan = plan
            self._ledger = _Ledger()

    def decide(self, key: str) -> Fault | None:
        """The fault for this arrival of request ``key``, or None to forward it (records the arrival)."""
        with self._lock:
            plan = self.plan
            n = self._ledger.arrivals[key]
            self._ledger.arrivals[key] += 1
            if plan.share <= 0 or plan.path_contains not in key.split(" ", 2)[1]:
                return None
            bounded = plan.max_faults_per_request is not None
            if bounded and self._ledger.faulted[key] >= plan.max_faults_per_request:  # type: ignore[operator]
                return None
            if _unit(plan.seed, key, n) >= plan.share:
                return None
            self._ledger.faulted[key] += 1
            return plan.faults[int(_unit(plan.seed, key, n, "kind") * len(plan.faults))]

    def _count(self, key: str, outcome: str) -> None:
        with self._lock:
            self._ledger.outcomes[outcome] += 1
            self._ledger.log.append((time.monotonic(), key, outcome))

    def __enter__(self) -> Self:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = ThreadingHTTPServer((self._host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards one request to the owner's upstream, or answers it with the fault it drew."""

    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default per-request stderr log."""

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        key = " ".join(
            [self.command, self.path, self.headers.get("Range", ""), hashlib.sha256(body).hexdigest()[:16]]
        )
        fault = self.owner.decide(key)
        self.owner._count(key, fault or "forwarded")
        try:
            if fault in ("500", "502", "503", "429", "403", "404"):
                self._answer_fault(int(fault))
                return
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault == "stall":
                time.sleep(self.owner.plan.stall_s)
            self._forward(body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client gave up (e.g. timed out during a stall)

    def _answer_fault(self, status: int) -> None:
        payload = f'{{"code": "InjectedFault", "description": "fault proxy answered {status}"}}'.encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", str(self.owner.plan.retry_after_s))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes) -> None:
        owner = self.owner
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
        headers["Host"] = "{}:{}".format(*owner._upstream_addr)
        conn = http.client.HTTPConnection(*owner._upstream_addr, timeout=60)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out_headers: Sequence[tuple[str, str]] = resp.getheaders()
            status = resp.status
        finally:
            conn.close()
        ctype = resp.getheader("Content-Type", "")
        if data and ("json" in ctype or ctype.startswith("text/")):
            data = data.replace(owner.upstream.encode(), owner.url.encode())
        self.send_response(status)
        for name, value in out_headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        # A HEAD answer has no body but must carry the size the upstream announced (GDAL reads it).
        size = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", size)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
