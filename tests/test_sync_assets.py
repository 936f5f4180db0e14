"""Promoted assets go to an amltrack server with the runs: exactly once, by content hash, numbered by
the server, shown by ``asset list|show|download --remote`` and the server's Assets page."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import amltrack
from amltrack import _assets
from amltrack.sync import AmltrackRemote, sync

from .conftest import wait_until
from .sync_helpers import READ_TOKEN, WRITE_TOKEN, ServerProcess, cli, make_run
from .team_helpers import BACKENDS, server_of, skip_on_team, team_moto  # noqa: F401 - a fixture

WEIGHTS = os.urandom(300_000)  # several chunks at the test server's 64 KiB body limit


def promoted(store: Path, files: dict[str, bytes], name: str = "mnist") -> _assets.Asset:
    rid = make_run(store, records=5, artifacts=files)
    return _assets.promote(amltrack.Store(store).run(rid), "model", name)


def asset_files(root: Path) -> dict[str, dict[str, bytes]]:
    """Every version's files under a store's assets/, by NAME:VERSION."""
    out = {}
    for d in sorted((root / "assets").glob("*/[0-9]*")):
        files = d / "files"
        out[f"{d.parent.name}:{d.name}"] = {
            p.relative_to(files).as_posix(): p.read_bytes() for p in files.rglob("*") if p.is_file()
        }
    return out


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """The embedded server, then a replica of a team server."""
    moto = request.getfixturevalue("team_moto") if request.param == "team" else None
    with server_of(request.param, tmp_path / "remote-server", moto) as srv:
        yield srv


def push(local: Path, srv: ServerProcess, *args: str, token: str = WRITE_TOKEN) -> dict:
    done = cli("sync", "--store", str(local), "--to", srv.url, "--json", *args, AMLTRACK_TOKEN=token)
    report = json.loads(done.stdout)
    assert (done.returncode == 0) == report["ok"], done.stderr
    return report


def test_sync_pushes_promoted_assets_once_and_the_remote_commands_show_them(
    tmp_path: Path, server: ServerProcess
) -> None:
    local = tmp_path / "local"
    one = promoted(local, {"model/weights.bin": WEIGHTS, "model/config.json": b"{}"})
    two = promoted(local, {"model/weights.bin": WEIGHTS[::-1], "model/config.json": b"{}"})
    report = push(local, server)
    assert report["ok"] and report["asset_counts"] == {
        "pushed": 2,
        "up_to_date": 0,
        "would_push": 0,
        "failed": 0,
    }
    assert [(a["ref"], a["remote_ref"]) for a in report["assets"]] == [
        ("mnist:1", "mnist:1"),
        ("mnist:2", "mnist:2"),
    ]
    assert asset_files(server.store) == asset_files(local)
    assert not any(p.is_file() for p in (server.store / ".server" / "asset-blobs").rglob("*"))  # placed: gone
    # The ledger answers: nothing is asked or sent again; --all asks, and the server has both already.
    again = push(local, server)
    assert again["asset_counts"]["up_to_date"] == 2 and again["bytes"] == 0
    forced = push(local, server, "--all")
    assert forced["asset_counts"]["up_to_date"] == 2 and forced["bytes"] == 0
    assert sorted(asset_files(server.store)) == ["mnist:1", "mnist:2"]

    env = {"AMLTRACK_TOKEN": READ_TOKEN, "AMLTRACK_CONFIG_DIR": str(tmp_path / "config")}
    listed = cli("asset", "list", "--remote", server.url, "--json", **env)
    assert listed.returncode == 0, listed.stderr
    remote = json.loads(listed.stdout)
    assert [(a["name"], a["version"], a["files"]) for a in remote] == [
        (a.name, a.version, a.files) for a in (one, two)
    ]
    assert all(a["pushed_version"] == a["version"] and len(a["origin"]) == 64 for a in remote)
    table = cli("asset", "list", "--remote", server.url, **env)
    assert "mnist:2" in table.stdout and one.info["source_run"][-16:-8] in table.stdout
    shown = cli("asset", "show", "mnist:1", "--remote", server.url, **env)
    assert shown.returncode == 0 and "model/weights.bin" in shown.stdout and "folder" not in shown.stdout
    got = cli("asset", "download", "mnist", str(tmp_path / "deploy"), "--remote", server.url, **env)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "deploy" / "model" / "weights.bin").read_bytes() == WEIGHTS[::-1]
    missing = cli("asset", "show", "mnist:9", "--remote", server.url, **env)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "no asset 'mnist:9' on" in missing.stderr and "asset list --remote" in missing.stderr

    # The server's own web UI lists them: its Assets page reads this API.
    # (A replica's UI reads its copy of the team's runs and assets, refreshed every 5 s.)
    def listed_on_the_ui() -> bool:
        with server.client(READ_TOKEN) as c:
            page = c.get("/ui/api/assets").json()
        return [(a["name"], [v["version"] for v in a["versions"]]) for a in page["assets"]] == [
            ("mnist", [1, 2])
        ]

    wait_until(listed_on_the_ui, 30, "the UI to list both versions")


def test_the_server_numbers_the_versions_of_everyone_who_pushes(
    tmp_path: Path, server: ServerProcess
) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    promoted(alice, {"model/w.bin": b"alice's"})
    promoted(bob, {"model/w.bin": b"bob's"})
    promoted(bob, {"model/w.bin": b"alice's"})  # bob's version 2 holds alice's files
    assert push(alice, server)["assets"][0]["remote_ref"] == "mnist:1"
    report = push(bob, server, "--dry-run")
    assert [a["outcome"] for a in report["assets"]] == ["would_push", "would_push"]
    assert sorted(asset_files(server.store)) == ["mnist:1"]
    report = push(bob, server)
    # bob's 1 is new there; bob's 2 holds what the server's latest (now bob's 1) does not, so it is new too.
    assert [(a["ref"], a["outcome"], a["remote_ref"]) for a in report["assets"]] == [
        ("mnist:1", "pushed", "mnist:2"),
        ("mnist:2", "pushed", "mnist:3"),
    ]
    assert asset_files(server.store)["mnist:3"] == asset_files(server.store)["mnist:1"]
    text = cli("sync", "--store", str(bob), "--to", server.url, "--all", AMLTRACK_TOKEN=WRITE_TOKEN)
    assert "assets: 0 pushed, 2 up to date, 0 failed" in text.stdout


@pytest.mark.parametrize(
    "kill", ["after:1:asset", "during:1:asset", "before:1:asset", "after:2:blob", "during:3:blob"]
)
def test_a_server_killed_at_any_point_of_an_asset_push_ends_with_one_version(
    tmp_path: Path, kill: str
) -> None:
    local = tmp_path / "local"
    rid = make_run(local, records=5, artifacts={"model/w.bin": WEIGHTS, "model/c.txt": b"c"})
    srv = ServerProcess(tmp_path / "remote", tmp_path / "server.log")
    try:
        srv.start()
        with AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02) as remote:
            assert sync(local, remote).runs[0].outcome == "pushed"  # the run first: its uploads are blobs too
        srv.stop()
        _assets.promote(amltrack.Store(local).run(rid), "model", "mnist")
        srv.start(kill=kill)
        with AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02, retries=0) as remote:
            report = sync(local, remote)
        assert srv.wait_dead() == -9, f"the server did not die at {kill}"
        assert not report.ok
        srv.start()
        with AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02) as remote:
            report = sync(local, remote)
        assert report.ok, (report.assets, report.stopped)
        assert [a.remote_ref for a in report.assets] == ["mnist:1"]
        assert asset_files(srv.store) == asset_files(local)
        assert not list((srv.store / "assets" / "mnist").glob(".push-*"))
    finally:
        srv.stop()


def test_the_asset_routes_refuse_what_they_must(tmp_path: Path, server: ServerProcess) -> None:
    local = tmp_path / "local"
    asset = promoted(local, {"model/w.bin": b"w"})
    body = (asset.dir / "asset.json").read_bytes()
    info = json.loads(body)
    with server.client(WRITE_TOKEN) as c:
        r = c.put("/v1/assets/mnist", content=body)
        assert (
            r.status_code == 409 and r.json()["error"]["code"] == "blob_missing" and "model/w.bin" in r.text
        )
        bad = {**info, "files": [{"path": "../../etc/passwd", "size": 1, "sha256": "0" * 64}]}
        r = c.put("/v1/assets/mnist", content=json.dumps(bad))
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path"
        r = c.put("/v1/assets/other", content=body)
        assert r.status_code == 400 and "names asset 'mnist'" in r.text
        r = c.put("/v1/assets/..", content=body)
        assert r.status_code in (400, 404)
        r = c.put("/v1/assets/mnist", content=b"[1]")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
        sha = info["files"][0]["sha256"]
        r = c.post(f"/v1/assets/mnist/blobs/{sha}", params={"offset": 0, "size": 1}, content=b"x")
        assert r.status_code == 422 and r.json()["error"]["code"] == "hash_mismatch"
        assert c.get("/v1/assets/mnist").json()["error"]["code"] == "asset_not_found"
    with server.client(READ_TOKEN) as c:
        assert c.put("/v1/assets/mnist", content=body).status_code == 403
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/v1/assets").status_code == 401
    assert not (server.store / "assets" / "mnist").exists() or not asset_files(server.store)
