"""What survives when a process ends: SIGKILL, an uncaught exception, SIGTERM, SIGINT, a normal exit,
several processes logging into one run, multiprocessing fork workers, and start_run().

Every test runs real child processes (``sys.executable`` on a script under tests/scripts/ or
examples/) against a store under ``tmp_path``, and reads what they left on disk. Waiting is always
on a condition with a deadline: a line the child prints, or its exit.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

import amltrack

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "scripts"
DEADLINE = 60.0  # seconds for any one thing a child should do; generous for a loaded single core


# ----------------------------------------------------------------- helpers


def child_env(store: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without any AMLTRACK_ variable, plus AMLTRACK_STORE=store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLTRACK_")}
    env["PYTHONUNBUFFERED"] = "1"
    if store is not None:
        env["AMLTRACK_STORE"] = str(store)
    env.update(extra)
    return env


class Child:
    """A Python child process whose stdout lines are read by a thread, so waits have deadlines."""

    def __init__(self, argv: list[Any], *, env: dict[str, str], cwd: Path, log_dir: Path, name: str) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")  # a file, so a chatty child never blocks on a pipe
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, *map(str, argv)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=cwd,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group: cleanup also reaches its children
        )
        self._reader = threading.Thread(target=self._read, name=f"test-reader-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        return (
            f"child {self.name} (pid {self.pid}, exit {self.proc.poll()})\n"
            f"--- stdout so far:\n" + "\n".join(self.lines[-20:]) + "\n--- stderr:\n" + self.stderr()[-4000:]
        )

    def expect(self, word: str, timeout: float = DEADLINE) -> list[str]:
        """The fields after ``word`` of the next stdout line that starts with it."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {word!r} line within {timeout} s from {self.describe()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)  # keep the end visible to later calls
                self.proc.wait(timeout=DEADLINE)
                raise AssertionError(f"stdout ended before a {word!r} line: {self.describe()}")
            self.lines.append(line)
            fields = line.split()
            if fields and fields[0] == word:
                return fields[1:]

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit within {timeout} s: {self.describe()}") from None

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self._reader.join(5)
        self._stderr.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start a child: ``spawn(script, *args, env=..., cwd=...)``; every child is killed and reaped after."""
    children: list[Child] = []

    def start(script: Path | str, *args: Any, env: dict[str, str], cwd: Path | None = None) -> Child:
        script = Path(script)
        if not script.is_absolute():
            script = SCRIPTS / script
        child = Child(
            [script, *args],
            env=env,
            cwd=cwd or tmp_path,
            log_dir=tmp_path,
            name=f"{script.stem}-{len(children)}",
        )
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.cleanup()


def raw_records(run_dir: Path) -> tuple[list[dict[str, Any]], bytes]:
    """Every complete line of the run's metrics.jsonl, parsed with the standard library (each must be
    valid JSON), and the bytes after the last newline (a torn line, or b"")."""
    data = (run_dir / "metrics.jsonl").read_bytes()
    cut = data.rfind(b"\n") + 1
    records = []
    for n, line in enumerate(data[:cut].split(b"\n")[:-1], 1):
        try:
            records.append(json.loads(line))
        except ValueError as e:
            raise AssertionError(
                f"line {n} of {run_dir}/metrics.jsonl is not valid JSON: {line[:200]!r}"
            ) from e
    return records, data[cut:]


def read_metrics(run: amltrack.Run) -> dict[str, amltrack.Metric]:
    """run.metrics(), which must warn about nothing (no torn, bad or skipped line)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = run.metrics()
    assert run.skipped == 0
    return metrics


def run_json(store: Path, run_id: str) -> dict[str, Any]:
    return json.loads((store / "runs" / run_id / "run.json").read_text())


def assert_ended(info: dict[str, Any], status: str) -> None:
    assert info["status"] == status, info
    assert isinstance(info["ended"], str) and info["ended"].endswith("Z"), info
    assert isinstance(info["ended_ts"], float) and info["ended_ts"] >= info["created_ts"], info


