"""Replicas of a team server under faults (issue 21, "What must hold"): real ``amltrack server
--database --objects`` processes over a real PostgreSQL and a real moto S3 server. A push that a
SIGKILLed replica cut off ends on another replica byte for byte; appends, uploads and a finalise
racing through two replicas are decided by the database; a crash leaves at most an object no row
names; a database or bucket that goes away mid-push costs 503s and retries, nothing else; the web
UI of any replica shows the team's runs; ``--verify`` finds what a damaged bucket or database lost.

Faults are real: SIGKILL at the write points of ``tests/scripts/faulty_server.py``,
``pg_terminate_backend()`` of a replica's connections, and TCP forwarders between a replica and
PostgreSQL or the bucket that the test cuts (every connection closed, each new one closed as soon
as it comes) and restores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from amltrack.server._database import POOL_SIZE
from amltrack.sync import AmltrackRemote, sync

from .bucket_helpers import MotoServer
from .conftest import wait_until
from .sync_helpers import READ_TOKEN, WRITE_TOKEN, assert_same_store, cli, make_run
from .team_helpers import ReplicaProcess, Team, team_moto, team_of  # noqa: F401 - a fixture

# ----------------------------------------------------------------- fixtures and helpers


class Replica(ReplicaProcess):
    """A replica that may reach the database or the bucket through another address (a proxy)."""

    def __init__(
        self, team: Team, log: Path, *, database: str | None = None, endpoint: str | None = None
    ) -> None:
        super().__init__(team, log)
        self.database = database or team.database
        self.endpoint = endpoint or team.moto.endpoint

    def where(self) -> list[str]:
        return [
            "--database",
            self.database,
            "--objects",
            self.team.objects,
            "--objects-endpoint",
            self.endpoint,
        ]


@pytest.fixture(scope="module")
def team(team_moto: MotoServer) -> Iterator[Team]:  # noqa: F811 - the fixture of that name
    """One team (database and bucket) for the module; every test pushes runs of its own to it."""
    with team_of(team_moto) as t:
        yield t


@pytest.fixture(scope="module")
def replicas(team: Team, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas of the team, A and B, for the module."""
    d = tmp_path_factory.mktemp("replicas")
    started: list[Replica] = []
    try:
        for name in ("a", "b"):
            started.append(Replica(team, d / f"{name}.log").start())
        yield started[0], started[1]
    finally:
        for r in started:
            r.stop()
        for r in started:
            assert "Traceback" not in r.log.read_text(), r.log.read_text()


@pytest.fixture
def connect() -> Iterator[Any]:
    """Clients of replicas (fast retries unless told otherwise); closed when the test ends."""
    opened: list[AmltrackRemote] = []

    def make(url: str, token: str = WRITE_TOKEN, **kwargs: Any) -> AmltrackRemote:
        opened.append(AmltrackRemote(url, token, **{"backoff": 0.02, **kwargs}))
        return opened[-1]

    yield make
    for r in opened:
        r.close()


