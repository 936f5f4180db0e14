"""The seam between the sync loop and one kind of remote.

A remote kind is a module with a class that has ``kind``, ``url``, ``push_run``, ``verify_run`` and
``close``; ``open_remote`` maps a configured remote to it. ``_amltrack`` is amltrack's own server,
``_mlflow`` an MLflow tracking server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ._local import Snapshot
from ._remotes import RemoteEntry


class Progress(Protocol):
    """Told what a push is about to send, then how much of it went."""

    def start(self, run_id: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...


class NullProgress:
    def start(self, run_id: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
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

    @property
    def nothing_to_send(self) -> bool:
        return self.planned == 0


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
    ) -> PushResult:
        """Make the remote hold exactly ``snap``; resumable from any interruption.

        ``known`` is the ledger's artifact hashes, to skip hashing unchanged files.
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
