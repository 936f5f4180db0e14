"""``amltrack history list|last|info --remote`` against a real ``amltrack server``: the server's runs,
shown exactly as the local commands show the same runs, and every failure as one line."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

import amltrack
from amltrack.cli._main import main
from amltrack.sync import AmltrackRemote, Remotes, sync

from .conftest import child_env, wait_until
from .sync_helpers import READ_TOKEN, WRITE_TOKEN, ServerProcess, cli, make_run
from .team_helpers import BACKENDS, server_of, team_moto  # noqa: F401 - a fixture

ARTIFACTS = {
    "model/weights.bin": bytes(range(256)) * 300,
    "notes/config.txt": b"lr=0.1\n",
    "empty.txt": b"",
    "odd name #1 %20 \u00e9t\u00e9.txt": "\u00e9t\u00e9\n".encode(),
}


@dataclass
class Synced:
    server: ServerProcess
    local: Path
    rich: str
    failed: str
    crashed: str
    other: str
    staged: str


def rich_run(store: Path) -> str:
    """Numbers, a list metric, strings, bools, NaN and infinity, rows; artifacts, one of them not stored."""
    with amltrack.start_run(
        "rich", store=store, outputs=None, name="baseline", params={"lr": 0.1}, tags={"k": "v"}
    ) as lg:
        for i in range(500):
            lg.log("loss", 1.0 / (i + 1))
            lg.log("hist", [i, i + 0.5, float("nan")])
            # rows (log_metrics): the server reads them without the writer's index
            lg.log_metrics(
                {"val/acc": i / 500, "grad_norm": float("inf") if i == 9 else i * 0.1, "best": i > 400}
            )
            if i % 50 == 0:
                lg.log("phase", f"step {i}")
                lg.log("converged", i > 300)
        lg.log("inf", float("inf"))
        for path, data in ARTIFACTS.items():
            lg.upload(path, data)
        run_id = lg.run_id
    from amltrack._files import Artifacts

    arts = Artifacts(store / "runs" / run_id)
    arts.record("rejected.bin", "failed", source="upload", reason="too large for the test")
    arts.close()
    return run_id


def crash(store: Path, run_id: str) -> None:
    """Make the run read as crashed: running on file, its process (this host) gone."""
    d = store / "runs" / run_id
    info = json.loads((d / "run.json").read_text())
    info.update(status="running", pid=os.getpid(), pid_start=1)  # not this process's start time
    for key in ("ended", "ended_ts"):
        info.pop(key, None)
    (d / "run.json").write_text(json.dumps(info))
    # Older than the heartbeat: the summary is not stale, so listings use it as they are.
    os.utime(d / "metrics.jsonl", (info["created_ts"], info["created_ts"]))


@pytest.fixture(scope="module", params=BACKENDS)
def synced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    """Runs pushed to the embedded server, then to a replica of a team server: the remote history
    reads the same from both."""
    d = tmp_path_factory.mktemp("remote-history")
    local = d / "local"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)  # runs record the git state of the working directory: not this repository's
        rich = rich_run(local)
        failed = make_run(local, records=30, status="failed")
        crashed = make_run(local, records=20)
        crash(local, crashed)
        other = make_run(local, records=10, experiment="other")
    moto = request.getfixturevalue("team_moto") if request.param == "team" else None
    with server_of(request.param, d / "server", moto) as srv:
        with AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02) as remote:
            report = sync(local, remote)
        assert report.ok and report.counts()["pushed"] == 4, report.runs
        # A run whose first push is unfinished: staged, so no reader may see it.
        staged = "20200101T000000000-00000000000000aa"
        with srv.client() as c:
            assert c.put(f"/v1/runs/{staged}").status_code == 201
            r = c.post(f"/v1/runs/{staged}/append/metrics.jsonl", params={"offset": 0}, content=b'{"x":1}\n')
            assert r.status_code == 200
        yield Synced(srv, local, rich, failed, crashed, other, staged)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder of one's own, the read token in $AMLTRACK_TOKEN."""
    config = tmp_path / "config"
    monkeypatch.setenv("AMLTRACK_CONFIG_DIR", str(config))
    monkeypatch.setenv("AMLTRACK_TOKEN", READ_TOKEN)
    return config


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(result: tuple[int, str, str] | object, *words: str) -> str:
    if isinstance(result, tuple):
        code, _, err = result
    else:
        code, err = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("amltrack: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port that refuses connections for as long as it is held: bound, never listening, so no other
    process can take it meanwhile (a port that was merely free a moment ago may be anybody's by now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


# ---------------------------------------------------------------------------- same output


def test_list_last_and_info_show_what_the_local_commands_show(
    synced: Synced, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remotes = Remotes.load()
    remotes.add("team", synced.server.url)
    remotes.save()
    s = synced
    commands = [
        ("history", "list"),
        ("history", "list", "--json"),
        ("history", "list", "-n", "2"),
        ("history", "list", "-n", "0", "--json"),
        ("history", "list", "--status", "failed", "--json"),
        ("history", "list", "--status", "crashed"),
        ("history", "list", "--status", "crashed", "--json"),
        ("history", "list", "--status", "completed", "--experiment", "rich"),
        ("history", "list", "-e", "other", "--json"),
        ("history", "last"),
        ("history", "last", "--json"),
        ("history", "info", "-r", "last", "--json"),
        ("history", "info", "-r", s.rich.split("-")[1][:6]),  # a prefix of the random part
    ]
    for rid in (s.rich, s.failed, s.crashed, s.other):
        commands += [("history", "info", "-r", rid), ("history", "info", "-r", rid, "--json")]
    for i, command in enumerate(commands):
        local = run_cli(capsys, *command, "--store", str(s.local))
        remote = run_cli(capsys, *command, "--remote", "team" if i % 2 else s.server.url)
        assert local[0] == 0 and local[1], (command, local)
        assert remote == local, command
    crashed = json.loads(run_cli(capsys, "history", "list", "-s", "crashed", "--json", "--remote", "team")[1])
    assert [r["id"] for r in crashed] == [s.crashed]
    info = json.loads(run_cli(capsys, "history", "info", "-r", s.rich, "--json", "--remote", "team")[1])
    assert info["metrics"]["hist"]["kind"] == "list" and info["metrics"]["phase"]["kind"] == "string"
    assert {a["path"] for a in info["artifacts"]} == {*ARTIFACTS, "rejected.bin"}


def test_an_empty_listing_says_where(synced: Synced, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "history", "list", "-e", "nope", "--remote", synced.server.url)
    assert (code, out) == (0, "")
    assert err == f"no runs of experiment 'nope' on {synced.server.url}\n"


def test_info_a_gives_the_artifacts_exact_bytes(
    synced: Synced, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i, (path, data) in enumerate(ARTIFACTS.items()):
        dest = tmp_path / f"out{i}"
        code, out, err = run_cli(
            capsys,
            "history",
            "info",
            "-r",
            synced.rich,
            "-a",
            path,
            "-o",
            str(dest),
            "--remote",
            synced.server.url,
        )
        assert (code, out, err) == (0, "", "")
        assert (
            dest.read_bytes()
            == data
            == (synced.local / "runs" / synced.rich / "artifacts" / path).read_bytes()
        )
    # To stdout, byte for byte, from a real process.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "amltrack",
            "history",
            "info",
            "-r",
            synced.rich,
            "-a",
            "model/weights.bin",
            "--remote",
            synced.server.url,
        ],
        capture_output=True,
        env=child_env(AMLTRACK_TOKEN=READ_TOKEN),
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == ARTIFACTS["model/weights.bin"]


def test_a_missing_or_unstored_artifact_is_one_line(
    synced: Synced, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = synced.server.url
    local = run_cli(
        capsys, "history", "info", "-r", synced.rich, "-a", "rejected.bin", "--store", str(synced.local)
    )
    remote = run_cli(capsys, "history", "info", "-r", synced.rich, "-a", "rejected.bin", "--remote", url)
    assert remote == local
    one_line_error(remote, "was not stored: too large for the test")
    one_line_error(
        run_cli(capsys, "history", "info", "-r", synced.rich, "-a", "nope.txt", "--remote", url),
        "no stored artifact 'nope.txt'",
        f"--remote {url}",
    )


# ---------------------------------------------------------------------------- what is visible


def test_a_staged_run_is_invisible(synced: Synced, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "history", "list", "-n", "0", "--json", "--remote", synced.server.url)
    assert code == 0
    ids = [r["id"] for r in json.loads(out)]
    assert synced.staged not in ids and len(ids) == 4
    one_line_error(
        run_cli(capsys, "history", "info", "-r", synced.staged, "--remote", synced.server.url),
        f"no run matches '{synced.staged}'",
    )
    with synced.server.client(READ_TOKEN) as c:
        for target in (
            f"/v1/history/runs/{synced.staged}",
            f"/v1/history/runs/{synced.staged}/files/metrics.jsonl",
            f"/v1/history/runs/{synced.staged}/artifacts/x.txt",
        ):
            r = c.get(target)
            assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found", (target, r.text)


# ---------------------------------------------------------------------------- tokens and failures


def test_tokens_are_resolved_as_sync_resolves_them(
    synced: Synced, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = synced.server.url
    listing = ("history", "list", "-n", "1")
    # A real process: no token at all.
    one_line_error(
        cli(*listing, "--remote", url, AMLTRACK_CONFIG_DIR=str(env)), "needs a token", "$AMLTRACK_TOKEN"
    )
    for token in (READ_TOKEN, WRITE_TOKEN):
        monkeypatch.setenv("AMLTRACK_TOKEN", token)
        assert run_cli(capsys, *listing, "--remote", url)[0] == 0
    monkeypatch.setenv("AMLTRACK_TOKEN", "not-a-token-the-server-knows")
    one_line_error(
        run_cli(capsys, *listing, "--remote", url), "does not know the token sent ($AMLTRACK_TOKEN)"
    )
    # The remote's own token, unless $AMLTRACK_TOKEN overrides it.
    remotes = Remotes.load()
    remotes.add("team", url, token=READ_TOKEN)
    remotes.add("bad", url, token="not-a-token-the-server-knows")
    remotes.save()
    one_line_error(run_cli(capsys, *listing, "--remote", "team"), "does not know the token")
    monkeypatch.delenv("AMLTRACK_TOKEN")
    assert run_cli(capsys, *listing, "--remote", "team")[0] == 0
    one_line_error(
        run_cli(capsys, "history", "last", "--remote", "bad"),
        "does not know the token sent (the remote's token)",
    )


def test_failures_are_one_line_and_say_what_to_do(
    synced: Synced, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = synced.server.url
    one_line_error(
        run_cli(capsys, "history", "info", "-r", "zzzz", "--remote", url),
        "no run matches 'zzzz'",
        f"'amltrack history list --remote {url}'",
    )
    one_line_error(
        run_cli(capsys, "history", "info", "-r", "20", "--remote", url), "matches 4 runs", "give more"
    )
    one_line_error(
        run_cli(capsys, "history", "list", "--remote", "nosuch"),
        "no remote named 'nosuch'",
        "amltrack remote add",
    )
    with refused_port() as port:
        dead = f"http://127.0.0.1:{port}"
        one_line_error(
            run_cli(capsys, "history", "last", "--remote", dead),
            f"cannot reach {dead}",
            "check that the server runs",
        )
    one_line_error(
        run_cli(capsys, "history", "list", "--remote", "ftp://x"), "not an http:// or https:// URL"
    )
    one_line_error(
        run_cli(capsys, "history", "list", "--remote", "mlflow+http://127.0.0.1:1"), "amltrack servers only"
    )
    with pytest.raises(SystemExit) as exited:
        main(["history", "last", "--remote", url, "--store", str(tmp_path)])
    assert exited.value.code == 2 and "not allowed with" in capsys.readouterr().err
    # A real process, the same way.
    one_line_error(
        cli("history", "last", "--remote", dead, AMLTRACK_TOKEN=READ_TOKEN), f"cannot reach {dead}"
    )


# ---------------------------------------------------------------------------- the routes


def test_the_history_routes_need_a_token_and_check_what_they_are_given(synced: Synced) -> None:
    rid = synced.rich
    routes = [
        "/v1/history/runs",
        f"/v1/history/runs/{rid}",
        f"/v1/history/runs/{rid}/files/run.json",
        f"/v1/history/runs/{rid}/artifacts/notes/config.txt",
    ]
    with synced.server.client(None) as anon, synced.server.client("wrong-token-0123456789") as wrong:
        for target in routes:
            for c in (anon, wrong):
                r = c.get(target)
                assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", target
    with synced.server.client(READ_TOKEN) as c:
        for target in routes:
            assert c.get(target).status_code == 200, target
        listing = c.get("/v1/history/runs", params={"limit": 2}).json()["runs"]
        assert [r["id"] for r in listing] == sorted(
            [synced.rich, synced.failed, synced.crashed, synced.other], reverse=True
        )[:2]
        assert set(listing[0]) == {"id", "status", "run", "summary"}
        local = synced.local / "runs" / rid
        for name in ("run.json", "summary.json", "metrics.jsonl", "artifacts.jsonl"):
            assert c.get(f"/v1/history/runs/{rid}/files/{name}").content == (local / name).read_bytes()
        bad = {
            "/v1/history/runs?status=bogus": (400, "invalid_request"),
            "/v1/history/runs?limit=-1": (422, "invalid_request"),
            "/v1/history/runs/..x": (404, "run_not_found"),  # a name no run bears; never a path
            "/v1/history/runs/a%01b": (400, "invalid_run_id"),
            f"/v1/history/runs/{rid}/files/store.json": (404, "not_found"),
            f"/v1/history/runs/{rid}/files/cache": (404, "not_found"),
            f"/v1/history/runs/{rid}/artifacts/..%2F..%2F..%2Fstore.json": (400, "invalid_path"),
            f"/v1/history/runs/{rid}/artifacts/notes%2F..%2F..%2Frun.json": (400, "invalid_path"),
            f"/v1/history/runs/{rid}/artifacts/%00": (400, "invalid_path"),
            f"/v1/history/runs/{rid}/artifacts/notes": (404, "not_found"),  # a folder, not a file
            f"/v1/history/runs/{rid}/artifacts/rejected.bin": (404, "not_found"),
            f"/v1/history/runs/{rid}/artifacts/{quote('é' * 200)}": (400, "invalid_path"),  # a part too long
        }
        for target, (status, code) in bad.items():
            r = c.get(target)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (target, r.text)
            assert set(r.json()["error"]) == {"code", "message"}
    spec = httpx.get(synced.server.url + "/openapi.json").json()
    for path in (
        "/v1/history/runs",
        "/v1/history/runs/{ref}",
        "/v1/history/runs/{run_id}/files/{name}",
        "/v1/history/runs/{run_id}/artifacts/{path}",
    ):
        assert set(spec["paths"][path]) == {"get"}, path
        assert "4XX" in spec["paths"][path]["get"]["responses"]


def test_a_run_name_is_a_reference_through_the_remote_too(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "local"
    with amltrack.start_run("sweep", store=local, outputs=None, name="lr=0.05", params={"lr": 0.05}) as lg:
        lg.log("loss", 0.5)
        run_id = lg.run_id
    srv = ServerProcess(tmp_path / "store", tmp_path / "server.log").start()
    try:
        with AmltrackRemote(srv.url, WRITE_TOKEN) as remote:
            assert sync(local, remote).ok
        code, out, err = run_cli(capsys, "history", "info", "-r", "lr=0.05", "--json", "--remote", srv.url)
        assert code == 0, err
        assert json.loads(out)["id"] == run_id
        code, _, err = run_cli(capsys, "history", "info", "-r", "lr=0.5", "--remote", srv.url)
        assert code == 1 and "lr=0.5" in err and "Traceback" not in err
    finally:
        srv.stop()


# ---------------------------------------------------------------------------- the server's summary


def test_info_takes_the_servers_summary_and_never_fetches_the_metrics(synced: Synced) -> None:
    from amltrack.cli._history import run_details
    from amltrack.sync._reader import RemoteReader

    local = run_details(amltrack.Store(synced.local).run(synced.rich))
    with RemoteReader(synced.server.url, READ_TOKEN) as reader:
        run = reader.run(synced.rich)
        remote = run_details(run)
        assert not (run.dir / "metrics.jsonl").exists() and "metrics.jsonl" not in run._fetched
    assert json.dumps(remote, default=str) == json.dumps(local, default=str)
    assert remote["metrics"]["loss"]["count"] == 500 and remote["metrics"]["grad_norm"]["max"] == float("inf")


def test_the_summary_is_folded_once_and_started_over_when_the_file_changes(tmp_path: Path) -> None:
    local = tmp_path / "local"
    rid = make_run(local, records=3000)
    srv = ServerProcess(tmp_path / "store", tmp_path / "server.log").start()
    try:
        done = cli("sync", "--to", srv.url, "--store", str(local), AMLTRACK_TOKEN=WRITE_TOKEN)
        assert done.returncode == 0, done.stderr
        metrics = tmp_path / "store" / "runs" / rid / "metrics.jsonl"
        saved = metrics.parent / "cache" / "metrics-summary.json"
        # Finalising folds it in the background: a reader pays nothing.
        wait_until(
            lambda: saved.exists() and json.loads(saved.read_bytes())["end"] == metrics.stat().st_size,
            what="the server to fold the pushed metrics",
        )

        def summary() -> dict:
            with srv.client(READ_TOKEN) as c:
                r = c.get(f"/v1/history/runs/{rid}/summary", params={"points": 8})
                assert r.status_code == 200, r.text
                return r.json()

        first = summary()
        assert first["metrics"]["loss"]["count"] == 3000 and len(first["metrics"]["loss"]["points"]) == 8
        assert first["metrics"]["nonfinite"]["nonfinite"] == ["last"] and first["skipped"] == 0
        # The head of the file overwritten in place: an answer that still counts every point was
        # not read from the file but from the fold.
        data = metrics.read_bytes()
        metrics.write_bytes(b" " * 200 + b"\n" + data[201:])
        assert summary() == first
        # The end of the file cut: the fold no longer matches it and is made again from the file.
        metrics.write_bytes(b" " * 200 + b"\n" + data[201 : data.rindex(b"\n", 0, len(data) - 1) + 1])
        again = summary()
        # ...and now it reads the damaged head: the line cut in two there is skipped.
        assert again["metrics_bytes"] == metrics.stat().st_size and again["skipped"] == 1
        assert "nonfinite" not in again["metrics"]  # the cut line was its only point
        assert again["metrics"]["loss"]["count"] < 3000
    finally:
        srv.stop()


def test_the_summary_route_checks_what_it_is_given(synced: Synced) -> None:
    with synced.server.client(READ_TOKEN) as c:
        assert c.get(f"/v1/history/runs/{synced.staged}/summary").json()["error"]["code"] == "run_not_found"
        assert c.get("/v1/history/runs/..%2f..%2fetc/summary").status_code in (400, 404)
        assert c.get(f"/v1/history/runs/{synced.rich}/summary", params={"points": 0}).status_code == 422
    with httpx.Client(base_url=synced.server.url) as c:
        assert c.get(f"/v1/history/runs/{synced.rich}/summary").status_code == 401


def test_a_crashed_runs_row_is_the_same_in_the_cli_the_ui_and_the_servers_history(
    tmp_path: Path, env: Path
) -> None:
    # Its summary.json is behind its metrics: each list brings it up to date by the same rule.
    from amltrack.ui._api import run_row

    from .test_store import crashed_behind

    local = tmp_path / "local"
    run_dir, truth = crashed_behind(local)
    srv = ServerProcess(tmp_path / "store", tmp_path / "server.log").start()
    try:
        with AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02) as remote:
            assert sync(local, remote).ok
        remote_rows = json.loads(
            cli(
                "history",
                "list",
                "--remote",
                srv.url,
                "--json",
                AMLTRACK_TOKEN=READ_TOKEN,
                AMLTRACK_CONFIG_DIR=str(env),
            ).stdout
        )
    finally:
        srv.stop()
    ui = run_row(amltrack.Store(local).run(run_dir.name))  # first: it keeps the repair for the CLI
    [row] = json.loads(cli("history", "list", "--store", str(local), "--json").stdout)
    assert remote_rows == [row]
    assert row["status"] == "crashed" and row["metrics"] == len(truth)
    assert row["last"] == {name: truth[name][1] for name in ["acc", "hist", "late0"]} | {"hist": 5}
    assert ui["metric_count"] == row["metrics"] and ui["duration_s"] == row["duration_s"]
    assert ui["metrics"]["acc"] == row["last"]["acc"] and ui["metrics"]["hist"] == "[2 values]"
