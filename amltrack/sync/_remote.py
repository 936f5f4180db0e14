"""The seam between the sync loop and one kind of remote.

A remote kind is a module with a class that has ``kind``, ``url``, ``push_run``, ``verify_run`` and
``close``; ``open_remote`` maps a configured remote to it. ``_amltrack`` is amltrack's own server,
``_mlflow`` an MLflow tracking server.
"""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .. import __version__
from ._local import Snapshot
from ._remotes import RemoteEntry

if TYPE_CHECKING:
    import httpx


class Progress(Protocol):
    """Told how many runs a sync looks at; then, for each run it pushes, what it is about to send
    (bytes, and metric records among them) and how much of it went; and when each run is done.

    ``begin`` is called once by ``sync``, ``start`` and ``advance`` by the remote during a push, and
    ``finish`` after every run, pushed or not. A remote that cannot count records passes 0.
    """

    def begin(self, runs: int) -> None: ...
    def start(self, run_id: str, total: int, records: int = 0) -> None: ...
    def advance(self, n: int, records: int = 0) -> None: ...
    def finish(self) -> None: ...


class NullProgress:
    def begin(self, runs: int) -> None:
        pass

    def start(self, run_id: str, total: int, records: int = 0) -> None:
        pass

    def advance(self, n: int, records: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class PushResult:
    """What one push did: bytes and write requests sent (or, for a dry run, the bytes it would send)."""

    run_id: str
    sent: int = 0
    writes: int = 0
    planned: int = 0
    remote: dict[str, Any] = field(default_factory=dict)  # kind-specific state for the ledger
    # Artifacts that could not be sent, and why; the rest of the run was pushed.
    unsent: dict[str, str] = field(default_factory=dict)

    @property
    def nothing_to_send(self) -> bool:
        return self.planned == 0


@dataclass
class AssetPush:
    """What pushing one asset version did: bytes sent (or planned), and the version it is on the remote."""

    ref: str
    sent: int = 0
    planned: int = 0
    remote_ref: str | None = None
    existing: str | None = None  # "origin": placed by an earlier push; "content": the latest already held it


class Remote(Protocol):
    kind: str
    url: str

    def push_run(
        self,
        snap: Snapshot,
        progress: Progress,
        *,
        dry_run: bool = False,
        known: dict[str, Any] | None = None,
        check: bool = False,
    ) -> PushResult:
        """Make the remote hold exactly ``snap``; resumable from any interruption.

        ``known`` is the ledger's artifact hashes, to skip hashing unchanged files. ``check`` asks
        the remote what it holds of every artifact, where a remote would otherwise trust its own
        record of the last complete push (``--all``, and the push after ``--verify`` found a
        difference).
        """
        ...

    def verify_run(self, snap: Snapshot) -> list[str]:
        """Compare the remote's copy with ``snap`` by hash; one sentence per difference."""
        ...

    def close(self) -> None: ...


def open_remote(entry: RemoteEntry) -> Remote:
    """The client for a configured remote; its token is ``$AMLTRACK_TOKEN`` or the remote's own."""
    if entry.kind == "amltrack":
        from ._amltrack import AmltrackRemote

        return AmltrackRemote(entry.url, entry.effective_token())
    if entry.kind == "mlflow":
        from ._mlflow import MlflowRemote

        # $AMLTRACK_TOKEN is for amltrack servers; MlflowRemote reads MLflow's own variables.
        return MlflowRemote(entry.url, entry.token)
    from ._errors import RemoteConfigError

    raise RemoteConfigError(
        f"remote {entry.label} has kind {entry.kind!r}, which this amltrack cannot push to"
    )


# Test-only: "N" SIGKILLs the sync process right after the answer to its N-th write request, to
# test that a push resumes from any point. See docs/sync.md.
KILL_ENV = "AMLTRACK_TEST_SYNC_KILL"
MAX_BACKOFF = 30.0  # seconds: the longest pause between two tries of a request

_R = TypeVar("_R", bound="HttpRemote")


def http_client(
    url: str, token: str | None, timeout: float, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The client every amltrack-server conversation uses: our User-Agent, the bearer token if any,
    and ``X-Amltrack-Client``, which a browser cannot send cross-site without a CORS preflight that the
    server never grants: the server refuses a write without it (docs/sync.md, "Cross-site requests")."""
    import httpx

    headers = {"User-Agent": f"amltrack/{__version__}", "X-Amltrack-Client": f"amltrack/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(
        base_url=url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0), transport=transport
    )


def error_fields(r: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    """An amltrack server's error answer as its code, message and extra fields (docs/sync.md), or
    ``http_<status>`` and the body's start for an answer from something else."""
    try:
        err = r.json()["error"]
        code, message = str(err["code"]), str(err["message"])
        return code, message, {k: v for k, v in err.items() if k not in ("code", "message")}
    except (ValueError, KeyError, TypeError):
        return f"http_{r.status_code}", r.text[:200].strip() or r.reason_phrase, {}


class HttpRemote:
    """What the servers' clients share (both remotes and the history reader): the httpx client's
    lifetime, the pauses between tries of a request, and the count of write requests."""

    _client: httpx.Client

    backoff: float  # seconds: the first pause before a request is tried again

    def __init__(self) -> None:
        self._random = random.Random()  # seeded from os.urandom: two clients started together differ
        self.writes = 0
        kill = os.environ.get(KILL_ENV)
        self._kill_after = int(kill) if kill and kill.isdigit() else None

    def _wrote(self) -> None:
        """Count a write request that got its answer (and die there if the kill switch says so)."""
        self.writes += 1
        if self._kill_after is not None and self.writes >= self._kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def delay(self, attempt: int) -> float:
        """The pause before trying a request again after its ``attempt``-th try (0 is the first).

        Exponential back-off (x3 a try, at most MAX_BACKOFF) with equal jitter: a random point in
        the upper half of the step, so the pauses still grow while clients that failed together
        (a server restart) do not all come back at the same moment.
        """
        step = min(MAX_BACKOFF, self.backoff * 3**attempt)
        return step / 2 + self._random.uniform(0, step / 2)

    def close(self) -> None:
        self._client.close()

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
