"""``amltrack sync`` to a real MLflow tracking server (``mlflow+http://``), read back with MLflow's own client.

One ``mlflow server`` (SQLite, basic auth, one worker, telemetry and job execution off) serves the
whole module. It runs from its own virtualenv, so MLflow's pins never reach amltrack's test
environment: ``$AMLTRACK_TEST_MLFLOW_PYTHON``, else ``.venv-mlflow/bin/python`` at the repo top
(``.ci/run`` creates it). Without it the server tests skip, except where they were asked for (in CI,
or with ``$AMLTRACK_TEST_MLFLOW_PYTHON`` set), where they fail.
"""

from __future__ import annotations

import base64
import json
import math
import os
import posixpath
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amltrack
from amltrack import _assets, _records
from amltrack.sync import MlflowRemote, NullProgress, Remotes, open_remote, snapshot, sync
from amltrack.sync._mlflow import amltrack_name, mlflow_key, mlflow_path

from .conftest import wait_until
from .sync_helpers import make_run, sync_killed

pytestmark = pytest.mark.timeout(300)  # the first test also waits for the server to start

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_PYTHON = Path(
    os.environ.get("AMLTRACK_TEST_MLFLOW_PYTHON") or ROOT / ".venv-mlflow" / "bin" / "python"
)
READ_SCRIPT = Path(__file__).resolve().parent / "scripts" / "mlflow_read.py"
USER, PASSWORD = "admin", "test-password-4b9e1c7a"
MAX_DOUBLE = 1.7976931348623157e308  # MLflow's SQL store keeps an infinity as the largest double


class _PortTaken(Exception):
    pass


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 in its own process group, its output in a log file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "server.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"mlflow+{self.http}"

    def start(self, timeout: float = 240) -> MlflowServer:
        # MLflow takes a port number, not a socket: a port free a moment ago may be taken before it
        # listens. Then it exits saying so, and another port will do.
        for _ in range(5):
            try:
                return self._start(timeout)
            except _PortTaken:
                continue
        raise AssertionError(f"mlflow server found its port taken five times:\n{self.tail()}")

    def _start(self, timeout: float) -> MlflowServer:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        auth = self.root / "auth.ini"
        auth.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{self.root / 'auth.db'}\n"
            f"admin_username = {USER}\n"
            f"admin_password = {PASSWORD}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Without the cache every request pays a PBKDF2 check. (With it, MLflow 3.17 answers a
            # Bearer header with a 500, so the bearer header is tested without a server, below.)
            "auth_cache_ttl_seconds = 600\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLTRACK_", "MLFLOW_"))}
        env.update(
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_AUTH_CONFIG_PATH=str(auth),
            MLFLOW_FLASK_SERVER_SECRET_KEY="amltrack-test-secret",
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(MLFLOW_PYTHON.parent / "mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--backend-store-uri",
                    f"sqlite:///{self.root / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.root / "artifacts"),
                    "--serve-artifacts",
                    "--workers",
                    "1",
                    "--app-name",
                    "basic-auth",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its uvicorn worker is stopped with it
            )

        def up() -> bool:
            if self.proc.poll() is not None:
                if "address already in use" in self.tail().lower():
                    raise _PortTaken
                raise AssertionError(f"mlflow server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                return httpx.get(self.http + "/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(up, timeout, "mlflow server to answer /health")
        except AssertionError:
            self.stop()
            raise AssertionError(f"mlflow server did not start:\n{self.tail()}") from None
        return self

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.http, auth=(USER, PASSWORD), timeout=30)

    def read(self, *run_ids: str) -> dict[str, list[dict[str, Any]]]:
        """The runs as MLflow's own Python client reads them (tests/scripts/mlflow_read.py)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLTRACK_", "MLFLOW_"))}
        env.update(
            MLFLOW_TRACKING_URI=self.http,
            MLFLOW_TRACKING_USERNAME=USER,
            MLFLOW_TRACKING_PASSWORD=PASSWORD,
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        out = subprocess.run(
            [str(MLFLOW_PYTHON), str(READ_SCRIPT), *run_ids],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout)

    def tags(self, run_id: str) -> dict[str, str]:
        """The tags of the one MLflow run of an amltrack run, over REST (cheaper than ``read``)."""
        with self.client() as c:
            exps = c.post("/api/2.0/mlflow/experiments/search", json={"max_results": 1000}).json()
            r = c.post(
                "/api/2.0/mlflow/runs/search",
                json={
                    "experiment_ids": [e["experiment_id"] for e in exps["experiments"]],
                    "filter": f"tags.`amltrack.run_id` = '{run_id}'",
                },
            ).json()
        runs = r.get("runs") or []
        assert len(runs) <= 1, runs
        if not runs:
            return {}
        info = runs[0]["info"]
        tags = {t["key"]: t["value"] for t in runs[0]["data"].get("tags", [])}
        return {**tags, "(status)": info["status"], "(run_id)": info["run_id"]}

    def history(self, mlflow_run_id: str, key: str) -> list[dict[str, Any]]:
        with self.client() as c:
            r = c.get(
                "/api/2.0/mlflow/metrics/get-history", params={"run_id": mlflow_run_id, "metric_key": key}
            )
        r.raise_for_status()
        return r.json().get("metrics") or []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    if not (MLFLOW_PYTHON.parent / "mlflow").exists():
        why = (
            f"mlflow is not installed at {MLFLOW_PYTHON.parent}: python3 -m venv .venv-mlflow && "
            ".venv-mlflow/bin/pip install 'mlflow[auth]==3.17.2' (or set AMLTRACK_TEST_MLFLOW_PYTHON)"
        )
        if os.environ.get("AMLTRACK_TEST_MLFLOW_PYTHON"):
            pytest.fail(f"AMLTRACK_TEST_MLFLOW_PYTHON is {str(MLFLOW_PYTHON)!r}, but {why}")
        if os.environ.get("CI"):
            pytest.fail(why)  # CI installs it (.ci/run): a missing server is a broken CI, not a skip
        pytest.skip(why)
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield srv
    srv.stop()


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """MLflow credentials in this process's environment (for in-process syncs); returned for children."""
    monkeypatch.setenv("AMLTRACK_CONFIG_DIR", str(tmp_path / "no-remotes"))  # never the user's remotes
    for var in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    return {"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": PASSWORD}


def cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMLTRACK_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "amltrack", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=timeout,
    )


