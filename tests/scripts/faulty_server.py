"""``amltrack server`` that SIGKILLs itself at a chosen point of a write: the crash tests' server.

    python tests/scripts/faulty_server.py STAGE:N[:KIND] --store DIR --port 0 --max-body 65536
    python tests/scripts/faulty_server.py STAGE:N[:KIND] --database URL --objects s3://B/P --objects-endpoint URL ...

It dies at STAGE (``before``: nothing written; ``during``: half of an append's body written and
fsynced, ``run.json`` written but the run not published, an artifact or asset version complete but
not placed; for a write with no middle, the same as ``after``; ``after``: all written, the answer
not sent) of its N-th write request, counting only requests of KIND (see WRITE_KINDS) if given.
Tokens come from $AMLTRACK_SERVER_TOKENS, as for ``amltrack server``. The server is the product's,
built with a ``KillAt`` faults object (``amltrack/server/_faults.py`` is the seam); nothing in
``amltrack`` knows of the kill.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import TracebackType

from amltrack.server import load_tokens
from amltrack.server._faults import WRITE_KINDS, Faults, WritePoint
from amltrack.server._serve import serve_store

STAGES = ("before", "during", "after")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Dying(WritePoint):
    """The chosen write: dies at its stage."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __enter__(self) -> WritePoint:
        if self.stage == "before":
            die()
        return self

    def midway(
        self, data: memoryview | bytes = b"", write: Callable[[memoryview], None] | None = None
    ) -> None:
        if self.stage == "during":
            if write is not None and data:
                write(memoryview(data)[: len(data) // 2])
            die()

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:  # a write with no middle takes a "during" kill at its end
            die()


class KillAt(Faults):
    """SIGKILL at STAGE of the N-th write (of KIND): ``KillAt("during:3:append")``."""

    def __init__(self, spec: str) -> None:
        stage, _, rest = spec.partition(":")
        n, _, kind = rest.partition(":")
        if stage not in STAGES or not n.isdigit() or kind not in ("", *WRITE_KINDS):
            raise SystemExit(f"kill point {spec!r}: use STAGE:N or STAGE:N:KIND, STAGE one of {STAGES}")
        self.stage, self.at, self.kind = stage, int(n), kind or None
        self.count = 0
        self._lock = threading.Lock()

    def write(self, kind: str) -> WritePoint:
        if self.kind is not None and kind != self.kind:
            return super().write(kind)
        with self._lock:
            self.count += 1
            chosen = self.count == self.at
        return _Dying(self.stage) if chosen else super().write(kind)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("kill", help="STAGE:N[:KIND]")
    ap.add_argument("--store")
    ap.add_argument("--database")
    ap.add_argument("--objects")
    ap.add_argument("--objects-endpoint")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-body", type=int, required=True)
    args = ap.parse_args(argv)
    faults = KillAt(args.kill)
    tokens, team = load_tokens(None), None
    if args.objects:  # a replica of a team server: runs in --database, bytes in --objects
        from amltrack.server import Database, DatabaseTokens, Objects, TeamStore

        db = Database.open(args.database)
        tokens = DatabaseTokens(db)
        team = TeamStore(db, Objects.open(args.objects, endpoint=args.objects_endpoint), faults=faults)
    serve_store(
        args.store,
        host=args.host,
        port=args.port,
        tokens=tokens,
        max_body=args.max_body,
        faults=faults,
        team=team,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
