"""Replicas of a team server for the tests: real ``amltrack server --database --objects`` processes over
a database of their own on the PostgreSQL at 127.0.0.1:5432 and a bucket of their own on a real moto
server process, and the runs they hold read back as plain folders through the public S3 API."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amltrack._web._auth import digest

from .bucket_helpers import AWS_ENV, MotoServer
from .database_helpers import create_database, drop_database, unique_name
from .sync_helpers import READ_TOKEN, WRITE_TOKEN, ServerProcess


class Team:
    """A database and a bucket that replicas share; ``store()`` opens them as a TeamStore here."""

    def __init__(self, moto: MotoServer, database: str) -> None:
        self.moto = moto
        self.database = database
        self.bucket = moto.new_bucket()
        self.objects = f"s3://{self.bucket}/team"
        with psycopg.connect(database) as conn:
            from amltrack.server._database import migrate

            migrate(conn)
            # The tests' fixed tokens, as `token create` would keep them: digests only.
            for name, scope, token in (
                ("tests-write", "write", WRITE_TOKEN),
                ("tests-read", "read", READ_TOKEN),
            ):
                conn.execute(
                    "INSERT INTO tokens (name, scope, digest) VALUES (%s, %s, %s)",
                    (name, scope, digest(token)),
                )
        self._store: Any = None
        self._mirror = Path(tempfile.mkdtemp(prefix="amltrack-team-copy-"))

    def args(self) -> list[str]:
        return [
            "--database",
            self.database,
            "--objects",
            self.objects,
            "--objects-endpoint",
            self.moto.endpoint,
        ]

    def store(self) -> Any:
        """The team's TeamStore in this process (as a replica would open it)."""
        if self._store is None:
            from amltrack.server import Database, Objects, TeamStore

            with environ(AWS_ENV):
                objects = Objects.open(self.objects, endpoint=self.moto.endpoint)
            self._store = TeamStore(Database.open(self.database), objects)
        return self._store

    def published_copy(self) -> Path:
        """The published runs as a local store's folder, read back from the database and the bucket."""
        # Opened and closed each time: the tests check that no thread (a pool's) outlives a test.
        store = self.store()
        try:
            store.mirror(self._mirror)
        finally:
            store.close()
            self._store = None
        return self._mirror

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        import shutil

        shutil.rmtree(self._mirror, ignore_errors=True)


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    import os

    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def team_of(moto: MotoServer) -> Iterator[Team]:
    name = unique_name()
    team = Team(moto, create_database(name))
    try:
        yield team
    finally:
        team.close()
        drop_database(name)


class ReplicaProcess(ServerProcess):
    """``python -m amltrack server --database ... --objects ...``: one replica of ``team``.

    ``store`` is the team's published runs as a folder, read back afresh at each use, so the tests
    written against the embedded server's ``srv.store / "runs" / ID`` check a replica the same way.
    """

    def __init__(self, team: Team, log: Path, **kwargs: Any) -> None:
        kwargs.setdefault("tokens", None)  # the database holds them
        kwargs["env"] = {**AWS_ENV, **kwargs.get("env", {})}
        super().__init__(Path("/nonexistent"), log, **kwargs)
        self.team = team

    def where(self) -> list[str]:
        return self.team.args()

    @property  # type: ignore[override]
    def store(self) -> Path:
        return self.team.published_copy()

    @store.setter
    def store(self, value: Path) -> None:
        pass


@pytest.fixture(scope="session")
def team_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server process for every team test of the session; each team has its own bucket."""
    from .bucket_helpers import moto_server

    with moto_server(tmp_path_factory.mktemp("team-moto")) as srv:
        yield srv


BACKENDS = ("embedded", "team")


@contextlib.contextmanager
def server_of(
    backend: str, d: Path, moto: MotoServer | None = None, **kwargs: Any
) -> Iterator[ServerProcess]:
    """A started server of either backend, with its files in ``d``: the embedded one over
    ``d/store``, or a replica of a new team (database and bucket of its own)."""
    d.mkdir(parents=True, exist_ok=True)
    if backend == "embedded":
        srv = ServerProcess(d / "store", d / "server.log", **kwargs).start()
        try:
            yield srv
        finally:
            srv.stop()
        return
    assert moto is not None
    with team_of(moto) as team:
        srv = ReplicaProcess(team, d / "server.log", **kwargs).start()
        try:
            yield srv
        finally:
            srv.stop()


def skip_on_team(srv: ServerProcess, why: str) -> None:
    if isinstance(srv, ReplicaProcess):
        pytest.skip(f"embedded server only: {why}")
