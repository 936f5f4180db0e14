"""Hostile input to the readers: a symlink planted in a run's artifacts (or an asset's files) is never
followed, and a remote that answers with the wrong shape fails the run it was asked about, in one line.

The symlink tests plant a link where a stored artifact was, as someone with write access to the
store could; the remote tests run a small fake server on 127.0.0.1 that answers /v1/health as
amltrack's server does and anything it likes to the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import amltrack
from amltrack import _assets
from amltrack._errors import RefusedFileError
from amltrack.sync._local import snapshot
from amltrack.sync._mlflow import MlflowRemote

from .conftest import child_env
from .sync_helpers import WRITE_TOKEN, ServerProcess, cli, make_run

SECRET = b"TOP-SECRET-4a1f9e: the bytes of a file outside the run\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_bytes(SECRET)
    (d / "x.txt").write_bytes(SECRET)
    return d / "secret.txt"


def _link_file(art: Path, secret: Path) -> str:
    """artifacts/leak.txt -> a file outside the run."""
    (art / "leak.txt").unlink()
    (art / "leak.txt").symlink_to(secret)
    return "leak.txt"


def _link_folder(art: Path, secret: Path) -> str:
    """artifacts/sub -> a folder outside the run: the link is a folder on the way, not the file."""
    shutil.rmtree(art / "sub")
    (art / "sub").symlink_to(secret.parent, target_is_directory=True)
    return "sub/x.txt"


def _link_inside(art: Path, secret: Path) -> str:
    """artifacts/leak.txt -> ok.txt, a file of the same run: refused all the same. Every link is
    refused, so no check of where one leads can be got wrong or raced."""
    (art / "leak.txt").unlink()
    (art / "leak.txt").symlink_to("ok.txt")
    return "leak.txt"


def _link_artifacts(art: Path, secret: Path) -> str:
    """The whole artifacts/ folder is a link to a folder outside the run."""
    shutil.rmtree(art)
    shutil.copytree(secret.parent, secret.parent.parent / "fake-artifacts")
    (secret.parent.parent / "fake-artifacts" / "leak.txt").write_bytes(SECRET)
    art.symlink_to(secret.parent.parent / "fake-artifacts", target_is_directory=True)
    return "leak.txt"


PLANTS: dict[str, Callable[[Path, Path], str]] = {
    "file": _link_file,
    "folder": _link_folder,
    "inside": _link_inside,
    "artifacts-dir": _link_artifacts,
}


def hostile_run(store: Path, secret: Path, plant: str = "file") -> tuple[str, str]:
    """A completed run whose stored artifacts ok.txt, leak.txt and sub/x.txt are in its manifest,
    with one of them (or a folder on its way) replaced by a symlink; its id and the linked path."""
    run_id = make_run(
        store,
        records=20,
        artifacts={"ok.txt": b"fine\n", "leak.txt": b"placeholder\n", "sub/x.txt": b"placeholder\n"},
    )
    path = PLANTS[plant](store / "runs" / run_id / "artifacts", secret)
    return run_id, path


def assert_one_line_refusal(out: subprocess.CompletedProcess, path: str) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text
    assert SECRET.decode().strip() not in text
    lines = [line for line in out.stderr.splitlines() if "refused" in line]
    assert len(lines) == 1 and "symlink" in lines[0], out.stderr


# ----------------------------------------------------------------- the read API


@pytest.mark.parametrize("plant", list(PLANTS))
def test_read_artifact_refuses_a_symlink(store: Path, secret: Path, plant: str) -> None:
    run_id, path = hostile_run(store, secret, plant)
    run = amltrack.Store(store).run(run_id)
    with pytest.raises(RefusedFileError) as caught:
        run.read_artifact(path)
    assert isinstance(caught.value, amltrack.AmltrackError) and isinstance(caught.value, PermissionError)
    assert "symlink" in str(caught.value) and str(store / "runs" / run_id) in str(caught.value)
    if plant != "artifacts-dir":
        assert run.read_artifact("ok.txt") == b"fine\n"  # the run's other artifacts read as ever


def test_read_artifact_refuses_a_fifo_without_waiting(store: Path, secret: Path) -> None:
    run_id, _ = hostile_run(store, secret)
    art = store / "runs" / run_id / "artifacts"
    (art / "ok.txt").unlink()
    os.mkfifo(art / "ok.txt")  # opening it for reading would wait for a writer that never comes
    with pytest.raises(RefusedFileError, match="not a regular file"):
        amltrack.Store(store).run(run_id).read_artifact("ok.txt")


def test_a_folder_or_a_missing_file_is_still_not_found(store: Path, secret: Path) -> None:
    run_id, _ = hostile_run(store, secret)
    run = amltrack.Store(store).run(run_id)
    for path in ("sub", "nope.txt", "ok.txt/below", "sub/nope"):
        with pytest.raises(amltrack.ArtifactNotFoundError):
            run.read_artifact(path)


# ----------------------------------------------------------------- the CLI and assets


@pytest.mark.parametrize("plant", ["file", "folder"])
def test_history_info_a_refuses_a_symlink(store: Path, secret: Path, tmp_path: Path, plant: str) -> None:
    run_id, path = hostile_run(store, secret, plant)
    out = cli("history", "info", "-r", run_id, "-a", path, "--store", str(store))
    assert_one_line_refusal(out, path)
    dest = tmp_path / "copy.bin"
    out = cli("history", "info", "-r", run_id, "-a", path, "-o", str(dest), "--store", str(store))
    assert_one_line_refusal(out, path)
    assert not dest.exists() or SECRET not in dest.read_bytes()


@pytest.mark.parametrize("plant", ["file", "folder", "inside"])
def test_promote_refuses_a_symlink(store: Path, secret: Path, plant: str) -> None:
    run_id, path = hostile_run(store, secret, plant)
    prefix = path.split("/")[0]
    with pytest.raises(RefusedFileError):
        _assets.promote(amltrack.Store(store).run(run_id), prefix, "leaky")
    assert _assets.versions(amltrack.Store(store), "leaky") == []
    out = cli("history", "promote", "-r", run_id, "-ap", prefix, "-n", "leaky", "--store", str(store))
    assert_one_line_refusal(out, path)
    for f in (store / "assets").rglob("*"):
        assert not f.is_file() or SECRET not in f.read_bytes(), f


def test_asset_read_and_download_refuse_a_symlink(store: Path, secret: Path, tmp_path: Path) -> None:
    run_id = make_run(store, records=5, artifacts={"model/w.bin": b"weights\n", "model/cfg.txt": b"cfg\n"})
    asset = _assets.promote(amltrack.Store(store).run(run_id), "model", "net")
    # Someone with write access to the store swaps a file for a link, and asset.json's hash with it,
    # so that only the link itself can give the game away.
    file = asset.dir / _assets.FILES_DIR / "model" / "w.bin"
    file.unlink()
    file.symlink_to(secret)
    info = json.loads((asset.dir / _assets.ASSET_FILE).read_text())
    for f in info["files"]:
        if f["path"] == "model/w.bin":
            f["sha256"], f["size"] = hashlib.sha256(SECRET).hexdigest(), len(SECRET)
    (asset.dir / _assets.ASSET_FILE).write_text(json.dumps(info))
    asset = _assets.get(amltrack.Store(store), "net:1")
    with pytest.raises(RefusedFileError):
        asset.read("model/w.bin")
    assert asset.read("model/cfg.txt") == b"cfg\n"
    dest = tmp_path / "deploy"
    with pytest.raises(RefusedFileError):
        asset.download(dest)
    out = cli("asset", "download", "net:1", str(tmp_path / "deploy2"), "--store", str(store))
    assert_one_line_refusal(out, "model/w.bin")
    for f in tmp_path.rglob("deploy*/**/*"):
        assert not f.is_file() or SECRET not in f.read_bytes(), f


# ----------------------------------------------------------------- sync


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("hostile-server")
    srv = ServerProcess(d / "store", d / "server.log").start()
    yield srv
    srv.stop()


def _server_holds_secret(root: Path) -> list[Path]:
    return [f for f in root.rglob("*") if f.is_file() and not f.is_symlink() and SECRET in f.read_bytes()]


@pytest.mark.parametrize("plant", ["file", "folder", "inside"])
def test_sync_never_uploads_a_symlinked_artifact(
    server: ServerProcess, tmp_path: Path, secret: Path, plant: str
) -> None:
    local = tmp_path / "local"
    clean = make_run(local, records=20, artifacts={"a.txt": b"a\n"})
    run_id, path = hostile_run(local, secret, plant)
    env = {"AMLTRACK_TOKEN": WRITE_TOKEN, "AMLTRACK_CONFIG_DIR": str(tmp_path / "config")}
    out = cli("sync", "--store", str(local), "--to", server.url, "--json", **env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    report = json.loads(out.stdout)
    by_id = {r["id"]: r for r in report["runs"]}
    assert by_id[clean]["outcome"] == "pushed"  # the other runs go on
    bad = by_id[run_id]
    assert bad["outcome"] == "failed" and "\n" not in bad["reason"]
    assert f"artifact {path!r}" in bad["reason"] and "symlink" in bad["reason"]
    assert not _server_holds_secret(server.store)
    # The rest of the run went: its other artifacts, its metrics and its manifest.
    remote = server.store / "runs" / run_id
    assert (remote / "artifacts" / "ok.txt").read_bytes() == b"fine\n"
    assert (remote / "metrics.jsonl").read_bytes() == (local / "runs" / run_id / "metrics.jsonl").read_bytes()
    assert not (remote / "artifacts" / path).exists()
    # Not recorded as pushed: the next sync says so again instead of calling the run up to date.
    again = cli("sync", "--store", str(local), "--to", server.url, "--json", **env)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert {r["id"]: r["outcome"] for r in json.loads(again.stdout)["runs"]}[run_id] == "failed"
    assert not _server_holds_secret(server.store)


def test_mlflow_client_reads_no_symlinked_artifact(store: Path, secret: Path) -> None:
    """The MLflow client takes its artifacts from the same snapshot and opens them through the same
    Run.open_artifact; a symlinked one is left out of what it would upload, and said so."""
    run_id, path = hostile_run(store, secret, "folder")
    snap = snapshot(amltrack.Store(store), run_id)
    remote = MlflowRemote("mlflow+http://127.0.0.1:9")
    try:
        want = remote._wanted(snap, None)
    finally:
        remote.close()
    assert path not in want.artifacts and path not in want.local_files
    assert "ok.txt" in want.artifact_paths and "leak.txt" in want.artifact_paths
    assert path in snap.refused and "symlink" in (snap.refusal() or "")
    with snap.run.open_artifact(want.artifact_paths["ok.txt"]) as f:
        assert f.read() == b"fine\n"


# ----------------------------------------------------------------- a remote that answers wrongly

FAKE_SERVER = r"""
import json, re, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

