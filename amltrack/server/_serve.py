"""Running the server: token loading, the loopback rule, one server per store; ``amltrack._web``
serves it."""

from __future__ import annotations

import copy
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _env as env
from .. import _format as fmt
from .._errors import AmltrackError
from .._web._auth import TokenCheck, TokenConfigError, Tokens
from .._web._serve import is_loopback, serve
from ._errors import ServerConfigError
from ._faults import Faults
from ._limits import DEFAULT_MAX_BODY
from ._storage import SERVER_DIR

if TYPE_CHECKING:
    from ._team import TeamStore

MIRROR_EVERY = 5.0  # seconds between refreshes of a replica's copy of the runs for its web UI

TOKENS_ENV = env.SERVER_TOKENS

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


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


def check_token_sources(tokens_file: str | os.PathLike[str] | None) -> None:
    """Refuse a tokens file or $AMLTRACK_SERVER_TOKENS beside --database: one source of tokens, so
    that revoking a token in the database is never undone by a file that still holds it."""
    if tokens_file is not None:
        raise ServerConfigError(
            f"--tokens-file {tokens_file} and --database both give tokens; with --database, make them "
            "with 'amltrack server token create'"
        )
    if os.environ.get(TOKENS_ENV, "").strip():
        raise ServerConfigError(
            f"${TOKENS_ENV} is set, and --database keeps the tokens; unset it and make tokens with "
            "'amltrack server token create'"
        )


def _lock_store(root: Path) -> int:
    """Hold ``.server/server.lock`` for the life of the process: one server per store."""
    (root / SERVER_DIR).mkdir(parents=True, exist_ok=True)
    fd = os.open(root / SERVER_DIR / fmt.SERVER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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


def serve_store(
    store: str | os.PathLike[str] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    tokens: TokenCheck | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    faults: Faults | None = None,
    team: TeamStore | None = None,
) -> None:
    """Serve ``store`` until SIGINT or SIGTERM. Refuses a non-loopback host without tokens.
    ``faults`` is a test's seam (``amltrack.server._faults``). With ``team`` the runs are in its
    database and bucket, ``store`` is None, and any number of such processes serve the same team.

    serve("/srv/amltrack", host="0.0.0.0", tokens=load_tokens("/etc/amltrack/tokens"))
    """
    import uvicorn

    from ._app import server_app

    if tokens is None and not is_loopback(host):
        raise ServerConfigError(
            f"refusing to listen on {host} without tokens: anyone who can reach it could write runs; "
            f"pass --tokens-file or set ${TOKENS_ENV}, or listen on 127.0.0.1"
        )
    if max_body < 1024:
        raise ServerConfigError(f"--max-body {max_body} is too small; use 1024 bytes or more")
    if team is not None:
        _serve_team(team, host=host, port=port, tokens=tokens, max_body=max_body, faults=faults)
        return
    assert store is not None
    root = Path(store).expanduser().absolute()
    try:
        lock_fd = _lock_store(root)
    except OSError as e:
        raise ServerConfigError(f"cannot use {root} as the server's store: {e.strerror or e}") from e
    try:
        try:
            app = server_app(root, tokens=tokens, max_body=max_body, faults=faults)
        except OSError as e:
            if isinstance(e, AmltrackError):
                raise
            raise ServerConfigError(f"cannot use {root} as the server's store: {e.strerror or e}") from e
        auth = "no tokens (loopback only)" if tokens is None else tokens.describe()
        serve(
            app,
            host=host,
            port=port,
            error=ServerConfigError,
            banner=lambda url: f"amltrack server: serving {root} on {url} ({auth}); web UI at {url}/ui/",
            backlog=2048,
            graceful=5,
            log_config=_log_config(uvicorn.config.LOGGING_CONFIG),
        )
    finally:
        os.close(lock_fd)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _serve_team(
    team: TeamStore,
    *,
    host: str,
    port: int,
    tokens: TokenCheck | None,
    max_body: int,
    faults: Faults | None,
) -> None:
    """Serve the team's database and bucket: nothing on this host but the web UI's copy of the
    runs, a folder of this process's own that is removed when it stops."""
    import logging
    import tempfile

    from ..sync._bucket_reader import Mirror
    from ._app import server_app

    log = logging.getLogger("amltrack.server")
    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down on SIGTERM, then raises it again under the handler it found: the
        # default one would end the process before the copy below is removed (a GB or more).
        signal.signal(signal.SIGTERM, _exit_on_signal)
    with tempfile.TemporaryDirectory(prefix="amltrack-replica-") as tmp:
        mirror = Mirror(team, Path(tmp), every=MIRROR_EVERY, warn=log.warning)  # type: ignore[arg-type]
        app = server_app(tmp, tokens=tokens, max_body=max_body, faults=faults, team=team)
        auth = "no tokens (loopback only)" if tokens is None else tokens.describe()
        with mirror:
            try:
                _serve_app(app, team, auth, host, port)
            finally:
                app.state.warmer.stop()  # before the copy it warms is removed


def _serve_app(app: Any, team: TeamStore, auth: str, host: str, port: int) -> None:
    import uvicorn

    serve(
        app,
        host=host,
        port=port,
        error=ServerConfigError,
        banner=lambda url: (
            f"amltrack server: serving {team.url} and its database on {url} ({auth}); web UI at {url}/ui/"
        ),
        backlog=2048,
        graceful=5,
        log_config=_log_config(uvicorn.config.LOGGING_CONFIG),
    )
