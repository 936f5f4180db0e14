"""The outputs mirror: every file written under ``./outputs`` becomes an artifact of the run.

Events are hints, not a log (``docs/outputs.md``, "What the mirror does not trust", says why): the inotify
handler only marks paths dirty, and a copier thread decides when a file is ready, copies it through
a temporary file with a stability check, and sweeps the whole folder periodically, after an inotify
queue overflow, and once more, completely, when the run ends. The final sweep is what makes the
mirror complete; the live path is an early copy.

Files of ``CAP`` bytes (512 MiB) or more are not stored: they are recorded as rejected. Symlinks and
other non-regular files are not followed, nor is any path that passes through a linked folder: they
are recorded as skipped. The run's own store is left out when it lies inside the folder.

A run's outputs are the files written during it. A snapshot of the folder (a signature per entry)
is taken when the run starts, before anything watches it; an entry whose signature still equals its
snapshot is recorded once as ``preexisting`` and not copied, so files an earlier run left behind do
not become artifacts of every later one. A change (size, mtime, ctime or inode) makes it an output
of this run like any other. With the helper process, the training process takes the snapshot and
hands it over, so a file written before the helper is up is not mistaken for an old one.

On Linux, inotify is replaced by polling, with a warning, on a network file system, when the folder
cannot be watched, and when a sweep finds a new file no event reported (watchdog ignores a failed
watch on a subfolder, which is what the watch limit, ``fs.inotify.max_user_watches``, looks like).
On macOS and Windows the mirror polls from the start (``_platform``): nothing it promises rests on
close events, which only inotify gives, and the polling observer is what the tests run here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat as stat_mod
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEventHandler

from . import _format as fmt
from . import _platform
from ._errors import InvalidOutputsError, InvalidPathError
from ._files import Artifacts, SourceChanged, TooLarge, signature

CAP = 536_870_912  # 512 MiB: a file this large or larger is rejected
SETTLE = 0.5  # s after a close or a move-in before copying (lets a *.tmp be renamed away first)
QUIET = 2.0  # s without events before a file that was never closed is copied
SWEEP_INTERVAL = 30.0  # s between full reconciliation sweeps
RECOPY_BIG_AFTER = 30.0  # s: a file over BIG is copied again at most this often while it changes
BIG = 64 * 1024 * 1024
FINAL_TIMEOUT = 120.0  # s the final sweep may take before it reports what it could not copy
COPIER_JOIN = 10.0  # s stop() waits for the copier to leave; a copy gives way within a block anyway
POLL_INTERVAL = 2.0  # s between polls where inotify is not used
# s: a file that no event reported, found by one sweep and still unreported at a later one, this
# long after it was made, means its folder is unwatched; generous, so that a busy machine's slow
# event delivery does not count
UNREPORTED_AFTER = 10.0
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "fuse")
PREFIX = "outputs"
PREEXISTING = "in the outputs folder before the run started and not changed by it; not stored"

Sig = tuple[int, int, int, int]

_log = logging.getLogger("amltrack.mirror")


_plain_warnings = False  # set in the helper process, whose stderr is the training process's


def _warn(message: str) -> None:
    # Called from background threads: a warnings filter set to "error" must not kill the mirror.
    with contextlib.suppress(Exception):
        if _plain_warnings:
            print(message, file=sys.stderr, flush=True)
        else:
            warnings.warn(message, UserWarning, stacklevel=2)


def _fs_type(path: Path) -> str | None:
    """The file system type of the mount holding ``path``, from /proc/mounts (Linux; else None)."""
    if not _platform.current().proc:
        return None
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f if len(line.split()) >= 3]
    except OSError:
        return None
    best, kind = "", None
    target = str(path.resolve())
    for mount, fstype in mounts:
        mount = mount.replace("\\040", " ")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def _max_user_watches() -> str:
    if not _platform.current().proc:
        return "unknown"
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def store_of(run_dir: Path) -> Path:
    """The store holding ``run_dir`` (``<store>/runs/<id>``); ``run_dir`` itself for a bare folder."""
    run_dir = Path(run_dir).absolute()
    return run_dir.parent.parent if run_dir.parent.name == fmt.RUNS_DIR else run_dir


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_folder(folder: Path, store: Path) -> Path | None:
    """Check that ``folder`` can be mirrored into ``store``: the store when it lies inside the
    folder (it is then left out of the mirror), else None. A folder inside the store (or the store
    itself) cannot be mirrored: InvalidOutputsError, naming both."""
    real_folder = os.path.realpath(folder)
    real_store = os.path.realpath(store)
    if _within(real_folder, real_store):
        raise InvalidOutputsError(
            f"outputs={os.fspath(folder)!r} is inside the store {os.fspath(store)}: mirroring it would copy "
            "the store into itself; pass another outputs= folder (or outputs=None), or another store="
        )
    return Path(store) if _within(real_store, real_folder) else None


class _Tree:
    """The mirrored folder: its path as given and its real path, the store left out of it, and
    its walk. Shared by the mirror and by the snapshot a training process takes for its helper."""

    def __init__(self, folder: Path, run_dir: Path) -> None:
        self.folder = Path(folder).absolute()
        # The folder itself may be a link (outputs -> /scratch/...): watch and compare its real path.
        self.real = Path(os.path.realpath(self.folder))
        self.folder_str = str(self.folder)
        self.real_str = str(self.real)
        inside = check_folder(self.folder, store_of(run_dir))
        # The store (or, for a bare run folder, the run itself) is left out when it lies inside the
        # folder: mirroring it would copy the copies, forever.
        self.excluded: tuple[str, ...] = ()
        if inside is not None:
            self.excluded = (Path(os.path.realpath(inside)).relative_to(self.real).as_posix(),)

    def left_out(self, path: str) -> bool:
        if not self.excluded or not path.startswith(self.folder_str + os.sep):
            return False
        rel = path[len(self.folder_str) + 1 :]
        return any(_within(rel, e) for e in self.excluded)

    def walk(self, top: Path) -> Iterator[Path]:
        if top.is_symlink():  # a link to a folder: one non-regular entry, never walked into
            yield top
            return
        for root, dirs, files in os.walk(top, followlinks=False):
            base = Path(root)
            if self.excluded:
                dirs[:] = [n for n in dirs if not self.left_out(str(base / n))]
            for name in files:
                yield base / name
            for name in dirs:  # a link to a directory is listed here; it is a non-regular entry
                p = base / name
                if p.is_symlink():
                    yield p

    def rel(self, path: Path) -> str | None:
        p = path.absolute()
        for base in (self.folder, self.real):
            try:
                rel = p.relative_to(base)
            except ValueError:
                continue
            return rel.as_posix() if rel.parts else None
        return None

    def snapshot(self) -> dict[str, Sig]:
        """Every entry under the folder now, by relative path: what a run starting now did not write."""
        out: dict[str, Sig] = {}
        if not self.folder.is_dir():
            return out
        for f in self.walk(self.folder):
            rel = self.rel(f)
            if rel is None:
                continue
            with contextlib.suppress(OSError):  # gone already: nothing to leave out
                out[rel] = signature(os.lstat(f))
        return out


def snapshot(folder: Path, run_dir: Path) -> dict[str, Sig]:
    """The signature of every entry under ``folder`` now, by path relative to it: taken when a run
    starts, it tells the files the run wrote from those it found (``preexisting``)."""
    return _Tree(folder, run_dir).snapshot()


class _Cancelled(Exception):
    """The mirror is stopping: a live copy gives way to the final sweep."""


class _OutOfTime(Exception):
    """The final sweep's deadline passed in the middle of a copy."""


