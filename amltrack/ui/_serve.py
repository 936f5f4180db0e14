"""Running the UI: the loopback rule, the listening socket, and uvicorn."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys

from .._errors import AmltrackError
from .._store import find_store

DEFAULT_PORT = 8766


class UiConfigError(AmltrackError, ValueError):
    """The UI cannot start as asked; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    store: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
) -> None:
    """Serve the UI over ``store`` until SIGINT or SIGTERM; port 0 picks a free port.

    The UI has no sign-in of its own, so it listens on loopback unless ``allow_remote`` says
    otherwise; on loopback it also answers only to loopback host names (against DNS rebinding).

        serve(".amltrack", port=8766)
    """
    import uvicorn

    from ._app import LOOPBACK_NAMES, create_app

    loopback = is_loopback(host)
    if not loopback and not allow_remote:
        raise UiConfigError(
            f"refusing to listen on {host}: the UI has no sign-in, so anyone who can reach it could read "
            "every run; pass --allow-remote to serve it anyway, or serve it with 'amltrack server' and tokens"
        )
    root = find_store(store)
    allowed = [*LOOPBACK_NAMES, host] if loopback else None
    app = create_app(root, allowed_hosts=allowed)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (no 40 ms delayed-ACK stalls).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UiConfigError(f"cannot listen on {host}:{port}: {e.strerror}; pick another --port") from e
    sock.listen(512)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    missing = "" if root.is_dir() else " (no store there yet: runs appear once logged)"
    print(f"amltrack ui: serving {root}{missing} at http://{shown}:{bound}/", file=sys.stderr, flush=True)
    if not loopback:
        print(f"amltrack ui: warning: listening on {host} without sign-in (--allow-remote)", file=sys.stderr)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    uvicorn.Server(config).run(sockets=[sock])
