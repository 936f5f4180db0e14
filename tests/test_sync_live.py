"""Syncing a running run whose job rewrites its artifacts meanwhile, against a real ``amltrack server``:
each push sends one consistent version of each file, and a file that cannot go keeps nothing else back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import amltrack
from amltrack.sync import AmltrackRemote, sync
from amltrack.sync import _ledger as ledger

from .conftest import child_env, wait_until
from .sync_helpers import WRITE_TOKEN, ServerProcess, assert_same_run, cli, run_files, running_server
from .team_helpers import BACKENDS, server_of, team_moto  # noqa: F401 - a fixture


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The embedded server, then a replica of a team server."""
    moto = request.getfixturevalue("team_moto") if request.param == "team" else None
    with server_of(request.param, tmp_path_factory.mktemp("live-server"), moto) as srv:
        yield srv


class Meddles(httpx.HTTPTransport):
    """A real transport that runs ``act`` before it sends each request ``when`` picks: the moment a
    job touches a file is made certain instead of hoped for."""

    def __init__(self, when: Callable[[httpx.Request], bool], act: Callable[[], None]) -> None:
        super().__init__()
        self.when, self.act, self.times = when, act, 0
        self.seen: list[str] = []  # "METHOD /path" of every request

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if self.when(request):
            self.times += 1
            self.act()
        return super().handle_request(request)


def first(pred: Callable[[httpx.Request], bool]) -> Callable[[httpx.Request], bool]:
    done = False

    def once(request: httpx.Request) -> bool:
        nonlocal done
        if done or not pred(request):
            return False
        done = True
        return True

    return once


def is_metrics_append(r: httpx.Request) -> bool:
    return "/append/metrics.jsonl" in r.url.path


def is_chunk(r: httpx.Request) -> bool:
    return r.method == "POST" and "/blobs/" in r.url.path


def connect(server: ServerProcess, transport: httpx.BaseTransport | None = None) -> AmltrackRemote:
    return AmltrackRemote(server.url, WRITE_TOKEN, backoff=0.02, transport=transport)


def rewrite_in_place(path: Path) -> Callable[[], None]:
    """What a job that rewrites a file in place (no new file renamed over it) does to it."""
    n = 0

    def act() -> None:
        nonlocal n
        n += 1
        with open(path, "r+b") as f:
            f.seek(-16, os.SEEK_END)  # past the chunk being sent: a later chunk reads it
            f.write(b"rewritten %05d\n" % n)  # 16 bytes: the same size, other content

    return act


def test_a_file_replaced_after_the_listing_is_sent_as_its_new_version(
    server: ServerProcess, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    logger = amltrack.get_logger("live", store=local, outputs=None)
    rid = logger.run_id
    try:
        logger.log("loss", 1.0)
        logger.upload("latest.txt", b"version 1\n" * 10_000)
        logger.flush()

        def replace() -> None:  # as the outputs mirror does: a new file renamed over the old one
            logger.upload("latest.txt", b"version 2, longer\n" * 10_000)
            logger.flush()

        # Listed (and hashed) as version 1; replaced before its upload starts.
        wire = Meddles(first(is_metrics_append), replace)
        with connect(server, wire) as remote:
            report = sync(local, remote, include_running=True)
        assert wire.times == 1
        assert report.ok, report.runs[0].reason
        there = server.store / "runs" / rid / "artifacts" / "latest.txt"
        assert there.read_bytes() == b"version 2, longer\n" * 10_000
        # The ledger names what was sent, so the next sync does not send it again.
        entry = ledger.read(local / "runs" / rid, ledger.remote_key("amltrack", server.url))
        assert entry["artifacts"]["latest.txt"]["size"] == there.stat().st_size
        with connect(server) as remote:
            again = sync(local, remote, include_running=True, verify=True)
        assert again.ok and again.runs[0].differences == []
    finally:
        logger.finish()


def test_a_file_rewritten_in_place_under_its_upload_is_sent_again_with_its_new_content(
    server: ServerProcess, tmp_path: Path, live: Callable[[dict[str, bytes]], str]
) -> None:
    local = tmp_path / "local"
    rid = live({"latest.bin": os.urandom(300_000)})
    path = local / "runs" / rid / "artifacts" / "latest.bin"
    wire = Meddles(first(is_chunk), rewrite_in_place(path))
    with connect(server, wire) as remote:
        report = sync(local, remote, include_running=True)
    assert wire.times == 1
    assert report.ok, report.runs[0].reason
    there = server.store / "runs" / rid / "artifacts" / "latest.bin"
    assert there.read_bytes() == path.read_bytes() and path.read_bytes().endswith(b"rewritten 00001\n")


def test_an_artifact_that_cannot_be_sent_keeps_back_nothing_else(
    server: ServerProcess, tmp_path: Path, live: Callable[[dict[str, bytes]], str]
) -> None:
    local = tmp_path / "local"
    rid = live({"a_stable.txt": b"stable\n", "latest.bin": os.urandom(300_000)})
    run_dir = local / "runs" / rid
    wire = Meddles(is_chunk, rewrite_in_place(run_dir / "artifacts" / "latest.bin"))  # under every upload
    with connect(server, wire) as remote:
        report = sync(local, remote, include_running=True)
    out = report.runs[0]
    assert out.outcome == "failed"
    assert out.reason is not None
    assert f"artifact 'latest.bin' of run {rid} was not sent: " in out.reason
    assert "changed while it was sent, 3 times in a row" in out.reason
    # Everything else went, and the report says how much.
    there = run_files(server.store / "runs" / rid)
    here = run_files(run_dir)
    assert set(here) - set(there) == {"artifacts/latest.bin"}
    for name in there:
        assert there[name] == here[name], name
    assert {"metrics.jsonl", "artifacts.jsonl", "artifacts/a_stable.txt"} <= set(there)
    assert amltrack.Store(server.store).run(rid).status == "running"  # published, not missing
    sent = sum(len(data) for name, data in there.items())
    assert out.bytes == sent + 3 * 300_000  # with the three tries of latest.bin
    assert f"the rest of the run was pushed ({out.bytes} bytes)" in out.reason
    # Not recorded as complete: once the file holds still, the next sync sends it.
    with connect(server) as remote:
        again = sync(local, remote, include_running=True, verify=True)
    assert again.ok, again.runs[0]
    assert_same_run(run_dir, server.store / "runs" / rid)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[[dict[str, bytes]], str]]:
    """Starts a run in tmp_path/local with metrics and these artifacts, left running (its logger
    open) until the test ends."""
    loggers: list[amltrack.Logger] = []

    def start(artifacts: dict[str, bytes]) -> str:
        logger = amltrack.get_logger("live", store=tmp_path / "local", outputs=None)
        loggers.append(logger)
        for i in range(100):
            logger.log("loss", 1 / (i + 1))
        for path, data in artifacts.items():
            logger.upload(path, data)
        logger.flush()
        return logger.run_id

    yield start
    for logger in loggers:
        logger.finish()


