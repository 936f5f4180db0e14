"""The UI's background warmer: it brings the chart caches of the newest runs up to date before anyone
opens their pages, and never spins or raises on a run it cannot cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import amltrack
from amltrack.ui import _cache
from amltrack.ui._cache import Caches, Warmer

from .conftest import child_env, wait_until


def logged(store: Path, n: int, name: str = "w") -> Path:
    logger = amltrack.get_logger(name, store=store, outputs=None)
    for i in range(n):
        logger.log("loss", 1.0 / (i + 1))
    logger.finish()
    return logger.run_dir


def test_the_warmer_builds_the_newest_runs_caches(tmp_path: Path) -> None:
    old = logged(tmp_path, 10, "old")
    runs = [logged(tmp_path, 3000 + i) for i in range(3)]
    caches = Caches()
    warmer = Warmer(amltrack.Store(tmp_path), caches, newest=3, interval=0.05)
    while warmer.run_once():
        pass
    for i, run_dir in enumerate(runs):
        cache = caches.get(run_dir)
        assert cache.index()["offset"] == (run_dir / "metrics.jsonl").stat().st_size
        assert len(cache.numbers("loss").values) == 3000 + i
    assert not (old / "cache" / "ui").exists()  # not among the newest three


def test_a_live_run_is_kept_current_in_the_background(tmp_path: Path) -> None:
    logger = amltrack.get_logger("live", store=tmp_path, outputs=None)
    logger.log("loss", 1.0).wait()
    caches = Caches()
    warmer = Warmer(amltrack.Store(tmp_path), caches, interval=0.05)
    warmer.start()
    try:
        for i in range(1, 200):
            logger.log("loss", 1.0 / (i + 1))
        logger.flush()
        size = (logger.run_dir / "metrics.jsonl").stat().st_size
        deadline = time.monotonic() + 60
        while caches.get(logger.run_dir).index()["offset"] < size:
            assert time.monotonic() < deadline, "the warmer did not catch up with the live run"
            time.sleep(0.05)
    finally:
        warmer.stop()
        logger.finish()
    assert len(caches.get(logger.run_dir).numbers("loss").values) == 200


def test_a_torn_last_line_does_not_keep_the_warmer_busy(tmp_path: Path) -> None:
    run_dir = logged(tmp_path, 100)
    with open(run_dir / "metrics.jsonl", "ab") as f:
        f.write(b'{"name":"loss","step":100,"va')  # a writer killed mid-line
    warmer = Warmer(amltrack.Store(tmp_path), Caches(), interval=0.05)
    assert warmer.run_once() is False
    calls = []
    original = warmer.caches.get
    warmer.caches.get = lambda d: calls.append(d) or original(d)  # type: ignore[method-assign]
    assert warmer.run_once() is False
    assert calls == []  # nothing changed since: the run is not looked at again


def test_a_run_that_cannot_be_cached_is_skipped_quietly(tmp_path: Path) -> None:
    run_dir = logged(tmp_path, 100)
    os.remove(run_dir / "metrics.jsonl")
    (run_dir / "metrics.jsonl").mkdir()  # a real fault: the metrics file cannot be read
    with pytest.raises(OSError):
        _cache.SeriesCache(run_dir).update()  # what a page's own request meets, and reports
    warmer = Warmer(amltrack.Store(tmp_path), Caches(), interval=0.05)
    assert warmer.run_once() is False
    updates: list[Path] = []
    original = warmer.caches.get
    warmer.caches.get = lambda d: updates.append(d) or original(d)  # type: ignore[method-assign]
    assert warmer.run_once() is False
    assert updates == []  # not tried again until the file changes


def serving(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "amltrack", *args, "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=child_env(),
        )


def cache_offset(run_dir: Path) -> int:
    index = run_dir / "cache" / "ui" / "index.json"
    return json.loads(index.read_text())["offset"] if index.exists() else -1


@pytest.mark.parametrize("command", ["ui", "server"])
def test_a_serving_process_prepares_charts_before_any_request(tmp_path: Path, command: str) -> None:
    store = tmp_path / "store"
    early = logged(store, 20_000)  # there before the process starts
    proc = serving([command, "--store", str(store)], tmp_path / "serve.log")
    try:
        wait_until(lambda: "http://127.0.0.1:" in (tmp_path / "serve.log").read_text(), 60, "the URL")
        late = logged(store, 5_000)  # logged while it serves, and never asked for
        for run_dir in (early, late):
            size = (run_dir / "metrics.jsonl").stat().st_size
            wait_until(
                lambda d=run_dir, s=size: cache_offset(d) == s, 60, f"the chart cache of {run_dir.name}"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def update_in_slices(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, int, list[Any]]:
    """A cache of ``run_dir`` built a slice at a time (a step of 2,000 index records): the cache, the
    number of slices, and every index block that was read and checked."""
    checked: list[Any] = []
    read = _cache.read_blocks

    def spy(*args: object, **kwargs: object) -> object:
        found = read(*args, **kwargs)
        checked.extend(found[1] if found else [])
        return found

    monkeypatch.setattr(_cache, "read_blocks", spy)
    monkeypatch.setattr(_cache, "INDEX_STEP", 2000)
    cache = _cache.SeriesCache(run_dir)
    slices = 0
    while not cache.update(deadline=0).done:
        slices += 1
    return cache, slices, checked


def test_slices_of_work_check_each_block_of_the_index_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The warmer works in slices (a deadline); each slice must check only the index blocks it takes,
    # or a 10M-point run would be checked once per slice: 20 s instead of 2.
    logger = amltrack.get_logger("slices", store=tmp_path, outputs=None)
    for b in range(6):
        for i in range(1000):
            logger.log("loss", float(b * 1000 + i))
        logger.flush()
    logger.finish()
    cache, slices, checked = update_in_slices(logger.run_dir, monkeypatch)
    assert slices >= 2
    assert sum(b.n for b in checked) == 6000  # every record's block checked once, however many slices
    assert cache.numbers("loss").values.tolist() == [float(i) for i in range(6000)]


def test_slices_of_work_check_each_raw_block_of_a_rows_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Raw blocks (batches of rows) hold no record count; they must still end a slice's window, or
    # each slice would check the lines of every raw block after it: quadratic in the run's size.
    logger = amltrack.get_logger("slices", store=tmp_path, outputs=None)
    for b in range(6):
        for i in range(1000):
            logger.log_metrics({"loss": float(b * 1000 + i), "acc": 0.5, "lr": 0.1, "epoch": b})
        logger.flush()
    logger.finish()
    cache, slices, checked = update_in_slices(logger.run_dir, monkeypatch)
    assert slices >= 2
    # each raw block once
    assert sum(b.end - b.start for b in checked) == (logger.run_dir / "metrics.jsonl").stat().st_size
    assert cache.numbers("loss").values.tolist() == [float(i) for i in range(6000)]


def test_the_warmer_builds_the_cache_of_a_run_logged_in_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = amltrack.get_logger("rows", store=tmp_path, outputs=None)
    for b in range(6):  # batches of rows (raw blocks in the writer's index) between batches of points
        for i in range(300):
            if b % 2:
                logger.log("loss", 1.0 / (b * 300 + i + 1))
            else:
                logger.log_metrics(
                    {
                        "loss": 1.0 / (b * 300 + i + 1),
                        "acc": i / 300,
                        "done": i == 299,
                        "odd": float("nan") if i == 7 else 0.5,
                    }
                )
        logger.flush()
    logger.finish()
    monkeypatch.setattr(Warmer, "SLICE", 0.0)  # one piece of work a pass
    monkeypatch.setattr(_cache, "CHUNK", 4096)
    caches = Caches()
    warmer = Warmer(amltrack.Store(tmp_path), caches, interval=0.05)
    passes = 1
    while warmer.run_once():
        passes += 1
    assert passes >= 6  # a piece a batch: each batch of rows is parsed whole
    cache = caches.get(logger.run_dir)
    assert cache.index()["offset"] == (logger.run_dir / "metrics.jsonl").stat().st_size
    expected = amltrack.Store(tmp_path).run(logger.run_id).metrics()
    for name, metric in expected.items():
        nums = cache.numbers(name)
        assert nums.steps.tolist() == metric.steps, name
        assert nums.values.tolist() == [float(v) for v in metric.values] or name == "odd", name
    m = cache.index()["metrics"]
    assert (m["loss"]["numbers"], m["acc"]["numbers"], m["done"]["bools"], m["odd"]["nonfinite"]) == (
        1800,
        900,
        900,
        3,
    )


def test_the_warmer_runs_at_a_lower_priority(tmp_path: Path) -> None:
    logged(tmp_path, 10)
    seen: list[int] = []
    warmer = Warmer(amltrack.Store(tmp_path), Caches(), interval=0.05)
    original = warmer.run_once

    def spy() -> bool:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return original()

    warmer.run_once = spy  # type: ignore[method-assign]
    warmer.start()
    try:
        wait_until(lambda: seen, what="a pass of the warmer")
    finally:
        warmer.stop()
    assert seen[0] >= os.getpriority(os.PRIO_PROCESS, 0) + 10 or seen[0] == 19