# ----------------------------------------------------------------- 1. SIGKILL


def test_sigkill_keeps_every_waited_record_once_and_reads_as_crashed(
    tmp_path: Path, spawn: Callable[..., Child]
) -> None:
    store = tmp_path / "store"
    seed = random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    kill_after_waits = rng.randint(3, 12)  # kill after the k-th waited-for record: a random point
    why = f"(seed {seed}, kill after wait #{kill_after_waits})"
    child = spawn("log_until_killed.py", store, seed, env=child_env(store))
    (run_id,) = child.expect("run")
    for _ in range(kill_after_waits):
        (n,) = child.expect("waited")
    n = int(n)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL

    run_dir = store / "runs" / run_id
    records, torn = raw_records(run_dir)  # every complete line is valid JSON
    assert all(r.get("w") is None for r in records)
    keys = [(r["name"], r["step"]) for r in records]
    dup = [k for k, c in collections.Counter(keys).items() if c > 1]
    assert not dup, f"duplicated records {dup[:5]} {why}"
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs)), f"seq not strictly increasing in the file {why}"
    for name, value in (("x", lambda i: i / 4), ("y", lambda i: 3 * i)):
        steps = [r["step"] for r in records if r["name"] == name]
        # One writer appends in call order, so what is on disk is a prefix of what was logged...
        assert steps == list(range(len(steps))), f"{name}: not a prefix of the calls {why}"
        # ...that holds at least every record up to the one whose wait() returned.
        assert len(steps) > n, f"{name}: {len(steps)} records on disk, step {n} was waited for {why}"
        bad = [r for r in records if r["name"] == name and r["value"] != value(r["step"])]
        assert not bad, f"wrong values {bad[:3]} {why}"
    assert type(next(r for r in records if r["name"] == "y")["value"]) is int

    run = amltrack.Store(store).run(run_id)
    torn_record = None
    if torn:
        with contextlib.suppress(ValueError):
            torn_record = json.loads(torn)  # cut just before its newline: the reader keeps it
    if torn and torn_record is None:  # killed in the middle of a write(): the tail is skipped, with a warning
        with pytest.warns(UserWarning, match="skipped"):
            metrics = run.metrics()
    else:
        metrics = read_metrics(run)
        if torn_record is not None:
            records.append(torn_record)
    x, y = metrics["x"], metrics["y"]
    assert x.steps[: n + 1] == list(range(n + 1)) and y.steps[: n + 1] == list(range(n + 1)), why
    assert x.values[: n + 1] == [i / 4 for i in range(n + 1)], why
    assert y.values[: n + 1] == [3 * i for i in range(n + 1)], why
    assert len(x) + len(y) == len(records), why
    assert run.info["status"] == "running"
    assert run.info["ended"] is None
    assert run.status == "crashed"
    assert [r.id for r in amltrack.Store(store).runs(status="crashed")] == [run_id]


# ----------------------------------------------------------------- 2. uncaught exception


def test_uncaught_exception_marks_failed_with_error_and_drains(
    tmp_path: Path, spawn: Callable[..., Child]
) -> None:
    store = tmp_path / "store"
    count = 20_000
    child = spawn("raise_uncaught.py", store, count, env=child_env(store))
    (run_id,) = child.expect("run")
    rc = child.wait()
    assert rc == 1, child.describe()
    assert "RuntimeError: deliberate failure 42" in child.stderr()  # the usual traceback still prints

    run = amltrack.Store(store).run(run_id)
    assert run.status == "failed"
    info = run.info
    assert_ended(info, "failed")
    err = info["error"]
    assert err["type"] == "RuntimeError"
    assert err["message"] == "deliberate failure 42"
    tb = err["traceback"]
    assert "raise_uncaught.py" in tb and "fail_here" in tb, tb
    assert tb.rstrip().endswith("RuntimeError: deliberate failure 42"), tb
    # Logged without wait() just before the exception: written by the exit drain.
    before = read_metrics(run)["before"]
    assert before.steps == list(range(count))
    assert before.values == [2 * i for i in range(count)]


