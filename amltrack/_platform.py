"""Which operating system's code paths amltrack takes. Chosen here, once, and nowhere else.

Every place that would test ``sys.platform`` asks ``current()`` instead, for the one capability it
needs, so that a test on Linux can take the macOS or Windows path for real (``forced()``):

    with _platform.forced("windows", msvcrt=fake_msvcrt, break_signal=signal.SIGUSR1):
        ...  # appends lock through the fake msvcrt, Ctrl-Break is SIGUSR1, the mirror polls

| capability | Linux | macOS | Windows |
|---|---|---|---|
| ``proc``: process start times and zombies, mounts from ``/proc`` | yes | no: psutil | no: psutil |
| ``locking``: how appends to a run's JSON Lines files are serialized | ``flock`` | ``flock`` | ``msvcrt`` |
| ``observer``: what tells the outputs mirror of changes | ``inotify`` | ``polling`` | ``polling`` |
| ``break_signal``: the console's Ctrl-Break, handled as Ctrl-C is | none | none | ``SIGBREAK`` |
| ``windows_names``: refuse artifact names a Windows file system cannot hold | no | no | yes |
| ``fold_case``: two artifact names that differ only in case are one file | no | yes | yes |

Other systems (the BSDs) get macOS's column, but for ``fold_case``. Nothing here is imported that a plain
``import amltrack`` would not import anyway; ``msvcrt`` is loaded on first use.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

LINUX = "linux"
MACOS = "macos"
WINDOWS = "windows"

_UNSET: Any = object()


class Platform:
    """What the running system offers amltrack. Read-only; ``forced()`` swaps in another one."""

    __slots__ = (
        "name",
        "proc",
        "locking",
        "observer",
        "break_signal",
        "windows_names",
        "fold_case",
        "_msvcrt",
    )

    def __init__(
        self,
        name: str,
        *,
        proc: bool,
        locking: str,
        observer: str,
        break_signal: int | None,
        windows_names: bool,
        fold_case: bool,
        msvcrt: Any = None,
    ) -> None:
        self.name = name
        self.proc = proc
        self.locking = locking
        self.observer = observer
        self.break_signal = break_signal
        self.windows_names = windows_names
        self.fold_case = fold_case
        self._msvcrt = msvcrt

    @property
    def windows(self) -> bool:
        return self.name == WINDOWS

    def msvcrt(self) -> Any:
        """Windows' C runtime module (``msvcrt.locking``), or the stand-in a test forced."""
        if self._msvcrt is None:
            import msvcrt  # only on Windows

            self._msvcrt = msvcrt
        return self._msvcrt

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__ if not k.startswith("_"))
        return f"Platform({fields})"


def preset(name: str) -> Platform:
    """The capabilities of ``name`` (``linux``, ``macos``, ``windows``; anything else is a BSD-like
    POSIX system), whatever system this is."""
    if name == LINUX:
        return Platform(
            LINUX,
            proc=True,
            locking="flock",
            observer="inotify",
            break_signal=None,
            windows_names=False,
            fold_case=False,
        )
    if name == WINDOWS:
        return Platform(
            WINDOWS,
            proc=False,
            locking="msvcrt",
            observer="polling",
            break_signal=getattr(signal, "SIGBREAK", None),
            windows_names=True,
            fold_case=True,
        )
    # macOS's file systems ignore case unless formatted otherwise; a BSD's do not.
    return Platform(
        name,
        proc=False,
        locking="flock",
        observer="polling",
        break_signal=None,
        windows_names=False,
        fold_case=name == MACOS,
    )


def _detect() -> Platform:
    if sys.platform.startswith("linux"):
        return preset(LINUX)
    if sys.platform == "win32":
        return preset(WINDOWS)
    if sys.platform == "darwin":
        return preset(MACOS)
    return preset(sys.platform)


_current = _detect()


def current() -> Platform:
    """The platform amltrack acts for: this system's, unless a test forced another."""
    return _current


@contextlib.contextmanager
def forced(
    name: str | None = None,
    *,
    proc: bool = _UNSET,
    locking: str = _UNSET,
    observer: str = _UNSET,
    break_signal: int | None = _UNSET,
    windows_names: bool = _UNSET,
    fold_case: bool = _UNSET,
    msvcrt: Any = _UNSET,
) -> Iterator[Platform]:
    """Act as platform ``name`` (this system's when None), with any capability changed, until the
    block ends. For tests: it is process-wide, so every thread sees it."""
    global _current
    base = preset(name) if name is not None else _current
    changes = {
        "proc": proc,
        "locking": locking,
        "observer": observer,
        "break_signal": break_signal,
        "windows_names": windows_names,
        "fold_case": fold_case,
    }
    kw: dict[str, Any] = {k: (getattr(base, k) if v is _UNSET else v) for k, v in changes.items()}
    new = Platform(base.name, **kw, msvcrt=base._msvcrt if msvcrt is _UNSET else msvcrt)
    old, _current = _current, new
    try:
        yield new
    finally:
        _current = old
