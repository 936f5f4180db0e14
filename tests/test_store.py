"""The read API over a store of runs."""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson
import pytest

import amltrack
from amltrack import _format as fmt


def make_run(store: Path, experiment: str = "e", status: str = "completed", **kw) -> str:
    logger = amltrack._logger._open_logger(experiment, kw.get("name"), None, None, store, None, None)
    for i in range(kw.get("points", 3)):
        logger.log("loss", 1.0 / (i + 1))
    logger.finish(status)
    return logger.run_id


def test_runs_newest_first_and_filters(store: Path) -> None:
    a = make_run(store, "one")
    b = make_run(store, "two", "failed")
    c = make_run(store, "one", "killed")
    s = amltrack.Store(store)
    assert [r.id for r in s.runs()] == [c, b, a]
    assert [r.id for r in s.runs(experiment="one")] == [c, a]
    assert [r.id for r in s.runs(status="failed")] == [b]
    assert [r.id for r in s.runs(status="crashed")] == []
    assert s.last().id == c
    with pytest.raises(ValueError, match="bogus"):
        s.runs(status="bogus")


def test_run_lookup_by_prefix(store: Path) -> None:
    a = make_run(store)
    b = make_run(store)
    s = amltrack.Store(store)
    assert s.run(a).id == a
    assert s.run(a.split("-")[1][:8]).id == a  # the random part, as people copy it
    assert s.run("last").id == b
    common = a[: next(i for i in range(len(a)) if a[i] != b[i])]
    with pytest.raises(amltrack.AmbiguousRunError) as e:
        s.run(common)
    assert isinstance(e.value, LookupError) and a in str(e.value)
    with pytest.raises(amltrack.RunNotFoundError, match="history list"):
        s.run("zzz")
    with pytest.raises(amltrack.RunNotFoundError):
        amltrack.Store(store.parent / "empty").last()


def test_empty_and_missing_store(tmp_path: Path) -> None:
    assert amltrack.Store(tmp_path / "nothing").runs() == []
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(amltrack.StoreError, match="is a file"):
        amltrack.Store(f)


def test_metric_points_summary_and_pandas(store: Path) -> None:
    logger = amltrack.get_logger(store=store, outputs=None)
    for i, v in enumerate([3.0, 1.0, math.nan, 2.0]):
        logger.log("loss", v, step=i * 10)
    logger.log("lr", [0.1, 0.01, math.inf])
    logger.log("note", "hello")
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    loss = run.metric("loss")
    assert loss.steps == [0, 10, 20, 30]
    assert loss[0] == (0, 3.0, loss[0].timestamp) and loss[0].step == 0
    summary = run.summary()
    assert summary["loss"]["count"] == 4 and summary["loss"]["last"] == 2.0
    assert summary["loss"]["min"] == 1.0 and summary["loss"]["max"] == 3.0
    assert summary["lr"]["max"] == math.inf and summary["note"]["last"] == "hello"
    df = loss.to_pandas()
    assert list(df.columns) == ["step", "value", "timestamp"] and len(df) == 4
    assert str(df["timestamp"].dt.tz) == "UTC"
    with pytest.raises(amltrack.MetricNotFoundError, match="nope"):
        run.metric("nope")
    cached = run.cached_summary()
    assert cached["records"] == 6
    assert cached["metrics"]["loss"]["count"] == 4 and cached["metrics"]["loss"]["last"] == 2.0
    assert cached["metrics"]["lr"]["kind"] == "list" and cached["metrics"]["lr"]["last"] == "Infinity"
    assert cached["metrics"]["lr"]["length"] == 3 and cached["metrics"]["note"]["kind"] == "string"


def test_crashed_when_the_heartbeat_is_old_on_another_host(store: Path) -> None:
    rid = make_run(store)
    run_dir = store / "runs" / rid
    info = orjson.loads((run_dir / "run.json").read_bytes())
    info.update(status="running", hostname="some-other-host", ended=None, ended_ts=None)
    fmt.write_json_atomic(run_dir / "run.json", info)
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    summary["heartbeat"] = time.time()
    fmt.write_json_atomic(run_dir / "summary.json", summary)
    assert amltrack.Store(store).run(rid).status == "running"
    summary["heartbeat"] = time.time() - 3600
    fmt.write_json_atomic(run_dir / "summary.json", summary)
    assert amltrack.Store(store).run(rid).status == "crashed"
    assert [r.id for r in amltrack.Store(store).runs(status="crashed")] == [rid]


def test_crashed_when_the_pid_is_gone_on_this_host(store: Path) -> None:
    import subprocess
    import sys

    rid = make_run(store)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    run_dir = store / "runs" / rid
    info = orjson.loads((run_dir / "run.json").read_bytes())
    info.update(status="running", pid=p.pid, pid_start=None)
    fmt.write_json_atomic(run_dir / "run.json", info)
    assert amltrack.Store(store).run(rid).status == "crashed"


def test_a_live_run_reads_running(store: Path) -> None:
    logger = amltrack.get_logger(store=store, outputs=None)
    logger.log("m", 1).wait()
    run = amltrack.Store(store).run(logger.run_id)
    assert run.status == "running" and run.duration() is not None
    logger.finish()
    assert run.reload().status == "completed"


def test_listing_skips_broken_runs(store: Path) -> None:
    good = make_run(store)
    (store / "runs" / "20200101T000000000-0000000000000000").mkdir()  # half-created
    bad = store / "runs" / "20200101T000000000-1111111111111111"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    with pytest.warns(UserWarning, match="skipped run"):
        assert [r.id for r in amltrack.Store(store).runs()] == [good]


def test_artifacts(store: Path) -> None:
    logger = amltrack.get_logger(store=store, outputs=None)
    logger.upload("b/two.txt", "2")
    logger.upload("a.txt", "1").wait()
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    assert [e["path"] for e in run.artifacts()] == ["a.txt", "b/two.txt"]
    with pytest.raises(amltrack.ArtifactNotFoundError, match="c.txt"):
        run.read_artifact("c.txt")
    with pytest.raises(amltrack.ArtifactNotFoundError):
        run.read_artifact("b")  # a directory is not an artifact
    with pytest.raises(amltrack.InvalidPathError):
        run.read_artifact("../run.json")


def test_a_run_json_that_lands_while_the_store_is_listed_is_no_lost_run(tmp_path: Path, monkeypatch) -> None:
    import warnings

    from amltrack import _format as fmt
    from amltrack import _store

    logger = amltrack.get_logger("race", store=tmp_path, outputs=None)
    logger.finish()
    run_json = logger.run_dir / "run.json"
    saved = run_json.read_bytes()
    run_json.unlink()
    read = fmt.read_json

    def late(path: Path) -> object:
        if path == run_json and not run_json.exists():
            run_json.write_bytes(saved)  # run.json lands just after this look found none
            raise FileNotFoundError(path)
        return read(path)

    monkeypatch.setattr(_store.fmt, "read_json", late)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.id for r in amltrack.Store(tmp_path).runs()] == [logger.run_id]
