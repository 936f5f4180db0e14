"""A run's outputs are the files written during it: what an earlier run left in ``./outputs`` is
recorded once as ``preexisting`` and not stored, unless this run changes or replaces it.

Real inotify observers on real directories, real child processes, real ``amltrack run``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import amltrack
from amltrack import _mirror

from . import test_mirror
from .conftest import child_env, wait_until
from .test_mirror import Harness, manifest_lines, sha

make = test_mirror.make  # the mirror tests' fixture: a started Harness, stopped after the test


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """``outputs/ckpt/old.bin``, left there before the run starts."""
    path = tmp_path / "outputs" / "ckpt" / "old.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights of an earlier run")
    return path


def lines_for(run_dir: Path, rel: str) -> list[dict]:
    return [e for e in manifest_lines(run_dir) if e["path"] == f"outputs/{rel}"]


def preexisting(h: Harness, rel: str) -> bool:
    return (h.entry(rel) or {}).get("status") == "preexisting"


def test_a_file_there_before_the_run_is_listed_once_and_not_stored(make, old: Path) -> None:
    h = make()
    (h.folder / "new.bin").write_bytes(b"this run's")
    wait_until(lambda: preexisting(h, "ckpt/old.bin"), what="old.bin recorded as preexisting")
    report = h.stop()
    (entry,) = lines_for(h.run_dir, "ckpt/old.bin")
    assert entry["status"] == "preexisting" and entry["sha256"] is None
    assert entry["size"] == old.stat().st_size and "before the run started" in entry["reason"]
    assert not h.stored("ckpt/old.bin").exists()
    h.assert_same("new.bin")
    assert report["failed"] == []


def test_the_final_sweep_alone_leaves_it_out_too(make, old: Path) -> None:
    # Stopped at once: the final sweep, not the live path, decides (a run shorter than the quiet time).
    h = make(quiet=3600)
    h.stop()
    assert [e["status"] for e in lines_for(h.run_dir, "ckpt/old.bin")] == ["preexisting"]
    assert not h.stored("ckpt/old.bin").exists()


@pytest.mark.parametrize("when", ["live", "at run end"])
def test_a_preexisting_file_changed_during_the_run_is_stored(make, old: Path, when: str) -> None:
    h = make()
    wait_until(lambda: preexisting(h, "ckpt/old.bin"), what="old.bin recorded as preexisting")
    with open(old, "ab") as f:  # a new size: a change whatever the clock's resolution
        f.write(b", trained further")
    if when == "live":
        h.live("ckpt/old.bin")
    h.stop()
    h.assert_same("ckpt/old.bin")
    assert [e["status"] for e in lines_for(h.run_dir, "ckpt/old.bin")] == ["preexisting", "stored"]


def test_a_preexisting_file_replaced_during_the_run_is_stored(make, old: Path) -> None:
    h = make()
    data = old.read_bytes()
    tmp = h.folder.parent / "old.tmp"  # beside the folder, on the same file system
    tmp.write_bytes(data)  # the same bytes and size; only the inode says it is a new file
    os.replace(tmp, old)
    h.stop()
    h.assert_same("ckpt/old.bin")
    assert h.entry("ckpt/old.bin")["sha256"] == sha(old)


def test_a_file_written_as_the_run_starts_is_the_runs(tmp_path: Path, store: Path) -> None:
    # The helper process takes a moment to start: the snapshot is the training process's, taken
    # before get_logger() returns, so a file written at once is not mistaken for an old one.
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "old.bin").write_bytes(b"old")
    logger = amltrack.get_logger("m", store=store)
    (tmp_path / "outputs" / "new.bin").write_bytes(b"new")
    assert isinstance(logger._mirror, _mirror.MirrorProcess)
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    statuses = {a["path"]: a["status"] for a in run.artifacts()}
    assert statuses == {"outputs/old.bin": "preexisting", "outputs/new.bin": "stored"}
    assert run.read_artifact("outputs/new.bin") == b"new"
    with pytest.raises(LookupError):
        run.read_artifact("outputs/old.bin")


# ----------------------------------------------------------------- the issue, as a user hits it

TRAIN = """
import os, amltrack
logger = amltrack.get_logger("issue")
os.makedirs("outputs/ckpt", exist_ok=True)
with open("outputs/ckpt/weights.npy", "wb") as f:
    f.write(b"weights")
logger.log("loss", 0.1)
"""

FAIL = """
import amltrack
logger = amltrack.get_logger("issue")
logger.log("loss", float("nan"))
raise RuntimeError("diverged")
"""


def outputs_of(run: amltrack.Run) -> dict[str, str]:
    return {a["path"]: a["status"] for a in run.artifacts() if a["path"].startswith("outputs/")}


def test_a_failed_run_after_a_training_run_does_not_carry_its_outputs(tmp_path: Path, store: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "fail.py").write_text(FAIL)
    env = child_env(AMLTRACK_STORE=str(store))
    for script, code in (("train.py", 0), ("fail.py", 1)):
        p = subprocess.run([sys.executable, script], cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert p.returncode == code, p.stderr
    failed, trained = amltrack.Store(store).runs()
    assert trained.status == "completed" and failed.status == "failed"
    assert outputs_of(trained) == {"outputs/ckpt/weights.npy": "stored"}
    assert outputs_of(failed) == {"outputs/ckpt/weights.npy": "preexisting"}
    assert not (failed.dir / "artifacts" / "outputs").exists()


def test_amltrack_run_leaves_out_what_an_earlier_command_wrote(tmp_path: Path, store: Path) -> None:
    (tmp_path / "train.py").write_text(
        "import os\nos.makedirs('outputs/ckpt', exist_ok=True)\nopen('outputs/ckpt/weights.npy', 'wb').write(b'w')\n"
    )
    (tmp_path / "fail.py").write_text("import sys\nsys.exit(3)\n")
    for script, code in (("train.py", 0), ("fail.py", 3)):
        p = subprocess.run(
            [sys.executable, "-m", "amltrack", "run", "--store", str(store), "--", sys.executable, script],
            cwd=tmp_path,
            env=child_env(),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        assert p.returncode == code, p.stderr
    failed, trained = amltrack.Store(store).runs()
    assert trained.status == "completed" and failed.status == "failed"
    assert outputs_of(trained) == {"outputs/ckpt/weights.npy": "stored"}
    assert outputs_of(failed) == {"outputs/ckpt/weights.npy": "preexisting"}
    assert trained.read_artifact("outputs/ckpt/weights.npy") == b"w"
    assert not (failed.dir / "artifacts" / "outputs").exists()
