"""The query language (amltrack/_query.py): parsing, printing, evaluation and ordering."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amltrack
from amltrack import _query as q
from amltrack._query import And, Compare, In, IsNull, Key, Not, Or, OrderKey, Text


def test_the_issue_s_bad_expression_names_its_column() -> None:
    with pytest.raises(amltrack.QueryError) as e:
        q.parse("params.lr >> 1")
    assert str(e.value).startswith("expected a value at column 12")
    assert "\n" not in str(e.value)
    assert (e.value.column, e.value.expression) == (12, "params.lr >> 1")
    assert isinstance(e.value, ValueError) and isinstance(e.value, amltrack.AmltrackError)
    again = pickle.loads(pickle.dumps(e.value))
    assert (str(again), again.column) == (str(e.value), 12)


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ("", 1, "the expression is empty"),
        ("params.lr >> 1", 12, "expected a value"),
        ("params.lr", 10, "expected an operator"),
        ("params.lr = 1 garbage", 15, "expected 'and', 'or' or the end"),
        ("(params.lr = 1", 15, "expected ')'"),
        ("params.lr = 'open", 13, "unterminated"),
        ("bogus = 1", 1, "unknown key 'bogus'"),
        ("status = 1 and  = 2", 17, "expected a key"),
        ("params. = 1", 8, "expected a name after the '.'"),
        ("params.x in 1", 13, "expected '('"),
        ("params.x in (1 2)", 16, "expected ',' or ')'"),
        ("params.x is 1", 13, "expected null"),
        ("params.x not 1", 14, "expected in"),
        ("name ~ 3", 8, "expected a quoted pattern"),
        ("params.x = null", 12, "expected a value"),
    ],
)
def test_errors_name_the_column(text: str, column: int, problem: str) -> None:
    with pytest.raises(amltrack.QueryError) as e:
        q.parse(text)
    assert e.value.column == column, str(e.value)
    assert str(e.value).startswith(f"{problem}") and f"at column {column}" in str(e.value)


def test_nesting_is_bounded_so_no_input_exhausts_the_stack() -> None:
    deep = "(" * 100 + "params.x = 1" + ")" * 100
    assert q.parse(deep) == Compare(Key("params", "x"), "=", 1)
    assert str(q.parse("not " * 100 + "params.x = 1")).startswith("not not")
    for hostile in ("(" * 5000 + "params.x = 1" + ")" * 5000, "not " * 5000 + "params.x = 1"):
        with pytest.raises(amltrack.QueryError, match="nested") as e:
            q.parse(hostile)
        assert e.value.column <= 500


def test_keys_quoting_and_aliases() -> None:
    assert q.parse("params.lr = 1") == Compare(Key("params", "lr"), "=", 1)
    assert q.parse('params."model.depth" = 1').key == Key("params", "model.depth")
    assert q.parse("params.`model depth` = 1").key == Key("params", "model depth")
    assert q.parse("params.model.depth = 1").key == Key("params", "model.depth")  # dots need no quotes
    assert q.parse("metrics.loss < 1").key == Key("metrics", "loss", "last")
    assert q.parse("metrics.loss.min < 1").key == Key("metrics", "loss", "min")
    assert q.parse("metrics.val.loss.MAX < 1").key == Key("metrics", "val.loss", "max")
    assert q.parse('metrics."loss.min" < 1').key == Key("metrics", "loss.min", "last")
    assert q.parse("metrics.train/loss.count > 1").key == Key("metrics", "train/loss", "count")
    assert q.parse("tags.team = 'x'").key == Key("tags", "team")
    assert q.parse("param.lr = 1") == q.parse("PARAMS.lr = 1") == q.parse("parameters.lr = 1")
    assert q.parse("attributes.status = 'x'") == q.parse("Status = 'x'")
    assert q.parse("git.commit = 'a'").key == Key("attributes", "git.commit")
    assert q.parse("run.git.branch = 'a'").key == Key("attributes", "git.branch")
    for attr in q.ATTRIBUTES:
        assert q.parse(f"{attr} is null") == IsNull(Key("attributes", attr))


def test_operators_values_and_keywords() -> None:
    k = Key("params", "x")
    for op in ("=", "!=", "<", "<=", ">", ">="):
        assert q.parse(f"params.x {op} -1.5e3") == Compare(k, op, -1500.0)
    assert q.parse("params.x == 2") == Compare(k, "=", 2)
    assert q.parse("params.x ~ 'a*'") == Compare(k, "~", "a*")
    assert q.parse("params.x IN (1, 'a', TRUE)") == In(k, (1, "a", True))
    assert q.parse("params.x Not In (false)") == In(k, (False,), negated=True)
    assert q.parse("params.x IS NOT NULL") == IsNull(k, negated=True)
    assert q.parse(r'params.x = "say \"hi\" \\ bye"').value == 'say "hi" \\ bye'
    assert q.parse("params.x = 1") != q.parse("params.x = true")  # True == 1, but not here
    assert q.parse('"resnet" or status = "failed"') == Or(
        (Text("resnet"), Compare(Key("attributes", "status"), "=", "failed"))
    )


def test_precedence_not_and_or() -> None:
    a, b, c = (Compare(Key("params", n), "=", 1) for n in "abc")
    assert q.parse("params.a = 1 or params.b = 1 and params.c = 1") == Or((a, And((b, c))))
    assert q.parse("(params.a = 1 or params.b = 1) and params.c = 1") == And((Or((a, b)), c))
    assert q.parse("not params.a = 1 and params.b = 1") == And((Not(a), b))
    assert q.parse("not (params.a = 1 and params.b = 1)") == Not(And((a, b)))
    assert q.parse("params.a = 1 and params.b = 1 and params.c = 1") == And((a, b, c))
    assert q.parse("params.a = 1 and (params.b = 1 and params.c = 1)") == And((a, And((b, c))))


def test_plain_text_search() -> None:
    assert q.parse_search("  resnet ") == Text("resnet")
    assert q.parse_search("rock and roll") == Text("rock and roll")
    assert q.parse_search("status = 'x'") == Compare(Key("attributes", "status"), "=", "x")
    with pytest.raises(amltrack.QueryError, match="unknown key 'lr' at column 1"):
        q.parse_search("lr=0.1")  # an operator makes it an expression, and its error shows
    assert q.parse_search("") is None and q.parse_search("   ") is None
    with pytest.raises(amltrack.QueryError, match="column"):
        q.parse_search("params.lr >> 1")
    with pytest.raises(amltrack.QueryError):
        q.parse_search("params.lr")  # a key prefix: an expression, so its error shows


def test_order_keys() -> None:
    acc = Key("metrics", "acc", "last")
    assert q.parse_order("metrics.acc") == OrderKey(acc)
    assert q.parse_order("metrics.acc DESC") == q.parse_order("-metrics.acc") == OrderKey(acc, True)
    assert q.parse_order("metrics.acc Asc") == OrderKey(acc)
    assert str(OrderKey(acc, True)) == "metrics.acc desc"
    assert q.parse_orders(["-params.lr", "name"]) == [
        OrderKey(Key("params", "lr"), True),
        OrderKey(Key("attributes", "name")),
    ]
    for bad, column in (
        ("metrics.acc sideways", 13),
        ("-metrics.acc desc", 1),
        ("", 1),
        ("metrics.acc >", 13),
    ):
        with pytest.raises(amltrack.QueryError) as e:
            q.parse_order(bad)
        assert e.value.column == column


# ---------------------------------------------------------------------------- evaluation


@dataclass
class FakeRow:
    """A row of plain dicts; the store's RunRow is tested against the real store in test_query_store."""

    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def attr(self, name: str) -> Any:
        return self.attrs.get(name)

    def param(self, name: str) -> Any:
        return self.params.get(name)

    def tag(self, name: str) -> Any:
        return self.tags.get(name)

    def metric(self, name: str, f: str) -> Any:
        return self.metrics.get(name, {}).get(f)

    def text(self) -> list[Any]:
        return [self.attrs.get("id"), self.attrs.get("name"), self.attrs.get("user"), *self.tags.values()]