# ----------------------------------------------------------------- what MLflow should hold


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def mlflow_number(v: float) -> float | str:
    """A value as MLflow's client reads it back from the SQL store."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return MAX_DOUBLE if v > 0 else -MAX_DOUBLE
    return float(v)


def expected_metrics(run: amltrack.Run) -> tuple[dict[str, list[list[Any]]], list[dict[str, Any]]]:
    """The MLflow metric histories of a run (key -> sorted [step, ms, value]), and its string values."""
    metrics: dict[str, list[list[Any]]] = {}
    strings = []
    for line in (run.dir / "metrics.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        value = _records.decode_value(r["value"], r.get("nonfinite") is True)
        if isinstance(value, str):
            strings.append({"name": r["name"], "step": r["step"], "value": value, "ts": r["ts"]})
            continue
        points = list(enumerate(value)) if isinstance(value, list) else [(r["step"], value)]
        metrics.setdefault(mlflow_key(r["name"]), []).extend(
            [s, to_ms(r["ts"]), mlflow_number(float(v))] for s, v in points
        )
    return {k: sorted(v, key=repr) for k, v in metrics.items()}, strings


def same_history(got: list[list[Any]], want: list[list[Any]]) -> bool:
    return sorted(got, key=repr) == want


def artifact(remote_run: dict[str, Any], path: str) -> bytes:
    return base64.b64decode(remote_run["artifacts"][path])


# More params and tags than one log-batch holds (100 of each), and values and a name longer than
# MLflow takes (6,000, 8,000 and 250 characters; amltrack's own limit on a name is 255): no two
# cuts of them are alike.
MANY_PARAMS = {f"p{i:03d}": i * 0.5 for i in range(150)}
MANY_TAGS = {f"t{i:03d}": f"tag value {i}" for i in range(150)}
LONG_PARAM = "".join(f"{i:07d}" for i in range(1000))  # 7,000 characters
LONG_TAG = "".join(f"{i:09d}" for i in range(1000))  # 9,000 characters
LONG_NAME = "rich run " + "".join(f"{i:03d}" for i in range(82))  # 255 characters


def rich_run(store: Path) -> str:
    """A run with every kind of value, param, tag and artifact."""
    with amltrack.start_run(
        "mlflow-sync",
        store=store,
        outputs=None,
        name=LONG_NAME,
        params={
            "lr": 0.001, "layers": 4, "opt": "adam", "amp": True, "seed": None, "big": 10**18,
            "long": LONG_PARAM, **MANY_PARAMS,
        },
        tags={"team": "vision", "priority": 2, "long": LONG_TAG, **MANY_TAGS},
    ) as lg:  # fmt: skip
        for i in range(1500):
            lg.log("loss", 1.0 / (i + 1))
        for i in range(300):
            lg.log("val/acc", i / 300, step=i * 10)
        lg.log("epochs", 7)
        lg.log("flag", True)
        lg.log("flag", False)
        lg.log("nan", float("nan"))
        lg.log("inf", float("inf"))
        lg.log("inf", float("-inf"))
        lg.log("hist", [1, 2.5, float("nan"), float("inf")])
        lg.log("hist", [3, 4])
        lg.log("schedule", [0.5 ** (i % 7) for i in range(1200)])  # longer than a batch: split mid-record
        lg.log("note", "hello")
        lg.log("note", "NaN")  # a string, not a NaN
        lg.upload("notes/config.txt", "lr=0.001")
        lg.upload("empty.txt", b"")
        lg.upload("model/weights.bin", os.urandom(200_000))
        lg.upload("odd #1 100%.txt", "odd")
        run_id = lg.run_id
    return run_id


def ended_run(store: Path, status: str) -> str:
    with amltrack.start_run("mlflow-sync", store=store, outputs=None) as lg:
        lg.log("loss", 0.5)
        lg.finish(status)
        return lg.run_id


def crashed_run(store: Path) -> tuple[str, float]:
    """A run with no name whose process died on another host an hour ago: it reads as crashed.
    Returns its id and its last heartbeat."""
    with amltrack.start_run("mlflow-sync", store=store, outputs=None) as lg:
        lg.log("loss", 0.25)
        rid = lg.run_id
    run_dir = store / "runs" / rid
    info = orjson.loads((run_dir / "run.json").read_bytes())
    start = info["created_ts"] - 7200
    info.update(status="running", hostname="some-other-host", created_ts=start, ended=None, ended_ts=None)
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    summary["heartbeat"] = beat = start + 3600.1237  # an hour ago
    amltrack._format.write_json_atomic(run_dir / "run.json", info)
    amltrack._format.write_json_atomic(run_dir / "summary.json", summary)
    run = amltrack.Store(store).run(rid)
    assert run.status == "crashed" and run.name is None
    return rid, beat


# ----------------------------------------------------------------- the tests


def test_a_full_run_reads_back_exactly(server: MlflowServer, tmp_path: Path, creds: dict[str, str]) -> None:
    local = tmp_path / "local"
    rich = rich_run(local)
    failed = ended_run(local, "failed")
    killed = ended_run(local, "killed")
    crashed, heartbeat = crashed_run(local)
    store = amltrack.Store(local)
    _assets.promote(store.run(rich), "model", "weights")  # MLflow takes no assets: the report says so

    dry = cli("sync", "--store", str(local), "--to", server.url, "--dry-run", **creds)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1].startswith("dry run, nothing sent: 4 to push")
    assert server.tags(rich) == {}

    out = cli("sync", "--store", str(local), "--to", server.url, "--json", **creds)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["counts"]["pushed"] == 4, report
    assert report["assets"] == [] and "amltrack servers only" in report["assets_skipped"]
    assert "skipped     assets  assets go to amltrack servers only, not to mlflow servers" in dry.stdout

    back = server.read(rich, failed, killed, crashed)
    assert [len(back[r]) for r in (rich, failed, killed, crashed)] == [1, 1, 1, 1]
    statuses = {rid: back[rid][0]["status"] for rid in (rich, failed, killed, crashed)}
    assert statuses == {rich: "FINISHED", failed: "FAILED", killed: "KILLED", crashed: "FAILED"}

    # A crashed run ends at its last heartbeat; a run with no name is named by its id.
    (gone,) = back[crashed]
    assert gone["end_time"] == to_ms(heartbeat) and gone["run_name"] == crashed
    assert gone["start_time"] == to_ms(store.run(crashed).info["created_ts"])
    assert gone["tags"]["amltrack.status"] == "crashed" and gone["tags"]["mlflow.runName"] == crashed

    (there,) = back[rich]
    run = store.run(rich)
    info = run.info
    assert there["experiment"] == "mlflow-sync" and there["lifecycle_stage"] == "active"
    assert there["run_name"] == LONG_NAME[:250]
    assert there["start_time"] == to_ms(info["created_ts"]) and there["end_time"] == to_ms(info["ended_ts"])
    assert there["params"] == {
        "lr": "0.001",
        "layers": "4",
        "opt": "adam",
        "amp": "True",
        "seed": "None",
        "big": "1000000000000000000",
        "long": LONG_PARAM[:6000],
        **{k: str(v) for k, v in MANY_PARAMS.items()},
    }
    size = (run.dir / "metrics.jsonl").stat().st_size
    assert there["tags"] == {
        "team": "vision",
        "priority": "2",
        "long": LONG_TAG[:8000],
        **MANY_TAGS,
        "mlflow.runName": LONG_NAME[:250],
        "mlflow.user": info["user"],
        "mlflow.source.name": info["argv"][0],
        "amltrack.run_id": rich,
        "amltrack.status": "completed",
        "amltrack.string_metrics": "2 values in artifact amltrack/string_metrics.jsonl",
        "amltrack.sync.state": "complete",
        "amltrack.sync.cursor": f"{size}:0",
        "amltrack.sync.artifacts": there["tags"]["amltrack.sync.artifacts"],
    }
    metrics, strings = expected_metrics(run)
    assert sorted(there["metrics"]) == sorted(metrics) == [
        "epochs", "flag", "hist", "inf", "loss", "nan", "schedule", "val/acc",
    ]  # fmt: skip
    for key, want in metrics.items():
        assert same_history(there["metrics"][key], want), key
    assert sorted(there["metrics"]["flag"])[0][2] in (0.0, 1.0)
    assert [p[2] for p in sorted(there["metrics"]["inf"], key=lambda p: p[1])] == [MAX_DOUBLE, -MAX_DOUBLE]

    assert sorted(there["artifacts"]) == [
        "amltrack/artifacts.jsonl", "amltrack/metrics.jsonl", "amltrack/names.json", "amltrack/run.json",
        "amltrack/string_metrics.jsonl", "amltrack/summary.json", "empty.txt", "model/weights.bin",
        "notes/config.txt", "odd :231 100:25.txt",
    ]  # fmt: skip
    for name in ("run.json", "metrics.jsonl", "artifacts.jsonl", "summary.json"):
        assert artifact(there, f"amltrack/{name}") == (run.dir / name).read_bytes(), name
    for path in ("notes/config.txt", "empty.txt", "model/weights.bin", "odd #1 100%.txt"):
        assert artifact(there, mlflow_path(path)) == run.read_artifact(path), path
    assert json.loads(artifact(there, "amltrack/names.json")) == {
        "artifacts": {"odd :231 100:25.txt": "odd #1 100%.txt"}, "metrics": {}, "params": {}, "tags": {},
    }  # fmt: skip
    got_strings = [orjson.loads(x) for x in artifact(there, "amltrack/string_metrics.jsonl").splitlines()]
    assert got_strings == strings and [s["value"] for s in strings] == ["hello", "NaN"]

    # Syncing again sends nothing: the ledger says so without a request, and the server agrees.
    again = cli("sync", "--store", str(local), "--to", server.url, **creds)
    assert again.returncode == 0 and again.stdout.startswith("nothing to send; 4 up to date"), again.stdout
    checked = cli("sync", "--store", str(local), "--to", server.url, "--all", "--verify", "--json", **creds)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    # The cut params, tags and name, and the crashed run's end time, compare equal to what MLflow holds.
    assert report["bytes"] == 0 and report["counts"]["up_to_date"] == 4
    assert all(r["differences"] == [] for r in report["runs"]), report
    ledger = json.loads(next((run.dir / "sync").glob("mlflow-*.json")).read_text())
    assert ledger["kind"] == "mlflow" and ledger["remote_state"]["run_id"] == there["run_id"]


def big_run(store: Path, points: int = 4000) -> str:
    with amltrack.start_run("mlflow-resume", store=store, outputs=None, params={"n": points}) as lg:
        for i in range(points):
            lg.log("loss", 1.0 / (i + 1))
        lg.log("lr", [0.1] * 50)
        lg.upload("a.bin", os.urandom(50_000))
        lg.upload("b/c.txt", "c")
        return lg.run_id


def test_resume_after_a_kill_mid_push_sends_no_point_twice(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    rid = big_run(local)
    cursors = []
    # Writes of the first push: create, tags, params, 5 metrics batches (4, 5, ...), then artifacts.
    # The second push starts at the cursor: 3 batches, then artifacts (its 5th write).
    for kill in (5, 5):
        out = sync_killed(local, server.url, kill, **creds)
        assert out.returncode == -9, (kill, out.stdout, out.stderr)
        tags = server.tags(rid)
        assert tags["amltrack.sync.state"] == "in_progress" and tags["(status)"] == "RUNNING"
        cursors.append(int(tags["amltrack.sync.cursor"].split(":")[0]))
        assert not list((local / "runs" / rid / "sync").glob("*.json"))  # no complete push: no ledger
    size = (local / "runs" / rid / "metrics.jsonl").stat().st_size
    assert 0 < cursors[0] < cursors[1] == size  # each push went on from where the last one stopped

    out = cli("sync", "--store", str(local), "--to", server.url, "--json", **creds)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["pushed"] == 1

    (there,) = server.read(rid)[rid]
    want, _ = expected_metrics(amltrack.Store(local).run(rid))
    for key in want:
        assert same_history(there["metrics"][key], want[key]), key
    assert len(there["metrics"]["loss"]) == 4000
    assert there["status"] == "FINISHED" and there["tags"]["amltrack.sync.state"] == "complete"
    assert artifact(there, "a.bin") == (local / "runs" / rid / "artifacts" / "a.bin").read_bytes()


class Flaky(httpx.HTTPTransport):
    """Counts the metric points each log-batch sends; loses the answer to the chosen metrics batches,
    and can make one batch land without its cursor tag and then crash, as a client killed between
    MLflow's commit of the metrics and of the tags would leave it."""

    def __init__(self, lose: frozenset[int] = frozenset(), crash_at: int | None = None) -> None:
        super().__init__()
        self.lose, self.crash_at = lose, crash_at
        self.batches = 0
        self.points = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.url.path.endswith("/runs/log-batch") else {}
        if not body.get("metrics"):
            return super().handle_request(request)
        self.batches += 1
        self.points += len(body["metrics"])
        if self.batches == self.crash_at:
            body["tags"] = []
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            request = httpx.Request(request.method, request.url, headers=headers, json=body)
            super().handle_request(request).close()
            raise Crash
        response = super().handle_request(request)
        if self.batches in self.lose:
            response.close()
            raise httpx.ReadError("the answer was lost", request=request)
        return response


