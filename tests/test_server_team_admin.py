"""``amltrack server migrate --from-store`` and ``amltrack server gc`` against a real PostgreSQL, a real
moto S3 server, real embedded and team ``amltrack server`` processes and real ``amltrack sync`` pushes:
the copy is byte for byte and resumes after a SIGKILL, and gc removes exactly what no row names."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import amltrack
from amltrack import _assets
from amltrack import _format as fmt
from amltrack.sync import AmltrackRemote, sync

from .bucket_helpers import AWS_ENV, MotoServer, moto_server
from .conftest import child_env
from .sync_helpers import (
    READ_TOKEN,
    WRITE_TOKEN,
    ServerProcess,
    assert_same_store,
    cli,
    make_run,
    run_files,
)
from .team_helpers import ReplicaProcess, Team, team_of

MIGRATE_KILLED = Path(__file__).parent / "scripts" / "migrate_killed.py"
SMALL_PIECE = 64 * 1024  # so that the big run takes dozens of appends to kill the migration between


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server for this module's teams (each team has a bucket of its own)."""
    with moto_server(tmp_path_factory.mktemp("admin-moto")) as srv:
        yield srv


@dataclasses.dataclass
class Source:
    """An embedded server's store, made by pushing real runs into a real ``amltrack server``."""

    store: Path
    local: Path
    runs: list[str]  # published, in id order: a small run, a big one, a failed one
    staged: str
    history: Any  # `history list --remote --json` of the embedded server
    assets: Any  # its GET /v1/assets

    def tree(self) -> dict[str, tuple[int, int]]:
        """Every file and folder of the store, with size and mtime: migrate must change none."""
        out = {}
        for dirpath, dirs, names in os.walk(self.store):
            for n in dirs + names:
                st = os.lstat(Path(dirpath) / n)
                out[str(Path(dirpath, n).relative_to(self.store))] = (st.st_size, st.st_mtime_ns)
        return out


def _history(url: str) -> Any:
    done = cli("history", "list", "--remote", url, "--json", AMLTRACK_TOKEN=READ_TOKEN)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _assets_of(srv: ServerProcess) -> Any:
    with srv.client(READ_TOKEN) as c:
        r = c.get("/v1/assets")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    d = tmp_path_factory.mktemp("migrate-source")
    local = d / "local"
    shared = os.urandom(200_000)  # in two runs: one content, uploaded once to the team
    small = make_run(
        local,
        records=200,
        artifacts={
            "model/weights.bin": os.urandom(300_000),
            "model/config.json": b'{"lr": 0.1}',
            "notes/empty.txt": b"",
            "shared.bin": shared,
        },
    )
    big = make_run(local, records=60_000)
    failed = make_run(
        local,
        records=50,
        status="failed",
        artifacts={"model/weights.bin": os.urandom(100_000), "model/config.json": b"{}", "copy.bin": shared},
    )
    store = amltrack.Store(local)
    _assets.promote(store.run(small), "model", "mnist")
    _assets.promote(store.run(failed), "model", "mnist")
    srv = ServerProcess(d / "store", d / "server.log").start()
    try:
        done = cli("sync", "--store", str(local), "--to", srv.url, "--json", AMLTRACK_TOKEN=WRITE_TOKEN)
        report = json.loads(done.stdout)
        assert report["ok"] and report["asset_counts"]["pushed"] == 2, done.stderr
        staged = fmt.new_run_id()  # a push that never finished: the embedded server keeps it staged
        with srv.client() as c:
            assert c.put(f"/v1/runs/{staged}").status_code == 201
            r = c.post(f"/v1/runs/{staged}/append/metrics.jsonl", params={"offset": 0}, content=b'{"x": 1}\n')
            assert r.status_code == 200, r.text
        history, assets = _history(srv.url), _assets_of(srv)
    finally:
        srv.stop()
    assert [a["version"] for a in assets["assets"]] == [1, 2]
    assert (d / "store" / ".server" / "incoming" / staged).is_dir()
    yield Source(d / "store", local, [small, big, failed], staged, history, assets)


def migrate(source: Source, team: Team, *args: str, timeout: float = 300) -> tuple[int, Any, str]:
    done = cli(
        "server", "migrate", "--from-store", str(source.store), *team.args(), "--json", *args,
        timeout=timeout, **AWS_ENV,
    )  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"migrate printed no JSON (exit {done.returncode}):\n{done.stderr}") from None
    return done.returncode, report, done.stderr


def gc(team: Team, *args: str) -> dict[str, Any]:
    done = cli("server", "gc", *team.args(), "--json", *args, **AWS_ENV)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bucket_keys(team: Team) -> set[str]:
    s3 = team.moto.client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=team.bucket)
    return {o["Key"] for page in pages for o in page.get("Contents") or []}


