"""The MLflow client: its requests, finding and creating the MLflow run, the push, and --verify.

The push sends what ``_plan`` says, reading the points from metrics.jsonl (``_records``) under the
keys and values of ``_mapping``.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from ... import __version__, _env
from ... import _format as fmt
from ..._records import record_points
from .. import _answers as answers
from .._errors import RemoteConfigError, RemoteError, SyncError
from .._http import HttpBacked, HttpClient, RetryPolicy
from .._local import ArtifactChanged, LocalFile, Snapshot, identity, send_artifact
from .._remote import Progress, PushResult
from . import _plan
from ._mapping import (
    NAMES_FILE,
    OWN_DIR,
    STRINGS_FILE,
    TAG_ARTIFACTS,
    TAG_CURSOR,
    TAG_RUN_ID,
    TAG_STATE,
    TAG_STRINGS,
    MlflowPoint,
    mlflow_key,
    same_value,
    wire_value,
)
from ._plan import Plan, RemoteRun, Wanted
from ._records import _lines, parse_line

SCHEMES = {"mlflow+http": "http", "mlflow+https": "https"}
API = "/api/2.0/mlflow"
ARTIFACT_API = "/api/2.0/mlflow-artifacts/artifacts"

# MLflow's limits (mlflow/utils/validation.py).
MAX_ENTITIES = 1000  # metrics + params + tags in one log-batch; metrics alone are capped at 1000 too
MAX_PARAMS_TAGS = 100  # params, and tags, per log-batch
MAX_BATCH_BYTES = 800_000  # of the params or tags of one log-batch; Databricks refuses requests over 1 MB
HISTORY_PAGE = 25_000
# MLflow servers rate-limit, and may say for how long (docs/sync.md, "Errors").
RETRY_STATUSES = frozenset({429, 502, 503, 504})

_UPLOAD_BLOCK = 1 << 20


def check_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an ``mlflow+http(s)://`` URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise RemoteConfigError(f"MLflow remote URL {url!r} is not an mlflow+http:// or mlflow+https:// URL")
    return url.rstrip("/")


@dataclass
class _Scan:
    """What one pass over metrics.jsonl collected besides the points it sent."""

    strings: int = 0
    strings_file: IO[bytes] | None = None
    names: dict[str, str] = field(default_factory=dict)  # metric key -> name, where they differ
    skipped: int = 0


class _Uploads:
    """Counts what an upload sends, for the progress bar and the report."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.sent = 0

    def chunks(
        self, path: Path | None, size: int, data: IO[bytes] | None = None
    ) -> Callable[[], Iterable[bytes]]:
        def gen() -> Iterator[bytes]:
            f = data if data is not None else open(path, "rb")  # type: ignore[arg-type]
            try:
                f.seek(0)
                left = size
                while left > 0:
                    block = f.read(min(_UPLOAD_BLOCK, left))
                    if not block:
                        raise ArtifactChanged(f"{path} shrank while it was uploaded; sync again")
                    left -= len(block)
                    self.sent += len(block)
                    self.progress.advance(len(block))
                    yield block
            finally:
                if data is None:
                    f.close()

        return gen


