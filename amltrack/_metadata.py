"""What a run records about where it ran, and how to tell whether its process is still alive."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
from typing import Any

GIT_TIMEOUT = 5.0
MAX_DIFF_BYTES = 10 * 1024 * 1024


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` in clock ticks (Linux), to tell a reused pid from ours."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    if start_time is not None:
        now = process_start_time(pid)
        if now is not None and now != start_time:
            return False
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X"):  # a zombie has finished; it is only waiting to be reaped
                return False
        except (OSError, IndexError):
            pass
    return True


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def _platform() -> str:
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
        "python": platform.python_version(),
        "platform": _platform(),
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
