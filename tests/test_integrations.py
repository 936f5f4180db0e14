"""The framework integrations (``amltrack.integrations``): docs/integrations.md's examples run as
written against the real frameworks on the CPU, and the run is checked against what the framework
itself recorded. Each example runs in a child process (the frameworks' own warnings are not this
suite's errors), a few steps of a tiny model built in code."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import amltrack
from amltrack.integrations._common import flatten

from .conftest import child_env

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"


def example(module: str) -> str:
    """The doc's example that imports ``amltrack.integrations.<module>``."""
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
        if f"integrations.{module} " in b
    ]
    return block


def run_example(tmp_path: Path, code: str, epilogue: str = "") -> tuple[amltrack.Run, Any]:
    """Run ``code`` and then ``epilogue`` (which may print one JSON line) in a child; returns the
    run it made and the epilogue's JSON."""
    store = tmp_path / "store"
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json\n" + epilogue],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(AMLTRACK_STORE=str(store), HF_HUB_OFFLINE="1", KERAS_BACKEND="torch", TQDM_DISABLE="1"),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    (run,) = amltrack.Store(store).runs()
    lines = out.stdout.strip().splitlines()
    return run, json.loads(lines[-1]) if epilogue else None


def needs(*modules: str) -> None:
    """Skip on a machine without these frameworks (CI installs them: .ci/run). Only looked up, not
    imported: importing keras here would pick its default backend, TensorFlow."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (pip install -e '.[integrations-test]')")


def series(run: amltrack.Run, name: str) -> list[tuple[int, Any]]:
    m = run.metric(name)
    return list(zip(m.steps, m.values))


def test_keras_epochs_batches_and_params(tmp_path: Path) -> None:
    needs("keras", "torch")
    run, history = run_example(tmp_path, example("keras"), "print(json.dumps(history.history))")
    assert run.status == "completed" and run.experiment == "keras-demo"
    assert set(history) == {"loss", "mae", "val_loss", "val_mae"}
    for name, values in history.items():
        assert series(run, name) == list(enumerate(values)), name  # each epoch's logs, exactly
    batches = run.metric("batch/loss")
    assert batches.steps == list(range(9))  # 3 batches of 16 (validation_split keeps 48) x 3 epochs
    assert run.params["fit/epochs"] == 3 and run.params["optimizer/name"] == "adam"
    assert math.isclose(run.params["optimizer/learning_rate"], 0.01, rel_tol=1e-6)


def test_transformers_logs_settings_and_checkpoints(tmp_path: Path) -> None:
    needs("transformers", "torch")
    epilogue = "print(json.dumps(trainer.state.log_history))"
    run, log_history = run_example(tmp_path, example("transformers"), epilogue)
    from amltrack.integrations.transformers import metric_name

    expected: dict[str, list[tuple[int, Any]]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key != "step":
                expected.setdefault(metric_name(key), []).append((entry["step"], value))
    assert {"train/loss", "eval/loss", "train/train_loss"} <= set(expected)
    assert {n: series(run, n) for n in expected} == expected
    assert not {n for n in run.metrics() if not n.startswith("system/")} - set(expected)
    assert run.status == "completed" and run.experiment == "hf-demo"
    params = run.params
    assert (params["learning_rate"], params["max_steps"], params["hidden_size"]) == (1e-3, 6, 16)
    assert params["id2label/0"] == "LABEL_0" and params["hub_token"] == "<HUB_TOKEN>"
    stored = {a["path"] for a in run.artifacts() if a["status"] == "stored"}
    for step in (3, 6):
        saved = tmp_path / "hf_out" / f"checkpoint-{step}"
        assert {f"checkpoints/checkpoint-{step}/{f.name}" for f in saved.iterdir()} <= stored
        assert (
            run.read_artifact(f"checkpoints/checkpoint-{step}/config.json")
            == (saved / "config.json").read_bytes()
        )


def test_lightning_rows_hyperparams_and_checkpoints(tmp_path: Path) -> None:
    needs("lightning", "torch")
    code = example("lightning")
    ours = 'logger=AmltrackLogger("lightning-demo", log_model=True),'
    assert ours in code
    # Lightning's own CSVLogger beside ours records what Lightning logged, to compare with.
    code = code.replace(ours, f'logger=[{ours[7:-1]}, pl.loggers.CSVLogger("csv")],')
    run, ckpt = run_example(tmp_path, code, "print(json.dumps(trainer.checkpoint_callback.best_model_path))")
    with open(tmp_path / "csv" / "lightning_logs" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    expected: dict[str, list[tuple[int, Any]]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and value != "":
                v = float(value)
                expected.setdefault(key, []).append((int(row["step"]), int(v) if key == "epoch" else v))
    assert set(expected) == {"train_loss", "val_loss", "epoch"}
    assert len(expected["train_loss"]) == 12 and len(expected["val_loss"]) == 3
    assert {n: series(run, n) for n in expected} == expected
    assert run.status == "completed" and run.experiment == "lightning-demo"
    assert run.params == {"lr": 0.05, "hidden": 8}
    name = Path(ckpt).name
    assert run.read_artifact(f"checkpoints/{name}") == Path(ckpt).read_bytes()


def test_an_integration_logs_into_the_open_run_and_leaves_it_open(tmp_path: Path) -> None:
    needs("keras", "torch")
    code = "import amltrack\nlogger = amltrack.get_logger('mine', params={'seed': 0})\n" + example("keras")
    epilogue = "print(json.dumps([logger.finished, logger.run_id]))\nlogger.log('after', 1)"
    run, (finished, run_id) = run_example(tmp_path, code, epilogue)
    assert not finished and run.id == run_id and run.experiment == "mine"
    assert run.status == "completed"  # at the script's exit, by its own logger
    assert run.params["seed"] == 0 and run.params["fit/epochs"] == 3
    assert series(run, "after") == [(0, 1)] and len(run.metric("loss")) == 3


def test_importing_amltrack_imports_no_framework() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, amltrack, amltrack.integrations; amltrack.get_logger; "
            "print(sorted(m for m in ('torch', 'lightning', 'transformers', 'keras') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_the_flattening_rule() -> None:
    from argparse import Namespace
    from dataclasses import dataclass

    @dataclass
    class Opt:
        name: str = "adam"
        betas: tuple[float, float] = (0.9, 0.999)

    class Config:
        def to_dict(self) -> dict[str, Any]:
            return {"hidden": 16, "token": "<hidden>"}

    np = pytest.importorskip("numpy")
    assert flatten(
        {
            "model": {"layers": [64, 32], "act": "relu", "cfg": Config()},
            "opt": Opt(),
            "ns": Namespace(a=1),
            "lr": np.float32(0.5),
            "fn": print,
            "none": None,
            "long": "x" * 2000,
        }
    ) == {
        "model/layers": "[64, 32]",
        "model/act": "relu",
        "model/cfg/hidden": 16,
        "model/cfg/token": "<hidden>",
        "opt/name": "adam",
        "opt/betas": "[0.9, 0.999]",
        "ns/a": 1,
        "lr": 0.5,
        "fn": "<built-in function print>",
        "none": None,
        "long": "x" * 997 + "...",
    }


def test_log_params_adds_to_the_runs_params(store: Path) -> None:
    logger = amltrack.get_logger("p", store=store, outputs=None, params={"a": 1})
    logger.log_params({"b": 2, "a": 3})
    assert amltrack.get_logger(params={"a": 3, "b": 2}) is logger  # the open run's params now
    with pytest.raises(TypeError, match="param 'c' is a list"):
        logger.log_params({"c": [1]})
    logger.finish()
    assert amltrack.Store(store).run(logger.run_id).params == {"a": 3, "b": 2}
    with pytest.raises(amltrack.RunFinishedError):
        logger.log_params({"d": 1})


def test_a_run_an_integration_ended_is_resumed_when_it_logs_again(store: Path) -> None:
    # Lightning's fit() ends with finalize(); a trainer.test() after it logs into the same run.
    from amltrack.integrations._common import RunRef

    ref = RunRef("e", "n", None, store, {"outputs": None})
    first = ref.get()
    first.log("loss", 1.0)
    ref.end("completed")
    again = ref.get()
    assert again is not first and again.run_id == first.run_id
    again.log("loss", 2.0)
    ref.end("completed")
    run = amltrack.Store(store).run(first.run_id)
    assert series(run, "loss") == [(0, 1.0), (1, 2.0)]
    assert [s["status"] for s in run.segments] == ["completed", "completed"]
