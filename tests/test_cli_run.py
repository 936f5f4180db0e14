"""``amltrack run``: real child commands under a real ``amltrack`` process, signals included."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import amltrack

from .conftest import child_env, wait_until

# A child that logs into the run it inherits, writes to both streams, and ends as argv asks:
#   child.py CODE       exit with CODE; a negative CODE kills itself with that signal
#   child.py wait FILE  print "ready", then wait until FILE exists, then exit 0
CHILD = r"""
import os, signal, sys, time
import amltrack

logger = amltrack.get_logger(outputs=None)
print("run", os.environ["AMLTRACK_RUN_ID"], "joined", logger.run_id)
for i in range(5):
    logger.log("loss", 1.0 / (i + 1))
logger.log("phase", "done").wait()
sys.stdout.buffer.write(b"binary \x00\xff\xfe out\n")
sys.stdout.flush()
print("warning: to stderr", file=sys.stderr)
if sys.argv[1] == "wait":
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("after the wait", flush=True)
    sys.exit(0)
code = int(sys.argv[1])
if code < 0:
    os.kill(os.getpid(), -code)
sys.exit(code)
"""

# On SIGINT: note it, log it, take a moment to clean up, then exit 5. Counts every SIGINT it gets.
INTERRUPTIBLE = r"""
import os, signal, sys, time
import amltrack

logger = amltrack.get_logger(outputs=None)
got = []
signal.signal(signal.SIGINT, lambda s, f: got.append(s))
print("ready", flush=True)
deadline = time.monotonic() + 120
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
# Leave time for a second, duplicate SIGINT to arrive, if anything were to send one.
quiet_until = time.monotonic() + 0.5
while time.monotonic() < quiet_until:
    time.sleep(0.01)
