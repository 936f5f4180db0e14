"""``amltrack sync`` against real ``amltrack server`` processes: exactly once, resumable, byte for byte."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import stat
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import amltrack
from amltrack.cli._sync import human_bytes
from amltrack.sync import AmltrackRemote, Remotes, remotes_of, sync
from amltrack.sync import _ledger as ledger

from .conftest import child_env, wait_until
from .sync_helpers import (
    READ_TOKEN,
    WRITE_TOKEN,
    ServerProcess,
    assert_same_run,
    assert_same_store,
    cli,
    make_run,
    run_files,
    sync_killed,
)
from .team_helpers import BACKENDS, server_of, skip_on_team, team_moto  # noqa: F401 - a fixture


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The embedded server, then a replica of a team server: the client's guarantees hold against both."""
    moto = request.getfixturevalue("team_moto") if request.param == "team" else None
    with server_of(request.param, tmp_path_factory.mktemp("sync-server"), moto) as srv:
        yield srv


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "config"
    monkeypatch.setenv("AMLTRACK_CONFIG_DIR", str(d))
    monkeypatch.delenv("AMLTRACK_TOKEN", raising=False)
    return d


Connect = Callable[..., AmltrackRemote]


@pytest.fixture
def remote() -> Iterator[Connect]:
    """A client of a server (retrying fast); every one is closed when the test ends."""
    opened: list[AmltrackRemote] = []

    def connect(server: ServerProcess, token: str | None = WRITE_TOKEN, **kwargs: Any) -> AmltrackRemote:
        opened.append(AmltrackRemote(server.url, token, **{"backoff": 0.02, **kwargs}))
        return opened[-1]

    yield connect
    for r in opened:
        r.close()


def rich_run(store: Path) -> str:
    """A run with every kind of artifact entry: nested, empty, replaced, removed, large."""
    with amltrack.start_run("rich", store=store, outputs=None, params={"lr": 0.1}, tags={"k": "v"}) as lg:
        for i in range(3000):
            lg.log("loss", 1.0 / (i + 1))
            lg.log("list", [i, i + 0.5])
        lg.log("inf", float("inf"))
        lg.upload("notes/config.txt", "lr=0.1")
        lg.upload("empty.txt", b"")
        lg.upload("replaced.txt", "first")
        lg.upload("big/weights.bin", os.urandom(300_000))
        lg.flush()
        lg.upload("replaced.txt", "second")
        run_id = lg.run_id
    # A path whose latest entry is not stored: the file is gone locally.
    from amltrack._files import Artifacts

    arts = Artifacts(store / "runs" / run_id)
    arts.put("gone.txt", data=b"soon removed", source="upload")
    arts.remove("gone.txt")
    arts.record("gone.txt", "failed", source="upload", reason="removed for the test")
    arts.close()
    return run_id


