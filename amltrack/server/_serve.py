"""Running the server: token loading, the loopback rule, one server per store, and uvicorn."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

from .._errors import AmltrackError
from .._listen import is_loopback, listen
from ._auth import TokenConfigError, Tokens
from ._limits import DEFAULT_MAX_BODY
from ._storage import SERVER_DIR

TOKENS_ENV = "AMLTRACK_SERVER_TOKENS"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class ServerConfigError(AmltrackError, ValueError):
    """The server cannot start as configured; the message says what to change."""


def load_tokens(tokens_file: str | os.PathLike[str] | None) -> Tokens | None:
    """Tokens from ``tokens_file``, else from $AMLTRACK_SERVER_TOKENS, else None (no auth)."""
    try:
        if tokens_file is not None:
            return Tokens.from_file(tokens_file)
        env = os.environ.get(TOKENS_ENV, "").strip()
        if env:
            return Tokens.parse(env, f"${TOKENS_ENV}")
    except TokenConfigError as e:
        raise ServerConfigError(str(e)) from None
    return None


def _lock_store(root: Path) -> int:
    """Hold ``.server/server.lock`` for the life of the process: one server per store."""
    (root / SERVER_DIR).mkdir(parents=True, exist_ok=True)
    fd = os.open(root / SERVER_DIR / "server.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServerConfigError(
                f"another amltrack server is serving {root}; stop it, or serve another --store"
            ) from None
    return fd


def _log_config(base: dict[str, Any]) -> dict[str, Any]:
    """uvicorn's logging, warnings and up, plus the server's own notes at info level (a client that
    went away mid-request), in the same format on stderr."""
    config = copy.deepcopy(base)
    config["loggers"]["amltrack.server"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def serve(
    store: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    tokens: Tokens | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> None:
    """Serve ``store`` until SIGINT or SIGTERM. Refuses a non-loopback host without tokens.

    serve("/srv/amltrack", host="0.0.0.0", tokens=load_tokens("/etc/amltrack/tokens"))
    """
    import uvicorn

    from ._app import create_app

    if tokens is None and not is_loopback(host):
        raise ServerConfigError(
            f"refusing to listen on {host} without tokens: anyone who can reach it could write runs; "
            f"pass --tokens-file or set ${TOKENS_ENV}, or listen on 127.0.0.1"
        )
    if max_body < 1024:
        raise ServerConfigError(f"--max-body {max_body} is too small; use 1024 bytes or more")
    root = Path(store).expanduser().absolute()
    try:
        lock_fd = _lock_store(root)
    except OSError as e:
        raise ServerConfigError(f"cannot use {root} as the server's store: {e.strerror or e}") from e
    try:
        try:
            app = create_app(root, tokens=tokens, max_body=max_body)
        except OSError as e:
            if isinstance(e, AmltrackError):
                raise
            raise ServerConfigError(f"cannot use {root} as the server's store: {e.strerror or e}") from e
        sock, url = listen(host, port, 2048, ServerConfigError)
        auth = "no tokens (loopback only)" if tokens is None else f"{len(tokens)} token(s)"
        print(
            f"amltrack server: serving {root} on {url} ({auth}); web UI at {url}/ui/",
            file=sys.stderr,
            flush=True,
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            log_config=_log_config(uvicorn.config.LOGGING_CONFIG),
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        app.state.ui_warmer.start()  # the newest runs' charts, ready before their pages are opened
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        os.close(lock_fd)
