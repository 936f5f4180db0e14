"""The outputs mirror: every file written under ``./outputs`` becomes an artifact of the run.

Events are hints, not a log (``../shared/notes/watchdog-behaviour.md`` measured why): the inotify
handler only marks paths dirty, and a copier thread decides when a file is ready, copies it through
a temporary file with a stability check, and sweeps the whole folder periodically, after an inotify
queue overflow, and once more, completely, when the run ends. The final sweep is what makes the
mirror complete; the live path is an early copy.

Files of ``CAP`` bytes (512 MiB) or more are not stored: they are recorded as rejected. Symlinks and
other non-regular files are not followed: they are recorded as skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEventHandler

from . import _format as fmt
from ._errors import InvalidPathError
from ._files import Artifacts, SourceChanged, TooLarge, signature

CAP = 536_870_912  # 512 MiB: a file this large or larger is rejected
SETTLE = 0.5  # s after a close or a move-in before copying (lets a *.tmp be renamed away first)
QUIET = 2.0  # s without events before a file that was never closed is copied
SWEEP_INTERVAL = 30.0  # s between full reconciliation sweeps
RECOPY_BIG_AFTER = 30.0  # s: a file over BIG is copied again at most this often while it changes
BIG = 64 * 1024 * 1024
FINAL_TIMEOUT = 120.0  # s the final sweep may take before it reports what it could not copy
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "fuse")
PREFIX = "outputs"

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
    """The file system type of the mount holding ``path``, from /proc/mounts (Linux)."""
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


class _Dirty:
    __slots__ = ("t", "closed")

    def __init__(self, t: float, closed: bool) -> None:
        self.t = t
        self.closed = closed


class _OverflowWatch(logging.Handler):
    """watchdog reports a lost inotify queue only as a log WARNING; turn it into a rescan."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__(logging.WARNING)
        self.mirror = mirror

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            if "overflow" in record.getMessage().lower():
                self.mirror.request_rescan(delay=1.0)


