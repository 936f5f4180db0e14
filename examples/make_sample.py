"""Regenerate the committed sample store ``.amltrack-sample/`` at the top of the repository.

    python examples/make_sample.py            # deletes and recreates ../.amltrack-sample
    python examples/make_sample.py --out DIR  # somewhere else

Every run is made by the real API in its own child process, started in an empty temporary
directory (no git work tree, so no diff artifact; no ./outputs to mirror) with the AMLTRACK_*
variables removed from its environment:

    experiment   name                  status     what it holds
    classifier   baseline              completed  loss/accuracy curves, params, tags, a weights artifact
    classifier   diverged              failed     an uncaught FloatingPointError: real error info
    classifier   preempted             crashed    SIGKILLed after logging: on file still "running"
    showcase     lists-and-artifacts   completed  list metrics (one with NaN/inf), string metrics,
                                                  artifacts: text, bytes, nested paths, a rewrite
    showcase     long-curve            completed  one metric of exactly 10,000 points

Tests find the runs by experiment and name (``tests/test_sample.py``); run ids change on every
regeneration. The crashed run reads as crashed anywhere: on this host its pid is dead, on any other
host its heartbeat is older than two minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / ".amltrack-sample"
MAX_BYTES = 2 * 1024 * 1024
LONG_POINTS = 10_000

# Each child gets the store as argv[1]; outputs=None so nothing is mirrored from a folder.
BASELINE = """
import math, random, sys
import amltrack

rng = random.Random(1)
params = {"lr": 0.05, "batch_size": 64, "epochs": 3, "weight_decay": 0.0001, "augment": True, "scheduler": None}
with amltrack.start_run("classifier", name="baseline", params=params,
                        tags={"dataset": "two-moons", "stage": "baseline"},
                        store=sys.argv[1], outputs=None) as logger:
    logger.log("optimizer", "sgd")
    step = 0
    for epoch in range(3):
        for _ in range(40):
            loss = 0.7 * math.exp(-step / 35) + 0.05 + rng.uniform(-0.01, 0.01)
            logger.log("loss", round(loss, 5), step=step)
            logger.log("accuracy", round(min(1.0, 1.02 - loss), 5), step=step)
            step += 1
        logger.log("val/accuracy", round(0.80 + 0.06 * epoch, 4), step=epoch)
        logger.log("epoch", epoch, step=epoch)
    logger.log("converged", True)
    logger.upload("weights.json", '{"w": [0.52, -1.31], "b": 0.07}\\n')
"""

DIVERGED = """
import sys
import amltrack

def train_step(step, loss):
    loss = loss * 1.9 + 0.1
    if loss > 1e6:
        raise FloatingPointError(f"loss diverged to {loss:.3g} at step {step}; lower the learning rate")
    return loss

logger = amltrack.get_logger("classifier", name="diverged", params={"lr": 3.0, "batch_size": 64},
                             tags={"dataset": "two-moons", "stage": "sweep"},
                             store=sys.argv[1], outputs=None)
loss = 0.7
for step in range(100):
    loss = train_step(step, loss)
    logger.log("loss", loss, step=step)
"""

PREEMPTED = """
import sys, time
import amltrack

logger = amltrack.get_logger("classifier", name="preempted", params={"lr": 0.02, "batch_size": 128},
                             tags={"dataset": "two-moons", "stage": "sweep"},
                             store=sys.argv[1], outputs=None)
for step in range(25):
    logger.log("loss", round(0.69 - 0.01 * step, 4), step=step)
logger.log("accuracy", 0.61, step=24)
logger.flush(fsync=True)
print("ready", flush=True)
time.sleep(120)  # SIGKILLed here by make_sample.py
"""

LISTS = """
import json, math, os, sys
import amltrack

nan, inf = math.nan, math.inf
params = {"model": "mlp", "hidden": 32, "lr": 0.001, "dropout": 0.1,
          "use_bn": False, "note": "params of every JSON type", "checkpoint": None}
tags = {"owner": "sample", "purpose": "lists+artifacts", "priority": 1}
with amltrack.start_run("showcase", name="lists-and-artifacts", params=params, tags=tags,
                        store=sys.argv[1], outputs=None) as logger:
    logger.log("lr_schedule", [0.001 * (0.5 ** k) for k in range(8)])
    logger.log("class_counts", [412, 388])
    logger.log("weird_values", [1.5, nan, inf, -inf, -2.0, 0])
    for epoch in range(3):
        logger.log("histogram", [epoch + k * 0.25 for k in range(5)], step=epoch)
    logger.log("grad_norm", 0.5)
    logger.log("grad_norm", nan)
    logger.log("grad_norm", inf)
    logger.log("optimizer", "adamw")
    logger.log("label", "NaN")  # a string that looks like a number stays a string
    logger.log("note", "caf\\u00e9 \\u2713 converged")
    logger.log("early_stop", False)

    logger.upload("notes.txt", "first draft, overwritten below\\n")
    logger.upload("notes.txt", "Sample run notes.\\nUnicode: caf\\u00e9 \\u2713\\n")
    logger.upload("data/blob.bin", bytes(range(256)) * 4)
    logger.upload("plots/epoch_3/confusion.csv", "pred,true,count\\n0,0,401\\n0,1,11\\n1,0,9\\n1,1,379\\n")
    with open("config.json", "w") as f:
        json.dump({"layers": [2, 32, 32, 1], "activation": "relu"}, f, indent=2)
    logger.upload_file("config/model.json", "config.json")
