"""The outputs mirror, with the real inotify observer on real directories: one test per case."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest

import amltrack
from amltrack._mirror import CAP, Mirror

from .conftest import child_env, wait_until


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def manifest(run_dir: Path) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    p = run_dir / "artifacts.jsonl"
    if p.exists():
        for line in p.read_bytes().splitlines():
            entry = orjson.loads(line)
            latest[entry["path"]] = entry
    return latest


class Harness:
    def __init__(self, tmp_path: Path, **kw) -> None:
        self.folder = tmp_path / "outputs"
        self.run_dir = tmp_path / "run"
        self.run_dir.mkdir()
        kw.setdefault("settle", 0.2)
        kw.setdefault("quiet", 0.6)
        self.mirror = Mirror(self.folder, self.run_dir, **kw)
        self.mirror.start()
        self.report: dict | None = None

    def stored(self, rel: str) -> Path:
        return self.run_dir / "artifacts" / "outputs" / rel

    def entry(self, rel: str) -> dict | None:
        return manifest(self.run_dir).get(f"outputs/{rel}")

    def live(self, rel: str, src: Path | None = None, timeout: float = 20) -> None:
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
def h(tmp_path: Path):
    harness = Harness(tmp_path)
    yield harness
    harness.stop()
    assert not list(harness.run_dir.rglob("*.tmp")), "temporary files left in the store"


def test_small_file(h: Harness) -> None:
    (h.folder / "a.txt").write_text("hello")
    h.live("a.txt")
    h.stop()
    h.assert_same("a.txt")
    assert h.mirror.mode == "inotify"


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
    missing = [i for i in range(10_000) if entries.get(f"outputs/burst/f{i:05d}.txt", {}).get("status") != "stored"]
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


def test_a_symlink_pointing_outside_is_skipped(h: Harness, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the store")
    (tmp_path / "secret_dir").mkdir()
    (tmp_path / "secret_dir" / "x.txt").write_text("nor this")
    os.symlink(secret, h.folder / "link.txt")
    os.symlink(tmp_path / "secret_dir", h.folder / "linkdir")
    h.stop()
    for rel in ("link.txt", "linkdir"):
        e = h.entry(rel)
        assert e is not None and e["status"] == "skipped" and "symlink" in e["reason"], e
        assert not h.stored(rel).exists()
    assert not any(p.name == "x.txt" for p in h.run_dir.rglob("*"))
    assert b"not for the store" not in b"".join(p.read_bytes() for p in h.run_dir.rglob("*") if p.is_file())


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


def test_a_file_grown_past_the_cap_while_being_copied(tmp_path: Path) -> None:
    h = Harness(tmp_path, recopy_big_after=0)  # no rate limit on re-copying a big changing file
    p = h.folder / "grows.bin"
    with open(p, "wb") as f:
        f.write(b"small")
    h.live("grows.bin")  # an earlier, smaller copy is stored
    os.truncate(p, CAP - 1_000_000)  # sparse, just under the cap: the copy takes a while
    tmp_dir = h.run_dir / "artifacts" / "outputs"
    wait_until(lambda: any(x.name.startswith(".grows.bin.") for x in tmp_dir.iterdir()), timeout=30,
               what="the copy of grows.bin to start")
    os.truncate(p, CAP + 100_000_000)  # it grows past the cap mid-copy
    wait_until(lambda: (h.entry("grows.bin") or {}).get("status") == "rejected", timeout=60,
               what="grows.bin rejected")
    h.stop()
    e = h.entry("grows.bin")
    assert e["status"] == "rejected" and e["size"] >= CAP
    assert not h.stored("grows.bin").exists()  # the earlier copy is removed


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


def test_keep_deleted_keeps_the_last_copy(tmp_path: Path) -> None:
    h = Harness(tmp_path, keep_deleted=True)
    (h.folder / "ckpt_0.pt").write_bytes(b"weights")
    h.live("ckpt_0.pt")
    (h.folder / "ckpt_0.pt").unlink()
    h.stop()
    e = h.entry("ckpt_0.pt")
    assert e["status"] == "deleted" and e["kept"] is True
    assert h.stored("ckpt_0.pt").read_bytes() == b"weights"


def test_polling_mode_mirrors_too(tmp_path: Path) -> None:
    h = Harness(tmp_path, polling=True)
    assert h.mirror.mode == "polling"
    (h.folder / "p.txt").write_text("polled")
    h.live("p.txt", timeout=30)
    h.stop()
    h.assert_same("p.txt")


def test_files_present_before_the_run_starts(tmp_path: Path) -> None:
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "early.txt").write_text("already here")
    h = Harness(tmp_path)
    h.live("early.txt")
    h.stop()


def test_names_the_store_cannot_hold_are_skipped(h: Harness) -> None:
    (h.folder / "back\\slash.txt").write_text("x")
    h.stop()
    e = h.entry("back\\slash.txt")
    assert e["status"] == "skipped" and "backslash" in e["reason"]


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


def test_amltrack_outputs_env(tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLTRACK_OUTPUTS", "results")
    logger = amltrack.get_logger("m", store=store)
    (tmp_path / "results" / "r.txt").write_text("r")
    logger.finish()
    assert amltrack.Store(store).run(logger.run_id).read_artifact("outputs/r.txt") == b"r"


def test_rejected_files_show_in_history_info(tmp_path: Path, store: Path, capfd: pytest.CaptureFixture) -> None:
    logger = amltrack.get_logger("m", store=store)
    big = tmp_path / "outputs" / "huge.ckpt"
    big.touch()
    os.truncate(big, CAP + 1)
    logger.finish()
    err = capfd.readouterr().err  # the mirror's helper process warns on this process's stderr
    assert err.count("huge.ckpt") == 1 and "536,870,913 bytes" in err and "512 MiB" in err
    out = subprocess.run([sys.executable, "-m", "amltrack", "history", "info", "-r", logger.run_id,
                          "--store", str(store), "--json"], capture_output=True, text=True, env=child_env())
    arts = {a["path"]: a for a in json.loads(out.stdout)["artifacts"]}
    assert arts["outputs/huge.ckpt"]["status"] == "rejected" and "512 MiB" in arts["outputs/huge.ckpt"]["reason"]
    text = subprocess.run([sys.executable, "-m", "amltrack", "history", "info", "-r", logger.run_id,
                           "--store", str(store)], capture_output=True, text=True, env=child_env()).stdout
    assert "rejected" in text and "512 MiB" in text


def test_a_script_that_exits_normally_gets_its_outputs_stored(tmp_path: Path, store: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import amltrack, os\n"
        "lg = amltrack.get_logger('m')\n"
        "with open('outputs/model.bin', 'wb') as f:\n"
        "    f.write(os.urandom(100_000))\n"
    )
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         env=child_env(AMLTRACK_STORE=str(store)), timeout=60)
    assert out.returncode == 0, out.stderr
    run = amltrack.Store(store).last()
    assert run.read_artifact("outputs/model.bin") == (tmp_path / "outputs" / "model.bin").read_bytes()


def test_the_mirror_does_not_stop_training_when_copies_fail(h: Harness) -> None:
    orig = h.mirror.artifacts.put
    calls = {"n": 0}

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise PermissionError(13, "Permission denied")  # a fault a test cannot cause as root
        return orig(*a, **kw)

    h.mirror.artifacts.put = failing
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        (h.folder / "a.txt").write_text("a")
        (h.folder / "b.txt").write_text("b")
        h.live("b.txt")
        h.stop()
    h.assert_same("a.txt")
    h.assert_same("b.txt")
    assert threading.active_count() >= 1


def test_outputs_of_a_killed_process_are_still_swept_in(tmp_path: Path, store: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import amltrack, sys, time\n"
        "lg = amltrack.get_logger('m')\n"
        "open('outputs/last.txt', 'w').write('written just before the crash')\n"
        "print(lg.run_id, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env=child_env(AMLTRACK_STORE=str(store)))
    try:
        run_id = proc.stdout.readline().strip()
        proc.kill()  # SIGKILL: no atexit, no finish()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    run = amltrack.Store(store).run(run_id)
    wait_until(lambda: (tmp_path / "outputs" / "last.txt").exists() and
               any(e["path"] == "outputs/last.txt" and e["status"] == "stored" for e in run.artifacts()),
               timeout=30, what="the helper's final sweep after the crash")
    assert run.read_artifact("outputs/last.txt") == b"written just before the crash"
    assert run.status == "crashed"
