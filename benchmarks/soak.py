"""A soak: many training processes, a server that dies, syncs that die, and a UI polled throughout.

    python benchmarks/soak.py --duration 60 --concurrency 2 --rate 200 --kill-every 10
    python benchmarks/soak.py --duration 900 --concurrency 4 --runs 22 --rate 5000 --json

Everything is a real process. Training processes (``get_logger`` with a run id, so that several
processes share some runs) log records that carry their writer number and a sequence number,
``wait()`` on every ``--wait-every``-th one and note it in a side file once it returned, so the checker
knows what must be there. Some are SIGKILLed or SIGTERMed at random, some raise, the rest finish; one
extra job rewrites ``outputs/latest.txt`` in place every ``--rewrite-every`` seconds. A real
``amltrack server`` is SIGKILLed and restarted on the same port and store, ``python -m amltrack sync
--include-running`` pushes to it every ``--sync-every`` seconds (one is SIGKILLed mid-upload), and
an ``amltrack ui`` over the local store is polled over HTTP.

At the end it waits for the trainers, runs ``sync`` then ``sync --verify``, and checks: every
acknowledged record is in the local store, once; each writer's records are a gapless prefix of what
it logged, all of them when it ended by itself or by SIGTERM; the server's runs equal the local ones
byte for byte as docs/sync.md defines it; every run's status follows from its owner's end, locally
and on the server; every failed sync is explained by a server or sync kill; the UI answered no 5xx;
no log holds a traceback other than the one a planned failure prints. It prints the figures and the
checks, and exits 1 if a check failed. The scratch folder (``--out``, else a temporary one) is
deleted unless ``--keep`` or a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TOKEN = "soak-write-token-5c0e7a9d2b41f836"
PLANNED = "SoakPlannedError"  # the exception a raising trainer raises: its traceback is expected

# Run with cwd = the trainer's own folder, so that outputs/ is its own. The side file gets "start",
# then "ack SEQ" after each wait() returned, then "done SEQ" (the last record logged) unless the
# process was SIGKILLed. seq counts up only after log() returned, so "done" never names a record
# that was not handed to the logger.
TRAINER = textwrap.dedent("""
    import json, os, random, sys, time
    import amltrack

    class SoakPlannedError(RuntimeError):
        pass

    a = json.loads(sys.argv[1])
    side = open(a["side"], "a", buffering=1)
    rnd = random.Random(a["seed"])
    lg = amltrack.get_logger("soak", name=a["name"], run_id=a["run_id"], store=a["store"],
                             outputs="outputs" if a["rewrite_every"] else None,
                             params=None if a["role"] == "joiner" else {"writer": a["wid"]})
    side.write(f"start {os.getpid()} {lg.run_id}\\n")
    wid, rate, wait_every, seq = a["wid"], a["rate"], a["wait_every"], 0
    point = f"soak/w{wid}"
    t0 = time.monotonic()
    next_rewrite = 0.0
    names = ["outputs/latest.txt"] + [f"outputs/part-{i}.txt" for i in range(2, a["rewrite_files"] + 1)]
    try:
        while True:
            now = time.monotonic() - t0
            if now >= a["lifetime"]:
                break
            due = int(now * rate) + 1
            while seq < due:
                n = seq + 1
                # Rows and points both: each record names its writer and its number.
                if n % 2:
                    h = lg.log_metrics({"soak_writer": wid, "soak_seq": n, "loss": rnd.random()}, step=n)
                else:
                    h = lg.log(point, n, step=n)
                seq = n
                if n % wait_every == 0:
                    h.wait()
                    side.write(f"ack {n}\\n")
            if a["rewrite_every"] and now >= next_rewrite:
                # In place and in pieces, as a training script writes its checkpoint, not by rename:
                # the mirror may catch it half-written.
                for name in names:
                    with open(name, "w") as f:
                        for _ in range(a["rewrite_kb"] // 64):
                            f.write(f"{name}: record {seq} at {now:.3f}\\n".ljust(64, ".") * 1024)
                next_rewrite = now + a["rewrite_every"]
            time.sleep(0.01)
        for name in names if a["rewrite_every"] else ():
            with open(name, "w") as f:
                f.write(f"{name}: final, record {seq}\\n".ljust(64, ".") * 1024)
    finally:
        side.write(f"done {seq}\\n")
    if a["fate"] == "raise":
        raise SoakPlannedError(f"writer {wid} fails on purpose after {seq} records")
""")


# --------------------------------------------------------------------------------------------------
# What a writer left, and the checks that read the stores. Pure functions over files, so that a test
# can feed them doctored stores.


@dataclass
class Writer:
    """One training process: what the orchestrator planned and saw, and what its side file says."""

    wid: int
    run_id: str
    role: str  # "owner" (created the run, sets its status) or "joiner"
    fate: str  # planned: "finish" or "raise"
    side: str
    outcome: str = "running"  # finished, raised, sigkill, sigterm, or "exit N" for anything else
    pid: int | None = None
    started: bool = False
    acked: list[int] = field(default_factory=list)
    done: int | None = None

    def read_side(self) -> None:
        self.acked, self.done, self.started = [], None, False
        try:
            text = Path(self.side).read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):  # cut by a SIGKILL: says nothing
                break
            parts = line.split()
            if parts[0] == "start":
                self.started, self.pid = True, int(parts[1])
            elif parts[0] == "ack":
                self.acked.append(int(parts[1]))
            elif parts[0] == "done":
                self.done = int(parts[1])


def outcome_of(returncode: int, fate: str) -> str:
    if returncode == 0 and fate == "finish":
        return "finished"
    if returncode == 1 and fate == "raise":
        return "raised"
    if returncode == -signal.SIGKILL:
        return "sigkill"
    if returncode == 128 + signal.SIGTERM:  # amltrack turns SIGTERM into SystemExit(143) after draining
        return "sigterm"
    return f"exit {returncode}"


def _loads() -> Any:
    try:
        import orjson

        return orjson.loads
    except ImportError:
        return json.loads


def soak_records(metrics: Path) -> tuple[list[tuple[int, int]], int]:
    """The (writer, seq) of every soak record in a metrics.jsonl, in file order, and the lines that
    were not readable (torn by a SIGKILL, then ended by the next writer, or torn at the end)."""
    loads = _loads()
    found: list[tuple[int, int]] = []
    bad = 0
    try:
        f = open(metrics, "rb")
    except FileNotFoundError:
        return found, 0
    with f:
        for line in f:
            try:
                r = loads(line)
            except ValueError:
                bad += 1
                continue
            values = r.get("values") if isinstance(r, dict) else None
            if isinstance(values, dict) and "soak_writer" in values:
                found.append((int(values["soak_writer"]), int(values["soak_seq"])))
            elif isinstance(r, dict) and str(r.get("name", "")).startswith("soak/w"):
                found.append((int(r["name"][6:]), int(r["value"])))
    return found, bad


def check_records(store: Path, writers: list[Writer]) -> tuple[list[str], dict[str, int]]:
    """Problems with the records of ``writers`` in ``store``, and figures (records, unreadable lines).

    Per writer: every acknowledged seq present; no (writer, seq) twice; the seqs present are 1..k with
    no gap (a writer appends its batches in order, whole lines, so a kill can only cut the tail); and
    k is everything it logged when it ended by itself or by SIGTERM, which drain the queue first.
    """
    problems: list[str] = []
    by_run: dict[str, list[Writer]] = {}
    for w in writers:
        by_run.setdefault(w.run_id, []).append(w)
    records = unreadable = 0
    for run_id, ws in sorted(by_run.items()):
        found, bad = soak_records(store / "runs" / run_id / "metrics.jsonl")
        records += len(found)
        unreadable += bad
        seqs: dict[int, list[int]] = {}
        for wid, seq in found:
            seqs.setdefault(wid, []).append(seq)
        known = {w.wid for w in ws}
        for wid in sorted(set(seqs) - known):
            problems.append(f"run {run_id}: records of writer {wid}, which never wrote to it")
        for w in ws:
            got = seqs.get(w.wid, [])
            have = set(got)
            if len(have) != len(got):
                dup = sorted(s for s in have if got.count(s) > 1) if len(got) < 100_000 else ["..."]
                problems.append(
                    f"run {run_id}: writer {w.wid} has {len(got) - len(have)} duplicate record(s), "
                    f"seq {', '.join(map(str, dup[:5]))}"
                )
            missing_acks = [s for s in w.acked if s not in have]
            if missing_acks:
                problems.append(
                    f"run {run_id}: writer {w.wid} lost {len(missing_acks)} acknowledged record(s), "
                    f"seq {', '.join(map(str, missing_acks[:5]))}"
                )
            top = max(have, default=0)
            if len(have) != top:
                gaps = [s for s in range(1, top + 1) if s not in have][:5]
                problems.append(
                    f"run {run_id}: writer {w.wid}'s records have gaps before seq {top}: "
                    f"{', '.join(map(str, gaps))} missing"
                )
            if w.outcome in ("finished", "raised") and top != w.done:
                problems.append(
                    f"run {run_id}: writer {w.wid} {w.outcome} after logging {w.done} records, "
                    f"but {top} are in the store"
                )
            # A SIGTERM can land inside log() after the record was queued, before seq counted it.
            if w.outcome == "sigterm" and w.done is not None and top not in (w.done, w.done + 1):
                problems.append(
                    f"run {run_id}: writer {w.wid} was SIGTERMed after logging {w.done} records, "
                    f"but {top} are in the store"
                )
    return problems, {"records": records, "unreadable_lines": unreadable}


# What docs/sync.md says a push does not copy.
LOCAL_ONLY = ("sync", "cache", "summary.json.lock")


def _whole_lines_length(path: Path) -> int:
    """The length of ``path`` up to and including its last newline (0 if none, or no file)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return pos - step + i + 1
            pos -= step
    return 0


def _first_difference(a: Path, b: Path, length: int | None) -> str | None:
    """None if ``b`` holds exactly the first ``length`` bytes of ``a`` (all of it when None)."""
    a_exists, b_exists = a.is_file(), b.is_file()
    if length is None:
        if not a_exists or not b_exists:
            return None if a_exists == b_exists else ("only here" if a_exists else "only on the server")
        length = a.stat().st_size
    if not b_exists:
        return None if length == 0 else "missing on the server"
    size = b.stat().st_size
    with open(a, "rb") as fa, open(b, "rb") as fb:
        offset = 0
        while offset < min(length, size):
            n = min(1 << 20, min(length, size) - offset)
            x, y = fa.read(n), fb.read(n)
            if x != y:
                at = offset + next(i for i in range(n) if x[i] != y[i])
                return f"differs at byte {at:,}"
            offset += n
    if size != length:
        return f"{size:,} bytes on the server, {length:,} here"
    return None


def stored_artifacts(manifest: Path, length: int) -> list[str]:
    """The paths whose latest entry in the first ``length`` bytes of ``manifest`` is ``stored``."""
    latest: dict[str, str] = {}
    if length:
        with open(manifest, "rb") as f:
            for line in f.read(length).splitlines():
                try:
                    e = json.loads(line)
                    latest[e["path"]] = e["status"]
                except (ValueError, KeyError, TypeError):
                    continue
    return sorted(p for p, s in latest.items() if s == "stored")


def compare_run(local: Path, remote: Path) -> list[str]:
    """How the server's copy of a run differs from the local one, as docs/sync.md defines equality:
    run.json and summary.json whole, the JSON Lines files up to their last newline, every artifact
    whose latest manifest entry is stored, and nothing else on the server but the local-only folders."""
    rid = local.name
    if not remote.is_dir():
        return [f"run {rid}: not on the server"]
    problems = []
    for name in ("run.json", "summary.json"):
        d = _first_difference(local / name, remote / name, None)
        if d:
            problems.append(f"run {rid}: {name} {d}")
    lengths = {}
    for name in ("metrics.jsonl", "artifacts.jsonl"):
        lengths[name] = _whole_lines_length(local / name)
        d = _first_difference(local / name, remote / name, lengths[name])
        if d:
            problems.append(f"run {rid}: {name} {d}")
    stored = stored_artifacts(local / "artifacts.jsonl", lengths["artifacts.jsonl"])
    for path in stored:
        d = _first_difference(local / "artifacts" / path, remote / "artifacts" / path, None)
        if d:
            problems.append(f"run {rid}: artifact {path} {d}")
    expected = {"run.json", "summary.json", "metrics.jsonl", "artifacts.jsonl"} | {
        f"artifacts/{p}" for p in stored
    }
    for dirpath, dirs, names in os.walk(remote):
        rel = Path(dirpath).relative_to(remote)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in LOCAL_ONLY]
            names = [n for n in names if n not in LOCAL_ONLY]
        for n in names:
            if (rel / n).as_posix() not in expected:
                problems.append(f"run {rid}: {(rel / n).as_posix()} is on the server only")
    return problems


