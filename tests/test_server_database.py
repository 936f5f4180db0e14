"""The team server's PostgreSQL database: the versioned schema from an empty database and from every
earlier version, the tokens kept in it, and a real ``amltrack server --database`` that checks them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from amltrack.server import (
    SCHEMA_VERSION,
    Database,
    DatabaseError,
    DatabaseTokens,
    InvalidTokenNameError,
    SchemaTooNewError,
    TokenNotFoundError,
)
from amltrack.server._database import MIGRATIONS, migrate, schema_version

from .conftest import child_env, wait_until
from .database_helpers import create_database, drop_database, scratch_database, unique_name
from .sync_helpers import assert_same_run, cli, make_run, running_server

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC_LIST = (DOCS / "cli.md").read_text().split("## `amltrack server token list`")[1]


@pytest.fixture(scope="module")
def module_database() -> Iterator[str]:
    """One database for the tests of this module that share it (tokens with unique names)."""
    with scratch_database() as url:
        yield url


@pytest.fixture
def empty_database() -> Iterator[str]:
    with scratch_database() as url:
        yield url


@pytest.fixture
def tokens(module_database: str) -> Iterator[DatabaseTokens]:
    db = Database.open(module_database)
    try:
        yield DatabaseTokens(db)
    finally:
        db.close()


def schema_of(url: str) -> dict[str, Any]:
    """The tables, columns, constraints and indexes of the public schema, for comparing two databases."""
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity "
            "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
        ).fetchall()
        checks = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    return {"columns": columns, "indexes": indexes, "constraints": checks, "versions": versions}


# --- the schema -------------------------------------------------------------------------------------


def test_an_empty_database_gets_the_whole_schema_and_a_rerun_changes_nothing(empty_database: str) -> None:
    with Database.open(empty_database) as db, db.connection() as conn:
        assert schema_version(conn) == SCHEMA_VERSION == len(MIGRATIONS)
        assert conn.execute("SELECT to_regclass('tokens') IS NOT NULL").fetchone() == (True,)
    first = schema_of(empty_database)
    assert first["versions"] == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    with Database.open(empty_database) as db, db.connection() as conn:
        assert migrate(conn) == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert schema_of(empty_database) == first


@pytest.mark.parametrize("start", range(SCHEMA_VERSION))
def test_every_earlier_version_migrates_to_the_same_schema_as_an_empty_database(start: int) -> None:
    with scratch_database() as fresh, scratch_database() as old:
        Database.open(fresh).close()
        with psycopg.connect(old) as conn:
            assert migrate(conn, start) == (0, start)
            assert schema_version(conn) == start
        with Database.open(old) as db, db.connection() as conn:
            assert schema_version(conn) == SCHEMA_VERSION
        assert schema_of(old) == schema_of(fresh)


def test_replicas_starting_at_once_apply_each_step_once(empty_database: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def replica() -> None:
        try:
            start.wait()
            Database.open(empty_database, pool_size=1).close()
        except BaseException as e:  # noqa: BLE001 - collected, then asserted on in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert schema_of(empty_database)["versions"] == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_a_newer_schema_is_refused_with_one_line(empty_database: str, tmp_path: Path) -> None:
    Database.open(empty_database).close()
    with psycopg.connect(empty_database) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNewError, match=f"version {SCHEMA_VERSION + 1}, newer than") as e:
        Database.open(empty_database)
    assert (e.value.found, e.value.known) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    with pytest.raises(SchemaTooNewError):
        Database.open(empty_database, migrate_schema=False)
    out = cli("server", "--store", str(tmp_path / "s"), "--port", "0", "--database", empty_database)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "newer than this amltrack's" in out.stderr, out.stderr
    with psycopg.connect(empty_database) as conn:  # and nothing was changed on the way
        assert schema_version(conn) == SCHEMA_VERSION + 1


def test_a_database_that_cannot_be_used_is_named_without_its_password() -> None:
    with pytest.raises(DatabaseError, match="not a PostgreSQL URL"):
        Database.open("mysql://root@127.0.0.1/amltrack")
    missing = unique_name()
    with pytest.raises(DatabaseError) as e:
        Database.open(f"postgresql://postgres:hunter2secret@127.0.0.1:5432/{missing}")
    assert missing in str(e.value) and "hunter2secret" not in str(e.value) and ":***@" in str(e.value)
    with pytest.raises(ValueError, match="not a schema version"):
        migrate(None, SCHEMA_VERSION + 1)  # type: ignore[arg-type]


# --- tokens -------------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_stored_as_its_digest(tokens: DatabaseTokens, module_database: str) -> None:
    secret, info = tokens.create("laptop", "write")
    assert (info.name, info.scope, info.revoked) == ("laptop", "write", None) and len(secret) >= 32
    assert tokens.scope_of(secret) == "write" and tokens.scope_of(secret + "x") is None
    with psycopg.connect(module_database) as conn:
        rows = conn.execute("SELECT * FROM tokens").fetchall()
    assert secret not in repr(rows) and secret.encode() not in b"".join(
        bytes(c) for row in rows for c in row if isinstance(c, (bytes, memoryview))
    )
    assert "laptop" in [t.name for t in tokens.list()]
    tokens.revoke("laptop")
    assert tokens.scope_of(secret) is None
    assert "laptop" not in [t.name for t in tokens.list()]
    assert "laptop" in [t.name for t in tokens.list(revoked=True)]


def test_token_names_are_checked_and_unique_among_live_tokens(tokens: DatabaseTokens) -> None:
    for bad in ("", "has space", "-dash", "1234", "x" * 65, "é"):
        with pytest.raises(InvalidTokenNameError, match="is not valid"):
            tokens.create(bad, "read")
    with pytest.raises(InvalidTokenNameError, match="scope 'admin'"):
        tokens.create("dashboard", "admin")
    _, first = tokens.create("dashboard", "read")
    with pytest.raises(InvalidTokenNameError, match="'dashboard' exists; revoke it first"):
        tokens.create("dashboard", "write")
    assert tokens.revoke(str(first.id)).name == "dashboard"  # by id
    with pytest.raises(TokenNotFoundError, match="no live token has the name 'dashboard'"):
        tokens.revoke("dashboard")
    secret, again = tokens.create("dashboard", "write")  # a revoked name may be given again
    assert again.id != first.id and tokens.scope_of(secret) == "write"
    with pytest.raises(TokenNotFoundError, match="the id '999999'"):
        tokens.revoke("999999")


def test_the_token_commands(module_database: str) -> None:
    db = ("--database", module_database)
    made = cli("server", "token", "create", *db, "--scope", "read", "--name", "cli-dash", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["name"] == "cli-dash" and created["scope"] == "read" and len(created["token"]) >= 32
    plain = cli("server", "token", "create", *db, "--scope", "write", "--name", "cli-ci")
    assert plain.returncode == 0 and plain.stdout.startswith("token: "), plain.stderr
    assert "only time it is shown" in plain.stderr
    listed = json.loads(cli("server", "token", "list", *db, "--json").stdout)
    mine = {t["name"]: t for t in listed if t["name"].startswith("cli-")}
    assert sorted(mine) == ["cli-ci", "cli-dash"] and all("token" not in t for t in listed)
    assert set(mine["cli-ci"]) == {"id", "name", "scope", "created", "revoked"}
    table = cli("server", "token", "list", *db)
    assert "cli-dash" in table.stdout and created["token"] not in table.stdout
    gone = cli("server", "token", "revoke", *db, str(mine["cli-dash"]["id"]))
    assert gone.returncode == 0 and "revoked read token 'cli-dash'" in gone.stdout, gone.stderr
    again = cli("server", "token", "revoke", *db, "cli-dash")
    assert again.returncode == 1 and again.stderr.startswith("amltrack: no live token"), again.stderr
    listed = json.loads(cli("server", "token", "list", *db, "--all", "--json").stdout)
    assert [t["revoked"] is not None for t in listed if t["name"] == "cli-dash"] == [True]
    documented = json.loads(re.findall(r"```json\n(.*?)```", DOC_LIST, flags=re.S)[0])
    assert set(documented[0]) == set(listed[0])
    bad = cli("server", "token", "list", "--database", "sqlite:///x.db")
    assert bad.returncode == 1 and "not a PostgreSQL URL" in bad.stderr


# --- a real server ------------------------------------------------------------------------------------


def test_a_server_with_database_checks_its_tokens_there(
    tmp_path: Path, tokens: DatabaseTokens, module_database: str
) -> None:
    write, _ = tokens.create("server-write", "write")
    read, _ = tokens.create("server-read", "read")
    local = tmp_path / "local"
    run_id = make_run(local, records=300, artifacts={"model.bin": b"\x00weights" * 1000})
    with running_server(tmp_path / "srv", tokens=None, args=("--database", module_database)) as srv:
        assert "tokens in the database" in srv.log.read_text()
        assert httpx.get(srv.url + "/v1/health").json()["auth"] == "token"
        with srv.client(None) as c:
            assert c.get("/v1/runs").status_code == 401
        with srv.client(read) as c:
            assert c.get("/v1/runs").status_code == 200
            r = c.put("/v1/runs/" + run_id)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        synced = cli("sync", "--store", str(local), "--to", srv.url, AMLTRACK_TOKEN=write)
        assert synced.returncode == 0, synced.stderr
        assert_same_run(local / "runs" / run_id, srv.store / "runs" / run_id)
        verified = cli("sync", "--store", str(local), "--to", srv.url, "--verify", AMLTRACK_TOKEN=read)
        assert verified.returncode == 0, verified.stderr
        # Revoking takes effect on the next request, with no restart and no cache to wait out.
        tokens.revoke("server-read")
        with srv.client(read) as c:
            r = c.get("/v1/runs")
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        with srv.client(write) as c:
            assert run_id in {r["id"] for r in c.get("/v1/runs").json()["runs"]}
            # The UI it mounts takes the same tokens.
            assert c.get("/ui/api/runs").status_code == 200
        with srv.client(read) as c:
            assert c.get("/ui/api/runs").status_code == 401


def test_a_server_takes_one_source_of_tokens(tmp_path: Path, module_database: str) -> None:
    s = ("server", "--store", str(tmp_path / "s"), "--port", "0", "--database", module_database)
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("write:0123456789abcdef0123\n")
    both = cli(*s, "--tokens-file", str(tokens_file))
    assert both.returncode == 1 and "--tokens-file" in both.stderr and "both give tokens" in both.stderr
    env = cli(*s, AMLTRACK_SERVER_TOKENS="write:0123456789abcdef0123")
    assert env.returncode == 1 and "$AMLTRACK_SERVER_TOKENS is set" in env.stderr, env.stderr


def test_a_server_whose_database_goes_away_answers_503_then_recovers(tmp_path: Path) -> None:
    name = unique_name()
    url = create_database(name)
    try:
        with Database.open(url) as db:
            write, _ = DatabaseTokens(db).create("ci", "write")
        with running_server(tmp_path / "srv", tokens=None, args=("--database", url)) as srv:
            with srv.client(write) as c:
                assert c.get("/v1/runs").status_code == 200
                # A real fault: the database is dropped under the server (FORCE ends its connections).
                drop_database(name)
                r = c.get("/v1/runs")
                assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
                assert r.headers["retry-after"].isdigit()
                r = c.get("/ui/api/runs")  # the UI it mounts says the same, not 500
                assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
                # It comes back (as after a restore): the same server answers again, not restarted.
                create_database(name)
                with Database.open(url) as db:
                    with db.connection() as conn:  # the same token, restored from a backup
                        conn.execute(
                            "INSERT INTO tokens (name, scope, digest) VALUES ('ci', 'write', sha256(%s))",
                            (write.encode(),),
                        )

                # The pool reconnects with a backoff, so the first answers may still be 503s.
                def answered() -> bool:
                    r = c.get("/v1/runs")
                    assert r.status_code in (200, 503), r.text
                    return r.status_code == 200

                wait_until(answered, 60, "the server to reach its database again")
            assert "Traceback" not in srv.log.read_text(), srv.log.read_text()
    finally:
        drop_database(name)


def test_the_server_package_loads_without_psycopg() -> None:
    # The team extra is optional: an embedded server must not pay for, or need, the database driver.
    code = "import sys, amltrack.server; print('psycopg' in sys.modules, 'psycopg_pool' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env())
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_the_tokens_benchmark_runs() -> None:
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_server_tokens.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert {"file_p50_ms", "database_p50_ms", "database_p99_ms"} <= set(figures)
