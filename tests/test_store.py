"""The read API over a store of runs."""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson
import pytest

import amltrack
from amltrack import _format as fmt
from amltrack import _logger


def make_run(store: Path, experiment: str = "e", status: str = "completed", **kw) -> str:
    logger = _logger._open_logger(experiment, kw.get("name"), None, None, store, None, None)
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
    read = fmt.read_run_info

    def late(run_dir: Path) -> object:
        if run_dir / "run.json" == run_json and not run_json.exists():
            run_json.write_bytes(saved)  # run.json lands just after this look found none
            raise FileNotFoundError(run_json)
        return read(run_dir)

    monkeypatch.setattr(_store.fmt, "read_run_info", late)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.id for r in amltrack.Store(tmp_path).runs()] == [logger.run_id]


# ----------------------------------------------------------------- a crashed run's listing figures


def _summary(run_dir: Path) -> dict:
    return orjson.loads((run_dir / "summary.json").read_bytes())


def crashed_behind(store: Path, *, joined: bool = False, beat_age: float = 3600.0) -> tuple[Path, dict]:
    """A run whose process died with summary.json behind metrics.jsonl: points, rows, a list and a
    string before the summary's last merge, and more of each, a new metric too, after it. With
    ``joined``, a second process logged into it as well. Returns the run folder and the exact
    per-metric count and last value, as ``Run.summary()`` reads them from all of metrics.jsonl."""
    from .conftest import wait_until

    open_logger = _logger._open_logger
    # No sampler thread: closing the writer below stands for a SIGKILL, which would end it too.
    owner = open_logger("crash", None, None, None, store, None, None, system_metrics=False)
    loggers = [owner]
    if joined:
        loggers.append(open_logger(None, None, None, None, store, None, owner.run_id))
    run_dir = owner.run_dir
    for k, lg in enumerate(loggers):
        for i in range(3):
            lg.log("loss", 1.0 / (i + 1) + k)
        lg.log_metrics({"acc": 0.1 + k, "lr": 0.5})
        lg.log("hist", [1, 2, 3 + k])
        lg.log("phase", f"warm {k}").wait()
    counted = 7 * len(loggers)  # a row counts once per metric
    summary = run_dir / "summary.json"

    def merged() -> bool:
        for lg in loggers:
            lg.flush(fsync=True)  # a pass of each writer, which merges what it has once a second
        return summary.exists() and _summary(run_dir).get("records") == counted

    wait_until(merged, what="a summary of the first records", interval=0.2)
    behind = _summary(run_dir)
    for k, lg in enumerate(loggers):
        for i in range(4):
            lg.log("loss", 0.01 * i + k)
        lg.log_metrics({"acc": 0.9 + k, "lr": 0.25})
        lg.log("hist", [4, 5 + k])
        lg.log("phase", f"done {k}")
        lg.log(f"late{k}", True).wait()
    for lg in loggers:
        lg._writer.close()  # what a SIGKILL leaves: records on disk, summary.json not rewritten
    behind["heartbeat"] = time.time() - beat_age
    fmt.write_json_atomic(run_dir / "summary.json", behind)
    info = orjson.loads((run_dir / "run.json").read_bytes())
    info["pid"] = 2**22 + 7  # a process that is gone
    fmt.write_json_atomic(run_dir / "run.json", info)
    run = amltrack.Store(store).run(owner.run_id)
    assert run.status == "crashed"
    truth = {n: (s["count"], s["last"]) for n, s in run.summary().items()}
    return run_dir, truth


def listed(store: Path, run_dir: Path) -> dict:
    metrics = amltrack.Store(store).run(run_dir.name).listing_summary()["metrics"]
    return {n: (e["count"], e["last"]) for n, e in metrics.items()}


def test_a_crashed_runs_listing_reads_only_the_records_after_its_summary(store: Path) -> None:
    run_dir, truth = crashed_behind(store)
    covered = _summary(run_dir)["offsets"][""]
    path = run_dir / "metrics.jsonl"
    data = path.read_bytes()
    assert 0 < covered < len(data)
    # The counted head becomes garbage: read, it would be warned about, and warnings are errors here.
    path.write_bytes(b"#" * (covered - 1) + b"\n" + data[covered:])
    (run_dir / "cache" / "columns.bin").unlink()
    assert listed(store, run_dir) == {**truth, "hist": (truth["hist"][0], 5)}  # a list's last element
    assert list(listed(store, run_dir)) == sorted(truth)  # by name, as summary.json has them