# ----------------------------------------------------------------- 3. SIGTERM


def test_sigterm_marks_killed_exits_143_and_drains(tmp_path: Path, spawn: Callable[..., Child]) -> None:
    store = tmp_path / "store"
    count = 20_000
    child = spawn("log_then_block.py", store, count, env=child_env(store))
    (run_id,) = child.expect("ready")
    os.kill(child.pid, signal.SIGTERM)
    # amltrack's handler turns SIGTERM into SystemExit(128 + 15), so the exit code is the shell's
    # convention for "terminated" and the interpreter runs its exit hooks (-15 would mean it did not).
    assert child.wait() == 143, child.describe()

    run = amltrack.Store(store).run(run_id)
    assert run.status == "killed"
    assert_ended(run.info, "killed")
    assert run.info["error"] is None
    metrics = read_metrics(run)
    assert metrics["a"].values == [7 * i for i in range(count)]
    assert metrics["s"].values == [f"s{i}" for i in range(0, count, 100)]


def test_sigterm_during_the_exit_drain_does_not_abort_it(tmp_path: Path, spawn: Callable[..., Child]) -> None:
    """A process exiting normally gets SIGTERM while amltrack's exit hook is still draining (here held
    up on the summary.json lock, as another process of the run or a slow disk would): the drain must
    still end with the run's status and end time on file."""
    store = tmp_path / "store"
    child = spawn("exit_during_drain.py", store, env=child_env(store))
    (run_id,) = child.expect("logged")
    lock = FileLock(str(store / "runs" / run_id / "summary.json.lock"))
    with lock.acquire(timeout=DEADLINE):
        child.send("go\n")
        child.expect("exiting")  # next: amltrack's exit hook, whose last summary waits for this lock
        os.kill(child.pid, signal.SIGTERM)
        # Hold the lock until the child exits or 0.5 s pass, so the signal is handled while the drain
        # waits: a drain the signal aborts lets the process exit now; one it does not abort waits.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=0.5)
    rc = child.wait()
    assert rc in (0, 143), child.describe()
    info = run_json(store, run_id)
    assert info["status"] in ("completed", "killed"), (
        f"run.json still says {info['status']!r} after the process exited (rc {rc}); "
        f"it reads as {amltrack.Store(store).run(run_id).status!r}\n{child.describe()}"
    )
    assert_ended(info, info["status"])
    assert read_metrics(amltrack.Store(store).run(run_id))["m"].values == list(range(1000))


# ----------------------------------------------------------------- 4. SIGINT


def test_keyboard_interrupt_marks_killed_and_drains(tmp_path: Path, spawn: Callable[..., Child]) -> None:
    store = tmp_path / "store"
    count = 20_000
    child = spawn("log_then_block.py", store, count, env=child_env(store))
    (run_id,) = child.expect("ready")
    os.kill(child.pid, signal.SIGINT)
    rc = child.wait()
    # An uncaught KeyboardInterrupt ends Python by re-raising SIGINT on itself after its exit hooks.
    assert rc in (-signal.SIGINT, 128 + signal.SIGINT), child.describe()
    assert "KeyboardInterrupt" in child.stderr()

    run = amltrack.Store(store).run(run_id)
    assert run.status == "killed"
    assert_ended(run.info, "killed")
    assert run.info["error"] is None
    metrics = read_metrics(run)
    assert metrics["a"].values == [7 * i for i in range(count)]
    assert metrics["s"].values == [f"s{i}" for i in range(0, count, 100)]


# ----------------------------------------------------------------- 5. normal exit