class Mirror:
    """Mirror ``folder`` into ``run_dir``'s artifacts as ``outputs/<relative path>``.

        m = Mirror(Path("outputs"), run_dir)
        m.start()
        ...
        report = m.stop()      # final sweep: report["failed"] lists what could not be copied

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
        settle: float = SETTLE,
        quiet: float = QUIET,
        sweep_interval: float = SWEEP_INTERVAL,
        final_timeout: float = FINAL_TIMEOUT,
        recopy_big_after: float = RECOPY_BIG_AFTER,
    ) -> None:
        self.folder = Path(folder).absolute()
        self.artifacts = Artifacts(run_dir)
        self.keep_deleted = keep_deleted
        self.settle = settle
        self.quiet = quiet
        self.sweep_interval = sweep_interval
        self.final_timeout = final_timeout
        self.recopy_big_after = recopy_big_after
        self._polling = polling
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._dirty: dict[str, _Dirty] = {}
        self._walks: set[str] = set()
        self._rescan_at: float | None = None
        # rel path -> (status, signature or None, time of the last copy)
        self._state: dict[str, tuple[str, tuple[int, int, int, int] | None, float]] = {}
        self._warned: set[str] = set()
        self._observer: Any = None
        self._copier = threading.Thread(target=self._run, name="amltrack-mirror", daemon=True)
        self._overflow = _OverflowWatch(self)
        self.mode = "off"

    # ----------------------------------------------------------------- life

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
        logging.getLogger("watchdog").addHandler(self._overflow)
        self._observer = self._make_observer()
        self._copier.start()
        self.request_rescan(delay=0.0)  # files already there when the run starts

    def _make_observer(self) -> Any:
        from watchdog.observers.polling import PollingObserver

        handler = _Handler(self)
        polling = self._polling
        if polling is None:
            kind = _fs_type(self.folder) or ""
            if kind.split(".")[0] in NETWORK_FS:
                _warn(
                    f"amltrack: {self.folder} is on a {kind} file system, where inotify sees no "
                    "changes made by other machines; mirroring it by polling every 2 s"
                )
                polling = True
        if not polling:
            try:
                from watchdog.observers.inotify import InotifyObserver

                obs = InotifyObserver()
                obs.schedule(handler, str(self.folder), recursive=True, follow_symlink=False)
                obs.start()
                self.mode = "inotify"
                return obs
            except (OSError, ImportError) as e:
                _warn(
                    f"amltrack: inotify cannot watch {self.folder} ({e}); mirroring it by polling "
                    "every 2 s instead (raise fs.inotify.max_user_watches to avoid this)"
                )
        obs = PollingObserver(timeout=2.0)
        obs.schedule(handler, str(self.folder), recursive=True)
        obs.start()
        self.mode = "polling"
        return obs

    def stop(self, timeout: float | None = None) -> dict[str, Any]:
        """Stop watching, copy everything that differs, and report what could not be copied."""
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(10)
        logging.getLogger("watchdog").removeHandler(self._overflow)
        self._stopping.set()
        self._wake.set()
        if self._copier.is_alive():
            self._copier.join(10)
        report = self._final_sweep(self.final_timeout if timeout is None else timeout)
        self.artifacts.close()
        return report

    def request_rescan(self, delay: float) -> None:
        with self._lock:
            self._rescan_at = time.monotonic() + delay
        if delay <= 0:
            self._wake.set()

    # ----------------------------------------------------------------- events (no I/O here)

    def mark(self, path: str, closed: bool = False) -> None:
        with self._lock:
            d = self._dirty.get(path)
            now = time.monotonic()
            if d is None:
                self._dirty[path] = _Dirty(now, closed)
            else:
                d.t = now
                d.closed = closed

    def mark_walk(self, path: str) -> None:
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
                        break
                    try:
                        self._sync_path(path, final=False)
                    except Exception as e:  # this file only: try it again later, go on with the rest
                        self._warn_once(
                            f"copy:{path}",
                            f"amltrack: could not copy outputs file {path} "
                            f"({type(e).__name__}: {e}); will try again",
                        )
                        self.mark(path)
            except Exception as e:  # the mirror must never stop, nor stop training
                self._warn_once(
                    "loop",
                    f"amltrack: the outputs mirror hit {type(e).__name__}: {e}; "
                    "it carries on and the final sweep will catch up",
                )

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
        for root, dirs, files in os.walk(top, followlinks=False):
            base = Path(root)
            for name in files:
                yield base / name
            for name in dirs:  # a link to a directory is listed here; it is a non-regular entry
                p = base / name
                if p.is_symlink():
                    yield p

    def _rel(self, path: Path) -> str | None:
        try:
            rel = path.absolute().relative_to(self.folder)
        except ValueError:
            return None
        return rel.as_posix() if rel.parts else None

    def _reconcile(self) -> None:
        """Compare the whole folder with what is stored: catches lost events and unwatched dirs."""
        seen: set[str] = set()
        for f in self._walk(self.folder):
            rel = self._rel(f)
            if rel is None:
                continue
            seen.add(rel)
            state = self._state.get(rel)
            try:
                sig = signature(os.lstat(f))
            except FileNotFoundError:
                continue
            if state is None or state[1] != sig:
                self.mark(str(f))
        for rel, state in list(self._state.items()):
            if rel not in seen and state[0] != "deleted":
                self.mark(str(self.folder / rel))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _warn(message)

    def _sync_path(self, path: str, *, final: bool) -> str:
        """Bring one path's stored state in line with the folder. Returns what happened."""
        p = Path(path)
        rel = self._rel(p)
        if rel is None:
            return "outside"
        name = f"{PREFIX}/{rel}"
        state = self._state.get(rel)
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
        import stat as stat_mod

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
        try:
            self.artifacts.put(
                name,
                src=p,
                source="outputs",
                max_size=CAP,
                stable=True,
                extra={"mtime": fmt.utc_iso(st.st_mtime_ns / 1e9)},
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

    def _final_sweep(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        report: dict[str, Any] = {"stored": 0, "rejected": 0, "skipped": 0, "deleted": 0, "failed": []}
        paths = {str(f) for f in self._walk(self.folder)} if self.folder.is_dir() else set()
        paths |= {str(self.folder / rel) for rel, s in self._state.items() if s[0] != "deleted"}
        with self._lock:
            paths |= set(self._dirty)
            self._dirty.clear()
        for path in sorted(paths):
            if time.monotonic() > deadline:
                report["failed"].append({"path": path, "reason": "the final sweep ran out of time"})
                continue
            try:
                result = self._sync_path(path, final=True)
                if result == "changed":  # once more: it may have settled
                    with self._lock:
                        self._dirty.pop(path, None)
                    result = self._sync_path(path, final=True)
                    if result == "changed":
                        with self._lock:
                            self._dirty.pop(path, None)
                        rel = self._rel(Path(path)) or path
                        self.artifacts.record(
                            f"{PREFIX}/{rel}",
                            "failed",
                            source="outputs",
                            reason="the file kept changing while it was copied at run end",
                        )
                        report["failed"].append({"path": path, "reason": "kept changing while copied"})
                        continue
                if result in report and result != "failed":
                    report[result] += 1
            except Exception as e:
                report["failed"].append({"path": path, "reason": f"{type(e).__name__}: {e}"})
        if report["failed"]:
            shown = ", ".join(f["path"] for f in report["failed"][:5])
            _warn(
                f"amltrack: the outputs mirror could not copy {len(report['failed'])} file(s) at run "
                f"end: {shown}"
            )
        return report


class _Handler(FileSystemEventHandler):
    """watchdog event handler: marks paths dirty and nothing else (no I/O on watchdog's thread)."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__()
        self.m = mirror

    def dispatch(self, event: Any) -> None:
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        if kind in ("opened", "closed_no_write"):
            return
        if event.is_directory:
            if kind in ("created", "moved"):
                self.m.mark_walk(os.fsdecode(event.dest_path) if kind == "moved" else src)
            if kind in ("deleted", "moved"):
                self.m.request_rescan(delay=0.5)  # its files are gone (or renamed): reconcile
            return
        if kind == "moved":
            self.m.mark(src)  # gone from here
            self.m.mark(os.fsdecode(event.dest_path), closed=True)
        elif kind == "closed":
            self.m.mark(src, closed=True)
        else:  # created, modified, deleted, attrib
            self.m.mark(src)


class MirrorProcess:
    """The same mirror in a helper process, so its inotify handling and copying never compete with
    the training loop for the GIL (measured: about 0.5 ms of Python per file otherwise).

    The helper stops when its stdin closes: at ``stop()``, or when this process dies, even by
    SIGKILL, so the outputs of a crashed run are still swept into the store.
    """

    def __init__(
        self, folder: Path, run_dir: Path, *, keep_deleted: bool = False, final_timeout: float = FINAL_TIMEOUT
    ) -> None:
        import subprocess
        import sys

        self.folder = Path(folder).absolute()
        self.final_timeout = final_timeout
        self.folder.mkdir(parents=True, exist_ok=True)
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
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, start_new_session=True
        )  # Ctrl-C at the terminal is for training

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


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    import orjson

    ap = argparse.ArgumentParser(
        prog="python -m amltrack._mirror",
        description="Mirror a folder into a run until stdin closes (internal).",
    )
    ap.add_argument("folder")
    ap.add_argument("run_dir")
    ap.add_argument("--keep-deleted", action="store_true")
    ap.add_argument("--final-timeout", type=float, default=FINAL_TIMEOUT)
    a = ap.parse_args(argv)
    global _plain_warnings
    _plain_warnings = True
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # training comes first: on a busy machine the mirror waits, the final sweep catches up
    mirror = Mirror(
        Path(a.folder), Path(a.run_dir), keep_deleted=a.keep_deleted, final_timeout=a.final_timeout
    )
    mirror.start()
    sys.stdin.buffer.read()  # until the training process finishes the run, or dies
    report = mirror.stop()
    sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
