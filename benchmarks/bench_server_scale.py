"""Many clients pushing at once to the team server (two replicas over one PostgreSQL and one S3
server), to the embedded file-store server, and to MLflow's tracking server on the same PostgreSQL
and S3: points per second, artifact MB/s, and the time of a request (issue 21).

    python benchmarks/bench_server_scale.py                 # 20 clients x 10 runs x 100,000 points, 20 MB
    python benchmarks/bench_server_scale.py --quick         # 20 clients x 2 runs x 20,000 points, 5 MB
    python benchmarks/bench_server_scale.py --smoke --json  # tiny, no MLflow: run by the test suite
    python benchmarks/bench_server_scale.py --backends team,mlflow --clients 10 --points 50000

The workload. Each of --clients client stores holds --runs runs of --points points of one metric,
made once by the real logger, and one more store holds a run with a random --artifact-mb MB
artifact. For each backend, two phases: every client pushes its runs at once, then every client
pushes its artifact run at once. A client is a process of its own running `amltrack sync --to URL
--json` (the CLI's own `main`), which imports the CLI and the sync first and then waits for a start
signal given to all at once, as MLflow's clients below do: a phase's time runs from that signal to
the last client's end, so 20 interpreters starting on two cores count on neither side. Points per
second is all points over the first phase's time; MB/s is all artifact bytes over the second's.
The clients' ledgers are cleared between backends, so every push is real, and after the two phases
the server (the last replica) must list every run and hold every point of one run.

The backends.
- team: two `amltrack server --database URL --objects s3://BUCKET/team --objects-endpoint URL`
  replicas on this machine, over a database this script creates on the PostgreSQL at 127.0.0.1:5432
  (trust authentication) and drops after, and a bucket on one `python -m moto.server` process.
- embedded: one `amltrack server --store DIR` process.
- mlflow: `mlflow server --workers 2` (as many processes as the team's replicas) from a virtualenv of
  its own (--mlflow-python; made on first use with mlflow==3.17.2, psycopg2-binary and boto3), on a
  database of its own on the same PostgreSQL, with --artifacts-destination in the same S3 server.
  Each client process logs the same points with `MlflowClient.log_batch`, 1,000 metrics a batch
  (MLflow's limit for one request), then its artifact with `log_artifact`. Past --mlflow-seconds a
  client stops logging and the points it sent are counted, so that a slow server cannot hold the
  benchmark for an hour: its points per second are those it sent over the time it took.

The load balancer and the request times. Every client talks to one URL: `timing_proxy.py` beside
this script, a small asyncio reverse proxy that sends each request to the next replica in turn
(round-robin per request, no sticky sessions; one upstream for the embedded and MLflow servers).
It logs each request's time from its first byte in to the last byte out, as nginx's $request_time,
and the p50 and p99 reported are over those lines: no code is added to either server. The proxy is
one Python process on the same two cores, so it costs the backends some CPU (its CPU time is
reported); every backend pays it alike.

Everything (clients, replicas, PostgreSQL, S3, proxy) shares this machine's cores, and other work
on it shows in every figure: compare backends within one run of this script, not across runs.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
from bench_sync import ONE_ARTIFACT, forget_pushes

HERE = Path(__file__).resolve().parent
PROXY = HERE / "timing_proxy.py"
MB = 1_000_000
TOKEN = "bench-scale-write-token-0123456789abcdef"
PG_HOST = "127.0.0.1:5432"
MLFLOW_PACKAGES = ["mlflow==3.17.2", "psycopg2-binary", "boto3"]
DEFAULT_MLFLOW_PYTHON = (
    Path.home() / ".cache" / "amltrack-bench" / "venvs" / "mlflow-scale" / "bin" / "python"
)
AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SIZES = {  # clients, runs per client, points per run, artifact MB per client
    "full": (20, 10, 100_000, 20),
    "quick": (20, 2, 20_000, 5),
    "smoke": (2, 2, 300, 1),
}

MAKE_RUNS = textwrap.dedent("""
    import sys
    import amltrack
    runs, points, store = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    for r in range(runs):
        with amltrack.start_run("bench-scale", store=store, outputs=None, params={"r": r}) as lg:
            log = lg.log
            for i in range(points):
                log("loss", 1.0 / (i + 1))
