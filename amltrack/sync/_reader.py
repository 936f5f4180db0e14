"""Reading runs back from amltrack's own history server: what ``amltrack history ... --remote`` shows.

    with RemoteReader.open("team") as remote:        # a remote's name or a server URL
        for run in remote.runs(status="completed", limit=10):
            print(run.id, run.status, run.cached_summary().get("metrics"))
        run = remote.run("last")                      # an id, a unique prefix, or "last"
        run.metric("loss").values[-3:], run.read_artifact("model.bin")

A run from the server is an ``amltrack.Run`` over a temporary store that the reader removes when it
is closed: ``metrics.jsonl`` and ``artifacts.jsonl`` are fetched into it the first time they are
read, so everything that reads a local run reads a remote one the same way. Its ``status`` is the
server's (``crashed`` as the server's reader computes it), and ``read_artifact`` fetches the bytes.
The server only shows finalised runs. The routes are ``GET /v1/history/...`` in ``docs/sync.md``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx
import orjson

from .. import __version__, _query
from .. import _format as fmt
from .._assets import Asset
from .._assets import parse_ref as check_asset_ref
from .._errors import ArtifactNotFoundError, AssetNotFoundError, RunNotFoundError
from .._store import Run, Store
from .._summary import decode_overview
from ._answers import Route, count, field, obj, objects, table
from ._config import TOKEN_ENV, RemoteEntry, Remotes
from ._errors import RemoteConfigError, RemoteError, RemoteUnavailableError, SyncError
from ._http import HttpBacked, HttpClient, RetryPolicy, amltrack_client, error_fields
from ._targets import check_url

_BLOCK = 1 << 20


class RemoteRunNotFoundError(RunNotFoundError):
    """No finalised run on the server matches the id or prefix."""

    def __init__(self, ref: str, reader: RemoteReader) -> None:
        self.ref = ref
        self.store = reader.label
        LookupError.__init__(
            self,
            f"no run matches {ref!r} on {reader.label}; "
            f"list its runs with 'amltrack history list --remote {reader.name}'",
        )


class RemoteRun(Run):
    """A run on the server, read through a temporary local copy of its files."""

    def __init__(self, reader: RemoteReader, entry: dict[str, Any]) -> None:
        run_id = str(entry["id"])
        super().__init__(reader.store, reader.store.runs_dir / run_id, _object(entry.get("run")))
        self._reader = reader
        self._status = entry.get("status")
        self._summary = _object(entry.get("summary"))
        self._fetched: set[str] = set()

    @property
    def status(self) -> str:
        """The status the server reports (its reader tells running from crashed)."""
        return self._status if isinstance(self._status, str) else "unknown"

    def reload(self) -> RemoteRun:
        """Ask the server again: status, run.json and summary.json; the files are fetched anew."""
        entry = self._reader._entry(self.id)
        self._info = _object(entry.get("run"))
        self._status = entry.get("status")
        self._summary = _object(entry.get("summary"))
        self._fetched.clear()
        return self

    def cached_summary(self) -> dict[str, Any]:
        return dict(self._summary)

    def _fetch(self, name: str) -> None:
        if name in self._fetched:
            return
        dest = self.dir / name
        if self._reader.fetch_file(self.id, name, dest):
            # Readers take a file's mtime as a sign of life (a crashed run's end, a stale summary).
            # The copy's mtime is only when it was fetched, and the server's when it was pushed:
            # stamp the copy with the run's last heartbeat, its last sign of life the server knows.
            beat = self._summary.get("heartbeat")
            if not isinstance(beat, (int, float)):
                beat = self.info.get("created_ts")
            if isinstance(beat, (int, float)):
                os.utime(dest, (beat, beat))
        self._fetched.add(name)

    def _read_metrics(self) -> dict[str, Any]:
        self._fetch(fmt.METRICS_FILE)
        return super()._read_metrics()

    def artifacts(self) -> list[dict[str, Any]]:
        self._fetch(fmt.MANIFEST_FILE)
        return super().artifacts()

    def _overview(self) -> dict[str, dict[str, Any]]:
        """The server's summary of the metrics: a few hundred bytes a metric, however long the run."""
        body = self._reader.overview(self.id)
        self.skipped = body["skipped"]
        return body["metrics"]

    def read_artifact(self, path: str) -> bytes:
        """The artifact's bytes, from the server."""
        return self._reader.read_artifact(self.id, path)

    def open_artifact(self, path: str) -> BinaryIO:
        """The artifact's bytes from the server, as a file: the temporary store holds no artifacts."""
        return io.BytesIO(self.read_artifact(path))


