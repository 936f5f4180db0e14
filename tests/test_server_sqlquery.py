"""The query language as SQL (amltrack/server/_sqlquery.py) on a real PostgreSQL: for every
expression and order, the rows of ``runs`` it selects are the runs ``Store.runs`` selects from the
same runs in a file store, in the same order."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

import amltrack
from amltrack import _format as fmt
from amltrack import _query as q
from amltrack._query import And, Compare, In, IsNull, Key, Not, Or, OrderKey, Text
from amltrack.server._database import migrate
from amltrack.server._sqlquery import count_sql, history_sql, row_columns, translate

from .database_helpers import scratch_database
from .test_query_store import CASES, make_sweep


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with scratch_database() as url:
        with psycopg.connect(url) as conn:
            migrate(conn)
        yield url


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database, autocommit=True) as c:
        c.execute("DELETE FROM runs")
        yield c


def publish(conn: psycopg.Connection[Any], store: Path) -> list[str]:
    """Every run of the file store as the team store keeps it: a published row of ``runs``."""
    ids = []
    for run in amltrack.Store(store).runs():
        cols = row_columns(run)
        conn.execute(
            "INSERT INTO runs (id, published, info, listing, ranges, run_json, summary_json) "
            "VALUES (%s, true, %s, %s, %s, %s, %s)",
            (
                run.id,
                Jsonb(cols["info"]),
                Jsonb(cols["listing"]),
                Jsonb(cols["ranges"]),
                (run.dir / fmt.RUN_FILE).read_bytes(),
                _read(run.dir / fmt.SUMMARY_FILE),
            ),
        )
        ids.append(run.id)
    return ids


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def sql_ids(conn: psycopg.Connection[Any], filter: Any = None, order_by: Any = None, **kw: Any) -> list[str]:
    return [r[0] for r in history_sql(conn, filter=filter, order_by=order_by, **kw)]


def store_ids(store: Path, filter: Any = None, order_by: Any = None, **kw: Any) -> list[str]:
    return [r.id for r in amltrack.Store(store).runs(filter=filter, order_by=order_by or None, **kw)]


def agree(conn: psycopg.Connection[Any], store: Path, filter: Any = None, order_by: Any = None) -> list[str]:
    want = store_ids(store, filter, order_by)
    assert sql_ids(conn, filter, order_by) == want, (filter, order_by)
    return want


# --------------------------------------------------------------------------- the sweep's cases


@pytest.mark.parametrize(("expr", "order", "expected"), CASES)
def test_the_store_cases_select_the_same_runs_in_sql(
    conn: psycopg.Connection[Any], store: Path, expr: str | None, order: list[str], expected: list[str]
) -> None:
    make_sweep(store)
    publish(conn, store)
    got = agree(conn, store, expr, order)
    names = {r.id: r.name for r in amltrack.Store(store).runs()}
    assert [names[i] for i in got] == expected


def test_history_sql_gives_bytes_status_and_pages(conn: psycopg.Connection[Any], store: Path) -> None:
    ids = make_sweep(store)
    publish(conn, store)
    rows = history_sql(conn)
    assert [r[0] for r in rows] == ids[::-1]  # newest first
    rid, run_json, summary_json, status = rows[0]
    assert run_json == (store / fmt.RUNS_DIR / rid / fmt.RUN_FILE).read_bytes()
    assert summary_json == (store / fmt.RUNS_DIR / rid / fmt.SUMMARY_FILE).read_bytes()
    assert status == "completed"
    order = ["-metrics.acc"]
    assert sql_ids(conn, order_by=order, limit=2) == store_ids(store, order_by=order)[:2]
    assert sql_ids(conn, order_by=order, limit=2, offset=1) == store_ids(store, order_by=order)[1:3]
    assert count_sql(conn, filter="params.bs = 32") == 2
    assert sql_ids(conn, experiment="sweep", filter="params.bs = 32") == store_ids(
        store, experiment="sweep", filter="params.bs = 32"
    )
    assert sql_ids(conn, experiment="other") == []
    assert sql_ids(conn, status="completed", order_by="params.lr") == store_ids(
        store, status="completed", order_by="params.lr"
    )
    conn.execute("UPDATE runs SET published = false WHERE id = %s", (ids[0],))
    assert ids[0] not in sql_ids(conn)
    with pytest.raises(amltrack.QueryError, match="at column 12"):
        history_sql(conn, filter="params.lr >> 1")
    with pytest.raises(ValueError, match="bogus"):
        history_sql(conn, status="bogus")


# ------------------------------------------------------------------- a store of every kind of value

MIXED: list[dict[str, Any]] = [
    {"v": 32, "w": "adam", "t": "Vision"},
    {"v": "32", "w": "Adam", "t": "vision-ΣΑΣ"},
    {"v": " 32.0 ", "w": "adam_2", "t": "İstanbul"},
    {"v": 32.5, "w": "50%", "t": "ÄRGER"},
    {"v": "032", "w": "a_b", "t": "x"},
    {"v": "1e400", "w": "[x]", "t": None},
    {"v": "-1e-400", "w": "back\\slash", "t": "quote'd"},
    {"v": True, "w": "true", "t": "TRUE"},
    {"v": "False", "w": "FALSE", "t": "false"},
    {"v": 2**60, "w": "10", "t": "9"},
    {"v": 2.0**60, "w": "9", "t": "10"},
    {"v": 1e16, "w": "", "t": "'; DROP TABLE runs; --"},
    {"v": -0.5, "w": "ünïcödé", "t": "日本語"},
    {"v": 0.1, "w": "*", "t": "?"},
    {"v": "0.10000000000000001", "w": "a\nb", "t": "%_"},
    {"v": "३२", "w": "３２", "t": "32"},
    {"v": None, "w": None, "t": None},
    {"v": "nan", "w": "NaN", "t": "inf"},
    {"v": 9007199254740993, "w": "a-b", "t": "]"},
    {"v": 9007199254740992.0, "w": "é", "t": "E\u0301"},
]
METRICS: list[Any] = [
    0.5,
    math.nan,
    math.inf,
    -math.inf,
    "text",
    True,
    [1, 2, math.nan],
    [],
    3,
    None,
]


def make_mixed(store: Path) -> list[str]:
    """Runs whose params, tags and metrics hold every kind of value, mixed under each name."""
    ids = []
    for i, row in enumerate(MIXED):
        params = {k: v for k, v in row.items() if k != "t" and v is not None}
        tags = {"t": row["t"]} if row["t"] is not None else {}
        with amltrack.start_run(
            "mixed" if i % 3 else "other",
            name=f"m{i}-{row['t'] or ''}",
            params=params,
            tags=tags,
            store=store,
            outputs=None,
        ) as lg:
            m = METRICS[i % len(METRICS)]
            if m is not None:
                lg.log("m", m)
            lg.log("n", i % 4)
            if i % 2:
                lg.log("n", float(i))
            ids.append(lg.run_id)
        if i == 5:  # one run whose writer vanished two hours ago on another host: crashed
            crash(store / fmt.RUNS_DIR / lg.run_id)
        if i == 7:
            fail(store / fmt.RUNS_DIR / lg.run_id)
    return ids


def crash(run_dir: Path) -> None:
    info = orjson.loads((run_dir / fmt.RUN_FILE).read_bytes())
    info.update(status="running", hostname="elsewhere.example", created_ts=time.time() - 7200)
    for k in ("ended", "ended_ts"):
        info.pop(k, None)
    fmt.write_json_atomic(run_dir / fmt.RUN_FILE, info)
    summary = orjson.loads((run_dir / fmt.SUMMARY_FILE).read_bytes())
    summary["heartbeat"] = time.time() - 7000
    fmt.write_json_atomic(run_dir / fmt.SUMMARY_FILE, summary)


def fail(run_dir: Path) -> None:
    info = orjson.loads((run_dir / fmt.RUN_FILE).read_bytes())
    info["status"] = "failed"
    fmt.write_json_atomic(run_dir / fmt.RUN_FILE, info)


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("mixed") / "store"
    make_mixed(store)
    return store


@pytest.fixture
def mixed(conn: psycopg.Connection[Any], mixed_store: Path) -> Path:
    publish(conn, mixed_store)
    return mixed_store


EXPRESSIONS = [
    # numbers against numbers and numeric strings, each operator
    *(
        f"params.v {op} {lit}"
        for op in ("=", "!=", "<", "<=", ">", ">=")
        for lit in ("32", "32.0", "1e400", "-1e400")
    ),
    "params.v = 1152921504606846976",
    "params.v = 1.152921504606847e+18",
    "params.v > 1152921504606846975",
    "params.v = 9007199254740993",
    "params.v >= 9007199254740993",
    "params.v < 9007199254740993",
    "params.v = 9007199254740992",
    "params.v = 0.1",
    "params.v != 0.1",
    "params.v = 0",
    "params.v < 0",
    "params.v = 1e16",
    "params.v = 10000000000000000",
    # strings, numeric strings and bools as literals
    *(f"params.w {op} 'adam'" for op in ("=", "!=", "<", "<=", ">", ">=")),
    "params.w = '10'",
    "params.w < '9'",
    "params.v = '32'",
    "params.v != '32'",
    "params.v > '31'",
    "params.v = 'true'",
    "params.v = 'TRUE'",
    "params.w = true",
    "params.w != true",
    "params.v = false",
    "params.v != false",
    "params.v < true",
    "params.v = ''",
    "params.w = ''",
    "params.w = '３２'",
    "params.v = 'nan'",
    'params.w = "\'; DROP TABLE runs; --"',
    'tags.t = "\'; DROP TABLE runs; --"',
    # in, not in, null
    "params.v in (32, 'adam', true)",
    "params.v not in (32, 'adam', true)",
    "params.w in ('true', '9', 10)",
    "params.v is null",
    "params.v is not null",
    "tags.t is null",
    "not params.v = 32",
    "not (params.v = 32 or params.w = 'adam')",
    "params.v = 32 and not tags.t ~ 'V*'",
    # globs, with the characters LIKE and regexes treat specially
    *(
        f"params.w ~ {p}"
        for p in (
            "'a*'",
            "'*%'",
            "'a_b'",
            "'a?b'",
            "'[[]x]'",
            "'[x]'",
            "'back\\\\*'",
            "'*[!a-z]*'",
            "'[a-]*'",
            "'[z-a]*'",
            "'[!]'",
            "'[]]'",
            "'*'",
            "'?'",
            "'a*b'",
            "'é'",
            "'[^a]*'",
            "'.*'",
            "'a.b'",
            "'(a)'",
            "'$'",
        )
    ),
    "params.v ~ '3*'",
    "params.v ~ '*.0'",
    "params.v ~ '1.1*'",
    "params.v ~ 'true'",
    "params.v ~ '-0.5'",
    "params.v ~ '0.1'",
    "tags.t ~ '*Σ'",
    # metrics: last, min, max, count, with NaN, infinities, lists and strings
    *(f"metrics.m {op} 0.5" for op in ("=", "!=", "<", "<=", ">", ">=")),
    "metrics.m = 'text'",
    "metrics.m = true",
    "metrics.m ~ 'nan'",
    "metrics.m ~ 'inf'",
    "metrics.m ~ '-inf'",
    "metrics.m > 1e308",
    "metrics.m.min < 0",
    "metrics.m.max > 1",
    "metrics.m.max = 1e999",
    "metrics.m.min = -1e999",
    "metrics.m.count = 1",
    "metrics.m.count > 0",
    "metrics.m is null",
    "metrics.n = 1",
    "metrics.n.count = 2",
    "metrics.n.max >= 3",
    # attributes
    "status = 'crashed'",
    "status = 'failed'",
    "status != 'completed'",
    "experiment = 'mixed'",
    "experiment = 'default'",
    "name ~ 'm1*'",
    "id ~ '2026*'",
    "host = 'elsewhere.example'",
    "created > '2000-01-01'",
    "ended is null",
    "duration >= 0",
    "duration > 3600",
    "user is not null",
    "git.commit is null",
    # plain text
    '"vision"',
    '"VISION"',
    '"σας"',
    '"istanbul"',
    '"i̇stanbul"',
    '"ärger"',
    '"%_"',
    '"drop table"',
    '"m1"',
    '"é"',
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_every_kind_of_value_selects_the_same_runs(
    conn: psycopg.Connection[Any], mixed: Path, expr: str
) -> None:
    agree(conn, mixed, expr)


ORDERS = [
    ["params.v"],
    ["-params.v"],
    ["params.w"],
    ["params.w desc"],
    ["tags.t"],
    ["-tags.t"],
    ["metrics.m"],
    ["-metrics.m"],
    ["metrics.m.max"],
    ["-metrics.m.min"],
    ["metrics.n", "-params.v"],
    ["-metrics.n.count", "params.w"],
    ["status", "-name"],
    ["experiment"],
    ["-duration"],
    ["params.nothing"],
    ["-params.nothing", "params.w"],
]


@pytest.mark.parametrize("order", ORDERS)
def test_every_kind_of_value_sorts_the_same(
    conn: psycopg.Connection[Any], mixed: Path, order: list[str]
) -> None:
    agree(conn, mixed, None, order)
    agree(conn, mixed, "params.v is not null or tags.t is not null", order)


def test_the_same_with_the_search_box(conn: psycopg.Connection[Any], mixed: Path) -> None:
    for text in ("vision", "M1", "quote'd", "drop table runs"):
        tree = q.parse_search(text)
        assert isinstance(tree, Text)
        agree(conn, mixed, tree)


# --------------------------------------------------------------------- never pasted into SQL

HOSTILE = [
    "'; DROP TABLE runs; --",
    "\\'; DROP TABLE runs; --",
    '"); DROP TABLE runs; --',
    "$$; DROP TABLE runs; $$",
    "%s %(x)s %%",
    "{0} {x} }{",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_values_and_names_go_as_parameters_never_as_sql(
    conn: psycopg.Connection[Any], mixed: Path, value: str
) -> None:
    trees = [
        Compare(Key("params", value), "=", value),
        Compare(Key("params", "w"), "<", value),
        Compare(Key("tags", "t"), "~", value),
        In(Key("metrics", value, "max"), (value, 1), True),
        IsNull(Key("metrics", value, "count")),
        Text(value),
    ]
    for tree in trees:
        sql = translate(tree, [str(OrderKey(Key("params", value)))])
        assert all(value not in text for p in sql.parts for text in (p.page, p.order, p.count))
        agree(conn, mixed, tree, [str(OrderKey(Key("params", value), True))])
    assert conn.execute("SELECT count(*) FROM runs").fetchone() == (len(MIXED),)


def test_a_nul_character_is_refused_by_name(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(amltrack.QueryError, match="NUL character at column 13"):
        history_sql(conn, filter="params.x = '\x00'")


# ----------------------------------------------------------------------- random populations

VALUES = st.one_of(
    st.integers(min_value=-40, max_value=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda f: abs(f) < 1e16),
    st.sampled_from([0.5, -0.0, 1.5, 32.0, 2.0**53, 1e15]),
    st.sampled_from(
        ["32", " 32 ", "32.0", "+32", ".5", "1.", "1e3", "-1e-3", "1e400", "0x10", "1_000", "", " "]
    ),
    st.sampled_from(
        ["true", "False", "TRUE", "yes", "nan", "inf", "a", "B", "ab", "a*b", "a%b", "a_b", "[a]"]
    ),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=4),
    st.booleans(),
    st.none(),
)
NAMES = st.sampled_from(["a", "b", "c"])
population = st.lists(st.dictionaries(NAMES, VALUES, max_size=3), min_size=1, max_size=8)
LITERALS = st.one_of(
    st.integers(min_value=-40, max_value=40),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, width=64),
    st.sampled_from(["32", "32.0", "1e400", "true", "FALSE", "a", "ab", "", "-1e-3"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=3),
    st.booleans(),
)
PKEYS = NAMES.map(lambda n: Key("params", n))
GLOBS = st.text(st.sampled_from("ab*?[]!-\\%_.^$é3"), max_size=6)
leaves = st.one_of(
    st.builds(Compare, PKEYS, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), LITERALS),
    st.builds(Compare, PKEYS, st.just("~"), GLOBS),
    st.builds(In, PKEYS, st.lists(LITERALS, min_size=1, max_size=3).map(tuple), st.booleans()),
    st.builds(IsNull, PKEYS, st.booleans()),
    st.builds(Text, st.sampled_from(["", "a", "B", "3", "é", "run"])),
)
trees: st.SearchStrategy[q.Node] = st.deferred(
    lambda: st.one_of(
        leaves,
        leaves,
        leaves,
        st.builds(Not, trees),
        st.builds(And, st.lists(trees, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(trees, min_size=2, max_size=3).map(tuple)),
    )
)
orders = st.lists(st.builds(OrderKey, PKEYS, st.booleans()), max_size=2)


class ParamsRow:
    """What ``RunRow`` reads of a run that has only an id, a name, a tag and params."""

    def __init__(self, run_id: str, info: dict[str, Any]) -> None:
        self.id, self.info = run_id, info

    def attr(self, name: str) -> Any:
        return self.id if name == "id" else None

    def param(self, name: str) -> Any:
        return self.info["params"].get(name)

    def tag(self, name: str) -> Any:
        return self.info["tags"].get(name)

    def metric(self, name: str, field: str) -> Any:
        return None

    def text(self) -> list[Any]:
        return [self.id, self.info.get("name"), None, *self.info["tags"].values()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(population, trees, orders)
def test_random_params_and_expressions_select_what_the_matcher_selects(
    conn: psycopg.Connection[Any], params: list[dict[str, Any]], tree: q.Node, order: list[OrderKey]
) -> None:
    conn.execute("DELETE FROM runs")
    rows = []
    for i, p in enumerate(params):
        # As run.json holds them: what orjson writes (NaN as null, 1e16 as 1e+16) and reads back.
        text = orjson.dumps(
            {"name": f"run {i}", "params": p, "tags": {"x": str(p.get("a"))}, "status": "completed"}
        )
        run_id = f"20261206T000000{i:03d}-{i:016x}"
        conn.execute(
            "INSERT INTO runs (id, published, info, listing, run_json) VALUES (%s, true, %s::jsonb, '{}', %s)",
            (run_id, text.decode(), text),
        )
        rows.append(ParamsRow(run_id, orjson.loads(text)))
    rows.sort(key=lambda r: r.id, reverse=True)
    test = q.matcher(tree)
    want = [r.id for r in q.sort([r for r in rows if test(r)], order, lambda r: r)]
    got = sql_ids(conn, tree, [str(o) for o in order])
    assert got == want, (str(tree), [str(o) for o in order], params)


def test_pages_of_a_sorted_listing_run_across_its_parts(conn: psycopg.Connection[Any], mixed: Path) -> None:
    for order in (["metrics.m"], ["-params.v", "params.w"], ["-tags.t"]):
        want = store_ids(mixed, None, order)
        for limit, offset in ((3, 0), (5, 4), (4, 14), (10, 18), (0, 7), (2, 25), (1, 19)):
            got = sql_ids(conn, None, order, limit=limit, offset=offset)
            assert got == (want[offset : offset + limit] if limit else want[offset:]), (order, limit, offset)


def test_keys_follow_each_change_the_team_store_makes(conn: psycopg.Connection[Any], store: Path) -> None:
    """Rows made as the team store makes them: the id first, then ranges, the listing, and run.json
    with published last; and a listing pushed again later."""
    make_sweep(store)
    runs = amltrack.Store(store).runs()
    for run in runs:
        cols = row_columns(run)
        conn.execute("INSERT INTO runs (id) VALUES (%s)", (run.id,))
        conn.execute("UPDATE runs SET ranges = %s WHERE id = %s", (Jsonb(cols["ranges"]), run.id))
        conn.execute("UPDATE runs SET listing = %s WHERE id = %s", (Jsonb({"metrics": {}}), run.id))
        assert sql_ids(conn, f"id = '{run.id}'") == []  # not published yet
        conn.execute(
            "UPDATE runs SET listing = %s, summary_json = %s WHERE id = %s",
            (Jsonb(cols["listing"]), b"{}", run.id),
        )
        conn.execute(
            "UPDATE runs SET info = %s, run_json = %s, published = true WHERE id = %s",
            (Jsonb(cols["info"]), b"{}", run.id),
        )
    for expr, order, _ in CASES:
        agree(conn, store, expr, order)
    conn.execute("UPDATE runs SET listing = '{}'::jsonb, ranges = '{}'::jsonb WHERE id = %s", (runs[0].id,))
    assert runs[0].id in sql_ids(conn, "metrics.acc is null")
    assert runs[0].id not in sql_ids(conn, "metrics.acc.max > 0")
    conn.execute("UPDATE runs SET published = false WHERE id = %s", (runs[1].id,))
    assert runs[1].id not in sql_ids(conn, order_by="-metrics.acc")
    assert conn.execute("SELECT count(*) FROM run_keys WHERE run_id = %s", (runs[1].id,)).fetchone()[0] > 1
    conn.execute("DELETE FROM runs WHERE id = %s", (runs[1].id,))
    assert conn.execute("SELECT count(*) FROM run_keys WHERE run_id = %s", (runs[1].id,)).fetchone() == (0,)