def named_keys(team: Team) -> set[str]:
    with psycopg.connect(team.database) as conn:
        rows = conn.execute(
            "SELECT key FROM pieces UNION SELECT key FROM upload_parts UNION SELECT key FROM blob_parts"
        ).fetchall()
    return {r[0] for r in rows}


def assert_pieces_contiguous(team: Team) -> None:
    """Each file of each run is its pieces end to end from 0 to the committed size: none doubled,
    none overlapping, no gap."""
    with psycopg.connect(team.database) as conn:
        runs = conn.execute("SELECT id, metrics_size, manifest_size FROM runs").fetchall()
        for run_id, metrics, manifest in runs:
            for name, size in ((fmt.METRICS_FILE, metrics), (fmt.MANIFEST_FILE, manifest)):
                pieces = conn.execute(
                    "SELECT start, length FROM pieces WHERE run_id = %s AND file = %s ORDER BY start",
                    (run_id, name),
                ).fetchall()
                end = 0
                for start, length in pieces:
                    assert start == end, (run_id, name, pieces)
                    end = start + length
                assert end == size, (run_id, name, end, size)


def assert_same_as_source(source: Source, team: Team) -> None:
    copy = team.published_copy()
    assert_same_store(source.store, copy)  # every published run, file for file, nothing else
    assert_same_store(source.local, copy)  # and so the runs as they were logged
    assert not (copy / "runs" / source.staged).exists()


def test_migrate_copies_every_run_and_asset_and_a_replica_serves_them_as_the_embedded_server_did(
    source: Source, moto: MotoServer, tmp_path: Path
) -> None:
    before = source.tree()
    with team_of(moto) as team:
        code, report, err = migrate(source, team)
        assert code == 0 and report["ok"], (report, err)
        assert report["runs"] == dict.fromkeys(source.runs, "copied")
        assert report["staged"] == [source.staged]
        assert report["assets"] == {"mnist:1": "placed", "mnist:2": "placed"}
        assert report["verified"] == {"runs": 3, "assets": 2} and report["differences"] == []
        assert source.tree() == before  # nothing written into DIR, not even a cache
        assert_same_as_source(source, team)
        assert_pieces_contiguous(team)
        with psycopg.connect(team.database) as conn:  # the content in two runs was uploaded once
            assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == len(
                {sha for r in source.runs for sha in _artifact_shas(source.store / "runs" / r)}
                | {f["sha256"] for a in source.assets["assets"] for f in a["files"]}
            )

        replica = ReplicaProcess(team, tmp_path / "replica.log").start()
        try:
            assert _history(replica.url) == source.history
            assert _assets_of(replica) == source.assets
            with replica.client(READ_TOKEN) as c:
                for a in source.assets["assets"]:
                    for f in a["files"]:
                        r = c.get(f"/v1/assets/mnist:{a['version']}/files/{f['path']}")
                        path = source.store / "assets" / "mnist" / str(a["version"]) / "files" / f["path"]
                        assert r.content == path.read_bytes()
            # The local runs are up to date on the team, hash for hash, as they were on the embedded server.
            with AmltrackRemote(replica.url, WRITE_TOKEN, backoff=0.02) as remote:
                checked = sync(source.local, remote, all_runs=True, verify=True)
            assert checked.ok and checked.bytes == 0, checked.runs
            assert {r.id: r.outcome for r in checked.runs} == dict.fromkeys(source.runs, "up_to_date")
        finally:
            replica.stop()

        code, again, _ = migrate(source, team)  # a second migration finds everything there
        assert code == 0 and again["bytes"] == 0
        assert set(again["runs"].values()) == {"up_to_date"} and set(again["assets"].values()) == {
            "up_to_date"
        }
        code, verified, _ = migrate(source, team, "--verify-only")
        assert code == 0 and verified["runs"] == {} and verified["verified"] == {"runs": 3, "assets": 2}


def _artifact_shas(run_dir: Path) -> set[str]:
    return {_sha(data) for p, data in run_files(run_dir).items() if p.startswith("artifacts/")}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _killed(source: Source, team: Team, spec: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [
            sys.executable, str(MIGRATE_KILLED), spec, str(SMALL_PIECE), str(source.store),
            team.database, team.objects, team.moto.endpoint,
        ],
        capture_output=True, text=True, env=child_env(**AWS_ENV), timeout=300,
    )  # fmt: skip
    assert done.returncode == -9, f"the migration was not killed at {spec}:\n{done.stdout}{done.stderr}"
    return done