"""

LONG = f"""
import math, random, sys
import amltrack

rng = random.Random(3)
with amltrack.start_run("showcase", name="long-curve", params={{"steps": {LONG_POINTS}}},
                        tags={{"purpose": "10k points"}}, store=sys.argv[1], outputs=None) as logger:
    for step in range({LONG_POINTS}):
        logger.log("loss", round(2.0 * math.exp(-step / 2500) + 0.1 + rng.gauss(0, 0.02), 4))
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLTRACK_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_child(workdir: Path, name: str, source: str, store: Path, *, expect_rc: int = 0) -> None:
    d = workdir / name
    d.mkdir()
    script = d / f"{name}.py"
    script.write_text(textwrap.dedent(source).lstrip())
    p = subprocess.run(
        [sys.executable, script.name, str(store)],
        cwd=d,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if p.returncode != expect_rc:
        raise SystemExit(
            f"child {name} exited {p.returncode}, expected {expect_rc}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
        )
    print(f"  {name}: exit {p.returncode}")


def run_crashing_child(workdir: Path, store: Path) -> None:
    d = workdir / "preempted"
    d.mkdir()
    script = d / "preempted.py"
    script.write_text(textwrap.dedent(PREEMPTED).lstrip())
    p = subprocess.Popen(
        [sys.executable, script.name, str(store)],
        cwd=d,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = p.stdout.readline() if p.stdout else ""
        if line.strip() != "ready":
            raise SystemExit(
                f"child preempted did not get ready: {line!r}\n{p.stderr.read() if p.stderr else ''}"
            )
        # Wait for the writer's first summary.json (it carries the heartbeat) before the kill.
        runs = list((store / "runs").iterdir())
        summary = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = [r / "summary.json" for r in runs if (r / "summary.json").exists()]
            if found:
                summary = found[0]
                break
            time.sleep(0.05)
        if summary is None:
            raise SystemExit("child preempted never wrote summary.json")
        time.sleep(0.2)
        p.send_signal(signal.SIGKILL)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()
    print(f"  preempted: killed by signal {-p.returncode}")


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def verify(out: Path) -> None:
    import amltrack
    from amltrack import _store

    store = amltrack.Store(out)
    by_name = {r.name: r for r in store.runs()}
    expected = {
        "baseline": "completed",
        "diverged": "failed",
        "preempted": "crashed",
        "lists-and-artifacts": "completed",
        "long-curve": "completed",
    }
    assert len(by_name) == len(expected), sorted(by_name)
    for name, status in expected.items():
        run = by_name[name]
        assert run.status == status, (name, run.status)
    assert by_name["diverged"].info["error"]["type"] == "FloatingPointError"
    assert len(by_name["long-curve"].metric("loss")) == LONG_POINTS

    # The crashed run read from another host: crashed once its heartbeat is CRASH_AFTER old.
    crashed = by_name["preempted"]
    beat = crashed.cached_summary()["heartbeat"]
    real_hostname, real_time = _store.socket.gethostname, _store.time
    try:
        _store.socket.gethostname = lambda: "another-host.example"  # type: ignore[assignment]
        _store.time = type("T", (), {"time": staticmethod(lambda: beat + _store.CRASH_AFTER + 1)})  # type: ignore[assignment]
        assert crashed.reload().status == "crashed", "another host: not crashed after CRASH_AFTER"
        _store.time = type("T", (), {"time": staticmethod(lambda: beat + 1)})  # type: ignore[assignment]
        assert crashed.reload().status == "running", "another host: a fresh heartbeat should read as running"
    finally:
        _store.socket.gethostname = real_hostname  # type: ignore[assignment]
        _store.time = real_time  # type: ignore[assignment]
    assert crashed.reload().status == "crashed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate the sample store .amltrack-sample/ (deleted first).")
    ap.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    if out.exists():
        if not (out / "store.json").exists():
            raise SystemExit(f"{out} exists and is not an amltrack store; not deleting it")
        shutil.rmtree(out)
    print(f"making {out}")
    with tempfile.TemporaryDirectory(prefix="amltrack-sample-") as tmp:
        work = Path(tmp)
        run_child(work, "baseline", BASELINE, out)
        run_child(work, "diverged", DIVERGED, out, expect_rc=1)
        run_crashing_child(work, out)
        run_child(work, "lists", LISTS, out)
        run_child(work, "long", LONG, out)

    # Lock files are the writers' coordination, not data; the reader does not need them.
    for lock in out.rglob("*.lock"):
        lock.unlink()
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    if leftovers:
        raise SystemExit(f"temporary files left in the sample: {leftovers}")

    verify(out)
    size = du(out)
    print(f"sample: {len(list((out / 'runs').iterdir()))} runs, {size} bytes ({size / 1024:.0f} KiB)")
    if size > MAX_BYTES:
        raise SystemExit(f"the sample is {size} bytes, over the {MAX_BYTES} limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
