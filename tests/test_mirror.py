"""The outputs mirror on real directories: one test per case, each run twice, with the real inotify
observer (Linux) and with watchdog's polling observer (what macOS and Windows get, ``_platform``).

A test of inotify's own failings (its watch limit, its queue overflow, a network file system) is
skipped under polling, which has none of them; every other one holds for both."""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import amltrack
from amltrack import _mirror, _platform
from amltrack._mirror import CAP, Mirror

from .conftest import child_env, wait_until


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def manifest_lines(run_dir: Path) -> list[dict]:
    """Every complete line of the manifest (the mirror may be appending one as we read)."""
    p = run_dir / "artifacts.jsonl"
    complete = p.read_bytes().split(b"\n")[:-1] if p.exists() else []
    return [orjson.loads(line) for line in complete]


def manifest(run_dir: Path) -> dict[str, dict]:
    return {entry["path"]: entry for entry in manifest_lines(run_dir)}


def pause_first_copy(mirror: Mirror, path: str) -> tuple[threading.Event, threading.Event]:
    """The first copy of artifact ``path`` stops after its first block: the first event is set
    then, and the copy goes on once the test sets the second."""
    started, resume = threading.Event(), threading.Event()

    def on_block(p: str, n: int) -> None:
        if p == path and not started.is_set():
            started.set()
            resume.wait(30)

    slow_copies(mirror, on_block)
    return started, resume


def slow_copies(mirror: Mirror, on_block) -> None:
    """Call ``on_block(artifact path, bytes so far)`` after each block the mirror copies: a test's
    handle on a copy in flight (to pause it, or change its source mid-copy)."""
    put = mirror.artifacts.put

    def hooked(path, **kw):
        inner = kw.get("progress")

        def progress(n: int) -> None:
            on_block(path, n)
            if inner is not None:
                inner(n)

        return put(path, **{**kw, "progress": progress})

    mirror.artifacts.put = hooked


def mirror_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if str(w.message).startswith("amltrack:")]


POLL = 0.2  # s between polls in these tests: the logic under test, not the default interval's wait


@pytest.fixture(autouse=True, params=["inotify", "polling"])
def observer(request: pytest.FixtureRequest):
    """Every test of this file twice: the mirror's observer as on Linux, then as on macOS and Windows."""
    with _platform.forced(observer=request.param):
        yield request.param


def forcing(observer: str) -> str:
    """The first line of a child's script that takes this test's observer (forcing is per process)."""
    return f"from amltrack import _platform\n_forced = _platform.forced(observer={observer!r})\n_forced.__enter__()\n"


def inotify_only(observer: str, why: str) -> None:
    if observer != "inotify":
        pytest.skip(f"inotify only: {why}")


class Harness:
    def __init__(self, tmp_path: Path, **kw) -> None:
        self.folder = tmp_path / "outputs"
        self.run_dir = tmp_path / "run"
        self.run_dir.mkdir()
        kw.setdefault("settle", 0.2)
        kw.setdefault("quiet", 0.6)
        kw.setdefault("poll_interval", POLL)
        self.mirror = Mirror(self.folder, self.run_dir, **kw)
        self.mirror.start()
        self.report: dict | None = None

    def stored(self, rel: str) -> Path:
        return self.run_dir / "artifacts" / "outputs" / rel

    def entry(self, rel: str) -> dict | None:
        return manifest(self.run_dir).get(f"outputs/{rel}")

    def live(self, rel: str, src: Path | None = None, timeout: float = 60) -> None:
        """Wait until the live path stored ``rel`` with the source's current bytes."""
        src = src or self.folder / rel

        def ok() -> bool:
            e = self.entry(rel)
            return bool(e and e["status"] == "stored" and e["sha256"] == sha(src))

        wait_until(ok, timeout=timeout, what=f"{rel} stored by the live mirror")

    def stop(self) -> dict:
        if self.report is None:
            self.report = self.mirror.stop()
        return self.report

    def assert_same(self, rel: str) -> None:
        src = self.folder / rel
        e = self.entry(rel)
        assert e is not None and e["status"] == "stored", (rel, e)
        assert e["sha256"] == sha(src) == sha(self.stored(rel)), rel
        assert e["size"] == src.stat().st_size


@pytest.fixture
def make(tmp_path: Path):
    """``make(**mirror options)``: a started Harness, stopped at the end of the test whatever happens."""
    made: list[Harness] = []

    def factory(**kw) -> Harness:
        made.append(Harness(tmp_path, **kw))
        return made[-1]

    yield factory
    for harness in made:
        harness.stop()
        assert not list(harness.run_dir.rglob("*.tmp")), "temporary files left in the store"


@pytest.fixture
def h(make) -> Harness:
    return make()


