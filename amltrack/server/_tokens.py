"""The team server's tokens, as rows of the database: made, listed, revoked, and checked per request.

    tokens = DatabaseTokens(Database.open("postgresql://amltrack@db.internal/amltrack"))
    secret, info = tokens.create("ci", "write")  # the secret is shown once and never stored
    tokens.scope_of(secret)                      # "write"
    tokens.revoke("ci")

A token is stored as the SHA-256 of the secret, not as a password hash (bcrypt, argon2): the secret
is 32 random bytes from ``secrets``, so there is no dictionary to guess from and nothing for a slow
hash to protect; a fast one lets every request be checked with one indexed lookup. Looking the
digest up by equality leaks nothing useful through timing: learning that a digest's first bytes
match does not bring an attacker nearer a secret that hashes to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._errors import AmltrackError
from .._web._auth import SCOPES, TokenCheck, digest, new_token
from .._web._errors import ApiError
from ._database import Database

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# Seconds a 503 of the team server asks clients to wait (its database or bucket briefly away): about
# how long a pool takes to reconnect after PostgreSQL restarts; botocore has retried the bucket already.
RETRY_AFTER = "2"


class InvalidTokenNameError(AmltrackError, ValueError):
    """A token name that is not valid, or that a live token already has."""


class TokenNotFoundError(AmltrackError, LookupError):
    """No live token has that name or id."""


@dataclass(frozen=True)
class TokenInfo:
    """A token as ``token list`` shows it: never its secret, which the database does not hold."""

    id: int
    name: str
    scope: str
    created: datetime
    revoked: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created": self.created.isoformat(),
            "revoked": None if self.revoked is None else self.revoked.isoformat(),
        }


_COLUMNS = "id, name, scope, created_at, revoked_at"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.isdigit():
        raise InvalidTokenNameError(
            f"token name {name!r} is not valid; use 1 to 64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit and not all digits (an all-digit name would read as an id)"
        )
    return name


class DatabaseTokens(TokenCheck):
    """The tokens of a team server whose ``--database`` holds them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> str:
        return "tokens in the database"

    def create(self, name: str, scope: str) -> tuple[str, TokenInfo]:
        """A new token: its secret (show it once: it cannot be had again) and its row."""
        check_name(name)
        if scope not in SCOPES:
            raise InvalidTokenNameError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        import psycopg

        secret = new_token()
        try:
            with self.db.connection() as conn:
                row = conn.execute(
                    f"INSERT INTO tokens (name, scope, digest) VALUES (%s, %s, %s) RETURNING {_COLUMNS}",
                    (name, scope, digest(secret)),
                ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise InvalidTokenNameError(
                f"a token named {name!r} exists; revoke it first ('amltrack server token revoke {name}') "
                "or pick another --name"
            ) from None
        assert row is not None
        return secret, TokenInfo(*row)

    def list(self, *, revoked: bool = False) -> list[TokenInfo]:
        """The live tokens, oldest first; ``revoked`` adds the revoked ones."""
        where = "" if revoked else " WHERE revoked_at IS NULL"
        with self.db.connection() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM tokens{where} ORDER BY id").fetchall()
        return [TokenInfo(*row) for row in rows]

    def revoke(self, name_or_id: str) -> TokenInfo:
        """Revoke the live token of that name, or of that id (names are never all digits)."""
        column = "id" if name_or_id.isdigit() else "name"
        key: int | str = int(name_or_id) if column == "id" else name_or_id
        with self.db.connection() as conn:
            row = conn.execute(
                f"UPDATE tokens SET revoked_at = now() WHERE {column} = %s AND revoked_at IS NULL "
                f"RETURNING {_COLUMNS}",
                (key,),
            ).fetchone()
        if row is None:
            raise TokenNotFoundError(
                f"no live token has the {column} {name_or_id!r}; 'amltrack server token list' shows them"
            )
        return TokenInfo(*row)

    def scope_of(self, token: str) -> str | None:
        """The scope of a live token, or None. A database that cannot answer is a 503 with
        Retry-After, which clients retry: a restart of PostgreSQL must not read as a bad token."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.db.connection() as conn:
                row = conn.execute(
                    "SELECT scope FROM tokens WHERE digest = %s AND revoked_at IS NULL", (digest(token),)
                ).fetchone()
        except (psycopg.OperationalError, PoolTimeout):
            raise ApiError(
                503,
                "unavailable",
                "the server cannot reach its database just now; retry shortly",
                headers={"Retry-After": RETRY_AFTER},
            ) from None
        return None if row is None else str(row[0])
