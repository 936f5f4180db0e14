"""Serving an app: the loopback rule, the listening socket, and the one uvicorn process shape that
``amltrack server`` and ``amltrack ui`` both run."""

from __future__ import annotations

import ipaddress
import math
import socket
import sys
from collections.abc import Callable
from typing import Any

from .._errors import AmltrackError


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


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    error: type[AmltrackError],
    banner: Callable[[str], str],
    backlog: int,
    graceful: float,
    log_config: dict[str, Any] | None = None,
) -> None:
    """Serve ``app`` on ``host``:``port`` until SIGINT or SIGTERM, after printing ``banner(url)`` to
    stderr (tests and people wait for it); ``error`` if the port cannot be had.

    The app's chart warmer (``app.state.warmer``, the UI's) starts here, in the serving process only:
    apps that tests build in-process leave it stopped.
    """
    import uvicorn

    sock, url = listen(host, port, backlog, error)
    print(banner(url), file=sys.stderr, flush=True)
    options: dict[str, Any] = {} if log_config is None else {"log_config": log_config}
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=math.ceil(graceful),
        **options,
    )
    app.state.warmer.start()  # the newest runs' charts, ready before their pages are opened
    uvicorn.Server(config).run(sockets=[sock])