def test_small_file(h: Harness, observer: str) -> None:
    (h.folder / "a.txt").write_text("hello")
    h.live("a.txt")
    h.stop()
    h.assert_same("a.txt")
    assert h.mirror.mode == observer


def test_200_mb_written_in_chunks(h: Harness) -> None:
    block = os.urandom(1 << 20)
    with open(h.folder / "big.bin", "wb") as f:
        for _ in range(200):
            f.write(block)
    h.live("big.bin", timeout=60)
    h.stop()
    h.assert_same("big.bin")


def test_atomic_save_with_replace(h: Harness) -> None:
    for i in range(3):
        tmp = h.folder / "model.pt.tmp"
        tmp.write_bytes(os.urandom(10_000) + bytes([i]))
        os.replace(tmp, h.folder / "model.pt")
        h.live("model.pt")
    h.stop()
    h.assert_same("model.pt")
    assert h.entry("model.pt.tmp") is None or h.entry("model.pt.tmp")["status"] == "deleted"
    assert not h.stored("model.pt.tmp").exists()


def test_in_place_saves_like_numpy(h: Harness) -> None:
    np.save(h.folder / "weights.npy", np.random.default_rng(0).random((1000, 1000)))
    np.savez(h.folder / "bundle.npz", a=np.arange(10), b=np.ones(5))
    h.live("weights.npy")
    h.live("bundle.npz")
    h.stop()
    h.assert_same("weights.npy")
    h.assert_same("bundle.npz")


def test_directory_created_and_written_at_once(h: Harness) -> None:
    for i in range(50):
        d = h.folder / f"run{i}" / "a" / "b"
        os.makedirs(d)
        (d / "f.txt").write_text(f"file {i}")
    for i in range(50):
        h.live(f"run{i}/a/b/f.txt")  # seen by the live path, not only the final sweep
    h.stop()
    for i in range(50):
        h.assert_same(f"run{i}/a/b/f.txt")


def test_checkpoint_directory_built_under_a_temp_name(h: Harness) -> None:
    tmp = h.folder / "ckpt_100.tmp"
    tmp.mkdir()
    (tmp / "meta.json").write_text('{"step": 100}')
    (tmp / "weights.bin").write_bytes(os.urandom(300_000))
    os.rename(tmp, h.folder / "ckpt_100")
    h.live("ckpt_100/meta.json")
    h.live("ckpt_100/weights.bin")
    h.stop()
    h.assert_same("ckpt_100/weights.bin")
    for rel in ("ckpt_100.tmp/meta.json", "ckpt_100.tmp/weights.bin"):
        e = h.entry(rel)
        assert e is None or e["status"] == "deleted"
        assert not h.stored(rel).exists()


def test_a_burst_of_10000_small_files(h: Harness) -> None:
    d = h.folder / "burst"
    d.mkdir()
    for i in range(10_000):
        fd = os.open(d / f"f{i:05d}.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * (i % 100))
        os.close(fd)
    report = h.stop()
    assert report["failed"] == []
    entries = manifest(h.run_dir)
    missing = [
        i for i in range(10_000) if entries.get(f"outputs/burst/f{i:05d}.txt", {}).get("status") != "stored"
    ]
    assert missing == []
    assert len(list((h.run_dir / "artifacts" / "outputs" / "burst").iterdir())) == 10_000


def test_a_log_kept_open_and_appended(h: Harness) -> None:
    log = open(h.folder / "train.log", "a")
    try:
        for i in range(5):
            log.write(f"step {i}\n")
            log.flush()
        h.live("train.log")  # copied after a quiet period although it was never closed
        log.write("more\n")
        log.flush()
    finally:
        report = h.stop()  # the run ends with the log still open
        log.close()
    assert report["failed"] == []
    assert h.stored("train.log").read_text().endswith("more\n")


def test_a_file_deleted_right_after_it_is_created(h: Harness) -> None:
    p = h.folder / "flash.txt"
    p.write_text("here and gone")
    p.unlink()
    (h.folder / "after.txt").write_text("x")
    h.live("after.txt")
    report = h.stop()
    assert report["failed"] == []
    e = h.entry("flash.txt")
    assert e is None or e["status"] == "deleted"
    assert not h.stored("flash.txt").exists()


def test_truncate_and_rewrite(h: Harness) -> None:
    p = h.folder / "state.txt"
    p.write_text("first version, quite long")
    h.live("state.txt")
    os.truncate(p, 0)
    with open(p, "r+") as f:
        f.write("second")
    h.live("state.txt")
    h.stop()
    h.assert_same("state.txt")
    assert h.stored("state.txt").read_text() == "second"


def test_an_mmap_write(h: Harness) -> None:
    p = h.folder / "mm.bin"
    p.write_bytes(b"\0" * 4096)
    h.live("mm.bin")
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 4096)
        mm[:5] = b"hello"
        mm.flush()
        mm.close()
    h.stop()  # mmap writes give no inotify event; the final sweep sees the new mtime
    h.assert_same("mm.bin")
    assert h.stored("mm.bin").read_bytes()[:5] == b"hello"


