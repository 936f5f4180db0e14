"""The background writer under write errors: raise on the next call, keep what was written."""

from __future__ import annotations

import errno
import math
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from pathlib import Path

import orjson
import pytest

import amltrack
from amltrack import _lifecycle, _logger, _writer

from .conftest import child_env, wait_until

FSIZE_SCRIPT = textwrap.dedent("""
    import resource, signal, sys, json
    import amltrack
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    logger = amltrack.get_logger("fsize", store=sys.argv[1], outputs=None)
    for i in range(100):
        logger.log("early", i)
    logger.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    err = None
    for i in range(100_000):
        try:
            logger.log("late", "x" * 100)
        except amltrack.WriteError as e:
            err = e
            break
    try:
        logger.flush(timeout=10)
    except amltrack.WriteError as e:
        err = err or e
    try:
        logger.finish()
    except amltrack.WriteError:
        pass
    print(json.dumps({"error": str(err), "errno": getattr(err, "errno", None),
                      "is_oserror": isinstance(err, OSError), "run": logger.run_id}))
""")


def test_a_file_size_limit_is_raised_on_the_next_call_and_earlier_data_stays(tmp_path: Path) -> None:
    script = tmp_path / "fsize.py"
    script.write_text(FSIZE_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    result = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert "metrics.jsonl" in result["error"], result  # names the path
    assert "File too large" in result["error"] and result["is_oserror"]
    run = amltrack.Store(tmp_path / "s").run(result["run"])
    assert run.metric("early").values == list(range(100))  # earlier data intact
    assert run.status == "completed"  # the run could still be finished
    assert "write_error" in run.info
    # Whatever did land is whole lines: the store still opens and reads.
    for line in (run.dir / "metrics.jsonl").read_bytes().splitlines():
        orjson.loads(line)


def test_writer_recovers_when_the_disk_comes_back(store: Path) -> None:
    """A full disk is raised on the next call, naming the file; the bytes are kept and written once
    the disk has room again, so nothing is lost and no line is torn."""
    import threading

    import amltrack._writer as wmod

    logger = amltrack.get_logger(store=store, outputs=None)
    logger.log("m", -1).wait()
    real_write = wmod.os.write
    disk_back = threading.Event()
    calls = {"n": 0}

    def full_disk(fd, data):
        calls["n"] += 1
        if disk_back.is_set():
            return real_write(fd, data)
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:10]))  # a short write: the disk is filling up
        raise OSError(errno.ENOSPC, "No space left on device")

    wmod.os.write = full_disk
    try:
        for i in range(10):
            logger.log("m", i)
        with pytest.raises(amltrack.WriteError, match="metrics.jsonl.*No space left") as e:
            logger.flush(timeout=10)
        assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
        with pytest.raises(amltrack.WriteError, match="metrics.jsonl"):
            logger.log("m", 10)  # the next call raises it too, while the disk stays full
        disk_back.set()

        def flushed() -> bool:
            try:
                logger.flush(timeout=5)
                return True
            except amltrack.WriteError:
                return False

        wait_until(flushed, what="the retried write")  # the writer retries on its own
    finally:
        wmod.os.write = real_write
    logger.log("m", 10)
    logger.finish()
    raw = (logger.run_dir / "metrics.jsonl").read_bytes()
    assert all(orjson.loads(line) for line in raw.splitlines())  # the torn line was completed
    assert amltrack.Store(store).run(logger.run_id).metric("m").values == list(range(-1, 11))


UPLOAD_FSIZE_SCRIPT = textwrap.dedent("""
    import json, resource, signal, sys
    import amltrack
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    logger = amltrack.get_logger("fsize", store=sys.argv[1], outputs=None)
    logger.log("early", 1.5)
    logger.upload("small.txt", "before the limit").wait()
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    out = {"run": logger.run_id}
    try:
        logger.upload("big/weights.bin", b"w" * 1_000_000).wait(timeout=10)
    except amltrack.WriteError as e:
        out.update(error=str(e), errno=e.errno, is_oserror=isinstance(e, OSError))
    try:
        logger.log("after", 1)
    except amltrack.WriteError as e:
        out["next_call"] = str(e)
    try:
        logger.finish()
    except amltrack.WriteError as e:
        out["finish"] = str(e)
    print(json.dumps(out))
""")