def test_the_repair_is_kept_once(store: Path) -> None:
    run_dir, truth = crashed_behind(store)
    before = _summary(run_dir)
    assert listed(store, run_dir) == {**truth, "hist": (truth["hist"][0], 5)}
    kept = _summary(run_dir)
    size = (run_dir / "metrics.jsonl").stat().st_size
    assert kept["offsets"] == {"": size} and kept["records"] == sum(c for c, _ in truth.values())
    assert kept["heartbeat"] == before["heartbeat"]  # a repair is no sign of life
    st = (run_dir / "summary.json").stat()
    assert listed(store, run_dir) == listed(store, run_dir)
    again = (run_dir / "summary.json").stat()
    assert (again.st_ino, again.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_a_recent_crash_is_repaired_in_memory_only(store: Path) -> None:
    # A process that joined the run may still be alive and hold records it wrote but has not
    # merged: writing the repair now would count them twice once it merges.
    run_dir, truth = crashed_behind(store, beat_age=5)
    before = (run_dir / "summary.json").read_bytes()
    assert listed(store, run_dir) == {**truth, "hist": (truth["hist"][0], 5)}
    assert (run_dir / "summary.json").read_bytes() == before


def test_a_read_only_store_is_left_as_it_is(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    run_dir, truth = crashed_behind(store)
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    modes = {p: p.stat().st_mode for p in [run_dir, *files]}
    for p in files:
        p.chmod(0o444)
    run_dir.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: make the write fail as it does for anyone else

        def refused(path: Path, *a: object, **k: object) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(fmt, "write_json_atomic", refused)
    try:
        assert listed(store, run_dir) == {**truth, "hist": (truth["hist"][0], 5)}
        assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_records_of_processes_that_joined_count_after_their_own_offsets(store: Path) -> None:
    run_dir, truth = crashed_behind(store, joined=True)
    offsets = _summary(run_dir)["offsets"]
    assert len(offsets) == 2 and len(set(offsets.values())) == 2  # each process its own place
    assert listed(store, run_dir) == {**truth, "hist": (truth["hist"][0], 6)}
    assert set(_summary(run_dir)["offsets"].values()) == {(run_dir / "metrics.jsonl").stat().st_size}


def test_a_summary_without_offsets_is_counted_anew_once(store: Path) -> None:
    # summary.json as amltrack kept it before it recorded offsets
    run_dir, truth = crashed_behind(store)
    old = _summary(run_dir)
    del old["offsets"]
    fmt.write_json_atomic(run_dir / "summary.json", old)
    assert listed(store, run_dir) == {**truth, "hist": (truth["hist"][0], 5)}
    assert _summary(run_dir)["offsets"] == {"": (run_dir / "metrics.jsonl").stat().st_size}


def test_a_torn_last_line_waits_and_counts_nothing(store: Path) -> None:
    run_dir, truth = crashed_behind(store)
    torn = b'{"name":"loss","step":99,"va'  # the crash cut the last write short
    with open(run_dir / "metrics.jsonl", "ab") as f:
        f.write(torn)
    assert listed(store, run_dir) == {**truth, "hist": (truth["hist"][0], 5)}
    assert _summary(run_dir)["offsets"][""] == (run_dir / "metrics.jsonl").stat().st_size - len(torn)


def test_a_servers_store_is_never_repaired_in_place(store: Path) -> None:
    # Its summary.json files are what clients pushed: sync --verify compares them byte for byte.
    run_dir, truth = crashed_behind(store)
    (store / ".server").mkdir()
    before = (run_dir / "summary.json").read_bytes()
    assert listed(store, run_dir) == {**truth, "hist": (truth["hist"][0], 5)}
    assert (run_dir / "summary.json").read_bytes() == before


def test_a_listing_keeps_a_bounded_number_of_repairs(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amltrack import _store

    first, _ = crashed_behind(store)
    second, _ = crashed_behind(store)
    monkeypatch.setattr(_store, "KEPT_REPAIRS", 1)
    before = {d: (d / "summary.json").read_bytes() for d in (first, second)}

    def kept() -> int:
        for run in amltrack.Store(store).runs():
            run.listing_summary()
        return sum((d / "summary.json").read_bytes() != before[d] for d in (first, second))

    assert kept() == 1  # the other one is repaired in memory, and kept by the next listing
    assert kept() == 2


def test_runs_takes_the_newest_few_as_the_server_and_the_cli_ask(store: Path) -> None:
    ids = []
    for status in ("completed", "failed", "completed"):
        with amltrack.start_run("few", store=store, outputs=None) as lg:
            lg.log("loss", 1.0)
            if status != "completed":
                lg.finish(status)
            ids.append(lg.run_id)
    s = amltrack.Store(store)
    assert [r.id for r in s.runs(limit=2)] == ids[::-1][:2]
    assert [r.id for r in s.runs(status="completed", limit=1)] == [ids[2]]
    assert [r.id for r in s.runs(limit=0)] == ids[::-1]


def test_a_training_process_does_not_load_the_query_language(tmp_path: Path) -> None:
    """The parser is for listings; get_logger() and logging must not pay for importing it."""
    import subprocess
    import sys

    code = (
        "import sys, amltrack\n"
        f"lg = amltrack.get_logger('x', store={str(tmp_path / 's')!r}, outputs=None, system_metrics=False)\n"
        "lg.log('loss', 1.0).wait(); lg.finish()\n"
        "assert 'amltrack._query' not in sys.modules, 'get_logger imported the query language'\n"
        f"amltrack.Store({str(tmp_path / 's')!r}).runs(filter='metrics.loss = 1')\n"
        "assert 'amltrack._query' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
