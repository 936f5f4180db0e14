"""The reader over damaged stores: only clear amltrack errors, and it says what it skipped."""

from __future__ import annotations

import itertools
import shutil
import warnings
from pathlib import Path
from typing import Any

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
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(store.parent)  # not in a git checkout: no git/diff.patch, the same run everywhere
        logger = amltrack._logger._open_logger("c", "n", {"t": "1"}, {"p": 2}, store, None, None)
        for i in range(50):
            logger.log("loss", 1 / (i + 1))
            logger.log("list", [i, i + 1.5, float("nan")])
            logger.log("text", f"line {i}")
        logger.upload("a/b.txt", "artifact")
        logger.finish()
    return store


@pytest.fixture(scope="module")
def pristine_read(pristine: Path) -> dict[str, Any]:
    read, skipped = read_everything(pristine)
    assert skipped == 0 and read
    return read


def read_everything(store: Path) -> tuple[dict[str, Any], int]:
    """What the reader gives back (per run: points per metric, manifest paths and states) and the
    lines it said it skipped (``run.skipped``, after each read that sets it)."""
    s = amltrack.Store(store)
    out: dict[str, Any] = {}
    skipped = 0
    for run in s.runs():
        run.status, run.experiment, run.name, run.tags, run.params, run.duration()
        metrics = run.metrics()
        skipped += run.skipped
        run.summary()
        skipped += run.skipped
        run.cached_summary()
        artifacts = run.artifacts()
        skipped += run.skipped
        for a in artifacts:
            if a.get("status") == "stored":
                run.read_artifact(a["path"])
        out[run.id] = (
            {name: len(m) for name, m in metrics.items()},
            {a["path"]: a.get("status") for a in artifacts},
        )
    s.runs(status="crashed")
    try:
        s.last().metric("loss")
    except (amltrack.MetricNotFoundError, amltrack.RunNotFoundError):
        pass
    return out, skipped


def lost(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What ``before`` has that ``after`` does not: runs, metric points, manifest entries."""
    out = []
    for rid, (metrics, artifacts) in before.items():
        if rid not in after:
            out.append(f"run {rid}")
            continue
        got_metrics, got_artifacts = after[rid]
        out += [f"{n}: {k - got_metrics.get(n, 0)} point(s)" for n, k in metrics.items() if got_metrics.get(n, 0) < k]
        out += [f"artifact {p}" for p in artifacts if p not in got_artifacts]
    return out


def cuts_whole_lines(which: str, how: str, data: bytes, cut: int) -> bool:
    """Damage that leaves a JSON Lines file a shorter, valid one: nothing in it says lines are missing,
    so the reader cannot tell it from a run that logged less (docs/reliability.md says so)."""
    if not which.endswith(".jsonl"):
        return False
    # A cut just before a newline leaves the last line whole, only without its newline.
    at_line_end = cut == 0 or data[cut - 1 : cut] == b"\n" or data[cut : cut + 1] == b"\n"
    return how in ("delete", "empty") or (how == "truncate" and at_line_end)


_examples = itertools.count()


@settings(max_examples=size(150, 2000), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.sampled_from(FILES), how=st.sampled_from(["truncate", "garbage", "flip", "delete", "empty",
                                                          "wrongtype", "future", "fields"]),
       pos=st.floats(0, 1), junk=st.binary(min_size=1, max_size=40))
def test_damaged_stores_read_or_fail_clearly_and_report_what_they_drop(
    pristine: Path, pristine_read: dict[str, Any], tmp_path: Path, which: str, how: str, pos: float, junk: bytes
) -> None:
    # A fresh path per example: the reader warns once per file, and each example must see its warning.
    store = tmp_path / f"s{next(_examples)}"
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got, skipped = read_everything(store)
        except amltrack.AmltrackError as e:
            assert str(e) and "\n" not in str(e)  # one clear sentence
            return
    for w in caught:
        assert issubclass(w.category, UserWarning) and "\n" not in str(w.message), w
    missing = lost(pristine_read, got)
    if missing and not cuts_whole_lines(which, how, data, cut):
        assert caught or skipped, f"{how} {which} at {cut}: lost {missing} without a warning or a skip count"
    shutil.rmtree(store)


def test_a_run_folder_without_run_json_is_reported_unless_it_is_being_created(pristine: Path,
                                                                             tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    (run_dir / "run.json").unlink()
    being_created = store / "runs" / "20200101T000000000-0000000000000000"
    being_created.mkdir()
    (being_created / ".run.json.x1y2z3.tmp").write_bytes(b"{")
    with pytest.warns(UserWarning, match=f"skipped run {run_dir.name}: .* no run.json; restore") as caught:
        assert amltrack.Store(store).runs() == []
    assert len(caught) == 1  # the folder being created is no damage


def test_manifest_skips_are_counted(pristine: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    with open(run_dir / "artifacts.jsonl", "ab") as f:
        f.write(b'not json\n{"path": 5, "status": "stored"}\n{"path": "x"}\n{"pa')
    run = amltrack.Store(store).run(run_dir.name)
    with pytest.warns(UserWarning, match="skipped"):
        assert [a["path"] for a in run.artifacts()] == ["a/b.txt"]
    assert run.skipped == 4


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