RULES = json.loads(sys.argv[1])  # [[method, path regex, status, body], ...]; the first match answers
HEALTH = {"server": "amltrack", "version": "0.1.0", "api": 1, "max_body": 65536, "auth": "none"}

class Handler(BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        url = urlsplit(self.path)
        status, body = 200, {}
        if url.path == "/v1/health":
            body = HEALTH
        else:
            for method, pattern, s, b in RULES:
                if method == self.command and re.fullmatch(pattern, url.path):
                    status, body = s, b
                    break
        if body == "$append":  # the right answer to an append: the offset plus the bytes sent
            body = {"size": int(parse_qs(url.query)["offset"][0]) + n}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = answer

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
"""

RUN = r"/v1/runs/[^/]+"
NO_RUN = ["GET", RUN, 404, {"error": {"code": "run_not_found", "message": "no such run"}}]
APPEND_OK = ["POST", RUN + r"/append/.+", 200, "$append"]
NO_BLOB = ["GET", RUN + r"/blobs/.+", 404, {"error": {"code": "blob_not_found", "message": "no"}}]
EMPTY_RUN = {"id": "x", "published": False, "files": {}, "artifacts": {}}

# case -> (rules before the catch-all 200 {}, the route the failure names, what it says of the answer)
CASES: dict[str, tuple[list[list[Any]], str, str]] = {
    "empty-object": ([], "GET /v1/runs/{rid}", "no 'files'"),
    "list": ([["GET", RUN, 200, [1, 2]]], "GET /v1/runs/{rid}", "a list, not an object"),
    "string": ([["GET", RUN, 200, "hello"]], "GET /v1/runs/{rid}", "a string, not an object"),
    "files-wrong-type": (
        [["GET", RUN, 200, {**EMPTY_RUN, "files": {"metrics.jsonl": {"size": "12", "sha256": None}}}]],
        "GET /v1/runs/{rid}",
        "'files.metrics.jsonl.size' = '12'",
    ),
    "published-not-bool": (
        [["GET", RUN, 200, {**EMPTY_RUN, "published": "yes"}]],
        "GET /v1/runs/{rid}",
        "'published' = 'yes'",
    ),
    "append-negative-size": (
        [NO_RUN, ["POST", RUN + r"/append/.+", 200, {"size": -5}]],
        "POST /v1/runs/{rid}/append/metrics.jsonl",
        "'size' = -5, not a whole number >= 0",
    ),
    "append-no-progress": (  # taken at its word, this would send the same chunk forever
        [NO_RUN, ["POST", RUN + r"/append/.+", 200, {"size": 0}]],
        "POST /v1/runs/{rid}/append/metrics.jsonl",
        "'size' = 0, not",
    ),
    "append-float-size": (
        [NO_RUN, ["POST", RUN + r"/append/.+", 200, {"size": 1.5}]],
        "POST /v1/runs/{rid}/append/metrics.jsonl",
        "'size' = 1.5",
    ),
    "append-bad-committed": (
        [
            NO_RUN,
            [
                "POST",
                RUN + r"/append/.+",
                409,
                {"error": {"code": "offset_mismatch", "message": "m", "committed": "abc"}},
            ],
        ],
        "POST /v1/runs/{rid}/append/metrics.jsonl",
        "'committed' = 'abc'",
    ),
    "blob-wrong-types": (
        [NO_RUN, APPEND_OK, ["GET", RUN + r"/blobs/.+", 200, {"size": 0, "complete": "no"}]],
        "GET /v1/runs/{rid}/blobs/",
        "'complete' = 'no'",
    ),
    "blob-post-list": (
        [NO_RUN, APPEND_OK, NO_BLOB, ["POST", RUN + r"/blobs/.+", 200, []]],
        "POST /v1/runs/{rid}/blobs/",
        "a list, not an object",
    ),
}


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[Callable[[list[list[Any]]], str]]:
    """Start a fake server with the given rules; its URL. Every one started is stopped at the end."""
    procs: list[subprocess.Popen[str]] = []
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)

    def start(rules: list[list[Any]]) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(rules)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints its port once it listens
        assert line.startswith("PORT "), line
        return f"http://127.0.0.1:{int(line.split()[1])}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.parametrize("case", list(CASES))
def test_sync_fails_each_run_in_one_line_on_a_malformed_answer(
    store: Path, tmp_path: Path, fake_server: Callable[[list[list[Any]]], str], case: str
) -> None:
    rules, route, what = CASES[case]
    url = fake_server(rules)
    ids = sorted(make_run(store, records=20, artifacts={"a.bin": b"x" * 100}) for _ in range(2))
    env = {"AMLTRACK_CONFIG_DIR": str(tmp_path / "config")}
    out = cli("sync", "--store", str(store), "--to", url, **env)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text and "KeyError" not in text
    for rid in ids:  # each run was tried, and failed on its own
        lines = [line for line in text.splitlines() if rid in line and "answered" in line]
        assert len(lines) == 1, text
        assert url in lines[0] and route.format(rid=rid) in lines[0] and what in lines[0], lines[0]
    assert "not tried" not in text
    report = json.loads(cli("sync", "--store", str(store), "--to", url, "--json", **env).stdout)
    assert [r["outcome"] for r in report["runs"]] == ["failed", "failed"]
    assert all("\n" not in r["reason"] and route.format(rid=r["id"]) in r["reason"] for r in report["runs"])


def test_a_fake_server_that_answers_well_gets_the_runs(
    store: Path, tmp_path: Path, fake_server: Callable[[list[list[Any]]], str]
) -> None:
    """The fake server, given the right answers, takes a push: the checks refuse shapes, not servers."""
    url = fake_server(
        [
            NO_RUN,
            APPEND_OK,
            NO_BLOB,
            ["POST", RUN + r"/blobs/.+", 200, {"sha256": "s", "size": 100, "complete": True}],
        ]
    )
    make_run(store, records=20, artifacts={"a.bin": b"x" * 100})
    out = cli("sync", "--store", str(store), "--to", url, "--json", AMLTRACK_CONFIG_DIR=str(tmp_path / "c"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["counts"]["pushed"] == 1
