"""File primitives shared by everything that writes into a run: locked appends of whole lines, and
artifacts copied in through a temporary file and renamed into place."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from . import _format as fmt
from ._errors import InvalidPathError

try:
    import fcntl
except ImportError:  # Windows: appends lock through msvcrt (see locked())
    fcntl = None  # type: ignore[assignment]
try:
    import resource
except ImportError:  # Windows: no file-size limit to check
    resource = None  # type: ignore[assignment]

from . import _platform

COPY_BLOCK = 1 << 20
# os.open on Windows opens in text mode (each \n written as \r\n) unless told O_BINARY, and has no
# O_CLOEXEC (its handles are not inherited anyway).
OPEN_FLAGS = getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
# On Windows a byte-range lock is mandatory: while it is held, nobody may read or write those bytes.
# So appenders lock one byte far past any end a JSON Lines file will reach, which readers never touch.
# Windows allows a lock beyond the end of a file. (1 TiB: a file position every file system takes.)
WINDOWS_LOCK_OFFSET = 1 << 40
LOCK_RETRY = (0.001, 0.05)  # s: the first and the longest wait between tries for a Windows lock


@contextlib.contextmanager
def locked(fd: int) -> Iterator[None]:
    """Hold the file's exclusive lock: every appender of a store's JSON Lines files takes it, in any
    process, so lines never interleave and a newcomer's torn-line check sees a finished file.

    ``flock`` on Linux and macOS; on Windows ``msvcrt.locking`` of the byte at WINDOWS_LOCK_OFFSET,
    taken by trying again until it is free (as ``flock`` waits), released when the block ends or the
    process dies. The file position is left where it was found."""
    plat = _platform.current()
    if plat.locking == "msvcrt":
        with _msvcrt_locked(fd, plat.msvcrt()):
            yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def _msvcrt_locked(fd: int, msvcrt: Any) -> Iterator[None]:
    # msvcrt.locking locks from the current position; LK_NBLCK fails at once when another process
    # holds the byte (LK_LOCK would try ten times, a second apart, then fail: too slow, and still
    # a failure to handle).
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    wait = LOCK_RETRY[0]
    while True:
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            break
        except OSError:
            time.sleep(wait)
            wait = min(wait * 2, LOCK_RETRY[1])
    os.lseek(fd, pos, os.SEEK_SET)
    try:
        yield
    finally:
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.lseek(fd, pos, os.SEEK_SET)


def _pread(fd: int, n: int, offset: int) -> bytes:
    """os.pread, or seek and read where there is none (Windows); callers hold the file's lock."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)
    finally:
        os.lseek(fd, pos, os.SEEK_SET)


def _check_size_limit(fd: int, n: int) -> None:
    """Fail before a write that a file-size limit (RLIMIT_FSIZE) would cut short mid-line."""
    if resource is None:
        return
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft != resource.RLIM_INFINITY and os.fstat(fd).st_size + n > soft:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))


def _end_torn_line(fd: int) -> None:
    """If a writer died mid-line, end that line so our first record does not get glued to it."""
    size = os.fstat(fd).st_size
    if size and _pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


class AppendFile:
    """A JSON Lines file that several threads and processes append whole lines to.

    Every appender holds the file's lock (``locked()``) while it writes, so the torn-line check of a
    newcomer sees a finished file, never another process's write in flight, and lines never interleave.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def append(self, chunks: list[bytes | memoryview]) -> int:
        """Write ``chunks`` (each a run of whole lines) in order; the offset the first one landed at.

        On failure ``chunks`` is left holding exactly the unwritten bytes, so a retry completes a
        torn line instead of leaving a fragment glued to a repeat.
        """
        with self._lock:
            fd = self._fd
            first = fd is None
            if fd is None:
                fd = self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | OPEN_FLAGS, 0o644)
            with locked(fd):
                if first:
                    _end_torn_line(fd)
                start = os.lseek(fd, 0, os.SEEK_END)
                while chunks:
                    view = memoryview(chunks[0])
                    try:
                        _check_size_limit(fd, len(view))
                        while view:
                            view = view[os.write(fd, view) :]
                    except OSError:
                        chunks[0] = bytes(view)
                        raise
                    del chunks[0]
                return start

    def append_json(self, obj: Any) -> None:
        self.append([orjson.dumps(obj) + b"\n"])

    def fsync(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None


def _parents(path: str) -> list[str]:
    """The folders an artifact path needs: ``a/b/c`` needs ``a`` and ``a/b``."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _first_inside(root: Path, path: str) -> str:
    """A path under the folder ``path`` to name in a message: a file near the top if there is one,
    else the deepest folder found (``path`` itself when it is empty)."""
    for _ in range(32):
        try:
            with os.scandir(root / path) as it:
                first = min(it, key=lambda e: (e.name.startswith("."), e.name), default=None)
        except OSError:
            return path
        if first is None:
            return path
        path = f"{path}/{first.name}"
        if not first.is_dir(follow_symlinks=False):
            return path
    return path


