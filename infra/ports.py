"""Free loopback ports for local services."""

from __future__ import annotations

import socket

DEFAULT_HOST = "127.0.0.1"


def free_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port on ``host`` that is free at the time of the call.

    The OS picks the port (bind to port 0). There is an unavoidable race between this call and the
    service binding it, so callers that start services should retry on "address in use".

    Args:
        host: Interface to probe, a loopback address by default.

    Returns:
        A port number in the ephemeral range.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
