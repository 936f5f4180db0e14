"""The UI's background warmer: it brings the chart caches of the newest runs up to date before anyone
opens their pages, and never spins or raises on a run it cannot cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import amltrack
from amltrack.ui._cache import Caches, Warmer


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
        deadline = time.monotonic() + 10
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
    (run_dir / "cache").mkdir(exist_ok=True)
    (run_dir / "cache" / "ui").write_text("a file where the cache folder goes")
    warmer = Warmer(amltrack.Store(tmp_path), Caches(), interval=0.05)
    assert warmer.run_once() is False
    assert warmer.run_once() is False
    os.remove(run_dir / "cache" / "ui")
