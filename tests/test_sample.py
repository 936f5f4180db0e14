"""The committed sample store (.amltrack-sample/, made by examples/make_sample.py) and the demo script.

The sample is only read here, never written; the demo runs in tmp_path.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import amltrack
from amltrack import _store

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / ".amltrack-sample"
DEMO = REPO / "examples" / "train_demo.py"

EXPECTED = {
    # name: (experiment, status)
    "baseline": ("classifier", "completed"),
    "diverged": ("classifier", "failed"),
    "preempted": ("classifier", "crashed"),
    "lists-and-artifacts": ("showcase", "completed"),
    "long-curve": ("showcase", "completed"),
}


@pytest.fixture(scope="module")
def store() -> amltrack.Store:
    assert (SAMPLE / "store.json").is_file(), "run examples/make_sample.py to create .amltrack-sample/"
    return amltrack.Store(SAMPLE)


@pytest.fixture(scope="module")
def runs(store: amltrack.Store) -> dict[str, amltrack.Run]:
    out = {}
    for run in store.runs():
        assert run.name not in out, f"two runs named {run.name!r}"
        out[run.name] = run
    return out


def test_five_runs_with_their_statuses(runs: dict[str, amltrack.Run]) -> None:
    assert set(runs) == set(EXPECTED)
    for name, (experiment, status) in EXPECTED.items():
        assert runs[name].experiment == experiment, name
        assert runs[name].status == status, name


def test_runs_are_newest_first(store: amltrack.Store) -> None:
    ids = [r.id for r in store.runs()]
    assert ids == sorted(ids, reverse=True)
    assert store.last().id == ids[0]


def test_sample_is_small_and_clean() -> None:
    files = [p for p in SAMPLE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2 * 1024 * 1024
    assert not [p for p in files if p.name.endswith((".lock", ".tmp"))]


def test_completed_run(runs: dict[str, amltrack.Run]) -> None:
    run = runs["baseline"]
    assert run.info["error"] is None
    assert run.ended is not None and run.duration() is not None
    assert run.params["lr"] == 0.05 and run.params["augment"] is True and run.params["scheduler"] is None
    assert run.tags == {"dataset": "two-moons", "stage": "baseline"}
    metrics = run.metrics()
    assert len(metrics["loss"]) == len(metrics["accuracy"]) == 120
    assert metrics["loss"].steps == list(range(120))
    assert metrics["val/accuracy"].steps == [0, 1, 2]
    assert metrics["converged"].values == [True]
    assert metrics["optimizer"].values == ["sgd"]
    s = run.summary()["loss"]
    assert s["count"] == 120 and s["min"] <= s["last"] <= s["max"]
    assert run.read_artifact("weights.json").startswith(b'{"w"')


def test_failed_run_has_error_info(runs: dict[str, amltrack.Run]) -> None:
    run = runs["diverged"]
    error = run.info["error"]
    assert error["type"] == "FloatingPointError"
    assert "loss diverged" in error["message"]
    assert "Traceback" in error["traceback"] and "train_step" in error["traceback"]
    assert run.ended is not None
    # The metrics logged before the exception are all there.
    loss = run.metric("loss")
    assert loss.steps == list(range(len(loss))) and len(loss) > 10


def test_crashed_run(runs: dict[str, amltrack.Run]) -> None:
    run = runs["preempted"]
    assert run.info["status"] == "running"  # on file; the reader derives crashed
    assert run.ended is None
    assert run.cached_summary()["heartbeat"] >= run.info["created_ts"]
    assert run.duration() is not None  # up to the last heartbeat
    assert len(run.metric("loss")) == 25


def test_crashed_run_reads_crashed_from_another_host(
    runs: dict[str, amltrack.Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = runs["preempted"]
    beat = run.cached_summary()["heartbeat"]
    monkeypatch.setattr(_store.socket, "gethostname", lambda: "another-host.example")
    # Right after make_sample.py the heartbeat is fresh: read as if CRASH_AFTER had passed.
    now = max(_store.time.time(), beat + _store.CRASH_AFTER + 1)
    monkeypatch.setattr(_store, "time", types.SimpleNamespace(time=lambda: now))
    assert run.reload().status == "crashed"


def test_list_metrics_keep_nan_and_inf(runs: dict[str, amltrack.Run]) -> None:
    m = runs["lists-and-artifacts"].metrics()
    assert m["lr_schedule"].values == [[0.001 * 0.5**k for k in range(8)]]
    assert m["class_counts"].values == [[412, 388]]
    assert all(type(v) is int for v in m["class_counts"].values[0])
    (weird,) = m["weird_values"].values
    assert isinstance(weird, list) and len(weird) == 6
    assert weird[0] == 1.5 and weird[4] == -2.0 and weird[5] == 0
    assert math.isnan(weird[1])
    assert math.isinf(weird[2]) and weird[2] > 0
    assert math.isinf(weird[3]) and weird[3] < 0
    assert m["histogram"].steps == [0, 1, 2]
    assert all(isinstance(v, list) and len(v) == 5 for v in m["histogram"].values)

    g = m["grad_norm"].values
    assert g[0] == 0.5 and math.isnan(g[1]) and math.isinf(g[2])


def test_string_and_bool_metrics(runs: dict[str, amltrack.Run]) -> None:
    m = runs["lists-and-artifacts"].metrics()
    assert m["optimizer"].values == ["adamw"]
    assert m["label"].values == ["NaN"]  # a string that spells NaN stays a string
    assert m["note"].values == ["café ✓ converged"]
    assert m["early_stop"].values == [False]


def test_params_and_tags(runs: dict[str, amltrack.Run]) -> None:
    run = runs["lists-and-artifacts"]
    assert run.params == {
        "model": "mlp",
        "hidden": 32,
        "lr": 0.001,
        "dropout": 0.1,
        "use_bn": False,
        "note": "params of every JSON type",
        "checkpoint": None,
    }
    assert run.tags == {"owner": "sample", "purpose": "lists+artifacts", "priority": 1}


def test_summary_of_list_metrics(runs: dict[str, amltrack.Run]) -> None:
    s = runs["lists-and-artifacts"].summary()
    assert s["weird_values"]["count"] == 1
    assert s["weird_values"]["min"] == -math.inf and s["weird_values"]["max"] == math.inf
    assert s["histogram"]["min"] == 0.0 and s["histogram"]["max"] == 3.0
    assert s["optimizer"]["min"] is None and s["optimizer"]["last"] == "adamw"


def test_artifacts_match_their_manifest(runs: dict[str, amltrack.Run]) -> None:
    run = runs["lists-and-artifacts"]
    arts = {a["path"]: a for a in run.artifacts()}
    assert sorted(arts) == ["config/model.json", "data/blob.bin", "notes.txt", "plots/epoch_3/confusion.csv"]
    for path, entry in arts.items():
        assert entry["status"] == "stored"
        data = run.read_artifact(path)
        assert len(data) == entry["size"], path
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], path
    assert run.read_artifact("data/blob.bin") == bytes(range(256)) * 4
    # notes.txt was uploaded twice: the manifest's latest entry and the file are the second upload.
    assert run.read_artifact("notes.txt").decode("utf-8") == "Sample run notes.\nUnicode: café ✓\n"
    assert arts["config/model.json"]["source"] == "upload_file"
    with pytest.raises(amltrack.ArtifactNotFoundError):
        run.read_artifact("missing.txt")


def test_ten_thousand_points_in_step_order(runs: dict[str, amltrack.Run]) -> None:
    run = runs["long-curve"]
    assert list(run.metrics()) == ["loss"]
    loss = run.metric("loss")
    assert len(loss) == 10_000
    assert loss.steps == list(range(10_000))
    assert all(isinstance(v, float) and math.isfinite(v) for v in loss.values)
    assert run.summary()["loss"]["count"] == 10_000
    assert run.cached_summary()["metrics"]["loss"]["count"] == 10_000


def test_filters(store: amltrack.Store, runs: dict[str, amltrack.Run]) -> None:
    crashed = store.runs(status="crashed")
    assert [r.name for r in crashed] == ["preempted"]
    assert [r.name for r in store.runs(status="failed")] == ["diverged"]
    assert {r.name for r in store.runs(status="completed")} == {
        "baseline",
        "lists-and-artifacts",
        "long-curve",
    }
    assert store.runs(status="running") == []
    classifier = store.runs(experiment="classifier")
    assert {r.name for r in classifier} == {"baseline", "diverged", "preempted"}
    assert {r.name for r in store.runs(experiment="showcase")} == {"lists-and-artifacts", "long-curve"}
    assert store.runs(experiment="showcase", status="crashed") == []
    assert [r.name for r in store.runs(experiment="classifier", status="crashed")] == ["preempted"]
    assert store.runs(experiment="no-such-experiment") == []


def test_prefix_lookup(store: amltrack.Store, runs: dict[str, amltrack.Run]) -> None:
    ids = store.run_ids()
    for run in runs.values():
        assert store.run(run.id) == run
        # The id starts with its creation time: a short prefix may match several sample runs.
        prefix = run.id[:12]
        matches = [i for i in ids if i.startswith(prefix)]
        if len(matches) == 1:
            assert store.run(prefix) == run
        else:
            with pytest.raises(amltrack.AmbiguousRunError):
                store.run(prefix)
        # The shortest prefix that is unique, and the random part after the '-'.
        n = next(k for k in range(1, len(run.id) + 1) if sum(i.startswith(run.id[:k]) for i in ids) == 1)
        assert store.run(run.id[:n]) == run
        assert store.run(run.id.split("-", 1)[1][:8]) == run
    with pytest.raises(amltrack.RunNotFoundError):
        store.run("zzzz-no-such-run")


# ----------------------------------------------------------------- the demo


def test_demo_script(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLTRACK_")}
    store_dir = tmp_path / "store"
    p = subprocess.run(
        [sys.executable, str(DEMO), "--store", str(store_dir), "--steps", "50"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    store = amltrack.Store(store_dir)
    (run,) = store.runs()
    assert run.id in p.stdout
    assert run.experiment == "demo"
    assert run.status == "completed"
    assert run.params["steps"] == 50
    assert run.tags["dataset"] == "two-moons"

    m = run.metrics()
    assert m["loss"].steps == list(range(50)) and m["accuracy"].steps == list(range(50))
    assert all(0.0 <= a <= 1.0 for a in m["accuracy"].values)
    assert m["loss"].values[-1] < m["loss"].values[0]
    (schedule,) = m["lr_schedule"].values
    assert isinstance(schedule, list) and len(schedule) == 50
    assert all(isinstance(v, float) and v > 0 for v in schedule)
    assert m["optimizer"].values == ["sgd+momentum"]
    assert isinstance(m["note"].values[0], str)

    local = tmp_path / "outputs" / "model.npz"  # written relative to the working directory
    assert local.is_file()
    arts = {a["path"]: a for a in run.artifacts()}
    assert "outputs/model.npz" in arts
    data = run.read_artifact("outputs/model.npz")
    assert data == local.read_bytes()
    assert hashlib.sha256(data).hexdigest() == arts["outputs/model.npz"]["sha256"]


def test_demo_help() -> None:
    p = subprocess.run([sys.executable, str(DEMO), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "--store" in p.stdout and "--steps" in p.stdout