# A job that replaces its "latest" checkpoint every 0.5 s and its "best" one every 2 s (logger.upload),
# and rewrites a plot in outputs/ every 1.5 s (the outputs mirror stores each version), as training
# scripts do, until the stop file appears. The big "best" is sent before "latest" (paths go in order),
# so "latest" is often replaced between a sync's listing and its upload.
WRITER = """
import os, sys, time
from pathlib import Path
import amltrack

outputs, stop = Path(sys.argv[1]), Path(sys.argv[2])
logger = amltrack.get_logger("live", store=sys.argv[3], outputs=str(outputs))
print(logger.run_id, flush=True)
i = 0
while not stop.exists():
    i += 1
    logger.upload("checkpoints/latest.bin", b"step %d " % i + os.urandom(200_000 + 997 * (i % 50)))
    if i % 4 == 1:
        logger.upload("checkpoints/best.bin", b"step %d " % i + os.urandom(1_500_000))
    if i % 3 == 1:
        (outputs / "plot.txt").write_bytes(b"plot %d " % i + os.urandom(100_000 + 991 * (i % 7)))
    logger.log("step", i)
    time.sleep(0.5)
logger.finish()
"""


def test_twenty_live_syncs_while_a_job_rewrites_its_files_all_succeed(tmp_path: Path) -> None:
    # Small chunks: a push makes many requests, as a big checkpoint over a slow link would.
    with running_server(tmp_path / "server", max_body=16 * 1024) as server:
        live_syncs(server, tmp_path)


def live_syncs(server: ServerProcess, tmp_path: Path) -> None:
    local, outputs, stop = tmp_path / "local", tmp_path / "outputs", tmp_path / "stop"
    outputs.mkdir()
    push = ("sync", "--store", str(local), "--to", server.url)
    job = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(outputs), str(stop), str(local)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert job.stdout is not None
        rid = job.stdout.readline().strip()
        artifacts = local / "runs" / rid / "artifacts"
        wait_until(lambda: (artifacts / "outputs" / "plot.txt").exists(), 60, "the mirror to store plot.txt")
        there = server.store / "runs" / rid / "artifacts" / "checkpoints" / "latest.bin"
        versions = set()
        for i in range(20):
            out = cli(*push, "--include-running", AMLTRACK_TOKEN=WRITE_TOKEN)
            assert out.returncode == 0, f"sync {i + 1} of 20 failed:\n{out.stdout}{out.stderr}"
            versions.add(there.read_bytes()[:12])
        assert len(versions) > 1  # the job did replace the file while the syncs ran
    finally:
        stop.touch()
        assert job.wait(60) == 0
        job.stdout.close()
    out = cli(*push, "--verify", AMLTRACK_TOKEN=WRITE_TOKEN)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_same_run(local / "runs" / rid, server.store / "runs" / rid)
    assert amltrack.Store(server.store).run(rid).status == "completed"
