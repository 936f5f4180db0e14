"""The logging API: what log() and upload() accept, reject, and how records land."""

from __future__ import annotations

import inspect
import math
import sys
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest

import amltrack
from amltrack import InvalidMetricError, InvalidPathError, RunFinishedError


def records(logger: amltrack.Logger) -> list[dict]:
    logger.flush()
    return [orjson.loads(line) for line in (logger.run_dir / "metrics.jsonl").read_bytes().splitlines()]


def test_get_logger_returns_the_same_logger_until_finished(store: Path) -> None:
    a = amltrack.get_logger("exp", store=store, outputs=None)
    assert amltrack.get_logger() is a
    assert amltrack.get_azureml_logger() is a
    assert amltrack.get_azureml_logger is amltrack.get_logger
    a.finish()
    b = amltrack.get_logger("exp", store=store, outputs=None)
    assert b is not a and b.run_id != a.run_id


def test_values_round_trip_with_their_types(logger: amltrack.Logger) -> None:
    values = {
        "int": 7,
        "float": 3.141592,
        "str": "this is a string metric",
        "bool": True,
        "list": [1, 3, 5, 10, 6, 4],
        "tuple": (1.5, 2.5),
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "list with nan": [1.0, math.nan, math.inf, -math.inf],
        "np float": np.float32(0.5),
        "np int": np.int64(42),
        "np array": np.arange(4, dtype=np.float64),
        "np 0-d": np.array(2.5),
        "big int": 2**63 - 1,
        "unicode": "ключ 🚀",
        "NaN as text": "NaN",
    }
    for name, v in values.items():
        logger.log(name, v)
    logger.finish()
    run = amltrack.Store(logger.store).run(logger.run_id)
    got = {name: m[0].value for name, m in run.metrics().items()}
    assert got["int"] == 7 and type(got["int"]) is int
    assert got["float"] == 3.141592
    assert got["str"] == "this is a string metric"
    assert got["bool"] is True
    assert got["list"] == [1, 3, 5, 10, 6, 4]
    assert got["tuple"] == [1.5, 2.5]
    assert math.isnan(got["nan"])
    assert got["inf"] == math.inf and got["-inf"] == -math.inf
    assert got["list with nan"][0] == 1.0 and math.isnan(got["list with nan"][1])
    assert got["list with nan"][2:] == [math.inf, -math.inf]
    assert got["np float"] == 0.5 and type(got["np float"]) is float
    assert got["np int"] == 42 and type(got["np int"]) is int
    assert got["np array"] == [0.0, 1.0, 2.0, 3.0]
    assert got["np 0-d"] == 2.5
    assert got["big int"] == 2**63 - 1
    assert got["unicode"] == "ключ 🚀"
    assert got["NaN as text"] == "NaN"  # a string stays a string


def test_nonfinite_values_are_standard_json(logger: amltrack.Logger) -> None:
    logger.log("x", math.nan)
    logger.log("x", [math.inf])
    raw = logger.run_dir / "metrics.jsonl"
    logger.flush()
    import json

    for line in raw.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


@pytest.mark.parametrize(
    "value, exc",
    [
        ({"a": 1}, TypeError),
        (None, TypeError),
        (object(), TypeError),
        (b"bytes", TypeError),
        (1 + 2j, TypeError),
        ([1, "a"], TypeError),
        ([1, None], TypeError),
        ([True, False], TypeError),
        ([[1, 2]], TypeError),
        (np.zeros((2, 2)), ValueError),
        (np.array([True]), TypeError),
        (2**64, ValueError),
        (-(2**63) - 1, ValueError),
        ("x" * (2**20 + 1), ValueError),
        ("\ud800", ValueError),
    ],
)
def test_bad_values_are_rejected_at_the_call(logger: amltrack.Logger, value, exc) -> None:
    with pytest.raises(exc) as e:
        logger.log("m", value)
    assert "'m'" in str(e.value)  # the message names the metric
    logger.flush()
    assert not (logger.run_dir / "metrics.jsonl").exists() or not records(logger)


def test_type_error_names_the_type(logger: amltrack.Logger) -> None:
    with pytest.raises(TypeError, match="dict"):
        logger.log("cfg", {"lr": 1})


@pytest.mark.parametrize(
    "name, exc",
    [
        ("", ValueError),
        ("x" * 256, ValueError),
        ("a\nb", ValueError),
        ("tab\there", ValueError),
        ("nul\x00", ValueError),
        ("del\x7f", ValueError),
        ("\ud800", ValueError),
        (5, TypeError),
        (None, TypeError),
        (["a"], TypeError),
    ],
)
def test_bad_names_are_rejected(logger: amltrack.Logger, name, exc) -> None:
    with pytest.raises(exc):
        logger.log(name, 1.0)
    assert isinstance(InvalidMetricError("x"), ValueError)