def test_push_is_byte_for_byte_and_syncing_again_sends_nothing(
    server: ServerProcess, tmp_path: Path, remote: Connect
) -> None:
    local = tmp_path / "local"
    rich = rich_run(local)
    failed = make_run(local, records=50, status="failed")
    running = amltrack.get_logger("live", store=local, outputs=None)
    running.log("x", 1).wait()
    try:
        report = sync(local, remote(server))
        outcomes = {r.id: r.outcome for r in report.runs}
        assert outcomes == {rich: "pushed", failed: "pushed", running.run_id: "skipped"}, report.runs
        assert report.ok and report.bytes > 300_000
        assert_same_store(local, server.store, [rich, failed])
        assert not (server.store / "runs" / running.run_id).exists()
        assert "gone.txt" not in os.listdir(server.store / "runs" / rich / "artifacts")
        # The server's store reads like the local one.
        there = amltrack.Store(server.store)
        assert there.run(rich).status == "completed" and there.run(failed).status == "failed"
        assert there.run(rich).metric("loss") == amltrack.Store(local).run(rich).metric("loss")
        ledger = json.loads(next((local / "runs" / rich / "sync").glob("*.json")).read_text())
        assert ledger["remote"] == server.url and ledger["complete"] is True

        again = sync(local, remote(server))
        assert [r.outcome for r in again.runs if r.id != running.run_id] == ["up_to_date", "up_to_date"]
        assert again.bytes == 0 and all(r.writes == 0 for r in again.runs)
        # Asking the server about every run (not trusting the ledger) finds nothing to send either.
        checked = sync(local, remote(server), all_runs=True, verify=True)
        assert {r.outcome for r in checked.runs if r.id != running.run_id} == {"up_to_date"}
        assert checked.bytes == 0 and checked.ok
        assert all(r.differences == [] for r in checked.runs if r.id != running.run_id)
    finally:
        running.finish()

    out = cli(
        "sync", "--store", str(local), "--to", server.url, "--run", rich, failed, AMLTRACK_TOKEN=WRITE_TOKEN
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("nothing to send; 2 up to date, 0 skipped, 0 failed on http://127.0.0.1:")
    out = cli("history", "list", "--store", str(server.store), "--json")
    assert {rich, failed} <= {r["id"] for r in json.loads(out.stdout)}


KILLS = [
    "after:1:create",  # the run exists, the answer is lost
    "during:3:append",  # half a metrics chunk lands
    "after:2:blob",  # an artifact chunk lands, the answer is lost
    "after:1:commit",  # an artifact is placed, the answer is lost
    "before:1:summary",
    "during:1:finalise",  # run.json written, the run not yet published
]


def test_resume_after_sigkill_of_the_server_at_several_points(tmp_path: Path, remote: Connect) -> None:
    local = tmp_path / "local"
    big = make_run(local, records=20_000, artifacts={"model.bin": os.urandom(400_000), "a/b.txt": b"b" * 10})
    small = make_run(local, records=10, artifacts={"x.txt": b"x"})
    srv = ServerProcess(tmp_path / "remote", tmp_path / "server.log")
    try:
        for kill in KILLS:
            srv.start(kill=kill)
            report = sync(local, remote(srv))
            assert srv.wait_dead() == -9, f"the server did not die at {kill}"
            assert report.failed, kill
            assert "not tried" in report.runs[-1].reason or report.runs[-1].outcome != "pushed"
            # Whatever moment it died at, the store opens, and only finalised runs are visible.
            for run in amltrack.Store(srv.store).runs():
                assert run.status == "completed" and run.info["id"] in (big, small)
            if kill.endswith("finalise"):
                assert not (srv.store / "runs" / big).exists()
                assert (srv.store / ".server" / "incoming" / big / "run.json").exists()
        srv.start()
        report = sync(local, remote(srv))
        assert report.ok, report.runs
        assert_same_store(local, srv.store)
        assert not (srv.store / ".server" / "incoming" / big).exists()
        assert not (srv.store / ".server" / "blobs" / big).exists()
        again = sync(local, remote(srv), all_runs=True, verify=True)
        assert again.ok and again.bytes == 0 and [r.outcome for r in again.runs] == ["up_to_date"] * 2
    finally:
        srv.stop()


class LosesAnswers(httpx.HTTPTransport):
    """Sends every request, but loses the answer to the chosen ones, as a dropped connection would."""

    def __init__(self, lose: set[int]) -> None:
        super().__init__()
        self.lose, self.writes = lose, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method != "GET":
            self.writes += 1
            if self.writes in self.lose:
                response.close()
                raise httpx.ReadError("the answer was lost", request=request)
        return response


def test_lost_answers_are_retried_and_resume_from_the_committed_offset(
    server: ServerProcess, tmp_path: Path, remote: Connect
) -> None:
    local = tmp_path / "local"
    run_id = make_run(local, records=3000, artifacts={"w.bin": os.urandom(150_000)})
    transport = LosesAnswers(lose={1, 2, 4, 6, 9, 12, 13})
    report = sync(local, remote(server, transport=transport))
    assert report.ok, report.runs
    assert transport.writes > report.runs[0].writes  # the lost ones were sent again
    assert_same_run(local / "runs" / run_id, server.store / "runs" / run_id)


def test_resume_after_sigkill_of_the_client(server: ServerProcess, tmp_path: Path, remote: Connect) -> None:
    local = tmp_path / "local"
    run_id = make_run(local, records=10_000, artifacts={"m.bin": os.urandom(200_000)})
    sent = []
    for n in (3, 11):
        out = sync_killed(local, server.url, n, AMLTRACK_TOKEN=WRITE_TOKEN)
        assert out.returncode == -9, (n, out.stdout, out.stderr)
        state = remote(server).state(run_id)
        sent.append(
            state["files"]["metrics.jsonl"]["size"] + sum(a["size"] for a in state["artifacts"].values())
        )
    assert sent == sorted(sent) and sent[0] > 0  # each attempt went on from where the last stopped
    out = cli("sync", "--store", str(local), "--to", server.url, "--json", AMLTRACK_TOKEN=WRITE_TOKEN)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["counts"]["pushed"] == 1 and report["ok"]
    assert_same_run(local / "runs" / run_id, server.store / "runs" / run_id)


class CountsRequests(httpx.HTTPTransport):
    """Passes every request on, and keeps the path of each and the bytes of the bodies sent."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        self.sent += len(request.read())
        return super().handle_request(request)


def test_include_running_pushes_the_new_tail_without_duplicates(
    server: ServerProcess, tmp_path: Path, remote: Connect
) -> None:
    local = tmp_path / "local"
    logger = amltrack.get_logger("long", store=local, outputs=None)
    rid = logger.run_id
    try:
        for i in range(500):
            logger.log("loss", 1 / (i + 1))
        logger.flush()
        assert sync(local, remote(server)).runs[0].outcome == "skipped"
        first = sync(local, remote(server), include_running=True)
        assert first.runs[0].outcome == "pushed" and first.runs[0].status == "running"
        there = amltrack.Store(server.store).run(rid)
        assert there.status == "running" and len(there.metric("loss")) == 500
        before = run_files(server.store / "runs" / rid)
        for i in range(500, 800):
            logger.log("loss", 1 / (i + 1))
        logger.upload("ckpt/latest.txt", "step 800")
        logger.flush()
        wire = CountsRequests()
        second = sync(local, remote(server, transport=wire), include_running=True)
        assert second.runs[0].outcome == "pushed"
        assert len(amltrack.Store(server.store).run(rid).metric("loss")) == 800
        # Only the new data went: the tails of the two JSON Lines files, the new artifact, and
        # run.json and summary.json (each sent whole when it changed; run.json always finalises).
        after = run_files(server.store / "runs" / rid)
        tails = 0
        for name in ("metrics.jsonl", "artifacts.jsonl"):  # the run had no artifacts.jsonl yet
            old, new = before.get(name, b""), after[name]
            assert new.startswith(old) and len(new) > len(old)
            tails += len(new) - len(old)
        new_data = tails + len(b"step 800") + len(after["run.json"])
        new_data += len(after["summary.json"]) if after["summary.json"] != before["summary.json"] else 0
        assert second.runs[0].bytes == wire.sent == new_data
    finally:
        logger.finish()
    final = sync(local, remote(server))
    assert final.runs[0].outcome == "pushed" and final.runs[0].status == "completed"
    assert_same_run(local / "runs" / rid, server.store / "runs" / rid)
    lines = (server.store / "runs" / rid / "metrics.jsonl").read_bytes().splitlines()
    assert len(lines) == len(set(lines)) == 800  # seq makes every record unique: none was sent twice
    assert amltrack.Store(server.store).run(rid).status == "completed"


def test_two_remotes_each_get_the_run_and_a_ledger(
    server: ServerProcess, tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "local"
    run_id = make_run(local, records=100, artifacts={"r.txt": b"r"})
    other = ServerProcess(tmp_path / "other", tmp_path / "other.log").start()
    try:
        remotes = Remotes.load()
        remotes.add("team", server.url, token=WRITE_TOKEN)
        remotes.add("backup", other.url, token="wrong-token-but-env-wins-000")
        remotes.save()
        assert sync(local, "team").runs[0].outcome == "pushed"
        report = sync(local, "backup")
        assert report.runs[0].outcome == "failed" and "401 unauthorized" in report.runs[0].reason
        monkeypatch.setenv("AMLTRACK_TOKEN", WRITE_TOKEN)  # the variable wins over the remote's token
        assert sync(local, "backup").runs[0].outcome == "pushed"
        assert sync(local, "team").runs[0].outcome == "up_to_date"
        for srv in (server, other):
            assert_same_run(local / "runs" / run_id, srv.store / "runs" / run_id)
        ledgers = remotes_of(local / "runs" / run_id)
        assert sorted(e["remote"] for e in ledgers) == sorted([server.url, other.url])
        # The ledger is not part of the run: neither server got it.
        assert not (server.store / "runs" / run_id / "sync").exists()
    finally:
        other.stop()


def test_verify_reports_a_tampered_remote_and_the_next_sync_repairs_it(
    server: ServerProcess, tmp_path: Path, remote: Connect
) -> None:
    skip_on_team(
        server, "it damages the embedded server's files; test_server_team.py damages a team's objects"
    )
    local = tmp_path / "local"
    run_id = make_run(local, records=300, artifacts={"model.bin": b"weights" * 1000, "ok.txt": b"ok"})
    assert sync(local, remote(server)).ok
    there = server.store / "runs" / run_id
    (there / "artifacts" / "model.bin").write_bytes(b"tampered" * 10)
    (there / "artifacts" / "extra.txt").write_bytes(b"not local")
    metrics = bytearray((there / "metrics.jsonl").read_bytes())
    metrics[10:11] = b"7" if metrics[10:11] != b"7" else b"8"
    (there / "metrics.jsonl").write_bytes(bytes(metrics))

    out = cli("sync", "--store", str(local), "--to", server.url, "--verify", AMLTRACK_TOKEN=READ_TOKEN)
    assert out.returncode == 1, out.stdout
    assert f"DIFFERS     {run_id}" in out.stdout
    assert "artifact model.bin differs" in out.stdout
    assert "artifact extra.txt is on the remote but not stored locally" in out.stdout
    assert "metrics.jsonl differs from the local file in its first" in out.stdout
    assert "1 differ" in out.stdout.splitlines()[-1]
    (entry,) = remotes_of(local / "runs" / run_id)  # the ledger is no longer trusted
    assert entry["complete"] is False and entry["recheck"] is True

    (there / "metrics.jsonl").write_bytes((local / "runs" / run_id / "metrics.jsonl").read_bytes())
    repaired = sync(local, remote(server), verify=True)
    assert repaired.ok and repaired.runs[0].outcome == "pushed" and repaired.runs[0].differences == []
    assert_same_run(local / "runs" / run_id, there)


def test_a_difference_verify_finds_is_repaired_by_the_next_sync_and_by_all(
    server: ServerProcess, tmp_path: Path
) -> None:
    skip_on_team(
        server, "it damages the embedded server's files; test_server_team.py damages a team's objects"
    )
    local = tmp_path / "local"
    arts = {"notes/x.txt": b"x" * 100, "model.bin": b"weights" * 1000, "keep.txt": b"keep"}
    run_id = make_run(local, records=300, artifacts=arts)
    here, there = local / "runs" / run_id, server.store / "runs" / run_id
    to = ("--store", str(local), "--to", server.url)

    lost: dict[str, int] = {}

    def sync_(*args: str) -> subprocess.CompletedProcess:
        return cli("sync", *to, *args, AMLTRACK_TOKEN=WRITE_TOKEN)

    def lose_data() -> None:
        """What a server's disk can lose or get wrong: artifact files, and the tail of the JSON Lines
        files (acknowledged appends lost with the power)."""
        (there / "artifacts" / "notes" / "x.txt").unlink()
        (there / "artifacts" / "model.bin").write_bytes(b"WEIGHTS" * 1000)  # same size, other bytes
        for name in ("metrics.jsonl", "artifacts.jsonl"):
            lines = (there / name).read_bytes().splitlines(keepends=True)
            (there / name).write_bytes(b"".join(lines[:-2]))
            lost[name] = len(lines[-1] + lines[-2])

    def assert_found(out: subprocess.CompletedProcess) -> None:
        assert out.returncode == 1, out.stdout + out.stderr
        for diff in (
            "artifact notes/x.txt is missing on the remote",
            "artifact model.bin differs",
            *(f"{name} has {n} bytes not pushed yet" for name, n in lost.items()),
        ):
            assert diff in out.stdout, (diff, out.stdout)

    def assert_repaired_by(out: subprocess.CompletedProcess) -> None:
        assert out.returncode == 0 and out.stdout.startswith(f"pushed      {run_id}"), out.stdout
        checked = cli("sync", *to, "--verify", AMLTRACK_TOKEN=READ_TOKEN)
        assert checked.returncode == 0 and "DIFFERS" not in checked.stdout, checked.stdout
        assert_same_run(here, there)
        (entry,) = remotes_of(here)
        assert entry["complete"] is True and "recheck" not in entry

    assert sync_().returncode == 0
    lose_data()
    assert_found(cli("sync", *to, "--verify", AMLTRACK_TOKEN=READ_TOKEN))
    assert_repaired_by(sync_())

    # --dry-run sends nothing, but the difference it found reaches the next sync all the same.
    lose_data()
    assert_found(cli("sync", *to, "--dry-run", "--verify", AMLTRACK_TOKEN=READ_TOKEN))
    assert_repaired_by(sync_())

    # Without --verify the ledger answers for the run; --all asks the server, and repairs it.
    lose_data()
    assert sync_().stdout.startswith("nothing to send")
    assert_repaired_by(sync_("--all"))


def test_one_bad_run_is_reported_and_the_others_still_go(server: ServerProcess, tmp_path: Path) -> None:
    local = tmp_path / "local"
    good1 = make_run(local, records=20)
    corrupt = make_run(local, records=20)
    refused = make_run(local, records=20)
    good2 = make_run(local, records=20)
    (local / "runs" / corrupt / "run.json").write_text("{ this is not json")
    # A run.json that names another run: the server refuses to finalise it.
    info = json.loads((local / "runs" / refused / "run.json").read_text())
    info["id"] = good1
    (local / "runs" / refused / "run.json").write_text(json.dumps(info))

    out = cli("sync", "--store", str(local), "--to", server.url, "--json", AMLTRACK_TOKEN=WRITE_TOKEN)
    assert out.returncode == 1
    report = json.loads(out.stdout)
    by_id = {r["id"]: r for r in report["runs"]}
    assert by_id[good1]["outcome"] == by_id[good2]["outcome"] == "pushed"
    assert by_id[corrupt]["outcome"] == "failed" and "not valid JSON" in by_id[corrupt]["reason"]
    assert by_id[refused]["outcome"] == "failed" and "400 invalid_json" in by_id[refused]["reason"]
    assert report["counts"] == {"pushed": 2, "up_to_date": 0, "would_push": 0, "skipped": 0, "failed": 2}
    assert not report["ok"]
    # docs/sync.md shows this shape.
    doc = Path(__file__).resolve().parent.parent / "docs" / "sync.md"
    (documented,) = [
        json.loads(b) for b in re.findall(r"```json\n(.*?)```", doc.read_text(), re.S) if '"counts"' in b
    ]
    assert sorted(documented) == sorted(report) and sorted(documented["counts"]) == sorted(report["counts"])
    assert sorted(documented["runs"][0]) == sorted(report["runs"][0])
    for rid in (good1, good2):
        assert_same_run(local / "runs" / rid, server.store / "runs" / rid)
    assert not (server.store / "runs" / refused).exists()

    out = cli("sync", "--store", str(local), "--to", server.url, AMLTRACK_TOKEN=WRITE_TOKEN)
    assert out.returncode == 1
    assert f"FAILED      {corrupt}" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("0 pushed (0 B); 2 up to date, 0 skipped, 2 failed on ")


def test_a_refused_token_stops_the_sync_with_one_line(
    server: ServerProcess, tmp_path: Path, remote: Connect
) -> None:
    local = tmp_path / "local"
    ids = [make_run(local, records=5) for _ in range(3)]
    for token, code, says in (
        (None, "401 unauthorized", "it needs a token, and none was sent"),
        ("wrong-token-0123456789", "401 unauthorized", "it does not know the token sent"),
        (READ_TOKEN, "403 forbidden", "the token sent may only read"),
    ):
        expected = f"{server.url} refused the request ({code}): {says}; set AMLTRACK_TOKEN"
        env = {"AMLTRACK_TOKEN": token} if token else {}
        out = cli("sync", "--store", str(local), "--to", server.url, **env)
        assert out.returncode == 1 and out.stderr == "", out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == 3, out.stdout
        assert lines[0].startswith(f"FAILED      {ids[0]}  completed  {expected}"), lines[0]
        assert lines[1] == f"not tried   2 more runs: {server.url} refused the request ({code})"
        assert lines[2].startswith("0 pushed (0 B); 0 up to date, 0 skipped, 3 failed on ")
        assert out.stdout.count("AMLTRACK_TOKEN") == 1, out.stdout

        # No request names a run after the first: they were not tried.
        transport = CountsRequests()
        report = sync(local, remote(server, token, transport=transport))
        assert [r.outcome for r in report.runs] == ["failed"] * 3
        assert report.stopped == report.runs[0].reason and expected in report.stopped
        assert all(r.reason.startswith("not tried: ") for r in report.runs[1:])
        assert not [p for p in transport.paths if ids[1] in p or ids[2] in p], transport.paths
    assert all(remote(server).state(rid) is None for rid in ids)


def test_a_url_that_is_not_an_amltrack_server_stops_the_sync(tmp_path: Path) -> None:
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    local = tmp_path / "local"
    ids = [make_run(local, records=5) for _ in range(3)]
    (tmp_path / "www").mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(tmp_path / "www"))
    )
    thread = threading.Thread(target=httpd.serve_forever, name="test-http")
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        out = cli("sync", "--store", str(local), "--to", url, "--json", AMLTRACK_TOKEN=WRITE_TOKEN)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
    assert out.returncode == 1 and out.stderr == "", out.stderr
    report = json.loads(out.stdout)
    assert report["stopped"].startswith(f"{url} is not an amltrack server (GET /v1/health answered 404 ")
    assert "check the URL" in report["stopped"]
    assert [r["reason"] for r in report["runs"]] == [report["stopped"]] + [
        f"not tried: {url} cannot be used (see the first failed run)"
    ] * 2
    assert [r["id"] for r in report["runs"]] == ids


def test_dry_run_sends_nothing(server: ServerProcess, tmp_path: Path, remote: Connect) -> None:
    local = tmp_path / "local"
    run_id = make_run(local, records=100, artifacts={"f.txt": b"12345"})
    out = cli("sync", "--store", str(local), "--to", server.url, "--dry-run", AMLTRACK_TOKEN=READ_TOKEN)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"would push  {run_id}  completed")
    assert out.stdout.splitlines()[-1].startswith("dry run, nothing sent: 1 to push (")
    assert remote(server).state(run_id) is None
    assert not (local / "runs" / run_id / "sync").exists()
    size = sum(len(v) for v in run_files(local / "runs" / run_id).values())
    report = sync(local, remote(server), dry_run=True)
    assert report.runs[0].bytes == size


def test_unreachable_remote_fails_every_run_quickly(tmp_path: Path, remote: Connect) -> None:
    local = tmp_path / "local"
    make_run(local, records=5)
    make_run(local, records=5)
    gone = ServerProcess(tmp_path / "gone", tmp_path / "gone.log").start()
    gone.stop()
    report = sync(local, remote(gone, retries=1, backoff=0.01))
    assert [r.outcome for r in report.runs] == ["failed", "failed"]
    assert "cannot reach" in report.runs[0].reason and "not tried" in report.runs[1].reason


def test_remote_commands(config: Path) -> None:
    env = {"AMLTRACK_CONFIG_DIR": str(config)}
    assert cli("remote", "list", **env).stdout.startswith("no remotes")
    out = cli("remote", "add", "team", "http://127.0.0.1:9/", "--token", "secret-token-value-1234", **env)
    assert out.returncode == 0 and out.stdout.strip() == "remote team -> http://127.0.0.1:9 (default)"
    assert cli("remote", "add", "backup", "https://backup.example.org", **env).returncode == 0
    assert stat.S_IMODE((config / "remotes.json").stat().st_mode) == 0o600
    rows = json.loads(cli("remote", "list", "--json", **env).stdout)
    assert rows == [
        {
            "name": "backup",
            "url": "https://backup.example.org",
            "kind": "amltrack",
            "default": False,
            "token": False,
        },
        {"name": "team", "url": "http://127.0.0.1:9", "kind": "amltrack", "default": True, "token": True},
    ]
    assert "secret-token-value" not in cli("remote", "list", **env).stdout
    assert cli("remote", "default", "backup", **env).returncode == 0
    assert Remotes.load(config / "remotes.json").resolve(None).name == "backup"
    assert (
        cli("remote", "remove", "backup", **env).stdout.strip()
        == "removed remote backup; the default is now team"
    )
    bad = cli("remote", "add", "x", "ftp://nope", **env)
    assert bad.returncode == 1 and bad.stderr.startswith("amltrack: remote URL 'ftp://nope' is not an http")
    out = cli("sync", "--to", "nosuch", "--store", str(config / "s"), **env)
    assert out.returncode == 1 and "no remote named 'nosuch'" in out.stderr
    out = cli("remote", "remove", "team", **env)
    out = cli("sync", "--store", str(config / "s"), **env)
    assert out.returncode == 1 and "no default remote" in out.stderr


def test_two_syncs_at_once_take_turns_and_send_everything_once(tmp_path: Path) -> None:
    local = tmp_path / "local"
    ids = [make_run(local, records=2000, artifacts={"w.bin": os.urandom(100_000)}) for _ in range(4)]
    one_push = sum(len(b) for rid in ids for b in run_files(local / "runs" / rid).values())
    srv = ServerProcess(tmp_path / "remote", tmp_path / "server.log").start()
    procs: list[subprocess.Popen] = []
    try:
        # Both syncs start while the first run is locked, as by a third sync: each waits on it,
        # says so, and from then on they race over the same runs.
        key = ledger.remote_key("amltrack", srv.url)
        errs = [tmp_path / f"sync{i}.err" for i in range(2)]
        with ledger.locked(local / "runs" / ids[0], key):
            for err in errs:
                with open(err, "w") as f:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "amltrack", "sync", "--store", str(local)]
                            + ["--to", srv.url, "--json"],
                            stdout=subprocess.PIPE,
                            stderr=f,
                            text=True,
                            env=child_env(AMLTRACK_TOKEN=WRITE_TOKEN),
                        )
                    )
            wait_until(lambda: all("waiting for it" in e.read_text() for e in errs), 60, "both syncs to wait")
        reports = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, (out, [e.read_text() for e in errs])
            reports.append(json.loads(out))
        for e in errs:
            assert e.read_text() == (
                f"amltrack: another sync is pushing run {ids[0]} to this remote; waiting for it (up to 60 s)\n"
            )
        # Each run was pushed by one of them, and found up to date by the other.
        for rid in ids:
            outcomes = sorted(r["outcome"] for rep in reports for r in rep["runs"] if r["id"] == rid)
            assert outcomes == ["pushed", "up_to_date"], (rid, outcomes)
        assert sum(rep["bytes"] for rep in reports) == one_push
        assert_same_store(local, srv.store)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        srv.stop()


class Unavailable(httpx.HTTPTransport):
    """Answers 503 to the first ``times`` write requests without passing them on, as a proxy does
    while the server behind it restarts (with ``retry_after``, as a team server's replica does while
    its database is away); then passes everything on to the real server."""

    def __init__(self, times: int, retry_after: str | None = None) -> None:
        super().__init__()
        self.left = self.times = times
        self.retry_after = retry_after
        self.tries: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            self.tries.append(f"{request.method} {request.url.path}")
            if self.left:
                self.left -= 1
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return httpx.Response(503, text="Service Unavailable", headers=headers, request=request)
        return super().handle_request(request)


def test_a_503_is_retried_after_growing_jittered_pauses(
    server: ServerProcess, tmp_path: Path, remote: Connect
) -> None:
    local = tmp_path / "local"
    run_id = make_run(local, records=50)
    pauses: list[float] = []
    transport = Unavailable(times=2)
    client = remote(server, transport=transport, backoff=0.2, sleep=pauses.append)
    report = sync(local, client)
    assert report.ok, report.runs
    assert transport.tries[:3] == [f"PUT /v1/runs/{run_id}"] * 3  # the create, refused twice, then sent
    assert_same_run(local / "runs" / run_id, server.store / "runs" / run_id)
    # Back-off x3 with equal jitter: each pause in the upper half of its step, so they grow...
    assert len(pauses) == 2 and 0.1 <= pauses[0] <= 0.2 + 1e-9 and 0.3 <= pauses[1] <= 0.6 + 1e-9, pauses
    # ...and differ from one client (or try) to the next.
    assert len({client.delay(0) for _ in range(20)}) == 20
    assert max(client.delay(20) for _ in range(5)) <= 30.0  # bounded


def test_a_503_with_retry_after_is_retried_after_the_seconds_it_says(
    server: ServerProcess, tmp_path: Path, remote: Connect
) -> None:
    local = tmp_path / "local"
    run_id = make_run(local, records=50)
    pauses: list[float] = []
    client = remote(server, transport=Unavailable(times=2, retry_after="1.5"), sleep=pauses.append)
    assert sync(local, client).ok
    assert pauses == [1.5, 1.5]
    assert_same_run(local / "runs" / run_id, server.store / "runs" / run_id)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_on_a_terminal(*args: str, timeout: float = 60, **env: str) -> tuple[int, str, str]:
    """``python -m amltrack ARGS`` with stderr on a pseudo-terminal (200 columns): exit code, stdout,
    and what the terminal showed, without escape sequences."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "amltrack", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=child_env(TERM="xterm-256color", **env),
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the process closed the terminal (it exited)
                break
            if not data:
                break
            shown += data
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out.decode(), ANSI.sub("", shown.decode(errors="replace")).replace("\r", "\n")


def test_progress_bars_on_a_terminal_and_quiet_on_a_pipe(server: ServerProcess, tmp_path: Path) -> None:
    local = tmp_path / "local"
    ids = [make_run(local, records=1500, artifacts={"w.bin": os.urandom(200_000)}) for _ in range(2)]
    records = [len((local / "runs" / rid / "metrics.jsonl").read_bytes().splitlines()) for rid in ids]
    sizes = [sum(len(b) for b in run_files(local / "runs" / rid).values()) for rid in ids]
    code, out, shown = run_on_a_terminal(
        "sync", "--store", str(local), "--to", server.url, AMLTRACK_TOKEN=WRITE_TOKEN
    )
    assert code == 0, shown
    assert out.splitlines()[-1].startswith("2 pushed ("), out
    # The overall bar: runs done of all, and records and bytes sent in all.
    assert re.search(r"overall .*0/2 runs, 0 records, 0 B sent", shown), shown
    total = f"{sum(records):,} records, {human_bytes(sum(sizes))} sent"
    assert re.search(rf"overall .*2/2 runs, {total}", shown), shown
    # A bar per run: its bytes and records of their totals, drawn at least at the start and the end.
    for rid, n, size in zip(ids, records, sizes):
        assert re.search(rf"{rid} .*0 B/{human_bytes(size)}, 0/{n:,} records", shown), shown
        assert re.search(rf"{rid} .*{human_bytes(size)}/{human_bytes(size)}, {n:,}/{n:,} records", shown)

    # On a pipe, nothing but the report: no progress, no escape sequences.
    more = make_run(local, records=1500)
    piped = cli("sync", "--store", str(local), "--to", server.url, AMLTRACK_TOKEN=WRITE_TOKEN)
    assert piped.returncode == 0 and piped.stderr == ""
    assert piped.stdout.startswith(f"pushed      {more}  completed")
    assert "\x1b" not in piped.stdout


def test_a_run_json_or_summary_over_the_servers_limit_fails_that_run_saying_what_to_do(
    tmp_path: Path, remote: Connect
) -> None:
    local = tmp_path / "local"
    ok = make_run(local, records=20)
    with amltrack.start_run("sync", store=local, outputs=None, params={"notes": "n" * 3000}) as lg:
        lg.log("loss", 1.0)
        big_run = lg.run_id
    with amltrack.start_run("sync", store=local, outputs=None) as lg:
        for i in range(60):
            lg.log(f"metric_{i:02d}", i)
        big_summary = lg.run_id
    run_json = (local / "runs" / big_run / "run.json").stat().st_size
    summary = (local / "runs" / big_summary / "summary.json").stat().st_size
    assert run_json > 2048 and summary > 2048
    assert (local / "runs" / big_summary / "run.json").stat().st_size < 2048
    srv = ServerProcess(tmp_path / "remote", tmp_path / "server.log", max_body=2048).start()
    try:
        out = cli("sync", "--store", str(local), "--to", srv.url, AMLTRACK_TOKEN=WRITE_TOKEN)
        assert out.returncode == 1 and out.stderr == ""
        lines = out.stdout.splitlines()
        assert f"pushed      {ok}" in out.stdout
        limit = f"over the request limit of 2048 bytes of {srv.url}, and it cannot be sent in parts"
        assert (
            f"FAILED      {big_run}  completed  run.json of run {big_run} is {run_json} bytes, {limit}; "
            in (out.stdout)
        )
        assert f"summary.json of run {big_summary} is {summary} bytes, {limit}; " in out.stdout
        assert (
            f"raise the server's limit to at least that (amltrack server --max-body {run_json})" in out.stdout
        )
        assert "smaller chunks" not in out.stdout
        assert lines[-1].startswith("1 pushed (") and "2 failed" in lines[-1]
        # Checked before a byte of those runs went; the dry run says so too.
        assert remote(srv).state(big_run) is None and remote(srv).state(big_summary) is None
        dry = sync(local, remote(srv), dry_run=True)
        assert [r.outcome for r in dry.runs if r.id != ok] == ["failed", "failed"]

        # A proxy that takes less than the server announces: the 413 says the same, and names the proxy.
        class AnnouncesMore(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                r = super().handle_request(request)
                if request.url.path == "/v1/health":
                    r.read()
                    body = {**json.loads(r.content), "max_body": 1 << 20}
                    return httpx.Response(200, json=body, request=request)
                return r

        report = sync(local, remote(srv, transport=AnnouncesMore()), runs=[big_run])
        (failed,) = report.runs
        assert failed.outcome == "failed" and not report.stopped
        assert failed.reason == (
            f"{srv.url} refused run.json of run {big_run} ({run_json} bytes) as too large (413), though "
            f"it announces a limit of {1 << 20} bytes: a proxy in front of it may have a lower one; raise "
            f"that limit to at least {run_json} bytes"
        )
    finally:
        srv.stop()


def test_a_resync_with_nothing_to_send_opens_no_connection(server: ServerProcess, tmp_path: Path) -> None:
    # The ledger answers for every run: no request, and not even httpx imported (about 0.2 s of a
    # 100-run re-sync, benchmarks/bench_sync.py).
    local = tmp_path / "local"
    make_run(local, records=20)
    env = {"AMLTRACK_TOKEN": WRITE_TOKEN}
    assert cli("sync", "--to", server.url, "--store", str(local), **env).returncode == 0
    code = (
        "import sys, json; from amltrack.sync import sync; "
        f"r = sync({str(local)!r}, {server.url!r}); "
        "print(json.dumps([r.counts(), 'httpx' in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(**env), timeout=60
    )
    counts, imported = json.loads(out.stdout)
    assert counts["up_to_date"] == 1 and counts["pushed"] == 0, counts
    assert imported is False
    # And a run that needs pushing opens the remote then, as before.
    make_run(local, records=20)
    again = cli("sync", "--to", server.url, "--store", str(local), "--json", **env)
    assert again.returncode == 0 and json.loads(again.stdout)["counts"]["pushed"] == 1


def test_include_running_pushes_a_run_that_has_logged_nothing_yet(
    server: ServerProcess, tmp_path: Path, remote: Connect
) -> None:
    # The soak (benchmarks/soak.py) met it: a sync that came between a run's creation and its
    # first batch failed the run, because metrics.jsonl did not exist yet.
    local = tmp_path / "local"
    logger = amltrack.get_logger("fresh", store=local, outputs=None)
    try:
        assert not (logger.run_dir / "metrics.jsonl").exists()
        report = sync(local, remote(server), include_running=True)
        assert report.ok and report.runs[0].outcome == "pushed", report.runs[0].reason
        logger.log("loss", 0.5).wait()
    finally:
        logger.finish()
    assert sync(local, remote(server)).runs[0].outcome == "pushed"
    assert_same_run(local / "runs" / logger.run_id, server.store / "runs" / logger.run_id)


def test_a_run_json_holding_a_secret_is_not_sent_unless_allowed(
    server: ServerProcess, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    clean = make_run(local, records=5)
    edited = make_run(local, records=5)
    path = local / "runs" / edited / "run.json"
    info = json.loads(path.read_text())
    token = "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f"
    info["argv"] += ["--api-key", "k-123", token]  # as an older amltrack, or a hand, left it
    info["params"]["db"] = "postgresql://ada:pw@db/x"
    path.write_text(json.dumps(info))

    for extra in (("--dry-run",), ()):
        out = cli(
            "sync", "--store", str(local), "--to", server.url, "--json", *extra, AMLTRACK_TOKEN=WRITE_TOKEN
        )
        assert out.returncode == 1, out.stderr
        by_id = {r["id"]: r for r in json.loads(out.stdout)["runs"]}
        assert by_id[clean]["outcome"] == ("would_push" if extra else "pushed")
        assert by_id[edited]["outcome"] == "failed"
        reason = by_id[edited]["reason"]
        assert "holds 3 value(s) that look like secrets (argv: 2, params: 1)" in reason, reason
        assert "--allow-secrets" in reason and str(path) in reason
        assert token not in out.stdout and "k-123" not in out.stdout  # the report names no value
    assert not (server.store / "runs" / edited).exists()
    assert not (local / "runs" / edited / "sync").exists()  # nothing recorded as sent

    out = cli(
        "sync", "--store", str(local), "--to", server.url, "--allow-secrets", AMLTRACK_TOKEN=WRITE_TOKEN
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert_same_run(local / "runs" / edited, server.store / "runs" / edited)
    assert token in (server.store / "runs" / edited / "run.json").read_text()


def test_extra_patterns_in_the_variable_are_checked_before_sending(
    server: ServerProcess, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    with amltrack.start_run("sync", store=local, outputs=None, tags={"ticket": "corp_deadbeef"}) as lg:
        rid = lg.run_id
    env = {"AMLTRACK_TOKEN": WRITE_TOKEN, "AMLTRACK_REDACT": r"corp_\w+"}
    out = cli("sync", "--store", str(local), "--to", server.url, "--dry-run", "--json", **env)
    assert out.returncode == 1
    (run,) = json.loads(out.stdout)["runs"]
    assert run["id"] == rid and "(tags: 1)" in run["reason"]
    # The variable cannot turn the check off: --allow-secrets does.
    out = cli(
        "sync", "--store", str(local), "--to", server.url, "--dry-run", **{**env, "AMLTRACK_REDACT": "off"}
    )
    assert out.returncode == 0, out.stdout
