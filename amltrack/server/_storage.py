"""The server's side of the store: staged and published runs, offset-checked appends, uploads by
content hash, and finalising.

Layout inside the server's store (an ordinary amltrack store)::

    DIR/runs/<id>/                  published runs, exactly as a local store holds them
    DIR/.server/incoming/<id>/      a run's first push, until it is finalised (readers never see it)
    DIR/.server/blobs/<id>/<sha256>.part   an upload in progress; <sha256> once complete and checked
    DIR/.server/server.lock         held by the one server process serving DIR

Every write is made durable (fsync) before it is acknowledged, and every file is replaced or
appended so that a SIGKILL at any instant leaves a store the reader opens.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .. import _format as fmt
from .._errors import (
    AmbiguousRunError,
    InvalidPathError,
    QueryError,
    RefusedFileError,
    RunNotFoundError,
    StoreError,
)
from .._files import locked
from .._store import Run, Store, create_store, open_beneath
from .._summary import Fold, encode_overview
from .._web._errors import ApiError
from ._faults import Faults, WritePoint

log = logging.getLogger("amltrack.server")
SERVER_DIR = fmt.SERVER_DIR
APPEND_FILES = (fmt.METRICS_FILE, fmt.MANIFEST_FILE)
RUN_FILES = (fmt.RUN_FILE, fmt.SUMMARY_FILE, *APPEND_FILES)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HASH_BLOCK = 1 << 20
_TMP_TAG = ".srv-"  # temporary files of this server carry it, so stale ones can be told apart
# Beside each run: what its metrics.jsonl folds into for `history info --remote` (see _summary), so
# that the answer costs the same for ten points as for ten million. Derived data, safe to delete.
FOLD_FILE = f"{fmt.CACHE_DIR}/{fmt.FOLD_FILE}"
_FOLD_PIECE = 8 << 20  # bytes of metrics.jsonl parsed at a time, to bound the memory of a catch-up
_FOLD_CHECK = 4096  # the bytes before a fold's end whose CRC-32 tells that the file is still the one folded


def check_run_id(run_id: str) -> str:
    if not fmt.is_valid_run_id(run_id):
        raise ApiError(
            400,
            "invalid_run_id",
            f"run id {run_id[:200]!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return run_id


def check_path(path: str) -> str:
    try:
        return fmt.check_artifact_path(path)
    except InvalidPathError as e:
        raise ApiError(400, "invalid_path", f"artifact path {path[:200]!r} is refused: {e.reason}") from None


def check_sha256(sha: str) -> str:
    if not _SHA256_RE.match(sha):
        raise ApiError(400, "invalid_request", "a SHA-256 must be 64 lowercase hex digits")
    return sha


def not_finalised(run_id: str) -> ApiError:
    return ApiError(
        404, "run_not_found", f"the server has no finalised run {run_id}; list them with GET /v1/history/runs"
    )


def check_run_file(name: str) -> str:
    if name not in RUN_FILES:
        raise ApiError(404, "not_found", f"a run's files are {', '.join(RUN_FILES)}, not {name[:100]!r}")
    return name


def parse_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ApiError(
            400, "invalid_json", f"{what} is not valid JSON ({e}); send the file as it is"
        ) from None
    if not isinstance(obj, dict):
        raise ApiError(400, "invalid_json", f"{what} holds a {type(obj).__name__}, not a JSON object")
    return obj


def _fold_check(f: BinaryIO, end: int) -> int:
    """The CRC-32 of the bytes of ``f`` just before ``end``: a fold covers the file only while they match."""
    start = max(0, end - _FOLD_CHECK)
    f.seek(start)
    return zlib.crc32(f.read(end - start))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _write_durably(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _storage_error(e: OSError, what: str) -> ApiError:
    full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return ApiError(
        507 if full else 500,
        "storage_error",
        f"the server could not write {what}: {e.strerror or e}; "
        + ("free disk space on the server" if full else "see the server's log"),
    )


def _read_error(e: OSError, what: str) -> ApiError:
    return ApiError(500, "storage_error", f"the server could not read {what}: {e}; see the server's log")


class ServerStore:
    """The store a server writes into; every method is one request's worth of work, thread-safe."""

    def __init__(self, root: str | os.PathLike[str], *, faults: Faults | None = None) -> None:
        self.root = Path(root).expanduser().absolute()
        create_store(self.root)
        self.runs = self.root / fmt.RUNS_DIR
        self.private = self.root / SERVER_DIR
        self.incoming = self.private / fmt.SERVER_INCOMING
        self.blobs = self.private / fmt.SERVER_BLOBS
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._hashes: dict[tuple[int, int, int, int, int], str] = {}
        self._running: dict[tuple[str, str], tuple[Any, int]] = {}  # uploads' hashes so far, and lengths
        self.faults = faults or Faults()  # a test's, to fail at a chosen point of a write
        self._folder = ThreadPoolExecutor(1, thread_name_prefix="amltrack-fold")
        # The published runs as any reader sees them: runs/ holds only finalised runs.
        self.reader = Store(self.root)

    # ----------------------------------------------------------------- helpers

    def _lock(self, run_id: str) -> threading.Lock:
        with self._locks_lock:
            lock = self._locks.get(run_id)
            if lock is None:
                lock = self._locks[run_id] = threading.Lock()
            return lock

    def locate(self, run_id: str) -> tuple[Path, bool] | None:
        """The run's directory and whether it is published, or None if the server has no such run."""
        published = self.runs / run_id
        if published.is_dir():
            return published, True
        staged = self.incoming / run_id
        if staged.is_dir():
            return staged, False
        return None

    def _require(self, run_id: str) -> tuple[Path, bool]:
        found = self.locate(check_run_id(run_id))
        if found is None:
            raise ApiError(
                404,
                "run_not_found",
                f"the server has no run {run_id}; create it first with PUT /v1/runs/{run_id}",
            )
        return found

    @staticmethod
    def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
        # The inode, not the path: finalising renames the run's folder, and a 200 MB artifact must
        # not be hashed again for that (files are replaced, never rewritten, so this is its content).
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def file_sha256(self, path: Path, st: os.stat_result | None = None) -> str:
        """The file's SHA-256, cached by its stat signature (files are replaced, never rewritten)."""
        key = self._stat_key(st or path.stat())
        sha = self._hashes.get(key)
        if sha is None:
            sha = sha256_file(path)
            if len(self._hashes) > 100_000:
                self._hashes.clear()
            self._hashes[key] = sha
        return sha

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    # ----------------------------------------------------------------- reading

    def list_runs(self) -> list[dict[str, Any]]:
        out = []
        for base, published in ((self.runs, True), (self.incoming, False)):
            try:
                names = os.listdir(base)
            except FileNotFoundError:
                continue
            out += [{"id": n, "published": published} for n in names if fmt.is_valid_run_id(n)]
        return sorted(out, key=lambda r: r["id"])

    def state(self, run_id: str, *, hashes: bool = False) -> dict[str, Any]:
        """What the server holds of a run: sizes and hashes of its files and artifacts."""
        with self._lock(check_run_id(run_id)):
            return self._state(run_id, hashes)

    def _state(self, run_id: str, hashes: bool) -> dict[str, Any]:
        d, published = self._require(run_id)
        files: dict[str, Any] = {}
        for name in (fmt.RUN_FILE, fmt.SUMMARY_FILE, *APPEND_FILES):
            path = d / name
            try:
                st = path.stat()
            except FileNotFoundError:
                files[name] = None
                continue
            small = name in (fmt.RUN_FILE, fmt.SUMMARY_FILE)
            files[name] = {
                "size": st.st_size,
                "sha256": sha256_file(path) if small or hashes else None,
            }
        artifacts: dict[str, Any] = {}
        root = d / fmt.ARTIFACTS_DIR
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                    rel = path.relative_to(root).as_posix()
                    artifacts[rel] = {"size": st.st_size, "sha256": self.file_sha256(path, st)}
                except (FileNotFoundError, NotADirectoryError):
                    continue
        return {"id": run_id, "published": published, "files": files, "artifacts": artifacts}

    def blob_state(self, run_id: str, sha: str) -> dict[str, Any]:
        self._require(run_id)
        return self.upload_state(self.blobs / run_id, check_sha256(sha), f"run {run_id}")

    @staticmethod
    def upload_state(bdir: Path, sha: str, owner: str) -> dict[str, Any]:
        """How much of the upload ``sha`` in ``bdir`` has arrived; 404 ``blob_not_found`` if none."""
        done = bdir / sha
        if done.is_file():
            return {"sha256": sha, "size": done.stat().st_size, "complete": True}
        part = bdir / f"{sha}.part"
        if part.is_file():
            return {"sha256": sha, "size": part.stat().st_size, "complete": False}
        raise ApiError(404, "blob_not_found", f"{owner} has no upload of {sha}; start it at offset 0")

    # ----------------------------------------------------------------- history (published runs)
    # What `amltrack history ... --remote` reads. It goes through amltrack.Store over runs/, which
    # holds only finalised runs, so filters, run references and statuses (crashed included) mean
    # exactly what they mean to a local reader of this store.

    @staticmethod
    def _entry(run: Run) -> dict[str, Any]:
        try:
            return {"id": run.id, "status": run.status, "run": run.info, "summary": run.listing_summary()}
        except StoreError as e:
            raise _read_error(e, f"run {run.id}") from None

    def history(
        self,
        experiment: str | None,
        status: str | None,
        limit: int,
        filter: str | None = None,
        order_by: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Published runs newest first, as ``Store.runs(experiment, status, limit, filter=,
        order_by=)`` gives them; 0 is no limit."""
        if status is not None and status not in fmt.STATUSES:
            raise ApiError(
                400, "invalid_request", f"status {status[:50]!r} is not one of {', '.join(fmt.STATUSES)}"
            )
        try:
            runs = self.reader.runs(
                experiment=experiment, status=status, limit=limit, filter=filter, order_by=order_by or None
            )
        except QueryError as e:
            raise ApiError(400, "invalid_query", str(e)) from None
        except StoreError as e:
            raise _read_error(e, "the store") from None
        return [self._entry(r) for r in runs]

    def history_run(self, ref: str) -> dict[str, Any]:
        """The published run that ``ref`` (an id, a unique prefix, a unique run name, or ``last``)
        names, as ``Store.run``, which turns only a valid run id into a path."""
        if not ref or len(ref) > 255 or not ref.isprintable():
            raise ApiError(
                400,
                "invalid_run_id",
                f"run reference {ref[:100]!r} is not valid: give a run id, a prefix of one, 'last' or a "
                "run name (1 to 255 printable characters)",
            )
        try:
            run = self.reader.run(ref)
        except RunNotFoundError:
            raise ApiError(
                404,
                "run_not_found",
                f"no finalised run on this server matches {ref!r}; list them with GET /v1/history/runs",
            ) from None
        except AmbiguousRunError as e:
            raise ApiError(400, "invalid_request", str(e)) from None
        except StoreError as e:
            raise _read_error(e, f"run {ref}") from None
        return self._entry(run)

    def overview(self, run_id: str, width: int) -> dict[str, Any]:
        """Per metric of a finalised run: kind, count, last, min, max and ``width`` points for a sparkline."""
        d = self._published(run_id)
        try:
            fold = self._fold(run_id, d)
        except OSError as e:
            raise _read_error(e, fmt.METRICS_FILE) from None
        return {
            "id": run_id,
            "metrics_bytes": fold.end,
            "skipped": fold.skipped,
            "metrics": encode_overview(fold.describe(width)),
        }

    def _fold_quietly(self, run_id: str, d: Path) -> None:
        try:
            self._fold(run_id, d)
        except Exception as e:  # noqa: BLE001 - a reader folds again; the log says why this one did not
            log.warning("amltrack server: could not summarise the metrics of run %s: %s", run_id, e)

    def _fold(self, run_id: str, d: Path) -> Fold:
        """The run's fold, brought up to the last whole line of its metrics.jsonl and saved again.

        A saved fold that no longer matches the file (one replaced or cut since) is started over.
        Parsing costs only what was appended since the fold was saved: finalising saves it, so a
        reader pays nothing.
        """
        with self._lock(f"fold:{run_id}"):
            path = d / FOLD_FILE
            try:
                saved = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                saved = None
            fold = Fold.from_json(saved) or Fold()
            try:
                f = open(d / fmt.METRICS_FILE, "rb")
            except FileNotFoundError:
                return Fold()
            with f:
                if fold.end and _fold_check(f, fold.end) != (saved or {}).get("check"):
                    fold = Fold()
                start = fold.end
                f.seek(start)
                carry = b""
                while block := f.read(_FOLD_PIECE):
                    block = carry + block
                    cut = block.rfind(b"\n") + 1  # a line still being appended waits for the next read
                    carry = block[cut:]
                    if cut:
                        fold.feed(block[:cut], str(d / fmt.METRICS_FILE))
                if fold.end != start:
                    state = fold.to_json()
                    state["check"] = _fold_check(f, fold.end)
                    try:
                        path.parent.mkdir(exist_ok=True)
                        fmt.write_json_atomic(path, state, fsync=False)
                    except OSError:  # a read-only store still answers; it folds again next time
                        pass
            return fold

    def _published(self, run_id: str) -> Path:
        d = self.runs / check_run_id(run_id)
        if not (d / fmt.RUN_FILE).is_file():
            raise not_finalised(run_id)
        return d

    def open_run_file(self, run_id: str, name: str) -> tuple[BinaryIO, int]:
        """One of the run's four files, open, and its size now (metrics may grow while it is read)."""
        check_run_file(name)
        self._published(run_id)
        return self._open_inside(f"{run_id}/{name}", f"run {run_id} has no {name} on the server")

    def open_artifact(self, run_id: str, path: str) -> tuple[BinaryIO, int]:
        """The artifact file at ``path``, open, and its size."""
        check_path(path)
        self._published(run_id)
        return self._open_inside(
            f"{run_id}/{fmt.ARTIFACTS_DIR}/{path}",
            f"run {run_id} has no stored artifact {path!r} on the server; "
            f"list its artifacts with GET /v1/history/runs/{run_id}/files/{fmt.MANIFEST_FILE}",
        )

    def _open_inside(self, rel: str, missing: str) -> tuple[BinaryIO, int]:
        """``runs/rel`` opened for reading if it is a plain file reached through no symlink (the run
        folder and ``artifacts/`` included): the one opener of artifacts, ``open_beneath``."""
        try:
            f = open_beneath(self.runs, rel)  # the response closes it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, RefusedFileError):
            raise ApiError(404, "not_found", missing) from None
        except OSError as e:
            if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):  # a path no file of the run can have
                raise ApiError(404, "not_found", missing) from None
            raise _read_error(e, rel.rsplit("/", 1)[-1]) from None
        return f, os.fstat(f.fileno()).st_size

    # ----------------------------------------------------------------- writing

    def create(self, run_id: str) -> bool:
        """Create the run as staged unless the server has it; True if it was created."""
        check_run_id(run_id)
        with self.faults.write("create"), self._lock(run_id):
            if self.locate(run_id) is not None:
                return False
            try:
                (self.incoming / run_id).mkdir()
            except OSError as e:
                raise _storage_error(e, f"run {run_id}") from e
            return True

    def _append_at(self, path: Path, offset: int, data: bytes, point: WritePoint) -> int:
        """Append ``data`` to ``path`` if its length is ``offset``; fsync before returning the new length.

        The file's length is the committed offset: a write cut short by a crash leaves a prefix of
        what the client sent, and the client resumes after it.
        """
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            # The local writer's lock, so a local appender and the server never interleave.
            with locked(fd):
                size = os.fstat(fd).st_size
                if size != offset:
                    raise ApiError(
                        409,
                        "offset_mismatch",
                        f"{path.name} has {size} committed bytes, not {offset}; resume from {size}",
                        committed=size,
                    )
                try:
                    point.midway(data, lambda part: _write_durably(fd, part))
                    _write_durably(fd, memoryview(data))
                except OSError as e:
                    raise _storage_error(e, path.name) from e
                return size + len(data)
        finally:
            os.close(fd)

    def append(self, run_id: str, name: str, offset: int, data: bytes) -> int:
        """Append to metrics.jsonl or artifacts.jsonl at ``offset``; the new committed length."""
        if name not in APPEND_FILES:
            raise ApiError(
                404, "not_found", f"only {' and '.join(APPEND_FILES)} take appends, not {name[:100]!r}"
            )
        if not data:
            raise ApiError(400, "invalid_request", "an append needs a non-empty body")
        with self.faults.write("append") as point, self._lock(run_id):
            d, _ = self._require(run_id)
            return self._append_at(d / name, offset, data, point)

    def put_blob(self, run_id: str, sha: str, offset: int, total: int, data: bytes) -> dict[str, Any]:
        """Append a chunk of the content ``sha`` (``total`` bytes in all) at ``offset``."""
        check_sha256(sha)
        with self.faults.write("blob") as point, self._lock(run_id):
            self._require(run_id)
            return self.put_chunk(self.blobs / run_id, sha, offset, total, data, point)

    def put_chunk(
        self, bdir: Path, sha: str, offset: int, total: int, data: bytes, point: WritePoint
    ) -> dict[str, Any]:
        """Append a chunk of the upload ``sha`` in ``bdir`` (under its owner's lock).

        When the last byte arrives the whole content is checked against ``sha``; a mismatch discards
        the upload. The hash is kept running while the chunks arrive (each one hashed while it is
        written and fsynced), so the last chunk need not read the file back; an upload begun before
        a restart of the server is hashed from its file.
        """
        done = bdir / sha
        if done.is_file():
            return {"sha256": sha, "size": done.stat().st_size, "complete": True}
        if offset + len(data) > total:
            raise ApiError(
                400,
                "invalid_request",
                f"a chunk at {offset} of {len(data)} bytes passes the size {total}",
            )
        try:
            bdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _storage_error(e, "an upload") from e
        part = bdir / f"{sha}.part"
        key = (str(bdir), sha)
        running = self._running.pop(key, None)
        hasher = running[0] if running and running[1] == offset else None
        if hasher is None and offset == 0:
            hasher = hashlib.sha256()
        if data:
            # hashlib lets go of the GIL on big buffers, so the hash overlaps the write and its fsync.
            hashing = threading.Thread(target=hasher.update, args=(data,)) if hasher else None
            if hashing:
                hashing.start()
            try:
                size = self._append_at(part, offset, data, point)
            finally:
                if hashing:
                    hashing.join()
        else:
            size = self._require_offset(part, offset)
        complete = size == total
        if not complete and hasher is not None:
            if len(self._running) > 10_000:  # abandoned uploads; they fall back to the file
                self._running.clear()
            self._running[key] = (hasher, size)
        if complete:
            if (hasher.hexdigest() if hasher else sha256_file(part)) != sha:
                part.unlink()
                raise ApiError(
                    422,
                    "hash_mismatch",
                    f"the {total} bytes uploaded do not have SHA-256 {sha}; the upload was discarded, "
                    "send it again",
                )
            os.replace(part, done)
        return {"sha256": sha, "size": size, "complete": complete}

    @staticmethod
    def _require_offset(part: Path, offset: int) -> int:
        size = ServerStore._size(part)
        if size != offset:
            raise ApiError(
                409,
                "offset_mismatch",
                f"the upload has {size} bytes, not {offset}; resume from {size}",
                committed=size,
            )
        part.touch()
        return size

    def commit_artifact(self, run_id: str, path: str, sha: str) -> dict[str, Any]:
        """Place the complete upload ``sha`` at ``artifacts/<path>`` (a no-op if it is already there)."""
        check_path(path)
        check_sha256(sha)
        with self.faults.write("commit") as point, self._lock(run_id):
            d, _ = self._require(run_id)
            dest = d / fmt.ARTIFACTS_DIR / path
            if dest.is_file() and self.file_sha256(dest) == sha:
                return {"path": path, "size": dest.stat().st_size, "sha256": sha}
            blob = self.blobs / run_id / sha
            if not blob.is_file():
                raise ApiError(
                    409,
                    "blob_missing",
                    f"content {sha} was not uploaded completely; upload it, then place it",
                )
            if dest.is_dir():
                raise ApiError(409, "path_conflict", f"artifact path {path!r} is a directory on the server")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ApiError(
                    409, "path_conflict", f"a parent of artifact path {path!r} is a file on the server"
                ) from None
            except OSError as e:
                raise _storage_error(e, f"artifact {path}") from e
            point.midway()
            os.replace(blob, dest)
            st = dest.stat()
            self._hashes[self._stat_key(st)] = sha
            return {"path": path, "size": st.st_size, "sha256": sha}

    def delete_artifact(self, run_id: str, path: str) -> bool:
        check_path(path)
        with self.faults.write("delete"), self._lock(run_id):
            d, _ = self._require(run_id)
            root = d / fmt.ARTIFACTS_DIR
            try:
                (root / path).unlink()
                deleted = True
            except (FileNotFoundError, NotADirectoryError):
                deleted = False
            except IsADirectoryError:
                raise ApiError(
                    409, "path_conflict", f"artifact path {path!r} is a directory on the server"
                ) from None
            # Empty folders left behind would keep a later file from taking their name.
            parent = (root / path).parent
            while parent != root:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent
            return deleted

    def put_summary(self, run_id: str, data: bytes) -> None:
        problem = fmt.summary_problem(parse_object(data, fmt.SUMMARY_FILE))
        if problem is not None:
            raise ApiError(400, "invalid_json", f"{fmt.SUMMARY_FILE} {problem}; the run is unchanged")
        with self.faults.write("summary"), self._lock(run_id):
            d, _ = self._require(run_id)
            try:
                fmt.write_bytes_atomic(d / fmt.SUMMARY_FILE, data, tag=_TMP_TAG)
            except OSError as e:
                raise _storage_error(e, fmt.SUMMARY_FILE) from e

    def finalise(self, run_id: str, data: bytes, metrics_bytes: int, manifest_bytes: int) -> dict[str, Any]:
        """Write run.json, publish a staged run, and drop its leftover uploads.

        Refused (409 ``incomplete``) unless the metrics and manifest hold exactly the lengths the
        client pushed, so a run never appears finished with data missing.
        """
        problem = fmt.run_info_problem(parse_object(data, fmt.RUN_FILE), run_id)
        if problem is not None:  # the published copy stays as it was
            raise ApiError(400, "invalid_json", f"{fmt.RUN_FILE} {problem}; the run is unchanged")
        with self.faults.write("finalise") as point:
            state, d = self._finalise(run_id, data, metrics_bytes, manifest_bytes, point)
            # In the background, so the push's answer does not wait for it (1,000,000 records take a
            # second or so); the first `history info --remote` after a push then finds it done, or
            # waits for it under its lock rather than folding the same bytes again.
            self._folder.submit(self._fold_quietly, run_id, d)
            return state

    def _finalise(
        self, run_id: str, data: bytes, metrics_bytes: int, manifest_bytes: int, point: WritePoint
    ) -> tuple[dict[str, Any], Path]:
        with self._lock(run_id):
            d, published = self._require(run_id)
            committed = {
                fmt.METRICS_FILE: self._size(d / fmt.METRICS_FILE),
                fmt.MANIFEST_FILE: self._size(d / fmt.MANIFEST_FILE),
            }
            if committed != {fmt.METRICS_FILE: metrics_bytes, fmt.MANIFEST_FILE: manifest_bytes}:
                raise ApiError(
                    409,
                    "incomplete",
                    f"run {run_id} has {committed[fmt.METRICS_FILE]} bytes of metrics and "
                    f"{committed[fmt.MANIFEST_FILE]} of manifest, not {metrics_bytes} and {manifest_bytes}; "
                    "push the rest first",
                    committed=committed,
                )
            try:
                fmt.write_bytes_atomic(d / fmt.RUN_FILE, data, tag=_TMP_TAG)
                point.midway()  # run.json written, the run not yet published
                if not published:
                    os.rename(d, self.runs / run_id)
                    d = self.runs / run_id
            except OSError as e:
                raise _storage_error(e, f"run {run_id}") from e
            shutil.rmtree(self.blobs / run_id, ignore_errors=True)
            for stale in d.glob(f".*{_TMP_TAG}*.tmp"):  # left by a SIGKILL mid-replace
                with contextlib.suppress(OSError):
                    stale.unlink()
            return self._state(run_id, False), d