def test_name_limits_accepted(logger: amltrack.Logger) -> None:
    logger.log("x" * 255, 1).wait()
    logger.log("spaces / slashes: ok ü", 1).wait()


@pytest.mark.parametrize(
    "step, exc",
    [
        (-1, ValueError),
        (1.5, TypeError),
        ("3", TypeError),
        (True, TypeError),
        (2**63, ValueError),
        (2**64, ValueError),
        (-(2**63) - 1, ValueError),
        (np.uint64(2**64 - 1), ValueError),
    ],
)
def test_bad_steps_are_rejected(logger: amltrack.Logger, step, exc) -> None:
    with pytest.raises(exc, match="step") as e:
        logger.log("m", 1.0, step=step)
    assert "'m'" in str(e.value) and str(step) in str(e.value)  # names the metric and the step
    logger.log("m", 2.0).wait()  # the writer is unharmed and the next record is written
    logger.finish()
    assert [(r["step"], r["value"]) for r in records(logger)] == [(0, 2.0)]


def test_the_last_step_is_accepted_and_the_one_after_it_is_refused(logger: amltrack.Logger) -> None:
    last = 2**63 - 1
    logger.log("m", 1.0, step=last)
    with pytest.raises(InvalidMetricError, match=f"'m'.*{last}.*step="):
        logger.log("m", 2.0)  # the default step would be 2**63
    logger.log("m", 3.0, step=5)
    logger.log("m", 4.0)
    logger.log("n", 5.0, step=last - 1)
    logger.log("n", 6.0)  # counted up to the last step
    with pytest.raises(InvalidMetricError, match=f"'n'.*{last}"):
        logger.log("n", 7.0)
    logger.finish()
    assert [(r["name"], r["step"], r["value"]) for r in records(logger)] == [
        ("m", last, 1.0),
        ("m", 5, 3.0),
        ("m", 6, 4.0),
        ("n", last - 1, 5.0),
        ("n", last, 6.0),
    ]
    assert amltrack.Store(logger.store).run(logger.run_id).metric("m").steps == [last, 5, 6]


def test_default_steps_count_per_name_and_follow_explicit_steps(logger: amltrack.Logger) -> None:
    for _ in range(3):
        logger.log("a", 1.0)
    logger.log("b", 1.0)
    logger.log("a", 1.0, step=np.int64(10))
    logger.log("a", 1.0)
    assert [(r["name"], r["step"]) for r in records(logger)] == [
        ("a", 0),
        ("a", 1),
        ("a", 2),
        ("b", 0),
        ("a", 10),
        ("a", 11),
    ]


def test_records_carry_sequence_and_timestamp(logger: amltrack.Logger) -> None:
    for i in range(5):
        logger.log("m", i)
    recs = records(logger)
    assert [r["seq"] for r in recs] == sorted(r["seq"] for r in recs)
    assert all(set(r) >= {"name", "step", "value", "ts", "seq"} for r in recs)
    assert all(isinstance(r["ts"], float) for r in recs)


def test_wait_means_on_disk(logger: amltrack.Logger) -> None:
    h = logger.log("m", 1.5)
    h.wait(timeout=10)
    assert h.done()
    line = (logger.run_dir / "metrics.jsonl").read_bytes().splitlines()[-1]
    assert orjson.loads(line)["value"] == 1.5


def test_unwaited_records_are_flushed_within_the_interval(logger: amltrack.Logger) -> None:
    from .conftest import wait_until

    logger.log("m", 1.0)
    path = logger.run_dir / "metrics.jsonl"
    wait_until(lambda: path.exists() and path.stat().st_size > 0, timeout=60, what="the periodic flush")