def matches(expr: str, **row: Any) -> bool:
    return q.matcher(q.parse(expr))(FakeRow(**row))


def test_a_param_logged_as_a_string_matches_a_number() -> None:
    assert matches("params.bs = 32", params={"bs": "32"})
    assert matches("params.bs = 32", params={"bs": 32})
    assert matches("params.bs = 32", params={"bs": 32.0})
    assert matches("params.bs = '32'", params={"bs": 32})
    assert matches("params.bs >= 16", params={"bs": " 32 "})
    assert not matches("params.bs = 32", params={"bs": "32x"})
    assert matches("params.bs != 32", params={"bs": "32x"})
    assert matches("params.lr < 1e-2", params={"lr": "0.001"})
    assert matches("params.name = 'abc'", params={"name": "abc"})
    assert not matches("params.name < 5", params={"name": "abc"})  # mixed types: no match, no error
    assert matches("params.name > 'abb'", params={"name": "abc"})  # strings as strings
    assert not matches("params.v = '10'", params={"v": "10.0"})  # two strings compare as text


def test_absent_is_null_and_never_an_error() -> None:
    for expr in (
        "params.x = 1",
        "params.x != 1",
        "params.x < 1",
        "params.x ~ '*'",
        "params.x in (1)",
        "params.x not in (1)",
    ):
        assert not matches(expr), expr
    assert matches("params.x is null")
    assert not matches("params.x is not null")
    assert matches("not params.x = 1")
    assert matches("metrics.loss.min is null", metrics={"loss": {"last": 1}})


