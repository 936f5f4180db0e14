"""The team server's PostgreSQL database: a connection pool and the versioned schema.

    db = Database.open("postgresql://amltrack@db.internal/amltrack")  # applies missing migrations
    with db.connection() as conn:
        conn.execute("SELECT 1")
    db.close()

The schema is ``MIGRATIONS``: ordered steps of SQL, version N being the first N of them applied. The
table ``schema_version`` holds one row per step applied. Opening applies the missing steps in one
transaction under a transaction-scoped advisory lock, so replicas that start at once cannot race:
the second waits on the lock, then finds nothing left to do; a step that fails rolls back whole.
A database whose schema is newer than this amltrack's is refused, since an older replica would
misread tables that a newer one changed. Needs the ``team`` extra (psycopg 3 and its pool); psycopg
is imported only when a database is opened, so ``amltrack.server`` loads without it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import AmltrackError, MissingExtraError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

# Append only: a released step never changes, since databases out there have applied it as it was.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: tokens, kept as SHA-256 digests; a name is unique among the tokens not revoked, so a
    # revoked name can be given again and `token revoke NAME` always means one token.
    (
        """CREATE TABLE tokens (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            scope text NOT NULL CHECK (scope IN ('read', 'write')),
            digest bytea NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )""",
        "CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL",
    ),
    # 2: runs, artifacts and assets (docs/deploy.md). The bytes live in the bucket as immutable
    # objects ("pieces"), each under a key of its own; these tables say which objects make up which
    # file, in order. A row is committed only after its object is in the bucket, so a published
    # run never names a missing object; an object no row names is garbage (`amltrack server gc`).
    (
        """CREATE TABLE runs (
            id text PRIMARY KEY,
            published boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            metrics_size bigint NOT NULL DEFAULT 0,
            manifest_size bigint NOT NULL DEFAULT 0,
            run_json bytea,
            summary_json bytea,
            info jsonb,
            listing jsonb,
            ranges jsonb NOT NULL DEFAULT '{}'::jsonb,
            fold jsonb
        )""",
        "CREATE INDEX runs_published_created ON runs (published, created_at)",
        """CREATE TABLE pieces (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            file text NOT NULL CHECK (file IN ('metrics.jsonl', 'artifacts.jsonl')),
            start bigint NOT NULL CHECK (start >= 0),
            length bigint NOT NULL CHECK (length > 0),
            key text NOT NULL UNIQUE,
            PRIMARY KEY (run_id, file, start)
        )""",
        """CREATE TABLE uploads (
            owner text NOT NULL,
            sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            total bigint NOT NULL CHECK (total >= 0),
            size bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (owner, sha256)
        )""",
        """CREATE TABLE upload_parts (
            owner text NOT NULL,
            sha256 text NOT NULL,
            start bigint NOT NULL CHECK (start >= 0),
            length bigint NOT NULL CHECK (length > 0),
            key text NOT NULL UNIQUE,
            PRIMARY KEY (owner, sha256, start),
            FOREIGN KEY (owner, sha256) REFERENCES uploads (owner, sha256) ON DELETE CASCADE
        )""",
        """CREATE TABLE blobs (
            sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            size bigint NOT NULL CHECK (size >= 0),
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE blob_parts (
            sha256 text NOT NULL REFERENCES blobs (sha256) ON DELETE CASCADE,
            start bigint NOT NULL CHECK (start >= 0),
            length bigint NOT NULL CHECK (length > 0),
            key text NOT NULL UNIQUE,
            PRIMARY KEY (sha256, start)
        )""",
        """CREATE TABLE artifacts (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            path text NOT NULL,
            sha256 text NOT NULL REFERENCES blobs (sha256),
            size bigint NOT NULL,
            PRIMARY KEY (run_id, path)
        )""",
        "CREATE INDEX artifacts_sha256 ON artifacts (sha256)",
        """CREATE TABLE assets (
            name text NOT NULL,
            version integer NOT NULL CHECK (version >= 1),
            info jsonb NOT NULL,
            origin text,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (name, version),
            UNIQUE (name, origin)
        )""",
        """CREATE TABLE asset_files (
            name text NOT NULL,
            version integer NOT NULL,
            path text NOT NULL,
            sha256 text NOT NULL REFERENCES blobs (sha256),
            size bigint NOT NULL,
            PRIMARY KEY (name, version, path),
            FOREIGN KEY (name, version) REFERENCES assets (name, version) ON DELETE CASCADE
        )""",
        "CREATE INDEX asset_files_sha256 ON asset_files (sha256)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# Any fixed 64-bit key: pg_advisory_xact_lock's key space is the database's, and only amltrack
# takes this one ("amltrack" in ASCII).
_MIGRATION_LOCK = int.from_bytes(b"amltrack", "big") & 0x7FFF_FFFF_FFFF_FFFF
POOL_SIZE = 8
CONNECT_TIMEOUT = 10.0  # seconds to wait for the database at start
# Seconds a request waits for a pooled connection: long enough to ride out a burst that has every
# connection busy, short enough that a client of a database gone away gets its 503 and backs off.
REQUEST_TIMEOUT = 5.0


class DatabaseError(AmltrackError, ConnectionError):
    """The database cannot be reached or used; the message names it (without its password)."""


class SchemaTooNewError(AmltrackError, RuntimeError):
    """The database's schema is newer than this amltrack's: a newer amltrack migrated it."""

    def __init__(self, found: int, known: int) -> None:
        self.found, self.known = found, known
        super().__init__(
            f"the database's schema is version {found}, newer than this amltrack's {known}: a newer "
            "amltrack migrated it; upgrade amltrack here (pip install -U 'amltrack[team]')"
        )


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def check_url(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in ("postgresql", "postgres"):
        raise DatabaseError(
            f"--database {redacted(url)!r} is not a PostgreSQL URL; write postgresql://USER@HOST/DB"
        )
    return url


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The version of the schema ``conn``'s database holds: 0 for a database amltrack never used."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(found[0]) if found else 0


def migrate(conn: psycopg.Connection[Any], target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Apply the steps after the database's version up to ``target``, in one transaction under the
    advisory lock; (version before, version after). Refuses a schema newer than ``SCHEMA_VERSION``."""
    if not 0 <= target <= SCHEMA_VERSION:
        raise ValueError(f"target {target!r} is not a schema version (0 to {SCHEMA_VERSION})")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaTooNewError(found, SCHEMA_VERSION)
        for version in range(found + 1, target + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement.encode())  # bytes: a literal query, no placeholders to parse
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return found, max(found, target)


class Database:
    """A pool of connections to the team server's database, whose schema is this amltrack's."""

    def __init__(self, url: str, pool: ConnectionPool[Any]) -> None:
        self.url, self._pool = url, pool

    @classmethod
    def open(
        cls,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        timeout: float = REQUEST_TIMEOUT,
        migrate_schema: bool = True,
    ) -> Database:
        """Connect, and bring the schema to this amltrack's version (``migrate_schema``), or refuse."""
        check_url(url)
        try:
            import psycopg
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError as e:
            raise MissingExtraError("the team server's database", e.name or "psycopg", "team") from None
        try:
            # One connection of its own first: its failure says why (a pool's says only "timeout").
            with psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)) as conn:
                if migrate_schema:
                    migrate(conn)
                elif (found := schema_version(conn)) > SCHEMA_VERSION:
                    raise SchemaTooNewError(found, SCHEMA_VERSION)
        except psycopg.Error as e:
            raise DatabaseError(f"cannot use the database {redacted(url)}: {_reason(e)}") from None
        pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout,
            # No check= here: the pool's pauses 1 s, 2 s, 4 s... after each broken connection it
            # meets, so once PostgreSQL ended them all (a restart, a failover) a request timed out
            # on a pool of dead connections. ``connection`` checks them itself.
            name="amltrack-db",  # its worker threads are named from it: the tests' leak check sees them
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout as e:
            pool.close()
            raise DatabaseError(f"cannot use the database {redacted(url)}: {_reason(e)}") from None
        db = cls(url, pool)
        return db

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection from the pool; its transaction commits at the end, or rolls back on error."""
        conn = self._working()
        try:
            with conn:
                yield conn
        finally:
            self._pool.putconn(conn)

    def _working(self) -> psycopg.Connection[Any]:
        """A pooled connection that answers. One the server closed (PostgreSQL restarted, or ended
        it) is closed here and handed back, which makes the pool replace it, and the next is tried
        at once: a replica recovers without a restart, and without waiting on each dead connection."""
        from psycopg_pool import ConnectionPool, PoolTimeout

        deadline = time.monotonic() + self._pool.timeout
        for _ in range(self._pool.max_size + 1):
            conn = self._pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
            try:
                ConnectionPool.check_connection(conn)
            except Exception:  # noqa: BLE001 - whatever broke it, the connection is not to be used
                conn.close()
                self._pool.putconn(conn)
                continue
            return conn
        raise PoolTimeout(f"no working connection among {self._pool.max_size + 1} taken from the pool")

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(e: BaseException) -> str:
    """psycopg's message on one line (the server's own spans several)."""
    return " ".join(str(e).split()) or type(e).__name__