""")

# `python -m amltrack sync ...` but for the start signal: the CLI and the sync's modules are imported
# first, as MLflow's clients import mlflow first, so that neither side's time holds its start-up.
AMLTRACK_CLIENT = textwrap.dedent("""
    import os, sys, time
    import amltrack.sync._amltrack
    from amltrack.cli import main

    ready, go = sys.argv[1:3]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    code = main(sys.argv[3:])
    sys.stdout.flush()
    print(f"\\nend {time.time()!r}")
    sys.exit(code)
""")

# Run by MLflow's interpreter: the same points as MAKE_RUNS, through MlflowClient.log_batch.
MLFLOW_CLIENT = textwrap.dedent("""
    import json, os, sys, time
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    ready, go, url, exp, phase, client_no, runs, points, art, budget = sys.argv[1:]
    runs, points, budget = int(runs), int(points), float(budget)
    client = MlflowClient(tracking_uri=url)
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    sent = 0
    if phase == "metrics":
        stop = time.monotonic() + budget
        for r in range(runs):
            run_id = client.create_run(exp, run_name=f"c{client_no}-r{r}").info.run_id
            for b in range(0, points, 1000):
                ts = int(time.time() * 1000)
                batch = [Metric("loss", 1.0 / (i + 1), ts, i) for i in range(b, min(points, b + 1000))]
                client.log_batch(run_id, metrics=batch)
                sent += len(batch)
                if time.monotonic() > stop:
                    break
            client.set_terminated(run_id)
            if time.monotonic() > stop:
                break
    else:
        run_id = client.create_run(exp, run_name=f"c{client_no}-artifact").info.run_id
        client.log_artifact(run_id, art, "model")
        client.set_terminated(run_id)
        sent = os.path.getsize(art)
    print(json.dumps({"sent": sent}))
    print(f"end {time.time()!r}")
""")


def log(msg: str) -> None:
    print(f"[bench_server_scale] {msg}", file=sys.stderr, flush=True)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLTRACK_", "AWS_", "MLFLOW_"))}
    env.update(extra)
    return env


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (MLflow's workers)."""
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def database_cpu(url: str) -> Callable[[], float]:
    """CPU seconds so far of PostgreSQL's backends serving the database of ``url``: one a connection,
    and a connection closed meanwhile takes its time along, so this is a floor. The replicas keep
    theirs open in a pool, so for them it is close."""
    name = url.rsplit("/", 1)[1]

    def cpu() -> float:
        total = 0.0
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(name in part for part in p.info["cmdline"] or ()):
                    t = p.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                pass
        return total

    return cpu


def cpu_deltas(meters: dict[str, Callable[[], float]], before: dict[str, float]) -> dict[str, float]:
    return {k: meters[k]() - v for k, v in before.items()}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A server process whose stderr goes to ``log``; ``url`` once ``pattern`` shows up there."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str], pattern: str, timeout: float = 120):
        self.log = log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=f, env=env)
        self.url = ""
        deadline = time.monotonic() + timeout
        while not self.url:
            m = re.search(pattern, log.read_text(errors="replace"))
            if m:
                self.url = m.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{cmd[:4]} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            else:
                time.sleep(0.05)

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
                self.proc.kill()
                self.proc.wait(30)


def start_proxy(upstreams: list[str], tmp: Path, name: str) -> tuple[Process, Path]:
    requests = tmp / f"{name}.requests.tsv"
    cmd = [sys.executable, str(PROXY), "--log", str(requests)]
    for u in upstreams:
        cmd += ["--upstream", u]
    return Process(cmd, tmp / f"{name}.proxy.log", child_env(), r"proxy on (http://\S+)"), requests


def percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def request_figures(path: Path, n_upstreams: int) -> dict[str, Any]:
    """p50, p99 and max of the proxy's request times in ms, the count, the answers by status and the
    requests each upstream (replica) took."""
    times: list[float] = []
    statuses: dict[str, int] = {}
    upstreams: dict[str, int] = {}
    for line in path.read_text().splitlines():
        seconds, _method, _path, status, _sent, _got, upstream = line.split("\t")
        times.append(float(seconds) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
        upstreams[upstream] = upstreams.get(upstream, 0) + 1
    times.sort()
    return {
        "requests": len(times),
        "p50_ms": percentile(times, 0.50),
        "p99_ms": percentile(times, 0.99),
        "max_ms": times[-1] if times else float("nan"),
        "statuses": statuses,
        "per_upstream": [upstreams.get(str(i), 0) for i in range(n_upstreams)],
    }


# ------------------------------------------------------------------ PostgreSQL and S3


def pg_user() -> str:
    import psycopg

    for user in ("postgres", getpass.getuser()):
        try:
            with psycopg.connect(f"postgresql://{user}@{PG_HOST}/test", connect_timeout=5):
                return user
        except psycopg.OperationalError:
            continue
    raise RuntimeError(f"no PostgreSQL at {PG_HOST} that postgres or {getpass.getuser()} may use")


class Databases:
    """Databases made on the PostgreSQL at 127.0.0.1:5432 for this run, all dropped by ``drop_all``."""

    def __init__(self) -> None:
        self.user = pg_user()
        self.names: list[str] = []

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(f"postgresql://{self.user}@{PG_HOST}/test", autocommit=True)

    def create(self, purpose: str) -> str:
        from psycopg import sql

        name = f"amltrack_bench_{purpose}_{os.getpid()}_{secrets.token_hex(3)}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.names.append(name)
        return f"postgresql://{self.user}@{PG_HOST}/{name}"

    def drop_all(self) -> None:
        from psycopg import sql

        with self._admin() as conn:
            for name in self.names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def start_moto(tmp: Path) -> tuple[Process, Any]:
    import boto3

    port = free_port()
    proc = Process(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        tmp / "moto.log",
        child_env(**AWS),
        r"Running on (http://127\.0\.0\.1:\d+)",
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=proc.url,
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS["AWS_REGION"],
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            s3.list_buckets()
            return proc, s3
        except Exception:
            if time.monotonic() > deadline:
                proc.stop()
                raise
            time.sleep(0.1)


def team_missing() -> str | None:
    """Why the team backend cannot run here, or None."""
    for module in ("psycopg", "psycopg_pool", "boto3", "moto"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[test]')"
    try:
        pg_user()
    except Exception as e:
        return str(e).splitlines()[0]
    help_text = subprocess.run(
        [sys.executable, "-m", "amltrack", "server", "--help"],
        capture_output=True,
        text=True,
        env=child_env(),
    ).stdout
    if "--objects" not in help_text:
        return "this amltrack's server has no --objects (the replicated backend is not built yet)"
    return None


def mlflow_missing(python: Path, smoke: bool) -> str | None:
    try:
        pg_user()
        __import__("moto")
    except Exception as e:
        return str(e).splitlines()[0]
    marker = python.parent.parent / "amltrack-bench.json"
    if python.exists() and (not marker.exists() or json.loads(marker.read_text()) == MLFLOW_PACKAGES):
        return None
    if smoke:
        return f"no MLflow at {python} (--smoke installs nothing)"
    venv = python.parent.parent
    log(f"installing {' '.join(MLFLOW_PACKAGES)} into {venv} (once; a few minutes) ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *MLFLOW_PACKAGES],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        return f"pip install failed: {r.stderr.strip().splitlines()[-1:]}"
    marker.write_text(json.dumps(MLFLOW_PACKAGES))
    return None


# ------------------------------------------------------------------ the workload


def make_stores(
    tmp: Path, clients: int, runs: int, points: int, artifact_mb: float
) -> list[tuple[Path, Path]]:
    """Each client's two stores (its runs, its artifact run), made by the real logger, two at a time."""
    stores = [(tmp / f"client{c}" / "runs", tmp / f"client{c}" / "artifact") for c in range(clients)]
    jobs = []
    for c, (runs_store, art_store) in enumerate(stores):
        jobs.append([sys.executable, "-c", MAKE_RUNS, str(runs), str(points), str(runs_store)])
        scratch = tmp / f"client{c}" / "weights.bin"
        scratch.parent.mkdir(parents=True)
        jobs.append(
            [sys.executable, "-c", ONE_ARTIFACT, str(int(artifact_mb * MB)), str(art_store), str(scratch)]
        )
    started: list[subprocess.Popen] = []
    width = os.cpu_count() or 2
    for job in jobs:
        while sum(p.poll() is None for p in started) >= width:
            time.sleep(0.05)
        started.append(subprocess.Popen(job, env=child_env()))
    for job, p in zip(jobs, started):
        if p.wait():
            raise RuntimeError(f"making the client stores failed ({' '.join(job[3:])})")
    return stores


def race(cmds: list[list[str]], env: dict[str, str], tmp: Path, phase: str) -> tuple[float, list[str]]:
    """Start every client, wait until each is ready, let them all go at once: the seconds from the
    start signal to the last one's end (each prints ``end TIMESTAMP`` last), and their outputs."""
    gate = tmp / f"{phase}.gate"
    gate.mkdir()
    outs = [open(tmp / f"{phase}.client{c}.out", "w+") for c in range(len(cmds))]
    procs = [
        subprocess.Popen(
            [*cmd[:3], str(gate / f"ready{c}"), str(gate / "go"), *cmd[3:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        for c, (cmd, out) in enumerate(zip(cmds, outs))
    ]
    try:
        deadline = time.monotonic() + 600
        while not all((gate / f"ready{c}").exists() for c in range(len(cmds))):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the clients of {phase} did not all get ready")
            time.sleep(0.05)
        go = time.time()
        (gate / "go").touch()
        for p in procs:
            p.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts, end = [], go
    for c, (p, out) in enumerate(zip(procs, outs)):
        out.seek(0)
        text = out.read()
        out.close()
        if p.returncode:
            raise RuntimeError(f"client {c} of {phase} exited with {p.returncode}:\n{text[-3000:]}")
        lines = text.splitlines()
        ends = [i for i, ln in enumerate(lines) if ln.startswith("end ")]
        if not ends:
            raise RuntimeError(f"client {c} of {phase} did not say when it ended:\n{text[-3000:]}")
        end = max(end, float(lines[ends[-1]].removeprefix("end ")))
        texts.append("\n".join(lines[: ends[-1]] + lines[ends[-1] + 1 :]))
    return end - go, texts


def push_all(url: str, stores: list[Path], env: dict[str, str], tmp: Path, phase: str, expect: int) -> float:
    """Every store pushed at once by its own `amltrack sync` process; the seconds they took."""
    cmds = [
        [sys.executable, "-c", AMLTRACK_CLIENT, "sync", "--store", str(store), "--to", url, "--json"]
        for store in stores
    ]
    dt, outputs = race(cmds, env, tmp, phase)
    for c, text in enumerate(outputs):
        pushed = json.loads(text)["counts"]["pushed"]
        if pushed != expect:
            raise RuntimeError(f"client {c} of {phase} pushed {pushed} runs, not {expect}:\n{text[-3000:]}")
    return dt


def measure(
    name: str,
    upstreams: list[str],
    meters: dict[str, Callable[[], float]],
    env: dict[str, str],
    a: argparse.Namespace,
    w: dict,
) -> dict[str, Any]:
    """The two phases against ``upstreams`` through a fresh proxy each."""
    res: dict[str, Any] = {"processes": len(upstreams)}
    for phase, stores, expect in (("metrics", w["runs"], a.runs), ("artifact", w["artifacts"], 1)):
        for store in stores:
            forget_pushes(str(store))
        proxy, requests = start_proxy(upstreams, w["tmp"], f"{name}.{phase}")
        meters = {**meters, "proxy": proxy.cpu}
        before = {k: m() for k, m in meters.items()}
        try:
            dt = push_all(proxy.url, stores, env, w["tmp"], f"{name}.{phase}", expect)
            cpu = cpu_deltas(meters, before)
        finally:
            proxy.stop()
        res[phase] = {"wall_s": dt, "cpu_s": cpu, **request_figures(requests, len(upstreams))}
        log(f"{name} {phase}: {dt:.1f} s")
    check_served(upstreams[-1], env, a, w)
    res["points_per_s"] = a.clients * a.runs * a.points / res["metrics"]["wall_s"]
    res["artifact_mb_per_s"] = a.clients * a.artifact_mb / res["artifact"]["wall_s"]
    return res


def check_served(url: str, env: dict[str, str], a: argparse.Namespace, w: dict) -> None:
    """Every run is listed by the server (the last replica, whichever took the pushes), and one run
    holds every point: a fast figure for a push that lost something would be worthless."""

    def cli(*args: str) -> Any:
        out = subprocess.run(
            [sys.executable, "-m", "amltrack", *args], capture_output=True, text=True, env=env
        )
        if out.returncode:
            raise RuntimeError(f"amltrack {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return json.loads(out.stdout)

    listed = cli("history", "list", "--remote", url, "--limit", "0", "--json")
    if len(listed) != a.clients * (a.runs + 1):
        raise RuntimeError(f"{url} lists {len(listed)} runs, not {a.clients * (a.runs + 1)}")
    rid = sorted(os.listdir(w["runs"][0] / "runs"))[0]
    count = cli("history", "info", "-r", rid, "--remote", url, "--json")["metrics"]["loss"]["count"]
    if count != a.points:
        raise RuntimeError(f"run {rid} on {url} holds {count} points, not {a.points}")


def run_embedded(a: argparse.Namespace, w: dict) -> dict[str, Any]:
    server = Process(
        [sys.executable, "-m", "amltrack", "server", "--store", str(w["tmp"] / "served"), "--port", "0"],
        w["tmp"] / "embedded.log",
        child_env(AMLTRACK_SERVER_TOKENS=f"write:{TOKEN}"),
        r"on (http://127\.0\.0\.1:\d+)",
    )
    try:
        env = child_env(AMLTRACK_TOKEN=TOKEN, AMLTRACK_CONFIG_DIR=str(w["tmp"] / "config"))
        return measure("embedded", [server.url], {"server": server.cpu}, env, a, w)
    finally:
        server.stop()
        shutil.rmtree(w["tmp"] / "served", ignore_errors=True)


def run_team(a: argparse.Namespace, w: dict) -> dict[str, Any]:
    url = w["db"].create("team")
    w["s3"].create_bucket(Bucket="bench-team")
    made = subprocess.run(
        [sys.executable, "-m", "amltrack", "server", "token", "create", "--database", url]
        + ["--scope", "write", "--name", "bench", "--json"],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    if made.returncode:
        raise RuntimeError(f"token create failed: {made.stderr}")
    token = json.loads(made.stdout)["token"]
    cmd = [sys.executable, "-m", "amltrack", "server", "--database", url, "--objects", "s3://bench-team/team"]
    cmd += ["--objects-endpoint", w["moto"].url, "--port", "0"]
    replicas: list[Process] = []
    try:
        for i in range(a.replicas):
            # A replica keeps a copy of the runs for its web UI in a temporary folder, which it leaves
            # behind when SIGTERM stops it (uvicorn raises the signal again once it has shut down):
            # inside this script's folder, it goes with it.
            scratch = w["tmp"] / f"team{i}.tmp"
            scratch.mkdir()
            env = child_env(TMPDIR=str(scratch), **AWS)
            replicas.append(Process(cmd, w["tmp"] / f"team{i}.log", env, r"on (http://127\.0\.0\.1:\d+)"))
        env = child_env(AMLTRACK_TOKEN=token, AMLTRACK_CONFIG_DIR=str(w["tmp"] / "config"))
        meters = {
            "server": lambda: sum(r.cpu() for r in replicas),
            "postgres": database_cpu(url),
            "s3": w["moto"].cpu,
        }
        return measure("team", [r.url for r in replicas], meters, env, a, w)
    finally:
        for r in replicas:
            r.stop()


def run_mlflow(a: argparse.Namespace, w: dict) -> dict[str, Any]:
    # The driver named: MLflow's SQLAlchemy would otherwise ask for psycopg 3, which its venv lacks.
    url = w["db"].create("mlflow").replace("postgresql://", "postgresql+psycopg2://", 1)
    w["s3"].create_bucket(Bucket="bench-mlflow")
    port = free_port()
    env = child_env(
        MLFLOW_S3_ENDPOINT_URL=w["moto"].url,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        **AWS,
    )
    cmd = [str(a.mlflow_python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", url, "--artifacts-destination", "s3://bench-mlflow/mlflow"]
    cmd += ["--workers", str(a.replicas)]
    log("starting MLflow's server (its first start migrates its schema: a minute or so) ...")
    server = Process(
        cmd, w["tmp"] / "mlflow.log", env, r"(Uvicorn running|Application startup complete)", 600
    )
    server.url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(server.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.proc.poll() is not None:
                raise RuntimeError(
                    f"MLflow did not come up:\n{(w['tmp'] / 'mlflow.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        exp = httpx.post(
            server.url + "/api/2.0/mlflow/experiments/create", json={"name": "bench-scale"}, timeout=60
        ).json()["experiment_id"]
        res: dict[str, Any] = {"processes": a.replicas}
        for phase in ("metrics", "artifact"):
            proxy, requests = start_proxy([server.url], w["tmp"], f"mlflow.{phase}")
            try:
                # No PostgreSQL figure: MLflow's connections come and go, and a closed one's CPU time
                # cannot be counted any more (the figure came out negative).
                meters = {"server": server.cpu, "s3": w["moto"].cpu, "proxy": proxy.cpu}
                res[phase] = mlflow_phase(a, w, proxy.url, exp, phase, meters)
            finally:
                proxy.stop()
            res[phase].update(request_figures(requests, 1))
            log(f"mlflow {phase}: {res[phase]['wall_s']:.1f} s")
        res["points_per_s"] = res["metrics"]["sent"] / res["metrics"]["wall_s"]
        res["points_sent"] = res["metrics"].pop("sent")
        res["artifact_mb_per_s"] = res["artifact"].pop("sent") / MB / res["artifact"]["wall_s"]
        return res
    finally:
        server.stop()


def mlflow_phase(
    a: argparse.Namespace, w: dict, url: str, exp: str, phase: str, meters: dict[str, Callable[[], float]]
) -> dict[str, Any]:
    cmds = []
    for c in range(a.clients):
        art = w["tmp"] / f"client{c}" / "mlflow-weights.bin"
        if phase == "artifact" and not art.exists():
            with open(art, "wb") as f:
                f.write(os.urandom(int(a.artifact_mb * MB)))
        args = [url, exp, phase, str(c), str(a.runs), str(a.points), str(art), str(a.mlflow_seconds)]
        cmds.append([str(a.mlflow_python), "-c", MLFLOW_CLIENT, *args])
    before = {k: m() for k, m in meters.items()}
    env = child_env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    dt, outputs = race(cmds, env, w["tmp"], f"mlflow.{phase}")
    # MLflow prints lines of its own ("View run ... at"): the report is the line that is JSON.
    sent = sum(
        json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])["sent"] for text in outputs
    )
    return {"wall_s": dt, "sent": sent, "cpu_s": cpu_deltas(meters, before)}


BACKENDS = {"team": run_team, "embedded": run_embedded, "mlflow": run_mlflow}


def cpu_line(r: dict[str, Any], sep: str) -> str:
    """The CPU seconds of both phases, per part; '-' for a part the backend does not have."""

    def total(part: str) -> str:
        if part not in r["metrics"]["cpu_s"]:
            return "-"
        return f"{r['metrics']['cpu_s'][part] + r['artifact']['cpu_s'][part]:.1f}"

    return sep.join(total(part) for part in ("server", "postgres", "s3", "proxy"))


def table(result: dict[str, Any]) -> str:
    s = result["sizes"]
    lines = [
        f"{s['clients']} clients x {s['runs']} runs x {s['points']:,} points, and {s['artifact_mb']:g} MB "
        f"artifact per client; load average {result['load'][0]:.1f} before, {result['load'][1]:.1f} after",
        f"{'backend':10} {'procs':>5} {'points/s':>11} {'metrics s':>9} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'MB/s':>6} {'artif. s':>8} {'p50 ms':>7} {'p99 ms':>8}  CPU s: server, PostgreSQL, S3, proxy",
    ]
    for name in BACKENDS:
        r = result["backends"].get(name)
        if r is None:
            continue
        if "skipped" in r:
            lines.append(f"{name:10} skipped: {r['skipped']}")
            continue
        m, art = r["metrics"], r["artifact"]
        lines.append(
            f"{name:10} {r['processes']:>5} {r['points_per_s']:>11,.0f} {m['wall_s']:>9.1f} {m['p50_ms']:>7.1f} "
            f"{m['p99_ms']:>8.1f} {r['artifact_mb_per_s']:>6.1f} {art['wall_s']:>8.1f} {art['p50_ms']:>7.1f} "
            f"{art['p99_ms']:>8.1f}  {cpu_line(r, ', ')}"
        )
    if "points_sent" in result["backends"].get("mlflow", {}):
        ml = result["backends"]["mlflow"]
        total = s["clients"] * s["runs"] * s["points"]
        if ml["points_sent"] < total:
            lines.append(f"(mlflow sent {ml['points_sent']:,} of {total:,} points within --mlflow-seconds)")
    for name, ratio in result["ratios"].items():
        lines.append(f"points/s {name}: {ratio:.1f}x")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    import platform

    s = result["sizes"]
    lines = [
        f"Measured {result.get('date', '?')} on {platform.machine()} ({os.cpu_count()} cores, shared with "
        f"other work: load average {result['load'][0]:.1f} before, {result['load'][1]:.1f} after); "
        f"{s['clients']} clients x {s['runs']} runs x {s['points']:,} points, and a {s['artifact_mb']:g} MB "
        "artifact per client; request times at the benchmark's proxy.",
        "",
        "| backend | processes | points/s | p50 / p99 of a request, pushing runs | artifact MB/s "
        "| p50 / p99, pushing artifacts | CPU: server + PostgreSQL + S3 + proxy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in BACKENDS:
        r = result["backends"].get(name)
        if r is None or "skipped" in r:
            continue
        m, art = r["metrics"], r["artifact"]
        lines.append(
            f"| {name} | {r['processes']} | {r['points_per_s']:,.0f} | {m['p50_ms']:,.0f} / {m['p99_ms']:,.0f} ms "
            f"| {r['artifact_mb_per_s']:.1f} | {art['p50_ms']:,.0f} / {art['p99_ms']:,.0f} ms "
            f"| {cpu_line(r, ' + ')} s |"
        )
    lines.append("")
    for name, ratio in result["ratios"].items():
        lines.append(f"Points per second, {name}: {ratio:.1f}x.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, no MLflow: for the test suite")
    ap.add_argument("--quick", action="store_true", help="20 clients x 2 runs x 20,000 points, 5 MB")
    ap.add_argument("--clients", type=int, help="concurrent client processes (default 20)")
    ap.add_argument("--runs", type=int, help="runs per client (default 10)")
    ap.add_argument("--points", type=int, help="points per run (default 100,000)")
    ap.add_argument("--artifact-mb", type=float, help="artifact per client, MB (default 20)")
    ap.add_argument(
        "--replicas", type=int, default=2, help="team replicas, and MLflow's --workers (default 2)"
    )
    ap.add_argument(
        "--backends",
        default=None,
        help="comma-separated, of team, embedded, mlflow (default all; --smoke: team,embedded)",
    )
    ap.add_argument("--mlflow-python", type=Path, default=DEFAULT_MLFLOW_PYTHON, help="(default %(default)s)")
    ap.add_argument(
        "--mlflow-seconds",
        type=float,
        default=600,
        help="stop MLflow's clients after this long (default 600)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table for the docs")
    ap.add_argument(
        "--show", metavar="FILE", type=Path, help="print the table of a --json output; run nothing"
    )
    a = ap.parse_args()
    if a.show:
        shown = json.loads(a.show.read_text())
        print(markdown(shown) if a.markdown else table(shown))
        return
    size = SIZES["smoke" if a.smoke else "quick" if a.quick else "full"]
    for attr, default in zip(("clients", "runs", "points", "artifact_mb"), size):
        if getattr(a, attr) is None:
            setattr(a, attr, default)
    names = (a.backends or ("team,embedded" if a.smoke else "team,embedded,mlflow")).split(",")
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        ap.error(f"unknown backend {unknown[0]!r}: pick from {', '.join(BACKENDS)}")
    result: dict[str, Any] = {
        "sizes": {"clients": a.clients, "runs": a.runs, "points": a.points, "artifact_mb": a.artifact_mb},
        "backends": {},
        "load": [os.getloadavg()[0]],
    }
    missing = {
        "team": team_missing() if "team" in names else None,
        "mlflow": mlflow_missing(a.mlflow_python, a.smoke) if "mlflow" in names else None,
    }
    for name, why in missing.items():
        if why:
            log(f"{name}: skipped: {why}")
            result["backends"][name] = {"skipped": why}
    needs_services = any(n in names and not missing.get(n) for n in ("team", "mlflow"))
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        log(f"making {a.clients} x {a.runs} runs of {a.points:,} points and {a.clients} artifacts ...")
        stores = make_stores(tmp, a.clients, a.runs, a.points, a.artifact_mb)
        w: dict[str, Any] = {"tmp": tmp, "runs": [r for r, _ in stores], "artifacts": [x for _, x in stores]}
        if needs_services:
            w["db"] = Databases()
            w["moto"], w["s3"] = start_moto(tmp)
        try:
            for name in names:
                if name not in result["backends"]:
                    log(f"{name} ...")
                    result["backends"][name] = BACKENDS[name](a, w)
        finally:
            if needs_services:
                w["moto"].stop()
                w["db"].drop_all()
    result["load"].append(os.getloadavg()[0])
    fig = {n: r["points_per_s"] for n, r in result["backends"].items() if "points_per_s" in r}
    result["ratios"] = {
        f"{n} / mlflow": fig[n] / fig["mlflow"] for n in ("team", "embedded") if n in fig and "mlflow" in fig
    }
    result["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps(result, indent=2) if a.json else markdown(result) if a.markdown else table(result))


if __name__ == "__main__":
    main()