def test_migrate_killed_midway_continues_where_it_stopped_and_verifies(
    source: Source, moto: MotoServer
) -> None:
    small, big, failed = source.runs
    with team_of(moto) as team:
        _killed(source, team, "after:1:finalise")  # the first run published, the rest not begun
        with psycopg.connect(team.database) as conn:
            assert conn.execute("SELECT id FROM runs WHERE published").fetchall() == [(small,)]
        # Killed again, with the fifth append's object in the bucket and its row not committed.
        _killed(source, team, "during:5:append")
        with psycopg.connect(team.database) as conn:
            size, published = conn.execute(
                "SELECT metrics_size, published FROM runs WHERE id = %s", (big,)
            ).fetchone()
            kept = conn.execute(
                "SELECT start, key FROM pieces WHERE run_id = %s AND file = 'metrics.jsonl' ORDER BY start",
                (big,),
            ).fetchall()
        assert not published and len(kept) == 4 and 0 < size <= 4 * SMALL_PIECE
        assert bucket_keys(team) - named_keys(team), "the killed append left its object behind"
        # And once more, with the failed run's 100 kB weights half uploaded (its second chunk
        # written: the first is config.json's; copy.bin is the small run's content, already there).
        _killed(source, team, "after:2:blob")
        weights = _sha((source.store / "runs" / failed / "artifacts" / "model" / "weights.bin").read_bytes())
        with psycopg.connect(team.database) as conn:
            uploaded = conn.execute(
                "SELECT start, key FROM upload_parts WHERE owner = %s AND sha256 = %s",
                (f"run:{failed}", weights),
            ).fetchall()
        assert [start for start, _ in uploaded] == [0]

        code, report, err = migrate(source, team)
        assert code == 0 and report["ok"], (report, err)
        # The big run was finished by the third attempt, before it was killed in the failed run.
        assert report["runs"] == {small: "up_to_date", big: "up_to_date", failed: "copied"}
        assert report["verified"] == {"runs": 3, "assets": 2}
        # The big run went on from its committed length: its first pieces are the ones kept.
        with psycopg.connect(team.database) as conn:
            after = conn.execute(
                "SELECT start, key FROM pieces WHERE run_id = %s AND file = 'metrics.jsonl' ORDER BY start",
                (big,),
            ).fetchall()
        assert after[:4] == kept and len(after) > 4
        with psycopg.connect(team.database) as conn:  # and the upload went on from its chunk
            parts = conn.execute(
                "SELECT start, key FROM blob_parts WHERE sha256 = %s ORDER BY start", (weights,)
            ).fetchall()
        assert parts[0] == uploaded[0] and len(parts) == 2
        assert_pieces_contiguous(team)
        assert_same_as_source(source, team)


def test_migrate_says_what_differs_and_exits_1(source: Source, moto: MotoServer) -> None:
    small = source.runs[0]
    with team_of(moto) as team:
        code, report, _ = migrate(source, team)
        assert code == 0
        # A file of the team's copy changed behind its back: the check reads the bucket, not the rows.
        with psycopg.connect(team.database) as conn:
            (key,) = conn.execute(
                "SELECT key FROM pieces WHERE run_id = %s AND file = 'metrics.jsonl' ORDER BY start LIMIT 1",
                (small,),
            ).fetchone()
        s3 = team.moto.client()
        data = s3.get_object(Bucket=team.bucket, Key=key)["Body"].read()
        s3.put_object(Bucket=team.bucket, Key=key, Body=data.replace(b"loss", b"LOSS", 1))
        code, report, _ = migrate(source, team, "--verify-only")
        assert code == 1 and not report["ok"]
        changed = data.replace(b"loss", b"LOSS", 1)
        assert data == (source.store / "runs" / small / fmt.METRICS_FILE).read_bytes()  # one piece
        assert report["differences"] == [
            f"run {small}: metrics.jsonl is {len(data)} bytes (SHA-256 {_sha12(changed)}) on the team, "
            f"{len(data)} bytes (SHA-256 {_sha12(data)}) in DIR"
        ]
        assert report["verified"] == {"runs": 2, "assets": 2}
        done = cli(
            "server", "migrate", "--from-store", str(source.store), *team.args(), "--verify-only", **AWS_ENV
        )
        assert done.returncode == 1
        assert f"DIFFERS   run {small}: metrics.jsonl is " in done.stdout
        assert "1 differences" in done.stdout.splitlines()[-1]


