"""Resuming a run (``resume=``): a preempted job SIGKILLed and restarted, refusals, segments, sync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import amltrack
from amltrack.sync import AmltrackRemote, sync

from .conftest import child_env
from .sync_helpers import WRITE_TOKEN, assert_same_run, running_server

JOB = Path(__file__).parent / "scripts" / "preempted_job.py"
RUN_ID = "preempted-job-1"


def start_job(store: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(JOB), str(store), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(AMLTRACK_RUN_ID=RUN_ID, **env),
    )


def kill_job_at(store: Path, step: int) -> int:
    """Run the job until ``step`` is on disk, then SIGKILL it; returns its pid."""
    job = start_job(store, str(step))
    assert job.stdout is not None
    try:
        lines = [job.stdout.readline(), job.stdout.readline()]
        assert lines[1] == f"at {step}\n", (lines, job.stderr.read() if job.poll() is not None else "")
        os.kill(job.pid, signal.SIGKILL)
        assert job.wait(30) == -signal.SIGKILL
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(30)
        for f in (job.stdin, job.stdout, job.stderr):
            f.close() if f else None
    return job.pid


def finish_job(store: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(JOB), str(store)],
        capture_output=True,
        text=True,
        env=child_env(AMLTRACK_RUN_ID=RUN_ID),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_job_killed_at_step_500_and_restarted_ends_one_run_at_step_1000(store: Path) -> None:
    first_pid = kill_job_at(store, 500)
    run = amltrack.Store(store).run(RUN_ID)
    assert run.status == "crashed"
    recorded = run.metric("loss").steps
    assert recorded == list(range(len(recorded))) and recorded[-1] >= 500

    out = finish_job(store)
    assert out.startswith(f"start {recorded[-1] + 1}\n")

    run = amltrack.Store(store).run(RUN_ID)
    assert [r.id for r in amltrack.Store(store).runs()] == [RUN_ID]
    assert run.status == "completed"
    for name in ("loss", "acc"):
        assert run.metric(name).steps == list(range(1000)), name  # 0..999, none twice
    assert run.metric("loss").values == [1.0 / (i + 1) for i in range(1000)]
    assert run.params == {"lr": 0.1}
    first, second = run.segments
    assert (first["status"], second["status"]) == ("crashed", "completed")
    assert first["pid"] == first_pid and second["pid"] == run.info["pid"] != first_pid
    assert (
        first["start_ts"] <= first["end_ts"] <= second["start_ts"] <= second["end_ts"] == run.info["ended_ts"]
    )
    # The killed attempt's records that its summary had not counted yet are counted, once.
    listed = run.listing_summary()["metrics"]
    assert listed["loss"]["count"] == listed["acc"]["count"] == 1000
    assert listed["loss"]["step"] == 999
    assert run.summary()["loss"]["count"] == 1000


def test_resuming_a_run_a_live_process_holds_is_refused_naming_it(store: Path) -> None:
    job = start_job(store, "3")
    assert job.stdout is not None
    try:
        assert job.stdout.readline() == "start 0\n" and job.stdout.readline() == "at 3\n"
        for resume, run_id in ((RUN_ID, None), ("auto", RUN_ID), ("last", None)):
            with pytest.raises(amltrack.RunHeldError) as e:
                amltrack.get_logger(store=store, outputs=None, resume=resume, run_id=run_id)
            assert str(e.value) == (
                f"run {RUN_ID} is held by pid {job.pid} on {os.uname().nodename}, which is still "
                "running; stop it or wait for it to end, then resume the run"
            )
        assert amltrack.Store(store).run(RUN_ID).status == "running"
    finally:
        job.kill()
        job.wait(30)
        for f in (job.stdin, job.stdout, job.stderr):
            f.close() if f else None


def test_a_finished_run_resumes_in_process_with_its_steps_going_on(store: Path) -> None:
    with amltrack.start_run("e", store=store, outputs=None, params={"lr": 0.1}, tags={"a": "1"}) as lg:
        for i in range(3):
            lg.log("loss", float(i))
        lg.log_metrics({"acc": 0.5}, step=10)
        rid = lg.run_id
    assert amltrack.Store(store).run(rid).status == "completed"
    with amltrack.start_run(store=store, outputs=None, resume=rid[:12], params={"epochs": 2}) as lg:
        assert lg.run_id == rid and lg.resumed_steps == {"loss": 2, "acc": 10}
        assert amltrack.Store(store).run(rid).status == "running"
        lg.log("loss", 3.0)
        lg.log_metrics({"acc": 0.6, "loss": 4.0})
    run = amltrack.Store(store).run(rid)
    assert run.metric("loss").steps == [0, 1, 2, 3, 11] and run.metric("acc").steps == [10, 11]
    assert run.params == {"lr": 0.1, "epochs": 2} and run.tags == {"a": "1"}
    assert [s["status"] for s in run.segments] == ["completed", "completed"]
    with pytest.raises(RuntimeError), amltrack.start_run(store=store, outputs=None, resume="last"):
        raise RuntimeError("boom")
    run = amltrack.Store(store).run(rid)
    assert run.status == "failed" and run.info["error"]["message"] == "boom"
    assert [s["status"] for s in run.segments] == ["completed", "completed", "failed"]
    info = json.loads((run.dir / "run.json").read_text())
    assert info["segments"][-1]["end_ts"] == info["ended_ts"]


def test_resume_is_checked_at_the_call(store: Path) -> None:
    with amltrack.start_run("e", store=store, outputs=None) as lg:
        rid = lg.run_id
    with pytest.raises(TypeError, match="resume= takes a run id"):
        amltrack.get_logger(store=store, outputs=None, resume=3)  # type: ignore[arg-type]
    with pytest.raises(amltrack.RunNotFoundError):
        amltrack.get_logger(store=store, outputs=None, resume="ffffffff")
    with pytest.raises(ValueError, match="has experiment 'e', not 'other'"):
        amltrack.get_logger("other", store=store, outputs=None, resume=rid)
    with pytest.raises(ValueError, match="names another"):
        amltrack.get_logger(store=store, outputs=None, resume=rid, run_id="another-run")
    assert [s["status"] for s in amltrack.Store(store).run(rid).segments] == ["completed"]


def test_auto_creates_the_run_it_names_and_the_same_call_returns_it(store: Path) -> None:
    logger = amltrack.get_logger("e", store=store, outputs=None, run_id="job-7", resume="auto")
    assert logger.run_id == "job-7" and logger.resumed_steps == {}
    assert amltrack.get_logger(resume="auto") is logger
    assert amltrack.get_logger(resume="job-7") is logger
    logger.finish()
    assert "segments" not in json.loads((store / "runs" / "job-7" / "run.json").read_text())


def test_a_child_of_the_live_holder_joins_instead_of_being_refused(store: Path) -> None:
    logger = amltrack.get_logger("e", store=store, outputs=None)
    logger.log("parent", 1).wait()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import amltrack; amltrack.get_logger(resume='auto', outputs=None).log('child', 2).wait()",
        ],
        capture_output=True,
        text=True,
        env=child_env(AMLTRACK_RUN_ID=logger.run_id, AMLTRACK_STORE=str(store)),
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    assert run.status == "completed" and run.metric("child").values == [2]
    assert len(run.segments) == 1


def test_sync_sends_a_resumed_runs_new_records_exactly_once(store: Path, tmp_path: Path) -> None:
    kill_job_at(store, 500)
    with running_server(tmp_path / "srv") as server:
        remote = AmltrackRemote(server.url, WRITE_TOKEN)
        try:
            first = sync(store, remote)
            assert [(r.outcome, r.status) for r in first.runs] == [("pushed", "crashed")]
            there = server.store / "runs" / RUN_ID
            before = (there / "metrics.jsonl").read_bytes()
            finish_job(store)
            second = sync(store, remote)
            assert [(r.outcome, r.status) for r in second.runs] == [("pushed", "completed")]
            after = (there / "metrics.jsonl").read_bytes()
            assert after.startswith(before) and len(after) > len(before)
            assert_same_run(store / "runs" / RUN_ID, there)
            run = amltrack.Store(server.store).run(RUN_ID)
            assert run.status == "completed" and run.metric("loss").steps == list(range(1000))
            assert [s["status"] for s in run.segments] == ["crashed", "completed"]
            assert sync(store, remote).runs[0].outcome == "up_to_date"
        finally:
            remote.close()