class _Dirty:
    __slots__ = ("t", "closed")

    def __init__(self, t: float, closed: bool) -> None:
        self.t = t  # the last event (a sweep's mark does not move it)
        self.closed = closed


class _OverflowWatch(logging.Handler):
    """watchdog reports a lost inotify queue only as a log WARNING; turn it into a rescan."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__(logging.WARNING)
        self.mirror = mirror

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            if "overflow" in record.getMessage().lower():
                self.mirror.overflowed()


class Mirror:
    """Mirror ``folder`` into ``run_dir``'s artifacts as ``outputs/<relative path>``.

        m = Mirror(Path("outputs"), run_dir)
        m.start()
        ...
        report = m.stop()      # final sweep: report["failed"] lists what could not be copied

    ``snapshot``: the folder's entries when the run started (``snapshot()``), taken by ``start()``
    when not given. An entry still as it was then is recorded once as ``preexisting``, not copied.

    ``polling``: True polls, False uses inotify (falling back to polling where it cannot), None
    (the default) takes the platform's choice (``_platform``: inotify on Linux, polling elsewhere).
    ``poll_interval``: seconds between polls.

    ``keep_deleted``: a file deleted from the folder is always marked ``deleted`` in the manifest;
    with ``keep_deleted=False`` (the default) its stored copy is removed too, so the stored
    ``outputs/`` matches the final folder (rotating checkpoints do not pile up); with True the last
    copy is kept.
    """

    def __init__(
        self,
        folder: Path,
        run_dir: Path,
        *,
        keep_deleted: bool = False,
        polling: bool | None = None,
        poll_interval: float = POLL_INTERVAL,
        settle: float = SETTLE,
        quiet: float = QUIET,
        sweep_interval: float = SWEEP_INTERVAL,
        final_timeout: float = FINAL_TIMEOUT,
        recopy_big_after: float = RECOPY_BIG_AFTER,
        unreported_after: float = UNREPORTED_AFTER,
        snapshot: dict[str, Sig] | None = None,
    ) -> None:
        self._tree = _Tree(folder, run_dir)
        self.folder = self._tree.folder
        self._real = self._tree.real
        self._folder_str = self._tree.folder_str
        self._real_str = self._tree.real_str
        self._excluded = self._tree.excluded
        # What was in the folder when the run started (None: take it at start()): an entry whose
        # signature still equals this one is not an output of this run.
        self._snapshot = snapshot
        self.artifacts = Artifacts(run_dir)
        self.keep_deleted = keep_deleted
        self.settle = settle
        self.quiet = quiet
        self.sweep_interval = sweep_interval
        self.final_timeout = final_timeout
        self.recopy_big_after = recopy_big_after
        self.unreported_after = unreported_after
        self._polling = polling
        self.poll_interval = poll_interval
        self._lock = threading.Lock()  # the dirty set, the walks, the rescan time
        # One thread at a time brings paths in line with the folder: the copier, or the final sweep
        # (which may start while a copier that outlived its join is still in a copy).
        self._sync_lock = threading.Lock()
        self._observer_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        self._dirty: dict[str, _Dirty] = {}
        self._walks: set[str] = set()
        self._rescan_at: float | None = None
        # New files a sweep found before any event reported them -> their ctime (see _reconcile)
        self._suspects: dict[str, float] = {}
        # rel path -> (status, signature or None, time of the last copy)
        self._state: dict[str, tuple[str, Sig | None, float]] = {}
        self._warned: set[str] = set()
        self._observer: Any = None
        self._copier = threading.Thread(target=self._run, name="amltrack-mirror", daemon=True)
        self._overflow = _OverflowWatch(self)
        self._started_wall = 0.0
        self._overflow_wall = 0.0
        self._deadline: float | None = None
        self.overflows = 0
        self.mode = "off"

    # ----------------------------------------------------------------- life

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
        logging.getLogger("watchdog").addHandler(self._overflow)
        self._started_wall = time.time()
        if self._snapshot is None:  # before the observer: whatever it reports is this run's
            self._snapshot = self._tree.snapshot()
        with self._observer_lock:
            self._observer = self._make_observer()
        self._copier.start()
        self.request_rescan(delay=0.0)  # files already there when the run starts

    def _make_observer(self) -> Any:
        polling = self._polling
        if polling is None and _platform.current().observer == "polling":
            polling = True  # macOS, Windows: no inotify, and no close events to rely on
        if polling is None:
            kind = _fs_type(self.folder) or ""
            if kind.split(".")[0] in NETWORK_FS:
                _warn(
                    f"amltrack: {self.folder} is on a {kind} file system, where inotify sees no "
                    f"changes made by other machines; mirroring it by polling every {self.poll_interval:g} s"
                )
                polling = True
        if not polling:
            obs = None
            try:
                from watchdog.observers.inotify import InotifyObserver

                obs = InotifyObserver()
                obs.schedule(_Handler(self), self._real_str, recursive=True, follow_symlink=False)
                obs.start()
                self.mode = "inotify"
                return obs
            except (OSError, ImportError) as e:
                if obs is not None:
                    with contextlib.suppress(Exception):
                        obs.unschedule_all()
                _warn(
                    f"amltrack: inotify cannot watch {self.folder} ({e}); mirroring it by polling "
                    f"every {self.poll_interval:g} s instead (raise fs.inotify.max_user_watches to avoid this)"
                )
        return self._start_polling()

    def _start_polling(self) -> Any:
        # lstat, not stat: watchdog's default poller follows symlinks, into folders outside.
        try:
            from watchdog.observers.polling import PollingObserverVFS

            obs: Any = PollingObserverVFS(os.lstat, os.scandir, polling_interval=self.poll_interval)
        except ImportError:  # pragma: no cover - an old watchdog: _sync_path still skips linked paths
            from watchdog.observers.polling import PollingObserver

            obs = PollingObserver(timeout=self.poll_interval)
        obs.schedule(_Handler(self), self._real_str, recursive=True)
        obs.start()
        self.mode = "polling"
        return obs

    def _switch_to_polling(self, why: str) -> None:
        """From the copier thread: inotify misses changes here; poll instead, and say so once."""
        with self._observer_lock:
            if self._closed or self.mode != "inotify":
                return
            old, self._observer = self._observer, None
        with self._lock:
            self._suspects.clear()
        if old is not None:
            with contextlib.suppress(Exception):
                old.stop()
                old.join(10)
        self._warn_once(
            "polling",
            f"amltrack: {why}; mirroring {self.folder} by polling every {self.poll_interval:g} s instead "
            "(raise fs.inotify.max_user_watches to avoid this)",
        )
        with self._observer_lock:
            if self._closed:
                return
            self._observer = self._start_polling()
        self.request_rescan(delay=0.0)

    def stop(self, timeout: float | None = None) -> dict[str, Any]:
        """Stop watching, copy everything that differs, and report what could not be copied.

        ``timeout`` (default ``final_timeout``) bounds the final sweep, copies included; what it
        had no time for is reported in ``failed``.
        """
        with self._observer_lock:
            self._closed = True
            obs, self._observer = self._observer, None
        if obs is not None:
            with contextlib.suppress(Exception):
                obs.stop()
                obs.join(10)
        logging.getLogger("watchdog").removeHandler(self._overflow)
        self._stopping.set()  # a live copy gives way at its next block
        self._wake.set()
        if self._copier.is_alive():
            self._copier.join(COPIER_JOIN)
        deadline = time.monotonic() + (self.final_timeout if timeout is None else timeout)
        report = self._final_sweep(deadline)
        self.artifacts.close()
        return report

    def request_rescan(self, delay: float) -> None:
        with self._lock:
            self._rescan_at = time.monotonic() + delay
        if delay <= 0:
            self._wake.set()

    def overflowed(self) -> None:
        """watchdog lost inotify events: rescan once the burst is over (about 1 s after the last)."""
        self.overflows += 1
        self._overflow_wall = time.time()
        with self._lock:
            self._suspects.clear()  # their events may be among the lost ones
        self.request_rescan(delay=1.0)

    # ----------------------------------------------------------------- events (no I/O here)

    def norm(self, path: str) -> str:
        """An event's path, as a path under ``folder`` (events name the real, resolved folder)."""
        if self._real_str != self._folder_str and _within(path, self._real_str):
            return self._folder_str + path[len(self._real_str) :]
        return path

    def _left_out(self, path: str) -> bool:
        return self._tree.left_out(path)

    def mark(self, path: str, closed: bool = False, *, sweep: bool = False) -> None:
        """``path`` may differ from its stored copy: copy it once it is ready. An event (or a walk,
        or a retry) restarts its wait; a sweep's mark does not, so frequent sweeps cannot keep a
        file from ever becoming ready."""
        if self._left_out(path):
            return
        with self._lock:
            if not sweep:
                self._suspects.pop(path, None)  # reported after all
            d = self._dirty.get(path)
            now = time.monotonic()
            if d is None:
                self._dirty[path] = _Dirty(now, closed)
            elif not sweep:
                d.t = now
                d.closed = closed

    def mark_walk(self, path: str) -> None:
        if self._left_out(path):
            return
        with self._lock:
            self._walks.add(path)
        self._wake.set()

    # ----------------------------------------------------------------- the copier

    def _run(self) -> None:
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                with self._sync_lock:
                    last_sweep = self._step(last_sweep)
            except Exception as e:  # the mirror must never stop, nor stop training
                self._warn_once(
                    "loop",
                    f"amltrack: the outputs mirror hit {type(e).__name__}: {e}; "
                    "it carries on and the final sweep will catch up",
                )

    def _step(self, last_sweep: float) -> float:
        now = time.monotonic()
        with self._lock:
            walks, self._walks = self._walks, set()
            rescan = self._rescan_at is not None and now >= self._rescan_at
            if rescan:
                self._rescan_at = None
        for d in walks:
            for f in self._walk(Path(d)):
                self.mark(str(f))
        if rescan or now - last_sweep >= self.sweep_interval:
            last_sweep = now
            self._reconcile()
        for path in self._ready(now):
            if self._stopping.is_set():
                self.mark(path)  # the final sweep takes it from here
                continue
            try:
                self._sync_path(path, final=False)
            except _Cancelled:
                self.mark(path)
            except Exception as e:  # this file only: try it again later, go on with the rest
                self._warn_once(
                    f"copy:{path}",
                    f"amltrack: could not copy outputs file {path} ({type(e).__name__}: {e}); will try again",
                )
                self.mark(path)
        return last_sweep

    def _ready(self, now: float) -> list[str]:
        out = []
        with self._lock:
            for path, d in list(self._dirty.items()):
                wait = self.settle if d.closed else self.quiet
                if now - d.t >= wait:
                    out.append(path)
                    del self._dirty[path]
        return out

    def _walk(self, top: Path) -> Iterator[Path]:
        return self._tree.walk(top)

    def _rel(self, path: Path) -> str | None:
        return self._tree.rel(path)

    def _reconcile(self) -> None:
        """Compare the whole folder with what is stored: catches lost events and unwatched dirs.

        A file made after the mirror started (and after any queue overflow) that no event has
        reported is a suspect. One that a later sweep finds still unreported, ``unreported_after``
        seconds after it was made, means inotify is not watching its folder: watchdog ignores a
        failed watch below the top, which is what the watch limit looks like.
        """
        seen: set[str] = set()
        detect = self.mode == "inotify"
        lost = None
        if detect:  # suspects of earlier sweeps; an event since has cleared the reported ones
            made_before = time.time() - self.unreported_after
            with self._lock:
                lost = next((p for p, ctime in self._suspects.items() if ctime < made_before), None)
        made_after = max(self._started_wall, self._overflow_wall + 1.0)
        for f in self._walk(self.folder):
            rel = self._rel(f)
            if rel is None:
                continue
            seen.add(rel)
            state = self._state.get(rel)
            try:
                st = os.lstat(f)
            except OSError:
                continue
            sig = signature(st)
            if state is None or state[1] != sig:
                path = str(f)
                if detect and state is None and st.st_ctime > made_after:
                    with self._lock:
                        if path not in self._dirty:
                            self._suspects.setdefault(path, st.st_ctime)
                self.mark(path, sweep=True)
        for rel, state in list(self._state.items()):
            if rel not in seen and state[0] != "deleted":
                self.mark(str(self.folder / rel), sweep=True)
        if lost is not None:
            self._switch_to_polling(
                f"inotify reported no event for {lost}, a new file: a folder under {self.folder} is "
                "not watched, most likely because the inotify watch limit (fs.inotify.max_user_watches "
                f"= {_max_user_watches()}) is reached"
            )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _warn(message)

    def _progress_live(self, copied: int) -> None:
        if self._stopping.is_set():
            raise _Cancelled

    def _progress_final(self, copied: int) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise _OutOfTime

    def _sync_path(self, path: str, *, final: bool, copy: bool = True) -> str:
        """Bring one path's stored state in line with the folder. Returns what happened; with
        ``copy=False``, "needs_copy" where a copy would be made."""
        rel = self._rel(Path(path))
        if rel is None or any(_within(rel, e) for e in self._excluded):
            return "outside"
        p = self.folder / rel
        name = f"{PREFIX}/{rel}"
        state = self._state.get(rel)
        if p.parent != self.folder:
            # Never through a link: a folder in the path that is a symlink (inside or outside)
            # makes the real parent differ from the lexical one.
            lexical = os.path.join(self._real_str, os.path.dirname(rel))
            if os.path.realpath(p.parent) != lexical:
                self._record(
                    rel,
                    "skipped",
                    name,
                    None,
                    size=None,
                    reason="inside a linked folder; links are not followed",
                )
                return "skipped"
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return self._gone(rel, name, state)
        except OSError as e:
            self._warn_once(rel, f"amltrack: cannot read outputs file {p}: {e}; it is not mirrored")
            return "error"
        sig = signature(st)
        if state is not None and state[1] == sig and state[0] != "deleted":
            return "unchanged"
        try:
            fmt.check_artifact_path(name)
        except InvalidPathError as e:
            self._record(rel, "skipped", name, sig, size=st.st_size, reason=e.reason)
            return "skipped"
        if self._snapshot and self._snapshot.get(rel) == sig:
            # Left by an earlier run (or by hand) and untouched by this one: not this run's output.
            size = st.st_size if stat_mod.S_ISREG(st.st_mode) else None
            self._record(rel, "preexisting", name, sig, size=size, reason=PREEXISTING)
            return "preexisting"
        if not stat_mod.S_ISREG(st.st_mode):
            kind = "a symlink" if stat_mod.S_ISLNK(st.st_mode) else "not a regular file"
            self._record(rel, "skipped", name, sig, size=None, reason=f"{kind}; links are not followed")
            return "skipped"
        if st.st_size >= CAP:
            return self._reject(rel, name, sig, st.st_size, p)
        if (
            not final
            and state is not None
            and state[0] == "stored"
            and st.st_size > BIG
            and time.monotonic() - state[2] < self.recopy_big_after
        ):
            self.mark(path)  # a big file still changing: copy it again later, not on every write
            return "deferred"
        if not copy:
            return "needs_copy"
        try:
            self.artifacts.put(
                name,
                src=p,
                source="outputs",
                max_size=CAP,
                stable=True,
                extra={"mtime": fmt.utc_iso(st.st_mtime_ns / 1e9)},
                progress=self._progress_final if final else self._progress_live,
            )
        except FileNotFoundError:
            return self._gone(rel, name, state)
        except TooLarge as e:
            return self._reject(rel, name, sig, e.size, p, grew=True)
        except SourceChanged:
            self.mark(path)
            return "changed"
        self._state[rel] = ("stored", sig, time.monotonic())
        return "stored"

    def _record(self, rel: str, status: str, name: str, sig: Any, *, size: int | None, reason: str) -> None:
        state = self._state.get(rel)
        if state is not None and state[0] == status and state[1] == sig:
            return
        if state is not None and state[0] == "stored":
            self.artifacts.remove(name)
        self.artifacts.record(name, status, source="outputs", size=size, reason=reason)
        self._state[rel] = (status, sig, time.monotonic())

    def _reject(self, rel: str, name: str, sig: Any, size: int, p: Path, grew: bool = False) -> str:
        how = "grew to at least" if grew else "is"
        reason = f"file {how} {size:,} bytes; files of {CAP:,} bytes (512 MiB) or more are not stored"
        self._warn_once(
            f"cap:{rel}",
            f"amltrack: outputs file {p} {how} {size:,} bytes; files of {CAP:,} bytes (512 MiB) or "
            "more are not stored, so the run records it as rejected",
        )
        self._record(rel, "rejected", name, sig, size=size, reason=reason)
        return "rejected"

    def _gone(self, rel: str, name: str, state: Any) -> str:
        if state is None or state[0] == "deleted":
            return "vanished"  # created and deleted before it was ever copied: not an error
        if not self.keep_deleted:
            self.artifacts.remove(name)
        kept = self.keep_deleted and state[0] == "stored"
        self.artifacts.record(
            name,
            "deleted",
            source="outputs",
            size=None,
            reason="deleted from the outputs folder" + ("; last copy kept" if kept else ""),
            kept=kept,
        )
        self._state[rel] = ("deleted", None, time.monotonic())
        return "deleted"

    def _fail(self, path: str, reason: str, report: dict[str, Any]) -> None:
        """The final sweep could not bring ``path`` up to date: say so in the manifest and the report.
        An earlier copy, if any, stays (``kept``)."""
        rel = self._rel(Path(path)) or path
        state = self._state.get(rel)
        kept = state is not None and state[0] == "stored"
        self.artifacts.record(f"{PREFIX}/{rel}", "failed", source="outputs", reason=reason, kept=kept)
        report["failed"].append({"path": path, "reason": reason})

    def _final_sweep(self, deadline: float) -> dict[str, Any]:
        report: dict[str, Any] = {"stored": 0, "rejected": 0, "skipped": 0, "deleted": 0, "failed": []}
        out_of_time = "the final sweep ran out of time"
        # A copier that outlived its join holds this until its copy gives way (at the next block).
        if not self._sync_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            report["failed"].append(
                {"path": str(self.folder), "reason": f"{out_of_time} (a copy did not stop)"}
            )
            _warn(f"amltrack: the outputs mirror could not sweep {self.folder} at run end: {out_of_time}")
            return report
        try:
            self._deadline = deadline
            self._sweep_all(report, out_of_time)
        finally:
            self._deadline = None
            self._sync_lock.release()
        if report["failed"]:
            shown = ", ".join(f["path"] for f in report["failed"][:5])
            _warn(
                f"amltrack: the outputs mirror could not copy {len(report['failed'])} file(s) at run "
                f"end: {shown}"
            )
        return report

    def _sweep_all(self, report: dict[str, Any], out_of_time: str) -> None:
        paths = {str(f) for f in self._walk(self.folder)} if self.folder.is_dir() else set()
        paths |= {str(self.folder / rel) for rel, s in self._state.items() if s[0] != "deleted"}
        with self._lock:
            paths |= set(self._dirty)
            self._dirty.clear()
        for path in sorted(paths):
            # Past the deadline nothing is copied, but everything is still looked at (an lstat
            # each): only files that needed a copy are reported as failed.
            copy = self._deadline is None or time.monotonic() <= self._deadline
            try:
                try:
                    result = self._sync_path(path, final=True, copy=copy)
                    if result == "changed":  # once more: it may have settled
                        with self._lock:
                            self._dirty.pop(path, None)
                        result = self._sync_path(path, final=True, copy=copy)
                        if result == "changed":
                            with self._lock:
                                self._dirty.pop(path, None)
                            self._fail(path, "the file kept changing while it was copied at run end", report)
                            continue
                except _OutOfTime:
                    result = "needs_copy"
                if result == "needs_copy":
                    self._fail(path, out_of_time, report)
                elif result in report and result != "failed":
                    report[result] += 1
            except Exception as e:
                report["failed"].append({"path": path, "reason": f"{type(e).__name__}: {e}"})


