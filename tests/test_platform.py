"""The macOS and Windows code paths, taken for real on Linux through ``_platform.forced()``: process
liveness without /proc and without ``os.kill(pid, 0)``, appends locked through ``msvcrt.locking``,
Ctrl-Break handled as Ctrl-C, the outputs mirror by polling, and artifact names a Windows file system
cannot hold."""

from __future__ import annotations

import ast
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import amltrack
from amltrack import _files, _format, _metadata, _mirror, _platform
from amltrack._errors import InvalidPathError

from .conftest import child_env, wait_until

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for Windows' msvcrt.locking with its semantics where they matter here: a lock on a
# byte range taken from the current position, LK_NBLCK failing at once with OSError while another
# handle holds it, held per handle (so flock underneath, not fcntl's per-process record locks). It
# checks the caller locks one byte at _files.WINDOWS_LOCK_OFFSET, and counts the tries that failed.
FAKE_MSVCRT = """
import fcntl, os

class FakeMsvcrt:
    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4

    def __init__(self, offset):
        self.offset = offset
        self.calls = []
        self.busy = 0

    def locking(self, fd, mode, nbytes):
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        self.calls.append((mode, pos, nbytes))
        if pos != self.offset or nbytes != 1:
            raise AssertionError(f"locking({mode}) at {pos} for {nbytes} bytes")
        if mode == self.LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
        elif mode == self.LK_NBLCK:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.busy += 1
                raise OSError(36, "Resource deadlock avoided")
        else:
            raise AssertionError(f"mode {mode} is not used")
"""
_ns: dict = {}
exec(FAKE_MSVCRT, _ns)
FakeMsvcrt = _ns["FakeMsvcrt"]


def fake_msvcrt():
    return FakeMsvcrt(_files.WINDOWS_LOCK_OFFSET)


def windows_child(break_signal: int | None = None) -> str:
    """The first lines of a child's script that acts as Windows (forcing is per process)."""
    return (
        FAKE_MSVCRT
        + "from amltrack import _platform, _files\n"
        + "_forced = _platform.forced(\n"
        + f"    'windows', msvcrt=FakeMsvcrt(_files.WINDOWS_LOCK_OFFSET), break_signal={break_signal!r}\n"
        + ")\n"
        + "_forced.__enter__()  # kept: a dropped generator would end the forcing\n"
    )


# ----------------------------------------------------------------- the one place that chooses


def test_this_system_is_linux_and_each_preset_says_what_it_lacks() -> None:
    assert _platform.current().name == "linux" and _platform.current().proc
    win, mac = _platform.preset("windows"), _platform.preset("macos")
    assert (win.proc, win.locking, win.observer, win.windows_names, win.fold_case) == (
        False,
        "msvcrt",
        "polling",
        True,
        True,
    )
    assert (mac.proc, mac.locking, mac.observer, mac.windows_names, mac.fold_case) == (
        False,
        "flock",
        "polling",
        False,
        True,
    )
    assert _platform.preset("freebsd14").fold_case is False


def test_forcing_ends_with_its_block() -> None:
    before = _platform.current()
    with _platform.forced("windows", break_signal=signal.SIGUSR1) as p:
        assert _platform.current() is p and p.windows and p.break_signal == signal.SIGUSR1
    assert _platform.current() is before


