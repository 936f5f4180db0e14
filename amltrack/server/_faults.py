"""The seam through which a test makes the server fail at a chosen point of a write.

Each write request of ``ServerStore`` (and of its assets) runs as::

    with self.faults.write("append") as point:
        ...                       # check, lock, write
        point.midway(data, write) # the one point where a crash leaves a part of the write behind
        ...

so a ``Faults`` object sees the write begin (nothing written yet), its middle, and its end (all
written and durable, the answer not yet sent). ``Faults()``, the default, does nothing at any of
them. A test passes another to ``ServerStore(root, faults=...)`` or ``create_app(..., faults=...)``;
``tests/scripts/faulty_server.py`` serves a store with one that SIGKILLs the process at a chosen
point, so that the crash tests kill a real server.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

# The kinds of write request, as ``Faults.write`` is told them.
WRITE_KINDS = ("create", "append", "blob", "commit", "delete", "summary", "finalise", "asset")


class WritePoint:
    """One write in progress. ``midway`` marks where a crash would leave a part of it behind: with
    ``data`` and ``write``, a fault may call ``write`` with a prefix of ``data`` (made durable) first,
    as a crash in the middle of the write would leave it."""

    def __enter__(self) -> WritePoint:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def midway(
        self, data: memoryview | bytes = b"", write: Callable[[memoryview], None] | None = None
    ) -> None:
        return None


_NOTHING = WritePoint()  # one shared instance: the server's writes cost no allocation for the seam


class Faults:
    """No faults: every write goes through as written. Subclass it and override ``write``."""

    def write(self, kind: str) -> WritePoint:
        """The write of ``kind`` (one of WRITE_KINDS) that begins now."""
        return _NOTHING