def test_a_symlink_pointing_outside_is_skipped(make, tmp_path: Path, observer: str) -> None:
    h = make()
    assert h.mirror.mode == observer
    (h.folder / "first.txt").write_text("x")
    h.live("first.txt", timeout=30)  # the start-up sweep is over: from here on only the watcher finds files
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the store")
    (tmp_path / "secret_dir").mkdir()
    (tmp_path / "secret_dir" / "x.txt").write_text("nor this")
    os.symlink(secret, h.folder / "link.txt")
    os.symlink(tmp_path / "secret_dir", h.folder / "linkdir")
    (h.folder / "after.txt").write_text("written after the links")
    h.live("after.txt", timeout=30)  # the watcher (a poller too) has seen the links by now
    (tmp_path / "secret_dir" / "y.txt").write_text("nor this, written later")
    h.stop()
    for rel in ("link.txt", "linkdir"):
        e = h.entry(rel)
        assert e is not None and e["status"] == "skipped" and "symlink" in e["reason"], e
        assert not h.stored(rel).exists()
    assert not any(p.name in ("x.txt", "y.txt") for p in h.run_dir.rglob("*"))
    assert {e["path"] for e in manifest_lines(h.run_dir) if e["status"] == "stored"} == {
        "outputs/first.txt",
        "outputs/after.txt",
    }
    assert not [
        e for e in manifest_lines(h.run_dir) if e["path"].startswith("outputs/linkdir/")
    ]  # never looked in
    assert b"nor this" not in b"".join(p.read_bytes() for p in h.run_dir.rglob("*") if p.is_file())


def test_a_path_through_a_linked_folder_is_skipped(make, tmp_path: Path) -> None:
    (tmp_path / "secret_dir").mkdir()
    (tmp_path / "secret_dir" / "x.txt").write_text("not for the store")
    h = make(quiet=30, settle=30)
    os.symlink(tmp_path / "secret_dir", h.folder / "linkdir")
    h.mirror.mark(str(h.folder / "linkdir" / "x.txt"))  # as a watcher that followed the link would
    h.stop()
    e = h.entry("linkdir/x.txt")
    assert e["status"] == "skipped" and "linked folder" in e["reason"]
    assert not h.stored("linkdir/x.txt").exists()


def test_the_folder_itself_may_be_a_link(make, tmp_path: Path, observer: str) -> None:
    real = tmp_path / "scratch" / "outputs"
    real.mkdir(parents=True)
    os.symlink(real, tmp_path / "outputs")
    h = make(sweep_interval=3600)
    (h.folder / "sub").mkdir()
    (h.folder / "sub" / "a.txt").write_text("through the linked folder")
    h.live("sub/a.txt")  # events name the real folder; the live path still stores it
    assert h.mirror.mode == observer
    h.stop()
    h.assert_same("sub/a.txt")


def test_sparse_files_at_and_just_under_the_cap(h: Harness) -> None:
    over, under = h.folder / "over.bin", h.folder / "under.bin"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        over.touch()
        os.truncate(over, CAP)
        under.touch()
        os.truncate(under, CAP - 1)
        report = h.stop()
    assert report["failed"] == []
    e = h.entry("over.bin")
    assert e["status"] == "rejected" and e["size"] == 536_870_912 and "512 MiB" in e["reason"]
    assert not h.stored("over.bin").exists()
    e = h.entry("under.bin")
    assert e["status"] == "stored" and e["size"] == 536_870_911
    assert h.stored("under.bin").stat().st_size == 536_870_911
    messages = [str(w.message) for w in caught if "over.bin" in str(w.message)]
    assert len(messages) == 1 and "536,870,912" in messages[0] and "512 MiB" in messages[0]


def test_a_file_grown_past_the_cap_while_being_copied(make) -> None:
    h = make(recopy_big_after=0)  # no rate limit on re-copying a big changing file
    p = h.folder / "grows.bin"
    with open(p, "wb") as f:
        f.write(b"small")
    h.live("grows.bin")  # an earlier, smaller copy is stored
    started, grown = pause_first_copy(h.mirror, "outputs/grows.bin")
    os.truncate(p, CAP - 1_000_000)  # sparse, just under the cap
    assert started.wait(30), "the copy of grows.bin did not start"
    os.truncate(p, CAP + 100_000_000)  # it grows past the cap mid-copy
    grown.set()
    wait_until(
        lambda: (h.entry("grows.bin") or {}).get("status") == "rejected",
        timeout=60,
        what="grows.bin rejected",
    )
    h.stop()
    e = h.entry("grows.bin")
    assert e["status"] == "rejected" and e["size"] >= CAP
    assert not h.stored("grows.bin").exists()  # the earlier copy is removed
    lines = [x for x in manifest_lines(h.run_dir) if x["path"] == "outputs/grows.bin"]
    # The copy itself noticed (a later line may say "file is": the next look saw the new size first)
    assert any(
        x["status"] == "rejected" and x["reason"].startswith("file grew to at least") for x in lines
    ), lines


