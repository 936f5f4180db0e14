"""Promoted assets: the library (amltrack._assets) and the commands over it, on real stores."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import amltrack
from amltrack import _assets

from .conftest import child_env

SAMPLE = Path(__file__).resolve().parent.parent / ".amltrack-sample"


def cli(*args: str, store: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amltrack", *args, "--store", str(store)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )


def one_line_error(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.startswith("amltrack: ") and out.stderr.count("\n") == 1, out.stderr
    for n in needles:
        assert n in out.stderr, (n, out.stderr)


def make_run(store: Path, files: dict[str, bytes], *, experiment: str = "assets") -> amltrack.Run:
    with amltrack.start_run(experiment, store=store, outputs=None) as logger:
        for path, data in files.items():
            logger.upload(path, data)
    return amltrack.Store(store).run(logger.run_id)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MODEL = {
    "model/weights.bin": bytes(range(256)) * 3,
    "model/config.json": b'{"layers": 2}',
    "models/other.txt": b"not under 'model'",
    "plots/loss.csv": b"step,loss\n0,1.0\n",
}


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A copy of the committed sample store: promote writes into the store, the sample stays read-only."""
    shutil.copytree(SAMPLE, tmp_path / "sample")
    return tmp_path / "sample"


def test_promote_copies_the_prefix_into_version_1(store: Path) -> None:
    run = make_run(store, MODEL)
    asset = _assets.promote(run, "model", "mnist-cnn")
    assert (asset.name, asset.version, asset.ref, asset.reused) == ("mnist-cnn", 1, "mnist-cnn:1", False)
    assert asset.files == [
        {"path": "model/config.json", "size": 13, "sha256": sha(MODEL["model/config.json"])},
        {"path": "model/weights.bin", "size": 768, "sha256": sha(MODEL["model/weights.bin"])},
    ]
    info = json.loads((store / "assets" / "mnist-cnn" / "1" / "asset.json").read_text())
    assert info == asset.to_json()
    assert {
        k: info[k] for k in ("schema", "name", "version", "source_run", "experiment", "prefix", "size")
    } == {
        "schema": 1,
        "name": "mnist-cnn",
        "version": 1,
        "source_run": run.id,
        "experiment": "assets",
        "prefix": "model",
        "size": 781,
    }
    assert info["created"].endswith("Z") and isinstance(info["created_ts"], float)
    for f in asset.files:
        assert (store / "assets" / "mnist-cnn" / "1" / "files" / f["path"]).read_bytes() == MODEL[f["path"]]
        assert asset.read(f["path"]) == MODEL[f["path"]]
    # The copy stands alone: the run can go.
    shutil.rmtree(run.dir)
    assert (
        _assets.get(amltrack.Store(store), "mnist-cnn").read("model/weights.bin")
        == MODEL["model/weights.bin"]
    )


def test_prefix_forms(store: Path) -> None:
    run = make_run(store, MODEL)
    assert [f["path"] for f in _assets.promote(run, "model/", "a").files] == [
        "model/config.json",
        "model/weights.bin",
    ]
    assert [f["path"] for f in _assets.promote(run, "model/config.json", "b").files] == ["model/config.json"]
    assert [f["path"] for f in _assets.promote(run, "models", "c").files] == ["models/other.txt"]
    for empty in ("mode", "model/weights", "nothing"):  # whole path parts only
        with pytest.raises(_assets.EmptyPrefixError, match=repr(empty)) as e:
            _assets.promote(run, empty, "d")
        assert isinstance(e.value, amltrack.ArtifactNotFoundError) and e.value.run_id == run.id
    assert not (store / "assets" / "d").exists() or not any(
        p.name.isdigit() for p in (store / "assets" / "d").iterdir()
    )
    for bad in ("../x", "/abs", "a\\b", "a/../b", "", "a\x00b", "./model"):
        with pytest.raises(amltrack.InvalidPathError):
            _assets.promote(run, bad, "e")