def test_bools_globs_in_and_text() -> None:
    assert matches("params.f = true", params={"f": True})
    assert matches("params.f = true", params={"f": "True"})
    assert not matches("params.f = true", params={"f": 1})
    assert matches("params.f != true", params={"f": False})
    assert not matches("params.f < true", params={"f": False})
    assert matches("params.f = 'false'", params={"f": False})
    assert matches("name ~ 'res*-v?'", attrs={"name": "resnet-v2"})
    assert not matches("name ~ 'Res*'", attrs={"name": "resnet"})  # case-sensitive, as fnmatchcase
    assert matches("params.lr ~ '0.0*'", params={"lr": 0.01})  # a number by its text
    assert matches("params.x in (1, 'b')", params={"x": "b"}) and matches(
        "params.x in (1, 'b')", params={"x": "1"}
    )
    assert matches("params.x not in (1, 'b')", params={"x": 2})
    assert matches("'NET'", attrs={"name": "resnet"}) and matches("'gpu'", tags={"hw": "GPU-a"})
    assert not matches("'zzz'", attrs={"name": "resnet"}, params={"p": "zzz"})  # params are not text
    nan = float("nan")
    assert not matches("metrics.loss < 1", metrics={"loss": {"last": nan}})
    assert not matches("metrics.loss >= 1", metrics={"loss": {"last": nan}})
    assert matches("metrics.loss != 1", metrics={"loss": {"last": nan}})
    assert matches("metrics.loss > 1", metrics={"loss": {"last": float("inf")}})


def test_sort_puts_missing_last_either_way_and_keeps_ties_in_order() -> None:
    rows = [
        FakeRow(attrs={"id": "a"}, params={"bs": "32", "lr": 0.1}),
        FakeRow(attrs={"id": "b"}, params={"lr": 0.2}),
        FakeRow(attrs={"id": "c"}, params={"bs": 8, "lr": 0.1}),
        FakeRow(attrs={"id": "d"}, params={"bs": 100, "lr": float("nan")}),
        FakeRow(attrs={"id": "e"}, params={"bs": "x", "lr": 0.1}),
    ]

    def order(*keys: str) -> str:
        return "".join(r.attrs["id"] for r in q.sort(rows, q.parse_orders(keys), lambda r: r))

    assert order("params.bs") == "cadeb"  # numbers (the string "32" too) before strings, missing last
    assert order("-params.bs") == "edacb"
    assert order("params.lr") == "aceb" + "d"  # NaN has no place: last
    assert order("params.lr desc") == "bace" + "d"  # ties keep the order given
    assert order("params.lr", "-params.bs") == "eacb" + "d"
    assert order() == "abcde"


# ------------------------------------------------------------------- printing round-trips

names = st.text(min_size=0, max_size=12)
keys = st.one_of(
    st.sampled_from(q.ATTRIBUTES).map(lambda a: Key("attributes", a)),
    st.builds(Key, st.sampled_from(["params", "tags"]), names),
    st.builds(Key, st.just("metrics"), names, st.sampled_from(q.FIELDS)),
)
literals = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
leaves = st.one_of(
    st.builds(Compare, keys, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), literals),
    st.builds(Compare, keys, st.just("~"), st.text(max_size=8)),
    st.builds(In, keys, st.lists(literals, min_size=1, max_size=3).map(tuple), st.booleans()),
    st.builds(IsNull, keys, st.booleans()),
    st.builds(Text, st.text(max_size=10)),
)
# Built with deferred rather than st.recursive, whose check that the extension uses its argument
# probes it with an empty strategy, which min_size=2 lists turn into nothing. Leaves are drawn
# more often than branches, so trees stay small.
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


@settings(max_examples=400, deadline=None)
@given(trees)
def test_every_tree_prints_as_an_expression_that_parses_back_to_it(tree: q.Node) -> None:
    text = str(tree)
    again = q.parse(text)
    assert again == tree, text
    assert str(again) == text


@settings(max_examples=200, deadline=None)
@given(keys, st.booleans())
def test_every_order_key_prints_back(key: Key, descending: bool) -> None:
    order = OrderKey(key, descending)
    assert q.parse_order(str(order)) == order
    assert q.parse_order(("-" if descending else "") + str(key)) == order


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_any_text_parses_or_raises_a_query_error(text: str) -> None:
    try:
        tree = q.parse_search(text)
    except amltrack.QueryError as e:
        assert 1 <= e.column <= len(text) + 1 and "\n" not in str(e).replace(text, "")
    else:
        q.matcher(tree)(FakeRow(params={"x": text}))