class _Handler(FileSystemEventHandler):
    """watchdog event handler: marks paths dirty and nothing else (no I/O on watchdog's thread)."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__()
        self.m = mirror

    def dispatch(self, event: Any) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        m = self.m
        src = m.norm(os.fsdecode(event.src_path))
        dest = m.norm(os.fsdecode(event.dest_path)) if kind == "moved" else ""
        if event.is_directory:
            if kind in ("created", "moved"):
                m.mark_walk(dest or src)  # walk it: files written before its watch existed
            if kind in ("deleted", "moved") and not m._left_out(src):
                m.request_rescan(delay=0.5)  # its files are gone (or renamed): reconcile
            return
        if kind == "moved":
            m.mark(src)  # gone from here
            m.mark(dest, closed=True)
        elif kind == "closed":
            m.mark(src, closed=True)
        else:  # created, modified, deleted, attrib
            m.mark(src)


CREATE_NEW_PROCESS_GROUP = 0x200  # Windows' creation flag (subprocess has it only there)


def _apart(plat: _platform.Platform) -> dict[str, Any]:
    """How the helper process is started apart from the terminal, so that Ctrl-C there is for
    training alone: in a session of its own (POSIX), or in a console process group of its own,
    where Ctrl-C is off (Windows). Ctrl-Break still reaches every process of a Windows console;
    the helper ignores it (``_ignore_console_interrupts``)."""
    if plat.windows:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


class MirrorProcess:
    """The same mirror in a helper process, so its inotify handling and copying never compete with
    the training loop for the GIL (measured: about 0.5 ms of Python per file otherwise).

    The helper stops when its stdin closes: at ``stop()``, or when this process dies, even by
    SIGKILL, so the outputs of a crashed run are still swept into the store.

    The snapshot of what was in the folder before the run is taken here, not in the helper: the
    helper takes a moment to start, and a file the run writes meanwhile is the run's own. It goes
    to the helper as the first line on its stdin.
    """

    def __init__(
        self, folder: Path, run_dir: Path, *, keep_deleted: bool = False, final_timeout: float = FINAL_TIMEOUT
    ) -> None:
        import subprocess
        import sys

        self.folder = Path(folder).absolute()
        self.final_timeout = final_timeout
        self.folder.mkdir(parents=True, exist_ok=True)
        found = _encode_snapshot(snapshot(self.folder, run_dir))
        args = [
            sys.executable,
            "-m",
            "amltrack._mirror",
            str(self.folder),
            str(run_dir),
            "--final-timeout",
            str(final_timeout),
        ]
        if keep_deleted:
            args.append("--keep-deleted")
        plat = _platform.current()
        if plat.observer == "polling":  # the training process's platform decides, forced or not
            args.append("--polling")
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, **_apart(plat)
        )
        with contextlib.suppress(OSError):  # the helper died at once: stop() says it left no report
            self._proc.stdin.write(found)  # type: ignore[union-attr]
            self._proc.stdin.flush()  # type: ignore[union-attr]

    def stop(self, timeout: float | None = None) -> dict[str, Any]:
        import subprocess

        proc = self._proc
        try:
            out, _ = proc.communicate(timeout=(self.final_timeout if timeout is None else timeout) + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            _warn(
                f"amltrack: the outputs mirror of {self.folder} did not finish its final sweep in time; "
                "files written at the very end may be missing from the run"
            )
            return {
                "stored": 0,
                "rejected": 0,
                "skipped": 0,
                "deleted": 0,
                "failed": [{"path": str(self.folder), "reason": "final sweep timed out"}],
            }
        try:
            return orjson_loads(out.strip().splitlines()[-1])
        except Exception:
            _warn(
                f"amltrack: the outputs mirror of {self.folder} exited with code {proc.returncode} "
                "without a report; files written at the very end may be missing from the run"
            )
            return {
                "stored": 0,
                "rejected": 0,
                "skipped": 0,
                "deleted": 0,
                "failed": [{"path": str(self.folder), "reason": f"exit code {proc.returncode}"}],
            }


def orjson_loads(data: bytes) -> Any:
    import orjson

    return orjson.loads(data)


def _encode_snapshot(found: dict[str, Sig]) -> bytes:
    """One JSON line. A name that is not valid UTF-8 is left out: the store cannot hold it, so the
    helper records it as skipped either way."""
    import orjson

    def utf8(rel: str) -> bool:
        try:
            rel.encode()
        except UnicodeEncodeError:
            return False
        return True

    return orjson.dumps({rel: sig for rel, sig in found.items() if utf8(rel)}) + b"\n"


def _read_snapshot(line: bytes) -> dict[str, Sig]:
    """The snapshot the training process sent; empty (everything is this run's) if it sent none."""
    try:
        found = orjson_loads(line)
        return {rel: (sig[0], sig[1], sig[2], sig[3]) for rel, sig in found.items()}
    except Exception:
        return {}


def _ignore_console_interrupts() -> None:
    """The helper ends when its stdin closes, never by the terminal's interrupts: a Ctrl-C or
    Ctrl-Break meant for training must not cut its final sweep short. (On POSIX it is in a session
    of its own and gets none; a Windows console sends Ctrl-Break to every process attached to it.)"""
    import signal

    sigs: list[int] = [signal.SIGINT]
    brk = _platform.current().break_signal
    if brk is not None:
        sigs.append(brk)
    for sig in sigs:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_IGN)


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    import orjson

    ap = argparse.ArgumentParser(
        prog="python -m amltrack._mirror",
        description="Mirror a folder into a run until stdin closes; stdin's first line is the "
        "folder's snapshot at run start (internal).",
    )
    ap.add_argument("folder")
    ap.add_argument("run_dir")
    ap.add_argument("--keep-deleted", action="store_true")
    ap.add_argument("--final-timeout", type=float, default=FINAL_TIMEOUT)
    ap.add_argument("--polling", action="store_true", help="poll instead of using inotify")
    a = ap.parse_args(argv)
    global _plain_warnings
    _plain_warnings = True
    _ignore_console_interrupts()
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # training comes first: on a busy machine the mirror waits, the final sweep catches up
    found = _read_snapshot(sys.stdin.buffer.readline())
    mirror = Mirror(
        Path(a.folder),
        Path(a.run_dir),
        keep_deleted=a.keep_deleted,
        final_timeout=a.final_timeout,
        snapshot=found,
        polling=True if a.polling else None,
    )
    mirror.start()
    sys.stdin.buffer.read()  # until the training process finishes the run, or dies
    report = mirror.stop()
    with contextlib.suppress(OSError):  # the training process may be gone (killed): nobody to tell
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