def test_rejected_artifacts_are_not_promoted(store: Path) -> None:
    from amltrack._files import Artifacts

    run = make_run(store, {"out/a.txt": b"a"})
    Artifacts(run.dir).record("out/big.bin", "failed", source="outputs", size=10**10, reason="too large")
    assert [f["path"] for f in _assets.promote(run, "out", "n").files] == ["out/a.txt"]
    Artifacts(run.dir).record("only/big.bin", "failed", source="outputs", size=10**10, reason="too large")
    with pytest.raises(_assets.EmptyPrefixError):
        _assets.promote(run, "only", "n")


def test_versions_count_up_and_identical_content_reuses_the_latest(store: Path) -> None:
    one = make_run(store, {"m/w": b"one"})
    two = make_run(store, {"m/w": b"two"})
    same_as_two = make_run(store, {"m/w": b"two"})
    st = amltrack.Store(store)
    assert _assets.promote(one, "m", "net").ref == "net:1"
    assert _assets.promote(two, "m", "net").ref == "net:2"
    again = _assets.promote(same_as_two, "m", "net")  # another run, the same files: no new version
    assert again.ref == "net:2" and again.reused and again.info["source_run"] == two.id
    assert _assets.promote(one, "m", "net").ref == "net:3"  # equal to version 1, but 1 is not the latest
    assert [a.ref for a in _assets.versions(st, "net")] == ["net:1", "net:2", "net:3"]
    assert _assets.get(st, "net").ref == _assets.get(st, "net:latest").ref == "net:3"
    assert _assets.get(st, "net:2").info["source_run"] == two.id
    # The same paths with other bytes, or other paths with the same bytes, are new content.
    moved = make_run(store, {"m/v": b"one"})
    assert _assets.promote(moved, "m", "net").ref == "net:4"
    assert not [p for p in (store / "assets" / "net").iterdir() if p.name.startswith(".promote-")]


def test_names_and_refs_are_checked(store: Path) -> None:
    run = make_run(store, {"m/w": b"x"})
    for bad in ("", "../x", "a/b", "a:b", ".hidden", "-flag", "a b", "x" * 129, "a\x00", "é"):
        with pytest.raises(_assets.InvalidAssetNameError, match="not allowed") as e:
            _assets.promote(run, "m", bad)
        assert isinstance(e.value, ValueError) and isinstance(e.value, amltrack.AmltrackError)
    st = amltrack.Store(store)
    for bad in ("net:0", "net:x", "net:-1", "net:1.0", "../net:1", "net:01x"):
        with pytest.raises(_assets.InvalidAssetNameError):
            _assets.get(st, bad)
    with pytest.raises(_assets.AssetNotFoundError, match="'net'"):
        _assets.get(st, "net")
    _assets.promote(run, "m", "net")
    with pytest.raises(_assets.AssetNotFoundError, match="'net:2'") as e:
        _assets.get(st, "net:2")
    assert isinstance(e.value, LookupError)
    with pytest.raises(_assets.AssetNotFoundError, match="no file 'm/zz'"):
        _assets.get(st, "net:1").read("m/zz")


def test_list_skips_a_broken_version_with_a_warning(store: Path) -> None:
    run = make_run(store, {"m/w": b"x"})
    _assets.promote(run, "m", "a")
    _assets.promote(make_run(store, {"m/w": b"y"}), "m", "a")
    _assets.promote(run, "m", "b")
    (store / "assets" / "a" / "1" / "asset.json").write_text("{not json")
    with pytest.warns(UserWarning, match="a:1"):
        assert [x.ref for x in _assets.list_assets(amltrack.Store(store))] == ["a:2", "b:1"]
    with pytest.raises(amltrack.StoreError):
        _assets.get(amltrack.Store(store), "a:1")
    # A number is never reused, even after a version became unreadable.
    shutil.rmtree(store / "assets" / "b" / "1" / "files")
    (store / "assets" / "b" / "1" / "asset.json").unlink()
    assert _assets.promote(run, "m", "b").ref == "b:2"


