"""Pushing runs to amltrack's own history server (``amltrack server``), exactly once.

Per run: ask the server what it holds (one GET), append the missing tail of metrics.jsonl by byte
offset, upload changed artifacts by content hash in resumable chunks and place them, append the
tail of artifacts.jsonl, replace summary.json, and finalise with run.json. Every request can be
repeated safely, so a lost answer is simply retried, and an interrupted push continues from the
server's committed lengths. ``docs/sync.md`` has the protocol.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from .. import __version__
from .. import _format as fmt
from ._errors import RemoteError, RemoteUnavailableError, SyncError
from ._local import LocalFile, Snapshot, sha256_bytes, sha256_file
from ._remote import HttpRemote, Progress, PushResult
from ._remotes import check_url

CHUNK = 8 * 1024 * 1024
_EMPTY_SHA = hashlib.sha256(b"").hexdigest()

@dataclass
class _Plan:
    create: bool
    metrics: tuple[int, int]
    manifest: tuple[int, int]
    uploads: list[LocalFile] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    summary: bool = False
    finalise: bool = False

    def bytes(self, snap: Snapshot) -> int:
        n = self.metrics[1] - self.metrics[0] + self.manifest[1] - self.manifest[0]
        n += sum(f.size for f in self.uploads)
        if self.summary and snap.summary_json is not None:
            n += len(snap.summary_json)
        return n + (len(snap.run_json) if self.finalise else 0)


class AmltrackRemote(HttpRemote):
    """A client of one amltrack server.

    remote = AmltrackRemote("http://127.0.0.1:8765", token)
    remote.push_run(snapshot(store, run_id), NullProgress())
    """

    kind = "amltrack"

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.2,
        timeout: float = 60.0,
        chunk_size: int = CHUNK,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = check_url(url)
        self.retries = retries
        self.backoff = backoff
        self.chunk_size = chunk_size
        headers = {"User-Agent": f"amltrack/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        self._max_body: int | None = None
        super().__init__()

    def __repr__(self) -> str:
        return f"AmltrackRemote({self.url!r})"

    # ----------------------------------------------------------------- HTTP

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        write: bool = False,
    ) -> Any:
        """One request, retried on a transport failure or a 502-504 (every request is idempotent)."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                r = self._client.request(method, url, params=params, content=content)
            except httpx.TransportError as e:
                if attempt == self.retries or isinstance(e, httpx.UnsupportedProtocol):
                    raise RemoteUnavailableError(self.url, e) from e
                time.sleep(delay)
                delay *= 3
                continue
            if r.status_code in (502, 503, 504) and attempt < self.retries:
                time.sleep(delay)
                delay *= 3
                continue
            break
        if write:
            self._wrote()
        if r.status_code >= 400:
            raise self._error(r)
        try:
            return r.json()
        except ValueError:
            raise RemoteError(
                self.url,
                r.status_code,
                "bad_response",
                f"{method} {url} answered with something that is not JSON; is this an amltrack server?",
            ) from None

    def _error(self, r: httpx.Response) -> RemoteError:
        try:
            err = r.json()["error"]
            code, message = str(err["code"]), str(err["message"])
            extra = {k: v for k, v in err.items() if k not in ("code", "message")}
        except (ValueError, KeyError, TypeError):
            code, message, extra = f"http_{r.status_code}", r.text[:200].strip() or r.reason_phrase, {}
        return RemoteError(self.url, r.status_code, code, message, extra)

    def max_body(self) -> int:
        if self._max_body is None:
            health = self._call("GET", "/v1/health")
            if health.get("server") != "amltrack":
                raise SyncError(f"{self.url} is not an amltrack server (GET /v1/health)")
            self._max_body = int(health.get("max_body") or CHUNK)
        return self._max_body

    def _chunk(self) -> int:
        return max(1, min(self.chunk_size, self.max_body()))

    def state(self, run_id: str, *, hashes: bool = False) -> dict[str, Any] | None:
        """What the server holds of the run, or None if it has nothing."""
        try:
            return self._call("GET", f"/v1/runs/{run_id}", params={"hashes": "true"} if hashes else None)
        except RemoteError as e:
            if e.code == "run_not_found":
                return None
            raise

    # ----------------------------------------------------------------- push

    def _plan(self, snap: Snapshot, state: dict[str, Any] | None, files: dict[str, LocalFile]) -> _Plan:
        remote_files = (state or {}).get("files") or {}
        remote_artifacts = (state or {}).get("artifacts") or {}

        def span(name: str, local: int) -> tuple[int, int]:
            have = (remote_files.get(name) or {}).get("size") or 0
            if have > local:
                raise SyncError(
                    f"the remote's {name} of run {snap.id} has {have} bytes, more than the local {local}: "
                    "the two copies have diverged; check with --verify, and delete the run on the remote "
                    "to push it afresh"
                )
            return have, local

        plan = _Plan(
            create=state is None,
            metrics=span(fmt.METRICS_FILE, snap.metrics_size),
            manifest=span(fmt.MANIFEST_FILE, snap.manifest_size),
        )
        plan.deletes = sorted(p for p in remote_artifacts if p not in files)
        plan.uploads = [
            f for p, f in sorted(files.items()) if (remote_artifacts.get(p) or {}).get("sha256") != f.sha256
        ]
        remote_summary = (remote_files.get(fmt.SUMMARY_FILE) or {}).get("sha256")
        plan.summary = snap.summary_json is not None and sha256_bytes(snap.summary_json) != remote_summary
        remote_run = (remote_files.get(fmt.RUN_FILE) or {}).get("sha256")
        plan.finalise = (
            state is None
            or not state.get("published")
            or remote_run != sha256_bytes(snap.run_json)
            or plan.metrics[0] != plan.metrics[1]
            or plan.manifest[0] != plan.manifest[1]
            or bool(plan.uploads or plan.deletes or plan.summary)
        )
        return plan

    def push_run(
        self,
        snap: Snapshot,
        progress: Progress,
        *,
        dry_run: bool = False,
        known: dict[str, Any] | None = None,
    ) -> PushResult:
        self.max_body()  # an early, clear error if the URL is not an amltrack server
        state = self.state(snap.id)
        files = snap.artifact_files(known)
        plan = self._plan(snap, state, files)
        result = PushResult(snap.id, planned=plan.bytes(snap), remote={"published": True})
        if dry_run or not plan.finalise:
            return result
        writes0 = self.writes
        progress.start(snap.id, result.planned)
        rid = snap.id
        if plan.create:
            self._call("PUT", f"/v1/runs/{rid}", write=True)
        result.sent += self._append(snap, fmt.METRICS_FILE, *plan.metrics, progress)
        for path in plan.deletes:
            self._call("DELETE", f"/v1/runs/{rid}/artifacts/{quote(path, safe='/')}", write=True)
        for f in plan.uploads:
            result.sent += self._upload(snap, f, progress)
        result.sent += self._append(snap, fmt.MANIFEST_FILE, *plan.manifest, progress)
        if plan.summary and snap.summary_json is not None:
            self._call("PUT", f"/v1/runs/{rid}/summary.json", content=snap.summary_json, write=True)
            result.sent += len(snap.summary_json)
            progress.advance(len(snap.summary_json))
        self._call(
            "PUT",
            f"/v1/runs/{rid}/run.json",
            content=snap.run_json,
            write=True,
            params={"metrics_bytes": snap.metrics_size, "manifest_bytes": snap.manifest_size},
        )
        result.sent += len(snap.run_json)
        progress.advance(len(snap.run_json))
        result.writes = self.writes - writes0
        return result

    def _append(self, snap: Snapshot, name: str, start: int, end: int, progress: Progress) -> int:
        """Send bytes [start, end) of the local file, resuming from the server's committed length."""
        if end <= start:
            return 0
        sent = 0
        offset = start
        chunk_size = self._chunk()
        with open(snap.dir / name, "rb") as f:
            while offset < end:
                f.seek(offset)
                chunk = f.read(min(chunk_size, end - offset))
                if not chunk:
                    raise SyncError(f"{snap.dir / name} shrank while it was sent; it is append-only")
                if offset + len(chunk) < end:  # end a chunk at a line end when one fits in it
                    cut = chunk.rfind(b"\n")
                    if cut >= 0:
                        chunk = chunk[: cut + 1]
                try:
                    r = self._call(
                        "POST",
                        f"/v1/runs/{snap.id}/append/{name}",
                        params={"offset": offset},
                        content=chunk,
                        write=True,
                    )
                except RemoteError as e:
                    if e.code != "offset_mismatch":
                        raise
                    committed = int(e.extra.get("committed", -1))
                    if not 0 <= committed <= end:
                        raise SyncError(
                            f"the remote's {name} of run {snap.id} has {committed} bytes, more than the "
                            f"local {end}: the copies have diverged"
                        ) from None
                    offset = committed  # an earlier answer was lost, or another push got there first
                    continue
                offset = int(r["size"])
                sent += len(chunk)
                progress.advance(len(chunk))
        return sent

    def _upload(self, snap: Snapshot, f: LocalFile, progress: Progress) -> int:
        """Upload an artifact's content in chunks, resuming a partial upload, then place it at its path."""
        rid = snap.id
        sent = 0
        try:
            blob = self._call("GET", f"/v1/runs/{rid}/blobs/{f.sha256}")
        except RemoteError as e:
            if e.code != "blob_not_found":
                raise
            blob = {"size": 0, "complete": False}
        offset = int(blob["size"])
        complete = bool(blob["complete"])
        chunk_size = self._chunk()
        if not complete:
            with open(snap.dir / fmt.ARTIFACTS_DIR / f.path, "rb") as fh:
                while not complete:
                    if offset > f.size:
                        raise SyncError(
                            f"the remote holds {offset} bytes of artifact {f.path} of run {rid}, more than "
                            f"its {f.size}; sync again"
                        )
                    fh.seek(offset)
                    chunk = fh.read(min(chunk_size, f.size - offset))
                    if len(chunk) < min(chunk_size, f.size - offset):
                        raise SyncError(
                            f"artifact {f.path} of run {rid} shrank while it was sent; sync again"
                        )
                    try:
                        r = self._call(
                            "POST",
                            f"/v1/runs/{rid}/blobs/{f.sha256}",
                            params={"offset": offset, "size": f.size},
                            content=chunk,
                            write=True,
                        )
                    except RemoteError as e:
                        if e.code != "offset_mismatch":
                            raise
                        offset = int(e.extra.get("committed", 0))
                        continue
                    offset, complete = int(r["size"]), bool(r["complete"])
                    sent += len(chunk)
                    progress.advance(len(chunk))
        self._call(
            "PUT",
            f"/v1/runs/{rid}/artifacts/{quote(f.path, safe='/')}",
            params={"sha256": f.sha256},
            write=True,
        )
        return sent

    # ----------------------------------------------------------------- verify

    def verify_run(self, snap: Snapshot) -> list[str]:
        self.max_body()
        state = self.state(snap.id, hashes=True)
        if state is None:
            return ["the run is not on the remote"]
        diffs = []
        if not state.get("published"):
            diffs.append("the remote holds the run unfinished (a push was interrupted); sync again")
        files = state.get("files") or {}
        for name, local in ((fmt.RUN_FILE, snap.run_json), (fmt.SUMMARY_FILE, snap.summary_json)):
            remote = (files.get(name) or {}).get("sha256")
            if local is not None and remote != sha256_bytes(local):
                diffs.append(f"{name} differs" if remote else f"{name} is missing on the remote")
        for name, local_size in (
            (fmt.METRICS_FILE, snap.metrics_size),
            (fmt.MANIFEST_FILE, snap.manifest_size),
        ):
            remote = files.get(name) or {"size": 0, "sha256": _EMPTY_SHA}
            size, path = int(remote["size"]), snap.dir / name
            full = path.stat().st_size if path.exists() else 0
            if size > full:
                diffs.append(f"{name} has {size} bytes on the remote, more than the local {full}")
            elif (sha256_file(path, size) if size else _EMPTY_SHA) != remote["sha256"]:
                diffs.append(f"{name} differs from the local file in its first {size} bytes")
            elif size < local_size:
                diffs.append(f"{name} has {local_size - size} bytes not pushed yet")
        remote_artifacts = state.get("artifacts") or {}
        local = snap.fresh().artifact_files()
        for path, f in sorted(local.items()):
            r = remote_artifacts.get(path)
            if r is None:
                diffs.append(f"artifact {path} is missing on the remote")
            elif r.get("sha256") != f.sha256:
                diffs.append(
                    f"artifact {path} differs (remote sha256 {str(r.get('sha256'))[:12]}, "
                    f"local {f.sha256[:12]})"
                )
        for path in sorted(set(remote_artifacts) - set(local)):
            diffs.append(f"artifact {path} is on the remote but not stored locally")
        return diffs
