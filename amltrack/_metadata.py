"""What a run records about where it ran, and how to tell whether its process is still alive."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
from typing import Any

from . import _platform

GIT_TIMEOUT = 5.0
MAX_DIFF_BYTES = 10 * 1024 * 1024


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` in clock ticks since boot, from ``/proc`` (Linux; None
    elsewhere): exact, and unmoved by changes of the wall clock, so it tells a reused pid from ours."""
    stat = _proc_stat(pid)
    if stat is None:
        return None
    try:
        return int(stat[19])
    except (IndexError, ValueError):
        return None


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` from the state on (``[0]`` is the state), or None."""
    if not _platform.current().proc:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    return stat[stat.rfind(b")") + 2 :].split()


def process_created(pid: int) -> float | None:
    """The creation time of ``pid`` in seconds since the epoch, from psutil: what tells a reused pid
    from ours where there is no ``/proc`` (macOS, Windows). Where there is, None: the clock ticks of
    ``process_start_time()`` do the same without psutil's import (about 15 ms) at every run's start,
    and psutil derives this from the boot time, which moves when the wall clock is set."""
    if _platform.current().proc:
        return None
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


# Seconds by which a recorded creation time may differ from the one read now: psutil's figure for a
# process can move by a rounding error (Windows, macOS) between two processes that read it; a pid
# reused within a second of the first process's start would need a process that lived under a second.
CREATED_TOLERANCE = 1.0


def pid_alive(pid: int, start_time: int | None = None, created: float | None = None) -> bool:
    """Whether process ``pid``, recorded with ``start_time`` (``pid_start``, Linux clock ticks)
    and ``created`` (``pid_created``, seconds since the epoch), is still running on this host.

        pid_alive(info["pid"], info.get("pid_start"), info.get("pid_created"))

    A zombie (finished, not yet reaped) is not alive, nor is another process that got the pid
    since. It only looks: on Windows ``os.kill(pid, 0)`` would end the process, so it is never used.
    """
    if pid <= 0:
        return False
    if _platform.current().proc:
        stat = _proc_stat(pid)
        if stat is None:
            return False  # no such process (a pid hidden from us by hidepid reads as gone too)
        if stat[:1] in ([b"Z"], [b"X"]):  # a zombie has finished; it is only waiting to be reaped
            return False
        if start_time is not None:
            try:
                return int(stat[19]) == start_time
            except (IndexError, ValueError):
                return True
        return True
    return _psutil_alive(pid, created)


def _psutil_alive(pid: int, created: float | None) -> bool:
    import psutil

    if not psutil.pid_exists(pid):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        if created is not None:
            return abs(proc.create_time() - created) <= CREATED_TOLERANCE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except (psutil.AccessDenied, OSError):
        pass  # it exists, owned by someone else
    return True


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def _platform_name() -> str:
    # platform.platform() reads the interpreter binary for its libc version and runs `uname -p`:
    # 10-15 ms at every run's start. The same system, release and machine, without those.
    u = platform.uname()
    return f"{u.system}-{u.release}-{u.machine}"


def process_info() -> dict[str, Any]:
    from . import __version__

    pid = os.getpid()
    return {
        "hostname": socket.gethostname(),
        "user": _user(),
        "pid": pid,
        "pid_start": process_start_time(pid),
        "pid_created": process_created(pid),
        "python": platform.python_version(),
        "platform": _platform_name(),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "amltrack_version": __version__,
    }


def git_info(cwd: str) -> tuple[dict[str, Any] | None, bytes | None]:
    """Commit, branch and dirty flag of the work tree at ``cwd``, and the diff when it is dirty.

    One ``git status --porcelain=v2 --branch`` answers all three; no git or no work tree gives None.
    """
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if out.returncode != 0:
        return None, None
    commit = branch = None
    dirty = False
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split(" ", 2)[2]
            if commit == "(initial)":
                commit = None
        elif line.startswith("# branch.head "):
            branch = line.split(" ", 2)[2]
            if branch == "(detached)":
                branch = None
        elif line and not line.startswith("#"):
            dirty = True
    diff = None
    if dirty and commit:
        try:
            d = subprocess.run(
                ["git", "diff", "HEAD", "--no-color", "--no-ext-diff"],
                cwd=cwd,
                capture_output=True,
                timeout=GIT_TIMEOUT,
                check=False,
            )
            if d.returncode == 0:
                diff = d.stdout[:MAX_DIFF_BYTES]
        except (OSError, subprocess.SubprocessError):
            pass
    return {"commit": commit, "branch": branch, "dirty": dirty}, diff
