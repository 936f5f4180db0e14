"""SIGKILL at random moments while logging: the store opens, every waited record is there once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import orjson

import amltrack

from ..conftest import child_env
from .conftest import size

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "log_until_killed.py"


def kill_once(store: Path, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(store), str(seed)], stdout=subprocess.PIPE,
                            text=True, env=child_env(), start_new_session=True)
    waited = -1
    try:
        first = proc.stdout.readline().split()
        assert first[:1] == ["run"], first
        run_id = first[1]
        for _ in range(rng.randint(1, 4)):
            line = proc.stdout.readline()
            if not line:
                break
            waited = int(line.split()[1])
        time.sleep(rng.random() * 0.05)  # a random moment after the last wait() returned
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        for line in proc.stdout:  # waits that returned before the kill landed
            parts = line.split()
            if len(parts) == 2 and line.endswith("\n"):  # the kill can cut a line short
                waited = max(waited, int(parts[1]))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    assert waited >= 0, f"seed {seed}: no wait() returned before the kill"
    return waited, check(store, run_id, waited, seed)


def check(store: Path, run_id: str, waited: int, seed: int) -> int:
    run = amltrack.Store(store).run(run_id)
    assert run.status == "crashed", (seed, run.status)
    raw = (run.dir / "metrics.jsonl").read_bytes()
    lines = raw.split(b"\n")
    for line in lines[:-1]:
        orjson.loads(line)  # every complete line is valid JSON
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn last line is expected and reported
        metrics = run.metrics()
    x = metrics["x"]
    assert x.steps == list(range(len(x))), f"seed {seed}: steps not contiguous or duplicated"
    assert x.values == [s / 4 for s in x.steps], f"seed {seed}: wrong values"
    assert len(x) > waited, f"seed {seed}: waited for step {waited}, only {len(x)} on disk"
    y = metrics.get("y")
    assert y is None or y.values == [3 * s for s in y.steps]
    return len(x)


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    n = size(8, 200)
    base = random.randrange(1_000_000)
    for i in range(n):
        kill_once(tmp_path / f"s{i}", base + i)
