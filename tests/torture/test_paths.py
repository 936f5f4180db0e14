"""Path safety at every door a path comes in by: one list of bad paths, refused by each entry point
with its clear error, and nothing written anywhere."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

import amltrack
from amltrack import _assets
from amltrack.cli import main as cli_main

from ..conftest import child_env
from ..sync_helpers import READ_TOKEN, WRITE_TOKEN, ServerProcess
from .conftest import app_routes

BAD_PATHS = {
    "dotdot": "../escape.txt",
    "dotdot-inside": "a/../../escape.txt",
    "dot": "./a",
    "empty-part": "a//b",
    "absolute": "/tmp/amltrack-escape.txt",  # somewhere harmless, should the guard ever break
    "backslash": "a\\b",
    "nul": "a\x00b",
    "control": "a\x01b",
    "drive": "C:/escape.txt",
    "too-long": "x" * 1025,
    "long-part": "a/" + "y" * 256,
    "long-part-bytes": "a/" + "é" * 101,  # 101 characters, 202 bytes in UTF-8
    "lone-surrogate": "\ud800",
    "escaped-byte": "x\udcff.txt",  # what os.fsdecode makes of the byte 0xff
}
PARAMS = [pytest.param(p, id=k) for k, p in BAD_PATHS.items()]
# A lone surrogate has no UTF-8 form, so no URL can carry one: sent as its WTF-8 bytes, it arrives
# decoded as U+FFFD, a harmless name that is simply not there.
NOT_IN_A_URL = {"lone-surrogate", "escaped-byte"}


def escaped(root: Path) -> list[Path]:
    """Files that a path let out of the store would have made."""
    found = [p for p in root.rglob("*escape*")]
    return found + [p for p in (Path("/tmp/amltrack-escape.txt"),) if p.exists()]


def artifact_files(run_dir: Path) -> list[str]:
    root = run_dir / "artifacts"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[amltrack.Logger, amltrack.Run]]:
    with amltrack.start_run("paths", store=tmp_path / "store", outputs=None) as logger:
        logger.upload("a/b.txt", "inside").wait()
        yield logger, amltrack.Store(tmp_path / "store").run(logger.run_id)


# ----------------------------------------------------------------- the Python API


def named(path: str, message: str) -> bool:
    """The message names the path: whole, or by its start when it is longer than a path may be."""
    return repr(path) in message or (len(path.encode()) > 1024 and repr(path)[:60] in message)


@pytest.mark.parametrize("path", PARAMS)
def test_logger_upload_and_upload_file_refuse(run, tmp_path: Path, path: str) -> None:
    logger, r = run
    src = tmp_path / "local.bin"
    src.write_bytes(b"local")
    for call in (lambda: logger.upload(path, b"x"), lambda: logger.upload_file(path, src)):
        with pytest.raises(amltrack.InvalidPathError) as e:
            call()
        assert named(path, str(e.value)) and "\n" not in str(e.value)
    logger.flush()
    assert [a["path"] for a in r.artifacts()] == ["a/b.txt"]
    assert artifact_files(r.dir) == ["a/b.txt"] and escaped(tmp_path) == []


@pytest.mark.parametrize("path", PARAMS)
def test_run_read_artifact_refuses(run, path: str) -> None:
    _, r = run
    with pytest.raises(amltrack.InvalidPathError) as e:
        r.read_artifact(path)
    assert named(path, str(e.value))


@pytest.mark.parametrize("path", PARAMS)
def test_promote_refuses_the_prefix(run, tmp_path: Path, path: str) -> None:
    _, r = run
    with pytest.raises(amltrack.InvalidPathError):
        _assets.promote(r, path, "model")
    assert _assets.list_assets(r.store) == []


# ----------------------------------------------------------------- the CLI


@pytest.mark.parametrize("path", PARAMS)
@pytest.mark.parametrize("command", ["info", "promote"])
def test_cli_history_info_a_and_promote_ap_refuse(
    run, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, path: str
) -> None:
    _, r = run
    store = str(tmp_path / "store")
    if command == "info":
        argv = ["history", "info", "--store", store, "-r", r.id, "-a", path, "-o", str(tmp_path / "out.bin")]
    else:
        argv = ["history", "promote", "--store", store, "-r", r.id, "-ap", path, "-n", "model"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("amltrack: artifact path") and "is not allowed" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.bin").exists()
    assert _assets.list_assets(r.store) == []


def test_cli_refuses_paths_from_a_real_argv(run, tmp_path: Path) -> None:
    """The bytes a shell passes: an undecodable byte arrives as a lone surrogate and is refused."""
    _, r = run
    for raw in (b"x\xff.txt", b"../escape.txt", b"a/" + b"y" * 256):
        for args in ([b"info", b"-a", raw], [b"promote", b"-ap", raw, b"-n", b"model"]):
            out = subprocess.run(
                [
                    sys.executable.encode(),
                    b"-m",
                    b"amltrack",
                    b"history",
                    args[0],
                    b"--store",
                    os.fsencode(tmp_path / "store"),
                    b"-r",
                    r.id.encode(),
                    *args[1:],
                ],
                capture_output=True,
                timeout=60,
                env=child_env(),
            )
            assert out.returncode == 1, out.stderr
            assert b"is not allowed" in out.stderr and b"Traceback" not in out.stderr and out.stdout == b""
    assert _assets.list_assets(r.store) == []


# ----------------------------------------------------------------- the server and the UI it serves

RID = "20261127T005321123-00000000000000f7"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server whose store holds a run with the artifact a/b.txt and the asset model:1 made from it."""
    d = tmp_path_factory.mktemp("paths-server")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        with amltrack.start_run("paths", store=d / "store", outputs=None) as logger:
            logger.upload("a/b.txt", "inside").wait()
        _assets.promote(amltrack.Store(d / "store").run(logger.run_id), "a", "model")
    srv = ServerProcess(d / "store", d / "server.log").start()
    try:
        yield srv, logger.run_id
    finally:
        srv.stop()


