"""``amltrack run -- COMMAND``: any command as a tracked run, with no change to it.

This process creates the run and owns it; the command runs as its child with ``AMLTRACK_RUN_ID`` and
``AMLTRACK_STORE`` in its environment, so an amltrack logger in it joins the run. The child's stdout
and stderr pass through to ours and are appended, as they arrive, to the artifacts
``logs/stdout.txt`` and ``logs/stderr.txt``. Its exit sets the run's status. Signals that would end
this process are passed on to the child instead, and this process waits for it: the run is not
finished before the command is.

Everything happens on the main thread (a select loop over the two pipes), so signal handlers run
promptly and there is no thread to leak.

    from amltrack.cli._run import track
    result = track(["python", "train.py"], experiment="mnist")
    result.run_id, result.status, result.exit_code
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._output import CliError, add_store_arg, command_parser, guarded

if TYPE_CHECKING:
    from .._files import Artifacts

__all__ = ["CommandError", "RunResult", "add_parser", "track"]

STDOUT_ARTIFACT = "logs/stdout.txt"
STDERR_ARTIFACT = "logs/stderr.txt"
SOURCE = "run"
READ_SIZE = 1 << 16
TAIL_CHARS = 4000
# After the command exits, its output may still be held open by a process it left behind; read what
# comes for this long, then stop waiting for the end of the pipes.
GRACE = 2.0
POLL = 0.1
RECORD_INTERVAL = 2.0  # seconds between manifest entries for logs that grew
# Signals a terminal sends to its whole foreground process group, the child included when it is in
# ours: forwarding one of those would deliver it twice.
# Windows has no SIGQUIT or SIGHUP (and this module is imported by every command), but its console
# sends Ctrl-Break (SIGBREAK) to every process attached to it, as a terminal sends Ctrl-C.


def _signals(*names: str) -> tuple[int, ...]:
    return tuple(getattr(signal, n) for n in names if hasattr(signal, n))


TERMINAL_SIGNALS = _signals("SIGINT", "SIGQUIT", "SIGHUP", "SIGBREAK")
FORWARDED = (*TERMINAL_SIGNALS, signal.SIGTERM)
INTERRUPTS = _signals("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126


def add_parser(sub: Any) -> None:
    p = command_parser(
        sub,
        "run",
        "run a command as a tracked run",
        "amltrack run --experiment mnist -- python train.py --lr 0.1",
        description=(
            "Run COMMAND as a new tracked run. It inherits the run (AMLTRACK_RUN_ID), so an amltrack "
            "logger in it logs into this run; its stdout and stderr go to the terminal and into the "
            "artifacts logs/stdout.txt and logs/stderr.txt; its exit code sets the status and is "
            "this command's exit code. Ctrl-C and SIGTERM reach the command, and amltrack waits "
            "for it to end."
        ),
    )
    add_store_arg(p)
    p.add_argument(
        "--experiment",
        "-e",
        metavar="E",
        default=None,
        help="the experiment (default: $AMLTRACK_EXPERIMENT, else 'default')",
    )
    p.add_argument("--name", metavar="N", default=None, help="a name for the run")
    p.add_argument(
        "--outputs",
        metavar="DIR",
        default="outputs",
        help="the folder mirrored into the run's artifacts (default ./outputs, or $AMLTRACK_OUTPUTS; "
        "'none' for none)",
    )
    p.add_argument(
        "--keep-deleted",
        action="store_true",
        default=None,
        help="keep the stored copy of a file deleted from the outputs folder (default: removed, unless "
        "$AMLTRACK_OUTPUTS_KEEP_DELETED=1)",
    )
    redact = p.add_mutually_exclusive_group()
    redact.add_argument(
        "--redact",
        metavar="PATTERN",
        action="append",
        default=None,
        help="also redact what this regular expression matches in the recorded command (repeatable; "
        "added to $AMLTRACK_REDACT's; see docs/redaction.md)",
    )
    redact.add_argument(
        "--no-redact",
        action="store_true",
        help="record the command as given, secrets and all (default: likely secrets are [redacted], "
        "unless $AMLTRACK_REDACT=off)",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="do not print the run's id and status at the end"
    )
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARGS...]",
        help="the command and its arguments",
    )
    p.set_defaults(handler=cmd_run)


class RunResult(NamedTuple):
    """What ``track()`` returns: the run, its status, why (for a non-zero exit) and the exit code."""

    run_id: str
    status: str
    exit_code: int
    detail: str | None


class CommandError(CliError):
    """The command could not be started; ``exit_code`` is what a shell gives for that (127 or 126)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Stream:
    """One of the child's output pipes: echoed to our own fd and appended to a log artifact."""

    def __init__(self, run_dir: Path, path: str, echo_fd: int | None) -> None:
        # Opened before the child starts: a run that cannot hold its logs fails without running it.
        from .. import _format as fmt

        log = run_dir / fmt.ARTIFACTS_DIR / path
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log_fd: int | None = os.open(
            log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o666
        )
        self.path = path
        self.echo_fd = echo_fd
        self.pipe: Any = None
        self.fd = -1
        self.digest = hashlib.sha256()
        self.size = 0
        self.error: OSError | None = None
        self.tail = b""
        self.recorded = -1  # the size the manifest last gave for this log

    def attach(self, pipe: Any) -> None:
        self.pipe = pipe
        self.fd = pipe.fileno()

    def feed(self, data: bytes) -> None:
        if self.echo_fd is not None:
            try:
                _write_all(self.echo_fd, data)
            except OSError:
                self.echo_fd = None  # our reader went away: keep storing, stop echoing
        if self.log_fd is not None:
            try:
                _write_all(self.log_fd, data)
                self.digest.update(data)
                self.size += len(data)
            except OSError as e:
                self.error = e
                self._close_log()
        self.tail = (self.tail + data)[-TAIL_CHARS * 4 :]

    def _close_log(self) -> None:
        if self.log_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.log_fd)
            self.log_fd = None

    def close(self) -> None:
        self._close_log()
        if self.pipe is not None:
            with contextlib.suppress(OSError):
                self.pipe.close()

    def record(self, artifacts: Artifacts) -> None:
        """Give the log's size and hash so far in the manifest (again, if it grew since)."""
        if self.recorded == self.size:
            return
        self.recorded = self.size
        if self.error is None:
            artifacts.record(
                self.path, "stored", source=SOURCE, size=self.size, sha256=self.digest.hexdigest()
            )
        else:
            artifacts.record(
                self.path,
                "failed",
                source=SOURCE,
                size=self.size,
                reason=f"cut short after {self.size} bytes: {self.error.strerror or self.error}",
            )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _foreground_group() -> int | None:
    """The foreground process group of our controlling terminal, or None without one."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.tcgetpgrp(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


class _Forwarder:
    """Signal handlers that pass signals on to the child instead of ending this process."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.pending: list[int] = []
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in FORWARDED:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler)
        self._previous.clear()

    def attach(self, proc: Any) -> None:
        self.proc = proc
        pending, self.pending = self.pending, []
        for sig in pending:
            self._send(sig)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        if self.proc is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        proc = self.proc
        if proc.returncode is not None:
            return
        if signum in TERMINAL_SIGNALS:
            if not hasattr(os, "getpgid"):
                return  # Windows: the console sent it to every process attached to it, the child too
            try:
                same_group = os.getpgid(proc.pid) == _foreground_group()
            except OSError:
                same_group = False
            if same_group:
                return  # the terminal sent it to the child's process group too
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def track(
    command: Sequence[str],
    *,
    experiment: str | None = None,
    name: str | None = None,
    store: str | os.PathLike[str] | None = None,
    outputs: str | os.PathLike[str] | None = "outputs",
    echo: bool = True,
    keep_deleted_outputs: bool | None = None,
    redact: Any = True,
) -> RunResult:
    """Run ``command`` as a new tracked run and wait for it; the result has the run's id, status and
    the exit code a shell would give (128+N for a signal). ``outputs`` is mirrored as
    ``get_logger(outputs=)`` mirrors it (``$AMLTRACK_OUTPUTS`` applies; None for no mirror), and
    ``keep_deleted_outputs`` as ``get_logger(keep_deleted_outputs=)``. ``redact`` is
    ``get_logger(redact=)``'s: the run records this process's command line (for ``amltrack run --
    COMMAND``, the command), redacted; the command's output in ``logs/`` is stored as it came.

    Must be called from the main thread (it installs signal handlers for the command's lifetime).
    """
    command = list(command)
    if not command:
        raise CliError("run needs a command, for example: amltrack run -- python train.py")
    if shutil.which(command[0]) is None:
        if "/" in command[0] and os.path.exists(command[0]):
            raise CommandError(f"{command[0]!r} is not an executable file; check it", EXIT_CANNOT_RUN)
        raise CommandError(f"command {command[0]!r} was not found; check its name and PATH", EXIT_NOT_FOUND)
    forwarder = _Forwarder()
    # Before the run exists: the logger installs its own SIGTERM handler only where none is set.
    forwarder.install()
    try:
        # A new run even inside another tracked run: this command is its own run, not a joiner.
        # The outputs mirror (amltrack/_mirror.py) belongs to the run's owner, this process: it
        # watches the folder from here while the command writes to it, and its final sweep runs
        # in end_run() below, after the command has ended.
        from .._logger import end_run, open_run

        logger = open_run(
            experiment,
            name=name,
            store=store,
            outputs=outputs,
            keep_deleted_outputs=keep_deleted_outputs,
            redact=redact,
        )
        try:
            status, error, code = _supervise(command, logger.run_dir, forwarder, echo)
        except BaseException as e:
            end_run(logger, "failed", {"type": type(e).__qualname__, "message": str(e), "traceback": ""})
            raise
        end_run(logger, status, error)
    finally:
        forwarder.restore()
    detail = None
    if error is not None:
        signalled = error["type"] == "Signal"
        detail = f"{_signal_name(code - 128)}; exit code {code}" if signalled else error["message"]
    return RunResult(logger.run_id, status, code, detail)


