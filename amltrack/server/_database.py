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

# Step 3's statements: the query language's rules as SQL functions (see MIGRATIONS, step 3).
# No backslashes anywhere: a function body's strings are read with the session's settings, and
# [[:space:]] under COLLATE "C" is exactly Python's ASCII whitespace (amltrack/_query.py).
_NUMBER_RE = "'^[[:space:]]*[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?[[:space:]]*$'"
_INT_RE = "'^[[:space:]]*[+-]?[0-9]+[[:space:]]*$'"
_SQL_FLOAT = "'^(NaN|-?Infinity|-?[0-9]+([.][0-9]+)?(e[+-][0-9]+)?)$'"
_QUERY_FUNCTIONS: tuple[str, ...] = (
    # Python's float() of an exact decimal: correctly rounded, to an infinity or 0 beyond a double's
    # range where PostgreSQL's float8 cast would raise instead.
    """CREATE FUNCTION amltrack_float_of(n numeric) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN n = 0 THEN 0::float8
        WHEN abs(n) BETWEEN 1e-300 AND 1e300 THEN n::float8
        WHEN abs(n) >= power(2::numeric, 1024) - power(2::numeric, 970)
            THEN CASE WHEN n > 0 THEN 'Infinity'::float8 ELSE '-Infinity'::float8 END
        WHEN abs(n) * power(2::numeric, 1075) <= 1 THEN 0::float8
        ELSE n::float8
    END $$""",
    # float() of a numeric string (ASCII, under 64 characters): an exponent of 1000 or more is
    # out of a double's range whatever the digits before it, and out of numeric's too.
    """CREATE FUNCTION amltrack_text_float(t text) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN (t COLLATE "C") !~ '[eE][+-]?0*[1-9][0-9]{3}' THEN amltrack_float_of(t::numeric)
        WHEN (t COLLATE "C") ~ '^[[:space:]]*[+-]?[0.]*[eE]' THEN 0::float8
        WHEN (t COLLATE "C") ~ '[eE]-' THEN 0::float8
        WHEN (t COLLATE "C") ~ '^[[:space:]]*-' THEN '-Infinity'::float8
        ELSE 'Infinity'::float8
    END $$""",
    # Whether a JSON number is a float: jsonb keeps its digits but not how they were written, and
    # run.json writes a float of 1e16 or more with an exponent (1.152921504606847e+18), which jsonb
    # keeps as an integer. A float's shortest text has at most 17 significant digits; an int that
    # big rarely has so few, and when it is exactly a double the two are equal anyway.
    """CREATE FUNCTION amltrack_is_float(n numeric) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT scale(n) > 0 OR (abs(n) >= 1e16 AND length(rtrim(abs(n)::text, '0')) <= 17) $$""",
    # as_number(v) when it is an int: a JSON integer, or a string of an integer.
    f"""CREATE FUNCTION amltrack_int(v jsonb) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'number' THEN CASE WHEN NOT amltrack_is_float(v::numeric) THEN v::numeric END
        WHEN 'string' THEN CASE
            WHEN length(v #>> '{{}}') < 64 AND ((v #>> '{{}}') COLLATE "C") ~ {_INT_RE}
            THEN (v #>> '{{}}')::numeric END
    END $$""",
    # as_number(v) when it is a float: a JSON number written as one, a float made here, or a
    # string of a decimal number that is not an integer.
    f"""CREATE FUNCTION amltrack_float(v jsonb) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'number' THEN CASE WHEN amltrack_is_float(v::numeric) THEN amltrack_float_of(v::numeric) END
        WHEN 'string' THEN CASE
            WHEN length(v #>> '{{}}') < 64 AND ((v #>> '{{}}') COLLATE "C") ~ {_NUMBER_RE}
                AND ((v #>> '{{}}') COLLATE "C") !~ {_INT_RE}
            THEN amltrack_text_float(v #>> '{{}}') END
        WHEN 'object' THEN CASE
            WHEN ((v ->> 'amltrack:float') COLLATE "C") ~ {_SQL_FLOAT}
            THEN (v ->> 'amltrack:float')::float8 END
    END $$""",
    # _bool_of(v): a bool, or the string "true"/"false" in any case.
    """CREATE FUNCTION amltrack_bool(v jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'boolean' THEN v::boolean
        WHEN 'string' THEN CASE
            WHEN ((v #>> '{}') COLLATE "C") ~ '^[Tt][Rr][Uu][Ee]$' THEN true
            WHEN ((v #>> '{}') COLLATE "C") ~ '^[Ff][Aa][Ll][Ss][Ee]$' THEN false END
    END $$""",
    # A float made here (NaN, an infinity, a duration): {"amltrack:float": its shortest text}.
    """CREATE FUNCTION amltrack_wrap(f double precision) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET extra_float_digits = 1 AS $$
    SELECT CASE WHEN f IS NOT NULL THEN jsonb_build_object('amltrack:float', f::text) END $$""",
    # Python's repr() of a float, from PostgreSQL's shortest text of it (1e+15 is 1000000000000000.0).
    """CREATE FUNCTION amltrack_repr(f double precision) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET extra_float_digits = 1 AS $$
    DECLARE
        m text[];
        digits text;
        point int;
        e int;
    BEGIN
        IF f IS NULL THEN RETURN NULL; END IF;
        IF f = 'NaN'::float8 THEN RETURN 'nan'; END IF;
        IF f = 'Infinity'::float8 THEN RETURN 'inf'; END IF;
        IF f = '-Infinity'::float8 THEN RETURN '-inf'; END IF;
        m := regexp_match(f::text, '^(-?)([0-9]+)(?:[.]([0-9]+))?(?:e([+-][0-9]+))?$');
        digits := m[2] || coalesce(m[3], '');
        point := length(m[2]) + coalesce(m[4]::int, 0);
        WHILE length(digits) > 1 AND left(digits, 1) = '0' LOOP
            digits := substr(digits, 2);
            point := point - 1;
        END LOOP;
        digits := rtrim(digits, '0');
        IF digits = '' THEN RETURN m[1] || '0.0'; END IF;
        e := point - 1;
        IF e < -4 OR e >= 16 THEN
            RETURN m[1] || left(digits, 1)
                || CASE WHEN length(digits) > 1 THEN '.' || substr(digits, 2) ELSE '' END
                || 'e' || CASE WHEN e < 0 THEN '-' ELSE '+' END
                || CASE WHEN abs(e) < 10 THEN '0' ELSE '' END || abs(e)::text;
        ELSIF point <= 0 THEN
            RETURN m[1] || '0.' || repeat('0', -point) || digits;
        ELSIF point >= length(digits) THEN
            RETURN m[1] || digits || repeat('0', point - length(digits)) || '.0';
        END IF;
        RETURN m[1] || left(digits, point) || '.' || substr(digits, point + 1);
    END $$""",
    # _as_text(v), what a glob matches: a string, true/false, an int's digits, a float's repr.
    """CREATE FUNCTION amltrack_text(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'string' THEN v #>> '{}'
        WHEN 'boolean' THEN v::text
        WHEN 'number' THEN CASE
            WHEN amltrack_is_float(v::numeric) THEN amltrack_repr(amltrack_float(v)) ELSE v::text END
        WHEN 'object' THEN amltrack_repr(amltrack_float(v))
    END $$""",
    # The exact value of a float that is an integer, to compare it with ints that round to the same
    # double (2**60 and 2.0**60 are equal in Python, 2**60 + 1 is greater); NULL for any other float,
    # which no int rounds to.
    """CREATE FUNCTION amltrack_exact(f double precision) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN f IS NULL OR f = 'NaN'::float8 OR f = 'Infinity'::float8 OR f = '-Infinity'::float8
            OR f <> trunc(f) THEN NULL
        WHEN abs(f) < 9e18 THEN f::bigint::numeric
        ELSE (SELECT (f / power(2::float8, k))::bigint::numeric * power(2::numeric, k)
              FROM (SELECT floor(ln(abs(f)) / ln(2))::int - 54 AS k) s)
    END $$""",
    # A metric's last value as RunRow reads it from the listing: NaN and infinities that
    # summary.json spells as strings, for a number or list metric, are floats.
    """CREATE FUNCTION amltrack_last(s jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(s) = 'object' THEN CASE
        WHEN jsonb_typeof(s -> 'last') = 'string' AND s ->> 'kind' IN ('number', 'list')
            AND s ->> 'last' IN ('NaN', 'Infinity', '-Infinity')
        THEN jsonb_build_object('amltrack:float', s -> 'last')
        ELSE nullif(s -> 'last', 'null'::jsonb) END
    END $$""",
    # A metric's min (i = 0) or max (1) from the ranges column: {name: [min, max]}.
    """CREATE FUNCTION amltrack_bound(r jsonb, i int) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(r) = 'array' AND jsonb_array_length(r) = 2 THEN CASE
        WHEN jsonb_typeof(r -> i) = 'string' AND r ->> i IN ('NaN', 'Infinity', '-Infinity')
        THEN jsonb_build_object('amltrack:float', r -> i)
        ELSE nullif(r -> i, 'null'::jsonb) END
    END $$""",
    # Run.status as a server can tell it: a run on file as running whose last heartbeat (or, with
    # none, its creation) is CRASH_AFTER (120 s) old or older at `now` is crashed. The file store
    # also asks the process itself when the run is on its own host; a server never can.
    """CREATE FUNCTION amltrack_status(info jsonb, listing jsonb, now double precision) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(info -> 'status') IS DISTINCT FROM 'string'
            OR info ->> 'status' NOT IN ('running', 'completed', 'failed', 'killed', 'crashed')
        THEN 'unknown'
        WHEN info ->> 'status' <> 'running' THEN info ->> 'status'
        WHEN now - coalesce(
            CASE WHEN jsonb_typeof(listing -> 'heartbeat') = 'number'
                THEN (listing ->> 'heartbeat')::float8 END,
            CASE WHEN jsonb_typeof(info -> 'created_ts') = 'number'
                THEN (info ->> 'created_ts')::float8 END) < 120
        THEN 'running'
        ELSE 'crashed'
    END $$""",
    # RunRow.attr("duration"): to the end, to `now` for a running run, or for a crashed one to its
    # last sign of life (its heartbeat or a metric's last record, whichever is later).
    """CREATE FUNCTION amltrack_duration(info jsonb, listing jsonb, now double precision) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(info -> 'created_ts') = 'number' THEN (
        SELECT amltrack_wrap(greatest(0::float8, e - (info ->> 'created_ts')::float8))
        FROM (SELECT CASE
            WHEN jsonb_typeof(info -> 'ended_ts') = 'number' THEN (info ->> 'ended_ts')::float8
            WHEN amltrack_status(info, listing, now) = 'running' THEN now
            ELSE (SELECT max(x) FROM (
                SELECT CASE WHEN jsonb_typeof(listing -> 'heartbeat') = 'number'
                    THEN (listing ->> 'heartbeat')::float8 END AS x
                UNION ALL
                SELECT CASE WHEN jsonb_typeof(m.value -> 'ts') = 'number'
                    THEN (m.value ->> 'ts')::float8 END
                FROM jsonb_each(CASE WHEN jsonb_typeof(listing -> 'metrics') = 'object'
                    THEN listing -> 'metrics' ELSE '{}'::jsonb END) m) signs)
        END AS e) ends WHERE e IS NOT NULL)
    END $$""",
    # How a value sorts (_query._sort_value): 0 a number (a numeric string too), 1 a string, 2 a
    # bool; NULL for NaN and anything else, which sort last.
    """CREATE FUNCTION amltrack_rank(v jsonb) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE
        WHEN coalesce(amltrack_int(v)::float8, amltrack_float(v)) <> 'NaN'::float8 THEN 0
        WHEN coalesce(amltrack_int(v)::float8, amltrack_float(v)) IS NOT NULL THEN NULL
        WHEN jsonb_typeof(v) = 'string' THEN 1
        WHEN jsonb_typeof(v) = 'boolean' THEN 2
    END)::smallint $$""",
    # Every param, tag and metric figure of every run, one row each, kept by triggers on `runs`
    # (below), with the columns a query sorts and narrows by: so that a listing of 100,000 runs
    # reads indexes, never every run's jsonb. A run also has one row of scope '' that carries
    # `published`, the list of runs a query starts from. `value` is what _sqlquery reads the key
    # as; the rest are made from it (amltrack_sort_columns).
    """CREATE TABLE run_keys (
        run_id text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE ON UPDATE CASCADE,
        scope text NOT NULL,
        name text NOT NULL,
        field text NOT NULL,
        published boolean,
        value jsonb,
        rank smallint,
        num double precision,
        exact numeric,
        str text COLLATE "C",
        bool boolean,
        text text COLLATE "C",
        PRIMARY KEY (run_id, scope, name, field)
    )""",
    "CREATE INDEX run_keys_runs ON run_keys (published, run_id) WHERE scope = ''",
    # A key's runs in its order (a listing sorted by it walks this and stops at a page), and its
    # numbers by value (a condition on a number narrows to a range of this).
    "CREATE INDEX run_keys_order ON run_keys (scope, name, field, rank, num, exact, str, bool, run_id)",
    "CREATE INDEX run_keys_text ON run_keys (scope, name, field, text)",
    # The planner's estimates multiply the columns' selectivities, which here are anything but
    # independent (a name has its scope, its values; the runs' rows are the published ones): it
    # took 8,334 runs of params.bs = 32 for 7, and chose plans a hundred times slower.
    "CREATE STATISTICS run_keys_values (dependencies, mcv) ON scope, name, field, rank, num FROM run_keys",
    "CREATE STATISTICS run_keys_texts (dependencies, mcv) ON scope, name, field, text FROM run_keys",
    "CREATE STATISTICS run_keys_published (mcv) ON scope, published FROM run_keys",
    # The keys of a run's run.json (info), listing and ranges, each part when not NULL.
    """CREATE FUNCTION amltrack_key_rows(id text, info jsonb, listing jsonb, ranges jsonb)
    RETURNS TABLE (run_id text, scope text, name text, field text, value jsonb)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT id, 'params', e.key, '', e.value
    FROM jsonb_each(CASE WHEN jsonb_typeof(info -> 'params') = 'object' THEN info -> 'params' END) e
    WHERE e.value <> 'null'::jsonb
    UNION ALL
    SELECT id, 'tags', e.key, '', e.value
    FROM jsonb_each(CASE WHEN jsonb_typeof(info -> 'tags') = 'object' THEN info -> 'tags' END) e
    WHERE e.value <> 'null'::jsonb
    UNION ALL
    SELECT id, 'metrics', e.key, f.field, f.value
    FROM jsonb_each(CASE WHEN jsonb_typeof(listing -> 'metrics') = 'object'
        THEN listing -> 'metrics' END) e,
    LATERAL (VALUES ('last', amltrack_last(e.value)),
        ('count', CASE WHEN jsonb_typeof(e.value) = 'object'
            THEN nullif(e.value -> 'count', 'null'::jsonb) END)) f (field, value)
    WHERE f.value IS NOT NULL
    UNION ALL
    SELECT id, 'metrics', e.key, f.field, f.value
    FROM jsonb_each(CASE WHEN jsonb_typeof(ranges) = 'object' THEN ranges END) e,
    LATERAL (VALUES ('min', amltrack_bound(e.value, 0)), ('max', amltrack_bound(e.value, 1)))
        f (field, value)
    WHERE f.value IS NOT NULL $$""",
    # A value in the columns that compare and sort it (_query._comparer, _query._sort_value): rank
    # 0 a number (a numeric string too), 1 a string, 2 a bool, NULL for NaN and the rest; the number
    # as a double and, when it is an integer, exactly; a string that is no number; a bool; and the
    # text of any string, numeric or not, which a string compares with.
    """CREATE FUNCTION amltrack_sort_columns(v jsonb)
    RETURNS TABLE (rank smallint, num double precision, exact numeric, str text, bool boolean, text text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT r, CASE WHEN r = 0 THEN n END, CASE WHEN r = 0 THEN coalesce(i, amltrack_exact(f)) END,
        CASE WHEN r = 1 THEN v #>> '{}' END,
        CASE WHEN jsonb_typeof(v) = 'boolean' THEN v::boolean END,
        CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END
    FROM (SELECT i, f, n, (CASE WHEN n <> 'NaN'::float8 THEN 0 WHEN n IS NOT NULL THEN NULL
            WHEN jsonb_typeof(v) = 'string' THEN 1 WHEN jsonb_typeof(v) = 'boolean' THEN 2
            END)::smallint AS r
        FROM (SELECT i, f, coalesce(i::float8, f) AS n
            FROM (SELECT amltrack_int(v) AS i, amltrack_float(v) AS f OFFSET 0) p OFFSET 0) q) c $$""",
    """CREATE FUNCTION amltrack_put_keys(id text, info jsonb, listing jsonb, ranges jsonb)
    RETURNS void LANGUAGE sql AS $$
    INSERT INTO run_keys (run_id, scope, name, field, value, rank, num, exact, str, bool, text)
    SELECT k.run_id, k.scope, k.name, k.field, k.value, c.rank, c.num, c.exact, c.str, c.bool, c.text
    FROM amltrack_key_rows(id, info, listing, ranges) k, amltrack_sort_columns(k.value) c $$""",
    # Runs added (one INSERT, or a COPY of many): their keys in one statement.
    """CREATE FUNCTION amltrack_keys_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO run_keys (run_id, scope, name, field, published)
        SELECT a.id, '', '', '', a.published FROM added a;
        INSERT INTO run_keys (run_id, scope, name, field, value, rank, num, exact, str, bool, text)
        SELECT k.run_id, k.scope, k.name, k.field, k.value, c.rank, c.num, c.exact, c.str, c.bool, c.text
        FROM added a, amltrack_key_rows(a.id, a.info, a.listing, a.ranges) k,
            amltrack_sort_columns(k.value) c;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER runs_keys_added AFTER INSERT ON runs REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION amltrack_keys_added()""",
    # A run changed: only the part that changed is rewritten (a push of summary.json rewrites the
    # metrics' last values and counts, not the params).
    """CREATE FUNCTION amltrack_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.published IS DISTINCT FROM OLD.published THEN
            UPDATE run_keys SET published = NEW.published WHERE run_id = NEW.id AND scope = '';
        END IF;
        IF NEW.info IS DISTINCT FROM OLD.info THEN
            DELETE FROM run_keys WHERE run_id = NEW.id AND scope IN ('params', 'tags');
            PERFORM amltrack_put_keys(NEW.id, NEW.info, NULL, NULL);
        END IF;
        IF NEW.listing IS DISTINCT FROM OLD.listing THEN
            DELETE FROM run_keys
            WHERE run_id = NEW.id AND scope = 'metrics' AND field IN ('last', 'count');
            PERFORM amltrack_put_keys(NEW.id, NULL, NEW.listing, NULL);
        END IF;
        IF NEW.ranges IS DISTINCT FROM OLD.ranges THEN
            DELETE FROM run_keys WHERE run_id = NEW.id AND scope = 'metrics' AND field IN ('min', 'max');
            PERFORM amltrack_put_keys(NEW.id, NULL, NULL, NEW.ranges);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER runs_keys_changed AFTER UPDATE OF published, info, listing, ranges ON runs
    FOR EACH ROW EXECUTE FUNCTION amltrack_keys_changed()""",
    # str.lower() for plain-text search: ICU's full case mapping (final sigma, dotted I) where
    # PostgreSQL has ICU, else the database's own.
    """DO $$ BEGIN
        EXECUTE format(
            'CREATE FUNCTION amltrack_lower(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE '
            'AS %L', CASE WHEN EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')
                THEN 'SELECT lower(t COLLATE "und-x-icu")' ELSE 'SELECT lower(t)' END);
    END $$""",
)

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
    # 3: the query language in SQL (amltrack/server/_sqlquery.py owns the meaning; these functions
    # are its vocabulary). Each mirrors a rule of amltrack/_query.py over the jsonb of `runs`: a
    # value is jsonb, NULL when absent, and a float JSON cannot hold (NaN, an infinity) or one
    # computed here is the object {"amltrack:float": TEXT}. IMMUTABLE SQL, so the planner inlines them.
    _QUERY_FUNCTIONS,
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