def _object(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


class RemoteReader(HttpBacked):
    """A reader of one amltrack server's finalised runs.

    reader = RemoteReader("http://127.0.0.1:8765", token)   # or RemoteReader.open("team")
    rows = reader.runs(experiment="mnist", limit=5)
    reader.close()
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        label: str | None = None,
        name: str | None = None,
        retries: int = 2,
        backoff: float = 0.2,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = check_url(url)
        self.label = label or self.url
        self.name = name or self.url  # how a command names this server: for the hints in messages
        self._token = token
        self._http = HttpClient(
            amltrack_client(self.url, token, timeout, transport),
            self.url,
            RetryPolicy(retries, backoff),
            unavailable=self._unavailable,
        )
        self._root = Path(tempfile.mkdtemp(prefix="amltrack-remote-"))
        (self._root / fmt.RUNS_DIR).mkdir()
        self.store = Store(self._root)

    @classmethod
    def open(cls, to: str, remotes: Remotes | None = None, **kwargs: Any) -> RemoteReader:
        """A reader of ``to``, a remote's name or a server URL, with the token ``amltrack sync`` would send."""
        entry: RemoteEntry = (remotes or Remotes.load()).resolve(to)
        if entry.kind != "amltrack":
            raise RemoteConfigError(
                f"remote {entry.label} is an {entry.kind} server; --remote reads amltrack servers only "
                "(http:// or https:// URLs)"
            )
        return cls(
            entry.url,
            entry.effective_token(),
            label=entry.label,
            name=to,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"RemoteReader({self.url!r})"

    def __str__(self) -> str:
        return self.label

    def close(self) -> None:
        super().close()
        shutil.rmtree(self._root, ignore_errors=True)

    # ----------------------------------------------------------------- HTTP

    def _send(
        self, path: str, params: dict[str, Any] | None = None, *, stream: bool = False
    ) -> httpx.Response:
        """One GET, retried on a transport failure or a 502-504; an error answer raises."""
        r = self._http.request("GET", path, params=params, stream=stream)
        assert r is not None  # a GET may be repeated as it is
        if r.status_code >= 400:
            r.read()
            r.close()
            raise self._error(r)
        return r

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        r = self._send(path, params)
        try:
            return orjson.loads(r.content)
        except orjson.JSONDecodeError:
            raise SyncError(
                f"{self.label} answered GET {path} with something that is not JSON; "
                "is this an amltrack server?"
            ) from None

    def _unavailable(self, cause: BaseException) -> RemoteUnavailableError:
        e = RemoteUnavailableError(self.url, cause)
        e.args = (
            f"cannot reach {self.label} ({type(cause).__name__}: {cause}); check that the server runs "
            "and the URL",
        )
        return e

    def _error(self, r: httpx.Response) -> RemoteError:
        code, message, _ = error_fields(r)
        e = RemoteError(self.url, r.status_code, code, message)
        where = self.label
        if code == "unauthorized" and not self._token:
            text = (
                f"{where} needs a token to read runs: set ${TOKEN_ENV}, or store the remote's token with "
                "'amltrack remote add NAME URL --token TOKEN'"
            )
        elif code == "unauthorized":
            source = f"${TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else "the remote's token"
            text = (
                f"{where} does not know the token sent ({source}); check ${TOKEN_ENV} or the remote's token"
            )
        elif code == "forbidden":
            text = f"{where} refused to let this token read runs ({message}); use a token with the read scope"
        else:
            text = f"{where} refused the request ({r.status_code} {code}): {message}"
        e.args = (text,)
        return e

    # ----------------------------------------------------------------- runs

    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int = 0,
        *,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
    ) -> list[RemoteRun]:
        """Finalised runs newest first, as ``Store.runs``; ``limit`` 0 for all. The server filters
        and sorts: the expression and keys are checked here first, so a bad one raises QueryError
        (naming the column) without a request."""
        params: dict[str, Any] = {"limit": limit}
        if experiment is not None:
            params["experiment"] = experiment
        if status is not None:
            params["status"] = status
        if filter is not None:
            _query.as_tree(filter)
            params["filter"] = filter
        if order_by is not None:
            keys = [order_by] if isinstance(order_by, str) else list(order_by)
            _query.parse_orders(keys)
            params["order_by"] = keys
        body = self._history("/v1/history/runs", params)
        entries = objects(body, "runs", Route(self.label, "GET /v1/history/runs"))
        return [RemoteRun(self, e) for e in entries if fmt.is_valid_run_id(e.get("id"))]

    def _history(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            body = self._get_json(path, params)
        except RemoteError as e:
            if e.code == "not_found":  # the route itself is missing: an older server
                raise SyncError(
                    f"{self.label} does not serve runs for reading (GET {path}: 404); "
                    f"upgrade it to amltrack {__version__}"
                ) from None
            raise
        if not isinstance(body, dict):
            raise SyncError(f"{self.label} answered GET {path} with a {type(body).__name__}, not an object")
        return body

    def _entry(self, ref: str) -> dict[str, Any]:
        if not ref or len(ref) > 255 or not ref.isprintable():  # what the server takes as a reference
            raise RemoteRunNotFoundError(ref, self)
        try:
            entry = self._history(f"/v1/history/runs/{quote(ref, safe='')}")
        except RemoteError as e:
            if e.code == "run_not_found":
                raise RemoteRunNotFoundError(ref, self) from None
            if e.code == "invalid_request":  # a prefix that matches several runs
                e.args = (f"{e.message} (on {self.label})",)
            raise
        if not fmt.is_valid_run_id(entry.get("id")):
            raise SyncError(f"{self.label} answered run {ref!r} with an invalid run id")
        return entry

    def run(self, ref: str) -> RemoteRun:
        """The run ``ref`` names (an id, a unique prefix of it or of its random part, a unique run
        name, or ``last``)."""
        return RemoteRun(self, self._entry(ref))

    def last(self) -> RemoteRun:
        """The newest run."""
        return self.run("last")

    # ----------------------------------------------------------------- files

    def fetch_file(self, run_id: str, name: str, dest: Path) -> bool:
        """Copy one of the run's four files to ``dest``; False if the run has none (it is not made)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            r = self._send(f"/v1/history/runs/{run_id}/files/{name}", stream=True)
        except RemoteError as e:
            if e.code == "not_found":
                return False
            if e.code == "run_not_found":
                raise RemoteRunNotFoundError(run_id, self) from None
            raise
        try:
            with open(dest, "wb") as f:
                for block in r.iter_bytes(_BLOCK):
                    f.write(block)
        except httpx.TransportError as e:
            raise self._unavailable(e) from e
        finally:
            r.close()
        return True

    def overview(self, run_id: str) -> dict[str, Any]:
        """``GET /v1/history/runs/{id}/summary``: per metric kind, count, last, min, max and points."""
        route = Route(self.label, f"GET /v1/history/runs/{run_id}/summary")
        try:
            body = self._history(f"/v1/history/runs/{run_id}/summary")
        except RemoteError as e:
            if e.code == "run_not_found":
                raise RemoteRunNotFoundError(run_id, self) from None
            raise
        metrics = table(body, "metrics", route)
        for name, m in metrics.items():
            count(obj(m, route, f"metrics.{name}"), "count", route, f"metrics.{name}")
            if type(field(m, "points", route, f"metrics.{name}")) is not list:
                raise route.bad(f"'metrics.{name}.points' that is not a list")
        skipped = count(body, "skipped", route)
        return {"skipped": skipped, "metrics": decode_overview(metrics)}

    # ----------------------------------------------------------------- assets

    def assets(self) -> list[RemoteAsset]:
        """Every version of every asset on the server, by name, then version."""
        at = Route(self.label, "GET /v1/assets")
        return [_asset(self, a, at) for a in objects(self._assets("/v1/assets"), "assets", at)]

    def asset(self, ref: str) -> RemoteAsset:
        """The asset version ``NAME:VERSION``, or the latest version of ``NAME``."""
        check_asset_ref(ref)
        body = self._assets(f"/v1/assets/{quote(ref, safe=':')}", ref)
        return _asset(self, body, Route(self.label, f"GET /v1/assets/{ref}"))

    def asset_file(self, ref: str, path: str) -> bytes:
        return self._send_asset(
            f"/v1/assets/{quote(ref, safe=':')}/files/{quote(path, safe='/')}", ref
        ).content

    def _assets(self, path: str, ref: str | None = None) -> Any:
        body = orjson.loads(self._send_asset(path, ref).content)
        if not isinstance(body, dict):
            raise SyncError(f"{self.label} answered GET {path} with a {type(body).__name__}, not an object")
        return body

    def _send_asset(self, path: str, ref: str | None) -> httpx.Response:
        try:
            return self._send(path)
        except RemoteError as e:
            if e.code == "asset_not_found" and ref is not None:
                missing = AssetNotFoundError(ref, self.label)
                missing.args = (
                    f"no asset {ref!r} on {self.label}; list them with "
                    f"'amltrack asset list --remote {self.name}'",
                )
                raise missing from None
            if e.code == "not_found" and ref is None:  # the route itself is missing: an older server
                raise SyncError(
                    f"{self.label} does not serve assets (GET {path}: 404); upgrade it to amltrack {__version__}"
                ) from None
            raise

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of the run's artifact ``path``."""
        fmt.check_artifact_path(path)
        try:
            r = self._send(f"/v1/history/runs/{run_id}/artifacts/{quote(path, safe='/')}")
        except RemoteError as e:
            if e.code == "not_found":
                missing = ArtifactNotFoundError(path, run_id)
                missing.args = (
                    f"run {run_id} has no stored artifact {path!r} on {self.label}; list its artifacts "
                    f"with 'amltrack history info -r {run_id} --remote {self.name}'",
                )
                raise missing from None
            if e.code == "run_not_found":
                raise RemoteRunNotFoundError(run_id, self) from None
            raise
        return r.content


class RemoteAsset(Asset):
    """An asset version on the server: ``info`` from its asset.json, each file's bytes fetched when read."""

    def __init__(self, reader: RemoteReader, info: dict[str, Any]) -> None:
        super().__init__(reader.store.path / "assets" / str(info["name"]) / str(info["version"]), info)
        self._reader = reader

    def _open(self, path: str) -> BinaryIO:
        fmt.check_artifact_path(path)
        if not any(f["path"] == path for f in self.files):
            missing = AssetNotFoundError(self.ref, self._reader.label, path)
            missing.args = (
                f"asset {self.ref} has no file {path!r}; list its files with "
                f"'amltrack asset show {self.ref} --remote {self._reader.name}'",
            )
            raise missing
        return io.BytesIO(self._reader.asset_file(self.ref, path))


def _asset(reader: RemoteReader, info: dict[str, Any], at: Route) -> RemoteAsset:
    if not isinstance(info.get("name"), str) or type(info.get("version")) is not int:
        raise at.bad("an asset without a name or a version")
    return RemoteAsset(reader, info)
