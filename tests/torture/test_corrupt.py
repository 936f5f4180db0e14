"""The reader over damaged stores: only clear amltrack errors, and it says what it skipped."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amltrack
from amltrack import _format as fmt

from .conftest import size

FILES = ["run.json", "metrics.jsonl", "summary.json", "artifacts.jsonl", "artifacts/a/b.txt", "../../store.json"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("pristine") / "s"
    logger = amltrack._logger._open_logger("c", "n", {"t": "1"}, {"p": 2}, store, None, None)
    for i in range(50):
        logger.log("loss", 1 / (i + 1))
        logger.log("list", [i, i + 1.5, float("nan")])
        logger.log("text", f"line {i}")
    logger.upload("a/b.txt", "artifact")
    logger.finish()
    return store


def read_everything(store: Path) -> None:
    s = amltrack.Store(store)
    for run in s.runs():
        run.status, run.experiment, run.name, run.tags, run.params, run.duration()
        run.metrics()
        run.summary()
        run.cached_summary()
        for a in run.artifacts():
            if a.get("status") == "stored":
                run.read_artifact(a["path"])
    s.runs(status="crashed")
    try:
        s.last().metric("loss")
    except (amltrack.MetricNotFoundError, amltrack.RunNotFoundError):
        pass


@settings(max_examples=size(150, 2000), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.sampled_from(FILES), how=st.sampled_from(["truncate", "garbage", "flip", "delete", "empty",
                                                          "wrongtype", "future", "fields"]),
       pos=st.floats(0, 1), junk=st.binary(min_size=1, max_size=40))
def test_damaged_stores_read_or_fail_clearly(pristine: Path, tmp_path: Path, which: str, how: str, pos: float,
                                             junk: bytes) -> None:
    store = tmp_path / "s"
    if store.exists():
        shutil.rmtree(store)
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    target = (run_dir / which).resolve()
    data = target.read_bytes()
    cut = int(len(data) * pos)
    if how == "truncate":
        target.write_bytes(data[:cut])
    elif how == "garbage":
        target.write_bytes(data[:cut] + junk + data[cut:])
    elif how == "flip" and data:
        i = min(cut, len(data) - 1)
        target.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif how == "delete":
        target.unlink()
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "wrongtype":
        target.write_bytes(b'[1, "two", null]\n' if target.suffix != ".jsonl" else b'{"name": 1, "step": "x"}\n[]\n')
    elif how == "fields" and target.suffix == ".json":
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = {}
        wrong = [5, "x", None, [1], {"a": 1}, -1.5, True]
        obj = {k: wrong[(i + cut) % len(wrong)] for i, k in enumerate(obj)}
        target.write_bytes(orjson.dumps(obj))
    elif how == "future":
        if target.suffix == ".json":
            target.write_bytes(orjson.dumps({"schema": 99, "status": "completed"}))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            read_everything(store)
        except amltrack.AmltrackError as e:
            assert str(e) and "\n" not in str(e)  # one clear sentence


def test_skips_are_counted(pristine: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    with open(run_dir / "metrics.jsonl", "ab") as f:
        f.write(b"not json\n{\"name\":\"loss\",\"step\":-1,\"value\":1,\"ts\":1,\"seq\":1}\n{\"torn")
    run = amltrack.Store(store).run(run_dir.name)
    with pytest.warns(UserWarning, match="skipped"):
        run.metrics()
    assert run.skipped == 3


def test_a_future_run_schema_is_a_clear_error(pristine: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    info = orjson.loads((run_dir / "run.json").read_bytes())
    info["schema"] = fmt.SCHEMA_VERSION + 1
    (run_dir / "run.json").write_bytes(orjson.dumps(info))
    with pytest.raises(amltrack.StoreError, match="upgrade amltrack"):
        _ = amltrack.Store(store).run(run_dir.name).info