class Crash(BaseException):
    """The client process dying: nothing catches it."""


def test_a_batch_whose_fate_is_unknown_is_checked_before_it_is_sent_again(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    rid = big_run(local, points=1000)
    total = 1000 + 50
    store = amltrack.Store(local)
    first = Flaky(lose=frozenset({2, 4}), crash_at=7)
    with MlflowRemote(server.url, max_metrics=101, backoff=0.01, transport=first) as remote:
        with pytest.raises(Crash):
            remote.push_run(snapshot(store, rid), NullProgress())
    tags = server.tags(rid)
    lines = (local / "runs" / rid / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    assert tags["amltrack.sync.cursor"] == f"{sum(map(len, lines[:600]))}:0"  # after batch 6
    assert len(server.history(tags["(run_id)"], "loss")) == 700  # yet batch 7 landed

    second = Flaky()
    with MlflowRemote(server.url, max_metrics=101, backoff=0.01, transport=second) as remote:
        result = remote.push_run(snapshot(store, rid), NullProgress())
    assert result.writes > 0
    # Batches 2 and 4 were sent once: their retries found them on the server and sent no point.
    # Batch 7 was sent once: the next push found it on the server although the cursor was before it.
    assert first.points == 700 and first.points + second.points == total, (first.points, second.points)
    history = server.history(tags["(run_id)"], "loss")
    assert len(history) == 1000 and len({(m["step"], m["timestamp"]) for m in history}) == 1000


def test_names_outside_mlflows_characters_are_mapped_reversibly(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    names = ["loss@gpu0", "a//b", "/abs", "x:y", "..up", "val/../test", "acc (%)", "ключ", "🔥", "@" * 200]
    with amltrack.start_run(
        "mlflow names",
        store=local,
        outputs=None,
        params={"lr@stage1": 0.1, "a/b/": 1},
        tags={"mlflow.note.content": "not a note", "amltrack.run_id": "spoof", "team:a": "x"},
    ) as lg:
        for i, n in enumerate(names):
            lg.log(n, float(i))
        lg.upload("weird#name.txt", "w")
        rid = lg.run_id
    config = tmp_path / "config"
    env = {**creds, "AMLTRACK_CONFIG_DIR": str(config)}
    assert cli("remote", "add", "ml", server.url, **env).returncode == 0
    listed = json.loads(cli("remote", "list", "--json", **env).stdout)
    assert listed == [{"name": "ml", "url": server.url, "kind": "mlflow", "default": True, "token": False}]
    out = cli("sync", "--store", str(local), "--to", "ml", **env)
    assert out.returncode == 0, out.stdout + out.stderr

    (there,) = server.read(rid)[rid]
    names_json = json.loads(artifact(there, "amltrack/names.json"))
    keys = {mlflow_key(n): n for n in names}
    assert sorted(there["metrics"]) == sorted(keys)
    for key, name in keys.items():
        assert there["metrics"][key][0][2] == float(names.index(name))
        decoded = amltrack_name(key)
        assert decoded == name if "::" not in key else names_json["metrics"][key] == name
    long_key = mlflow_key("@" * 200)
    assert "::" in long_key and names_json["metrics"][long_key] == "@" * 200
    assert {"loss:40gpu0", "a:2F/b", ":2Fabs", "x:3Ay", ":2E.up", "val/:2E:2E/test", "acc :28:25:29"} <= set(
        keys
    )
    assert there["params"] == {"lr:40stage1": "0.1", "a/b:2F": "1"}
    assert (
        there["tags"][":6Dlflow.note.content"] == "not a note" and "mlflow.note.content" not in there["tags"]
    )
    assert there["tags"][":61mltrack.run_id"] == "spoof" and there["tags"]["amltrack.run_id"] == rid
    assert there["tags"]["team:3Aa"] == "x"
    assert names_json["tags"] == {
        ":6Dlflow.note.content": "mlflow.note.content",
        ":61mltrack.run_id": "amltrack.run_id",
        "team:3Aa": "team:a",
    }
    assert artifact(there, "weird:23name.txt") == b"w" and names_json["artifacts"] == {
        "weird:23name.txt": "weird#name.txt"
    }


def test_wrong_credentials_and_a_refused_host_say_what_to_do(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    rid = ended_run(local, "completed")
    for env, expected in (
        (
            {"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": "wrong"},
            "the password of user 'admin'",
        ),
        ({}, "the server asks for credentials; set MLFLOW_TRACKING_USERNAME"),
    ):
        out = cli("sync", "--store", str(local), "--to", server.url, **env)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        (line,) = [x for x in out.stdout.splitlines() if x.startswith("FAILED")]
        assert rid in line and "(401 " in line and expected in line, line
    assert server.tags(rid) == {}

    class OtherHost(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.headers["Host"] = "mlflow.example.org"
            return super().handle_request(request)

    other = ended_run(local, "completed")
    with MlflowRemote(server.url, transport=OtherHost()) as remote:
        report = sync(local, remote)
    first, second = report.runs  # every request carries the Host header: the sync stops at the first
    assert first.outcome == "failed" and "Host header 'mlflow.example.org'" in first.reason
    assert "--allowed-hosts" in first.reason
    assert second.outcome == "failed" and second.reason.startswith("not tried: "), second.reason
    assert {first.id, second.id} == {rid, other}


class Recorder(httpx.HTTPTransport):
    """Remembers the artifact paths uploaded."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.paths.append(unquote(request.url.path).split("/artifacts/", 2)[-1])
        return super().handle_request(request)


def test_a_running_run_is_pushed_in_parts(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    logger = amltrack.get_logger("mlflow-live", store=local, outputs=None)
    rid = logger.run_id
    try:
        for i in range(300):
            logger.log("loss", 1 / (i + 1))
        logger.upload("ckpt/1.txt", "one")
        logger.flush()
        first = sync(local, server.url, include_running=True)
        assert first.runs[0].outcome == "pushed" and server.tags(rid)["(status)"] == "RUNNING"
        for i in range(300, 500):
            logger.log("loss", 1 / (i + 1))
        logger.upload("ckpt/2.txt", "two")
        logger.flush()
        puts = Recorder()
        with MlflowRemote(server.url, transport=puts) as remote:
            second = sync(local, remote, include_running=True)
        assert second.runs[0].outcome == "pushed"
        # Only what changed is uploaded again: the metrics and the manifest grew, ckpt/2.txt is new.
        assert {"amltrack/metrics.jsonl", "amltrack/artifacts.jsonl", "ckpt/2.txt"} <= set(puts.paths)
        assert "ckpt/1.txt" not in puts.paths
    finally:
        logger.finish()
    final = sync(local, server.url, verify=True)
    assert final.ok and final.runs[0].outcome == "pushed" and final.runs[0].differences == []
    tags = server.tags(rid)
    assert tags["(status)"] == "FINISHED" and tags["amltrack.status"] == "completed"
    assert len(server.history(tags["(run_id)"], "loss")) == 500


def test_an_artifact_deleted_or_replaced_on_mlflow_is_sent_again(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    with amltrack.start_run("mlflow-repair", store=local, outputs=None) as lg:
        lg.log("loss", 0.5)
        for path, data in (("notes/x.txt", "x" * 100), ("model.bin", b"w" * 5000), ("keep.txt", "keep")):
            lg.upload(path, data)
        rid = lg.run_id
    run = amltrack.Store(local).run(rid)
    to = ("--store", str(local), "--to", server.url)
    assert cli("sync", *to, **creds).returncode == 0
    with server.client() as c:
        got = c.get("/api/2.0/mlflow/runs/get", params={"run_id": server.tags(rid)["(run_id)"]})
        root = (
            "/api/2.0/mlflow-artifacts/artifacts/"
            + got.json()["run"]["info"]["artifact_uri"].split(":/", 1)[1]
        )

    def tamper(*paths: str) -> None:
        with server.client() as c:
            for p in paths:
                if p == "model.bin":  # other bytes, and a size --verify can tell (MLflow keeps no hashes)
                    c.put(f"{root}/{p}", content=b"W" * 4000).raise_for_status()
                else:
                    c.delete(f"{root}/{p}").raise_for_status()
                    assert c.get(f"{root}/{p}").status_code == 404

    def assert_holds_the_run() -> None:
        with server.client() as c:
            for path in ("notes/x.txt", "model.bin", "keep.txt"):
                assert c.get(f"{root}/{path}").content == run.read_artifact(path), path

    def uploads(**kwargs: Any) -> list[str]:
        puts = Recorder()
        with MlflowRemote(server.url, transport=puts) as remote:
            report = sync(local, remote, **kwargs)
        assert report.ok and report.runs[0].outcome == "pushed", report
        return sorted(p for p in puts.paths if not p.startswith("amltrack/"))

    tamper("notes/x.txt", "model.bin")
    found = cli("sync", *to, "--verify", **creds)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "artifact notes/x.txt is missing on the remote" in found.stdout
    assert "artifact model.bin has 4000 bytes on the remote, 5000 here" in found.stdout
    assert uploads() == ["model.bin", "notes/x.txt"]  # what differs, and only that
    checked = cli("sync", *to, "--verify", **creds)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_holds_the_run()

    # Without --verify the ledger answers for the run; --all asks MLflow what the run holds.
    tamper("keep.txt")
    assert cli("sync", *to, **creds).stdout.startswith("nothing to send")
    dry = cli("sync", *to, "--all", "--dry-run", **creds)
    assert dry.stdout.startswith(f"would push  {rid}"), dry.stdout
    assert uploads(all_runs=True) == ["keep.txt"]
    assert cli("sync", *to, "--all", "--verify", **creds).returncode == 0
    assert_holds_the_run()


def test_a_file_replaced_after_the_listing_is_recorded_as_the_version_sent(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    from .test_sync_live import Meddles, first

    local = tmp_path / "local"
    logger = amltrack.get_logger("mlflow-replaced", store=local, outputs=None)
    try:
        logger.log("loss", 1.0)
        logger.upload("ckpt/latest.txt", "a" * 10)
        logger.flush()

        def replace() -> None:  # as the job's next checkpoint would, after the listing hashed "a"
            logger.upload("ckpt/latest.txt", "b" * 20)
            logger.flush()

        wire = Meddles(first(lambda r: r.url.path.endswith("/runs/log-batch")), replace)
        with MlflowRemote(server.url, transport=wire) as remote:
            assert sync(local, remote, include_running=True).ok
        assert wire.times == 1
        # Back to the content the first listing saw: MLflow holds the other one, so it must go again.
        logger.upload("ckpt/latest.txt", "a" * 10)
        logger.flush()
        again = sync(local, server.url, include_running=True, verify=True)
        assert again.ok and again.runs[0].differences == [], again.runs[0]
    finally:
        logger.finish()


def test_a_file_rewritten_in_place_under_its_upload_is_sent_again(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    from .test_sync_live import Meddles, first, rewrite_in_place

    local = tmp_path / "local"
    rid = make_run(local, records=10, artifacts={"ckpt/latest.bin": os.urandom(50_000)})
    path = local / "runs" / rid / "artifacts" / "ckpt" / "latest.bin"
    wire = Meddles(
        first(lambda r: r.method == "PUT" and r.url.path.endswith("/latest.bin")), rewrite_in_place(path)
    )
    with MlflowRemote(server.url, transport=wire) as remote:
        report = sync(local, remote, verify=True)
    assert report.ok and report.runs[0].differences == [], report.runs[0]
    # MLflow checks no hash: the client saw the file change under the upload, and sent it again.
    assert sum(r.startswith("PUT ") and r.endswith("/latest.bin") for r in wire.seen) == 2


# ----------------------------------------------------------------- without a server


def test_the_url_scheme_picks_the_mlflow_kind(tmp_path: Path) -> None:
    remotes = Remotes.load(tmp_path / "remotes.json")
    for url in ("mlflow+http://127.0.0.1:5000", "mlflow+https://mlflow.example.org/prefix/"):
        entry = remotes.resolve(url)
        assert entry.kind == "mlflow" and entry.url == url.rstrip("/")
        with open_remote(entry) as remote:
            assert isinstance(remote, MlflowRemote) and remote.base == url[len("mlflow+") :].rstrip("/")
    assert remotes.resolve("http://127.0.0.1:8765").kind == "amltrack"
    assert remotes.add("ml", "mlflow+http://h:5000").kind == "mlflow"
    remotes.save()
    assert Remotes.load(tmp_path / "remotes.json").get("ml").kind == "mlflow"


def test_credentials_follow_mlflows_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"experiment": {"experiment_id": "1", "lifecycle_stage": "active"}})

    def auth(**env: str) -> str | None:
        for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        with MlflowRemote(
            "mlflow+http://h:1", token="remote-token", transport=httpx.MockTransport(answer)
        ) as r:
            r._experiment("e", create=False)
        return seen[-1]

    basic = "Basic " + base64.b64encode(b"u:p").decode()
    assert (
        auth(MLFLOW_TRACKING_USERNAME="u", MLFLOW_TRACKING_PASSWORD="p", MLFLOW_TRACKING_TOKEN="t") == basic
    )
    assert auth(MLFLOW_TRACKING_TOKEN="t") == "Bearer t"
    assert auth() == "Bearer remote-token"
    monkeypatch.setenv("AMLTRACK_TOKEN", "for-amltrack-servers-only")
    assert auth() == "Bearer remote-token"


class FakeMlflow:
    """Just enough of MLflow's REST API for one push of a new run, keeping every JSON body sent.

    MLflow's SQL store keeps an infinity as the largest double, whatever was sent, so only the
    request itself shows whether "Infinity" went out; hence a fake server here.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        endpoint = request.url.path.rsplit("/mlflow/", 1)[-1]
        if request.method == "PUT":
            return httpx.Response(200, json={})
        if endpoint == "experiments/get-by-name":
            return httpx.Response(
                200, json={"experiment": {"experiment_id": "1", "lifecycle_stage": "active"}}
            )
        assert request.method == "POST", request.url
        # Python's json reads 1.0 as a float and 1 as an int, and a bare NaN token as a float.
        self.sent.append((endpoint, json.loads(request.content)))
        if endpoint == "runs/search":
            return httpx.Response(200, json={"runs": []})
        if endpoint == "runs/create":
            info = {"run_id": "r1", "experiment_id": "1", "artifact_uri": "mlflow-artifacts:/1/r1/artifacts"}
            return httpx.Response(200, json={"run": {"info": info, "data": {}}})
        return httpx.Response(200, json={})


def test_nan_and_infinities_go_out_as_strings_and_times_and_steps_as_integers(tmp_path: Path) -> None:
    local = tmp_path / "local"
    nan, inf = float("nan"), float("inf")
    with amltrack.start_run("mlflow-wire", store=local, outputs=None) as lg:
        for i, v in enumerate((0.5, nan, inf, -inf, 3, True)):
            lg.log("v", v, step=i * 10)
        lg.log("list", [1, nan, inf, -inf])
        rid = lg.run_id
    fake = FakeMlflow()
    with MlflowRemote("mlflow+http://mlflow.test:5000", transport=httpx.MockTransport(fake)) as remote:
        remote.push_run(snapshot(amltrack.Store(local), rid), NullProgress())

    run = amltrack.Store(local).run(rid)
    ms = sorted({to_ms(json.loads(x)["ts"]) for x in (run.dir / "metrics.jsonl").read_bytes().splitlines()})
    points = [
        m for endpoint, body in fake.sent if endpoint == "runs/log-batch" for m in body.get("metrics", [])
    ]
    assert [(m["key"], m["step"], m["value"]) for m in points] == [
        ("v", 0, 0.5), ("v", 10, "NaN"), ("v", 20, "Infinity"), ("v", 30, "-Infinity"), ("v", 40, 3.0),
        ("v", 50, 1.0), ("list", 0, 1.0), ("list", 1, "NaN"), ("list", 2, "Infinity"), ("list", 3, "-Infinity"),
    ]  # fmt: skip
    assert all(type(m["value"]) in (float, str) for m in points)
    assert all(type(m["step"]) is int and type(m["timestamp"]) is int for m in points)
    assert sorted({m["timestamp"] for m in points}) == ms
    (created,) = [body for endpoint, body in fake.sent if endpoint == "runs/create"]
    (updated,) = [body for endpoint, body in fake.sent if endpoint == "runs/update"]
    assert type(created["start_time"]) is int and created["start_time"] == to_ms(run.info["created_ts"])
    assert type(updated["end_time"]) is int and updated["end_time"] == to_ms(run.info["ended_ts"])


MLFLOW_KEY = re.compile(r"^[/\w.\- :]*$")  # mlflow/utils/validation.py: validate_param_and_metric_name


def mlflow_accepts(key: str) -> bool:
    """MLflow's own checks of a metric, param or tag key (mlflow/utils/validation.py)."""
    norm = posixpath.normpath(key)
    unique = norm == key and norm != "." and not norm.startswith("..") and not norm.startswith("/")
    return bool(MLFLOW_KEY.match(key)) and unique and len(key) <= 250


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=255))
def test_every_name_maps_to_a_key_mlflow_accepts_and_back(name: str) -> None:
    for reserved in ((), ("mlflow.", "amltrack.")):
        key = mlflow_key(name, reserved=reserved)
        assert mlflow_accepts(key), (name, key)
        if reserved:
            assert not key.startswith(reserved)
        if "::" not in key:  # else cut to MLflow's limit: amltrack/names.json has the name
            assert amltrack_name(key) == name
    path_key = mlflow_path(name)
    assert "#" not in path_key and "%" not in path_key and amltrack_name(path_key) == name


def test_names_mlflow_accepts_are_kept() -> None:
    for name in ("loss", "train/loss", "val acc", "a-b_c.d", "ключ", "a/.../b", "x..y"):
        assert mlflow_key(name) == name


def test_a_503_from_mlflow_is_retried_after_growing_jittered_pauses() -> None:
    # A 503 cannot be had from a real MLflow server on demand; a transport gives two, then an answer.
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) <= 2:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json={"experiment": {"experiment_id": "7", "lifecycle_stage": "active"}})

    pauses: list[float] = []
    with MlflowRemote("mlflow+http://h:1", transport=httpx.MockTransport(answer), backoff=0.1) as r:
        r._http.sleep = pauses.append
        r._experiment("e", create=False)
        assert len(calls) == 3 and len(pauses) == 2
        assert (
            0.05 <= pauses[0] <= 0.1 and 0.15 <= pauses[1] <= 0.3
        )  # equal jitter: the upper half of each step
        samples = {r.delay(1) for _ in range(20)}
        assert len(samples) > 1 and all(0.15 <= d <= 0.3 for d in samples)  # not one fixed pause


def test_a_run_json_holding_a_secret_is_not_sent_unless_allowed(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    rid = ended_run(local, "completed")
    path = local / "runs" / rid / "run.json"
    info = json.loads(path.read_text())
    info["params"]["api_key"] = "k-123"  # as an older amltrack, or a hand, left it
    path.write_text(json.dumps(info))

    for extra in (("--dry-run",), ()):
        out = cli("sync", "--store", str(local), "--to", server.url, "--json", *extra, **creds)
        assert out.returncode == 1, out.stderr
        (run,) = json.loads(out.stdout)["runs"]
        assert run["outcome"] == "failed" and "(params: 1)" in run["reason"] and "k-123" not in out.stdout
    assert server.tags(rid) == {}

    out = cli("sync", "--store", str(local), "--to", server.url, "--allow-secrets", **creds)
    assert out.returncode == 0, out.stdout + out.stderr
    (there,) = server.read(rid)[rid]
    assert there["params"]["api_key"] == "k-123"