def test_download_writes_every_file_inside_dir_only(store: Path, tmp_path: Path) -> None:
    run = make_run(store, MODEL)
    asset = _assets.promote(run, "model", "net")
    dest = tmp_path / "deploy" / "here"
    written = asset.download(dest)
    assert sorted(p.relative_to(dest).as_posix() for p in written) == [
        "model/config.json",
        "model/weights.bin",
    ]
    for p in written:
        assert p.read_bytes() == MODEL[p.relative_to(dest).as_posix()]
    # Again over the same folder: files are replaced, nothing is left behind.
    (dest / "model" / "config.json").write_bytes(b"edited")
    asset.download(dest)
    assert (dest / "model" / "config.json").read_bytes() == MODEL["model/config.json"]
    assert sorted(p.name for p in (dest / "model").iterdir()) == ["config.json", "weights.bin"]


def test_download_refuses_paths_and_symlinks_that_lead_outside(store: Path, tmp_path: Path) -> None:
    run = make_run(store, MODEL)
    asset = _assets.promote(run, "model", "net")
    outside = tmp_path / "outside"
    outside.mkdir()
    # A symlinked folder inside DIR that points out of it.
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "model").symlink_to(outside, target_is_directory=True)
    with pytest.raises(amltrack.InvalidPathError, match="outside"):
        asset.download(dest)
    assert list(outside.iterdir()) == []
    # A symlink at a file's own path is replaced, not followed.
    dest2 = tmp_path / "dest2"
    (dest2 / "model").mkdir(parents=True)
    victim = outside / "victim.txt"
    victim.write_bytes(b"keep me")
    (dest2 / "model" / "config.json").symlink_to(victim)
    asset.download(dest2)
    assert victim.read_bytes() == b"keep me"
    assert not (dest2 / "model" / "config.json").is_symlink()
    # An asset.json edited to point outside.
    info_file = asset.dir / "asset.json"
    info = json.loads(info_file.read_text())
    for bad in ("../escape.txt", "/tmp/escape.txt", "model/../../escape.txt"):
        info["files"] = [{"path": bad, "size": 1, "sha256": "0" * 64}]
        info_file.write_text(json.dumps(info))
        with pytest.raises(amltrack.InvalidPathError):
            _assets.get(amltrack.Store(store), "net:1").download(tmp_path / "dest3")
    assert not (tmp_path / "escape.txt").exists()


def test_download_checks_the_sha256(store: Path, tmp_path: Path) -> None:
    run = make_run(store, MODEL)
    asset = _assets.promote(run, "model", "net")
    (asset.dir / "files" / "model" / "config.json").write_bytes(b"tampered")
    with pytest.raises(amltrack.StoreError, match="model/config.json"):
        asset.download(tmp_path / "dest")
    assert not (tmp_path / "dest" / "model" / "config.json").exists()


PROMOTE_MANY = """
import sys
import amltrack
from amltrack import _assets
store = amltrack.Store(sys.argv[1])
print(_assets.promote(store.run(sys.argv[2]), "m", "shared").ref)
"""


def test_concurrent_promotes_get_distinct_versions(store: Path, tmp_path: Path) -> None:
    runs = [make_run(store, {"m/w": f"content {i}".encode()}) for i in range(6)]
    script = tmp_path / "promote.py"
    script.write_text(PROMOTE_MANY)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(store), r.id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for r in runs
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outs
    assert sorted(o.strip() for o, _ in outs) == [f"shared:{v}" for v in range(1, 7)]
    versions = _assets.versions(amltrack.Store(store), "shared")
    assert sorted(a.info["source_run"] for a in versions) == sorted(r.id for r in runs)


# ----------------------------------------------------------------- the commands