def test_an_upload_over_the_file_size_limit_is_raised_naming_it_and_earlier_data_stays(
    tmp_path: Path,
) -> None:
    script = tmp_path / "upload_fsize.py"
    script.write_text(UPLOAD_FSIZE_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    result = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert "big/weights.bin" in result["error"] and "File too large" in result["error"], result
    assert result["is_oserror"] and result["errno"] == errno.EFBIG
    assert "big/weights.bin" in result["next_call"]  # raised again on the next call
    assert "big/weights.bin" in result["finish"]  # and by finish(), which still ends the run
    run = amltrack.Store(tmp_path / "s").run(result["run"])
    assert run.status == "completed" and "big/weights.bin" in run.info["write_error"]
    assert run.metric("early").values == [1.5]  # earlier data intact
    assert run.read_artifact("small.txt") == b"before the limit"
    assert [a["path"] for a in run.artifacts() if a["status"] == "stored"] == ["small.txt"]
    left = sorted(p.relative_to(run.dir / "artifacts").as_posix() for p in (run.dir / "artifacts").rglob("*"))
    assert left in (["small.txt"], ["big", "small.txt"])  # no partial file, no temporary file


def _held_logger(store: Path) -> amltrack.Logger:
    """A logger whose writer writes only when asked (a flush interval of an hour), so that what is
    logged between two flushes is one batch however slow the machine: a timed interval is no bound."""
    return _tracked(_logger.open_run("w", store=store, outputs=None, flush_interval=3600.0))


def _tracked(logger: amltrack.Logger) -> amltrack.Logger:
    """``logger``, finished by the leak check if its test does not finish it."""
    _lifecycle.registry.track(logger)
    return logger


def _batch(logger: amltrack.Logger, records: list[tuple[str, object]]) -> list[dict]:
    """Log records between two flushes of a ``_held_logger``, so that they reach the writer as one batch."""
    w = logger._writer
    logger.flush()
    start = (
        (logger.run_dir / "metrics.jsonl").stat().st_size
        if (logger.run_dir / "metrics.jsonl").exists()
        else 0
    )
    sizes = []
    encode = w._encode

    def counting(items, *flags):
        sizes.append(len(items))
        return encode(items, *flags)

    w._encode = counting
    for name, value in records:
        logger.log(name, value)
    logger.flush()
    # One batch of them all; a write split at line ends may carry its rest into a pass that encodes none.
    assert [n for n in sizes if n] == [len(records)], sizes
    data = (logger.run_dir / "metrics.jsonl").read_bytes()[start:]
    return [orjson.loads(line) for line in data.splitlines()]


def test_a_batch_of_numbers_with_one_non_finite_value_is_encoded_as_such(store: Path) -> None:
    logger = _held_logger(store)
    recs = _batch(logger, [("x", 1.0), ("x", 2), ("x", float("nan")), ("x", True), ("y", -float("inf"))])
    assert [r["value"] for r in recs] == [1.0, 2, "NaN", True, "-Infinity"]
    assert [r.get("nonfinite") for r in recs] == [None, None, True, None, True]
    logger.finish()
    got = amltrack.Store(store).run(logger.run_id).metrics()
    assert math.isnan(got["x"].values[2]) and got["y"].values == [-math.inf]


def test_finite_numbers_whose_sum_overflows_are_stored_as_numbers(store: Path) -> None:
    logger = _held_logger(store)
    recs = _batch(logger, [("big", 1e308), ("big", 1e308), ("big", -1e308)])
    assert [r["value"] for r in recs] == [1e308, 1e308, -1e308] and "nonfinite" not in recs[0]


def test_separators_inside_strings_and_names_keep_one_record_per_line(store: Path) -> None:
    logger = _held_logger(store)
    records = [("a},{b", 1.0), ("s", 'x"},{"name":"evil'), ("s", "},{"), ("n", 3)]
    recs = _batch(logger, records)
    assert [(r["name"], r["value"]) for r in recs] == records
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]


def test_a_batch_larger_than_one_write_is_split_at_line_ends(store: Path) -> None:
    logger = _held_logger(store)
    big = [float(i) / 7 for i in range(20_000)]  # about 400 kB a line: three lines exceed one write
    recs = _batch(logger, [("curve", big), ("x", 1.0), ("curve", big), ("curve", big[:5])])
    assert [r["value"] for r in recs] == [big, 1.0, big, big[:5]]


def test_the_handle_is_the_record(store: Path) -> None:
    # A flush interval of a minute: the writer takes the record off the queue, and numbers it,
    # only when wait() asks.
    logger = _tracked(_logger.open_run("w", store=store, outputs=None, flush_interval=60.0))
    logger.log("loss", 0.25, step=2).wait()
    h = logger.log("loss", 0.5, step=3)
    assert isinstance(h, amltrack.Handle) and h.seq is None and not h.done()
    h.wait()
    assert h.done() and "amltrack.Handle" in repr(h) and h.seq == 2
    assert dict(h) == {"name": "loss", "step": 3, "value": 0.5, "ts": h["ts"], "seq": 2}