def compare_stores(local: Path, remote: Path) -> list[str]:
    """Every local run (one with a run.json) compared with the server's; runs only on the server too."""
    here = {d.name for d in (local / "runs").iterdir() if (d / "run.json").is_file()}
    there = (
        {d.name for d in (remote / "runs").iterdir() if d.is_dir()} if (remote / "runs").is_dir() else set()
    )
    problems = [f"run {rid}: on the server only" for rid in sorted(there - here)]
    for rid in sorted(here):
        problems += compare_run(local / "runs" / rid, remote / "runs" / rid)
    return problems


def expected_status(owner_outcome: str) -> str | None:
    """The status docs/format.md gives a run whose creating process ended so (joiners never set it)."""
    return {"finished": "completed", "raised": "failed", "sigkill": "crashed", "sigterm": "killed"}.get(
        owner_outcome
    )


def traceback_ends(text: str) -> list[str]:
    """The exception line that ends each traceback in a log: what a reader of the report needs."""
    ends = []
    for part in text.split("Traceback (most recent call last):")[1:]:
        line = next((ln for ln in part.splitlines()[1:] if ln and not ln[0].isspace()), "?")
        ends.append(line[:200])
    return ends


def tracebacks(text: str, planned: bool) -> int:
    """Tracebacks in a log, less the one a planned failure prints."""
    n = text.count("Traceback (most recent call last)")
    if planned and f"{PLANNED}: " in text:
        n -= 1
    return max(n, 0)


