"""What a local run holds right now, read from its files: the part of a run that sync sends."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .. import _format as fmt
from .._errors import ArtifactNotFoundError, InvalidPathError, RefusedFileError, StoreError
from .._store import Run, Store
from ._errors import SyncError

_TAIL_BLOCK = 1 << 16
HASH_BLOCK = 1 << 20
ARTIFACT_TRIES = 3  # sends of an artifact that keeps changing under its upload, before it is reported


class ArtifactChanged(SyncError):
    """The artifact file being sent does not hold what was hashed from it: rewritten in place.
    ``sent`` is the bytes that went before that was found."""

    def __init__(self, message: str, sent: int = 0) -> None:
        super().__init__(message)
        self.sent = sent


def whole_lines_size(path: Path) -> int:
    """The length of ``path`` up to and including its last newline: what a byte copy may send.

    The bytes after it are a record being written, or torn by a crash; every reader skips them.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        pos = os.fstat(f.fileno()).st_size
        while pos > 0:
            start = max(0, pos - _TAIL_BLOCK)
            f.seek(start)
            i = f.read(pos - start).rfind(b"\n")
            if i >= 0:
                return start + i + 1
            pos = start
    return 0


def sha256_bytes(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, limit: int | None = None) -> str:
    """SHA-256 of the file, or of its first ``limit`` bytes."""
    with open(path, "rb") as f:
        return sha256_open(f, limit)


def sha256_open(f: BinaryIO, limit: int | None = None) -> str:
    """SHA-256 of the open file from where it stands, or of its next ``limit`` bytes."""
    h = hashlib.sha256()
    left = limit
    while left is None or left > 0:
        block = f.read(HASH_BLOCK if left is None else min(HASH_BLOCK, left))
        if not block:
            break
        h.update(block)
        if left is not None:
            left -= len(block)
    return h.hexdigest()


def identity(st: os.stat_result) -> tuple[int, ...]:
    """What tells one version of an artifact file from another. The store replaces an artifact
    (os.replace of a new file), never rewrites it in place, so a file whose inode, size and times
    are those of the file hashed holds the content hashed."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class LocalFile:
    path: str
    size: int
    sha256: str
    mtime_ns: int
    identity: tuple[int, ...] = ()


@dataclass
class Snapshot:
    """A run's files as of one moment: run.json and summary.json bytes, the lengths of whole lines
    in metrics.jsonl and artifacts.jsonl, and the manifest's latest entry per stored path."""

    run: Run
    run_json: bytes
    info: dict[str, Any]
    summary_json: bytes | None
    metrics_size: int
    manifest_size: int
    _stored: dict[str, dict[str, Any]] | None = field(default=None, repr=False)
    _files: dict[str, LocalFile] | None = field(default=None, repr=False)
    # Stored artifacts that are not read, and why (a symlink on the way): filled by artifact_files().
    refused: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def dir(self) -> Path:
        return self.run.dir

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def stored(self) -> dict[str, dict[str, Any]]:
        """The manifest's latest entry for each path whose status is ``stored`` (read on first use)."""
        if self._stored is None:
            data = b""
            if self.manifest_size:
                with open(self.dir / fmt.MANIFEST_FILE, "rb") as f:
                    data = f.read(self.manifest_size)
            self._stored = _latest_stored(data)
        return self._stored

    def fresh(self) -> Snapshot:
        """The same snapshot without the cached artifact hashes, to hash every file again."""
        return Snapshot(
            self.run,
            self.run_json,
            self.info,
            self.summary_json,
            self.metrics_size,
            self.manifest_size,
            self._stored,
        )

    def fingerprint(self) -> dict[str, Any]:
        """What the ledger compares to tell that nothing changed since the last complete push."""
        return {
            "run_sha256": sha256_bytes(self.run_json),
            "summary_sha256": sha256_bytes(self.summary_json),
            "metrics_bytes": self.metrics_size,
            "manifest_bytes": self.manifest_size,
        }

    def artifact_files(self, known: dict[str, Any] | None = None) -> dict[str, LocalFile]:
        """The stored artifacts that exist as files, with their SHA-256.

        ``known`` (the ledger's ``{path: {sha256, size, mtime_ns}}``) saves re-hashing a file whose
        size and mtime did not change. A file reached through a symlink is left out, and put in
        ``refused`` with the reason: its target could be any file of the machine.
        """
        if self._files is not None:
            return self._files
        known = known or {}
        out: dict[str, LocalFile] = {}
        self.refused = {}
        for path in self.stored:
            try:
                f = self.run.open_artifact(path)
            except ArtifactNotFoundError:
                continue
            except RefusedFileError as e:
                self.refused[path] = str(e)
                continue
            with f:
                st = os.fstat(f.fileno())
                k = known.get(path)
                if (
                    isinstance(k, dict)
                    and k.get("size") == st.st_size
                    and k.get("mtime_ns") == st.st_mtime_ns
                ):
                    sha = str(k.get("sha256"))
                else:
                    sha = sha256_open(f)
            out[path] = LocalFile(path, st.st_size, sha, st.st_mtime_ns, identity(st))
        self._files = out
        return out

    def open_to_send(self, path: str) -> tuple[BinaryIO, LocalFile]:
        """Artifact ``path`` open for sending, and what that open file holds.

        A file replaced since ``artifact_files`` hashed it (a running job rewrites its "latest"
        checkpoint) is hashed again from this open file, so the bytes read from it are the ones the
        hash names, whichever version that is; the snapshot then lists that version, for the ledger.
        A file gone meanwhile is dropped from the list (ArtifactNotFoundError); one now reached through
        a symlink is moved to ``refused`` (RefusedFileError).
        """
        files = self.artifact_files()
        try:
            f = self.run.open_artifact(path)
        except ArtifactNotFoundError:
            files.pop(path, None)
            raise
        except RefusedFileError as e:
            files.pop(path, None)
            self.refused[path] = str(e)
            raise
        try:
            st = os.fstat(f.fileno())
            listed = files.get(path)
            if listed is None or listed.identity != identity(st):
                listed = LocalFile(path, st.st_size, sha256_open(f, st.st_size), st.st_mtime_ns, identity(st))
                f.seek(0)
                files[path] = listed
        except BaseException:
            f.close()
            raise
        return f, listed

    def refusal(self) -> str | None:
        """One line on the artifacts ``artifact_files`` refused, or None if it refused none."""
        if not self.refused:
            return None
        path, why = next(iter(sorted(self.refused.items())))
        more = f" (and {len(self.refused) - 1} more)" if len(self.refused) > 1 else ""
        return f"artifact {path!r} of run {self.id}{more} was left out: {why}"


