"""Running the UI: the loopback rule, the listening socket, and uvicorn."""

from __future__ import annotations

import os
import sys

from .._errors import AmltrackError
from .._listen import is_loopback, listen
from .._store import find_store

DEFAULT_PORT = 8766


class UiConfigError(AmltrackError, ValueError):
    """The UI cannot start as asked; the message says what to change."""


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
    sock, url = listen(host, port, 512, UiConfigError)
    missing = "" if root.is_dir() else " (no store there yet: runs appear once logged)"
    print(f"amltrack ui: serving {root}{missing} at {url}/", file=sys.stderr, flush=True)
    if not loopback:
        print(f"amltrack ui: warning: listening on {host} without sign-in (--allow-remote)", file=sys.stderr)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    app.state.api.warmer.start()  # the newest runs' charts, ready before their pages are opened
    uvicorn.Server(config).run(sockets=[sock])