def test_promote_and_asset_commands_on_the_sample(sample: Path, tmp_path: Path) -> None:
    run = amltrack.Store(sample).run("f6c16d03")
    out = cli("history", "promote", "-r", "f6c16d03", "-ap", "config", "-n", "cfg", store=sample)
    assert (out.returncode, out.stdout, out.stderr) == (0, "cfg:1\n", "")
    again = cli("history", "promote", "-r", "f6c16d03", "-ap", "config/", "-n", "cfg", store=sample)
    assert again.returncode == 0 and again.stdout == "cfg:1\n" and "already holds" in again.stderr
    shown = json.loads(
        cli("history", "promote", "-r", run.id, "-ap", "data", "-n", "cfg", "--json", store=sample).stdout
    )
    assert shown["version"] == 2 and shown["files"] == [
        {"path": "data/blob.bin", "size": 1024, "sha256": sha(run.read_artifact("data/blob.bin"))}
    ]

    listed = json.loads(cli("asset", "list", "--json", store=sample).stdout)
    assert [(a["name"], a["version"]) for a in listed] == [("cfg", 1), ("cfg", 2)]
    assert listed[1] == shown
    table = cli("asset", "list", store=sample).stdout
    assert "cfg:1" in table and "cfg:2" in table and run.id.split("-", 1)[1][:8] in table  # the short id

    assert json.loads(cli("asset", "show", "cfg", "--json", store=sample).stdout) == shown
    assert json.loads(cli("asset", "show", "cfg:1", "--json", store=sample).stdout)["prefix"] == "config"
    text = cli("asset", "show", "cfg:2", store=sample).stdout
    assert "data/blob.bin" in text and shown["files"][0]["sha256"] in text

    dest = tmp_path / "dl"
    out = cli("asset", "download", "cfg:1", str(dest), "--json", store=sample)
    assert json.loads(out.stdout) == {"asset": "cfg:1", "dir": str(dest), "files": ["config/model.json"]}
    assert (dest / "config" / "model.json").read_bytes() == run.read_artifact("config/model.json")
    out = cli("asset", "download", "cfg", str(tmp_path / "dl2"), store=sample)
    assert out.stdout == os.path.join(str(tmp_path / "dl2"), "data/blob.bin") + "\n"
    assert (tmp_path / "dl2" / "data" / "blob.bin").read_bytes() == run.read_artifact("data/blob.bin")


def test_asset_command_errors_are_one_line(sample: Path, tmp_path: Path) -> None:
    one_line_error(
        cli("history", "promote", "-r", "f6c16d03", "-ap", "nothing", "-n", "x", store=sample),
        "'nothing'",
        "nothing to promote",
    )
    one_line_error(
        cli("history", "promote", "-r", "f6c16d03", "-ap", "../x", "-n", "x", store=sample), "'../x'"
    )
    one_line_error(
        cli("history", "promote", "-r", "f6c16d03", "-ap", "data", "-n", "../x", store=sample), "'../x'"
    )
    one_line_error(cli("history", "promote", "-r", "2026", "-ap", "data", "-n", "x", store=sample), "'2026'")
    one_line_error(cli("asset", "show", "nope", store=sample), "'nope'")
    one_line_error(cli("asset", "show", "nope:zz", store=sample), "'zz'")
    one_line_error(cli("asset", "download", "nope", str(tmp_path / "d"), store=sample), "'nope'")
    assert not (sample / "assets").exists() or not list((sample / "assets").glob("*/[0-9]*"))
    (tmp_path / "empty").mkdir()
    empty = cli("asset", "list", store=tmp_path / "empty")
    assert empty.returncode == 0 and empty.stdout == "" and "no assets" in empty.stderr
    assert cli("asset", "list", "--json", store=tmp_path / "empty").stdout == "[]\n"
    one_line_error(cli("asset", "list", store=tmp_path / "none"), "no store at")


def test_download_into_a_file_is_a_one_line_error(store: Path, tmp_path: Path) -> None:
    run = make_run(store, MODEL)
    _assets.promote(run, "model", "net")
    afile = tmp_path / "afile"
    afile.write_bytes(b"keep me")
    out = cli("asset", "download", "net", str(afile), store=store)
    one_line_error(out, "it is a file, not a folder", str(afile))
    assert afile.read_bytes() == b"keep me"


def test_store_option_wins_over_the_environment(store: Path, tmp_path: Path) -> None:
    run = make_run(store, MODEL)
    other = tmp_path / "other"
    make_run(other, {"x.txt": b"x"}, experiment="elsewhere")
    out = subprocess.run(
        [sys.executable, "-m", "amltrack", "history", "list", "--json", "--store", str(store)],
        capture_output=True,
        text=True,
        env=child_env(AMLTRACK_STORE=str(other)),
        timeout=60,
    )
    assert [r["id"] for r in json.loads(out.stdout)] == [run.id]