def sql(team: Team, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(team.database, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def bucket_keys(team: Team) -> set[str]:
    s3 = team.moto.client()
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=team.bucket, Prefix="team/"):
        keys |= {o["Key"] for o in page.get("Contents") or []}
    return keys


def named_keys(team: Team) -> set[str]:
    """Every key a row of the database names."""
    rows = sql(
        team,
        "SELECT key FROM pieces UNION ALL SELECT key FROM upload_parts UNION ALL SELECT key FROM blob_parts",
    )
    return {r[0] for r in rows}


def orphans(team: Team) -> set[str]:
    return bucket_keys(team) - named_keys(team)


def published_keys(team: Team, run_id: str | None = None) -> set[str]:
    """The keys a published run (or every published run) names: its pieces and its artifacts' parts."""
    where = "r.published" + (" AND r.id = %s" if run_id else "")
    params = (run_id, run_id) if run_id else ()
    rows = sql(
        team,
        f"SELECT p.key FROM pieces p JOIN runs r ON r.id = p.run_id WHERE {where} "  # noqa: S608 - fixed text
        "UNION SELECT b.key FROM blob_parts b JOIN artifacts a ON a.sha256 = b.sha256 "
        f"JOIN runs r ON r.id = a.run_id WHERE {where}",
        params,
    )
    return {r[0] for r in rows}


def assert_published_runs_name_only_objects_there(team: Team, run_id: str | None = None) -> None:
    s3 = team.moto.client()
    keys = published_keys(team, run_id)
    for key in keys:
        s3.head_object(Bucket=team.bucket, Key=key)  # raises (404) for a missing one
    if run_id is not None:
        assert keys, f"run {run_id} names no object"


def get_object(team: Team, key: str) -> bytes:
    return bytes(team.moto.client().get_object(Bucket=team.bucket, Key=key)["Body"].read())


class Records(httpx.HTTPTransport):
    """Passes every request on and keeps each answer's method, path, status and Retry-After."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[str, str, int, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        r = super().handle_request(request)
        self.answers.append((request.method, request.url.path, r.status_code, r.headers.get("retry-after")))
        return r

    def count(self, status: int, *, writes: bool = False) -> int:
        return sum(1 for m, _, s, _ in self.answers if s == status and (m != "GET" or not writes))


class Proxy:
    """A TCP forwarder on 127.0.0.1 in front of ``upstream`` that a test cuts: ``cut()`` closes every
    open connection and closes new ones as soon as they come, until ``restore()``; a real network
    fault between a replica and its database or bucket."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.cuts = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.refused = 0

    def __enter__(self) -> Proxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.cut()
        for t in list(self._threads):
            t.join(30)
        self._listener.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name="test-proxy", daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            if self.cuts.is_set():
                self.refused += 1
                conn.close()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=10)
                up.settimeout(None)
            except OSError:
                conn.close()
                continue
            conn.settimeout(None)
            with self._lock:
                self._open |= {conn, up}
            done = threading.Barrier(2, action=lambda c=conn, u=up: self._close(c, u))
            self._spawn(self._pump, conn, up, done)
            self._spawn(self._pump, up, conn, done)

    def _pump(self, src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):  # the other direction ends too
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        done.wait()

    def _close(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self._open.discard(s)
                s.close()

    def cut(self) -> None:
        self.cuts.set()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.cuts.clear()


def pushed_in_background(local: Path, remote: AmltrackRemote) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def push() -> None:
        try:
            out.append(sync(local, remote))
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            out.append(e)

    t = threading.Thread(target=push, name="test-push")
    t.start()
    return t, out


def finished(t: threading.Thread, out: list[Any]) -> Any:
    t.join(180)
    assert not t.is_alive(), "the push did not finish"
    (report,) = out
    if isinstance(report, BaseException):
        raise report
    return report


def assert_exact(team: Team, local: Path, run_ids: list[str]) -> None:
    """The team's published copy of the runs is byte for byte the local runs, and names only objects
    that are in the bucket; no record was sent twice (seq makes each metrics line unique)."""
    copy = team.published_copy()
    assert_same_store(local, copy, run_ids)
    for rid in run_ids:
        lines = (copy / "runs" / rid / "metrics.jsonl").read_bytes().splitlines()
        assert len(lines) == len(set(lines))
        assert_published_runs_name_only_objects_there(team, rid)


def assert_verified(local: Path, remote: AmltrackRemote) -> None:
    again = sync(local, remote, all_runs=True, verify=True)
    assert again.ok and again.bytes == 0, again.runs
    assert {r.outcome for r in again.runs} == {"up_to_date"}, again.runs
    assert all(r.differences == [] for r in again.runs), again.runs


# ----------------------------------------------------------------- 1. replicas are interchangeable

# Each write kind at each stage the faulty server knows: "during" an append or an upload is after
# its object is in the bucket and before the row that names it commits.
KILLS = [
    "before:3:append",
    "during:2:append",
    "after:4:append",
    "during:1:blob",
    "after:2:blob",
    "during:1:commit",
    "during:1:finalise",
    "after:1:finalise",
]


@pytest.mark.parametrize("kill", KILLS)
def test_a_push_cut_off_by_a_sigkilled_replica_ends_byte_identical_on_another(
    kill: str, team: Team, replicas: tuple[Replica, Replica], tmp_path: Path, connect: Any
) -> None:
    _, b = replicas
    local = tmp_path / "local"
    rid = make_run(local, records=4000, artifacts={"model.bin": os.urandom(200_000), "a/b.txt": b"b"})
    before = orphans(team)
    a = Replica(team, tmp_path / "a.log")
    a.start(kill=kill)
    try:
        report = sync(local, connect(a.url))
        assert a.wait_dead() == -9, f"replica A did not die at {kill}"
    finally:
        a.stop()
    assert not report.ok, report.runs

    # Whatever moment A died at: the run is published only if the finalise committed, and every
    # published run names only objects in the bucket.
    with b.client(READ_TOKEN) as c:
        published = c.get(f"/v1/history/runs/{rid}").status_code
    assert published == (200 if kill == "after:1:finalise" else 404), kill
    assert_published_runs_name_only_objects_there(team)
    # A crash between a put and its commit leaves one object no row names, and nothing else does.
    left = orphans(team) - before
    assert len(left) == (1 if kill in ("during:2:append", "during:1:blob") else 0), (kill, left)
    if kill == "during:1:finalise":
        out = cli("history", "list", "--remote", b.url, "--json", "-n", "0", AMLTRACK_TOKEN=READ_TOKEN)
        assert out.returncode == 0 and rid not in {r["id"] for r in json.loads(out.stdout)}, out

    resumed = sync(local, connect(b.url))
    # After the finalise committed, only its answer was lost: B finds nothing left to send.
    outcome = "up_to_date" if kill == "after:1:finalise" else "pushed"
    assert resumed.ok and [r.outcome for r in resumed.runs] == [outcome], resumed.runs
    assert_exact(team, local, [rid])
    assert_verified(local, connect(b.url))
    if kill == "during:1:finalise":
        out = cli("history", "list", "--remote", b.url, "--json", "-n", "0", AMLTRACK_TOKEN=READ_TOKEN)
        assert out.returncode == 0 and rid in {r["id"] for r in json.loads(out.stdout)}, out


# ----------------------------------------------------------------- 2. races through two replicas

RACERS = 8


def race(requests: list[tuple[Replica, str, str, dict[str, Any], bytes]]) -> list[httpx.Response]:
    """Send the requests (replica, method, path, params, body) at once, each from a thread and a
    connection of its own, released together; their answers in order."""
    clients = [r.client() for r, *_ in requests]
    answers: list[Any] = [None] * len(requests)
    go = threading.Barrier(len(requests))

    def send(i: int) -> None:
        _, method, path, params, body = requests[i]
        go.wait()
        answers[i] = clients[i].request(method, path, params=params, content=body)

    threads = [threading.Thread(target=send, args=(i,), name="test-racer") for i in range(len(requests))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for c in clients:
            c.close()
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    return answers


def one_winner(answers: list[httpx.Response], bodies: list[bytes], offset: int) -> int:
    """Exactly one answer is a 200; every other is a 409 whose ``committed`` is the winner's end."""
    won = [i for i, r in enumerate(answers) if r.status_code == 200]
    assert len(won) == 1, [(r.status_code, r.text) for r in answers]
    (w,) = won
    for i, r in enumerate(answers):
        if i != w:
            assert r.status_code == 409, r.text
            err = r.json()["error"]
            assert err["code"] == "offset_mismatch" and err["committed"] == offset + len(bodies[w]), err
    return w


def new_run_id() -> str:
    return f"20261206T120000000-{os.urandom(8).hex()}"


def test_appends_at_one_offset_through_two_replicas_have_one_winner(
    team: Team, replicas: tuple[Replica, Replica]
) -> None:
    rid = new_run_id()
    with replicas[0].client() as c:
        assert c.put(f"/v1/runs/{rid}").status_code == 201
    offset = 0
    for round_ in range(3):
        # Bodies of different lengths: the losers' `committed` tells which one won.
        bodies = [f'{{"round": {round_}, "racer": {i}}}\n'.encode() * (i + 1) for i in range(RACERS)]
        answers = race(
            [
                (replicas[i % 2], "POST", f"/v1/runs/{rid}/append/metrics.jsonl", {"offset": offset}, body)
                for i, body in enumerate(bodies)
            ]
        )
        w = one_winner(answers, bodies, offset)
        assert answers[w].json() == {"file": "metrics.jsonl", "size": offset + len(bodies[w])}
        ((key,),) = sql(team, "SELECT key FROM pieces WHERE run_id = %s AND start = %s", (rid, offset))
        assert get_object(team, key) == bodies[w]  # the stored bytes are the winner's
        offset += len(bodies[w])
    ((size, pieces),) = sql(
        team,
        "SELECT metrics_size, (SELECT count(*) FROM pieces WHERE run_id = %s) FROM runs WHERE id = %s",
        (rid, rid),
    )
    assert (size, pieces) == (offset, 3)


def test_uploads_at_one_offset_through_two_replicas_have_one_winner(
    team: Team, replicas: tuple[Replica, Replica]
) -> None:
    rid = new_run_id()
    with replicas[0].client() as c:
        assert c.put(f"/v1/runs/{rid}").status_code == 201
    content = os.urandom(60_000)  # under the replicas' body limit: the rest goes in one chunk
    sha = hashlib.sha256(content).hexdigest()
    # A first chunk of one content, of a different length from each racer.
    bodies = [content[: 1000 + i] for i in range(RACERS)]
    answers = race(
        [
            (
                replicas[i % 2],
                "POST",
                f"/v1/runs/{rid}/blobs/{sha}",
                {"offset": 0, "size": len(content)},
                body,
            )
            for i, body in enumerate(bodies)
        ]
    )
    w = one_winner(answers, bodies, 0)
    assert answers[w].json() == {"sha256": sha, "size": len(bodies[w]), "complete": False}
    ((key,),) = sql(
        team, "SELECT key FROM upload_parts WHERE owner = %s AND sha256 = %s", (f"run:{rid}", sha)
    )
    assert get_object(team, key) == bodies[w]

    # Every racer sends the rest at once: one completes the content, the others learn it is complete
    # or get their 409; the blob is whole, and the losers' objects are gone, not left behind.
    before = bucket_keys(team)
    rest = content[len(bodies[w]) :]
    answers = race(
        [
            (
                replicas[i % 2],
                "POST",
                f"/v1/runs/{rid}/blobs/{sha}",
                {"offset": len(bodies[w]), "size": len(content)},
                rest,
            )
            for i in range(RACERS)
        ]
    )
    assert {r.status_code for r in answers} <= {200, 409}, [r.text for r in answers]
    assert any(r.status_code == 200 and r.json()["complete"] for r in answers)
    parts = sql(team, "SELECT start, length, key FROM blob_parts WHERE sha256 = %s ORDER BY start", (sha,))
    assert b"".join(get_object(team, k)[:n] for _, n, k in parts) == content
    assert not sql(team, "SELECT 1 FROM uploads WHERE sha256 = %s", (sha,))
    assert bucket_keys(team) - before == {k for *_, k in parts} - before


def test_whole_uploads_of_one_content_at_once_make_one_blob_and_leave_nothing_behind(
    team: Team, replicas: tuple[Replica, Replica]
) -> None:
    rid = new_run_id()
    with replicas[0].client() as c:
        assert c.put(f"/v1/runs/{rid}").status_code == 201
    content = os.urandom(5000)
    sha = hashlib.sha256(content).hexdigest()
    before = bucket_keys(team)
    answers = race(
        [
            (
                replicas[i % 2],
                "POST",
                f"/v1/runs/{rid}/blobs/{sha}",
                {"offset": 0, "size": len(content)},
                content,
            )
            for i in range(RACERS)
        ]
    )
    # The content is there whoever made it: every racer is told so (none is asked to send it again).
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert all(r.json() == {"sha256": sha, "size": len(content), "complete": True} for r in answers)
    ((key,),) = sql(team, "SELECT key FROM blob_parts WHERE sha256 = %s", (sha,))
    assert get_object(team, key) == content
    assert bucket_keys(team) - before == {key}


def test_a_finalise_racing_an_append_never_publishes_other_lengths_than_it_checked(
    team: Team, replicas: tuple[Replica, Replica]
) -> None:
    a, b = replicas
    first, tail = b'{"n": 1}\n' * 50, b'{"n": 2}\n' * 50
    for _ in range(6):
        rid = new_run_id()
        with a.client() as c:
            assert c.put(f"/v1/runs/{rid}").status_code == 201
            assert c.post(
                f"/v1/runs/{rid}/append/metrics.jsonl", params={"offset": 0}, content=first
            ).is_success
        run_json = json.dumps({"id": rid, "schema": 1, "experiment": "race", "status": "completed"}).encode()
        append, finalise = race(
            [
                (a, "POST", f"/v1/runs/{rid}/append/metrics.jsonl", {"offset": len(first)}, tail),
                (
                    b,
                    "PUT",
                    f"/v1/runs/{rid}/run.json",
                    {"metrics_bytes": len(first) + len(tail), "manifest_bytes": 0},
                    run_json,
                ),
            ]
        )
        assert append.status_code == 200, append.text
        ((published, size),) = sql(team, "SELECT published, metrics_size FROM runs WHERE id = %s", (rid,))
        assert size == len(first) + len(tail)
        if finalise.status_code == 200:  # after the append: published with both
            assert published
        else:  # before it: refused, saying what it found, and the run stays unpublished
            assert finalise.status_code == 409, finalise.text
            err = finalise.json()["error"]
            assert err["code"] == "incomplete" and err["committed"]["metrics.jsonl"] == len(first), err
            assert not published


def test_an_upload_restarted_through_another_replica_is_checked_by_its_stored_bytes(
    team: Team, replicas: tuple[Replica, Replica]
) -> None:
    """A replica that saw an upload's first chunk must not vouch for the upload's hash after another
    replica discarded it and took a first chunk of other bytes: the blob would not hold its hash."""
    a, b = replicas
    rid = new_run_id()
    content = os.urandom(40_000)
    sha = hashlib.sha256(content).hexdigest()
    k = 25_000
    url, params = f"/v1/runs/{rid}/blobs/{sha}", {"size": len(content)}
    with a.client() as ca, b.client() as cb:
        assert ca.put(f"/v1/runs/{rid}").status_code == 201
        assert ca.post(url, params={**params, "offset": 0}, content=content[:k]).status_code == 200
        # The rest, wrong, through B: the whole does not hash to sha, so B discards the upload...
        r = cb.post(url, params={**params, "offset": k}, content=os.urandom(len(content) - k))
        assert r.status_code == 422 and r.json()["error"]["code"] == "hash_mismatch", r.text
        # ...and the upload starts again through B, with a first chunk of other bytes (a file that
        # changed under its job); the right rest then comes through A.
        other = os.urandom(k)
        assert cb.post(url, params={**params, "offset": 0}, content=other).status_code == 200
        r = ca.post(url, params={**params, "offset": k}, content=content[k:])
        assert r.status_code == 422 and r.json()["error"]["code"] == "hash_mismatch", r.text
        assert not sql(team, "SELECT 1 FROM blobs WHERE sha256 = %s", (sha,))
        # Sent right, from the start, it is a blob that holds its hash.
        assert ca.post(url, params={**params, "offset": 0}, content=content[:k]).status_code == 200
        r = cb.post(url, params={**params, "offset": k}, content=content[k:])
        assert r.json() == {"sha256": sha, "size": len(content), "complete": True}, r.text
    parts = sql(team, "SELECT length, key FROM blob_parts WHERE sha256 = %s ORDER BY start", (sha,))
    assert b"".join(get_object(team, key)[:n] for n, key in parts) == content


# ----------------------------------------------------------------- 4. the database or the bucket goes away

# The client's own retries (docs/sync.md): a request is tried 3 more times, 0.2 s then x3, with
# jitter, and Retry-After is not waited for; a sync that runs out of them fails the run, and the next
# sync resumes it. These clients retry more, and sooner, so that a push rides out a cut of a few
# seconds in one go: whatever it meets, it must not lose or double a byte.
PATIENT = {"retries": 10, "backoff": 0.05}


def terminate_connections(team: Team) -> int:
    """End every connection to the team's database but this one, as an administrator or a failover
    would: the number ended."""
    name = team.database.rsplit("/", 1)[1]
    rows = sql(
        team,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )
    return sum(1 for (ended,) in rows if ended)


def ui_run_ids(srv: Replica) -> set[str]:
    with srv.client(READ_TOKEN) as c:
        r = c.get("/ui/api/runs", params={"limit": 0})
    assert r.status_code == 200, r.text
    return {row["id"] for row in r.json()["runs"]}


def test_a_replica_whose_database_connections_were_all_ended_answers_the_next_requests(
    team: Team, replicas: tuple[Replica, Replica]
) -> None:
    a, _ = replicas
    rid = new_run_id()
    with a.client() as c:
        assert c.put(f"/v1/runs/{rid}").status_code == 201
    # Appends that wait for the run's row lock (held here) each hold a connection of the replica's
    # pool: it grows to all but one of its connections (that one for the token checks meanwhile),
    # every one idle once the lock is let go.
    size = POOL_SIZE - 1
    bodies = [b'{"n": 0}\n'] * size
    answers: list[httpx.Response] = []
    name = team.database.rsplit("/", 1)[1]
    with psycopg.connect(team.database) as holder:
        holder.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (rid,))
        t = threading.Thread(
            target=lambda: answers.extend(
                race([(a, "POST", f"/v1/runs/{rid}/append/metrics.jsonl", {"offset": 0}, b) for b in bodies])
            ),
            name="test-race",
        )
        t.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
        wait_until(lambda: sql(team, waiting, (name,))[0][0] == size, 60, "the appends to wait for the lock")
        holder.commit()
    t.join(60)
    one_winner(answers, bodies, 0)
    assert terminate_connections(team) >= size
    # The very next requests answer, without a restart and without a 503: every connection the
    # pool holds is broken, and a request must not wait on them one after another.
    with a.client() as c:
        assert c.get("/v1/runs").status_code == 200
        r = c.post(f"/v1/runs/{rid}/append/metrics.jsonl", params={"offset": 9}, content=b'{"n": 1}\n')
        assert r.status_code == 200, r.text
        assert terminate_connections(team) > 0
        assert c.get(f"/v1/runs/{rid}").json()["files"]["metrics.jsonl"]["size"] == 18
        assert c.get("/v1/history/runs").status_code == 200


def test_a_push_while_the_database_ends_the_replicas_connections_again_and_again(
    team: Team, replicas: tuple[Replica, Replica], tmp_path: Path, connect: Any
) -> None:
    a, _ = replicas
    local = tmp_path / "local"
    rid = make_run(local, records=12_000, artifacts={"model.bin": os.urandom(300_000)})
    wire = Records()
    t, out = pushed_in_background(local, connect(a.url, transport=wire, **PATIENT))
    ended = 0
    while t.is_alive():
        ended += terminate_connections(team)
        t.join(0.3)  # often enough to hit requests in flight, not so often that none gets through
    report = finished(t, out)
    assert ended > 0
    assert report.ok, (report.runs, wire.answers)
    assert_exact(team, local, [rid])
    for _, _, status, retry_after in wire.answers:
        assert status < 500 or (status == 503 and retry_after and retry_after.isdigit()), wire.answers


@pytest.fixture
def database_proxy(team: Team) -> Iterator[tuple[Proxy, str]]:
    """A proxy between replicas and PostgreSQL, and the team's database URL through it."""
    host, port = team.database.split("@", 1)[1].split("/", 1)[0].split(":")
    with Proxy((host, int(port))) as proxy:
        yield proxy, team.database.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")


def test_a_push_through_a_cut_to_the_database_gets_503s_and_finishes_exact(
    team: Team, database_proxy: tuple[Proxy, str], tmp_path: Path, connect: Any
) -> None:
    proxy, url = database_proxy
    c = Replica(team, tmp_path / "c.log", database=url).start()
    try:
        local = tmp_path / "local"
        rid = make_run(local, records=12_000, artifacts={"model.bin": os.urandom(200_000)})
        wire = Records()
        t, out = pushed_in_background(local, connect(c.url, transport=wire, **PATIENT))
        wait_until(lambda: wire.count(200, writes=True) >= 3 or not t.is_alive(), 60, "a few writes")
        assert t.is_alive(), "the push ended before the cut"
        proxy.cut()
        # Cut until the client has had its 503, and the web UI's copy has failed to refresh once.
        wait_until(lambda: wire.count(503) > 0, 120, "a 503")
        wait_until(
            lambda: "could not refresh" in c.log.read_text(), 120, "a refresh of the UI's copy to fail"
        )
        proxy.restore()
        report = finished(t, out)
        assert report.ok, report.runs
        assert all(ra and ra.isdigit() for *_, s, ra in wire.answers if s == 503), wire.answers
        assert_exact(team, local, [rid])
        # The replica recovered without a restart, its web UI's copy too: it shows the run.
        wait_until(lambda: rid in ui_run_ids(c), 60, "the UI of the replica to show the run")
    finally:
        c.stop()
    assert "Traceback" not in c.log.read_text(), c.log.read_text()


@pytest.fixture
def bucket_proxy(team: Team) -> Iterator[tuple[Proxy, str]]:
    """A proxy between replicas and the S3 server (moto keeps its objects in memory: stopping it
    would lose them, so the network is cut instead), and the endpoint through it."""
    host, port = team.moto.endpoint.rsplit("/", 1)[1].split(":")
    with Proxy((host, int(port))) as proxy:
        yield proxy, f"http://127.0.0.1:{proxy.port}"


def test_a_push_through_a_cut_to_the_bucket_gets_503s_and_finishes_exact(
    team: Team, bucket_proxy: tuple[Proxy, str], tmp_path: Path, connect: Any
) -> None:
    proxy, endpoint = bucket_proxy
    d = Replica(team, tmp_path / "d.log", endpoint=endpoint).start()
    try:
        local = tmp_path / "local"
        rid = make_run(local, records=12_000, artifacts={"model.bin": os.urandom(200_000)})
        wire = Records()
        t, out = pushed_in_background(local, connect(d.url, transport=wire, **PATIENT))
        wait_until(lambda: wire.count(200, writes=True) >= 3 or not t.is_alive(), 60, "a few writes")
        assert t.is_alive(), "the push ended before the cut"
        proxy.cut()
        wait_until(lambda: wire.count(503) > 0, 120, "a 503")
        proxy.restore()
        report = finished(t, out)
        assert report.ok, report.runs
        assert all(ra and ra.isdigit() for *_, s, ra in wire.answers if s == 503), wire.answers
        assert_exact(team, local, [rid])
    finally:
        d.stop()
    assert "Traceback" not in d.log.read_text(), d.log.read_text()


# ----------------------------------------------------------------- 5. the web UI of any replica


def test_the_web_ui_of_one_replica_shows_a_run_pushed_through_the_other(
    replicas: tuple[Replica, Replica], tmp_path: Path, connect: Any
) -> None:
    a, b = replicas
    local = tmp_path / "local"
    rid = make_run(local, records=500, artifacts={"notes.txt": b"hello"})
    assert sync(local, connect(a.url)).ok
    wait_until(lambda: rid in ui_run_ids(b), 60, "the UI of replica B to show the run")
    with b.client(READ_TOKEN) as c:
        run = c.get(f"/ui/api/runs/{rid}")
        assert run.status_code == 200 and run.json()["run"]["id"] == rid, run.text
        assert [a["path"] for a in run.json()["artifacts"]] == ["notes.txt"]
        metrics = c.get(f"/ui/api/runs/{rid}/metrics")
        assert metrics.status_code == 200 and "loss" in metrics.text, metrics.text
    browser_shows(f"{b.url}/ui/", rid)


def browser_shows(url: str, text: str) -> None:
    """Headless Chromium, holding the read token, opens the UI's runs page and finds ``text``."""
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip(
            "chromium is not installed: apt-get install -y chromium (.ci/run does); the UI's API answered"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page(extra_http_headers={"Authorization": f"Bearer {READ_TOKEN}"})
            page.goto(url)
            page.get_by_text(text).first.wait_for(timeout=60_000)
        finally:
            browser.close()


# ----------------------------------------------------------------- 6. --verify against a damaged team


def test_verify_reports_a_damaged_team_and_the_next_sync_repairs_what_it_can(
    team: Team, replicas: tuple[Replica, Replica], tmp_path: Path, connect: Any
) -> None:
    from amltrack.sync import remotes_of

    _, b = replicas
    local = tmp_path / "local"
    rid = make_run(local, records=300, artifacts={"model.bin": b"weights" * 1000, "ok.txt": b"ok"})
    assert sync(local, connect(b.url)).ok
    # What a bucket or a database can lose or get wrong: an object's bytes (same key, same length,
    # other bytes), and a row.
    ((key,),) = sql(
        team,
        "SELECT key FROM pieces WHERE run_id = %s AND file = 'metrics.jsonl' ORDER BY start LIMIT 1",
        (rid,),
    )
    s3 = team.moto.client()
    good = get_object(team, key)
    bad = bytearray(good)
    bad[10:11] = b"7" if bad[10:11] != b"7" else b"8"
    s3.put_object(Bucket=team.bucket, Key=key, Body=bytes(bad))
    sql(team, "DELETE FROM artifacts WHERE run_id = %s AND path = 'model.bin'", (rid,))

    out = cli("sync", "--store", str(local), "--to", b.url, "--verify", AMLTRACK_TOKEN=READ_TOKEN)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"DIFFERS     {rid}" in out.stdout
    assert "artifact model.bin is missing on the remote" in out.stdout
    assert "metrics.jsonl differs from the local file in its first" in out.stdout
    assert "1 differ" in out.stdout.splitlines()[-1]
    (entry,) = [e for e in remotes_of(local / "runs" / rid) if e["remote"] == b.url]
    assert entry["complete"] is False and entry["recheck"] is True  # the ledger is no longer trusted

    # The next sync puts the artifact back; bytes it has already sent it cannot know to send again,
    # and says so (as against the embedded server).
    repaired = sync(local, connect(b.url), verify=True)
    assert repaired.runs[0].outcome == "pushed", repaired.runs
    (diff,) = repaired.runs[0].differences
    assert diff.startswith("metrics.jsonl differs from the local file in its first"), diff
    assert sql(team, "SELECT size FROM artifacts WHERE run_id = %s AND path = 'model.bin'", (rid,)) == [
        (7000,)
    ]

    s3.put_object(Bucket=team.bucket, Key=key, Body=good)  # restored, as from a backup
    again = sync(local, connect(b.url), verify=True)
    assert again.ok and again.runs[0].differences == [], again.runs
    assert_exact(team, local, [rid])


def test_a_replica_stopped_by_sigterm_removes_its_copy_of_the_runs(team: Team, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    srv = ReplicaProcess(team, tmp_path / "replica.log", env={"TMPDIR": str(scratch)}).start()
    try:
        assert [p.name.startswith("amltrack-replica-") for p in scratch.iterdir()] == [True]
    finally:
        srv.stop()
    log = (tmp_path / "replica.log").read_text()
    assert srv.proc is not None and srv.proc.returncode == 128 + 15, log  # stopped, not killed by the signal
    assert list(scratch.iterdir()) == []