def _supervise(
    command: list[str], run_dir: Path, forwarder: _Forwarder, echo: bool
) -> tuple[str, dict[str, Any] | None, int]:
    env = dict(os.environ)  # the logger has put AMLTRACK_RUN_ID and AMLTRACK_STORE here
    # The child's output is a pipe now, not a terminal: without this a Python child would hold its
    # prints back in an 8 KiB buffer, and neither the terminal nor the log would see them live.
    env.setdefault("PYTHONUNBUFFERED", "1")
    if forwarder.pending:
        return _not_started(forwarder.pending[0])
    from .._files import Artifacts

    streams: list[_Stream] = []
    artifacts: Artifacts | None = None
    try:
        streams.append(_Stream(run_dir, STDOUT_ARTIFACT, 1 if echo else None))
        streams.append(_Stream(run_dir, STDERR_ARTIFACT, 2 if echo else None))
        # The logs are artifacts from the start, and their manifest entries follow them while the
        # command runs, so `history info` lists them and a crash leaves them listed.
        artifacts = Artifacts(run_dir)
        for s in streams:
            s.record(artifacts)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except OSError as e:
            raise CommandError(
                f"cannot run {command[0]!r}: {e.strerror or e}",
                EXIT_NOT_FOUND if e.errno == 2 else EXIT_CANNOT_RUN,
            ) from None
        streams[0].attach(proc.stdout)
        streams[1].attach(proc.stderr)
        forwarder.attach(proc)
        _pump(proc, streams, artifacts)
        rc = proc.wait()
        for s in streams:
            s.record(artifacts)
    finally:
        for s in streams:
            s.close()
        if artifacts is not None:
            artifacts.close()
    tail = streams[1].tail.decode("utf-8", "replace")[-TAIL_CHARS:]
    interrupts = [sig for sig in forwarder.received if sig in INTERRUPTS]
    if rc == 0:
        return "completed", None, 0
    if rc < 0:
        sig = -rc
        error = {
            "type": "Signal",
            "message": f"killed by signal {sig} ({_signal_name(sig)})",
            "traceback": tail,
        }
        return "killed", error, 128 + sig
    message = f"exit code {rc}"
    if interrupts:  # it was asked to stop, and stopped: killed, as a logger marks a Ctrl-C
        message += f" after {_signal_name(interrupts[0])}"
    return (
        ("killed" if interrupts else "failed"),
        {"type": "ExitCode", "message": message, "traceback": tail},
        rc,
    )


