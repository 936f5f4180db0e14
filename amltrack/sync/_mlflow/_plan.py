"""What the MLflow run should hold for a snapshot (``wanted``), and what a push must send to get it
there from what the server holds (``plan``). No requests: the client asks, and passes the answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from ... import _format as fmt
from .. import _answers as answers
from .._errors import SyncError
from .._local import Snapshot, sha256_bytes
from . import _media
from ._mapping import (
    MAX_PARAM_VALUE,
    MAX_RUN_NAME,
    MAX_TAG_VALUE,
    NAMES_FILE,
    OWN_DIR,
    RESERVED_TAG_PREFIXES,
    STATUS,
    STRINGS_FILE,
    TAG_ARTIFACTS,
    TAG_CURSOR,
    TAG_RUN_ID,
    TAG_STATE,
    TAG_STATUS,
    mlflow_key,
    mlflow_path,
    param_text,
    parse_cursor,
    to_ms,
)


@dataclass
class RemoteRun:
    id: str
    experiment_id: str
    info: dict[str, Any]
    params: dict[str, str]
    tags: dict[str, str]

    @classmethod
    def of(cls, answer: dict[str, Any], at: answers.Route) -> RemoteRun:
        """The run in an answer's ``run`` field, its fields checked as they are used."""
        run = answers.obj(answers.field(answer, "run", at), at, "run")
        info = answers.obj(run.get("info") or {}, at, "run.info")
        data = answers.obj(run.get("data") or {}, at, "run.data")
        params = answers.objects(data, "params", at, optional=True)
        tags = answers.objects(data, "tags", at, optional=True)
        return cls(
            id=str(info.get("run_id") or info.get("run_uuid")),
            experiment_id=str(info.get("experiment_id")),
            info=info,
            params={answers.text(p, "key", at, "run.data.params"): p.get("value", "") for p in params},
            tags={answers.text(t, "key", at, "run.data.tags"): t.get("value", "") for t in tags},
        )

    @property
    def cursor(self) -> tuple[int, int] | None:
        return parse_cursor(self.tags.get(TAG_CURSOR))

    @property
    def artifact_root(self) -> str | None:
        """The run's path under the artifact proxy, or None if its artifacts are not proxied."""
        uri = str(self.info.get("artifact_uri") or "")
        if not uri.startswith("mlflow-artifacts:"):
            return None
        return urlsplit(uri).path.strip("/")


@dataclass
class Wanted:
    """What the MLflow run should hold for a snapshot, except the metric points."""

    name: str
    start_ms: int | None
    end_ms: int | None
    status: str
    params: dict[str, str]
    tags: dict[str, str]
    artifacts: dict[str, str]  # MLflow path -> the SHA-256 of its content, or a marker of what it is made of
    local_files: dict[str, Path]  # MLflow path -> the local file it is uploaded from
    artifact_paths: dict[str, str]  # MLflow path -> the artifact path, opened through Run.open_artifact
    contents: dict[str, bytes]  # MLflow path -> the bytes it is uploaded from (run.json, summary.json)
    names: dict[str, dict[str, str]]  # kind -> {MLflow key: amltrack name} where they differ
    made: dict[str, Callable[[], bytes]] = field(default_factory=dict)  # MLflow path -> bytes made at upload
    digest: str = ""

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256(orjson.dumps(sorted(self.artifacts.items()))).hexdigest()

    def sent(self, path: str, sha256: str | None) -> None:
        """Name the version of artifact ``path`` that was uploaded (None: none, it is gone), so the
        tags and the ledger describe what MLflow holds, not what the listing saw."""
        if sha256 is None:
            self.artifacts.pop(path, None)
        else:
            self.artifacts[path] = sha256
        self.__post_init__()


@dataclass
class Plan:
    create: bool
    params: list[tuple[str, str]]
    tags: list[tuple[str, str]]
    cursor: tuple[int, int]
    resuming: bool  # the last push of this run was interrupted: its last metrics batch is uncertain
    uploads: list[str]
    update: dict[str, Any]
    finish: bool  # the final tags (state, cursor, artifacts) need writing
    estimate: int = 0

    @property
    def nothing(self) -> bool:
        return not (self.create or self.params or self.tags or self.uploads or self.update or self.finish)