def test_a_record_the_encoder_refuses_is_raised_and_the_rest_of_its_batch_is_written(tmp_path: Path) -> None:
    # log() refuses such values; this injects one past it, as a bug in log()'s checks would.
    logger = amltrack.get_logger("enc", store=tmp_path, outputs=None)
    w = logger._writer
    logger.log("a", 1.0)
    h = w.Handle()
    h.update(name="bad", step=0, value=2**70, ts=time.time(), seq=None)
    w.queue.items.append(h)
    logger.log("a", 2.0)
    with pytest.raises(amltrack.InvalidMetricError, match="'bad' at step 0 could not be written"):
        logger.flush()
        logger.log("a", 3.0)
    logger.log("a", 4.0)
    logger.finish()
    run = amltrack.Store(tmp_path).run(logger.run_id)
    assert run.status == "completed"
    assert run.metric("a").values[:2] == [1.0, 2.0] and run.metric("a").values[-1] == 4.0
    assert "bad" not in run.metrics()


def test_a_log_whose_append_comes_after_finishs_last_look_is_refused_not_lost(store: Path) -> None:
    # log() appends without the lock, so finish() can drain the queue and stop the writer between
    # log()'s check and its append. The queue below makes that happen on the call logging 2.0.
    logger = amltrack.get_logger("late", store=store, outputs=None)
    logger.log("m", 1.0).wait()
    w = logger._writer

    class FinishFirst(deque):  # type: ignore[type-arg]
        def append(self, h: object) -> None:
            if isinstance(h, dict) and h.get("value") == 2.0:
                t = threading.Thread(target=logger.finish)
                t.start()
                t.join()
                assert not w._thread.is_alive()
            super().append(h)

    w.queue.items = FinishFirst(w.queue.items)
    with pytest.raises(amltrack.RunFinishedError):
        logger.log("m", 2.0)
    assert not w.queue.items  # taken back out, not left behind for nobody
    with pytest.raises(amltrack.RunFinishedError):
        logger.log("m", 3.0)
    assert amltrack.Store(store).run(logger.run_id).metric("m").values == [1.0]


def test_a_record_queued_without_a_wake_is_written_within_the_interval(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two threads appending at once may each see a queue of two, and neither wakes the idle writer;
    # the writer looks at the queue every flush interval anyway. With the heartbeat an hour away, only
    # that look can write the record within the wait, however slow the machine.
    monkeypatch.setattr(_writer, "HEARTBEAT_INTERVAL", 3600.0)
    logger = amltrack.get_logger("nowake", store=store, outputs=None)
    logger.log("m", 1.0).wait()
    time.sleep(0.2)  # the writer is idle again
    w = logger._writer
    h = w.Handle()
    h.update(name="m", step=1, value=2.0, ts=time.time(), seq=None)
    w.queue.items.append(h)  # what log() does, without its wake
    wait_until(h.done, timeout=60, what="the queued record")
    logger.finish()
    assert amltrack.Store(store).run(logger.run_id).metric("m").values == [1.0, 2.0]


def test_log_waits_at_the_queue_bound_even_below_a_batch(logger: amltrack.Logger) -> None:
    """The bound is _Queue's one rule for every put: log() waits at max_pending records, also when
    that is below BATCH_SIZE, while the writer is held up on the disk."""
    w = logger._writer
    w.max_pending = 50
    release = threading.Event()
    orig = w._write_batch
    w._write_batch = lambda *batch: (release.wait(60), orig(*batch))  # type: ignore[method-assign]
    t = threading.Thread(target=lambda: [logger.log("m", i) for i in range(200)])
    t.start()
    try:
        # Held at the bound, the producer cannot finish its 200 before the release.
        wait_until(lambda: len(w.queue) >= 50 or not t.is_alive(), what="a full queue")
        assert t.is_alive() and len(w.queue) <= 50, len(w.queue)
    finally:
        release.set()
        t.join(60)
    logger.finish()
    assert amltrack.Store(logger.store).run(logger.run_id).metric("m").values == list(range(200))


def test_a_batch_taken_off_the_queue_carries_its_flags_and_clears_them() -> None:
    """What _Queue's invariant promises the writer: take() returns every record queued, numbered in
    order, with flags that cover them all, and leaves the queue and its count of points empty."""
    lock = threading.Lock()
    q = _writer._Queue(lock, threading.Condition(lock), _writer.Handle, 10_000, lambda: True)
    h1 = q.Handle(name="a", step=0, value=1.0, ts=0.0, seq=None)
    q.items.append(h1)  # log()'s lock-free put
    with q.lock:  # the writer's side, as in Writer._run
        h2 = q.put_row(1, {"a": 2.0, "b": 3.0}, 0.0)
        assert len(q) + q.extra == 3  # the bound counts points
        items, has_uploads, rows = q.take()
    assert items == [h1, h2] and rows and not has_uploads
    assert [h1["seq"], h2["seq"]] == [1, 2] and q.last_seq() == 2
    assert not q.items and q.extra == 0 and not q.rows
    h3 = q.Handle(name="a", step=1, value=1.0, ts=0.0, seq=None)
    q.items.append(h3)
    with q.lock:
        q.close()
    assert q.take_back(h3) and not q.items  # close() began between log()'s check and its append
