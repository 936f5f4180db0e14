"""SIGKILL at random moments while logging: the store opens, every waited record is there once, and a
row (log_metrics()) is there whole or not at all."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import orjson

import amltrack

from ..conftest import child_env
from ..test_columns import as_plain, from_json
from .conftest import size

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "log_until_killed.py"

# Rows as fast as possible, a log() record after each, and every WIDE_EVERY steps a row of WIDE names
# (a line of 70 kB, longer than a batch of small records) between them; now and then wait for a row and
# print its step ("waited STEP", and "waited STEP wide" for a wide row). The small row counts its steps
# by default, as log_metrics() does: 0, 1, 2, ...
WIDE, WIDE_EVERY = 1000, 500
ROWS_SCRIPT = textwrap.dedent(f"""
    import random, sys
    import amltrack
    store, seed = sys.argv[1], int(sys.argv[2])
    logger = amltrack.get_logger("sigkill-rows", store=store, outputs=None)
    print("run", logger.run_id, flush=True)
    rng = random.Random(seed)
    wide = [f"wide/{{j:04d}}/" + "n" * 50 for j in range({WIDE})]
    for i in range(50_000_000):
        h = logger.log_metrics({{"x": i / 4, "y": 3 * i, "odd": i % 2 == 1,
                                 "inf": -float("inf") if i % 3 else float("nan")}})
        logger.log("p", i, step=i)
        if i % {WIDE_EVERY} == 0:
            w = logger.log_metrics({{name: i + j for j, name in enumerate(wide)}}, step=i)
            if rng.random() < 0.05:
                w.wait(timeout=30)
                print("waited", i, "wide", flush=True)
        if rng.random() < 0.001:
            h.wait(timeout=30)
            print("waited", i, flush=True)
""")


def kill_once(store: Path, seed: int, rows: bool = False) -> tuple[int, int]:
    """Start a logging process, SIGKILL it after 1 to 4 of its waits returned, check its run."""
    rng = random.Random(seed)
    args = ["-c", ROWS_SCRIPT] if rows else [str(SCRIPT)]
    proc = subprocess.Popen(
        [sys.executable, *args, str(store), str(seed)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        start_new_session=True,
    )
    waited = wide_waited = -1
    try:
        first = proc.stdout.readline().split()
        assert first[:1] == ["run"], first
        run_id = first[1]
        for _ in range(rng.randint(1, 4)):
            line = proc.stdout.readline()
            if not line:
                break
            waited = int(line.split()[1])
            if line.split()[2:] == ["wide"]:
                wide_waited = waited
        time.sleep(rng.random() * 0.05)  # a random moment after the last wait() returned
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        for line in proc.stdout:  # waits that returned before the kill landed
            parts = line.split()
            if len(parts) in (2, 3) and line.endswith("\n"):  # the kill can cut a line short
                waited = max(waited, int(parts[1]))
                if parts[2:] == ["wide"]:
                    wide_waited = max(wide_waited, int(parts[1]))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    assert waited >= 0, f"seed {seed}: no wait() returned before the kill"
    if rows:
        return waited, check_rows(store, run_id, waited, wide_waited, seed)
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


def check_rows(store: Path, run_id: str, waited: int, wide_waited: int, seed: int) -> int:
    run = amltrack.Store(store).run(run_id)
    assert run.status == "crashed", (seed, run.status)
    raw = (run.dir / "metrics.jsonl").read_bytes()
    for line in raw.split(b"\n")[:-1]:
        orjson.loads(line)  # every complete line is valid JSON
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn last line is expected and reported
        metrics = run.metrics()  # the reader never fails
        assert run.skipped <= 1, f"seed {seed}: {run.skipped} lines skipped, only the last can be torn"
        # the index (raw blocks for the rows) and the JSON Lines alone read the same
        assert as_plain(metrics) == from_json(run.dir), f"seed {seed}: the index disagrees"
    x = metrics["x"]
    n = len(x)
    assert x.steps == list(range(n)), f"seed {seed}: default steps not contiguous or duplicated"
    assert n > waited, f"seed {seed}: waited for step {waited}, only {n} rows on disk"
    # every small row whole: all four entries at every step, with the row's time
    for name, want in (("x", lambda s: s / 4), ("y", lambda s: 3 * s), ("odd", lambda s: s % 2 == 1)):
        m = metrics[name]
        assert m.steps == x.steps and m.values == [want(s) for s in m.steps], f"seed {seed}: {name}"
        assert m.timestamps == x.timestamps, f"seed {seed}: {name} at another time than its row"
    inf = metrics["inf"]
    assert inf.steps == x.steps and inf.timestamps == x.timestamps, f"seed {seed}: inf"
    assert all(math.isnan(v) if s % 3 == 0 else v == -math.inf for s, v in zip(inf.steps, inf.values))
    # the calls land in call order, so what is there is a prefix of them: row i, point i, wide row i
    p = metrics["p"]
    assert p.steps == p.values == list(range(len(p))) and len(p) in (n - 1, n), f"seed {seed}: p"
    wide = sorted(name for name in metrics if name.startswith("wide/"))
    want_wide = list(range(0, len(p), WIDE_EVERY))
    # a wide row can be missing only if it was the last call to land: its row and point are the last
    cut_short = len(p) == n and want_wide[-1:] == [n - 1]
    if not wide:
        assert (not want_wide or cut_short and want_wide == [0]) and wide_waited < 0, (
            f"seed {seed}: wide rows lost"
        )
        return n
    assert len(wide) == WIDE, f"seed {seed}: a wide row read back with {len(wide)} of its {WIDE} names"
    first = metrics[wide[0]]
    assert first.steps == want_wide or cut_short and first.steps == want_wide[:-1], f"seed {seed}: wide rows"
    assert wide_waited < 0 or wide_waited in first.steps, f"seed {seed}: waited wide row {wide_waited} lost"
    for j, name in enumerate(wide):  # every wide row whole: each of its names at each of its steps
        m = metrics[name]
        assert m.steps == first.steps and m.timestamps == first.timestamps, f"seed {seed}: {name}"
        assert m.values == [s + j for s in m.steps], f"seed {seed}: {name}"
    return n


def test_sigkill_at_random_moments_while_logging_rows(tmp_path: Path) -> None:
    n = size(4, 150)
    base = random.randrange(1_000_000)
    for i in range(n):
        kill_once(tmp_path / f"s{i}", base + i, rows=True)
