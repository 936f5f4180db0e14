from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import amltrack
from amltrack import _lifecycle

# Hypothesis times its examples and their generation; on a loaded or single-core machine both take
# longer, and a test must not fail for that. (A test's own @settings replaces these, so each of those
# suppresses too_slow as well.)
settings.register_profile("amltrack", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("amltrack")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Runs record the git state of the working directory and default to ./.amltrack and ./outputs:
    # start every test in its own empty directory, not in this repository.
    monkeypatch.chdir(tmp_path)
    # A run created in-process exports these for its children; keep tests independent.
    for var in ("AMLTRACK_RUN_ID", "AMLTRACK_STORE", "AMLTRACK_EXPERIMENT", "AMLTRACK_OUTPUTS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def _no_leaks():
    """Every logger a test opens is finished, and no writer thread outlives its test."""
    yield
    _lifecycle.reset()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t.name.startswith("amltrack-")]
        if not leaked:
            break
        time.sleep(0.01)
    assert not leaked, f"threads leaked: {leaked}"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def logger(store: Path) -> amltrack.Logger:
    return amltrack.get_logger("test", store=store, outputs=None)


def wait_until(
    cond: Callable[[], object], timeout: float = 60.0, what: str = "condition", interval: float = 0.01
) -> object:
    """Poll ``cond`` until it is true. The timeout only bounds a test that is failing anyway, so it is
    generous: a loaded or single-core machine must never fail a test by being slow."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def ui_process(store: Path | str, log: Path, **popen: Any) -> Iterator[str]:
    """A real ``amltrack ui --port 0`` over ``store``, its stderr in ``log``: yields its URL (ending in
    ``/``), then stops it with SIGTERM (SIGKILL if it lingers) and checks it printed no traceback."""
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amltrack", "ui", "--store", str(store), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=child_env(),
            **popen,
        )
    try:
        found = wait_until(
            lambda: proc.poll() is not None or re.search(r"http://127\.0\.0\.1:\d+/", log.read_text()),
            60,
            "the UI to print its URL",
        )
        assert proc.poll() is None, log.read_text()
        yield found.group(0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
    assert "Traceback" not in log.read_text(), log.read_text()


def child_env(**extra: str) -> dict[str, str]:
    # Not the runner's terminal size either: a CLI child's tables fit $COLUMNS, and a test that
    # wants a width sets its own.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AMLTRACK_") and k not in ("COLUMNS", "LINES")
    }
    env.update(extra)
    return env
