"""A fault-injecting HTTP proxy on loopback, in front of the STAC API, the asset server or an S3 server.

It forwards every method clients use (``GET``/``HEAD``/``POST``/``PUT``/``DELETE``/``PATCH``/``OPTIONS``)
to one upstream base URL, request bodies included (sized by ``Content-Length`` or sent with
``Transfer-Encoding: chunked``, which is decoded and forwarded with a ``Content-Length``) and every
end-to-end header (``Range``, ``If-None-Match``, ``If-Match``, ``x-amz-*``, ``Authorization``...), and
answers a configurable share of requests with a fault instead:

- an HTTP status: 500/502/503, 429 with a ``Retry-After`` header (transient), 403/404 (permanent: an
  expired signed URL, a deleted object). In the ``s3`` dialect the body is an S3 XML error document
  (``<Error><Code>SlowDown</Code>...`` for 503 and 429, ``InternalError`` for 500), as S3 answers;
- ``stall``: no answer for ``stall_s`` seconds (longer than the client's read timeout), then the request
  is forwarded: it reaches the server late, possibly after the client gave up and retried, as a slow
  network delivers it;
- ``drop``: the connection is closed without an answer; the request never reaches the server;
- ``drop_after``: the request reaches the server (a PUT is applied), then the connection is closed
  without the answer: the client cannot know that its write landed;
- ``truncate``: the request is forwarded and its answer cut off halfway through the body announced.

Which request gets which fault is deterministic from a seed: the decision for the ``n``-th arrival of a
request (method, path, query, ``Range``, body) is a hash of ``(seed, request, n)``, so it does not depend
on the order in which concurrent clients' requests arrive. ``max_faults_per_request`` bounds how often
one request is failed, so that a client retrying more often than that always gets through (the
"transient fault" case); ``None`` fails a request every time it is drawn (with ``share=1`` every request
fails: the "the service is down" case). ``methods`` and ``path_contains`` restrict which requests may
fail (e.g. only ``PUT``: "S3 is down for writes").

SigV4: S3 clients sign the ``Host`` header. The ``s3`` dialect forwards the ``Host`` the client sent (the
proxy's address, which the client signed) and every signed header and body byte unchanged, so a server
that verifies signatures accepts requests that went through the proxy. (``http`` dialect: ``Host`` is
rewritten to the upstream's, as before.)

``http`` dialect only: response bodies whose type is JSON or text have every occurrence of the upstream
base URL replaced by the proxy's, so links a STAC API writes with its own address (``next`` pages) lead
back through the proxy. The ``s3`` dialect never rewrites a body (objects pass byte for byte).
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
from xml.sax.saxutils import escape

Fault = Literal["500", "502", "503", "429", "403", "404", "stall", "drop", "drop_after", "truncate"]
"""What a faulted request gets: an HTTP status (5xx and 429 are transient, 403 and 404 are not), a stall
past the client timeout (then forwarded late), a socket closed without an answer before (``drop``) or
after (``drop_after``) the request reached the upstream, or an answer cut off mid-body (``truncate``)."""

Dialect = Literal["http", "s3"]
"""How faults are worded and whether ``Host`` is kept: plain HTTP/JSON services, or the S3 REST API."""

_STATUS_FAULTS = frozenset({"500", "502", "503", "429", "403", "404"})
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",  # the proxy has the whole body already; the upstream need not ask for it
    "content-length",
    "date",  # send_response writes its own Date and Server headers
    "server",
}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# S3's own error codes and messages for the statuses it sends (a 429 is worded like S3's throttling
# answer: S3-compatible stores that throttle with 429 send SlowDown too).
_S3_ERRORS: dict[int, tuple[str, str]] = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    502: ("BadGateway", "The gateway received an invalid response."),
    503: ("SlowDown", "Please reduce your request rate."),
    429: ("SlowDown", "Please reduce your request rate."),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
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
    """Seconds a stalled request waits before it is forwarded (answered normally if the client still
    listens)."""
    path_contains: str = ""
    """Only requests whose path contains this substring may fail (e.g. ``".tif"`` or ``"/search"``)."""
    methods: tuple[str, ...] = ()
    """Only requests of these HTTP methods may fail (e.g. ``("PUT",)``); empty: any method."""

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"share must be within 0..1, got {self.share}")
        if not self.faults:
            raise ValueError("faults must name at least one fault")
        if self.max_faults_per_request is not None and self.max_faults_per_request < 0:
            raise ValueError("max_faults_per_request must be >= 0 or None")
        if self.stall_s < 0:
            raise ValueError("stall_s must be >= 0")
        object.__setattr__(self, "methods", tuple(m.upper() for m in self.methods))

    def may_fail(self, method: str, path: str) -> bool:
        """Whether a request of ``method`` on ``path`` (with its query) is eligible for a fault."""
        return (
            self.share > 0
            and self.path_contains in path
            and (not self.methods or method.upper() in self.methods)
        )


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
        >>> plan = FaultPlan(share=0.1, faults=("503",))
        >>> with FaultProxy(s3.url, plan, dialect="s3") as proxy:  # doctest: +SKIP
        ...     os.environ["EOWATCH_S3_ENDPOINT"] = proxy.url
    """

    def __init__(
        self,
        upstream: str,
        plan: FaultPlan | None = None,
        host: str = "127.0.0.1",
        dialect: Dialect = "http",
    ) -> None:
        """Prepare a proxy to ``upstream`` (``http://host:port``); nothing listens until ``__enter__``."""
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        if dialect not in ("http", "s3"):
            raise ValueError(f"dialect must be 'http' or 's3', got {dialect!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_addr = (parts.hostname, parts.port)
        self.plan = plan or FaultPlan()
        self.dialect: Dialect = dialect
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

    def outcomes_by_method(self) -> Counter[tuple[str, str]]:
        """How requests were answered so far, by ``(HTTP method, outcome)``."""
        with self._lock:
            return Counter((key.split(" ", 1)[0], outcome) for _, key, outcome in self._ledger.log)

    def faults_by_method(self) -> Counter[str]:
        """Faults served so far per HTTP method (``forwarded`` requests not counted)."""
        counts: Counter[str] = Counter()
        for (method, outcome), n in self.outcomes_by_method().items():
            if outcome != "forwarded":
                counts[method] += n
        return counts

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
        """The fault for this arrival of request ``key``, or None to forward it (records the arrival).

        ``key`` is ``"METHOD PATH RANGE BODY-HASH"``.
        """
        with self._lock:
            plan = self.plan
            n = self._ledger.arrivals[key]
            self._ledger.arrivals[key] += 1
            method, path = key.split(" ", 2)[:2]
            if not plan.may_fail(method, path):
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

        self._server = _Server((self._host, 0), Handler)
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


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server with a listen backlog like a real server's: the default of 5 made clients
    with many parallel connections (aiobotocore's pool) see "could not connect" under load."""

    request_queue_size = 128
    daemon_threads = True


@dataclass(frozen=True)
class _Answer:
    """What the upstream answered: status, headers and the whole body."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), default)


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

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        """The request body: ``Content-Length`` bytes, or the decoded chunks of a chunked body."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers: not forwarded (none of our clients sends any)
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True  # a malformed or abandoned request body
            return
        key = " ".join(
            [self.command, self.path, self.headers.get("Range", ""), hashlib.sha256(body).hexdigest()[:16]]
        )
        fault = self.owner.decide(key)
        self.owner._count(key, fault or "forwarded")
        try:
            if fault in _STATUS_FAULTS:
                self._answer_fault(int(fault))  # type: ignore[arg-type]
                return
            if fault == "drop":
                self._hang_up()
                return
            if fault == "stall":
                time.sleep(self.owner.plan.stall_s)
            answer = self._forward(body)
            if fault == "drop_after" or (fault == "truncate" and not answer.body):
                self._hang_up()  # nothing to cut short in an empty answer: lose all of it
            elif fault == "truncate":
                self._send(answer, cut=True)
            else:
                self._send(answer)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client gave up (e.g. timed out during a stall)

    def _hang_up(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _answer_fault(self, status: int) -> None:
        owner = self.owner
        if owner.dialect == "s3":
            code, message = _S3_ERRORS[status]
            resource = escape(self.path.split("?", 1)[0])
            payload = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource>"
                f"<RequestId>fault-proxy</RequestId></Error>"
            ).encode()
            ctype = "application/xml"
        else:
            payload = f'{{"code": "InjectedFault", "description": "fault proxy answered {status}"}}'.encode()
            ctype = "application/json"
        self.send_response(status)
        if status == 429 or (status == 503 and owner.dialect == "s3"):
            self.send_header("Retry-After", str(owner.plan.retry_after_s))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes) -> _Answer:
        owner = self.owner
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
        # S3 signs the Host header: keep the one the client signed. Other services get the upstream's.
        upstream_host = "{}:{}".format(*owner._upstream_addr)
        headers["Host"] = self.headers.get("Host", upstream_host) if owner.dialect == "s3" else upstream_host
        conn = http.client.HTTPConnection(*owner._upstream_addr, timeout=60)
        try:
            send = body if body or self.command in _BODY_METHODS else None
            conn.request(self.command, self.path, body=send, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            answer = _Answer(resp.status, resp.getheaders(), data)
        finally:
            conn.close()
        ctype = answer.header("Content-Type")
        if owner.dialect == "http" and data and ("json" in ctype or ctype.startswith("text/")):
            data = data.replace(owner.upstream.encode(), owner.url.encode())
            answer = _Answer(answer.status, answer.headers, data)
        return answer

    def _send(self, answer: _Answer, cut: bool = False) -> None:
        """Relay an upstream answer; ``cut``: announce the whole body, send half of it, hang up."""
        self.send_response(answer.status)
        for name, value in answer.headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        # A HEAD answer has no body but must carry the size the upstream announced (GDAL reads it).
        size = answer.header("Content-Length", "0") if self.command == "HEAD" else str(len(answer.body))
        self.send_header("Content-Length", size)
        self.end_headers()
        if self.command == "HEAD":
            if cut:
                self._hang_up()
            return
        if cut:
            self.wfile.write(answer.body[: len(answer.body) // 2])
            self.wfile.flush()
            self._hang_up()
            return
        self.wfile.write(answer.body)