def _not_started(sig: int) -> tuple[str, dict[str, Any] | None, int]:
    error = {"type": "Signal", "message": f"{_signal_name(sig)} before the command started", "traceback": ""}
    return "killed", error, 128 + sig


def _pump(proc: Any, streams: list[_Stream], artifacts: Artifacts) -> None:
    """Move output until both pipes end, or the child has exited and GRACE has passed; every
    RECORD_INTERVAL seconds, give the logs' new sizes and hashes in the manifest."""
    by_fd = {s.fd: s for s in streams}
    next_record = time.monotonic() + RECORD_INTERVAL
    with selectors.DefaultSelector() as sel:
        for s in streams:
            sel.register(s.fd, selectors.EVENT_READ)
        deadline: float | None = None
        while sel.get_map():
            if time.monotonic() >= next_record:
                for s in streams:
                    s.record(artifacts)
                next_record = time.monotonic() + RECORD_INTERVAL
            timeout = POLL if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in sel.select(timeout):
                try:
                    data = os.read(key.fd, READ_SIZE)
                except OSError:
                    data = b""
                if data:
                    by_fd[key.fd].feed(data)
                else:
                    sel.unregister(key.fd)
            if deadline is None:
                if proc.poll() is not None:
                    deadline = time.monotonic() + GRACE
            elif time.monotonic() >= deadline:
                break


@guarded
def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CliError("run needs a command after '--', for example: amltrack run -- python train.py")
    try:
        result = track(
            command,
            experiment=args.experiment,
            name=args.name,
            store=args.store,
            outputs=args.outputs,
            keep_deleted_outputs=args.keep_deleted,
            redact=False if args.no_redact else (args.redact or True),
        )
    except CommandError as e:
        print(f"amltrack: {e}", file=sys.stderr)
        return e.exit_code
    if not args.quiet:
        detail = f" ({result.detail})" if result.detail else ""
        print(f"amltrack: run {result.run_id} {result.status}{detail}", file=sys.stderr)
    return result.exit_code