def test_only_the_platform_module_asks_which_system_this_is() -> None:
    offenders = []
    for path in sorted((ROOT / "amltrack").rglob("*.py")):
        if path.name == "_platform.py":
            continue
        text = path.read_text()
        for needle in ("sys.platform", "os.name ==", "platform.system()"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


# ----------------------------------------------------------------- process liveness


def _kill_zero_calls(tree: ast.AST) -> list[int]:
    """Lines of calls ``<anything>.kill(pid, 0)`` or ``kill(pid, 0)``: on Windows os.kill with 0
    ends the process (TerminateProcess with exit code 0)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name != "kill" or len(node.args) < 2:
            continue
        sig = node.args[1]
        if isinstance(sig, ast.Constant) and sig.value == 0:
            lines.append(node.lineno)
    return lines


def test_nothing_under_amltrack_calls_os_kill_with_signal_0() -> None:
    found = {}
    for path in sorted((ROOT / "amltrack").rglob("*.py")):
        lines = _kill_zero_calls(ast.parse(path.read_text(), str(path)))
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert found == {}
    assert _kill_zero_calls(ast.parse("import os\nos.kill(pid, 0)\n")) == [2]  # the check finds one


@pytest.mark.parametrize("name", ["linux", "macos", "windows"])
def test_listing_a_running_run_sends_no_signal(
    name: str, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No amltrack code signals the run's process (psutil's own POSIX pid_exists does, harmlessly:
    on Windows it opens the process instead)."""
    logger = amltrack.get_logger("m", store=store, outputs=None)
    sent = []
    real_kill = os.kill

    def kill(*args):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.split(".")[0] == "amltrack":
            sent.append((caller, args))
        return real_kill(*args)

    monkeypatch.setattr(os, "kill", kill)
    with _platform.forced(name, msvcrt=fake_msvcrt()):
        assert [r.status for r in amltrack.Store(store).runs()] == ["running"]
    assert sent == []
    logger.finish()


@pytest.fixture(params=["proc", "psutil"])
def liveness(request: pytest.FixtureRequest):
    """Each test twice: with /proc (Linux) and through psutil (macOS, Windows)."""
    with _platform.forced(proc=request.param == "proc"):
        yield request.param


def _ids(pid: int) -> tuple[int | None, float | None]:
    return _metadata.process_start_time(pid), _metadata.process_created(pid)


def test_this_process_is_alive(liveness: str) -> None:
    start, created = _ids(os.getpid())
    assert (start is None) == (liveness == "psutil") and (created is None) == (liveness == "proc")
    assert _metadata.pid_alive(os.getpid(), start, created)
    assert _metadata.pid_alive(os.getpid())  # an old run.json without the process's identity


def test_a_reused_pid_is_told_apart(liveness: str) -> None:
    start, created = _ids(os.getpid())
    if liveness == "proc":
        assert not _metadata.pid_alive(os.getpid(), start + 1, None)
    else:
        assert not _metadata.pid_alive(os.getpid(), None, created - 60)
        assert _metadata.pid_alive(os.getpid(), None, created + _metadata.CREATED_TOLERANCE / 2)


def test_an_ended_process_and_a_zombie_are_not_alive(liveness: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    pid = child.pid
    wait_until(lambda: not _metadata.pid_alive(pid), what="the zombie read as ended")  # not reaped yet
    assert child.poll() == 0  # reaped only now
    assert not _metadata.pid_alive(pid) and not _metadata.pid_alive(-1) and not _metadata.pid_alive(0)


def test_process_info_records_the_identity_each_platform_can_check() -> None:
    info = _metadata.process_info()
    assert type(info["pid_start"]) is int and info["pid_created"] is None
    with _platform.forced("windows"):
        info = _metadata.process_info()
    assert info["pid_start"] is None and type(info["pid_created"]) is float
    assert abs(info["pid_created"] - time.time()) < 24 * 3600 * 365


def _run_json(store: Path, run_id: str) -> Path:
    return store / "runs" / run_id / "run.json"


def test_old_run_json_files_read_as_before(store: Path) -> None:
    """A run.json written before pid_created existed has only pid_start (Linux clock ticks)."""
    logger = amltrack.get_logger("m", store=store, outputs=None)
    path = _run_json(store, logger.run_id)
    info = orjson.loads(path.read_bytes())
    info.pop("pid_created")
    path.write_bytes(orjson.dumps(info))
    assert amltrack.Store(store).run(logger.run_id).status == "running"
    path.write_bytes(orjson.dumps({**info, "pid_start": info["pid_start"] + 1}))  # the pid was reused
    assert amltrack.Store(store).run(logger.run_id).status == "crashed"
    logger.finish()


def test_a_run_ended_from_task_manager_reads_as_crashed(tmp_path: Path, store: Path) -> None:
    """Windows has no SIGTERM: Task Manager's End task (and os.kill, and closing the console) end
    the process at once (TerminateProcess), as SIGKILL does here; the liveness check says crashed."""
    script = tmp_path / "train.py"
    script.write_text(
        windows_child()
        + "import amltrack, time\n"
        + "lg = amltrack.get_logger('m', outputs=None)\n"
        + "lg.log('loss', 1.0).wait()\n"
        + "print(lg.run_id, flush=True)\n"
        + "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(AMLTRACK_STORE=str(store)),
    )
    try:
        run_id = proc.stdout.readline().strip()
        info = orjson.loads(_run_json(store, run_id).read_bytes())
        assert info["pid_start"] is None and type(info["pid_created"]) is float  # as Windows records it
        with _platform.forced("windows", msvcrt=fake_msvcrt()):
            assert amltrack.Store(store).run(run_id).status == "running"
            proc.kill()
            proc.wait(10)
            assert amltrack.Store(store).run(run_id).status == "crashed"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


# ----------------------------------------------------------------- Ctrl-Break


def test_ctrl_break_is_handled_as_ctrl_c(tmp_path: Path, store: Path) -> None:
    """SIGUSR1 stands in for SIGBREAK: unhandled, either ends the process outright."""
    script = tmp_path / "train.py"
    script.write_text(
        windows_child(break_signal=int(signal.SIGUSR1))
        + "import amltrack, time\n"
        + "lg = amltrack.get_logger('m', outputs=None)\n"
        + "try:\n"
        + "    for i in range(10**9):\n"
        + "        lg.log('loss', float(i))\n"
        + "        if i == 100:\n"
        + "            print(lg.run_id, flush=True)\n"
        + "        time.sleep(0.001)\n"
        + "except KeyboardInterrupt:\n"
        + "    print('KeyboardInterrupt', flush=True)\n"
        + "    raise\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(AMLTRACK_STORE=str(store)),
    )
    run_id = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in out, err  # the script's own Ctrl-C handling sees it
    assert proc.returncode != 0 and proc.returncode != -signal.SIGUSR1
    run = amltrack.Store(store).run(run_id)
    assert run.status == "killed"
    assert len(run.metrics()["loss"]) >= 101  # everything logged was written first


def test_the_mirror_helper_ignores_the_terminals_interrupts(tmp_path: Path) -> None:
    script = (
        "import os, signal, time\n"
        "from amltrack import _platform, _mirror\n"
        "_forced = _platform.forced('windows', break_signal=signal.SIGUSR1)\n"
        "_forced.__enter__()\n"
        "_mirror._ignore_console_interrupts()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
        "time.sleep(0.1)\n"
        "print('still here')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert out.stdout == "still here\n", out.stderr


def test_the_mirror_helper_leaves_the_terminal_on_each_platform() -> None:
    assert _mirror._apart(_platform.preset("linux")) == {"start_new_session": True}
    assert _mirror._apart(_platform.preset("macos")) == {"start_new_session": True}
    assert _mirror._apart(_platform.preset("windows")) == {"creationflags": 0x200}  # CREATE_NEW_PROCESS_GROUP


# ----------------------------------------------------------------- locking


def test_appends_lock_one_byte_far_past_the_end_through_msvcrt(tmp_path: Path) -> None:
    fake = fake_msvcrt()
    f = _files.AppendFile(tmp_path / "m.jsonl")
    with _platform.forced("windows", msvcrt=fake):
        assert f.append([b"a\n"]) == 0
        assert f.append([b"b\n", b"c\n"]) == 2
    f.close()
    assert (tmp_path / "m.jsonl").read_bytes() == b"a\nb\nc\n"
    far = _files.WINDOWS_LOCK_OFFSET
    assert fake.calls == [(fake.LK_NBLCK, far, 1), (fake.LK_UNLCK, far, 1)] * 2


def test_a_held_windows_lock_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    fake = fake_msvcrt()
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another handle holds the lock (the fake's flock)
    f = _files.AppendFile(path)
    import threading

    done = threading.Event()

    def append() -> None:
        with _platform.forced("windows", msvcrt=fake):
            f.append([b"x\n"])
        done.set()

    t = threading.Thread(target=append)
    t.start()
    wait_until(lambda: fake.busy >= 3, what="three tries while the lock is held")
    assert not done.is_set() and path.read_bytes() == b""
    fcntl.flock(holder, fcntl.LOCK_UN)
    os.close(holder)
    t.join(30)
    assert done.is_set() and path.read_bytes() == b"x\n"
    f.close()


def test_a_torn_line_is_ended_without_pread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"a":1}\n{"torn')
    monkeypatch.delattr(os, "pread")  # Windows has none
    f = _files.AppendFile(path)
    with _platform.forced("windows", msvcrt=fake_msvcrt()):
        f.append([b'{"b":2}\n'])
    f.close()
    assert path.read_bytes() == b'{"a":1}\n{"torn\n{"b":2}\n'


def test_processes_appending_to_one_run_on_windows_never_interleave(tmp_path: Path, store: Path) -> None:
    """Four processes log into one run through the Windows locking path; every line is whole."""
    first = amltrack.get_logger("m", store=store, outputs=None)
    script = tmp_path / "worker.py"
    script.write_text(
        windows_child()
        + "import amltrack, sys\n"
        + "lg = amltrack.get_logger(run_id=sys.argv[1], outputs=None)\n"
        + "for i in range(3000):\n"
        + "    lg.log(f'w{sys.argv[2]}', 'x' * (i % 700), step=i)\n"
        + "    if i % 50 == 0:\n"
        + "        lg.flush()\n"
        + "lg.finish()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), first.run_id, str(n)], env=child_env(AMLTRACK_STORE=str(store))
        )
        for n in range(4)
    ]
    for p in procs:
        assert p.wait(120) == 0
    first.finish()
    lines = (store / "runs" / first.run_id / "metrics.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [orjson.loads(line) for line in lines[:-1]]  # every line whole JSON
    for n in range(4):
        assert [r.get("step") for r in records if r.get("name") == f"w{n}"] == list(range(3000))


# ----------------------------------------------------------------- the outputs mirror


@pytest.mark.parametrize("name", ["macos", "windows"])
def test_the_mirror_polls_from_the_start_and_says_nothing(name: str, tmp_path: Path) -> None:
    import warnings

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with warnings.catch_warnings(record=True) as caught, _platform.forced(name, msvcrt=fake_msvcrt()):
        warnings.simplefilter("always")
        m = _mirror.Mirror(tmp_path / "outputs", run_dir, settle=0.1, quiet=0.3, poll_interval=0.1)
        m.start()
        (tmp_path / "outputs" / "a.txt").write_text("a")
        report = m.stop()
    assert m.mode == "polling" and report["stored"] == 1
    assert [str(w.message) for w in caught if "amltrack" in str(w.message)] == []


def test_no_proc_means_no_mount_table_and_no_watch_limit(tmp_path: Path) -> None:
    with _platform.forced("macos"):
        assert _mirror._fs_type(tmp_path) is None
        assert _mirror._max_user_watches() == "unknown"
    assert _mirror._fs_type(tmp_path) is not None


def test_the_helper_process_polls_where_the_training_process_would(tmp_path: Path, store: Path) -> None:
    with _platform.forced("macos"):
        logger = amltrack.get_logger("m", store=store)
        assert "--polling" in logger._mirror._proc.args
        (tmp_path / "outputs" / "a.txt").write_text("a")
        logger.finish()
    assert amltrack.Store(store).run(logger.run_id).read_artifact("outputs/a.txt") == b"a"
    logger = amltrack.get_logger("m", store=store)
    assert "--polling" not in logger._mirror._proc.args
    logger.finish()


# ----------------------------------------------------------------- names Windows cannot hold

WINDOWS_UNSAFE = {
    "CON": "device name CON",
    "logs/nul.txt": "device name NUL",
    "COM1.tar.gz": "device name COM1",
    "LPT9 .log": "device name LPT9",
    "aux": "device name AUX",
    "2026-01-01T12:00:00.log": "':'",
    "star*.txt": "'*'",
    "what?.txt": "'?'",
    'say"hi".txt': "'\"'",
    "a<b>.txt": "'<'",
    "pipe|d.txt": "'|'",
    "ends.in.dot.": "ends in a dot",
    "folder /x.txt": "ends in a space",
}
WINDOWS_SAFE = ["CONSOLE.txt", "COM10", "nul-result.txt", "cons/tents.txt", "a.b.c", "über/ße.txt"]


def test_windows_unsafe_names_are_refused_on_windows_only() -> None:
    for path, why in WINDOWS_UNSAFE.items():
        assert _format.check_artifact_path(path) == path  # an ordinary file name on Linux and macOS
        with _platform.forced("windows"), pytest.raises(InvalidPathError) as e:
            _format.check_artifact_path(path)
        assert why in str(e.value) and "Windows" in str(e.value), (path, str(e.value))
    with _platform.forced("windows"):
        for path in WINDOWS_SAFE[:-1]:
            assert _format.check_artifact_path(path) == path


def test_upload_refuses_them_at_the_call_on_windows(store: Path) -> None:
    with _platform.forced("windows", msvcrt=fake_msvcrt()):
        logger = amltrack.get_logger("m", store=store, outputs=None)
        for path in WINDOWS_UNSAFE:
            with pytest.raises(InvalidPathError, match="Windows file system"):
                logger.upload(path, b"x")
        logger.upload("ok.txt", b"x").wait()
        logger.finish()
        run = amltrack.Store(store).run(logger.run_id)
        assert [a["path"] for a in run.artifacts()] == ["ok.txt"]
        with pytest.raises(InvalidPathError, match="Windows"):
            run.read_artifact("CON")


def test_they_are_stored_on_linux(store: Path) -> None:
    logger = amltrack.get_logger("m", store=store, outputs=None)
    for path in WINDOWS_UNSAFE:
        logger.upload(path, path.encode()).wait()
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    assert all(run.read_artifact(path) == path.encode() for path in WINDOWS_UNSAFE)


def test_the_mirror_records_them_as_skipped_with_the_reason_on_windows(tmp_path: Path) -> None:
    folder, run_dir = tmp_path / "outputs", tmp_path / "run"
    (folder / "logs").mkdir(parents=True)
    run_dir.mkdir()
    with _platform.forced("windows", msvcrt=fake_msvcrt()):
        m = _mirror.Mirror(folder, run_dir, settle=0.1, quiet=0.2, poll_interval=0.1, snapshot={})
        m.start()
        (folder / "logs" / "nul.txt").write_text("n")
        (folder / "12:00.log").write_text("t")
        (folder / "model.pt").write_text("m")
        report = m.stop()
    assert report["failed"] == [] and report["stored"] == 1
    entries = {}
    for line in (run_dir / "artifacts.jsonl").read_bytes().splitlines():
        e = orjson.loads(line)
        entries[e["path"]] = e
    assert entries["outputs/model.pt"]["status"] == "stored"
    for path, why in (("outputs/logs/nul.txt", "device name NUL"), ("outputs/12:00.log", "':'")):
        assert entries[path]["status"] == "skipped", entries[path]
        assert why in entries[path]["reason"] and "Windows" in entries[path]["reason"]
        assert not (run_dir / "artifacts" / path).exists()


@pytest.mark.parametrize("name", ["macos", "windows"])
def test_names_that_differ_only_in_case_are_refused_where_case_is_ignored(name: str, store: Path) -> None:
    with _platform.forced(name, msvcrt=fake_msvcrt()):
        logger = amltrack.get_logger("m", store=store, outputs=None)
        logger.upload("Model.pt", b"1").wait()
        logger.upload("Model.pt", b"2").wait()  # the same name again replaces it, as everywhere
        with pytest.raises(InvalidPathError, match="differs only in case from 'Model.pt'") as e:
            logger.upload("model.pt", b"3")
        assert e.value.clashes_with == "Model.pt"
        with pytest.raises(InvalidPathError, match="only in case"):
            logger.upload("MODEL.PT", b"3")
        logger.finish()
    assert amltrack.Store(store).run(logger.run_id).read_artifact("Model.pt") == b"2"


def test_on_linux_both_spellings_are_artifacts(store: Path) -> None:
    logger = amltrack.get_logger("m", store=store, outputs=None)
    logger.upload("Model.pt", b"1").wait()
    logger.upload("model.pt", b"2").wait()
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    assert (run.read_artifact("Model.pt"), run.read_artifact("model.pt")) == (b"1", b"2")


def test_a_twin_on_disk_is_found_by_its_folded_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What another process (or an earlier one) left: on a file system that ignores case, looking up
    model.pt finds Model.pt. Linux's does not, so the lookup is played by a stand-in for os.stat."""
    root = tmp_path / "artifacts"
    (root / "Ckpt").mkdir(parents=True)
    (root / "Ckpt" / "Model.pt").write_bytes(b"1")
    (root / "exact.txt").write_bytes(b"1")
    real_stat = os.stat

    def stat_ignoring_case(path, *a, **kw):
        try:
            return real_stat(path, *a, **kw)
        except FileNotFoundError:
            pass
        rel = Path(path).relative_to(root).as_posix().casefold()
        for q in root.rglob("*"):
            if q.relative_to(root).as_posix().casefold() == rel:
                return real_stat(q)
        raise FileNotFoundError(path)

    monkeypatch.setattr(_files.os, "stat", stat_ignoring_case)
    assert _files._case_twin(root, "ckpt/model.PT") == "Ckpt"  # the folder is already spelled otherwise
    assert _files._case_twin(root, "Ckpt/model.pt") == "Ckpt/Model.pt"
    assert _files._case_twin(root, "Ckpt/Model.pt") is None  # itself: replaced, as everywhere
    assert _files._case_twin(root, "exact.txt") is None and _files._case_twin(root, "new.txt") is None


def test_every_command_imports_where_signals_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no SIGQUIT or SIGHUP; `amltrack run` is imported by every command, so a signal
    named at import would take the whole CLI down there."""
    import importlib

    from amltrack.cli import _run

    for name in ("SIGQUIT", "SIGHUP"):
        monkeypatch.delattr(signal, name)
    try:
        reloaded = importlib.reload(_run)
        assert signal.SIGINT in reloaded.TERMINAL_SIGNALS and signal.SIGTERM in reloaded.INTERRUPTS
        assert len(reloaded.TERMINAL_SIGNALS) == 1 + hasattr(signal, "SIGBREAK")
    finally:
        monkeypatch.undo()
        importlib.reload(_run)