def _sha12(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def test_migrate_refuses_a_folder_that_is_no_server_store_and_a_database_it_cannot_use(
    source: Source, moto: MotoServer, tmp_path: Path
) -> None:
    with team_of(moto) as team:
        for folder in (source.local, tmp_path / "missing"):
            done = cli("server", "migrate", "--from-store", str(folder), *team.args(), **AWS_ENV)
            assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
            assert f"{folder} is not an amltrack server's store" in done.stderr
        args = team.args()
        args[1] = "postgresql://nobody@127.0.0.1:1/none"
        done = cli("server", "migrate", "--from-store", str(source.store), *args, **AWS_ENV)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "cannot use the database" in done.stderr
        args = team.args()
        args[3] = "s3://no-such-bucket-here/team"
        done = cli("server", "migrate", "--from-store", str(source.store), *args, **AWS_ENV)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "no-such-bucket-here" in done.stderr and "create it first" in done.stderr


def test_gc_removes_exactly_the_objects_no_row_names_once_they_are_old_enough(
    moto: MotoServer, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    run_id = make_run(local, records=20_000, artifacts={"weights.bin": os.urandom(200_000)})
    with team_of(moto) as team:
        replica = ReplicaProcess(team, tmp_path / "replica.log")
        try:
            # Killed between the put of its third append's object and the commit of the row.
            replica.start(kill="during:3:append")
            with AmltrackRemote(replica.url, WRITE_TOKEN, backoff=0.02) as remote:
                assert not sync(local, remote).ok
            assert replica.wait_dead() == -9
            orphans = bucket_keys(team) - named_keys(team)
            assert len(orphans) == 1
            replica.start()
            with AmltrackRemote(replica.url, WRITE_TOKEN, backoff=0.02) as remote:
                assert sync(local, remote).ok
                # An abandoned upload, and a content uploaded whole that no artifact names.
            with replica.client() as c:  # a push that stops after its first uploads, never finalised
                other = fmt.new_run_id()
                assert c.put(f"/v1/runs/{other}").status_code == 201
                half, whole = os.urandom(2000), os.urandom(3000)
                for content, sent in ((half, half[:1000]), (whole, whole)):
                    r = c.post(
                        f"/v1/runs/{other}/blobs/{_sha(content)}",
                        params={"offset": 0, "size": len(content)},
                        content=sent,
                    )
                    assert r.status_code == 200 and r.json()["complete"] == (content is whole), r.text
            named_before = named_keys(team)
            assert bucket_keys(team) - named_before == orphans

            dry = gc(team, "--dry-run", "--older-than", "0", "--uploads-older-than", "0")
            assert dry["dry_run"] and set(dry["objects"]["keys"]) == orphans
            assert dry["uploads"]["count"] == 1 and dry["uploads"]["bytes"] == 1000
            assert dry["blobs"]["count"] == 1 and dry["blobs"]["bytes"] == 3000
            assert named_keys(team) == named_before and bucket_keys(team) - named_before == orphans

            young = gc(team)  # the default grace period: an hour
            assert young["objects"]["count"] == young["uploads"]["count"] == young["blobs"]["count"] == 0
            assert set(young["kept"]["keys"]) == orphans
            assert bucket_keys(team) - named_before == orphans

            done = gc(team, "--older-than", "0", "--uploads-older-than", "0")
            assert set(done["objects"]["keys"]) == orphans
            removed = set(done["uploads"]["keys"]) | set(done["blobs"]["keys"])
            assert len(removed) == 2 and done["bytes"] == dry["bytes"]
            assert bucket_keys(team) == named_keys(team) == named_before - removed
            with psycopg.connect(team.database) as conn:
                assert conn.execute("SELECT count(*) FROM uploads").fetchone()[0] == 0

            # Nothing a published run needs went: the push verifies, and reads back byte for byte.
            with AmltrackRemote(replica.url, WRITE_TOKEN, backoff=0.02) as remote:
                checked = sync(local, remote, all_runs=True, verify=True)
            assert checked.ok and checked.bytes == 0
            assert [r.outcome for r in checked.runs] == ["up_to_date"]
            assert_same_store(local, team.published_copy(), [run_id])
            assert gc(team, "--older-than", "0", "--uploads-older-than", "0")["bytes"] == 0
        finally:
            replica.stop()


def test_gc_prints_counts_and_bytes(moto: MotoServer) -> None:
    with team_of(moto) as team:
        team.moto.client().put_object(
            Bucket=team.bucket, Key="team/runs/x/metrics.jsonl/0123", Body=b"x" * 10
        )
        team.moto.client().put_object(Bucket=team.bucket, Key="team/elsewhere.txt", Body=b"not ours")
        done = cli("server", "gc", *team.args(), "--dry-run", "--older-than", "0", **AWS_ENV)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == "would remove 1 objects no row names (10 B)"
        done = cli("server", "gc", *team.args(), "--older-than", "0", **AWS_ENV)
        assert done.stdout.splitlines()[0] == "removed 1 objects no row names (10 B)"
        assert bucket_keys(team) == {"team/elsewhere.txt"}  # gc takes only the keys amltrack makes


def test_migrate_benchmark_smoke() -> None:
    """``benchmarks/bench_migrate.py`` keeps working (tiny sizes); its figures are not asserted."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_migrate.py"
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["runs"] == 3 and figures["copy_s"] > 0 and figures["verify_s"] > 0
