"""A disk that fills up mid-write again and again while points and rows are logged: every call that
returned is written once the disk has room, every call refused with the write error is not, a row
never lands in part, and the reader never fails, not even while a line is torn."""

from __future__ import annotations

import errno
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest

import amltrack

from ..test_columns import as_plain, from_json
from .conftest import size

WIDE = 300  # names of the row logged every 100 steps: a line of 6 kB


def test_a_disk_that_fills_up_again_and_again_loses_no_accepted_row_and_tears_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    disk = {"room": -1}  # bytes the disk takes before it is full; -1: it has room
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if disk["room"] < 0:
            return real_write(fd, data)
        if disk["room"] == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(memoryview(data)[: disk["room"]]))  # the last bytes it takes: a short write
        disk["room"] -= n
        return n

    monkeypatch.setattr(os, "write", write)
    store = tmp_path / "s"
    logger = amltrack.get_logger("full-disk", store=store, outputs=None)
    rows: list[int] = []  # steps of the calls that returned, per kind
    points: list[int] = []
    wides: list[int] = []
    refused = 0
    waited = -1  # the step of the last row whose wait() returned

    def attempt(done: list[int], at: int, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, noting ``at`` in ``done`` if it returned; its result or None."""
        nonlocal refused
        try:
            handle = call(*args, **kwargs)
        except amltrack.WriteError as e:  # the full disk, raised from the next call: nothing queued
            assert "metrics.jsonl" in str(e) and e.errno == errno.ENOSPC, (seed, e)
            refused += 1
            return None
        done.append(at)
        return handle

    def check(whole: bool) -> None:
        """What the reader gives: a prefix of the calls that returned (all of them, if ``whole``) that
        holds every row whose wait() returned, each row whole, at most a torn last line skipped."""
        run = amltrack.Store(store).run(logger.run_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a torn last line while the disk is full is reported
            metrics = run.metrics()  # never fails
        assert run.skipped <= (0 if whole else 1), (seed, run.skipped)
        a = metrics.get("a")
        steps = a.steps if a is not None else []
        assert steps == rows[: len(rows) if whole else len(steps)], seed
        assert waited < 0 or waited in steps, f"seed {seed}: the row of step {waited} was waited for"
        wide_waited = [s for s in wides if s == waited]  # a wide row was waited for, not the small one
        for name in ("b", "c", "d") if steps else ():
            m = metrics[name]
            assert m.steps == steps and m.timestamps == a.timestamps, (seed, name)  # whole rows
        assert not steps or metrics["b"].values == [s / 4 for s in steps], seed
        p = metrics.get("p")
        assert (p.steps if p else []) == points[: len(points) if whole else len(p or [])], seed
        wide = [metrics.get(f"wide/{j:03d}") for j in range(WIDE)]
        if wide[0] is None:
            assert all(m is None for m in wide) and not (whole and wides) and not wide_waited, seed
            return
        assert wide[0].steps == wides[: len(wides) if whole else len(wide[0])], seed
        assert set(wide_waited) <= set(wide[0].steps), f"seed {seed}: a waited wide row is missing"
        for j, m in enumerate(wide):  # each wide row whole
            assert m is not None and m.steps == wide[0].steps and m.timestamps == wide[0].timestamps, (
                seed,
                j,
            )
            assert m.values == [s + j for s in m.steps], (seed, j)

    i = 0
    for _ in range(size(4, 40)):
        disk["room"] = rng.randrange(0, 60_000)  # the disk fills up after that many bytes
        before, more = refused, rng.randrange(1, 300)  # calls refused before the disk comes back
        while refused < before + more:
            row = attempt(
                rows,
                i,
                logger.log_metrics,
                {"a": i, "b": i / 4, "c": i % 2 == 0, "d": math.nan if i % 5 == 0 else -math.inf},
                step=i,
            )
            attempt(points, i, logger.log, "p", i, step=i)
            if i % 100 == 0:
                wide = attempt(
                    wides, i, logger.log_metrics, {f"wide/{j:03d}": i + j for j in range(WIDE)}, step=i
                )
                row = wide or row
            if i % 300 == 0 and row is not None:
                try:
                    row.wait(timeout=30)  # written now, or the full disk raised: it fills up sooner
                    waited = i
                except amltrack.WriteError as e:
                    assert "metrics.jsonl" in str(e), (seed, e)
            i += 1
        try:
            logger.flush(timeout=30)
        except amltrack.WriteError as e:  # waiting while the disk is full raises too, naming the file
            assert "metrics.jsonl" in str(e), (seed, e)
        check(whole=False)
        disk["room"] = -1  # the disk has room again: the writer writes what it kept
        deadline = time.monotonic() + 120
        while True:
            try:
                logger.flush(timeout=30, fsync=True)  # also wakes the writer at once
                break
            except amltrack.WriteError:
                assert time.monotonic() < deadline, f"seed {seed}: the kept bytes were never written"
                time.sleep(0.01)
        check(whole=True)
    assert refused, f"seed {seed}: the disk never filled up"
    logger.finish()
    check(whole=True)
    run = amltrack.Store(store).run(logger.run_id)
    assert run.status == "completed" and "write_error" not in run.info, seed
    raw = (run.dir / "metrics.jsonl").read_bytes()
    lines = [orjson.loads(line) for line in raw.splitlines()]  # every torn line was completed
    assert len(lines) == len(rows) + len(points) + len(wides), seed  # once each
    metrics = run.metrics()
    assert as_plain(metrics) == from_json(run.dir), seed  # the index, where it goes, agrees