def test_a_source_changed_during_its_copy_is_never_stored_half_and_half(make) -> None:
    h = make()
    p = h.folder / "state.bin"
    v1, v2 = b"a" * (4 << 20), b"b" * (4 << 20)  # four blocks each
    first_block, rewritten = pause_first_copy(h.mirror, "outputs/state.bin")
    p.write_bytes(v1)
    assert first_block.wait(30), "the copy of state.bin did not start"
    with open(p, "r+b") as f:  # rewritten in place, same size, while the copy is in its first block
        f.write(v2)
    rewritten.set()
    h.live("state.bin")
    h.stop()
    stored = [
        x["sha256"]
        for x in manifest_lines(h.run_dir)
        if x["path"] == "outputs/state.bin" and x["status"] == "stored"
    ]
    whole = {hashlib.sha256(v1).hexdigest(), hashlib.sha256(v2).hexdigest()}
    assert stored and set(stored) <= whole, "a copy mixing both versions was stored"
    assert stored[-1] == hashlib.sha256(v2).hexdigest()
    h.assert_same("state.bin")


def test_deleted_files_are_marked_and_their_copy_removed_by_default(h: Harness) -> None:
    for i in range(3):
        (h.folder / f"ckpt_{i}.pt").write_bytes(os.urandom(1000))
        h.live(f"ckpt_{i}.pt")
    (h.folder / "ckpt_0.pt").unlink()  # a rotating checkpoint
    h.stop()
    assert h.entry("ckpt_0.pt")["status"] == "deleted"
    assert not h.stored("ckpt_0.pt").exists()
    h.assert_same("ckpt_1.pt")
    stored = sorted(p.name for p in (h.run_dir / "artifacts" / "outputs").iterdir())
    assert stored == sorted(p.name for p in h.folder.iterdir())  # the store mirrors the final folder


def test_keep_deleted_keeps_the_last_copy(make) -> None:
    h = make(keep_deleted=True)
    (h.folder / "ckpt_0.pt").write_bytes(b"weights")
    h.live("ckpt_0.pt")
    (h.folder / "ckpt_0.pt").unlink()
    h.stop()
    e = h.entry("ckpt_0.pt")
    assert e["status"] == "deleted" and e["kept"] is True
    assert h.stored("ckpt_0.pt").read_bytes() == b"weights"


def test_polling_mode_mirrors_too(make) -> None:
    h = make(polling=True)
    assert h.mirror.mode == "polling"
    (h.folder / "p.txt").write_text("polled")
    h.live("p.txt", timeout=30)
    h.stop()
    h.assert_same("p.txt")


def test_files_present_before_the_run_starts_are_not_its_outputs(make, tmp_path: Path) -> None:
    # The live path, too, records them as preexisting (tests/test_outputs_preexisting.py has the rest).
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "early.txt").write_text("already here")
    h = make()
    wait_until(
        lambda: (h.entry("early.txt") or {}).get("status") == "preexisting", what="early.txt preexisting"
    )
    h.stop()
    assert not h.stored("early.txt").exists()


def test_names_the_store_cannot_hold_are_skipped(h: Harness) -> None:
    (h.folder / "back\\slash.txt").write_text("x")
    h.stop()
    e = h.entry("back\\slash.txt")
    assert e["status"] == "skipped" and "backslash" in e["reason"]