def send_artifact(snap: Snapshot, path: str, send: Callable[[BinaryIO, LocalFile], None]) -> LocalFile | None:
    """Send artifact ``path`` with ``send(open file, what it holds)``; the version sent, or None if
    the file is gone since the listing (the manifest's next entry says so) or now refused.

    ``send`` raises ArtifactChanged when the file turns out to be rewritten in place under it; it is
    then opened (and hashed) again and sent with its new content, ARTIFACT_TRIES times in all, and
    then SyncError names it.
    """
    why = ""
    for _ in range(ARTIFACT_TRIES):
        try:
            fh, f = snap.open_to_send(path)
        except (ArtifactNotFoundError, RefusedFileError):
            return None
        with fh:
            try:
                send(fh, f)
                return f
            except ArtifactChanged as e:
                why = str(e).removesuffix("; sync again")
    raise SyncError(
        f"artifact {path} of run {snap.id} changed while it was sent, {ARTIFACT_TRIES} times in a row "
        f"({why}): it is being rewritten in place; sync again when it is not (a job that writes a new "
        "file and renames it over the old one never meets this)"
    )


def _latest_stored(data: bytes) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for line in data.split(b"\n"):
        try:
            r = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # garbage is copied as bytes like everything else; it names no file
        if type(r) is dict and type(r.get("path")) is str:
            latest[r["path"]] = r
    out = {}
    for path, r in latest.items():
        if r.get("status") != "stored":
            continue
        try:
            fmt.check_artifact_path(path)
        except InvalidPathError:
            continue  # a hand-edited manifest must not make sync read outside artifacts/
        out[path] = r
    return out


def snapshot(store: Store, run_id: str) -> Snapshot:
    """Read the run's files; StoreError if run.json is missing or not a JSON object."""
    run_dir = store.runs_dir / run_id
    try:
        run_json, info = fmt.read_run_info(run_dir)
    except FileNotFoundError:
        raise StoreError(
            f"run {run_id} has no {fmt.RUN_FILE}; it is not a run, or was cut short while created"
        ) from None
    summary: bytes | None
    try:
        summary = (run_dir / fmt.SUMMARY_FILE).read_bytes()
        if not isinstance(orjson.loads(summary), dict):
            summary = None
    except (FileNotFoundError, orjson.JSONDecodeError):
        summary = None  # a cache; a broken one is not worth failing the run for
    metrics_size = whole_lines_size(run_dir / fmt.METRICS_FILE)
    return Snapshot(
        run=Run(store, run_dir, info),
        run_json=run_json,
        info=info,
        summary_json=summary,
        metrics_size=metrics_size,
        manifest_size=whole_lines_size(run_dir / fmt.MANIFEST_FILE),
    )
