"""The seam between the sync loop and one kind of remote: what a remote kind implements.

A remote kind is a module with a class that has ``kind``, ``url``, ``push_run``, ``verify_run`` and
``close`` (and ``push_asset`` if it takes assets), and a row in ``_targets.TARGETS``. This module names
no kind: the table does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ._local import Snapshot


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
        remote_state: dict[str, Any] | None = None,
    ) -> PushResult:
        """Make the remote hold exactly ``snap``; resumable from any interruption.

        ``known`` is the ledger's artifact hashes, to skip hashing unchanged files. ``check`` asks
        the remote what it holds of every artifact, where a remote would otherwise trust its own
        record of the last complete push (``--all``, and the push after ``--verify`` found a
        difference). ``remote_state`` is what the ledger kept of this remote's last push of the
        run (its ``PushResult.remote``): a remote reads the ledger only through it.
        """
        ...

    def verify_run(self, snap: Snapshot, remote_state: dict[str, Any] | None = None) -> list[str]:
        """Compare the remote's copy with ``snap`` by hash; one sentence per difference."""
        ...

    def close(self) -> None: ...