def wanted(snap: Snapshot, known: dict[str, Any] | None) -> Wanted:
    """What the MLflow run of ``snap`` should hold, but its metric points; ``known`` is the ledger's
    artifact hashes, which spare hashing unchanged files."""
    info = snap.info
    run = snap.run
    status = snap.status
    start = info.get("created_ts")
    end = info.get("ended_ts")
    if not isinstance(end, (int, float)) and status == "crashed":
        end = run.cached_summary().get("heartbeat")  # the last moment it was known alive
    names: dict[str, dict[str, str]] = {"params": {}, "tags": {}, "artifacts": {}}

    def key(kind: str, name: str, reserved: tuple[str, ...] = ()) -> str:
        k = mlflow_key(name, reserved=reserved)
        if k != name:
            names[kind][k] = name
        return k

    params = {key("params", k): param_text(v)[:MAX_PARAM_VALUE] for k, v in sorted(run.params.items())}
    tags = {TAG_RUN_ID: snap.id, TAG_STATUS: status}
    if isinstance(info.get("user"), str) and info["user"]:
        tags["mlflow.user"] = info["user"]
    argv = info.get("argv")
    if isinstance(argv, list) and argv and isinstance(argv[0], str) and argv[0]:
        tags["mlflow.source.name"] = argv[0]
    git = info.get("git")
    if isinstance(git, dict):
        for field_, tag in (
            ("commit", "mlflow.source.git.commit"),
            ("branch", "mlflow.source.git.branch"),
        ):
            if isinstance(git.get(field_), str) and git[field_]:
                tags[tag] = git[field_]
    for k, v in sorted(run.tags.items()):
        tags[key("tags", k, RESERVED_TAG_PREFIXES)] = param_text(v)[:MAX_TAG_VALUE]

    artifacts: dict[str, str] = {}
    files: dict[str, Path] = {}
    artifact_paths: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    root = snap.dir / fmt.ARTIFACTS_DIR
    media = _media.plan(snap)  # images, tables, ...: in MLflow's own layout, in place of their files
    tags.update(media.tags)
    for path, f in sorted(snap.artifact_files(known).items()):
        if path in media.replaced:
            continue
        p = mlflow_path(path)
        if p != path:
            names["artifacts"][p] = path
        artifacts[p], files[p], artifact_paths[p] = f.sha256, root / path, path
    # The run's own files, as this snapshot read them: the JSON Lines files up to their last
    # whole line (append-only, so their length names their content), and the generated ones,
    # named by what they are made from.
    own: list[tuple[str, str, Path | bytes | None]] = [
        (f"{OWN_DIR}/{fmt.RUN_FILE}", str(sha256_bytes(snap.run_json)), snap.run_json),
    ]
    if snap.summary_json is not None:
        own.append((f"{OWN_DIR}/{fmt.SUMMARY_FILE}", str(sha256_bytes(snap.summary_json)), snap.summary_json))
    if snap.metrics_size:
        m = snap.metrics_size
        own += [
            (f"{OWN_DIR}/{fmt.METRICS_FILE}", f"bytes:{m}", snap.dir / fmt.METRICS_FILE),
            (STRINGS_FILE, f"from:{m}", None),
        ]
    if snap.manifest_size:
        own.append(
            (
                f"{OWN_DIR}/{fmt.MANIFEST_FILE}",
                f"bytes:{snap.manifest_size}",
                snap.dir / fmt.MANIFEST_FILE,
            )
        )
    own.append(
        (NAMES_FILE, f"from:{snap.metrics_size}:{snap.manifest_size}:{sha256_bytes(snap.run_json)}", None)
    )
    _add_media(snap, media, artifacts, files, artifact_paths)
    for p, mark, source in own:
        if p in artifacts:
            raise SyncError(
                f"run {snap.id} has an artifact at {p}, where the MLflow run keeps amltrack's own files; "
                "move the artifact to push the run to MLflow"
            )
        artifacts[p] = mark
        if isinstance(source, bytes):
            contents[p] = source
        elif source is not None:
            files[p] = source
    name = run.name or snap.id
    return Wanted(
        name=name[:MAX_RUN_NAME],
        start_ms=to_ms(start) if isinstance(start, (int, float)) else None,
        end_ms=to_ms(end) if isinstance(end, (int, float)) else None,
        status=STATUS.get(status, "FAILED"),
        params=params,
        tags=tags,
        artifacts=artifacts,
        local_files=files,
        artifact_paths=artifact_paths,
        contents=contents,
        names=names,
        made=media.made,
    )


