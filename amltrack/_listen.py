"""The listening socket of `amltrack server` and `amltrack ui`, and the loopback rule both apply."""

from __future__ import annotations

import ipaddress
import socket

from ._errors import AmltrackError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int, backlog: int, error: type[AmltrackError]) -> tuple[socket.socket, str]:
    """A socket listening on ``host``:``port`` (0: any free port) and its URL; ``error`` if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it every keep-alive response waits 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise error(f"cannot listen on {host}:{port}: {e.strerror}; pick another --port") from e
    sock.listen(backlog)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return sock, f"http://{shown}:{sock.getsockname()[1]}"