def test_many_threads_log_safely(logger: amltrack.Logger) -> None:
    def work(k: int) -> None:
        for i in range(2000):
            logger.log(f"t{k}", i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recs = records(logger)
    assert len(recs) == 16000
    seqs = [r["seq"] for r in recs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 16000
    for k in range(8):
        mine = [r for r in recs if r["name"] == f"t{k}"]
        assert [r["value"] for r in mine] == list(range(2000))
        assert [r["step"] for r in mine] == list(range(2000))


def test_threads_logging_one_name_with_default_steps_get_each_step_once(logger: amltrack.Logger) -> None:
    def work() -> None:
        for i in range(5000):
            logger.log("shared", i)

    threads = [threading.Thread(target=work) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns every few calls, not every 5 ms
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    logger.flush()
    m = amltrack.Store(logger.store).run(logger.run_id).metric("shared")
    assert sorted(m.steps) == list(range(20000))


def test_backpressure_blocks_instead_of_dropping(store: Path) -> None:
    from amltrack import _lifecycle, _logger

    logger = _logger.open_run("bp", store=store, outputs=None)
    _lifecycle.registry.track(logger)
    logger._writer.max_pending = 50
    for i in range(5000):
        logger.log("m", i)
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    assert run.metric("m").values == list(range(5000))


def test_wait_timeout_raises_timeout_error(logger: amltrack.Logger) -> None:
    w = logger._writer
    release = threading.Event()
    orig = w._write_batch

    def held_up(*batch):  # a disk that takes its time
        release.wait(10)
        orig(*batch)

    w._write_batch = held_up
    try:
        handle = logger.log("m", 2.0)
        with pytest.raises(TimeoutError, match="not written within"):
            handle.wait(timeout=0.2)
        assert not handle.done()
    finally:
        release.set()
    handle.wait(timeout=10)
    assert handle.done()


def test_upload_stores_bytes_and_manifest(logger: amltrack.Logger) -> None:
    logger.upload("artifact/path", "This should be the contents").wait()
    logger.upload("bin/data.bin", b"\x00\x01\xff").wait()
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert run.read_artifact("artifact/path") == b"This should be the contents"
    assert run.read_artifact("bin/data.bin") == b"\x00\x01\xff"
    entries = {e["path"]: e for e in run.artifacts()}
    import hashlib

    assert entries["bin/data.bin"]["sha256"] == hashlib.sha256(b"\x00\x01\xff").hexdigest()
    assert entries["bin/data.bin"]["size"] == 3
    assert entries["bin/data.bin"]["status"] == "stored"
    assert entries["bin/data.bin"]["source"] == "upload"


def test_upload_again_replaces(logger: amltrack.Logger) -> None:
    logger.upload("a.txt", "one").wait()
    logger.upload("a.txt", "two").wait()
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert run.read_artifact("a.txt") == b"two"
    assert [e["size"] for e in run.artifacts() if e["path"] == "a.txt"] == [3]


def test_upload_file(logger: amltrack.Logger, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"w" * 3_000_000)
    logger.upload_file("model/weights.bin", src).wait()
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert run.read_artifact("model/weights.bin") == src.read_bytes()
    with pytest.raises(FileNotFoundError, match="nope"):
        logger.upload_file("x", tmp_path / "nope")
    with pytest.raises(ValueError, match="regular file"):
        logger.upload_file("x", tmp_path)


@pytest.mark.parametrize(
    "path",
    [
        "/tmp/amltrack-escape.txt",
        "../escape",
        "a/../../b",
        "a\\b",
        "nul\x00",
        "",
        "a//b",
        "./a",
        "a/.",
        "C:/x",
        "x" * 1025,
        "a/" + "y" * 256,
        "ctl\x01",
    ],
)
def test_bad_upload_paths_are_rejected(logger: amltrack.Logger, path: str) -> None:
    with pytest.raises(InvalidPathError) as e:
        logger.upload(path, "x")
    assert isinstance(e.value, ValueError)
    assert not (logger.run_dir / "artifacts").exists() or not any((logger.run_dir / "artifacts").rglob("*"))


def test_bad_upload_content(logger: amltrack.Logger) -> None:
    with pytest.raises(TypeError, match="int"):
        logger.upload("a", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        logger.upload("a", "\ud800")


def test_upload_conflicting_path_is_refused_at_the_call(logger: amltrack.Logger) -> None:
    # More in test_hostile_logger.py: the reverse, clashes on disk, and one only the writer finds.
    logger.upload("a", "file").wait()
    with pytest.raises(InvalidPathError, match="'a/b'.*'a' is a file"):
        logger.upload("a/b", "under a file")
    logger.log("m", 1).wait()  # the next call is not affected
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert [e["path"] for e in run.artifacts()] == ["a"] and run.metric("m").values == [1]


def test_log_after_finish_raises(logger: amltrack.Logger) -> None:
    logger.finish()
    with pytest.raises(RunFinishedError):
        logger.log("m", 1)
    with pytest.raises(RunFinishedError):
        logger.upload("a", "b")
    logger.finish()  # a second finish does nothing


def test_finish_status_values(store: Path) -> None:
    logger = amltrack.get_logger(store=store, outputs=None)
    with pytest.raises(ValueError, match="running"):
        logger.finish("running")
    logger.finish("failed")
    assert amltrack.Store(store).run(logger.run_id).status == "failed"


def test_start_run_context(store: Path) -> None:
    with amltrack.start_run("ctx", store=store, outputs=None, params={"lr": 0.1}) as lg:
        lg.log("m", 1)
    run = amltrack.Store(store).run(lg.run_id)
    assert run.status == "completed" and run.params == {"lr": 0.1}
    with pytest.raises(ZeroDivisionError):
        with amltrack.start_run("ctx", store=store, outputs=None) as lg2:
            print(1 / 0)
    run2 = amltrack.Store(store).run(lg2.run_id)
    assert run2.status == "failed"
    assert run2.info["error"]["type"] == "ZeroDivisionError"
    assert "print(1 / 0)" in run2.info["error"]["traceback"]


def test_metadata(store: Path) -> None:
    logger = amltrack.get_logger(
        "meta", name="first", tags={"team": "a"}, params={"lr": 0.1, "layers": 3}, store=store, outputs=None
    )
    logger.finish()
    info = amltrack.Store(store).run(logger.run_id).info
    for key in (
        "id",
        "experiment",
        "name",
        "status",
        "created",
        "ended",
        "hostname",
        "user",
        "pid",
        "python",
        "platform",
        "argv",
        "cwd",
        "amltrack_version",
        "git",
        "tags",
        "params",
    ):
        assert key in info, key
    assert info["created"].endswith("Z") and info["ended"].endswith("Z")
    assert info["tags"] == {"team": "a"} and info["params"] == {"lr": 0.1, "layers": 3}
    import os

    assert not any(v in str(info) for k, v in os.environ.items() if k == "PATH")  # no environment


def test_bad_params_and_tags(store: Path) -> None:
    with pytest.raises(TypeError, match="param 'cfg'"):
        amltrack.get_logger(store=store, outputs=None, params={"cfg": {"nested": 1}})
    with pytest.raises(TypeError, match="tag"):
        amltrack.get_logger(store=store, outputs=None, tags={1: "x"})
    with pytest.raises(ValueError, match="experiment"):
        amltrack.get_logger("bad\nname", store=store, outputs=None)
    with pytest.raises(ValueError, match="run id"):
        amltrack.get_logger(store=store, outputs=None, run_id="../x")


def test_git_metadata_and_dirty_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(2)\n")
    monkeypatch.chdir(repo)
    logger = amltrack.get_logger(store=tmp_path / "s", outputs=None)
    logger.finish()
    run = amltrack.Store(tmp_path / "s").run(logger.run_id)
    assert run.info["git"]["branch"] == "main"
    assert len(run.info["git"]["commit"]) == 40
    assert run.info["git"]["dirty"] is True
    assert b"print(2)" in run.read_artifact("git/diff.patch")


def test_store_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amltrack._store import find_store

    (tmp_path / "proj" / ".amltrack").mkdir(parents=True)
    (tmp_path / "proj" / "sub" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "proj" / "sub" / "deep")
    assert find_store() == tmp_path / "proj" / ".amltrack"
    monkeypatch.setenv("AMLTRACK_STORE", str(tmp_path / "env"))
    assert find_store() == tmp_path / "env"
    assert find_store(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("AMLTRACK_STORE")
    monkeypatch.chdir(tmp_path)
    assert find_store() == tmp_path / ".amltrack"


def test_get_logger_and_start_run_take_the_same_arguments() -> None:
    """The twins keep one signature, written out in each for its readers; open_run(), amltrack run's
    way to own a run, takes the same by binding them to get_logger()'s."""
    from amltrack import _logger

    def params(f: object) -> list[inspect.Parameter]:
        return list(inspect.signature(f).parameters.values())  # type: ignore[arg-type]

    assert params(amltrack.start_run) == params(amltrack.get_logger)
    with pytest.raises(TypeError, match="flush"):
        _logger.open_run("x", flush=1.0)


def test_a_run_opened_by_its_owner_is_not_current_and_ends_with_its_error(store: Path) -> None:
    from amltrack import _logger

    logger = _logger.open_run("own", store=store, outputs=None)
    try:
        assert amltrack.get_logger(store=store, outputs=None) is not logger  # not the current run
        logger.log("m", 1.0)
    finally:
        _logger.end_run(logger, "failed", {"type": "Signal", "message": "killed by SIGKILL", "traceback": ""})
    run = amltrack.Store(store).run(logger.run_id)
    assert run.status == "failed" and run.info["error"]["message"] == "killed by SIGKILL"
    assert run.metric("m").values == [1.0]