def _add_media(
    snap: Snapshot,
    media: _media.MediaPlan,
    artifacts: dict[str, str],
    files: dict[str, Path],
    artifact_paths: dict[str, str],
) -> None:
    """The images, tables, histograms and confusion matrices of ``media`` among the artifacts."""
    root = snap.dir / fmt.ARTIFACTS_DIR
    for p, mark in media.artifacts.items():
        if p in artifacts:
            raise SyncError(
                f"run {snap.id} has an artifact at {p}, where the MLflow run keeps a logged table or image; "
                "move the artifact to push the run to MLflow"
            )
        artifacts[p] = mark
        if p in media.sources:
            artifact_paths[p] = media.sources[p]
            files[p] = root / media.sources[p]


def plan(
    snap: Snapshot,
    remote: RemoteRun | None,
    want: Wanted,
    previous: dict[str, Any],
    *,
    there: dict[str, int] | None = None,
) -> Plan:
    """What a push sends to make ``remote`` (None: no MLflow run yet) hold ``want``. ``previous`` is
    the ledger's state of the last complete push; ``there``, when the push checks what the run
    holds (``--all``, or after --verify found a difference), its artifact files and their sizes."""
    have = remote or RemoteRun("", "", {}, {}, {})
    for k, v in want.params.items():
        if k in have.params and have.params[k] != v:
            raise SyncError(
                f"param {k!r} of run {snap.id} is {have.params[k]!r} on MLflow and {v!r} here, and MLflow "
                "never changes a param; delete the MLflow run to push the run afresh"
            )
    cursor = (0, 0) if remote is None else (have.cursor or (0, 0))
    if cursor[0] > snap.metrics_size:
        raise SyncError(
            f"the MLflow run of {snap.id} holds metrics.jsonl up to byte {cursor[0]}, past the local "
            f"{snap.metrics_size}: the two have diverged; delete the MLflow run to push the run afresh"
        )
    if have.tags.get(TAG_ARTIFACTS) == want.digest:
        uploads: list[str] = []
    else:
        base: dict[str, str] = {}
        if (
            remote is not None
            and previous.get("run_id") == remote.id
            and previous.get("artifacts_digest") == have.tags.get(TAG_ARTIFACTS)
            and isinstance(previous.get("uploaded"), dict)
        ):
            base = previous["uploaded"]  # the remote holds what the last complete push uploaded
        uploads = [p for p, mark in want.artifacts.items() if base.get(p) != mark]
    expected = sizes(snap, want)
    if there is not None and remote is not None:
        # The digest says what the last complete push uploaded, not what the run holds now: an
        # artifact deleted or replaced on MLflow since leaves it as it was. MLflow keeps no
        # hashes, so what is there is compared by size, as --verify does.
        stale = {p for p, size in expected.items() if there.get(p) != size}
        uploads = [p for p in want.artifacts if p in stale or p in uploads]
    update: dict[str, Any] = {}
    if have.info.get("status") != want.status:
        update["status"] = want.status
    if want.end_ms is not None and have.info.get("end_time") != want.end_ms:
        update["end_time"] = want.end_ms
    if have.info.get("run_name") != want.name:
        update["run_name"] = want.name
    end = (snap.metrics_size, 0)
    plan = Plan(
        create=remote is None,
        params=[(k, v) for k, v in want.params.items() if k not in have.params],
        tags=[(k, v) for k, v in want.tags.items() if have.tags.get(k) != v],
        cursor=cursor,
        resuming=remote is not None and have.tags.get(TAG_STATE) != "complete",
        uploads=uploads,
        update=update,
        finish=(
            have.tags.get(TAG_STATE) != "complete"
            or cursor != end
            or have.tags.get(TAG_ARTIFACTS) != want.digest
        ),
    )
    plan.estimate = (
        (len(snap.run_json) if plan.create else 0)
        + sum(len(k) + len(v) for k, v in plan.params + plan.tags)
        + (snap.metrics_size - cursor[0] if cursor != end else 0)
        + sum(expected.get(p, 0) for p in uploads)
        + (1 if plan.update or plan.finish else 0)
    )
    return plan


def sizes(snap: Snapshot, want: Wanted) -> dict[str, int]:
    """The size of each artifact the run should have, except the generated ones."""
    out = {p: len(b) for p, b in want.contents.items()}
    for p, f in want.local_files.items():
        try:
            out[p] = f.stat().st_size
        except OSError:
            out[p] = 0
    out[f"{OWN_DIR}/{fmt.METRICS_FILE}"] = snap.metrics_size
    if snap.manifest_size:
        out[f"{OWN_DIR}/{fmt.MANIFEST_FILE}"] = snap.manifest_size
    return out