# --------------------------------------------------------------------------------------------------
# The processes.


def child_env(**extra: str) -> dict[str, str]:
    # Nothing of the caller's amltrack settings: each child is told its store and remote.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AMLTRACK_") and k not in ("COLUMNS", "LINES")
    }
    env.update(extra)
    return env


def amltrack_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "amltrack", *args]


def trainer_command(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-c", TRAINER, json.dumps(spec)]


def new_run_id(rnd: random.Random) -> str:
    # The shape amltrack gives ids (docs/format.md), chosen here so that joiners can be told it.
    t = time.time()
    return (
        time.strftime("%Y%m%dT%H%M%S", time.gmtime(t))
        + f"{int(t * 1000) % 1000:03d}-{rnd.getrandbits(64):016x}"
    )


def _wait(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def terminate(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it lingers: a server or UI ends its requests first."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """``amltrack server`` on 127.0.0.1, killed and restarted on the same port and store."""

    def __init__(self, store: Path, log: Path) -> None:
        self.store, self.log, self.port = store, log, 0
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0

    def start(self) -> None:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            with open(self.log, "a") as log:
                begin = log.tell()
                self.proc = subprocess.Popen(
                    amltrack_cmd("server", "--store", str(self.store), "--port", str(self.port)),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=child_env(AMLTRACK_SERVER_TOKENS=f"write:{TOKEN}"),
                )

            def ready(begin: int = begin) -> str | None:
                text = self.log.read_text()[begin:]
                m = re.search(r"on (http://127\.0\.0\.1:(\d+))", text)
                if m:
                    return m.group(1)
                if self.proc.poll() is not None:
                    return "exited"
                return None

            found = _wait(ready, 120, "the server to listen")
            if found != "exited":
                break
            # The port of the killed server may linger for a moment; the same port is the point.
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server does not start again:\n{self.log.read_text()[begin:]}")
            time.sleep(0.5)
        self.url = found
        self.port = int(found.rsplit(":", 1)[1])
        self.starts += 1

        def healthy() -> bool:
            try:
                return httpx.get(self.url + "/v1/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        _wait(healthy, 120, "the server to answer")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)


@dataclass
class Options:
    duration: float = 60.0
    concurrency: int = 2
    runs: int = 8
    rate: float = 200.0
    lifetime: float = 15.0
    raise_share: float = 0.3
    share: float = 0.4
    wait_every: int = 100
    kill_every: float = 10.0
    server_kill_every: float = 30.0
    sync_every: float = 5.0
    sync_kills: int = 1
    ui_poll: float = 2.0
    rewrite_every: float = 2.0
    rewrite_kb: int = 1024
    rewrite_files: int = 1
    seed: int = 0


class Soak:
    def __init__(self, opts: Options, out: Path) -> None:
        self.o, self.out = opts, out
        self.rnd = random.Random(opts.seed)
        self.local = out / "local"
        self.remote = out / "server"
        self.logs = out / "logs"
        self.work = out / "work"
        for d in (self.logs, self.work):
            d.mkdir(parents=True, exist_ok=True)
        self.server = Server(self.remote, self.logs / "server.log")
        self.writers: list[Writer] = []
        self.procs: dict[int, subprocess.Popen] = {}
        self.owners: dict[str, int] = {}  # run id -> the wid of the process that created it
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.down: list[list[float]] = []  # [killed at, answering again at] of each server kill
        self.syncs: list[dict[str, Any]] = []
        self.sync_kills: list[float] = []  # how long each killed sync had run
        self.kills = {"sigkill": 0, "sigterm": 0}
        self.ui: dict[str, Any] = {"latencies_ms": [], "errors": [], "statuses": {}, "not_ok": []}
        self.ui_proc: subprocess.Popen | None = None
        self.rewriter: int | None = None  # the wid of the job that rewrites outputs/latest.txt

    # ---- training processes

    def spawn(self, *, rewrite: bool = False) -> None:
        o = self.o
        wid = len(self.writers) + 1
        live = [rid for rid, owner in self.owners.items() if self.procs[owner].poll() is None]
        if (
            not rewrite
            and self.owners
            and (len(self.owners) >= o.runs or (live and self.rnd.random() < o.share))
        ):
            # Past the number of runs, a process joins any run: resuming into an ended one is allowed.
            run_id, role = self.rnd.choice(live or sorted(self.owners)), "joiner"
        else:
            run_id, role = new_run_id(self.rnd), "owner"
        fate = "finish" if rewrite or self.rnd.random() >= o.raise_share else "raise"
        lifetime = o.duration * 0.95 if rewrite else o.lifetime * self.rnd.uniform(0.5, 1.5)
        cwd = self.work / f"w{wid}"
        cwd.mkdir()
        w = Writer(wid, run_id, role, fate, str(self.out / "writers" / f"{wid}.txt"))
        Path(w.side).parent.mkdir(exist_ok=True)
        spec = {
            "wid": wid,
            "run_id": run_id,
            "name": f"soak-{run_id[-6:]}",
            "role": role,
            "fate": fate,
            "store": str(self.local),
            "side": w.side,
            "rate": o.rate,
            "wait_every": o.wait_every,
            "lifetime": lifetime,
            "rewrite_every": o.rewrite_every if rewrite else 0,
            "rewrite_kb": o.rewrite_kb,
            "rewrite_files": o.rewrite_files,
            "seed": self.rnd.getrandbits(32),
        }
        with open(self.logs / f"trainer-{wid}.log", "w") as err:
            proc = subprocess.Popen(
                trainer_command(spec), cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=child_env()
            )
        self.writers.append(w)
        self.procs[wid] = proc
        if role == "owner":
            self.owners[run_id] = wid
            # Joiners need the run to exist: until its run.json is there, another process with the
            # same id would create the run too.
            run_json = self.local / "runs" / run_id / "run.json"
            _wait(
                lambda: run_json.exists() or proc.poll() is not None, 120, f"trainer {wid} to create its run"
            )
        if rewrite:
            self.rewriter = wid

    def running(self) -> list[int]:
        return [wid for wid, p in self.procs.items() if p.poll() is None]

    def kill_one(self) -> None:
        candidates = []
        for wid in self.running():
            w = self.writers[wid - 1]
            if wid == self.rewriter:
                continue
            w.read_side()
            if w.started:  # a process killed before it opened its run leaves no run to check
                candidates.append(wid)
        if not candidates:
            return
        wid = self.rnd.choice(candidates)
        sig = signal.SIGTERM if self.rnd.random() < 1 / 3 else signal.SIGKILL
        self.procs[wid].send_signal(sig)
        self.kills["sigterm" if sig == signal.SIGTERM else "sigkill"] += 1

    # ---- the server, sync and UI, each on its own thread

    def server_killer(self) -> None:
        o = self.o
        while not self.stop.wait(o.server_kill_every * self.rnd.uniform(0.7, 1.3)):
            killed = time.monotonic()
            with self.lock:
                self.down.append([killed, float("inf")])
            self.server.kill()
            self.server.start()
            with self.lock:
                self.down[-1][1] = time.monotonic()

    def sync_once(self, *args: str, kill: bool = False) -> dict[str, Any]:
        n = len(self.syncs) + 1
        start = time.monotonic()
        with open(self.logs / f"sync-{n}.log", "w") as err:
            proc = subprocess.Popen(
                amltrack_cmd("sync", "--store", str(self.local), "--to", self.server.url, "--json", *args),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=child_env(AMLTRACK_TOKEN=TOKEN),
            )
            killed = self._kill_mid_upload(proc) if kill else None
            out, _ = proc.communicate(timeout=600)
        end = time.monotonic()
        try:
            report = json.loads(out)
        except ValueError:
            report = None
        s = {
            "n": n,
            "args": list(args),
            "start": start,
            "end": end,
            "rc": proc.returncode,
            "killed": killed,
            "report": report,
        }
        self.syncs.append(s)
        return s

    def _kill_mid_upload(self, proc: subprocess.Popen) -> bool:
        """SIGKILL the sync ``proc`` while the server is receiving an artifact from it: the client
        dies mid-request, with part of the body sent. False if it ended without an upload."""
        blobs = self.remote / ".server" / "blobs"
        while proc.poll() is None:
            try:
                uploading = any(f.name.endswith(".part") for d in os.scandir(blobs) for f in os.scandir(d))
            except OSError:  # no such folder yet, or one went away while listed
                uploading = False
            if uploading:
                proc.kill()
                proc.wait()
                return True
            time.sleep(0.002)
        return False

    def syncer(self) -> None:
        o = self.o
        kills_left = o.sync_kills
        while not self.stop.wait(o.sync_every * self.rnd.uniform(0.5, 1.5)):
            # Past the first pushes, so that the kill interrupts a push that resumes a run.
            s = self.sync_once("--include-running", kill=kills_left > 0 and len(self.syncs) >= 2)
            if s["killed"]:
                kills_left -= 1
                self.sync_kills.append(round(s["end"] - s["start"], 2))

    def ui_poller(self, url: str) -> None:
        import httpx

        with httpx.Client(base_url=url, timeout=60) as client:
            while not self.stop.wait(self.o.ui_poll):
                paths = ["api/runs"]
                try:
                    runs = client.get("api/runs").json().get("runs", [])
                except (httpx.HTTPError, ValueError, AttributeError):
                    runs = []
                if runs:
                    rid = self.rnd.choice(runs)["id"]
                    paths = [
                        f"api/runs/{rid}",
                        f"api/runs/{rid}/metrics",
                        f"api/runs/{rid}/series?name=loss&width=800",
                        f"runs/{rid}",
                        "",
                    ]
                for p in paths:
                    t = time.perf_counter()
                    try:
                        r = client.get(p)
                        status = r.status_code
                    except httpx.HTTPError as e:
                        status = type(e).__name__
                    ms = (time.perf_counter() - t) * 1000
                    with self.lock:
                        self.ui["latencies_ms"].append(ms)
                        self.ui["statuses"][str(status)] = self.ui["statuses"].get(str(status), 0) + 1
                        if not isinstance(status, int) or status >= 500:
                            self.ui["errors"].append(f"GET /{p}: {status}")
                        elif status >= 300 and len(self.ui["not_ok"]) < 10:
                            self.ui["not_ok"].append(f"GET /{p}: {status}")

    def start_ui(self) -> str:
        log = self.logs / "ui.log"
        with open(log, "w") as err:
            self.ui_proc = subprocess.Popen(
                amltrack_cmd("ui", "--store", str(self.local), "--port", "0"),
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=child_env(),
            )
        m = _wait(
            lambda: (
                self.ui_proc.poll() is not None or re.search(r"http://127\.0\.0\.1:\d+/", log.read_text())
            ),
            120,
            "the UI to print its URL",
        )
        if self.ui_proc.poll() is not None:
            raise RuntimeError(f"amltrack ui exited:\n{log.read_text()}")
        return m.group(0)

    # ---- the scenario

    def run(self) -> dict[str, Any]:
        o = self.o
        t0 = time.monotonic()
        self.server.start()
        ui_url = self.start_ui()
        threads = [
            threading.Thread(target=self.syncer, name="soak-sync"),
            threading.Thread(target=self.ui_poller, args=(ui_url,), name="soak-ui"),
        ]
        if o.server_kill_every > 0:
            threads.append(threading.Thread(target=self.server_killer, name="soak-server-kill"))
        try:
            if o.rewrite_every > 0:
                self.spawn(rewrite=True)
            for t in threads:
                t.start()
            next_kill = (
                time.monotonic() + o.kill_every * self.rnd.uniform(0.5, 1.5) if o.kill_every > 0 else None
            )
            while time.monotonic() - t0 < o.duration:
                busy = [wid for wid in self.running() if wid != self.rewriter]
                if len(busy) < o.concurrency:
                    self.spawn()
                    continue
                if next_kill is not None and time.monotonic() >= next_kill:
                    self.kill_one()
                    next_kill = time.monotonic() + o.kill_every * self.rnd.uniform(0.5, 1.5)
                time.sleep(0.05)
            # No new process and no new kill; those running end as planned.
            _wait(lambda: not self.running(), o.lifetime * 2 + o.duration + 300, "the trainers to end")
        finally:
            self.stop.set()
            for t in threads:
                if t.is_alive():
                    t.join()
            for p in self.procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
        soak_s = time.monotonic() - t0
        for w in self.writers:
            w.outcome = outcome_of(self.procs[w.wid].returncode, w.fate)
            w.read_side()
        if self.server.proc is None or self.server.proc.poll() is not None:
            self.server.start()
        final = self.sync_once()
        verify = self.sync_once("--verify")
        history = {where: self.history(where) for where in ("local", "server")}
        try:
            return self.report(soak_s, final, verify, history)
        finally:
            terminate(self.ui_proc)
            self.server.stop()

    def history(self, where: str) -> dict[str, Any]:
        args = ["--store", str(self.local)] if where == "local" else ["--remote", self.server.url]
        t = time.perf_counter()
        p = subprocess.run(
            amltrack_cmd("history", "list", "--json", *args),
            capture_output=True,
            text=True,
            env=child_env(AMLTRACK_TOKEN=TOKEN),
            timeout=600,
        )
        took = time.perf_counter() - t
        (self.logs / f"history-{where}.log").write_text(p.stderr)
        try:
            rows = {r["id"]: r["status"] for r in json.loads(p.stdout)}
        except (ValueError, KeyError, TypeError):
            rows = None
        return {"rc": p.returncode, "seconds": took, "statuses": rows}

    # ---- checks and figures

    def report(self, soak_s: float, final: dict, verify: dict, history: dict) -> dict[str, Any]:
        checks: list[dict[str, Any]] = []

        def check(name: str, problems: list[str]) -> None:
            checks.append(
                {"name": name, "ok": not problems, "problems": problems[:20], "count": len(problems)}
            )

        started = [w for w in self.writers if w.started]
        t = time.perf_counter()
        problems, counted = check_records(self.local, started)
        local_check_s = time.perf_counter() - t
        check(
            "every acknowledged record present, none twice, no gap, all of a writer that ended by itself",
            problems,
        )
        check(
            "every process ended as planned or by the soak's signal",
            [
                f"writer {w.wid}: {w.outcome} (planned: {w.fate})"
                for w in self.writers
                if w.outcome not in ("finished", "raised", "sigkill", "sigterm")
            ],
        )

        for_sync = []
        for s in (final, verify):
            if s["rc"] != 0 or s["report"] is None or not s["report"].get("ok"):
                rep = s["report"] or {}
                reasons = [
                    f"{r['id']}: {r.get('outcome')} {r.get('reason') or ''} {r.get('differences') or ''}"
                    for r in rep.get("runs", [])
                    if r.get("outcome") == "failed" or r.get("differences")
                ]
                for_sync.append(
                    f"sync {' '.join(s['args'])} exited {s['rc']}: "
                    + (
                        "; ".join(reasons)
                        or str(rep.get("stopped"))
                        or (self.logs / f"sync-{s['n']}.log").read_text()[-300:]
                    )
                )
        check("the final sync and sync --verify succeed with no difference", for_sync)

        t = time.perf_counter()
        check(
            "every server run equals the local one byte for byte (docs/sync.md)",
            compare_stores(self.local, self.remote),
        )
        compare_s = time.perf_counter() - t

        wrong = []
        for run_id, owner in sorted(self.owners.items()):
            want = expected_status(self.writers[owner - 1].outcome)
            for where, h in history.items():
                got = (h["statuses"] or {}).get(run_id)
                if want is None:
                    wrong.append(f"run {run_id}: its owner ended oddly ({self.writers[owner - 1].outcome})")
                elif got != want:
                    wrong.append(
                        f"run {run_id} ({where}): {got}, expected {want} "
                        f"(owner {self.writers[owner - 1].outcome})"
                    )
        for where, h in history.items():
            if h["rc"] != 0 or h["statuses"] is None:
                wrong.append(f"history list ({where}) exited {h['rc']}")
        check("every run's status follows from how its owner ended, locally and on the server", wrong)

        unexplained = []
        for s in self.syncs[:-2]:
            if s["rc"] == 0 or s["killed"]:
                continue
            if any(a <= s["end"] and s["start"] <= b for a, b in self.down):
                continue
            rep = s["report"] or {}
            reasons = [
                f"{r['id'][-8:]}: {r.get('reason')}"
                for r in rep.get("runs", [])
                if r.get("outcome") == "failed"
            ]
            unexplained.append(
                f"sync {s['n']} exited {s['rc']} with the server up: "
                + (
                    "; ".join(reasons)
                    or str(rep.get("stopped"))
                    or (self.logs / f"sync-{s['n']}.log").read_text()[-300:]
                )
            )
        check("every sync that failed met a server kill", unexplained)

        check("the UI answered every request, none with a 5xx", list(self.ui["errors"]))

        outputs = []
        if self.rewriter is not None:
            w = self.writers[self.rewriter - 1]
            for on_disk in sorted((self.work / f"w{w.wid}" / "outputs").iterdir()):
                stored = self.local / "runs" / w.run_id / "artifacts" / "outputs" / on_disk.name
                if not stored.is_file() or stored.read_bytes() != on_disk.read_bytes():
                    outputs.append(
                        f"run {w.run_id}: the stored outputs/{on_disk.name} is not the file's last version"
                    )
        check("the rewritten outputs files are stored in their final version", outputs)

        logs = []
        for path in sorted(self.logs.iterdir()):
            m = re.match(r"trainer-(\d+)\.log$", path.name)
            planned = bool(m) and self.writers[int(m.group(1)) - 1].outcome == "raised"
            text = path.read_text(errors="replace")
            n = tracebacks(text, planned)
            if n:
                ends = sorted({e for e in traceback_ends(text) if PLANNED not in e})
                logs.append(f"{path.name}: {n} traceback(s), ending {'; '.join(ends)}")
        check("no traceback in any log but a planned failure's", logs)

        lat = sorted(self.ui["latencies_ms"])
        outcomes: dict[str, int] = {}
        for w in self.writers:
            outcomes[w.outcome] = outcomes.get(w.outcome, 0) + 1
        writers_per_run: dict[str, int] = {}
        for w in self.writers:
            writers_per_run[w.run_id] = writers_per_run.get(w.run_id, 0) + 1
        during = self.syncs[:-2]
        acked = sum(len(w.acked) for w in self.writers)
        local_bytes = sum(f.stat().st_size for f in self.local.rglob("*") if f.is_file())
        figures = {
            "duration_s": round(soak_s, 1),
            "processes": len(self.writers),
            "process_outcomes": outcomes,
            "runs": len(self.owners),
            "shared_runs": sum(1 for n in writers_per_run.values() if n > 1),
            "records": counted["records"],
            "acknowledged_records": acked,
            "unreadable_lines": counted["unreadable_lines"],
            "store_bytes": local_bytes,
            "trainer_kills": dict(self.kills),
            "server_kills": len(self.down),
            "server_down_s": [round(b - a, 1) for a, b in self.down],
            "syncs": len(during),
            "syncs_ok": sum(1 for s in during if s["rc"] == 0),
            "syncs_failed": sum(1 for s in during if s["rc"] != 0 and not s["killed"]),
            "syncs_killed": len(self.sync_kills),
            "sync_killed_after_s": list(self.sync_kills),
            "sync_p50_s": round(statistics.median([s["end"] - s["start"] for s in during]), 2)
            if during
            else None,
            "final_sync_s": round(final["end"] - final["start"], 2),
            "verify_s": round(verify["end"] - verify["start"], 2),
            "history_list_local_s": round(history["local"]["seconds"], 2),
            "history_list_server_s": round(history["server"]["seconds"], 2),
            "check_records_s": round(local_check_s, 2),
            "compare_stores_s": round(compare_s, 2),
            "ui_requests": len(lat),
            "ui_statuses": dict(self.ui["statuses"]),
            "ui_not_ok": list(self.ui["not_ok"]),
            "ui_p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
            "ui_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None,
        }
        return {
            "options": asdict(self.o),
            "figures": figures,
            "checks": checks,
            "ok": all(c["ok"] for c in checks),
            "out": str(self.out),
        }


def print_report(rep: dict[str, Any]) -> None:
    f = rep["figures"]
    print(
        f"soak of {f['duration_s']} s: {f['processes']} processes ({', '.join(f'{v} {k}' for k, v in sorted(f['process_outcomes'].items()))}), "
        f"{f['runs']} runs ({f['shared_runs']} shared)"
    )
    print(
        f"  {f['records']:,} records, {f['acknowledged_records']:,} acknowledged, {f['store_bytes']:,} bytes in the store, "
        f"{f['unreadable_lines']} unreadable lines"
    )
    print(
        f"  kills: {f['trainer_kills']['sigkill']} SIGKILL, {f['trainer_kills']['sigterm']} SIGTERM, "
        f"server {f['server_kills']} (down {f['server_down_s']} s), sync {f['syncs_killed']} (mid-upload, after {f['sync_killed_after_s']} s)"
    )
    print(
        f"  syncs during: {f['syncs']} ({f['syncs_ok']} ok, {f['syncs_failed']} failed), median {f['sync_p50_s']} s; "
        f"final {f['final_sync_s']} s, verify {f['verify_s']} s"
    )
    print(
        f"  UI: {f['ui_requests']} requests {f['ui_statuses']}, p50 {f['ui_p50_ms']} ms, p99 {f['ui_p99_ms']} ms"
        + (f"; not 2xx: {', '.join(f['ui_not_ok'])}" if f["ui_not_ok"] else "")
    )
    print(
        f"  history list: {f['history_list_local_s']} s local, {f['history_list_server_s']} s on the server"
    )
    for c in rep["checks"]:
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['name']}")
        for p in c["problems"]:
            print(f"       {p}")
        if c["count"] > len(c["problems"]):
            print(f"       ... {c['count'] - len(c['problems'])} more")
    print("all checks passed" if rep["ok"] else f"checks failed; the stores and logs are in {rep['out']}")


def main(argv: list[str] | None = None) -> int:
    d = Options()
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python benchmarks/soak.py --duration 60 --concurrency 2 --rate 200 --kill-every 10\n"
        "  python benchmarks/soak.py --duration 900 --concurrency 4 --runs 22 --rate 5000 "
        "--lifetime 60 --kill-every 39 --server-kill-every 225 --sync-every 20 --json",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=d.duration,
        help="seconds during which processes are started and killed",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=d.concurrency,
        help="training processes at a time, besides the rewriting job",
    )
    p.add_argument(
        "--runs", type=int, default=d.runs, help="runs created at most; then every new process joins one"
    )
    p.add_argument("--rate", type=float, default=d.rate, help="records a second per process")
    p.add_argument(
        "--lifetime", type=float, default=d.lifetime, help="mean seconds a process logs for (0.5x to 1.5x)"
    )
    p.add_argument(
        "--raise-share", type=float, default=d.raise_share, help="share of processes that raise at their end"
    )
    p.add_argument(
        "--share", type=float, default=d.share, help="chance that a new process joins a running run"
    )
    p.add_argument("--wait-every", type=int, default=d.wait_every, help="wait() on every Nth record")
    p.add_argument(
        "--kill-every",
        type=float,
        default=d.kill_every,
        help="mean seconds between kills of a trainer (1 in 3 SIGTERM); 0: none",
    )
    p.add_argument(
        "--server-kill-every",
        type=float,
        default=d.server_kill_every,
        help="mean seconds between SIGKILLs of the server; 0: none",
    )
    p.add_argument(
        "--sync-every", type=float, default=d.sync_every, help="mean seconds between syncs (0.5x to 1.5x)"
    )
    p.add_argument(
        "--sync-kills", type=int, default=d.sync_kills, help="syncs to SIGKILL in the middle of an upload"
    )
    p.add_argument("--ui-poll", type=float, default=d.ui_poll, help="seconds between polls of the UI")
    p.add_argument(
        "--rewrite-every",
        type=float,
        default=d.rewrite_every,
        help="seconds between rewrites of outputs/latest.txt by one job; 0: no such job",
    )
    p.add_argument("--rewrite-kb", type=int, default=d.rewrite_kb, help="the size of outputs/latest.txt, KiB")
    p.add_argument(
        "--rewrite-files",
        type=int,
        default=d.rewrite_files,
        help="files that job rewrites: outputs/latest.txt, then outputs/part-2.txt and on",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--out", type=Path, help="scratch folder for the stores and logs (default: a new temporary one)"
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch folder even when every check passed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args(argv)
    opts = Options(**{k: getattr(a, k) for k in asdict(d)})
    out = a.out or Path(tempfile.mkdtemp(prefix="amltrack-soak-"))
    if out.exists() and any(out.iterdir()):
        p.error(f"--out {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    rep = Soak(opts, out).run()
    if a.json:
        print(json.dumps(rep, indent=1))
    else:
        print_report(rep)
    if rep["ok"] and not a.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