logger.log("sigints", len(got)).wait()
print("cleaned up after", len(got), "SIGINT", flush=True)
sys.exit(5)
"""


@pytest.fixture
def child(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def amltrack_run(store: Path, *command: str, options: tuple[str, ...] = (), **kw) -> subprocess.Popen:
    kw.setdefault("env", child_env())
    return subprocess.Popen(
        [sys.executable, "-m", "amltrack", "run", "--store", str(store), *options, "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def finish(proc: subprocess.Popen) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def only_run(store: Path) -> amltrack.Run:
    (run,) = amltrack.Store(store).runs()
    return run


def check_logs(run: amltrack.Run, out: bytes, err: bytes) -> None:
    """The log artifacts hold exactly what the child wrote, and the manifest says so."""
    manifest = {a["path"]: a for a in run.artifacts()}
    stored_out = run.read_artifact("logs/stdout.txt")
    stored_err = run.read_artifact("logs/stderr.txt")
    assert out.startswith(stored_out) and err.startswith(stored_err)
    for path, data in (("logs/stdout.txt", stored_out), ("logs/stderr.txt", stored_err)):
        assert manifest[path]["status"] == "stored" and manifest[path]["source"] == "run"
        assert (
            manifest[path]["size"] == len(data)
            and manifest[path]["sha256"] == hashlib.sha256(data).hexdigest()
        )


def test_exit_0_completes_the_run_the_child_logged_into(store: Path, child: Path) -> None:
    code, out, err = finish(
        amltrack_run(
            store, sys.executable, str(child), "0", options=("--experiment", "wrapped", "--name", "zero")
        )
    )
    assert code == 0, err
    run = only_run(store)
    assert (run.status, run.experiment, run.name) == ("completed", "wrapped", "zero")
    assert f"run {run.id} joined {run.id}".encode() in out
    assert b"binary \x00\xff\xfe out\n" in out  # passed through byte for byte
    assert err.startswith(b"warning: to stderr\n")
    assert err.decode().splitlines()[-1] == f"amltrack: run {run.id} completed"
    assert run.metric("loss").values == [1.0, 0.5, 1.0 / 3, 0.25, 0.2] and run.metric("phase").values == [
        "done"
    ]
    check_logs(run, out, err)
    assert run.read_artifact("logs/stdout.txt") == out
    assert run.read_artifact("logs/stderr.txt") == b"warning: to stderr\n"
    assert run.info["error"] is None and "child.py" in " ".join(run.info["argv"])


def test_exit_3_fails_the_run_with_the_stderr_tail(store: Path, child: Path) -> None:
    code, out, err = finish(amltrack_run(store, sys.executable, str(child), "3"))
    assert code == 3
    run = only_run(store)
    assert run.status == "failed"
    assert run.info["error"]["type"] == "ExitCode" and run.info["error"]["message"] == "exit code 3"
    assert run.info["error"]["traceback"] == "warning: to stderr\n"
    assert err.decode().splitlines()[-1] == f"amltrack: run {run.id} failed (exit code 3)"
    assert len(run.metric("loss")) == 5
    check_logs(run, out, err)


def test_sigkill_marks_the_run_killed_and_exits_137(store: Path, child: Path) -> None:
    code, out, err = finish(amltrack_run(store, sys.executable, str(child), "-9", options=("--quiet",)))
    assert code == 128 + 9
    run = only_run(store)
    assert run.status == "killed"
    assert run.info["error"]["type"] == "Signal" and "SIGKILL" in run.info["error"]["message"]
    assert err == b"warning: to stderr\n"  # --quiet: no line of amltrack's own
    check_logs(run, out, err)


def test_logs_are_readable_while_the_command_runs(store: Path, child: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    proc = amltrack_run(store, sys.executable, str(child), "wait", str(go))
    try:
        run = wait_until(lambda: amltrack.Store(store).runs(), what="the run to exist")[0]
        stdout_log = run.dir / "artifacts" / "logs" / "stdout.txt"
        wait_until(
            lambda: stdout_log.exists() and b"ready\n" in stdout_log.read_bytes(), what="ready in the log"
        )
        assert run.reload().status == "running"
        live = subprocess.run(
            [
                sys.executable,
                "-m",
                "amltrack",
                "history",
                "info",
                "-r",
                run.id,
                "-a",
                "logs/stdout.txt",
                "--store",
                str(store),
            ],
            capture_output=True,
            env=child_env(),
            timeout=60,
        )
        assert live.returncode == 0 and live.stdout.endswith(b"ready\n")

        # Listed while it runs, with the size and hash of what is there (updated every 2 s).
        def listed() -> dict:
            return {a["path"]: a for a in run.artifacts()}

        entry = wait_until(
            lambda: (
                listed().get("logs/stdout.txt", {}).get("size") == stdout_log.stat().st_size
                and listed()["logs/stdout.txt"]
            ),
            what="the log's manifest entry",
        )
        assert entry["status"] == "stored"
        assert entry["sha256"] == hashlib.sha256(stdout_log.read_bytes()).hexdigest()
        assert "logs/stderr.txt" in listed()
        go.touch()
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0
    assert run.reload().status == "completed" and run.read_artifact("logs/stdout.txt").endswith(
        b"after the wait\n"
    )
    check_logs(run, out, err)


def start_interruptible(store: Path, tmp_path: Path) -> tuple[subprocess.Popen, list[bytes]]:
    script = tmp_path / "interruptible.py"
    script.write_text(INTERRUPTIBLE)
    # A session of its own: no controlling terminal, so the signal below reaches amltrack alone,
    # as `kill -INT` or a job scheduler would send it.
    proc = amltrack_run(store, sys.executable, str(script), start_new_session=True)
    chunks: list[bytes] = []

    def ready() -> bool:
        if select.select([proc.stdout], [], [], 0)[0]:
            chunks.append(os.read(proc.stdout.fileno(), 65536))
        return b"ready\n" in b"".join(chunks)

    wait_until(ready, timeout=60, what="the child to be ready")
    return proc, chunks


def test_sigint_is_forwarded_and_amltrack_waits_for_the_child(store: Path, tmp_path: Path) -> None:
    proc, _ = start_interruptible(store, tmp_path)
    try:
        os.kill(proc.pid, signal.SIGINT)
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 5, err  # the child's own exit code: amltrack outlived it
    run = only_run(store)
    assert run.metric("sigints").values == [1]  # logged during the child's cleanup, delivered once
    assert run.status == "killed"
    assert run.info["error"]["message"] == "exit code 5 after SIGINT"
    assert err.decode().splitlines()[-1] == f"amltrack: run {run.id} killed (exit code 5 after SIGINT)"
    assert run.read_artifact("logs/stdout.txt").endswith(b"cleaned up after 1 SIGINT\n")


PLAIN_WAIT = "print('ready', flush=True)\nimport time\nwhile True:\n    time.sleep(0.01)\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("logs", [False, True], ids=["plain", "logging"])
def test_a_child_ended_by_the_forwarded_signal_is_killed(
    store: Path, child: Path, tmp_path: Path, sig: signal.Signals, logs: bool
) -> None:
    if logs:
        command = (sys.executable, str(child), "wait", str(tmp_path / "never"))
    else:
        (tmp_path / "plain.py").write_text(PLAIN_WAIT)
        command = (sys.executable, str(tmp_path / "plain.py"))
    proc = amltrack_run(store, *command, start_new_session=True)
    try:
        log = wait_until(lambda: amltrack.Store(store).runs(), what="the run")[0].dir
        stdout_log = log / "artifacts" / "logs" / "stdout.txt"
        wait_until(lambda: stdout_log.exists() and b"ready" in stdout_log.read_bytes(), what="ready")
        os.kill(proc.pid, sig)
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    run = only_run(store)
    assert run.status == "killed", err
    message = run.info["error"]["message"]
    if logs and sig == signal.SIGTERM:  # the child's amltrack logger turns SIGTERM into an orderly exit 143
        assert code == 143 and message == "exit code 143 after SIGTERM", err
    else:  # Python dies of an unhandled SIGINT (KeyboardInterrupt) or SIGTERM by that signal
        assert code == 128 + sig and message == f"killed by signal {int(sig)} ({sig.name})", err
    if sig == signal.SIGINT:
        assert b"KeyboardInterrupt" in run.read_artifact("logs/stderr.txt")
    check_logs(run, out, err)


PTY_WRAPPER = (
    "import fcntl, os, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"  # the pty becomes this new session's terminal
    "os.execv(sys.executable, [sys.executable, '-m', 'amltrack', *sys.argv[1:]])\n"
)


def test_ctrl_c_at_a_terminal_reaches_the_child_once(store: Path, tmp_path: Path) -> None:
    import pty

    script = tmp_path / "interruptible.py"
    script.write_text(INTERRUPTIBLE)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", PTY_WRAPPER, "run", "--store", str(store), "--", sys.executable, str(script)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env=child_env(),
    )
    os.close(slave)
    seen: list[bytes] = []

    def read_some() -> bytes:
        if select.select([master], [], [], 0.05)[0]:
            try:
                seen.append(os.read(master, 65536))
            except OSError:  # EIO: every process holding the terminal has gone
                seen.append(b"")
        return b"".join(seen)

    try:
        wait_until(lambda: b"ready" in read_some(), timeout=60, what="the child to be ready")
        os.write(master, b"\x03")  # Ctrl-C: the terminal signals its foreground process group
        wait_until(
            lambda: b"amltrack: run" in read_some() or proc.poll() is not None,
            timeout=60,
            what="amltrack to finish",
        )
        assert proc.wait(timeout=30) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    run = only_run(store)
    assert run.metric("sigints").values == [1], b"".join(seen)
    assert run.status == "killed"


def test_a_run_inside_a_run_is_a_new_run(store: Path, child: Path) -> None:
    with amltrack.start_run("outer", store=store, outputs=None) as outer:
        env = child_env(AMLTRACK_RUN_ID=outer.run_id, AMLTRACK_STORE=str(store))
        code, out, err = finish(amltrack_run(store, sys.executable, str(child), "0", env=env))
    assert code == 0, err
    inner = [r for r in amltrack.Store(store).runs() if r.id != outer.run_id]
    assert len(inner) == 1 and inner[0].status == "completed"
    assert f"run {inner[0].id} joined {inner[0].id}".encode() in out
    assert len(inner[0].metric("loss")) == 5
    assert amltrack.Store(store).run(outer.run_id).metrics() == {}


def test_a_missing_command_is_127_and_makes_no_run(store: Path) -> None:
    code, out, err = finish(amltrack_run(store, "amltrack-no-such-command-xyz"))
    assert code == 127 and out == b""
    assert (
        err.decode()
        == "amltrack: command 'amltrack-no-such-command-xyz' was not found; check its name and PATH\n"
    )
    assert amltrack.Store(store).runs() == []


def test_a_file_that_cannot_be_executed_is_126(store: Path, tmp_path: Path) -> None:
    script = tmp_path / "not_executable.sh"
    script.write_text("echo hi\n")
    code, _, err = finish(amltrack_run(store, str(script)))
    assert code == 126 and err.decode().startswith("amltrack: ") and err.count(b"\n") == 1


def test_no_command_is_a_one_line_error(store: Path) -> None:
    for args in ((), ("--",)):
        out = subprocess.run(
            [sys.executable, "-m", "amltrack", "run", "--store", str(store), *args],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and "needs a command" in out.stderr


def test_history_shows_the_wrapped_run_as_json(store: Path, child: Path) -> None:
    code, _, _ = finish(amltrack_run(store, sys.executable, str(child), "3"))
    assert code == 3
    info = json.loads(
        subprocess.run(
            [sys.executable, "-m", "amltrack", "history", "last", "--json", "--store", str(store)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        ).stdout
    )
    assert info["status"] == "failed" and info["metrics"]["loss"]["count"] == 5
    assert {a["path"] for a in info["artifacts"]} == {"logs/stdout.txt", "logs/stderr.txt"}


def test_a_process_left_holding_the_output_does_not_hold_amltrack(store: Path) -> None:
    code, out, err = finish(amltrack_run(store, "sh", "-c", "sleep 600 & echo $!; echo bye >&2"))
    leftover = int(out.split()[0])
    try:
        assert code == 0, err
        # Order, not time: amltrack is done while the process that holds its output still runs.
        os.kill(leftover, 0)  # raises if it is gone: amltrack would then have waited for it
        run = only_run(store)
        assert run.status == "completed" and run.read_artifact("logs/stderr.txt") == b"bye\n"
        check_logs(run, out, err)
    finally:
        os.kill(leftover, signal.SIGKILL)


def test_the_commands_outputs_are_mirrored(store: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write = "import os; os.makedirs('outputs/ckpt', exist_ok=True); open('outputs/ckpt/model.bin', 'wb').write(b'\\x00w' * 50)"
    code, _, err = finish(amltrack_run(store, sys.executable, "-c", write, cwd=work))
    assert code == 0, err
    run = only_run(store)
    assert run.info["outputs"] == str(work / "outputs")
    assert run.read_artifact("outputs/ckpt/model.bin") == b"\x00w" * 50
    assert {a["path"]: a["source"] for a in run.artifacts()}["outputs/ckpt/model.bin"] == "outputs"

    other = tmp_path / "other"
    other.mkdir()
    code, _, err = finish(
        amltrack_run(
            store, sys.executable, "-c", "print('no mirror')", cwd=other, options=("--outputs", "none")
        )
    )
    assert code == 0, err
    latest = amltrack.Store(store).last()
    assert latest.info["outputs"] is None and not (other / "outputs").exists()
    assert {a["path"] for a in latest.artifacts()} == {"logs/stdout.txt", "logs/stderr.txt"}


def test_the_logs_stay_listed_when_amltrack_run_itself_is_killed(
    store: Path, child: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    proc = amltrack_run(store, sys.executable, str(child), "wait", str(go))
    try:
        run = wait_until(lambda: amltrack.Store(store).runs(), what="the run to exist")[0]
        wait_until(
            lambda: {a["path"] for a in run.artifacts()} >= {"logs/stdout.txt", "logs/stderr.txt"},
            what="the logs in the manifest",
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        go.touch()  # the orphaned child ends too
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    run = amltrack.Store(store).run(run.id)
    wait_until(lambda: run.reload().status == "crashed", what="the run to read as crashed")
    assert {a["path"]: a["status"] for a in run.artifacts()}["logs/stdout.txt"] == "stored"


# Writes a checkpoint, waits until the mirror has stored it, then deletes it (a rotating checkpoint).
ROTATE = r"""
import json, os, pathlib, time
manifest = pathlib.Path(os.environ["AMLTRACK_STORE"], "runs", os.environ["AMLTRACK_RUN_ID"], "artifacts.jsonl")
os.makedirs("outputs", exist_ok=True)
with open("outputs/ckpt_0.pt", "wb") as f:
    f.write(b"weights")

