"""The team server's store: runs and their index in PostgreSQL, their bytes in an S3-compatible bucket.

    store = TeamStore(Database.open("postgresql://amltrack@db/amltrack"), Objects.open("s3://team/amltrack"))

It answers the same requests as ``ServerStore`` (the embedded store of ``--store DIR``), with the same
meanings, so ``docs/sync.md`` holds against either; nothing lives in a server process's memory but
caches, so any number of processes (replicas) serve one team.

- A run is a row of ``runs``. Its ``metrics.jsonl`` and ``artifacts.jsonl`` are ordered lists of
  immutable bucket objects ("pieces"), one per append, named in ``pieces``. An append locks the run's
  row (``SELECT ... FOR UPDATE``), checks the offset against the committed length in that row (409
  if it differs), puts its object into the bucket, and only then commits the row that names it and
  the new length. Two appends at one offset, through any replicas, are decided by PostgreSQL: one
  commits, the other finds the new length and gets its 409.
- Artifact contents are content-addressed blobs (by SHA-256), uploaded in resumable chunks, each
  chunk an object of its own (``upload_parts``); the last chunk checks the whole content's hash and
  turns the upload into a blob, which ``artifacts`` rows then name. A content uploaded once serves
  every run and asset that holds it.
- Finalising sets ``published`` last, in the transaction that checks the lengths pushed: readers see
  only published runs, and a published run names only objects that were in the bucket before it.
- A crash between a put and its commit leaves an object no row names; ``gc`` removes those.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from .. import _format as fmt
from .._store import owner_alive
from .._summary import Fold, encode_overview
from .._web._errors import ApiError
from ._faults import Faults
from ._objects import Objects
from ._storage import (
    APPEND_FILES,
    check_path,
    check_run_file,
    check_run_id,
    check_sha256,
    not_finalised,
    parse_object,
)
from ._tokens import RETRY_AFTER

if TYPE_CHECKING:
    import psycopg

    from ._database import Database

log = logging.getLogger("amltrack.server")
_SIZE_COLUMN = {fmt.METRICS_FILE: "metrics_size", fmt.MANIFEST_FILE: "manifest_size"}
_FOLD_PIECES = 64  # pieces folded per transaction-free step, to bound a catch-up's memory


def run_owner(run_id: str) -> str:
    return f"run:{run_id}"


def asset_owner(name: str) -> str:
    return f"asset:{name}"


def _not_found(run_id: str) -> ApiError:
    return ApiError(
        404, "run_not_found", f"the server has no run {run_id}; create it first with PUT /v1/runs/{run_id}"
    )


def _sha256_hex(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def ranges_of(fold: Fold) -> dict[str, list[Any]]:
    """Each metric's [min, max] over its numbers, as the listing's SQL reads them (``_sqlquery``)."""
    from ._sqlquery import encode_ranges

    return encode_ranges({name: (s.lo, s.hi) for name, s in fold.series.items() if s.lo is not None})


class PieceReader:
    """A file made of bucket objects, read in order; what ``open_run_file`` and ``open_artifact``
    return for the response to stream (it fetches one object at a time)."""

    def __init__(self, objects: Objects, pieces: list[tuple[int, int, str]], size: int, what: str) -> None:
        self._objects, self._pieces, self._size, self._what = objects, pieces, size, what
        self._next = 0
        self._buffer = memoryview(b"")
        self._read = 0

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while (n < 0 or len(out) < n) and self._read < self._size:
            if not self._buffer:
                if self._next >= len(self._pieces):
                    break
                _start, length, key = self._pieces[self._next]
                self._next += 1
                data = self._objects.get(key, f"reading {self._what}")
                if len(data) != length:
                    raise ApiError(
                        500,
                        "storage_error",
                        f"object {key} of {self._what} holds {len(data)} bytes, not {length}; see the server's log",
                    )
                self._buffer = memoryview(data)
            take = self._buffer[: (n - len(out)) if n >= 0 else len(self._buffer)]
            take = take[: self._size - self._read]
            out += take
            self._read += len(take)
            self._buffer = self._buffer[len(take) :]
        return bytes(out)

    def close(self) -> None:
        self._buffer = memoryview(b"")

    def __enter__(self) -> PieceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TeamStore:
    """The runs of a team server in a database and a bucket; every method is one request's work."""

    def __init__(self, db: Database, objects: Objects, *, faults: Faults | None = None) -> None:
        self.db, self.objects = db, objects
        self.faults = faults or Faults()
        # Hashes of uploads in progress, while this replica receives their chunks in order: the last
        # chunk then need not read the content back. Each is kept with the key of the last part it
        # hashed, and used only while that part is still the upload's last: another replica's chunk
        # in between, or the upload discarded and begun again elsewhere, makes it stale.
        self._running: dict[tuple[str, str], tuple[Any, int, str | None]] = {}
        self._running_lock = threading.Lock()
        self._folder = ThreadPoolExecutor(1, thread_name_prefix="amltrack-fold")
        self._folding: set[str] = set()

    def close(self) -> None:
        self._folder.shutdown(wait=True)
        self.db.close()
        self.objects.close()

    # ----------------------------------------------------------------- plumbing

    @contextmanager
    def _tx(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in a transaction that commits at the end; a database that cannot
        answer is a 503 with Retry-After (clients retry it), never a 500."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.db.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as e:
            log.warning("amltrack server: the database failed while %s: %s", what, " ".join(str(e).split()))
            raise ApiError(
                503,
                "unavailable",
                f"the team server cannot reach its database just now while {what}; retry after Retry-After",
                headers={"Retry-After": RETRY_AFTER},
            ) from None

    @staticmethod
    def _row(conn: psycopg.Connection[Any], run_id: str, *, lock: bool = False) -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT published, metrics_size, manifest_size FROM runs WHERE id = %s"
            + (" FOR UPDATE" if lock else ""),
            (run_id,),
        ).fetchone()
        if row is None:
            raise _not_found(run_id)
        return row

    def _delete_quietly(self, keys: list[str], what: str) -> None:
        """Remove objects no committed row names any more; one left behind is gc's to remove."""
        if not keys:
            return
        try:
            self.objects.delete(keys, what)
        except ApiError as e:
            log.warning("amltrack server: %d objects left for gc while %s: %s", len(keys), what, e.message)

    # ----------------------------------------------------------------- reading

    def list_runs(self) -> list[dict[str, Any]]:
        with self._tx("listing runs") as conn:
            rows = conn.execute("SELECT id, published FROM runs ORDER BY id").fetchall()
        return [{"id": r[0], "published": r[1]} for r in rows]

    def state(self, run_id: str, *, hashes: bool = False) -> dict[str, Any]:
        """What the server holds of a run: sizes and hashes of its files and artifacts."""
        check_run_id(run_id)
        with self._tx(f"reading run {run_id}") as conn:
            row = conn.execute(
                "SELECT published, metrics_size, manifest_size, run_json, summary_json FROM runs WHERE id = %s",
                (run_id,),
            ).fetchone()
            if row is None:
                raise _not_found(run_id)
            published, metrics_size, manifest_size, run_json, summary_json = row
            artifacts = conn.execute(
                "SELECT path, size, sha256 FROM artifacts WHERE run_id = %s ORDER BY path", (run_id,)
            ).fetchall()
            pieces = self._pieces(conn, run_id) if hashes else {}
        files: dict[str, Any] = {}
        for name, data in ((fmt.RUN_FILE, run_json), (fmt.SUMMARY_FILE, summary_json)):
            files[name] = None if data is None else {"size": len(data), "sha256": _sha256_hex(bytes(data))}
        for name, size in ((fmt.METRICS_FILE, metrics_size), (fmt.MANIFEST_FILE, manifest_size)):
            if not size:
                files[name] = None
                continue
            sha = None
            if hashes:
                h = hashlib.sha256()
                with PieceReader(self.objects, pieces[name], size, name) as f:
                    while block := f.read(1 << 20):
                        h.update(block)
                sha = h.hexdigest()
            files[name] = {"size": size, "sha256": sha}
        return {
            "id": run_id,
            "published": published,
            "files": files,
            "artifacts": {p: {"size": s, "sha256": h} for p, s, h in artifacts},
        }

    @staticmethod
    def _pieces(
        conn: psycopg.Connection[Any],
        run_id: str,
        after: int = 0,
        file: str = fmt.METRICS_FILE,
        *,
        both: bool = True,
    ) -> dict[str, list[tuple[int, int, str]]]:
        rows = conn.execute(
            "SELECT file, start, length, key FROM pieces WHERE run_id = %s"
            + ("" if both else " AND file = %s AND start + length > %s")
            + " ORDER BY file, start",
            (run_id,) if both else (run_id, file, after),
        ).fetchall()
        out: dict[str, list[tuple[int, int, str]]] = {name: [] for name in APPEND_FILES}
        for f, start, length, key in rows:
            out[f].append((start, length, key))
        return out

    def blob_state(self, run_id: str, sha: str) -> dict[str, Any]:
        check_sha256(sha)
        with self._tx(f"reading run {run_id}") as conn:
            self._row(conn, check_run_id(run_id))
            return self._upload_state(conn, run_owner(run_id), sha, f"run {run_id}")

    @staticmethod
    def _upload_state(conn: psycopg.Connection[Any], owner: str, sha: str, who: str) -> dict[str, Any]:
        blob = conn.execute("SELECT size FROM blobs WHERE sha256 = %s", (sha,)).fetchone()
        if blob is not None:
            return {"sha256": sha, "size": blob[0], "complete": True}
        up = conn.execute(
            "SELECT size FROM uploads WHERE owner = %s AND sha256 = %s", (owner, sha)
        ).fetchone()
        if up is not None:
            return {"sha256": sha, "size": up[0], "complete": False}
        raise ApiError(404, "blob_not_found", f"{who} has no upload of {sha}; start it at offset 0")

    def _published_row(self, conn: psycopg.Connection[Any], run_id: str) -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT metrics_size, manifest_size, run_json, summary_json, fold FROM runs "
            "WHERE id = %s AND published",
            (check_run_id(run_id),),
        ).fetchone()
        if row is None:
            raise not_finalised(run_id)
        return row

    def open_run_file(self, run_id: str, name: str) -> tuple[BinaryIO, int]:
        """One of the run's four files, and its committed size now (metrics may grow meanwhile)."""
        check_run_file(name)
        import io

        with self._tx(f"reading run {run_id}") as conn:
            metrics_size, manifest_size, run_json, summary_json, _ = self._published_row(conn, run_id)
            if name in APPEND_FILES:
                size = metrics_size if name == fmt.METRICS_FILE else manifest_size
                pieces = self._pieces(conn, run_id, file=name, both=False)[name] if size else []
        if name in APPEND_FILES:
            if not size:
                raise ApiError(404, "not_found", f"run {run_id} has no {name} on the server")
            return PieceReader(self.objects, pieces, size, f"{name} of run {run_id}"), size  # type: ignore[return-value]
        data = run_json if name == fmt.RUN_FILE else summary_json
        if data is None:
            raise ApiError(404, "not_found", f"run {run_id} has no {name} on the server")
        return io.BytesIO(bytes(data)), len(data)

    def open_artifact(self, run_id: str, path: str) -> tuple[BinaryIO, int]:
        check_path(path)
        with self._tx(f"reading run {run_id}") as conn:
            self._published_row(conn, run_id)
            row = conn.execute(
                "SELECT sha256, size FROM artifacts WHERE run_id = %s AND path = %s", (run_id, path)
            ).fetchone()
            if row is None:
                raise ApiError(
                    404,
                    "not_found",
                    f"run {run_id} has no stored artifact {path!r} on the server; "
                    f"list its artifacts with GET /v1/history/runs/{run_id}/files/{fmt.MANIFEST_FILE}",
                )
            parts = self.blob_parts(conn, row[0])
        return PieceReader(self.objects, parts, row[1], f"artifact {path}"), row[1]  # type: ignore[return-value]

    @staticmethod
    def blob_parts(conn: psycopg.Connection[Any], sha: str) -> list[tuple[int, int, str]]:
        return [
            tuple(r)
            for r in conn.execute(
                "SELECT start, length, key FROM blob_parts WHERE sha256 = %s ORDER BY start", (sha,)
            ).fetchall()
        ]

    def overview(self, run_id: str, width: int) -> dict[str, Any]:
        """Per metric of a finalised run: kind, count, last, min, max and ``width`` points."""
        fold = self._fold(check_run_id(run_id), published=True)
        return {
            "id": run_id,
            "metrics_bytes": fold.end,
            "skipped": fold.skipped,
            "metrics": encode_overview(fold.describe(width)),
        }

    def _fold(self, run_id: str, *, published: bool = False) -> Fold:
        """The run's fold, brought up to the last whole line of metrics.jsonl and saved in its row.

        Pieces are immutable, so two replicas that fold at once compute the same fold; the row keeps
        whichever covers more. Only what was appended since the saved fold is read from the bucket.
        """
        with self._tx(f"summarising run {run_id}") as conn:
            if published:
                size, _, _, _, saved = self._published_row(conn, run_id)
            else:
                row = conn.execute("SELECT metrics_size, fold FROM runs WHERE id = %s", (run_id,)).fetchone()
                if row is None:
                    return Fold()
                size, saved = row
            fold = Fold.from_json(saved) if saved is not None else None
            fold = fold or Fold()
            if fold.end >= size:
                return fold
            pieces = self._pieces(conn, run_id, fold.end, both=False)[fmt.METRICS_FILE]
        start = fold.end
        carry = b""
        for piece_start, length, key in pieces:
            data = self.objects.get(key, f"summarising run {run_id}")[:length]
            if piece_start < start:
                data = data[start - piece_start :]
            block = carry + data
            cut = block.rfind(b"\n") + 1
            carry = block[cut:]
            if cut:
                fold.feed(block[:cut], f"metrics.jsonl of run {run_id}")
        if fold.end != start:
            with self._tx(f"summarising run {run_id}") as conn:
                conn.execute(
                    "UPDATE runs SET fold = %s, ranges = %s WHERE id = %s "
                    "AND coalesce((fold->>'end')::bigint, 0) < %s",
                    (
                        orjson.dumps(fold.to_json()).decode(),
                        orjson.dumps(ranges_of(fold)).decode(),
                        run_id,
                        fold.end,
                    ),
                )
        return fold

    def _fold_later(self, run_id: str) -> None:
        """Bring the run's summaries up to date in the background, once per run at a time."""
        if run_id in self._folding:
            return
        self._folding.add(run_id)

        def fold() -> None:
            self._folding.discard(run_id)
            try:
                self._fold(run_id)
            except Exception as e:  # noqa: BLE001 - the next append or reader folds again
                log.warning("amltrack server: could not summarise the metrics of run %s: %s", run_id, e)

        self._folder.submit(fold)

    # ----------------------------------------------------------------- writing

    def create(self, run_id: str) -> bool:
        check_run_id(run_id)
        with self.faults.write("create"), self._tx(f"creating run {run_id}") as conn:
            row = conn.execute(
                "INSERT INTO runs (id) VALUES (%s) ON CONFLICT (id) DO NOTHING RETURNING id", (run_id,)
            ).fetchone()
            return row is not None

    def append(self, run_id: str, name: str, offset: int, data: bytes) -> int:
        """Append to metrics.jsonl or artifacts.jsonl at ``offset``; the new committed length."""
        if name not in APPEND_FILES:
            raise ApiError(
                404, "not_found", f"only {' and '.join(APPEND_FILES)} take appends, not {name[:100]!r}"
            )
        if not data:
            raise ApiError(400, "invalid_request", "an append needs a non-empty body")
        check_run_id(run_id)
        column = _SIZE_COLUMN[name]
        with self.faults.write("append") as point, self._tx(f"appending to run {run_id}") as conn:
            row = self._row(conn, run_id, lock=True)
            size = row[1] if name == fmt.METRICS_FILE else row[2]
            if size != offset:
                raise ApiError(
                    409,
                    "offset_mismatch",
                    f"{name} has {size} committed bytes, not {offset}; resume from {size}",
                    committed=size,
                )
            key = self.objects.new_key("runs", run_id, name)
            self.objects.put(key, data, f"appending to {name} of run {run_id}")
            point.midway()  # in the bucket, not yet in the database: a crash here leaves garbage only
            conn.execute(
                "INSERT INTO pieces (run_id, file, start, length, key) VALUES (%s, %s, %s, %s, %s)",
                (run_id, name, offset, len(data), key),
            )
            conn.execute(
                f"UPDATE runs SET {column} = %s, updated_at = now() WHERE id = %s",  # noqa: S608 - a fixed column
                (offset + len(data), run_id),
            )
        if name == fmt.METRICS_FILE:
            self._fold_later(run_id)
        return offset + len(data)

    def put_blob(self, run_id: str, sha: str, offset: int, total: int, data: bytes) -> dict[str, Any]:
        """Append a chunk of the content ``sha`` (``total`` bytes in all) at ``offset``."""
        check_sha256(sha)
        check_run_id(run_id)
        with self.faults.write("blob") as point:
            with self._tx(f"reading run {run_id}") as conn:
                self._row(conn, run_id)
            return self.put_chunk(run_owner(run_id), sha, offset, total, data, point)

    def put_chunk(
        self, owner: str, sha: str, offset: int, total: int, data: bytes, point: Any
    ) -> dict[str, Any]:
        """Append a chunk of the upload ``sha`` of ``owner``; the last one checks the whole content's
        SHA-256 and makes it a blob (422 ``hash_mismatch`` and the upload discarded if it differs)."""
        if offset + len(data) > total:
            raise ApiError(
                400, "invalid_request", f"a chunk at {offset} of {len(data)} bytes passes the size {total}"
            )
        what = f"uploading {sha[:12]} for {owner}"
        mismatch = False
        garbage: list[str] = []
        with self._tx(what) as conn:
            blob = conn.execute("SELECT size FROM blobs WHERE sha256 = %s", (sha,)).fetchone()
            if blob is not None:
                return {"sha256": sha, "size": blob[0], "complete": True}
            size = self._lock_upload(conn, owner, sha, total)
            # Again under the upload's lock: a racer (on any replica) that held it may have made the
            # content a blob meanwhile; this request's upload is then garbage, not a 409 to resume.
            blob = conn.execute("SELECT size FROM blobs WHERE sha256 = %s", (sha,)).fetchone()
            if blob is not None:
                garbage = self._drop_upload(conn, owner, sha)
            elif size != offset:
                raise ApiError(
                    409,
                    "offset_mismatch",
                    f"the upload has {size} bytes, not {offset}; resume from {size}",
                    committed=size,
                )
            else:
                hasher = self._hasher(conn, owner, sha, offset)
                key = None
                if data:
                    key = self.objects.new_key("uploads", owner.replace(":", "/", 1), sha)
                    self.objects.put(key, data, what)
                    point.midway()
                    conn.execute(
                        "INSERT INTO upload_parts (owner, sha256, start, length, key) VALUES (%s, %s, %s, %s, %s)",
                        (owner, sha, offset, len(data), key),
                    )
                    if hasher is not None:
                        hasher.update(data)
                size = offset + len(data)
                conn.execute(
                    "UPDATE uploads SET size = %s, total = %s, updated_at = now() WHERE owner = %s AND sha256 = %s",
                    (size, total, owner, sha),
                )
                complete = size == total
                if complete:
                    if hasher is None:  # chunks came through other replicas, or before a restart
                        hasher = self._hash_upload(conn, owner, sha)
                    if hasher.hexdigest() != sha:
                        mismatch = True
                        garbage = self._drop_upload(conn, owner, sha)
                    else:
                        garbage = self._make_blob(conn, owner, sha, total)
        if blob is not None:
            self._delete_quietly(garbage, what)
            return {"sha256": sha, "size": blob[0], "complete": True}
        with self._running_lock:
            if complete:
                self._running.pop((owner, sha), None)
            elif hasher is not None:
                if len(self._running) > 10_000:  # abandoned uploads; they fall back to the bucket
                    self._running.clear()
                self._running[(owner, sha)] = (hasher, size, key)
        self._delete_quietly(garbage, what)
        if mismatch:
            raise ApiError(
                422,
                "hash_mismatch",
                f"the {total} bytes uploaded do not have SHA-256 {sha}; the upload was discarded, send it again",
            )
        return {"sha256": sha, "size": size, "complete": complete}

    @staticmethod
    def _lock_upload(conn: psycopg.Connection[Any], owner: str, sha: str, total: int) -> int:
        """Lock the upload's row for this transaction, made if missing; its size. A racer that held
        the lock may have deleted the row (it completed or discarded the upload, or a finalise ended
        it), which ``FOR UPDATE`` then skips: the row is made afresh, up to a few times."""
        for _ in range(3):
            conn.execute(
                "INSERT INTO uploads (owner, sha256, total) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (owner, sha, total),
            )
            row = conn.execute(
                "SELECT size FROM uploads WHERE owner = %s AND sha256 = %s FOR UPDATE", (owner, sha)
            ).fetchone()
            if row is not None:
                return int(row[0])
        raise ApiError(
            503,
            "unavailable",
            f"the upload of {sha} was ended by other requests while this one waited; retry after Retry-After",
            headers={"Retry-After": RETRY_AFTER},
        )

    @staticmethod
    def _drop_upload(conn: psycopg.Connection[Any], owner: str, sha: str) -> list[str]:
        """Delete the upload's rows; the keys of its parts, garbage once this commits."""
        garbage = [
            r[0]
            for r in conn.execute(
                "DELETE FROM upload_parts WHERE owner = %s AND sha256 = %s RETURNING key", (owner, sha)
            ).fetchall()
        ]
        conn.execute("DELETE FROM uploads WHERE owner = %s AND sha256 = %s", (owner, sha))
        return garbage

    def _hasher(self, conn: psycopg.Connection[Any], owner: str, sha: str, offset: int) -> Any:
        with self._running_lock:
            running = self._running.pop((owner, sha), None)
        if offset == 0:
            return hashlib.sha256()
        if running is None or running[1] != offset:
            return None
        last = conn.execute(
            "SELECT key FROM upload_parts WHERE owner = %s AND sha256 = %s ORDER BY start DESC LIMIT 1",
            (owner, sha),
        ).fetchone()
        if last is None or last[0] != running[2]:
            return None  # the bytes stored are not those this replica hashed
        return running[0].copy()  # a copy: this transaction may yet roll back

    def _hash_upload(self, conn: psycopg.Connection[Any], owner: str, sha: str) -> Any:
        h = hashlib.sha256()
        for _start, length, key in conn.execute(
            "SELECT start, length, key FROM upload_parts WHERE owner = %s AND sha256 = %s ORDER BY start",
            (owner, sha),
        ).fetchall():
            h.update(self.objects.get(key, f"checking upload {sha[:12]}")[:length])
        return h

    @staticmethod
    def _make_blob(conn: psycopg.Connection[Any], owner: str, sha: str, size: int) -> list[str]:
        """Turn a complete upload into the blob ``sha``; the keys now garbage (another upload of
        the same content became the blob first)."""
        made = conn.execute(
            "INSERT INTO blobs (sha256, size) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING sha256",
            (sha, size),
        ).fetchone()
        if made is not None:
            conn.execute(
                "INSERT INTO blob_parts (sha256, start, length, key) "
                "SELECT sha256, start, length, key FROM upload_parts WHERE owner = %s AND sha256 = %s",
                (owner, sha),
            )
            conn.execute("DELETE FROM upload_parts WHERE owner = %s AND sha256 = %s", (owner, sha))
            garbage = []
        else:
            garbage = [
                r[0]
                for r in conn.execute(
                    "DELETE FROM upload_parts WHERE owner = %s AND sha256 = %s RETURNING key", (owner, sha)
                ).fetchall()
            ]
        conn.execute("DELETE FROM uploads WHERE owner = %s AND sha256 = %s", (owner, sha))
        return garbage

    def commit_artifact(self, run_id: str, path: str, sha: str) -> dict[str, Any]:
        """Place the complete content ``sha`` at ``artifacts/<path>`` (a no-op if it is already there)."""
        check_path(path)
        check_sha256(sha)
        check_run_id(run_id)
        with self.faults.write("commit") as point, self._tx(f"placing {path} in run {run_id}") as conn:
            self._row(conn, run_id, lock=True)
            current = conn.execute(
                "SELECT sha256, size FROM artifacts WHERE run_id = %s AND path = %s", (run_id, path)
            ).fetchone()
            if current is not None and current[0] == sha:
                return {"path": path, "size": current[1], "sha256": sha}
            # KEY SHARE: `gc` removes a blob nothing names under FOR UPDATE, so it waits for this
            # placement and then finds the blob named, or this placement finds no blob (409).
            blob = conn.execute("SELECT size FROM blobs WHERE sha256 = %s FOR KEY SHARE", (sha,)).fetchone()
            if blob is None:
                raise ApiError(
                    409,
                    "blob_missing",
                    f"content {sha} was not uploaded completely; upload it, then place it",
                )
            self._check_no_conflict(conn, run_id, path)
            point.midway()
            conn.execute(
                "INSERT INTO artifacts (run_id, path, sha256, size) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (run_id, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size",
                (run_id, path, sha, blob[0]),
            )
            conn.execute("UPDATE runs SET updated_at = now() WHERE id = %s", (run_id,))
            return {"path": path, "size": blob[0], "sha256": sha}

    @staticmethod
    def _check_no_conflict(conn: psycopg.Connection[Any], run_id: str, path: str) -> None:
        """A path and its parents are files or folders, never both, as in the run's folder on disk."""
        parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        if (
            parents
            and conn.execute(
                "SELECT 1 FROM artifacts WHERE run_id = %s AND path = ANY(%s) LIMIT 1", (run_id, parents)
            ).fetchone()
        ):
            raise ApiError(
                409, "path_conflict", f"a parent of artifact path {path!r} is a file on the server"
            )
        if conn.execute(
            "SELECT 1 FROM artifacts WHERE run_id = %s AND starts_with(path, %s) LIMIT 1",
            (run_id, path + "/"),
        ).fetchone():
            raise ApiError(409, "path_conflict", f"artifact path {path!r} is a directory on the server")

    def delete_artifact(self, run_id: str, path: str) -> bool:
        check_path(path)
        check_run_id(run_id)
        with self.faults.write("delete"), self._tx(f"deleting {path} of run {run_id}") as conn:
            self._row(conn, run_id, lock=True)
            gone = conn.execute(
                "DELETE FROM artifacts WHERE run_id = %s AND path = %s RETURNING path", (run_id, path)
            ).fetchone()
            if (
                gone is None
                and conn.execute(
                    "SELECT 1 FROM artifacts WHERE run_id = %s AND starts_with(path, %s) LIMIT 1",
                    (run_id, path + "/"),
                ).fetchone()
            ):
                raise ApiError(409, "path_conflict", f"artifact path {path!r} is a directory on the server")
            if gone is not None:
                conn.execute("UPDATE runs SET updated_at = now() WHERE id = %s", (run_id,))
            return gone is not None

    def put_summary(self, run_id: str, data: bytes) -> None:
        summary = parse_object(data, fmt.SUMMARY_FILE)
        problem = fmt.summary_problem(summary)
        if problem is not None:
            raise ApiError(400, "invalid_json", f"{fmt.SUMMARY_FILE} {problem}; the run is unchanged")
        check_run_id(run_id)
        with self.faults.write("summary"), self._tx(f"writing the summary of run {run_id}") as conn:
            self._row(conn, run_id, lock=True)
            conn.execute(
                "UPDATE runs SET summary_json = %s, listing = %s, updated_at = now() WHERE id = %s",
                (data, orjson.dumps(fmt.clean_summary(summary)).decode(), run_id),
            )

    def finalise(self, run_id: str, data: bytes, metrics_bytes: int, manifest_bytes: int) -> dict[str, Any]:
        """Write run.json and publish the run, unless its files hold other lengths than the client
        pushed (409 ``incomplete``): a run never appears finished with data missing."""
        info = parse_object(data, fmt.RUN_FILE)
        problem = fmt.run_info_problem(info, run_id)
        if problem is not None:
            raise ApiError(400, "invalid_json", f"{fmt.RUN_FILE} {problem}; the run is unchanged")
        with self.faults.write("finalise") as point, self._tx(f"finalising run {run_id}") as conn:
            _, metrics_size, manifest_size = self._row(conn, run_id, lock=True)
            committed = {fmt.METRICS_FILE: metrics_size, fmt.MANIFEST_FILE: manifest_size}
            if committed != {fmt.METRICS_FILE: metrics_bytes, fmt.MANIFEST_FILE: manifest_bytes}:
                raise ApiError(
                    409,
                    "incomplete",
                    f"run {run_id} has {metrics_size} bytes of metrics and {manifest_size} of manifest, "
                    f"not {metrics_bytes} and {manifest_bytes}; push the rest first",
                    committed=committed,
                )
            point.midway()
            conn.execute(
                "UPDATE runs SET run_json = %s, info = %s, published = true, updated_at = now() WHERE id = %s",
                (data, orjson.dumps(info).decode(), run_id),
            )
            garbage = [
                r[0]
                for r in conn.execute(
                    "DELETE FROM upload_parts WHERE owner = %s RETURNING key", (run_owner(run_id),)
                ).fetchall()
            ]
            conn.execute("DELETE FROM uploads WHERE owner = %s", (run_owner(run_id),))
        self._delete_quietly(garbage, f"finalising run {run_id}")
        self._fold_later(run_id)
        return self.state(run_id)

    # ----------------------------------------------------------------- the web UI's mirror

    @property
    def url(self) -> str:
        return self.objects.url

    def mirror(self, dest: Path) -> int:
        """Bring ``dest``, an ordinary local store, up to the published runs and the assets; the
        runs changed. What the web UI of a replica reads (``sync._bucket_reader.Mirror`` refreshes
        it): a cache of this process's own, never shared, safe to delete. Pieces are immutable, so
        a refresh fetches only the pieces after those already there, the artifacts whose content
        changed, and the run.json and summary.json of runs changed since (by ``updated_at``).
        """
        from .._errors import StoreError

        try:
            return self._mirror(dest)
        except ApiError as e:
            # As an AmltrackError: the Mirror thread warns of one and tries again at its next
            # refresh. An ApiError (the database or the bucket away for a moment) ended the thread,
            # and the replica's web UI showed no new run until the replica was restarted.
            raise StoreError(f"cannot refresh the web UI's copy of the team's runs: {e.message}") from None

    def _mirror(self, dest: Path) -> int:
        (dest / fmt.RUNS_DIR).mkdir(parents=True, exist_ok=True)
        seen_file = dest / fmt.CACHE_DIR / "team-mirror.json"
        try:
            seen: dict[str, str] = orjson.loads(seen_file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            seen = {}
        with self._tx("refreshing the web UI's copy") as conn:
            rows = conn.execute("SELECT id, updated_at::text FROM runs WHERE published").fetchall()
        changed = 0
        for run_id, updated in rows:
            if seen.get(run_id) == updated or not fmt.is_valid_run_id(run_id):
                continue
            self._mirror_run(run_id, dest / fmt.RUNS_DIR / run_id)
            seen[run_id] = updated
            changed += 1
        self._mirror_assets(dest)
        if changed:
            seen_file.parent.mkdir(parents=True, exist_ok=True)
            fmt.write_bytes_atomic(seen_file, orjson.dumps(seen), fsync=False)
        return changed

    def _mirror_run(self, run_id: str, d: Path) -> None:
        with self._tx(f"reading run {run_id}") as conn:
            row = conn.execute(
                "SELECT run_json, summary_json FROM runs WHERE id = %s AND published", (run_id,)
            ).fetchone()
            if row is None:
                return
            pieces = self._pieces(conn, run_id)
            artifacts = conn.execute(
                "SELECT path, sha256 FROM artifacts WHERE run_id = %s", (run_id,)
            ).fetchall()
            parts = {sha: self.blob_parts(conn, sha) for _, sha in artifacts}
        d.mkdir(parents=True, exist_ok=True)
        for name in APPEND_FILES:
            self._mirror_pieces(d / name, pieces[name], f"{name} of run {run_id}")
        # Beside the runs, not in the run's folder: a copy's bookkeeping is not the run's.
        held_file = d.parent.parent / fmt.CACHE_DIR / "team-mirror" / f"{run_id}.json"
        try:
            held: dict[str, str] = orjson.loads(held_file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            held = {}
        for path in set(held) - {p for p, _ in artifacts}:  # deleted on the server since
            with contextlib.suppress(OSError):
                (d / fmt.ARTIFACTS_DIR / path).unlink()
            del held[path]
        for path, sha in sorted(artifacts):
            target = d / fmt.ARTIFACTS_DIR / path
            if held.get(path) == sha and target.is_file():
                continue
            fmt.check_artifact_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            with PieceReader(self.objects, parts[sha], sum(p[1] for p in parts[sha]), path) as f:
                fmt.write_bytes_atomic(target, f.read(), fsync=False)
            held[path] = sha
        held_file.parent.mkdir(parents=True, exist_ok=True)
        fmt.write_bytes_atomic(held_file, orjson.dumps(held), fsync=False)
        if row[1] is not None:
            fmt.write_bytes_atomic(d / fmt.SUMMARY_FILE, bytes(row[1]), fsync=False)
        fmt.write_bytes_atomic(d / fmt.RUN_FILE, bytes(row[0]), fsync=False)  # last: then it is a run

    def _mirror_pieces(self, path: Path, pieces: list[tuple[int, int, str]], what: str) -> None:
        """Append to ``path`` the pieces after the bytes it holds (it ends at a piece's end, or
        is fetched whole)."""
        if not pieces and not path.exists():
            return
        have = path.stat().st_size if path.exists() else 0
        if have and not any(start + length == have for start, length, _ in pieces):
            have = 0
        with open(path, "r+b" if path.exists() else "wb") as f:
            f.truncate(have)
            f.seek(have)
            for start, length, key in pieces:
                if start + length > have:
                    f.write(self.objects.get(key, f"reading {what}")[:length])

    def _mirror_assets(self, dest: Path) -> None:
        from .. import _assets

        root = dest / _assets.ASSETS_DIR
        for info in TeamAssets(self).every_version():
            name, version = info.get("name"), info.get("version")
            vdir = root / str(name) / str(version)
            if (vdir / _assets.ASSET_FILE).is_file():
                continue  # versions never change once placed
            with self._tx(f"reading asset {name}") as conn:
                files = conn.execute(
                    "SELECT path, sha256, size FROM asset_files WHERE name = %s AND version = %s",
                    (name, version),
                ).fetchall()
                parts = {sha: self.blob_parts(conn, sha) for _, sha, _ in files}
            for path, sha, size in files:
                fmt.check_artifact_path(path)
                target = vdir / _assets.FILES_DIR / path
                target.parent.mkdir(parents=True, exist_ok=True)
                with PieceReader(self.objects, parts[sha], size, path) as f:
                    fmt.write_bytes_atomic(target, f.read(), fsync=False)
            fmt.write_json_atomic(vdir / _assets.ASSET_FILE, info, fsync=False)

    # ----------------------------------------------------------------- history (published runs)

    @staticmethod
    def _entry(run_id: str, run_json: Any, summary_json: Any, status: str | None = None) -> dict[str, Any]:
        """A run as the history routes answer it: run.json and summary.json parsed from their bytes
        (jsonb columns do not keep the order of keys, which the answers must)."""
        info = orjson.loads(bytes(run_json))
        listing = fmt.clean_summary(orjson.loads(bytes(summary_json))) if summary_json is not None else {}
        if status is None:
            status = _status_of(info, listing)
        return {"id": run_id, "status": status, "run": info, "summary": listing}

    def history(
        self,
        experiment: str | None,
        status: str | None,
        limit: int,
        filter: str | None = None,
        order_by: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Published runs newest first, or as ``order_by`` sorts them, that match ``filter``: SQL
        over the ``run_keys`` index (``_sqlquery``), so a page of 100,000 runs costs milliseconds."""
        from .._errors import QueryError
        from ._sqlquery import history_sql

        if status is not None and status not in fmt.STATUSES:
            raise ApiError(
                400, "invalid_request", f"status {status[:50]!r} is not one of {', '.join(fmt.STATUSES)}"
            )
        try:
            with self._tx("listing runs") as conn:
                rows = history_sql(
                    conn,
                    experiment,
                    status,
                    limit,
                    filter,
                    order_by or None,
                    local=self._local_liveness(conn),
                )
        except QueryError as e:
            raise ApiError(400, "invalid_query", str(e)) from None
        return [
            self._entry(run_id, run_json, summary_json, st) for run_id, run_json, summary_json, st in rows
        ]

    @staticmethod
    def _local_liveness(conn: psycopg.Connection[Any]) -> tuple[list[str], list[str]]:
        """The published runs on file as running that ran on this host, whose process this host can
        ask, as the store does (``owner_alive``): (the ids whose process is gone, those whose lives)."""
        import socket

        crashed: list[str] = []
        alive: list[str] = []
        for run_id, info, listing in conn.execute(
            "SELECT id, info, listing FROM runs WHERE published AND info->>'status' = 'running' "
            "AND info->>'hostname' = %s",
            (socket.gethostname(),),
        ).fetchall():
            beat = (listing or {}).get("heartbeat")
            live = owner_alive(info or {}, lambda: beat)  # noqa: B023 - called before the loop goes on
            (alive if live else crashed).append(run_id)
        return crashed, alive

    def history_run(self, ref: str) -> dict[str, Any]:
        """The published run ``ref`` names, as ``Store.run`` resolves it: ``last``, an id, a unique
        prefix of one or of its random part, or a unique run name."""
        if not ref or len(ref) > 255 or not ref.isprintable():
            raise ApiError(
                400,
                "invalid_run_id",
                f"run reference {ref[:100]!r} is not valid: give a run id, a prefix of one, 'last' or a "
                "run name (1 to 255 printable characters)",
            )
        missing = ApiError(
            404,
            "run_not_found",
            f"no finalised run on this server matches {ref!r}; list them with GET /v1/history/runs",
        )
        columns = "SELECT id, run_json, summary_json FROM runs WHERE published"
        with self._tx("finding a run") as conn:
            if ref == "last":
                rows = conn.execute(columns + " ORDER BY id DESC LIMIT 1").fetchall()
            else:
                rows = conn.execute(columns + " AND id = %s", (ref,)).fetchall()
                if not rows:
                    rows = conn.execute(
                        columns + " AND starts_with(id, %s) ORDER BY id DESC LIMIT 50", (ref,)
                    ).fetchall()
                if not rows:
                    rows = conn.execute(
                        columns + " AND starts_with(split_part(id, '-', 2), %s) AND position('-' in id) > 0 "
                        "ORDER BY id DESC LIMIT 50",
                        (ref,),
                    ).fetchall()
                if not rows:
                    rows = conn.execute(
                        columns + " AND info->>'name' = %s ORDER BY id DESC LIMIT 50", (ref,)
                    ).fetchall()
        if not rows:
            raise missing
        if len(rows) > 1:
            from .._errors import AmbiguousRunError

            raise ApiError(400, "invalid_request", str(AmbiguousRunError(ref, [r[0] for r in rows])))
        return self._entry(*rows[0])


def _status_of(info: dict[str, Any], listing: dict[str, Any]) -> str:
    """The run's status as ``Run.status`` gives it (crashed by the store's one rule)."""
    v = info.get("status")
    if not isinstance(v, str) or v not in fmt.STATUSES:
        return "unknown"
    if v == "running" and not owner_alive(info, lambda: listing.get("heartbeat")):
        return "crashed"
    return v


class TeamAssets:
    """Asset versions of a team server: rows of ``assets`` and ``asset_files`` over the blobs, with
    ``ServerAssets``' meanings (each asset.json placed once; the latest version's content again
    answers that version)."""

    def __init__(self, store: TeamStore) -> None:
        self.store = store

    def every_version(self) -> list[dict[str, Any]]:
        with self.store._tx("listing assets") as conn:
            rows = conn.execute("SELECT info FROM assets ORDER BY name, version").fetchall()
        return [r[0] for r in rows]

    def _resolve(self, conn: psycopg.Connection[Any], ref: str) -> tuple[str, int, dict[str, Any]]:
        from .. import _assets
        from .._errors import InvalidAssetNameError

        try:
            name, version = _assets.parse_ref(ref)
        except InvalidAssetNameError as e:
            raise ApiError(400, "invalid_asset", str(e)) from None
        if version is None:
            row = conn.execute(
                "SELECT version, info FROM assets WHERE name = %s ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT version, info FROM assets WHERE name = %s AND version = %s", (name, version)
            ).fetchone()
        if row is None:
            raise ApiError(
                404, "asset_not_found", f"no asset {ref!r} on the server; list them with GET /v1/assets"
            )
        return name, row[0], row[1]

    def get(self, ref: str) -> dict[str, Any]:
        with self.store._tx(f"reading asset {ref}") as conn:
            return self._resolve(conn, ref)[2]

    def open_file(self, ref: str, path: str) -> tuple[BinaryIO, int]:
        check_path(path)
        with self.store._tx(f"reading asset {ref}") as conn:
            name, version, _ = self._resolve(conn, ref)
            row = conn.execute(
                "SELECT sha256, size FROM asset_files WHERE name = %s AND version = %s AND path = %s",
                (name, version, path),
            ).fetchone()
            if row is None:
                raise ApiError(404, "not_found", f"asset {ref} has no file {path!r} on the server")
            parts = self.store.blob_parts(conn, row[0])
        reader = PieceReader(self.store.objects, parts, row[1], f"file {path} of asset {ref}")
        return reader, row[1]  # type: ignore[return-value]

    def blob_state(self, name: str, sha: str) -> dict[str, Any]:
        from ._assets import check_name

        check_name(name)
        check_sha256(sha)
        with self.store._tx(f"reading asset {name}") as conn:
            return self.store._upload_state(conn, asset_owner(name), sha, f"asset {name}")

    def put_blob(self, name: str, sha: str, offset: int, total: int, data: bytes) -> dict[str, Any]:
        from ._assets import check_name

        check_name(name)
        check_sha256(sha)
        with self.store.faults.write("blob") as point:
            return self.store.put_chunk(asset_owner(name), sha, offset, total, data, point)

    def place(self, name: str, body: bytes) -> dict[str, Any]:
        """Place the version ``body`` (an asset.json) describes, as ``ServerAssets.place``."""
        import time

        from .. import _assets
        from ._assets import parse_pushed

        info, files, origin = parse_pushed(name, body)
        with self.store.faults.write("asset") as point, self.store._tx(f"placing asset {name}") as conn:
            # One placer of a name at a time, on any replica: numbering versions is a read then a write.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"asset:{name}",))
            found = conn.execute(
                "SELECT version FROM assets WHERE name = %s AND origin = %s", (name, origin)
            ).fetchone()
            if found is not None:
                return {"ref": f"{name}:{found[0]}", "version": found[0], "existing": "origin"}
            latest = conn.execute(
                "SELECT version, info FROM assets WHERE name = %s ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
            if latest is not None and _assets._content(latest[1].get("files") or []) == _assets._content(
                files
            ):
                return {"ref": f"{name}:{latest[0]}", "version": latest[0], "existing": "content"}
            self._check_blobs(conn, files)
            version = (latest[0] if latest else 0) + 1
            placed = {
                **{k: v for k, v in info.items() if k not in ("files", "version", "size")},
                "schema": fmt.SCHEMA_VERSION,
                "version": version,
                "files": files,
                "size": sum(f["size"] for f in files),
                "origin": origin,
                "pushed_version": info.get("version"),
                "pushed": fmt.utc_iso(time.time()),
            }
            point.midway()
            conn.execute(
                "INSERT INTO assets (name, version, info, origin) VALUES (%s, %s, %s, %s)",
                (name, version, orjson.dumps(placed).decode(), origin),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO asset_files (name, version, path, sha256, size) VALUES (%s, %s, %s, %s, %s)",
                    [(name, version, f["path"], f["sha256"], f["size"]) for f in files],
                )
            return {"ref": f"{name}:{version}", "version": version, "existing": None}

    @staticmethod
    def _check_blobs(conn: psycopg.Connection[Any], files: list[dict[str, Any]]) -> None:
        """Every file's content is a blob of its size; KEY SHARE holds each against `gc` until commit."""
        for f in files:
            blob = conn.execute(
                "SELECT size FROM blobs WHERE sha256 = %s FOR KEY SHARE", (f["sha256"],)
            ).fetchone()
            if blob is None:
                raise ApiError(
                    409,
                    "blob_missing",
                    f"content {f['sha256']} of file {f['path']!r} was not uploaded completely; upload it, "
                    "then send asset.json again",
                )
            if blob[0] != f["size"]:
                raise ApiError(
                    400, "invalid_json", f"file {f['path']!r} of asset.json is not {f['size']} bytes"
                )

    def place_version(self, info: dict[str, Any]) -> dict[str, Any]:
        """Place ``info``, an asset.json as a server placed it, as the version it names, as it is:
        what ``amltrack server migrate`` copies, so that ``NAME:3`` means the same before and after.

        Answers ``{"ref", "version", "existing"}``: ``existing`` is null when placed now, "same" when
        that version already holds this asset.json, and "differs" when it (or, by ``origin``,
        another version) holds something else; nothing is written then.
        """
        from ._assets import _files, check_name

        name, version = info.get("name"), info.get("version")
        check_name(str(name))
        if type(version) is not int or version < 1:
            raise ApiError(400, "invalid_json", f"asset.json of {name} has no version number (1 or more)")
        files = _files(info)
        origin = info.get("origin") if isinstance(info.get("origin"), str) else None
        ref = f"{name}:{version}"
        with self.store._tx(f"placing asset {ref}") as conn:
            # The lock `place` numbers versions under: a push meanwhile numbers after this one.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"asset:{name}",))
            found = conn.execute(
                "SELECT info FROM assets WHERE name = %s AND version = %s", (name, version)
            ).fetchone()
            if found is not None:
                return {"ref": ref, "version": version, "existing": "same" if found[0] == info else "differs"}
            if (
                origin is not None
                and conn.execute(
                    "SELECT 1 FROM assets WHERE name = %s AND origin = %s", (name, origin)
                ).fetchone()
            ):
                return {"ref": ref, "version": version, "existing": "differs"}
            self._check_blobs(conn, files)
            conn.execute(
                "INSERT INTO assets (name, version, info, origin) VALUES (%s, %s, %s, %s)",
                (name, version, orjson.dumps(info).decode(), origin),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO asset_files (name, version, path, sha256, size) VALUES (%s, %s, %s, %s, %s)",
                    [(name, version, f["path"], f["sha256"], f["size"]) for f in files],
                )
        return {"ref": ref, "version": version, "existing": None}