def request(srv: ServerProcess, method: str, target: str, token: str) -> tuple[int, dict]:
    """Sent byte for byte: no client-side normalising of '..' or '//'."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(
            method, target, headers={"Authorization": f"Bearer {token}", "X-Amltrack-Client": "tests"}
        )
        r = conn.getresponse()
        body = r.read()
        assert r.getheader("content-type", "").startswith("application/json"), (r.status, body[:300])
        return r.status, orjson.loads(body)
    finally:
        conn.close()


PATH_ROUTES = [(m, t) for m, t in app_routes() if t.endswith("{path:path}") and m != "HEAD"]


def test_every_route_that_takes_a_path_is_walked() -> None:
    templates = {t for _, t in PATH_ROUTES}
    assert {
        "/v1/runs/{run_id}/artifacts/{path:path}",
        "/ui/api/runs/{ref}/artifacts/{path:path}",
        "/ui/api/assets/{name}/{version}/files/{path:path}",
    } <= templates, templates


@pytest.mark.parametrize("key", list(BAD_PATHS))
def test_server_and_ui_artifact_routes_refuse(server: tuple[ServerProcess, str], key: str) -> None:
    srv, served = server
    path = quote(BAD_PATHS[key].encode("utf-8", "surrogatepass"), safe="/.")
    with srv.client() as c:
        c.put(f"/v1/runs/{RID}").raise_for_status()
    root = srv.store.parent
    before = {p for p in root.rglob("*") if p.is_file() and p.name != "server.log"}
    for method, template in PATH_ROUTES:
        write = method != "GET"
        fill = {
            "run_id": RID if write else served,
            "ref": served,
            "name": "model",
            "version": "1",
            "path": path,
        }
        target = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m, fill=fill: fill[m.group(1)], template)
        if method == "PUT":
            target += f"?sha256={'0' * 64}"
        status, body = request(srv, method, target, WRITE_TOKEN if write else READ_TOKEN)
        if key in NOT_IN_A_URL:
            assert status < 500 and (status < 400 or set(body) == {"error"}), (method, target, status, body)
        else:
            assert status == 400 and body["error"]["code"] == "invalid_path", (method, target, status, body)
    after = {p for p in root.rglob("*") if p.is_file() and p.name != "server.log"}
    assert after == before and escaped(root.parent) == []  # nothing let in
