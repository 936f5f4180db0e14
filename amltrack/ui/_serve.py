"""Running the UI: the loopback rule, and the Host names it answers to; ``amltrack._web`` serves it."""

from __future__ import annotations

import os

from .._errors import AmltrackError
from .._store import find_store
from .._web._guard import LOOPBACK_NAMES
from .._web._serve import is_loopback, serve

DEFAULT_PORT = 8766


class UiConfigError(AmltrackError, ValueError):
    """The UI cannot start as asked; the message says what to change."""


def serve_ui(
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
    from ._app import ui_app

    loopback = is_loopback(host)
    if not loopback and not allow_remote:
        raise UiConfigError(
            f"refusing to listen on {host}: the UI has no sign-in, so anyone who can reach it could read "
            "every run; pass --allow-remote to serve it anyway, or serve it with 'amltrack server' and tokens"
        )
    root = find_store(store)
    app = ui_app(root, allowed_hosts=[*LOOPBACK_NAMES, host] if loopback else None)
    missing = "" if root.is_dir() else " (no store there yet: runs appear once logged)"

    def banner(url: str) -> str:
        warning = f"\namltrack ui: warning: listening on {host} without sign-in (--allow-remote)"
        return f"amltrack ui: serving {root}{missing} at {url}/" + ("" if loopback else warning)

    serve(app, host=host, port=port, error=UiConfigError, banner=banner, backlog=512, graceful=3)
