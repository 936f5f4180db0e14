"""Pushing runs to an S3-compatible bucket (``s3://BUCKET/PREFIX``) with no server, exactly once.

Object storage has no append and no rename, so a run goes up as plain files plus immutable parts, and
is published by one object written last (``docs/format.md`` has the layout)::

    PREFIX/runs/<id>/run.json, summary.json           as in a local store
    PREFIX/runs/<id>/metrics.jsonl.parts/<start>.jsonl  bytes [start, start + size) of metrics.jsonl
    PREFIX/runs/<id>/artifacts.jsonl.parts/<start>.jsonl  the same for artifacts.jsonl
    PREFIX/runs/<id>/artifacts/<path>                 each stored artifact, its SHA-256 in x-amz-meta-sha256
    PREFIX/published/<id>.json                        the run's published state: written last
    PREFIX/index.json                                 a derived listing cache (``_bucket_reader``)
    PREFIX/.uploads/<id>/<sha256>                     a large artifact's multipart upload in progress

A part is named by its start offset and created only if absent (``If-None-Match: *``), so no byte is
ever written twice, and a part left by a killed push is reused when its SHA-256 is that of the local
bytes it covers. ``published/<id>.json`` is created with ``If-None-Match: *`` and replaced with
``If-Match`` on the ETag read when the push began, so two pushes of one run at once are serialised:
the second one's write is refused, and it plans again from what the first published.

The client, the URL, the keys and the index are ``_s3``'s, shared with the reader.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from .. import _format as fmt
from .._assets import Asset
from .._errors import AmltrackError
from ._errors import RemoteError, SyncError
from ._local import ArtifactChanged, LocalFile, Snapshot, send_artifact, sha256_bytes
from ._remote import AssetPush, Progress, PushResult
from ._s3 import (
    FORMAT,
    PARTS_SUFFIX,
    UPLOADS_DIR,
    BucketClient,
    PreconditionFailed,
    asset_key,
    b64sha256,
    part_key,
    published_key,
    run_key,
    update_index,
)

PART_BYTES = 32 * 1024 * 1024  # the most of metrics.jsonl one part object holds
UPLOAD_CHUNK = 16 * 1024 * 1024  # artifacts over this go up in multipart chunks that resume
PUBLISH_TRIES = 3  # plans of one push whose publication another push of the run overtook


def _asset_content(files: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((str(f.get("path")), str(f.get("sha256"))) for f in files if isinstance(f, dict))


@dataclass
class _Chain:
    """One appended file's parts on the bucket: ``[[start, size, sha256], ...]``, contiguous from 0."""

    parts: list[list[Any]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.parts[-1][0] + self.parts[-1][1] if self.parts else 0


@dataclass
class _State:
    published: dict[str, Any] | None
    etag: str | None
    chains: dict[str, _Chain]


class BucketRemote:
    """A sync target in an S3-compatible bucket.

    remote = BucketRemote("s3://team-runs/amltrack?endpoint=http://127.0.0.1:9000")
    remote.push_run(snapshot(store, run_id), NullProgress())

    ``client`` is a boto3 S3 client to use instead of one made from the URL (the kill tests pass one
    with an event hook); ``token`` is unused: credentials come from AWS's own chain.
    """

    kind = "bucket"

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        client: Any = None,
        part_bytes: int = PART_BYTES,
        chunk_size: int = UPLOAD_CHUNK,
    ) -> None:
        self._s3 = BucketClient(url, client)
        self.where = self._s3.where
        self.url = url
        self.part_bytes = part_bytes
        self.chunk_size = max(5 * 1024 * 1024, chunk_size)  # S3's least part but the last
        self._published: dict[str, dict[str, Any]] = {}  # run id -> its index entry, written at close

    def __repr__(self) -> str:
        return f"BucketRemote({self.url!r})"

    @property
    def writes(self) -> int:
        return self._s3.writes

    # ----------------------------------------------------------------- state

    def _state(self, snap: Snapshot, sizes: dict[str, int]) -> _State:
        """What the bucket holds of the run: its published manifest, and for each appended file the
        chain of parts from 0 that agree with the local bytes (a killed push's parts included)."""
        got = self._s3.get_json(published_key(self.where, snap.id))
        published, etag = got if got else (None, None)
        chains = {}
        for name in (fmt.METRICS_FILE, fmt.MANIFEST_FILE):
            chain = _Chain([list(p) for p in ((published or {}).get(name) or {}).get("parts") or []])
            if chain.size > sizes[name]:
                raise SyncError(
                    f"the bucket's {name} of run {snap.id} has {chain.size} bytes, more than the local "
                    f"{sizes[name]}: the copies have diverged; check with --verify, and delete the run's "
                    "objects in the bucket to push it afresh"
                )
            prefix = run_key(self.where, snap.id, name + PARTS_SUFFIX) + "/"
            listed = {o["Key"]: int(o["Size"]) for o in self._s3.list(prefix)}
            while (key := part_key(self.where, snap.id, name, chain.size)) in listed:
                start, size = chain.size, listed[key]
                if size == 0 or start + size > sizes[name]:
                    break  # from a copy that has more than this one: not ours to build on
                sha = self._part_sha(key)
                if sha != _sha_range(snap, name, start, size):
                    raise SyncError(
                        f"the bucket holds a part of {name} of run {snap.id} at byte {start} whose "
                        "content differs from the local file: the copies have diverged; delete the "
                        "run's objects in the bucket to push it afresh"
                    )
                chain.parts.append([start, size, sha])
            chains[name] = chain
        return _State(published, etag, chains)

    def _part_sha(self, key: str) -> str | None:
        head = self._s3.head(key)
        return None if head is None else (head.get("Metadata") or {}).get("sha256")

    # ----------------------------------------------------------------- push

    def push_run(
        self,
        snap: Snapshot,
        progress: Progress,
        *,
        dry_run: bool = False,
        known: dict[str, Any] | None = None,
        check: bool = False,
        remote_state: dict[str, Any] | None = None,
    ) -> PushResult:
        writes0 = self.writes
        result = PushResult(snap.id, remote={"published": True})
        for _ in range(PUBLISH_TRIES):
            try:
                self._push_once(snap, progress, result, dry_run=dry_run, known=known, check=check)
                break
            except PreconditionFailed:
                if dry_run:
                    raise
                # Another push of this run published first: plan again from what it published.
                snap = snap.fresh()
        else:
            raise SyncError(
                f"run {snap.id} was published to {self.url} by another sync {PUBLISH_TRIES} times while "
                "this one pushed it; sync again"
            )
        result.writes = self.writes - writes0
        return result

    def _push_once(
        self,
        snap: Snapshot,
        progress: Progress,
        result: PushResult,
        *,
        dry_run: bool,
        known: dict[str, Any] | None,
        check: bool,
    ) -> None:
        sizes = {fmt.METRICS_FILE: snap.metrics_size, fmt.MANIFEST_FILE: snap.manifest_size}
        state = self._state(snap, sizes)
        pub = state.published or {}
        files = snap.artifact_files(known)
        held: dict[str, Any] = dict(pub.get("artifacts") or {})
        if check:  # --all, or after --verify found a difference: ask the bucket, not the manifest
            held = {}
            for path in files:
                head = self._s3.head(run_key(self.where, snap.id, fmt.ARTIFACTS_DIR, path))
                if head is not None:
                    held[path] = {
                        "size": int(head["ContentLength"]),
                        "sha256": (head.get("Metadata") or {}).get("sha256"),
                    }
        uploads = [f for p, f in sorted(files.items()) if (held.get(p) or {}).get("sha256") != f.sha256]
        deletes = sorted(p for p in (pub.get("artifacts") or {}) if p not in files)
        summary_sha = sha256_bytes(snap.summary_json)
        files_meta = dict(pub.get("files") or {})
        if check:  # the objects themselves, which --verify may have found replaced behind the manifest
            for name in (fmt.RUN_FILE, fmt.SUMMARY_FILE):
                head = self._s3.head(run_key(self.where, snap.id, name))
                files_meta[name] = {"sha256": ((head or {}).get("Metadata") or {}).get("sha256")}
        summary_changed = snap.summary_json is not None and summary_sha != (
            files_meta.get(fmt.SUMMARY_FILE) or {}
        ).get("sha256")
        run_changed = sha256_bytes(snap.run_json) != (files_meta.get(fmt.RUN_FILE) or {}).get("sha256")
        tails = {name: (state.chains[name].size, sizes[name]) for name in sizes}
        planned = sum(end - start for start, end in tails.values()) + sum(f.size for f in uploads)
        planned += len(snap.summary_json or b"") if summary_changed else 0
        planned += len(snap.run_json) if run_changed else 0
        published_sizes = {n: ((pub.get(n) or {}).get("size") or 0) for n in sizes}
        publish = (
            state.published is None
            or planned > 0
            or bool(deletes)
            or any(published_sizes[n] != sizes[n] for n in sizes)
        )
        result.planned = planned if planned or not publish else 1  # a publication alone is a write
        if dry_run or not publish:
            return
        progress.start(snap.id, planned, _count_lines(snap, *tails[fmt.METRICS_FILE]))
        for name, (start, end) in tails.items():
            result.sent += self._append(snap, name, state.chains[name], start, end, progress)
        for path in deletes:
            self._s3.call("delete_object", Key=run_key(self.where, snap.id, fmt.ARTIFACTS_DIR, path))
        for f in uploads:
            try:
                sent = send_artifact(
                    snap, f.path, lambda fh, lf: self._upload(snap, fh, lf, progress, result)
                )
            except (AmltrackError, OSError) as e:
                if isinstance(e, SyncError) and e.remote_wide:
                    raise
                result.unsent[f.path] = str(e)
                continue
            if sent is None:
                files.pop(f.path, None)
        files = snap.artifact_files()
        if summary_changed and snap.summary_json is not None:
            self._put_plain(snap, fmt.SUMMARY_FILE, snap.summary_json)
            result.sent += len(snap.summary_json)
            progress.advance(len(snap.summary_json))
        if run_changed:
            self._put_plain(snap, fmt.RUN_FILE, snap.run_json)
            result.sent += len(snap.run_json)
            progress.advance(len(snap.run_json))
        manifest = self._manifest(snap, state, files, result)
        body = orjson.dumps(manifest)
        key = published_key(self.where, snap.id)
        condition = {"IfNoneMatch": "*"} if state.etag is None else {"IfMatch": state.etag}
        try:
            r = self._s3.call("put_object", Key=key, Body=body, ContentType="application/json", **condition)
            etag = str(r["ETag"])
        except PreconditionFailed:
            # Ours, if an answer was lost and botocore sent it again; else another push's.
            got = self._s3.get(key)
            if got is None or got[0] != body:
                raise
            etag = got[1]
        self._published[snap.id] = {"etag": etag, "run": manifest["run"], "summary": manifest["summary"]}

    def _manifest(
        self, snap: Snapshot, state: _State, files: dict[str, LocalFile], result: PushResult
    ) -> dict[str, Any]:
        pub = state.published or {}
        artifacts = {p: {"size": f.size, "sha256": f.sha256} for p, f in sorted(files.items())}
        for path in result.unsent:  # what the bucket still holds of it, if anything
            if path in (pub.get("artifacts") or {}):
                artifacts[path] = pub["artifacts"][path]
            else:
                artifacts.pop(path, None)
        summary: Any = None
        if snap.summary_json is not None:
            summary = orjson.loads(snap.summary_json)
        elif pub.get("summary") is not None:
            summary = pub["summary"]
        summary_meta = (
            {"size": len(snap.summary_json), "sha256": sha256_bytes(snap.summary_json)}
            if snap.summary_json is not None
            else (pub.get("files") or {}).get(fmt.SUMMARY_FILE)
        )
        return {
            "format": FORMAT,
            "id": snap.id,
            "run": snap.info,
            "summary": summary,
            "files": {
                fmt.RUN_FILE: {"size": len(snap.run_json), "sha256": sha256_bytes(snap.run_json)},
                fmt.SUMMARY_FILE: summary_meta,
            },
            **{
                name: {"size": chain.size, "parts": chain.parts}
                for name, chain in sorted(state.chains.items())
            },
            "artifacts": artifacts,
            "pushed": fmt.utc_iso(time.time()),
        }

    def _put_plain(self, snap: Snapshot, name: str, data: bytes) -> None:
        self._s3.call(
            "put_object",
            Key=run_key(self.where, snap.id, name),
            Body=data,
            ContentType="application/json",
            Metadata={"sha256": hashlib.sha256(data).hexdigest()},
        )

    def _append(
        self, snap: Snapshot, name: str, chain: _Chain, start: int, end: int, progress: Progress
    ) -> int:
        """Send bytes [start, end) of the local file as new parts, each ending at a line end where
        one fits; a part another push created at the same offset first is taken if it agrees."""
        sent = 0
        if end <= start:  # nothing new, and a run may have no artifacts.jsonl yet
            return 0
        with open(snap.dir / name, "rb") as f:
            offset = start
            while offset < end:
                f.seek(offset)
                chunk = f.read(min(self.part_bytes, end - offset))
                if not chunk:
                    raise SyncError(f"{snap.dir / name} shrank while it was sent; it is append-only")
                if offset + len(chunk) < end:
                    cut = chunk.rfind(b"\n")
                    if cut >= 0:
                        chunk = chunk[: cut + 1]
                sha = hashlib.sha256(chunk).hexdigest()
                key = part_key(self.where, snap.id, name, offset)
                try:
                    self._s3.call(
                        "put_object",
                        Key=key,
                        Body=chunk,
                        IfNoneMatch="*",
                        Metadata={"sha256": sha},
                        ChecksumSHA256=b64sha256(chunk),
                    )
                    sent += len(chunk)
                    progress.advance(len(chunk), chunk.count(b"\n") if name == fmt.METRICS_FILE else 0)
                except PreconditionFailed:
                    # Another push of the run (or this one, its answer lost) made the part first.
                    head = self._s3.head(key) or {}
                    size = int(head.get("ContentLength") or 0)
                    theirs = (head.get("Metadata") or {}).get("sha256")
                    if not size or offset + size > end or theirs != _sha_range(snap, name, offset, size):
                        raise SyncError(
                            f"another push wrote a part of {name} of run {snap.id} at byte {offset} that "
                            "differs from the local file: the copies have diverged"
                        ) from None
                    chain.parts.append([offset, size, theirs])
                    offset += size
                    continue
                chain.parts.append([offset, len(chunk), sha])
                offset += len(chunk)
        return sent

    def _upload(
        self, snap: Snapshot, fh: BinaryIO, f: LocalFile, progress: Progress, result: PushResult
    ) -> None:
        """Put artifact ``f`` at its path, from its open file."""
        key = run_key(self.where, snap.id, fmt.ARTIFACTS_DIR, f.path)
        staging = self.where.key(UPLOADS_DIR, snap.id, f.sha256)
        what = f"artifact {f.path} of run {snap.id}"
        try:
            result.sent += self._put_content(key, staging, fh, f.size, f.sha256, what, progress)
        except ArtifactChanged as e:
            result.sent += e.sent
            raise

    def _put_content(
        self, key: str, staging: str, fh: BinaryIO, size: int, sha: str, what: str, progress: Progress
    ) -> int:
        """Put the content ``sha`` (``size`` bytes from ``fh``) at ``key``, its SHA-256 in its metadata:
        in one request if small, else as a multipart upload at ``staging`` (named by the content, so
        the next push finds it and continues where a killed one stopped), then copied into place.
        The bytes sent; ArtifactChanged (with them) if the file does not hold that content."""
        meta = {"sha256": sha}
        if size <= self.chunk_size:
            data = fh.read(size + 1)
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                raise ArtifactChanged(f"{what} changed while it was read; sync again")
            self._s3.call("put_object", Key=key, Body=data, Metadata=meta, ChecksumSHA256=b64sha256(data))
            progress.advance(len(data))
            return len(data)
        upload_id, done = self._resumable_upload(staging, meta)
        h = hashlib.sha256()
        parts = []
        number = sent = 0
        while True:
            chunk = fh.read(self.chunk_size)
            if not chunk:
                break
            number += 1
            h.update(chunk)
            etag = done.get(number, {}).get("ETag", "").strip('"')
            reusable = number in done and (
                etag == hashlib.md5(chunk, usedforsecurity=False).hexdigest() or len(etag) != 32
            )  # where ETags are not MD5s (SSE-KMS), a part of the right size is taken on trust
            if reusable and done[number].get("Size") == len(chunk):
                parts.append({"PartNumber": number, "ETag": done[number]["ETag"]})
                continue
            r = self._s3.call("upload_part", Key=staging, UploadId=upload_id, PartNumber=number, Body=chunk)
            parts.append({"PartNumber": number, "ETag": r["ETag"]})
            sent += len(chunk)
            progress.advance(len(chunk))
        if h.hexdigest() != sha:
            self._s3.call("abort_multipart_upload", Key=staging, UploadId=upload_id)
            raise ArtifactChanged(f"{what} changed while it was sent; sync again", sent)
        try:
            self._s3.call(
                "complete_multipart_upload",
                Key=staging,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except RemoteError as e:
            if e.code != "NoSuchUpload":
                raise
            # Completed by an earlier try whose answer was lost: the staging object is whole.
        self._s3.call(
            "copy_object",
            Key=key,
            CopySource={"Bucket": self.where.bucket, "Key": staging},
            Metadata=meta,
            MetadataDirective="REPLACE",
        )
        self._s3.call("delete_object", Key=staging)
        return sent

    def _resumable_upload(self, key: str, meta: dict[str, str]) -> tuple[str, dict[int, dict[str, Any]]]:
        """The multipart upload in progress at ``key`` and its parts by number, or a new one."""
        uploads = self._s3.call("list_multipart_uploads", Prefix=key).get("Uploads") or []
        for u in uploads:
            if u.get("Key") == key:
                listed = self._s3.call("list_parts", Key=key, UploadId=u["UploadId"])
                return str(u["UploadId"]), {int(p["PartNumber"]): p for p in listed.get("Parts") or []}
        r = self._s3.call("create_multipart_upload", Key=key, Metadata=meta)
        return str(r["UploadId"]), {}

    # ----------------------------------------------------------------- assets

    def push_asset(
        self, asset: Asset, body: bytes, progress: Progress, *, dry_run: bool = False
    ) -> AssetPush:
        """Put the asset version's files the bucket lacks (by content, shared by the name's versions),
        then number the version with its asset.json, created only if absent: the first free number.

        An asset.json whose SHA-256 (its ``origin``) a version of the name already records is that
        version, however often it is sent; so is the same content as the latest version."""
        name = asset.name
        files = {f["sha256"]: f for f in asset.files if isinstance(f.get("sha256"), str)}
        missing = [
            f
            for sha, f in sorted(files.items())
            if self._s3.head(asset_key(self.where, name, "blobs", sha)) is None
        ]
        result = AssetPush(asset.ref, planned=sum(int(f.get("size") or 0) for f in missing) + len(body))
        origin = hashlib.sha256(body).hexdigest()
        versions = self._asset_versions(name)
        for version, info in versions:
            if info.get("origin") == origin:
                result.planned, result.remote_ref, result.existing = 0, f"{name}:{version}", "origin"
                return result
        content = _asset_content(asset.files)
        if versions and _asset_content(versions[-1][1].get("files") or []) == content:
            result.planned, result.remote_ref, result.existing = 0, f"{name}:{versions[-1][0]}", "content"
            return result
        if dry_run:
            return result
        progress.start(asset.ref, result.planned)
        for f in missing:
            sha, path = f["sha256"], f["path"]
            with asset._open(path) as fh:  # never through a symlink
                staging = self.where.key(UPLOADS_DIR, "assets", name, sha)
                what = f"file {path} of asset {asset.ref}"
                key = asset_key(self.where, name, "blobs", sha)
                result.sent += self._put_content(
                    key, staging, fh, int(f.get("size") or 0), sha, what, progress
                )
        info = orjson.loads(body)
        version = versions[-1][0] + 1 if versions else 1
        while True:
            placed = {
                **{k: v for k, v in info.items() if k not in ("version",)},
                "version": version,
                "origin": origin,
                "pushed_version": info.get("version"),
                "pushed": fmt.utc_iso(time.time()),
            }
            placed_body = orjson.dumps(placed)
            key = asset_key(self.where, name, str(version), fmt.ASSET_FILE)
            try:
                self._s3.call("put_object", Key=key, Body=placed_body, IfNoneMatch="*")
                break
            except PreconditionFailed:
                got = self._s3.get_json(key)
                if got is not None and got[0].get("origin") == origin:
                    break  # ours: its answer was lost, and botocore sent it again
                version += 1  # another push numbered this version first
        result.sent += len(placed_body)
        result.remote_ref = f"{name}:{version}"
        progress.advance(len(body))
        return result

    def _asset_versions(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        """The name's versions in the bucket, by number, with their asset.json."""
        prefix = asset_key(self.where, name) + "/"
        out = []
        for o in self._s3.list(prefix):
            rest = o["Key"][len(prefix) :]
            number, _, leaf = rest.partition("/")
            if leaf == fmt.ASSET_FILE and number.isdigit():
                got = self._s3.get_json(o["Key"])
                if got is not None:
                    out.append((int(number), got[0]))
        return sorted(out, key=lambda v: v[0])

    # ----------------------------------------------------------------- verify

    def verify_run(self, snap: Snapshot, remote_state: dict[str, Any] | None = None) -> list[str]:
        """Compare every published byte with the local run by SHA-256: the objects are read back."""
        got = self._s3.get_json(published_key(self.where, snap.id))
        if got is None:
            return ["the run is not on the remote"]
        pub = got[0]
        diffs = []
        for name, local in ((fmt.RUN_FILE, snap.run_json), (fmt.SUMMARY_FILE, snap.summary_json)):
            if local is None:
                continue
            held = self._s3.get(run_key(self.where, snap.id, name))
            if held is None:
                diffs.append(f"{name} is missing on the remote")
            elif sha256_bytes(held[0]) != sha256_bytes(local):
                diffs.append(f"{name} differs")
        for name, local_size in (
            (fmt.METRICS_FILE, snap.metrics_size),
            (fmt.MANIFEST_FILE, snap.manifest_size),
        ):
            parts = (pub.get(name) or {}).get("parts") or []
            at = 0
            for start, size, _sha in parts:
                held = self._s3.get(part_key(self.where, snap.id, name, start))
                if start != at or held is None or len(held[0]) != size:
                    diffs.append(f"{name} has a missing or cut part at byte {start} on the remote")
                    break
                if start + size > local_size or hashlib.sha256(held[0]).hexdigest() != _sha_range(
                    snap, name, start, size
                ):
                    diffs.append(f"{name} differs from the local file in bytes {start}-{start + size}")
                    break
                at = start + size
            else:
                if at < local_size:
                    diffs.append(f"{name} has {local_size - at} bytes not pushed yet")
        published = pub.get("artifacts") or {}
        stored = snap.fresh().artifact_files()
        for path, f in sorted(stored.items()):
            sha = self._object_sha(run_key(self.where, snap.id, fmt.ARTIFACTS_DIR, path))
            if sha is None:
                diffs.append(f"artifact {path} is missing on the remote")
            elif sha != f.sha256:
                diffs.append(f"artifact {path} differs (remote sha256 {sha[:12]}, local {f.sha256[:12]})")
        for path in sorted(set(published) - set(stored)):
            diffs.append(f"artifact {path} is on the remote but not stored locally")
        return diffs

    def _object_sha(self, key: str) -> str | None:
        """The SHA-256 of the object's bytes, read back in blocks; None if there is none."""
        try:
            r = self._s3.call("get_object", Key=key)
        except RemoteError as e:
            if e.code in ("NoSuchKey", "404"):
                return None
            raise
        h = hashlib.sha256()
        for block in r["Body"].iter_chunks(1 << 20):
            h.update(block)
        return h.hexdigest()

    # ----------------------------------------------------------------- close

    def close(self) -> None:
        """Bring the bucket's listing index up to date with the runs this remote published."""
        try:
            if self._published:
                update_index(self._s3, self._published)
        except SyncError:
            pass  # the index is a cache: readers read a missing or stale entry from its manifest
        finally:
            self._published = {}
            self._s3.close()


def _sha_range(snap: Snapshot, name: str, start: int, size: int) -> str:
    h = hashlib.sha256()
    with open(snap.dir / name, "rb") as f:
        f.seek(start)
        left = size
        while left > 0:
            block = f.read(min(1 << 20, left))
            if not block:
                break
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def _count_lines(snap: Snapshot, start: int, end: int) -> int:
    from ._amltrack import count_lines  # one owner of how records are counted for progress

    return count_lines(snap.dir / fmt.METRICS_FILE, start, end)
