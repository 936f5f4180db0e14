"""Databases of their own on the PostgreSQL at 127.0.0.1:5432 (trust authentication), for the team
server's tests: each one created with a unique name and dropped after, whatever the test left in it."""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

HOST = "127.0.0.1:5432"
MAINTENANCE_DB = "test"  # exists on these machines, to connect to for CREATE and DROP DATABASE


def _user() -> str:
    """``postgres`` if it may connect, else the current user (trust authentication either way)."""
    for user in ("postgres", getpass.getuser()):
        try:
            with psycopg.connect(f"postgresql://{user}@{HOST}/{MAINTENANCE_DB}", connect_timeout=5):
                return user
        except psycopg.OperationalError:
            continue
    raise AssertionError(
        f"no PostgreSQL at {HOST} that postgres or {getpass.getuser()} may use; .ci/run starts it "
        "(pg_ctlcluster --skip-systemctl-redirect VERSION main start)"
    )


USER = _user()
ADMIN_URL = f"postgresql://{USER}@{HOST}/{MAINTENANCE_DB}"


def url_of(name: str) -> str:
    return f"postgresql://{USER}@{HOST}/{name}"


def create_database(name: str) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url_of(name)


def drop_database(name: str) -> None:
    # FORCE: a server process a failing test left running must not keep the database alive.
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def unique_name() -> str:
    return f"amltrack_test_{os.getpid()}_{secrets.token_hex(4)}"


@contextmanager
def scratch_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped when the block ends."""
    name = unique_name()
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)