def test_a_file_moved_in_from_outside(h: Harness, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(os.urandom(50_000))
    os.rename(outside, h.folder / "moved.bin")
    h.live("moved.bin")
    h.stop()
    h.assert_same("moved.bin")


def test_a_fifo_is_skipped(h: Harness) -> None:
    os.mkfifo(h.folder / "pipe")  # opening it to copy would block the mirror
    (h.folder / "after.txt").write_text("x")
    h.live("after.txt")
    report = h.stop()
    assert report["failed"] == []
    e = h.entry("pipe")
    assert e["status"] == "skipped" and "not a regular file" in e["reason"]
    assert not h.stored("pipe").exists()


def test_the_handler_walks_any_created_or_moved_in_folder(tmp_path: Path) -> None:
    from watchdog.events import DirCreatedEvent, DirMovedEvent, FileClosedEvent, FileOpenedEvent

    m = Mirror(tmp_path / "outputs", tmp_path / "run")  # not started: the handler alone
    handler = _mirror._Handler(m)
    made, moved = str(tmp_path / "outputs" / "made"), str(tmp_path / "outputs" / "ckpt")
    handler.dispatch(DirCreatedEvent(made))
    handler.dispatch(DirMovedEvent(str(tmp_path / "outputs" / "ckpt.tmp"), moved))
    assert m._walks == {made, moved}  # its files, written before its watch existed, are found
    handler.dispatch(FileOpenedEvent(made + "/f"))
    handler.dispatch(FileClosedEvent(made + "/g"))
    assert list(m._dirty) == [made + "/g"] and m._dirty[made + "/g"].closed


def test_the_store_inside_the_folder_is_left_out(tmp_path: Path) -> None:
    run_dir = tmp_path / "store" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    m = Mirror(tmp_path, run_dir, settle=0.1, quiet=0.3, sweep_interval=0.5, poll_interval=POLL)
    m.start()
    try:
        (tmp_path / "a.txt").write_text("a")
        wait_until(
            lambda: (manifest(run_dir).get("outputs/a.txt") or {}).get("status") == "stored",
            what="a.txt stored",
        )
        (tmp_path / "b.txt").write_text("b")  # by the time it is stored, sweeps have seen the store change
        wait_until(
            lambda: (manifest(run_dir).get("outputs/b.txt") or {}).get("status") == "stored",
            what="b.txt stored",
        )
    finally:
        report = m.stop(timeout=10)
    assert report["failed"] == []
    assert set(manifest(run_dir)) == {"outputs/a.txt", "outputs/b.txt"}
    assert sorted(p.name for p in (run_dir / "artifacts" / "outputs").iterdir()) == ["a.txt", "b.txt"]


def test_a_folder_inside_the_store_cannot_be_mirrored(tmp_path: Path) -> None:
    run_dir = tmp_path / "store" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    with pytest.raises(ValueError, match="inside the store") as e:
        Mirror(tmp_path / "store" / "outputs", run_dir)
    assert str(tmp_path / "store") in str(e.value)


def polled(make) -> tuple[Any, str]:
    """A mirror that should poll, started, given a file, stopped: the harness and its one warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = make()
        (h.folder / "p.txt").write_text("polled")
        h.live("p.txt", timeout=30)
        h.stop()
    assert h.mirror.mode == "polling"
    (message,) = mirror_warnings(caught)
    return h, message


def test_a_network_file_system_is_polled(make, monkeypatch: pytest.MonkeyPatch, observer: str) -> None:
    inotify_only(observer, "what polling is, is no fallback there")
    monkeypatch.setattr(_mirror, "_fs_type", lambda path: "nfs4")  # the fault: an NFS mount
    h, message = polled(make)
    assert "nfs4" in message and str(h.folder) in message and "polling" in message


def _failing_watches(monkeypatch: pytest.MonkeyPatch, allow: Path | None) -> None:
    """The fault: inotify_add_watch fails with ENOSPC (the watch limit), except for ``allow``."""
    from watchdog.observers import inotify_c

    original = inotify_c.InotifyFD.add_callback
    allowed = os.fsencode(os.path.realpath(allow)) if allow is not None else None

    def add_callback(self, path, mask, callback, id_):
        if path != allowed:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return original(self, path, mask, callback, id_)

    monkeypatch.setattr(inotify_c.InotifyFD, "add_callback", add_callback)


def test_polling_when_inotify_cannot_watch_the_folder(
    make, monkeypatch: pytest.MonkeyPatch, observer: str
) -> None:
    inotify_only(observer, "a watch that fails")
    _failing_watches(monkeypatch, allow=None)
    _, message = polled(make)
    assert "watch limit reached" in message and "polling" in message


def test_a_subfolder_left_unwatched_switches_to_polling(
    make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, observer: str
) -> None:
    inotify_only(observer, "the watch limit")
    (tmp_path / "outputs").mkdir()
    _failing_watches(monkeypatch, allow=tmp_path / "outputs")  # the top is watched, subfolders are not
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = make(sweep_interval=0.5, unreported_after=0.5)
        assert h.mirror.mode == "inotify"
        (h.folder / "sub").mkdir()
        (h.folder / "sentinel.txt").write_text("x")
        h.live("sentinel.txt")  # the folder's own event has been handled by now
        (h.folder / "sub" / "f.txt").write_text("no event for this one")
        wait_until(lambda: h.mirror.mode == "polling", timeout=60, what="the switch to polling")
        (h.folder / "sub" / "g.txt").write_text("polled")
        h.live("sub/g.txt", timeout=30)
        h.stop()
    (message,) = mirror_warnings(caught)
    assert "sub/f.txt" in message and "max_user_watches" in message and "polling" in message
    h.assert_same("sub/f.txt")
    h.assert_same("sub/g.txt")


def test_ordinary_work_is_not_taken_for_an_unwatched_folder(make, tmp_path: Path, observer: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = make(sweep_interval=0.2, unreported_after=0.2)
        for i in range(20):  # the mkdir race: files written before their folder's watch exists
            d = h.folder / f"run{i}" / "a"
            os.makedirs(d)
            (d / "f.txt").write_text(str(i))
        ckpt = tmp_path / "ckpt.tmp"  # a folder built elsewhere and moved in
        ckpt.mkdir()
        (ckpt / "w.bin").write_bytes(b"w")
        os.rename(ckpt, h.folder / "ckpt")
        (h.folder / "m.tmp").write_text("model")
        os.replace(h.folder / "m.tmp", h.folder / "model.pt")
        for rel in [*(f"run{i}/a/f.txt" for i in range(20)), "ckpt/w.bin", "model.pt"]:
            h.live(rel)
        (h.folder / "last.txt").write_text("x")
        h.live("last.txt")
        mode = h.mirror.mode
        h.stop()
    assert mode == observer and mirror_warnings(caught) == []


def _stored_paths(run_dir: Path) -> set[str]:
    return {e["path"] for e in manifest_lines(run_dir) if e["status"] == "stored"}


# The mirror in a child process of its own, so that the test can stop its inotify reader outright.
_STOPPABLE_MIRROR = """
import orjson, sys
from pathlib import Path
from amltrack._mirror import Mirror
m = Mirror(Path(sys.argv[1]), Path(sys.argv[2]), settle=0.2, quiet=0.6, sweep_interval=3600)
m.start()
print("started", flush=True)
sys.stdin.read()
report = m.stop()
print(orjson.dumps({"report": report, "overflows": m.overflows, "mode": m.mode}).decode(), flush=True)
"""


def test_an_inotify_queue_overflow_is_followed_by_a_rescan(tmp_path: Path, observer: str) -> None:
    inotify_only(observer, "its event queue")
    # The overflow is made certain, not hoped for: the mirror's process is stopped (SIGSTOP) while
    # the burst is written, so nothing reads the inotify queue, and the burst makes at least two
    # events a file (create, close) for as many files as the queue holds events.
    n = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    folder, run_dir = tmp_path / "outputs", tmp_path / "run"
    (folder / "burst").mkdir(parents=True)  # not a new folder: no walk finds the files
    run_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _STOPPABLE_MIRROR, str(folder), str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        (folder / "probe.txt").write_text("the reader is up")  # its watch is set and its events are read
        wait_until(
            lambda: "outputs/probe.txt" in _stored_paths(run_dir), timeout=120, what="the probe stored"
        )
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for i in range(n):
                (folder / "burst" / f"f{i:06d}").write_bytes(b"x")
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        expected = {f"outputs/burst/f{i:06d}" for i in range(n)}
        # Every file, live: the periodic sweep is an hour away and the final one has not run, so
        # only the rescan that follows the overflow can find the files whose events were lost.
        wait_until(
            lambda: expected <= _stored_paths(run_dir), 300, f"all {n} burst files stored", interval=0.5
        )  # each look parses the whole manifest: look seldom, leave the core to the mirror
        out, _ = proc.communicate("", timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["mode"] == "inotify" and result["overflows"] >= 1, result
    assert result["report"]["failed"] == []


def test_the_periodic_sweep_finds_what_no_event_reported(make) -> None:
    h = make(sweep_interval=0.5)
    p = h.folder / "mm.bin"
    p.write_bytes(b"\0" * 4096)
    with open(p, "r+b") as f:  # opened (and mapped) before the copy: its close comes only at the end
        mm = mmap.mmap(f.fileno(), 4096)
        h.live("mm.bin")
        mm[:5] = b"hello"  # mmap writes raise no inotify event; the sweep sees the new mtime
        mm.flush()
        h.live("mm.bin")  # before the final sweep, and before the close
        assert h.stored("mm.bin").read_bytes()[:5] == b"hello"
        mm.close()
    h.stop()
    h.assert_same("mm.bin")


def test_the_final_sweep_reports_what_it_had_no_time_for(make) -> None:
    h = make(settle=60, quiet=60)  # nothing is copied before the run ends
    for name in ("a.txt", "b.txt"):
        (h.folder / name).write_text(name)
    copies = []
    slow_copies(h.mirror, lambda path, n: copies.append(path))
    h.report = h.mirror.stop(timeout=0)
    assert copies == []  # past the deadline nothing is even started
    failed = {f["path"]: f["reason"] for f in h.report["failed"]}
    assert failed.keys() == {str(h.folder / "a.txt"), str(h.folder / "b.txt")}
    assert all("ran out of time" in r for r in failed.values())
    for name in ("a.txt", "b.txt"):
        e = h.entry(name)
        assert e["status"] == "failed" and "ran out of time" in e["reason"] and e["kept"] is False
        assert not h.stored(name).exists()


def test_the_final_sweep_deadline_stops_a_long_copy(make) -> None:
    h = make(settle=60, quiet=60)
    (h.folder / "big.bin").write_bytes(os.urandom(1 << 20) * 64)  # 64 blocks
    slow_copies(h.mirror, lambda path, n: threading.Event().wait(0.05))  # about 3 s to copy
    h.report = h.mirror.stop(timeout=0.5)
    assert h.report["failed"] == [
        {"path": str(h.folder / "big.bin"), "reason": "the final sweep ran out of time"}
    ]
    assert h.entry("big.bin")["status"] == "failed"
    assert not list(h.run_dir.rglob("*.tmp")) and not h.stored("big.bin").exists()


def test_the_final_sweep_waits_for_a_copy_still_running(make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mirror, "COPIER_JOIN", 0.05)  # stop() gives up on the copier at once
    h = make()
    in_copy = threading.Event()
    active, most = [0], [0]
    lock = threading.Lock()
    put = h.mirror.artifacts.put

    def counting_put(path, **kw):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            return put(path, **kw)
        finally:
            with lock:
                active[0] -= 1

    h.mirror.artifacts.put = counting_put

    def stall_the_live_copy(path: str, n: int) -> None:
        if not in_copy.is_set():
            in_copy.set()
            threading.Event().wait(1.0)  # still copying when stop() starts the final sweep

    slow_copies(h.mirror, stall_the_live_copy)
    (h.folder / "a.bin").write_bytes(os.urandom(3 << 20))
    assert in_copy.wait(20)
    report = h.stop()
    assert report["failed"] == [] and report["stored"] == 1
    assert most[0] == 1, "the final sweep copied alongside the copier"
    h.assert_same("a.bin")


# ----------------------------------------------------------------- through get_logger


def test_get_logger_mirrors_outputs_by_default(tmp_path: Path, store: Path) -> None:
    logger = amltrack.get_logger("m", store=store)
    assert (tmp_path / "outputs").is_dir()  # created if needed, relative to the cwd
    (tmp_path / "outputs" / "plot.png").write_bytes(b"\x89PNG fake")
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    assert run.read_artifact("outputs/plot.png") == b"\x89PNG fake"
    assert run.info["outputs"] == str(tmp_path / "outputs")
    assert logger.mirror_report == {"stored": 1, "rejected": 0, "skipped": 0, "deleted": 0, "failed": []}


def test_outputs_none_turns_it_off(tmp_path: Path, store: Path) -> None:
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "x.txt").write_text("x")
    logger = amltrack.get_logger("m", store=store, outputs=None)
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    assert run.artifacts() == [] and run.info["outputs"] is None


@pytest.mark.parametrize("off", ["", "none", "off", "0", "OFF"])
def test_outputs_off_spellings(store: Path, off: str) -> None:
    logger = amltrack.get_logger("m", store=store, outputs=off)
    logger.finish()
    assert amltrack.Store(store).run(logger.run_id).info["outputs"] is None


@pytest.mark.parametrize("bad", [123, True, b"outputs", ["outputs"]])
def test_a_bad_outputs_value_is_refused_before_anything_is_created(tmp_path: Path, store: Path, bad) -> None:
    with pytest.raises(TypeError, match="outputs=") as e:
        amltrack.get_logger("m", store=store, outputs=bad)
    assert repr(bad) in str(e.value)
    assert not store.exists() and not (tmp_path / "outputs").exists()
    with pytest.raises(TypeError, match="keep_deleted_outputs="):
        amltrack.get_logger("m", store=store, keep_deleted_outputs="yes")
    assert not store.exists()


def test_mirroring_the_working_directory_leaves_the_store_out(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="left out of the mirror") as caught:
        logger = amltrack.get_logger("m", outputs=".")  # the default store ./.amltrack is inside
    (message,) = [str(w.message) for w in caught]
    assert str(tmp_path / ".amltrack") in message and str(tmp_path) in message
    (tmp_path / "model.bin").write_bytes(b"weights")
    logger.log("loss", 0.5)
    logger.finish()
    run = amltrack.Store(tmp_path / ".amltrack").run(logger.run_id)
    assert {a["path"] for a in run.artifacts()} == {"outputs/model.bin"}
    assert logger.mirror_report["failed"] == []


def test_a_folder_inside_the_store_is_refused(store: Path) -> None:
    with pytest.raises(ValueError, match="inside the store") as e:
        amltrack.get_logger("m", store=store, outputs=store / "out")
    assert str(store) in str(e.value) and str(store / "out") in str(e.value)
    assert not store.exists()


def test_keep_deleted_outputs_reaches_the_helper_process(tmp_path: Path, store: Path) -> None:
    logger = amltrack.get_logger("m", store=store, keep_deleted_outputs=True)
    assert isinstance(logger._mirror, _mirror.MirrorProcess)
    ckpt = tmp_path / "outputs" / "ckpt_0.pt"
    ckpt.write_bytes(b"weights")
    run = amltrack.Store(store).run(logger.run_id)
    wait_until(
        lambda: any(a["path"] == "outputs/ckpt_0.pt" and a["status"] == "stored" for a in run.artifacts()),
        timeout=60,
        what="ckpt_0.pt stored",
    )
    ckpt.unlink()  # a rotating checkpoint
    logger.finish()
    (entry,) = [a for a in run.artifacts() if a["path"] == "outputs/ckpt_0.pt"]
    assert entry["status"] == "deleted" and entry["kept"] is True
    assert run.read_artifact("outputs/ckpt_0.pt") == b"weights"


def test_amltrack_outputs_env(tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLTRACK_OUTPUTS", "results")
    logger = amltrack.get_logger("m", store=store)
    (tmp_path / "results" / "r.txt").write_text("r")
    logger.finish()
    assert amltrack.Store(store).run(logger.run_id).read_artifact("outputs/r.txt") == b"r"


def test_rejected_files_show_in_history_info(
    tmp_path: Path, store: Path, capfd: pytest.CaptureFixture
) -> None:
    logger = amltrack.get_logger("m", store=store)
    big = tmp_path / "outputs" / "huge.ckpt"
    big.touch()
    os.truncate(big, CAP + 1)
    logger.finish()
    err = capfd.readouterr().err  # the mirror's helper process warns on this process's stderr
    assert err.count("huge.ckpt") == 1 and "536,870,913 bytes" in err and "512 MiB" in err
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "amltrack",
            "history",
            "info",
            "-r",
            logger.run_id,
            "--store",
            str(store),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    arts = {a["path"]: a for a in json.loads(out.stdout)["artifacts"]}
    assert (
        arts["outputs/huge.ckpt"]["status"] == "rejected" and "512 MiB" in arts["outputs/huge.ckpt"]["reason"]
    )
    text = subprocess.run(
        [sys.executable, "-m", "amltrack", "history", "info", "-r", logger.run_id, "--store", str(store)],
        capture_output=True,
        text=True,
        env=child_env(),
    ).stdout
    assert "rejected" in text and "512 MiB" in text


def test_a_script_that_exits_normally_gets_its_outputs_stored(
    tmp_path: Path, store: Path, observer: str
) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        forcing(observer) + "import amltrack, os\n"
        "lg = amltrack.get_logger('m')\n"
        "with open('outputs/model.bin', 'wb') as f:\n"
        "    f.write(os.urandom(100_000))\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(AMLTRACK_STORE=str(store)),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    run = amltrack.Store(store).last()
    assert run.read_artifact("outputs/model.bin") == (tmp_path / "outputs" / "model.bin").read_bytes()


def test_the_mirror_does_not_stop_training_when_copies_fail(h: Harness) -> None:
    orig = h.mirror.artifacts.put
    failures = {"outputs/a.txt": 0}
    broken = threading.Event()
    broken.set()

    def failing(path, **kw):
        if path == "outputs/a.txt" and broken.is_set():
            failures[path] += 1
            raise PermissionError(13, "Permission denied")  # a fault a test cannot cause as root
        return orig(path, **kw)

    h.mirror.artifacts.put = failing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (h.folder / "a.txt").write_text("a")
        (h.folder / "b.txt").write_text("b")
        h.live("b.txt")  # the other files go on
        wait_until(lambda: failures["outputs/a.txt"] >= 3, timeout=60, what="a.txt tried three times")
        about_a = [m for m in mirror_warnings(caught) if "a.txt" in m]
        assert len(about_a) == 1, about_a  # once, while the error persists
        assert "Permission denied" in about_a[0] and "will try again" in about_a[0]
        broken.clear()
        h.live("a.txt")  # and it is copied once the fault is gone
        assert h.mirror._copier.is_alive()
        h.stop()
    h.assert_same("a.txt")
    h.assert_same("b.txt")


def test_outputs_of_a_killed_process_are_still_swept_in(tmp_path: Path, store: Path, observer: str) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        forcing(observer) + "import amltrack, sys, time\n"
        "lg = amltrack.get_logger('m')\n"
        "open('outputs/last.txt', 'w').write('written just before the crash')\n"
        "print(lg.run_id, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(AMLTRACK_STORE=str(store)),
    )
    try:
        run_id = proc.stdout.readline().strip()
        proc.kill()  # SIGKILL: no atexit, no finish()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    run = amltrack.Store(store).run(run_id)
    wait_until(
        lambda: (
            (tmp_path / "outputs" / "last.txt").exists()
            and any(e["path"] == "outputs/last.txt" and e["status"] == "stored" for e in run.artifacts())
        ),
        timeout=60,
        what="the helper's final sweep after the crash",
    )
    assert run.read_artifact("outputs/last.txt") == b"written just before the crash"
    assert run.status == "crashed"
