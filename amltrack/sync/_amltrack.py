"""Pushing runs to amltrack's own history server (``amltrack server``), exactly once.

Per run: ask the server what it holds (one GET), append the missing tail of metrics.jsonl by byte
offset, upload changed artifacts by content hash in resumable chunks and place them, append the
tail of artifacts.jsonl, replace summary.json, and finalise with run.json. Every request can be
repeated safely, so a lost answer is simply retried, and an interrupted push continues from the
server's committed lengths. ``docs/sync.md`` has the protocol.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from .. import _format as fmt
from .._assets import Asset
from .._errors import AmltrackError
from ._answers import Route, count, flag, obj, objects, table, text
from ._errors import RemoteConfigError, RemoteError, SyncError
from ._http import HttpBacked, HttpClient, RetryPolicy, amltrack_client, error_fields
from ._local import ArtifactChanged, LocalFile, Snapshot, send_artifact, sha256_bytes, sha256_file
from ._remote import AssetPush, Progress, PushResult
from ._targets import check_url

UPLOAD_CHUNK = 16 * 1024 * 1024
_EMPTY_SHA = hashlib.sha256(b"").hexdigest()
_COUNT_BLOCK = 1 << 20


def count_lines(path: Path, start: int, end: int) -> int:
    """The newlines in bytes [start, end) of the file: the records a push of that span sends."""
    if end <= start:  # nothing to send, and a running run may have no metrics.jsonl yet
        return 0
    n = 0
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            block = f.read(min(_COUNT_BLOCK, left))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
    return n


@dataclass
class _PushPlan:
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


class AmltrackRemote(HttpBacked):
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
        chunk_size: int = UPLOAD_CHUNK,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = check_url(url)
        self.chunk_size = chunk_size
        self._token = token
        self._http = HttpClient(
            amltrack_client(self.url, token, timeout, transport),
            self.url,
            # A team server's replica answers 503 with Retry-After while its database or bucket is
            # briefly away (a restart, a failover): wait as long as it says, not the short pauses.
            RetryPolicy(retries, backoff, retry_after=True),
            sleep=sleep,
        )
        self._max_body: int | None = None

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
        r = self._http.request(method, url, params=params, content=content, write=write)
        assert r is not None  # every request may be repeated as it is
        if r.status_code >= 400:
            raise self._error(r, len(content or b""))
        try:
            return r.json()
        except ValueError:
            raise RemoteError(
                self.url,
                r.status_code,
                "bad_response",
                f"{method} {url} answered with something that is not JSON; is this an amltrack server?",
            ) from None

    def _error(self, r: httpx.Response, size: int = 0) -> RemoteError:
        """The answer as a RemoteError whose message says what to do, rather than the server's own
        words where those are meant for the writer of a client (a 413's "send smaller chunks")."""
        status = r.status_code
        code, message, extra = error_fields(r)
        set_token = "AMLTRACK_TOKEN, or the remote's token ('amltrack remote add NAME URL --token T'),"
        # The server's 401 and 403 messages are written for any client; say it once, for this one.
        if code == "unauthorized":
            message = (
                "it does not know the token sent" if self._token else "it needs a token, and none was sent"
            )
            return RemoteError(
                self.url, status, code, message, extra, hint=f"; set {set_token} to a token it knows"
            )
        if code == "forbidden":
            return RemoteError(
                self.url,
                status,
                code,
                "the token sent may only read",
                extra,
                hint=f"; set {set_token} to a token with the write scope",
                remote_wide=True,
            )
        if status == 403:  # from something in front of the server: it refuses every run alike
            return RemoteError(self.url, status, code, message, extra, remote_wide=True)
        if status == 413:
            limit = f"its limit of {self._max_body} bytes" if self._max_body else "its limit"
            return RemoteError(
                self.url,
                status,
                code,
                f"a request body of {size} bytes is over {limit}, or over a lower one of a proxy in front of it",
                extra,
                hint="; raise the limit (amltrack server --max-body BYTES, or the proxy's)",
            )
        return RemoteError(self.url, status, code, message, extra)

    def max_body(self) -> int:
        """The server's request size limit, from ``GET /v1/health``, which also checks that the URL is
        an amltrack server; every failure here is remote-wide."""
        if self._max_body is None:
            try:
                health = self._call("GET", "/v1/health")
            except RemoteError as e:
                if e.status in (401, 403) or e.status >= 500:
                    e.remote_wide = True  # a proxy that wants credentials, or a failing server
                    raise
                raise self._not_amltrack(f"GET /v1/health answered {e.status} {e.code}") from None
            if not isinstance(health, dict) or health.get("server") != "amltrack":
                raise self._not_amltrack("GET /v1/health does not answer as one does")
            limit = health.get("max_body")
            if limit is not None and (type(limit) is not int or limit < 1):
                raise self._not_amltrack(f"GET /v1/health answered max_body={limit!r:.60}, not a size")
            self._max_body = limit or UPLOAD_CHUNK
        return self._max_body

    def _not_amltrack(self, why: str) -> RemoteConfigError:
        return RemoteConfigError(
            f"{self.url} is not an amltrack server ({why}); check the URL: amltrack's server answers "
            "GET /v1/health, and an MLflow server's URL starts with mlflow+http:// or mlflow+https://"
        )

    def _check_size(self, snap: Snapshot, name: str, data: bytes) -> None:
        """run.json and summary.json go in one request each: one over the limit can never be sent."""
        limit = self.max_body()
        if len(data) > limit:
            raise SyncError(
                f"{name} of run {snap.id} is {len(data)} bytes, over the request limit of {limit} bytes "
                f"of {self.url}, and it cannot be sent in parts; raise the server's limit to at least "
                f"that (amltrack server --max-body {len(data)})"
            )

    def _put_whole(
        self, snap: Snapshot, name: str, data: bytes, params: dict[str, Any] | None = None
    ) -> None:
        try:
            self._call("PUT", f"/v1/runs/{snap.id}/{name}", content=data, params=params, write=True)
        except RemoteError as e:
            if e.status != 413:
                raise
            raise SyncError(
                f"{self.url} refused {name} of run {snap.id} ({len(data)} bytes) as too large (413), "
                f"though it announces a limit of {self.max_body()} bytes: a proxy in front of it may have "
                f"a lower one; raise that limit to at least {len(data)} bytes"
            ) from None

    def _chunk(self) -> int:
        return max(1, min(self.chunk_size, self.max_body()))

    def state(self, run_id: str, *, hashes: bool = False) -> dict[str, Any] | None:
        """What the server holds of the run, or None if it has nothing: ``published``, ``files``
        ``{name: {size, sha256} | None}`` and ``artifacts`` ``{path: {size, sha256}}``, checked."""
        try:
            body = self._call("GET", f"/v1/runs/{run_id}", params={"hashes": "true"} if hashes else None)
        except RemoteError as e:
            if e.code == "run_not_found":
                return None
            raise
        at = Route(self.url, f"GET /v1/runs/{run_id}")
        d = obj(body, at)
        files: dict[str, dict[str, Any] | None] = {}
        for name, entry in table(d, "files", at).items():
            if entry is not None:  # null: the server has no such file yet
                held = obj(entry, at, f"files.{name}")
                entry = {
                    "size": count(held, "size", at, f"files.{name}"),
                    "sha256": text(held, "sha256", at, f"files.{name}", optional=True),
                }
            files[name] = entry
        artifacts = {}
        for path, entry in table(d, "artifacts", at).items():
            held = obj(entry, at, f"artifacts.{path}")
            artifacts[path] = {
                "size": count(held, "size", at, f"artifacts.{path}"),
                "sha256": text(held, "sha256", at, f"artifacts.{path}"),
            }
        return {"published": flag(d, "published", at), "files": files, "artifacts": artifacts}

    # ----------------------------------------------------------------- push

    def _plan(self, snap: Snapshot, state: dict[str, Any] | None, files: dict[str, LocalFile]) -> _PushPlan:
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

        plan = _PushPlan(
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
        check: bool = False,  # every push asks for each artifact's hash: nothing is trusted without
        remote_state: dict[str, Any] | None = None,  # the server's answer is the state: nothing kept
    ) -> PushResult:
        self.max_body()  # an early, clear error if the URL is not an amltrack server
        state = self.state(snap.id)
        files = snap.artifact_files(known)
        plan = self._plan(snap, state, files)
        result = PushResult(snap.id, planned=plan.bytes(snap), remote={"published": True})
        if not plan.finalise:
            return result
        self._check_size(snap, fmt.RUN_FILE, snap.run_json)
        if plan.summary and snap.summary_json is not None:
            self._check_size(snap, fmt.SUMMARY_FILE, snap.summary_json)
        if dry_run:
            return result
        writes0 = self.writes
        progress.start(snap.id, result.planned, count_lines(snap.dir / fmt.METRICS_FILE, *plan.metrics))
        rid = snap.id
        if plan.create:
            self._call("PUT", f"/v1/runs/{rid}", write=True)
        result.sent += self._append(snap, fmt.METRICS_FILE, *plan.metrics, progress)
        for path in plan.deletes:
            self._call("DELETE", f"/v1/runs/{rid}/artifacts/{quote(path, safe='/')}", write=True)
        remote_artifacts = (state or {}).get("artifacts") or {}
        for f in plan.uploads:
            # One artifact that cannot go must not keep the metrics and the manifest from the server:
            # a running run would be missing there, or stale, for as long as its job rewrites the file.
            try:
                remote_sha = (remote_artifacts.get(f.path) or {}).get("sha256")
                upload = partial(self._upload, snap, remote_sha=remote_sha, progress=progress, result=result)
                send_artifact(snap, f.path, upload)
            except (AmltrackError, OSError) as e:
                if isinstance(e, SyncError) and e.remote_wide:
                    raise
                result.unsent[f.path] = str(e)
        result.sent += self._append(snap, fmt.MANIFEST_FILE, *plan.manifest, progress)
        if plan.summary and snap.summary_json is not None:
            self._put_whole(snap, fmt.SUMMARY_FILE, snap.summary_json)
            result.sent += len(snap.summary_json)
            progress.advance(len(snap.summary_json))
        self._put_whole(
            snap,
            fmt.RUN_FILE,
            snap.run_json,
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
                at = Route(self.url, f"POST /v1/runs/{snap.id}/append/{name}")
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
                    committed = count(e.extra, "committed", at)
                    if committed > end:
                        raise SyncError(
                            f"the remote's {name} of run {snap.id} has {committed} bytes, more than the "
                            f"local {end}: the copies have diverged"
                        ) from None
                    if committed == offset:  # taken at its word, the same request would be sent forever
                        raise at.bad(
                            f"409 offset_mismatch with 'committed' = {committed}, the offset sent"
                        ) from None
                    offset = committed  # an earlier answer was lost, or another push got there first
                    continue
                size = count(obj(r, at), "size", at)
                if size != offset + len(chunk):
                    raise at.bad(
                        f"'size' = {size}, not {offset + len(chunk)} (the offset plus the bytes sent)"
                    )
                offset = size
                sent += len(chunk)
                progress.advance(len(chunk), chunk.count(b"\n") if name == fmt.METRICS_FILE else 0)
        return sent

    def _upload(
        self,
        snap: Snapshot,
        fh: BinaryIO,
        f: LocalFile,
        *,
        remote_sha: str | None,
        progress: Progress,
        result: PushResult,
    ) -> None:
        """Upload content ``f`` from its open file, resuming a partial upload of the same content,
        then place it at its path; ArtifactChanged if the file turns out not to hold ``f``.

        ``f`` is what the file holds when opened, hashed from it if the job replaced it since the
        listing, so a resumed upload continues the content it began.
        """
        if f.sha256 == remote_sha:
            return  # replaced since the listing by the content the server holds
        rid = snap.id
        try:
            result.sent += self._send_content(
                f"/v1/runs/{rid}/blobs",
                f.sha256,
                f.size,
                lambda: nullcontext(fh),
                f"artifact {f.path} of run {rid}",
                progress,
            )
        except ArtifactChanged as e:
            result.sent += e.sent
            raise
        self._call(
            "PUT",
            f"/v1/runs/{rid}/artifacts/{quote(f.path, safe='/')}",
            params={"sha256": f.sha256},
            write=True,
        )

    def _send_content(
        self,
        base: str,
        sha: str,
        size: int,
        source: Callable[[], AbstractContextManager[BinaryIO]],
        what: str,
        progress: Progress,
    ) -> int:
        """Upload the content ``sha`` (``size`` bytes, read from ``source()``) to ``{base}/{sha}`` in
        chunks, resuming a partial upload; the bytes sent. ArtifactChanged (with the bytes sent) if
        the file does not hold that content: it comes up short, or the server finds another hash."""
        sent = 0
        try:
            blob = self._call("GET", f"{base}/{sha}")
        except RemoteError as e:
            if e.code != "blob_not_found":
                raise
            blob = {"size": 0, "complete": False}
        at = Route(self.url, f"GET {base}/{sha}")
        blob = obj(blob, at)
        offset, complete = count(blob, "size", at), flag(blob, "complete", at)
        if complete:
            return 0
        at = Route(self.url, f"POST {base}/{sha}")
        chunk_size = self._chunk()
        with source() as fh:
            while not complete:
                if offset > size:
                    raise SyncError(
                        f"the remote holds {offset} bytes of {what}, more than its {size}; sync again"
                    )
                fh.seek(offset)
                chunk = fh.read(min(chunk_size, size - offset))
                if len(chunk) < min(chunk_size, size - offset):
                    raise ArtifactChanged(
                        f"{what} shrank while it was sent, to {offset + len(chunk)} of {size} bytes; sync again",
                        sent,
                    )
                try:
                    r = self._call(
                        "POST",
                        f"{base}/{sha}",
                        params={"offset": offset, "size": size},
                        content=chunk,
                        write=True,
                    )
                except RemoteError as e:
                    if e.code == "hash_mismatch":  # the server took the last chunk, and discarded the upload
                        raise ArtifactChanged(
                            f"the server found the bytes sent of {what} are not those hashed; sync again",
                            sent + len(chunk),
                        ) from None
                    if e.code != "offset_mismatch":
                        raise
                    committed = count(e.extra, "committed", at)
                    if committed == offset:  # the same request would be sent forever
                        raise at.bad(
                            f"409 offset_mismatch with 'committed' = {committed}, the offset sent"
                        ) from None
                    offset = committed
                    continue
                r = obj(r, at)
                got, complete = count(r, "size", at), flag(r, "complete", at)
                if got != (size if complete else offset + len(chunk)) or (not complete and got >= size):
                    raise at.bad(
                        f"'size' = {got} and 'complete' = {str(complete).lower()} after a chunk of "
                        f"{len(chunk)} bytes at {offset} of {size}"
                    )
                offset = got
                sent += len(chunk)
                progress.advance(len(chunk))
        return sent

    # ----------------------------------------------------------------- assets

    def push_asset(
        self, asset: Asset, body: bytes, progress: Progress, *, dry_run: bool = False
    ) -> AssetPush:
        """Upload the files of an asset version that the server lacks, then place the version by its
        asset.json (``body``, as read from it); the server answers the version it made, or the one
        that already holds it."""
        self.max_body()
        name = asset.name
        base = f"/v1/assets/{quote(name, safe='')}/blobs"
        files = {f["sha256"]: f for f in asset.files if isinstance(f.get("sha256"), str)}
        missing = []
        for sha, f in sorted(files.items()):
            at = Route(self.url, f"GET {base}/{sha}")
            try:
                state = obj(self._call("GET", f"{base}/{sha}"), at)
                complete = flag(state, "complete", at)
            except RemoteError as e:
                if e.code != "blob_not_found":
                    raise
                complete = False
            if not complete:
                missing.append(f)
        result = AssetPush(asset.ref, planned=sum(int(f.get("size") or 0) for f in missing) + len(body))
        if dry_run:
            return result
        if len(body) > self.max_body():
            raise SyncError(
                f"asset.json of asset {asset.ref} is {len(body)} bytes, over the request limit of "
                f"{self.max_body()} bytes of {self.url}; raise it (amltrack server --max-body {len(body)})"
            )
        progress.start(asset.ref, result.planned)
        for f in missing:
            path: str = f["path"]
            result.sent += self._send_content(
                base,
                f["sha256"],
                int(f.get("size") or 0),
                functools.partial(asset._open, path),  # never through a symlink
                f"file {path} of asset {asset.ref}",
                progress,
            )
        route = f"/v1/assets/{quote(name, safe='')}"
        at = Route(self.url, f"PUT {route}")
        answer = obj(self._call("PUT", route, content=body, write=True), at)
        result.remote_ref = text(answer, "ref", at)
        result.existing = text(answer, "existing", at, optional=True)
        if result.existing is None:  # else it held the version already: the asset.json only asked
            result.sent += len(body)
        progress.advance(len(body))
        return result

    def assets(self) -> list[dict[str, Any]]:
        """Every version of every asset on the server: their asset.json objects."""
        return objects(
            obj(self._call("GET", "/v1/assets"), Route(self.url, "GET /v1/assets")),
            "assets",
            Route(self.url, "GET /v1/assets"),
        )

    # ----------------------------------------------------------------- verify

    def verify_run(self, snap: Snapshot, remote_state: dict[str, Any] | None = None) -> list[str]:
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
            size, local_file = remote["size"], snap.dir / name
            full = local_file.stat().st_size if local_file.exists() else 0
            if size > full:
                diffs.append(f"{name} has {size} bytes on the remote, more than the local {full}")
            elif (sha256_file(local_file, size) if size else _EMPTY_SHA) != remote["sha256"]:
                diffs.append(f"{name} differs from the local file in its first {size} bytes")
            elif size < local_size:
                diffs.append(f"{name} has {local_size - size} bytes not pushed yet")
        remote_artifacts = state.get("artifacts") or {}
        stored = snap.fresh().artifact_files()
        for path, f in sorted(stored.items()):
            r = remote_artifacts.get(path)
            if r is None:
                diffs.append(f"artifact {path} is missing on the remote")
            elif r.get("sha256") != f.sha256:
                diffs.append(
                    f"artifact {path} differs (remote sha256 {str(r.get('sha256'))[:12]}, "
                    f"local {f.sha256[:12]})"
                )
        for path in sorted(set(remote_artifacts) - set(stored)):
            diffs.append(f"artifact {path} is on the remote but not stored locally")
        return diffs