def test_normal_exit_without_finish_completes_with_everything(
    tmp_path: Path, spawn: Callable[..., Child]
) -> None:
    store = tmp_path / "store"
    count = 10_000
    child = spawn("log_and_exit.py", store, count, env=child_env(store))
    (run_id,) = child.expect("run")
    assert child.wait() == 0, child.describe()

    run = amltrack.Store(store).run(run_id)
    assert run.status == "completed"
    assert_ended(run.info, "completed")
    assert run.info["error"] is None
    metrics = read_metrics(run)
    assert sorted(metrics) == ["f", "i", "l", "s"]
    assert metrics["i"].values == list(range(count))
    assert all(type(v) is int for v in metrics["i"].values)
    assert metrics["f"].values == [i + 0.5 for i in range(count)]
    assert metrics["s"].values == [f"step {i}" for i in range(0, count, 10)]
    assert metrics["l"].values == [[i, i + 1, i + 2] for i in range(0, count, 10)]
    assert metrics["i"].steps == list(range(count))
    assert run.read_artifact("notes/end.txt") == b"the end"
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["records"] == 2 * count + 2 * (count // 10)
    assert {k: v["count"] for k, v in summary["metrics"].items()} == {
        "i": count,
        "f": count,
        "s": count // 10,
        "l": count // 10,
    }


# ----------------------------------------------------------------- 6. several processes, one run


@pytest.mark.parametrize("ending", ["flush", "exit"])
def test_processes_joining_one_run_log_concurrently(
    tmp_path: Path, spawn: Callable[..., Child], ending: str
) -> None:
    """An owner starts 4 processes at once that join its run (2 through the inherited environment, 2
    through run_id=); each logs 5,000 records of its own metric and 2,500 of a shared one.
    ``ending``: the joiners call flush() before returning ("flush"), or simply exit ("exit")."""
    store = tmp_path / "store"
    n = 5_000
    owner = spawn("multi_owner.py", store, n, ending, env=child_env(store))
    (run_id,) = owner.expect("run")
    codes = owner.expect("children", timeout=60)
    assert codes == ["0"] * 4, owner.describe()

    # All joiners are gone, the owner is alive: the run is still running, and no joiner touched run.json.
    info = run_json(store, run_id)
    assert info["status"] == "running" and info["ended"] is None and info["error"] is None
    assert info["pid"] == owner.pid
    assert amltrack.Store(store).run(run_id).status == "running"

    owner.send("exit\n")
    assert owner.wait() == 0, owner.describe()
    info = run_json(store, run_id)
    assert_ended(info, "completed")
    assert info["pid"] == owner.pid

    records, torn = raw_records(store / "runs" / run_id)  # every line valid JSON...
    assert torn == b""  # ...and no partial line anywhere, the last included
    expected_total = 100 + 4 * (n + n // 2)
    by_writer: dict[Any, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in records:
        by_writer[r.get("w")].append(r)
    owner_recs = by_writer.pop(None, [])
    assert [(r["name"], r["value"]) for r in owner_recs] == [("owner", i) for i in range(100)]
    counts = {k: len(v) for k, v in by_writer.items()}
    assert len(records) == expected_total, (
        f"{len(records)} records on disk, {expected_total} logged; per joining writer: {counts} "
        f"(each logged {n + n // 2})"
    )
    assert len(by_writer) == 4, counts
    seen_k = set()
    for w, recs in by_writer.items():
        seqs = [r["seq"] for r in recs]
        assert seqs == sorted(set(seqs)), f"writer {w}: records out of call order or duplicated"
        own_names = {r["name"] for r in recs} - {"shared"}
        assert len(own_names) == 1, (w, own_names)  # one process, one writer id
        (name,) = own_names
        k = int(name.split("/")[1])
        seen_k.add(k)
        base = (k + 1) * 1_000_000
        # The process's own calls, in order: own, shared, own, own, shared, ...
        expected = []
        for i in range(n):
            expected.append((name, base + i))
            if i % 2 == 0:
                expected.append(("shared", base + i))
        assert [(r["name"], r["value"]) for r in recs] == expected, f"writer {w} ({name})"
    assert seen_k == {0, 1, 2, 3}

    run = amltrack.Store(store).run(run_id)
    metrics = read_metrics(run)
    for k in range(4):
        own = metrics[f"own/{k}"]
        assert own.values == [(k + 1) * 1_000_000 + i for i in range(n)]
        assert own.steps == list(range(n))
        mine = [v for v in metrics["shared"].values if v // 1_000_000 == k + 1]
        assert mine == [(k + 1) * 1_000_000 + i for i in range(0, n, 2)]
    assert len(metrics["shared"]) == 4 * (n // 2)
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["records"] == expected_total
    assert {k: v["count"] for k, v in summary["metrics"].items()} == {
        "owner": 100,
        "shared": 4 * (n // 2),
        **{f"own/{k}": n for k in range(4)},
    }
    assert run.status == "completed"


def test_a_writer_joining_during_another_write_adds_no_empty_line(
    tmp_path: Path, spawn: Callable[..., Child]
) -> None:
    """One process appends 1 MB batches back to back while another joins the run 100 times in a row,
    each time as a new writer that opens metrics.jsonl. A writer opening the file while another's
    write() is under way must not take the half-written line for a torn one and add a newline:
    every line of the file stays one JSON object."""
    store = tmp_path / "store"
    rounds = 100
    appender = spawn("append_heavily.py", store, env=child_env(store))
    (run_id,) = appender.expect("run")
    try:
        joiner = spawn("rejoin_many.py", store, run_id, rounds, env=child_env(store))
        joiner.expect("done", timeout=60)
        assert joiner.wait() == 0, joiner.describe()
        appender.send("stop\n")
        assert appender.wait() == 0, appender.describe()
        data = (store / "runs" / run_id / "metrics.jsonl").read_bytes()
        lines = data.split(b"\n")
        assert lines.pop() == b""
        empty = [i + 1 for i, line in enumerate(lines) if not line]
        assert not empty, (
            f"{len(empty)} empty line(s) in metrics.jsonl (of {len(lines)}), at lines {empty[:10]}; "
            f"the line before each: {[lines[i - 2][-60:] for i in empty[:3]]}"
        )
        records, torn = raw_records(store / "runs" / run_id)
        assert torn == b""
        joined = [r for r in records if r["name"] == "j"]
        assert [r["value"] for r in joined] == list(range(rounds))
        assert len({r["w"] for r in joined}) == rounds
    finally:
        shutil.rmtree(store, ignore_errors=True)  # some 100 MB


# ----------------------------------------------------------------- 7. multiprocessing fork


@pytest.mark.parametrize("mode", ["process", "pool", "pool-with"])
def test_fork_workers_records_survive_without_flush(
    tmp_path: Path, spawn: Callable[..., Child], mode: str
) -> None:
    """The parent's logger, a module global, used in multiprocessing workers started by fork; the
    task returns without flush(). "pool-with" is ``with Pool() as pool:``, whose exit terminates
    (SIGTERMs) the workers."""
    store = tmp_path / "store"
    n = 2_000
    child = spawn("fork_workers.py", store, mode, n, env=child_env(store))
    if mode == "process":
        assert child.expect("exitcodes") == ["0"] * 4, child.describe()
    (run_id,) = child.expect("run")
    assert child.wait() == 0, child.describe()

    run = amltrack.Store(store).run(run_id)
    assert run.status == "completed"
    records, torn = raw_records(run.dir)
    assert torn == b""
    metrics = read_metrics(run)
    assert metrics["parent"].values == [1]
    found = {k: len(metrics[f"worker/{k}"]) if f"worker/{k}" in metrics else 0 for k in range(4)}
    assert found == {k: n for k in range(4)}, f"records of each task on disk (each logged {n})"
    for k in range(4):
        assert metrics[f"worker/{k}"].values == [(k + 1) * 1_000_000 + i for i in range(n)]
    assert all(r.get("w") for r in records if r["name"].startswith("worker/"))


# ----------------------------------------------------------------- 8. the Workbench snippet


def test_workbench_snippet_runs_as_is(tmp_path: Path, spawn: Callable[..., Child]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    child = spawn(ROOT / "examples" / "workbench_snippet.py", env=child_env(), cwd=work)
    assert child.wait() == 0, child.describe()
    store_dir = work / ".amltrack"
    assert store_dir.is_dir(), "the default store is ./.amltrack in the working directory"
    runs = amltrack.Store(store_dir).runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "completed"
    assert run.experiment == "default"
    metrics = read_metrics(run)
    got = {name: m.values for name, m in metrics.items()}
    assert got == {
        "simple integer value": [7],
        "simple float value": [3.141592],
        "simple string value": ["this is a string metric"],
        "chart data points": [[1, 3, 5, 10, 6, 4]],
        "my metric 1": [1],
        "my metric 2": [2],
    }
    assert type(got["simple integer value"][0]) is int
    assert type(got["simple float value"][0]) is float
    assert type(got["simple string value"][0]) is str
    chart = got["chart data points"][0]
    assert type(chart) is list and all(type(v) is int for v in chart)
    assert type(got["my metric 1"][0]) is int and type(got["my metric 2"][0]) is int
    assert all(m.steps == [0] for m in metrics.values())
    content = b"This should be the contents of artifact/path in the service"
    assert run.read_artifact("artifact/path") == content
    (entry,) = [a for a in run.artifacts() if a["path"] == "artifact/path"]
    assert entry["status"] == "stored" and entry["size"] == len(content)


# ----------------------------------------------------------------- 9. start_run


def test_start_run_in_a_child_completes_on_block_exit(tmp_path: Path, spawn: Callable[..., Child]) -> None:
    store = tmp_path / "store"
    child = spawn("start_runs.py", store, "ok", env=child_env(store))
    (run_id,) = child.expect("run")
    child.expect("end")
    assert child.wait() == 0, child.describe()
    run = amltrack.Store(store).run(run_id)
    assert run.status == "completed"
    assert_ended(run.info, "completed")
    assert run.info["name"] == "only" and run.info["error"] is None
    assert read_metrics(run)["only"].values == list(range(100))


def test_start_run_in_a_child_fails_on_exception_in_block(
    tmp_path: Path, spawn: Callable[..., Child]
) -> None:
    store = tmp_path / "store"
    child = spawn("start_runs.py", store, "raise", env=child_env(store))
    (run_id,) = child.expect("run")
    child.expect("caught")
    child.expect("end")
    assert child.wait() == 0, child.describe()  # the script caught it and went on to exit normally
    run = amltrack.Store(store).run(run_id)
    assert run.status == "failed"  # and the normal exit afterwards did not turn it into completed
    assert_ended(run.info, "failed")
    err = run.info["error"]
    assert err["type"] == "ValueError" and err["message"] == "inside the block"
    assert "start_runs.py" in err["traceback"] and "ValueError: inside the block" in err["traceback"]
    assert read_metrics(run)["failing"].values == list(range(100))


def test_two_sequential_start_run_blocks_make_two_runs(tmp_path: Path, spawn: Callable[..., Child]) -> None:
    store = tmp_path / "store"
    child = spawn("start_runs.py", store, "two", env=child_env(store))
    (first,) = child.expect("run")
    (second,) = child.expect("run")
    child.expect("end")
    assert child.wait() == 0, child.describe()
    assert first != second
    s = amltrack.Store(store)
    assert sorted(r.id for r in s.runs()) == sorted([first, second])
    for run_id, name in ((first, "first"), (second, "second")):
        run = s.run(run_id)
        assert run.status == "completed" and run.info["name"] == name
        assert run.info["pid"] == child.pid
        metrics = read_metrics(run)
        assert list(metrics) == [name] and metrics[name].values == list(range(100))