class MlflowRemote(HttpBacked):
    """A client of one MLflow tracking server, addressed as ``mlflow+http(s)://host[:port][/prefix]``.

    Credentials come from ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` (basic),
    else ``MLFLOW_TRACKING_TOKEN``, else ``token`` (bearer), as MLflow's own client takes them.

        remote = MlflowRemote("mlflow+http://127.0.0.1:5000")
        remote.push_run(snapshot(store, run_id), NullProgress())
    """

    kind = "mlflow"

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.2,
        timeout: float = 60.0,
        max_metrics: int = MAX_ENTITIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = check_url(url)
        parts = urlsplit(self.url)
        self.base = parts._replace(scheme=SCHEMES[parts.scheme]).geturl()
        self.batch = max(1, min(max_metrics, MAX_ENTITIES) - 1)  # one entity goes to the cursor tag
        headers = {"User-Agent": f"amltrack/{__version__}"}
        auth: httpx.Auth | None = None
        user = os.environ.get(_env.MLFLOW_USERNAME)
        password = os.environ.get(_env.MLFLOW_PASSWORD)
        bearer = os.environ.get(_env.MLFLOW_TOKEN) or token
        if user and password is not None:
            auth, self._auth = httpx.BasicAuth(user, password), f"the password of user {user!r}"
            self._auth_hint = "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        elif bearer:
            headers["Authorization"] = f"Bearer {bearer}"
            self._auth = "the token"
            self._auth_hint = "check MLFLOW_TRACKING_TOKEN (or the remote's token)"
        else:
            self._auth = ""
            self._auth_hint = (
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
            )
        verify: bool | str = True
        if os.environ.get(_env.MLFLOW_INSECURE_TLS, "").lower() == "true":
            verify = False
        elif os.environ.get(_env.MLFLOW_CERT_PATH):
            verify = os.environ[_env.MLFLOW_CERT_PATH]
        client = httpx.Client(
            base_url=self.base,
            headers=headers,
            auth=auth,
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        policy = RetryPolicy(retries, backoff, statuses=RETRY_STATUSES, retry_after=True)
        self._http = HttpClient(client, self.url, policy)
        self._experiments: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"MlflowRemote({self.url!r})"

    # ----------------------------------------------------------------- HTTP

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: Callable[[], Iterable[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        write: bool = False,
        retry: bool | Callable[[], Any] = True,
    ) -> Any:
        """One request, tried again on a transport failure, 429 or 502-504.

        ``retry`` is True for a request that can be repeated as it is, or a function that gives
        the body to send instead (None: send nothing more) for one that cannot.
        """
        hdrs = dict(headers or {})
        if json is not None:
            hdrs["Content-Type"] = "application/json"  # MLflow refuses a POST without it
        r = self._http.request(
            method,
            path,
            params=params,
            content=orjson.dumps(json) if json is not None else content,
            headers=hdrs,
            write=write,
            again=_as_json(retry) if callable(retry) else bool(retry),
        )
        if r is None:
            return None
        if r.status_code >= 400:
            raise self._error(r, method, path)
        if not r.content:
            return {}
        try:
            return r.json()
        except ValueError:
            raise RemoteError(
                self.url,
                r.status_code,
                "BAD_RESPONSE",
                f"{method} {path} answered with something that is not JSON; is {self.base} an MLflow "
                "tracking server?",
            ) from None

    def _error(self, r: httpx.Response, method: str, path: str) -> RemoteError:
        try:
            body = r.json()
            code, message = str(body["error_code"]), str(body.get("message", ""))
        except (ValueError, KeyError, TypeError):
            code, message = "", " ".join(r.text[:300].split()) or r.reason_phrase
            if "html" in r.headers.get("content-type", ""):
                message = f"an error page ({r.status_code} {r.reason_phrase})"
        status = r.status_code
        if status == 401:
            who = f"{self._auth} was refused" if self._auth else "the server asks for credentials"
            return RemoteError(self.url, status, code or "UNAUTHENTICATED", f"{who}; {self._auth_hint}")
        if status == 403 and "Invalid Host header" in message:
            host = r.request.headers.get("host", "")
            return RemoteError(
                self.url,
                status,
                "INVALID_HOST",
                f"the server refused the Host header {host!r}: ask its operator to add it to MLflow's "
                "--allowed-hosts (MLFLOW_SERVER_ALLOWED_HOSTS), or use a host name it allows",
                remote_wide=True,  # the same Host header goes with every request
            )
        if status == 403:
            return RemoteError(
                self.url,
                status,
                code or "PERMISSION_DENIED",
                f"{message}; {self._auth or 'this user'} needs permission to edit the experiment "
                "and its runs: ask the server's operator",
            )
        if status == 404 and not code:
            return RemoteError(
                self.url,
                status,
                "NOT_FOUND",
                f"{method} {path} does not exist there; is {self.base} an MLflow tracking server "
                f"(its REST API under {API})?",
            )
        if status == 503 and "Artifact serving is disabled" in message:
            return RemoteError(
                self.url,
                status,
                "ARTIFACTS_NOT_SERVED",
                "the server does not serve artifacts; ask its operator to run it with --serve-artifacts",
            )
        return RemoteError(self.url, status, code or f"HTTP_{status}", message)

    def _at(self, method: str, endpoint: str) -> answers.Route:
        return answers.Route(self.url, f"{method} {API}/{endpoint}")

    def _get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        """The answer, a JSON object (every answer of MLflow's REST API is one)."""
        return answers.obj(
            self._request("GET", f"{API}/{endpoint}", params=params), self._at("GET", endpoint)
        )

    def _post(self, endpoint: str, body: dict[str, Any], *, write: bool = True, retry: Any = True) -> Any:
        """The answer, a JSON object; None if ``retry`` found the request done after a lost answer."""
        answer = self._request("POST", f"{API}/{endpoint}", json=body, write=write, retry=retry)
        return None if answer is None else answers.obj(answer, self._at("POST", endpoint))

    # ----------------------------------------------------------------- experiments and runs

    def _experiment(self, name: str, *, create: bool) -> str | None:
        """The id of the experiment called ``name``, created if missing (None if not, in a dry run)."""
        if name in self._experiments:
            return self._experiments[name]
        for _ in range(2):
            try:
                got = self._get("experiments/get-by-name", experiment_name=name)
            except RemoteError as e:
                if e.code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            else:
                at = self._at("GET", "experiments/get-by-name")
                exp = answers.obj(answers.field(got, "experiment", at), at, "experiment")
                if exp.get("lifecycle_stage") == "deleted":
                    raise SyncError(
                        f"experiment {name!r} is deleted on {self.url}: restore it in MLflow, or delete it "
                        "for good ('mlflow gc') so that sync can create it again"
                    )
                self._experiments[name] = str(answers.text(exp, "experiment_id", at, "experiment"))
                return self._experiments[name]
            if not create:
                return None
            try:
                made = self._post("experiments/create", {"name": name})
            except RemoteError as e:
                if e.code != "RESOURCE_ALREADY_EXISTS":  # another client made it meanwhile
                    raise
                continue
            self._experiments[name] = str(
                answers.text(made, "experiment_id", self._at("POST", "experiments/create"))
            )
            return self._experiments[name]
        raise SyncError(f"experiment {name!r} could not be created or found on {self.url}")

    def _get_run(self, run_id: str) -> RemoteRun | None:
        try:
            got = self._get("runs/get", run_id=run_id)
        except RemoteError as e:
            if e.code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return RemoteRun.of(got, self._at("GET", "runs/get"))

    def _search(self, experiment_id: str, local_id: str) -> RemoteRun | None:
        """The MLflow run tagged with ``local_id``; the oldest if a race made two."""
        found = self._post(
            "runs/search",
            {
                "experiment_ids": [experiment_id],
                "filter": f"tags.`{TAG_RUN_ID}` = '{local_id}'",
                "run_view_type": "ACTIVE_ONLY",
                "max_results": 100,
            },
            write=False,
        )
        at = self._at("POST", "runs/search")
        runs = [RemoteRun.of({"run": r}, at) for r in answers.objects(found, "runs", at, optional=True)]
        runs = [r for r in runs if r.tags.get(TAG_RUN_ID) == local_id]
        if not runs:
            return None
        return min(runs, key=lambda r: (int(r.info.get("start_time") or 0), r.id))

    def find_run(
        self, snap: Snapshot, *, create_experiment: bool = False, remote_state: dict[str, Any] | None = None
    ) -> RemoteRun | None:
        """The MLflow run that holds ``snap``'s run, if there is one: the one ``remote_state`` (the
        ledger's) names if it still does, else the one a search finds."""
        exp_id = self._experiment(snap.run.experiment, create=create_experiment)
        if exp_id is None:
            return None
        cached = (remote_state or {}).get("run_id")
        if isinstance(cached, str) and cached:
            run = self._get_run(cached)
            if (
                run is not None
                and run.info.get("lifecycle_stage") == "active"
                and run.tags.get(TAG_RUN_ID) == snap.id
                and run.experiment_id == exp_id
            ):
                return run
        return self._search(exp_id, snap.id)

    def _create_run(self, exp_id: str, snap: Snapshot, want: Wanted) -> RemoteRun:
        body: dict[str, Any] = {
            "experiment_id": exp_id,
            "run_name": want.name,
            "tags": [
                {"key": TAG_RUN_ID, "value": snap.id},
                {"key": TAG_STATE, "value": "in_progress"},
                {"key": TAG_CURSOR, "value": "0:0"},
            ],
        }
        if want.start_ms is not None:
            body["start_time"] = want.start_ms

        def found() -> Any:  # the answer was lost: a retry must not make a second run
            return None if self._search(exp_id, snap.id) else body

        made = self._post("runs/create", body, retry=found)
        if made is None:
            run = self._search(exp_id, snap.id)
            assert run is not None
            return run
        return RemoteRun.of(made, self._at("POST", "runs/create"))

    # ----------------------------------------------------------------- push

    def _wanted(self, snap: Snapshot, known: dict[str, Any] | None) -> Wanted:
        return _plan.wanted(snap, known)

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
        previous = remote_state or {}
        want = self._wanted(snap, known)
        remote = self.find_run(snap, create_experiment=not dry_run, remote_state=previous)
        there = self._listing(remote) if check and remote is not None else None
        plan = _plan.plan(snap, remote, want, previous, there=there)
        result = PushResult(snap.id, planned=plan.estimate)
        if remote is not None:
            result.remote = self._ledger_state(remote, want)
        if dry_run or plan.nothing:
            return result
        writes0 = self.writes
        progress.start(snap.id, plan.estimate)
        if remote is None:
            exp_id = self._experiment(snap.run.experiment, create=True)
            assert exp_id is not None
            remote = self._create_run(exp_id, snap, want)
        rid = remote.id
        tags = [(k, v) for k, v in plan.tags if remote.tags.get(k) != v]  # less those set at creation
        if remote.tags.get(TAG_STATE) != "in_progress":
            # Before any metric: a push that dies from here on leaves the run marked unfinished.
            tags.insert(0, (TAG_STATE, "in_progress"))
        for part in _batches(tags):
            result.sent += self._log(rid, tags=part)
        for part in _batches(plan.params):
            result.sent += self._log(rid, params=part)
        progress.advance(sum(len(k) + len(v) for k, v in plan.params + plan.tags))
        uploads = set(plan.uploads)
        scan = _Scan()
        try:
            collect = bool(uploads & {STRINGS_FILE, NAMES_FILE})
            if plan.cursor != (snap.metrics_size, 0) or collect:
                self._push_metrics(snap, rid, plan, progress, result, scan, collect=collect)
            if uploads:
                result.sent += self._upload(snap, remote, want, plan.uploads, scan, progress)
        finally:
            if scan.strings_file is not None:
                scan.strings_file.close()
        final = [
            (TAG_CURSOR, f"{snap.metrics_size}:0"),
            (TAG_ARTIFACTS, want.digest),
            (TAG_STATE, "complete"),
        ]
        if scan.strings:
            final.insert(0, (TAG_STRINGS, f"{scan.strings} values in artifact {STRINGS_FILE}"))
        result.sent += self._log(rid, tags=final)
        if plan.update:
            body = {"run_id": rid, **plan.update}
            self._post("runs/update", body)
            result.sent += len(orjson.dumps(body))
        progress.advance(1)
        result.writes = self.writes - writes0
        result.remote = self._ledger_state(remote, want)
        return result

    def _ledger_state(self, remote: RemoteRun, want: Wanted) -> dict[str, Any]:
        return {
            "experiment_id": remote.experiment_id,
            "run_id": remote.id,
            "artifacts_digest": want.digest,
            "uploaded": want.artifacts,
        }

    def _log(
        self,
        run_id: str,
        *,
        params: list[tuple[str, str]] = (),  # type: ignore[assignment]
        tags: list[tuple[str, str]] = (),  # type: ignore[assignment]
    ) -> int:
        if not params and not tags:
            return 0
        body = {
            "run_id": run_id,
            "params": [{"key": k, "value": v} for k, v in params],
            "tags": [{"key": k, "value": v} for k, v in tags],
        }
        self._post("runs/log-batch", body)
        return len(orjson.dumps(body))

    def _push_metrics(
        self,
        snap: Snapshot,
        run_id: str,
        plan: Plan,
        progress: Progress,
        result: PushResult,
        scan: _Scan,
        *,
        collect: bool,
    ) -> None:
        """Send the points from the cursor on, in batches that move the cursor; with ``collect``,
        also gather the string values and mapped names of the whole file into ``scan`` (whose
        strings file the caller closes, also when this raises)."""
        keys: dict[str, str] = {}
        start, skip = plan.cursor
        batch: list[MlflowPoint] = []
        uncertain = plan.resuming
        done = start  # the file offset the points sent so far cover, for the progress bar
        for off, nxt, line in _lines(snap.dir / fmt.METRICS_FILE, 0 if collect else start, snap.metrics_size):
            # The points of the whole line, in order: a row's entries, and a list's elements, each
            # count in the cursor's K, so a push cut anywhere in the line resumes at the next point.
            line_points: list[MlflowPoint] = []
            for rec in parse_line(line):
                if rec is None:
                    scan.skipped += 1
                    continue
                name, step, ts, ms, value = rec
                key = keys.get(name)
                if key is None:
                    key = keys[name] = mlflow_key(name)
                    if key != name:
                        scan.names[key] = name
                points = record_points(step, value)
                if points is None:
                    if type(value) is str:
                        if scan.strings_file is None:
                            scan.strings_file = tempfile.TemporaryFile()
                        scan.strings_file.write(
                            orjson.dumps({"name": name, "step": step, "value": value, "ts": ts}) + b"\n"
                        )
                        scan.strings += 1
                    else:
                        scan.skipped += 1
                    continue
                if off >= start:
                    line_points += [(key, v, ms, s) for s, v in points]
            if off < start:
                continue
            n = len(line_points)
            for k in range(skip if off == start else 0, n):
                batch.append(line_points[k])
                if len(batch) == self.batch:
                    cursor = (off, k + 1) if k + 1 < n else (nxt, 0)
                    result.sent += self._log_metrics(run_id, batch, cursor, uncertain)
                    uncertain = False
                    progress.advance(cursor[0] - done)
                    done, batch = cursor[0], []
        if batch:
            end = (snap.metrics_size, 0)
            result.sent += self._log_metrics(run_id, batch, end, uncertain)
        progress.advance(max(0, snap.metrics_size - done))

    def _log_metrics(
        self, run_id: str, points: list[MlflowPoint], cursor: tuple[int, int], uncertain: bool
    ) -> int:
        """One log-batch of points and the cursor after them; a batch that may have landed
        already (``uncertain``, or its answer lost) is first trimmed of the points the server has."""

        def body(pts: list[MlflowPoint]) -> dict[str, Any]:
            return {
                "run_id": run_id,
                "metrics": [
                    {"key": k, "value": wire_value(v), "timestamp": ms, "step": s} for k, v, ms, s in pts
                ],
                "tags": [{"key": TAG_CURSOR, "value": f"{cursor[0]}:{cursor[1]}"}],
            }

        if uncertain:
            points = self._not_logged(run_id, points)
        sent = [body(points)]

        def again() -> dict[str, Any]:
            sent.append(body(self._not_logged(run_id, points)))
            return sent[-1]

        self._post("runs/log-batch", sent[0], retry=again)
        return sum(len(orjson.dumps(b)) for b in sent)

    def _history(self, run_id: str, key: str) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            params: dict[str, Any] = {"run_id": run_id, "metric_key": key, "max_results": HISTORY_PAGE}
            if token:
                params["page_token"] = token
            page = self._get("metrics/get-history", **params)
            at = self._at("GET", "metrics/get-history")
            yield from answers.objects(page, "metrics", at, optional=True)
            token = answers.text(page, "next_page_token", at, optional=True)
            if not token:
                return

    def _not_logged(self, run_id: str, points: list[MlflowPoint]) -> list[MlflowPoint]:
        have: Counter[tuple[Any, ...]] = Counter()
        for key in sorted({p[0] for p in points}):
            for m in self._history(run_id, key):
                have[
                    (key, same_value(m.get("value", 0)), int(m.get("timestamp", 0)), int(m.get("step", 0)))
                ] += 1
        out = []
        for p in points:
            k = (p[0], same_value(p[1]), p[2], p[3])
            if have[k] > 0:
                have[k] -= 1
            else:
                out.append(p)
        return out

    def _upload(
        self,
        snap: Snapshot,
        remote: RemoteRun,
        want: Wanted,
        paths: list[str],
        scan: _Scan,
        progress: Progress,
    ) -> int:
        root = remote.artifact_root
        if root is None:
            raise SyncError(
                f"the MLflow run of {snap.id} keeps its artifacts at {remote.info.get('artifact_uri')!r}, which "
                "this client cannot write (it uploads through MLflow's artifact proxy); ask the server's "
                "operator to run it with --serve-artifacts; the params and metrics were pushed"
            )
        up = _Uploads(progress)
        for p in paths:
            file = want.local_files.get(p)
            data: IO[bytes] | None = None
            if p == STRINGS_FILE:
                data = scan.strings_file
                if data is None:
                    continue  # no string values
            elif p == NAMES_FILE:
                names = {**want.names, "metrics": dict(sorted(scan.names.items()))}
                if not any(names.values()):
                    continue  # every name is its own key
                data = tempfile.TemporaryFile()
                data.write(orjson.dumps(names, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
            elif p in want.contents:
                data = tempfile.TemporaryFile()
                data.write(want.contents[p])
            elif p in want.made:  # an image's thumbnail, a logged table: made now, not at planning
                data = tempfile.TemporaryFile()
                data.write(want.made[p]())
            elif p in want.artifact_paths:
                put = partial(self._put_artifact, f"{ARTIFACT_API}/{root}/{quote(p, safe='/')}", file, up)
                done = send_artifact(snap, want.artifact_paths[p], put)  # never through a symlink
                want.sent(p, done.sha256 if done else None)
                continue
            if data is not None:
                data.flush()
                size = data.seek(0, os.SEEK_END)
            elif p == f"{OWN_DIR}/{fmt.METRICS_FILE}":
                size = snap.metrics_size
            elif p == f"{OWN_DIR}/{fmt.MANIFEST_FILE}":
                size = snap.manifest_size
            else:
                assert file is not None
                size = file.stat().st_size
            try:
                self._put(f"{ARTIFACT_API}/{root}/{quote(p, safe='/')}", up, file, size, data)
            finally:
                if data is not None and data is not scan.strings_file:
                    data.close()
        return up.sent

    def _put(self, url: str, up: _Uploads, file: Path | None, size: int, data: IO[bytes] | None) -> None:
        self._request(
            "PUT",
            url,
            content=up.chunks(file, size, data),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            write=True,
        )

    def _put_artifact(self, url: str, file: Path | None, up: _Uploads, fh: IO[bytes], f: LocalFile) -> None:
        """Upload the artifact's open file, which holds ``f``; ArtifactChanged if it was rewritten in
        place meanwhile (MLflow checks no hash: what it got may mix two versions)."""
        self._put(url, up, file, f.size, fh)
        if identity(os.fstat(fh.fileno())) != f.identity:
            raise ArtifactChanged("it was rewritten while it was read")

    # ----------------------------------------------------------------- verify

    def verify_run(self, snap: Snapshot, remote_state: dict[str, Any] | None = None) -> list[str]:
        snap = snap.fresh()
        remote = self.find_run(snap, remote_state=remote_state)
        if remote is None:
            return ["the run is not on the remote"]
        want = self._wanted(snap, None)
        diffs = []
        if remote.tags.get(TAG_STATE) != "complete":
            diffs.append("the MLflow run is unfinished (a push was interrupted); sync again")
        for what, should, there in (("param", want.params, remote.params), ("tag", want.tags, remote.tags)):
            for k, v in should.items():
                if k not in there:
                    diffs.append(f"{what} {k} is missing on the remote")
                elif there[k] != v:
                    diffs.append(f"{what} {k} is {there[k]!r} on the remote, {v!r} here")
        if remote.info.get("status") != want.status:
            diffs.append(f"status is {remote.info.get('status')} on the remote, {want.status} here")
        if want.end_ms is not None and remote.info.get("end_time") != want.end_ms:
            diffs.append("the end time differs")
        diffs += self._verify_metrics(snap, remote)
        diffs += self._verify_artifacts(snap, remote, want)
        return diffs

    def _verify_metrics(self, snap: Snapshot, remote: RemoteRun) -> list[str]:
        local: dict[str, Counter[tuple[Any, ...]]] = {}
        keys: dict[str, str] = {}
        for _off, _nxt, line in _lines(snap.dir / fmt.METRICS_FILE, 0, snap.metrics_size):
            for rec in parse_line(line):
                if rec is None:
                    continue
                name, step, _ts, ms, value = rec
                points = record_points(step, value)
                if points is None:
                    continue
                key = keys.get(name) or keys.setdefault(name, mlflow_key(name))
                c = local.setdefault(key, Counter())
                for s, v in points:
                    c[(same_value(v), ms, s)] += 1
        at = self._at("GET", "runs/get")
        run = answers.obj(answers.field(self._get("runs/get", run_id=remote.id), "run", at), at, "run")
        data = answers.obj(run.get("data") or {}, at, "run.data")
        there = {
            answers.text(m, "key", at, "run.data.metrics")
            for m in answers.objects(data, "metrics", at, optional=True)
        }
        diffs = []
        for key in sorted(set(local) | there):
            have: Counter[tuple[Any, ...]] = Counter()
            if key in there:
                for m in self._history(remote.id, key):
                    have[
                        (same_value(m.get("value", 0)), int(m.get("timestamp", 0)), int(m.get("step", 0)))
                    ] += 1
            want = local.get(key, Counter())
            missing = sum(1 for p in want if p not in have)
            extra = sum(n for p, n in have.items() if p not in want)
            doubled = sum(n - want[p] for p, n in have.items() if p in want and n > want[p])
            if key not in local:
                diffs.append(f"metric {key} is on the remote but not here")
            elif missing or extra or doubled:
                diffs.append(
                    f"metric {key}: {missing} point(s) missing on the remote, {extra} extra, {doubled} doubled"
                )
        return diffs

    def _verify_artifacts(self, snap: Snapshot, remote: RemoteRun, want: Wanted) -> list[str]:
        there = self._listing(remote)
        sizes = _plan.sizes(snap, want)
        diffs = []
        for p in want.artifacts:
            if p not in sizes:
                continue  # generated: present only when it has content
            if p not in there:
                diffs.append(f"artifact {p} is missing on the remote")
            elif there[p] != sizes[p]:
                diffs.append(f"artifact {p} has {there[p]} bytes on the remote, {sizes[p]} here")
        return diffs

    def _listing(self, remote: RemoteRun) -> dict[str, int]:
        """Every artifact file of the MLflow run, and its size."""
        there: dict[str, int] = {}
        todo = [""]
        while todo:
            path = todo.pop()
            params = {"run_id": remote.id, **({"path": path} if path else {})}
            token = None
            while True:
                page = self._get("artifacts/list", **params, **({"page_token": token} if token else {}))
                at = self._at("GET", "artifacts/list")
                for f in answers.objects(page, "files", at, optional=True):
                    p = str(answers.text(f, "path", at, "files"))
                    size = f.get("file_size") or 0
                    if f.get("is_dir"):
                        todo.append(p)
                    elif type(size) is int or (type(size) is str and size.isdigit()):  # int64 may be a string
                        there[p] = int(size)
                    else:
                        raise at.bad(f"'files.file_size' = {size!r:.60}, not a size")
                token = answers.text(page, "next_page_token", at, optional=True)
                if not token:
                    break
        return there


def _batches(items: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    """Params or tags in log-batch requests of at most 100 and well under the 1 MB that Databricks
    enforces (values of up to 8,000 characters, JSON-escaped, could pass it at 100)."""
    part: list[tuple[str, str]] = []
    size = 0
    for k, v in items:
        n = len(orjson.dumps([k, v]))
        if part and (len(part) == MAX_PARAMS_TAGS or size + n > MAX_BATCH_BYTES):
            yield part
            part, size = [], 0
        part.append((k, v))
        size += n
    if part:
        yield part


def _as_json(make: Callable[[], Any]) -> Callable[[], bytes | None]:
    """The body ``make`` gives for the next try, as JSON; None if it found the request done."""

    def again() -> bytes | None:
        body = make()
        return None if body is None else orjson.dumps(body)

    return again
