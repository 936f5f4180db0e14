"""The examples a new user runs first: the README's demo chain and the sweep, as child processes
into a store under ``tmp_path``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

import amltrack

from .conftest import child_env

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def run(*argv: str, cwd: Path, store: Path) -> str:
    p = subprocess.run(
        [*argv],
        cwd=cwd,
        env=child_env(AMLTRACK_STORE=str(store)),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_the_readme_demo_chain_shows_the_run_once_with_one_model_entry(tmp_path: Path, store: Path) -> None:
    # The README's first command: the demo, then `amltrack history last`.
    demo = run(sys.executable, str(EXAMPLES / "train_demo.py"), "--steps", "50", cwd=tmp_path, store=store)
    last = run(sys.executable, "-m", "amltrack", "history", "last", cwd=tmp_path, store=store)
    (r,) = amltrack.Store(store).runs()
    assert r.status == "completed"
    # The demo's own output is one line naming the run and where to look; the run is shown once.
    (line,) = demo.strip().splitlines()
    assert r.id in line and "amltrack history last" in line and "amltrack ui" in line
    shown = demo + last
    assert shown.count("lr_schedule") == 1 and shown.count("outputs/model.npz") == 1
    # The outputs mirror stores the model; nothing else adds a second line for it.
    lines = [orjson.loads(x) for x in (r.dir / "artifacts.jsonl").read_bytes().splitlines()]
    model = [e for e in lines if e["path"] == "outputs/model.npz"]
    assert [(e["status"], e["source"]) for e in model] == [("stored", "outputs")]
    assert r.read_artifact("outputs/model.npz") == (tmp_path / "outputs" / "model.npz").read_bytes()


def test_the_demo_source_has_no_stale_watcher_note() -> None:
    source = (EXAMPLES / "train_demo.py").read_text()
    assert "later issue" not in source and "upload_file" not in source


def test_the_sweep_makes_three_completed_runs_with_their_lr(tmp_path: Path, store: Path) -> None:
    out = run(sys.executable, str(EXAMPLES / "sweep.py"), cwd=tmp_path, store=store)
    runs = amltrack.Store(store).runs()
    assert sorted(r.params["lr"] for r in runs) == [0.01, 0.03, 0.1]
    for r in runs:
        assert r.status == "completed" and r.experiment == "sweep"
        assert r.params == {"lr": r.params["lr"]}
        loss = r.metric("loss")
        assert loss.steps == list(range(len(loss))) and len(loss) > 1
        assert loss.values[-1] < loss.values[0]
        assert r.id in out
    assert "amltrack history list" in out and "amltrack ui" in out