def stored():
    lines = manifest.read_bytes().split(b"\n")[:-1] if manifest.exists() else []
    return any(json.loads(x)["path"] == "outputs/ckpt_0.pt" and json.loads(x)["status"] == "stored" for x in lines)

deadline = time.monotonic() + 120
while not stored() and time.monotonic() < deadline:
    time.sleep(0.05)
os.remove("outputs/ckpt_0.pt")
"""


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep-deleted"])
def test_keep_deleted_keeps_the_copy_of_a_deleted_output(store: Path, tmp_path: Path, keep: bool) -> None:
    work = tmp_path / "work"
    work.mkdir()
    options = ("--keep-deleted",) if keep else ()
    code, _, err = finish(amltrack_run(store, sys.executable, "-c", ROTATE, cwd=work, options=options))
    assert code == 0, err
    run = only_run(store)
    entry = {a["path"]: a for a in run.artifacts()}["outputs/ckpt_0.pt"]
    assert entry["status"] == "deleted" and entry["kept"] is keep
    if keep:
        assert run.read_artifact("outputs/ckpt_0.pt") == b"weights"
    else:
        assert not (run.dir / "artifacts" / "outputs" / "ckpt_0.pt").exists()


def test_an_outputs_folder_inside_the_store_is_a_one_line_error(store: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "amltrack",
            "run",
            "--store",
            str(store),
            "--outputs",
            str(store / "runs"),
            "--",
            sys.executable,
            "-c",
            "pass",
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("amltrack: outputs=") and "is inside the store" in out.stderr
    assert out.stderr.count("\n") == 1