def _clash(path: str, other: str) -> InvalidPathError:
    """The error for an upload to ``path`` that clashes with the artifact file or folder ``other``."""
    if other == path:
        reason = "it is a folder of this run's artifacts, so it cannot be a file"
    elif other.startswith(path + "/"):
        reason = f"it is a folder of this run's artifacts (it holds {other!r}), so it cannot be a file"
    else:
        reason = f"{other!r} is a file of this run's artifacts, so it cannot be a folder"
    return InvalidPathError(path, reason, clashes_with=other)


def _folded(path: str) -> str:
    """The key under which a file system that ignores case holds ``path`` (macOS's also ignores the
    Unicode normal form, so both are folded)."""
    return unicodedata.normalize("NFC", path).casefold()


def _case_twin(root: Path, path: str) -> str | None:
    """An artifact on disk that is ``path`` to this file system but spelled otherwise (``Model.pt``
    for ``model.pt``), or None. Only a file system that ignores case finds ``path`` through a twin,
    so the folder is listed only when the path is found, to see whose name it is."""
    try:
        os.stat(root / path)
    except OSError:
        return None
    parts = path.split("/")
    for i, name in enumerate(parts):
        try:
            with os.scandir(root.joinpath(*parts[:i])) as it:
                names = [e.name for e in it]
        except OSError:
            return None
        if name in names:
            continue
        key = _folded(name)
        twin = next((n for n in names if _folded(n) == key), None)
        return "/".join([*parts[:i], twin]) if twin is not None else None
    return None


def _case_clash(path: str, other: str) -> InvalidPathError:
    return InvalidPathError(
        path,
        f"it differs only in case from {other!r}, another artifact of this run, and on "
        f"{_platform.current().name} both would be one file",
        clashes_with=other,
    )


class SourceChanged(Exception):
    """The file being copied changed while it was read; copy it again once it settles."""


class TooLarge(Exception):
    """The file reached the size cap while it was copied."""

    def __init__(self, size: int) -> None:
        self.size = size


def signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class Artifacts:
    """A run's ``artifacts/`` folder and its manifest ``artifacts.jsonl``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.root = run_dir / fmt.ARTIFACTS_DIR
        self.manifest = AppendFile(run_dir / fmt.MANIFEST_FILE)
        self.unsynced: list[Path] = []
        # Paths claimed by this process's uploads not yet written, and the folders they need:
        # counts, as the same path may be queued twice. Once written, the disk says the same.
        self._files: Counter[str] = Counter()
        self._folders: Counter[str] = Counter()
        # Where the platform ignores case (macOS, Windows): every path this process claimed, by its
        # folded key, so that Model.pt and model.pt cannot both become artifacts of the run.
        self._spelled: dict[str, str] = {}

    def claim(self, path: str) -> None:
        """Reserve ``path`` for an upload, or raise InvalidPathError when a file of the run's
        artifacts stands where the path needs a folder, or a folder where it would go: one claimed by
        an upload of this process not yet written, or one on disk. Where the platform ignores case
        (``_platform``: macOS, Windows), also when the path differs only in case from another
        artifact, claimed by this process or on disk: both would be one file there.

        The caller serializes claim() and release(), and releases a claim only once its file is on
        disk or given up, so that a clash is always seen in one place or the other."""
        parents = _parents(path)
        other = next((p for p in parents if p in self._files), None)
        if other is None and path in self._folders:
            other = next(f for f in self._files if f.startswith(path + "/"))
        if other is not None:
            raise _clash(path, other)
        key = None
        if _platform.current().fold_case:
            key = _folded(path)
            other = self._spelled.get(key)
            if other is None or other == path:
                other = _case_twin(self.root, path)
            if other is not None and other != path:
                raise _case_clash(path, other)
        self.check_on_disk(path, parents)
        if key is not None:
            self._spelled[key] = path
        self._files[path] += 1
        for p in parents:
            self._folders[p] += 1

    def release(self, path: str) -> None:
        """End the claim of an upload that is on disk now, or that failed and clashes with nothing."""
        for counts, key in ((self._files, path), *((self._folders, p) for p in _parents(path))):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]

    def check_on_disk(self, path: str, parents: list[str] | None = None) -> None:
        """Raise InvalidPathError when a file of the run's artifacts on disk stands where ``path``
        needs a folder, or a folder where it would go: another process (one that joined the run,
        the outputs mirror) may have written it. Any other error is left for the writer to report."""
        for p in _parents(path) if parents is None else parents:
            try:
                st = os.stat(self.root / p)
            except OSError:
                return  # no such folder: nothing below it exists either
            if not stat.S_ISDIR(st.st_mode):
                raise _clash(path, p)
        try:
            st = os.stat(self.root / path)
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):  # a file there is fine: the upload replaces it
            raise _clash(path, _first_inside(self.root, path))

    def _tmp_for(self, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest.parent / f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp"

    def put(
        self,
        path: str,
        *,
        data: bytes | None = None,
        src: str | os.PathLike[str] | None = None,
        source: str,
        max_size: int | None = None,
        stable: bool = False,
        extra: dict[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` or the file ``src`` as artifact ``path`` and record it in the manifest.

        With ``stable``, the source's signature (size, mtime, ctime, inode) must be the same after
        the copy as before, else SourceChanged; the path is checked without following a link, so a
        file swapped for a symlink mid-copy counts as changed. With ``max_size``, reaching that many
        bytes raises TooLarge. ``progress`` is called with the bytes copied so far after each block;
        whatever it raises aborts the copy (the outputs mirror uses it for its deadline). Nothing is
        left behind when any of these happens.
        """
        dest = self.root / path
        tmp = self._tmp_for(dest)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                if data is not None:
                    out.write(data)
                    digest.update(data)
                    size = len(data)
                else:
                    with open(src, "rb") as f:  # type: ignore[arg-type]
                        before = signature(os.fstat(f.fileno()))
                        while block := f.read(COPY_BLOCK):
                            size += len(block)
                            if max_size is not None and size >= max_size:
                                raise TooLarge(size)
                            out.write(block)
                            digest.update(block)
                            if progress is not None:
                                progress(size)
                        if stable:
                            after = signature(os.lstat(src))  # type: ignore[arg-type]
                            if after != before or after[0] != size:
                                raise SourceChanged(path)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.unsynced.append(dest)
        entry = {
            "path": path,
            "size": size,
            "sha256": digest.hexdigest(),
            "source": source,
            "status": "stored",
            "time": fmt.utc_iso(time.time()),
            **(extra or {}),
        }
        self.manifest.append_json(entry)
        return entry

    def record(
        self,
        path: str,
        status: str,
        *,
        source: str,
        size: int | None = None,
        reason: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A manifest entry for an artifact that is not (or no longer) stored as a file."""
        entry: dict[str, Any] = {
            "path": path,
            "size": size,
            "sha256": None,
            "source": source,
            "status": status,
            "time": fmt.utc_iso(time.time()),
        }
        if reason is not None:
            entry["reason"] = reason
        entry.update(extra)
        self.manifest.append_json(entry)
        return entry

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            (self.root / path).unlink()

    def fsync(self) -> None:
        self.manifest.fsync()
        for p in self.unsynced:
            try:
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
            except FileNotFoundError:
                pass
        self.unsynced.clear()

    def close(self) -> None:
        self.manifest.close()
