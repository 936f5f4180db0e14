"""The query language: filter expressions and sort keys over runs, parsed and evaluated in one place.

The store's ``Store.runs(filter=, order_by=)``, ``amltrack history list --filter/--sort``, the web
UI's search box and the server's history API all go through this module, so an expression means
the same everywhere. ``docs/query.md`` is the grammar for people::

    tree = parse('params.bs = 32 and metrics.acc.max > 0.9')
    str(tree)                     # prints back as an expression that parses to the same tree
    test = matcher(tree)          # row -> bool, over anything with the ``Row`` methods
    parse_search("resnet")        # plain text: a case-insensitive substring of name, id, tags, user
    parse_order("-metrics.acc")   # OrderKey(Key("metrics", "acc"), descending=True)

Absent keys are null: they match only ``is null`` (and never raise), and mixed types never raise.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ._errors import QueryError

# Run attributes, as keys: each one's value is what ``Row.attr`` gives for it.
ATTRIBUTES = (
    "id",
    "name",
    "experiment",
    "status",
    "user",
    "host",
    "created",
    "ended",
    "duration",
    "git.commit",
    "git.branch",
)
SCOPES = ("params", "tags", "metrics")
# MLflow's spellings of the same prefixes, accepted so its users' filters read.
_SCOPE_ALIASES = {
    "params": "params",
    "param": "params",
    "parameter": "params",
    "parameters": "params",
    "tags": "tags",
    "tag": "tags",
    "metrics": "metrics",
    "metric": "metrics",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
FIELDS = ("last", "min", "max", "count")
MAX_DEPTH = 100  # metrics.NAME.FIELD; the last value when none is given
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")
_ORDERING = {"<", "<=", ">", ">="}

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_/:\-]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# ASCII only, as SQL reads numbers too (amltrack/server/_sqlquery.py): "３２" is text, not 32.
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*", re.ASCII)
_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")
_OPS = re.compile(r"<=|>=|!=|==|=|<|>|~")
_QUOTES = "\"'`"
_NAME_QUOTES = "\"`'"

Literal = str | int | float | bool


# ---------------------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Key:
    """What a condition reads from a run: an attribute, or a param, tag or metric by name.

    ``scope`` is ``attributes``, ``params``, ``tags`` or ``metrics``; ``field`` is ``last``, ``min``,
    ``max`` or ``count`` for a metric and ``None`` otherwise.
    """

    scope: str
    name: str
    field: str | None = None

    def __str__(self) -> str:
        if self.scope == "attributes":
            return self.name
        text = f"{self.scope}.{_name_text(self.name)}"
        return text if self.field in (None, "last") else f"{text}.{self.field}"


@dataclass(frozen=True)
class Compare:
    key: Key
    op: str
    value: Literal

    def __str__(self) -> str:
        return f"{self.key} {self.op} {_literal_text(self.value)}"

    def __eq__(self, other: object) -> bool:
        # True == 1 in Python, but not here: a bool literal and a number mean different things.
        return isinstance(other, Compare) and (self.key, self.op, type(self.value), self.value) == (
            other.key,
            other.op,
            type(other.value),
            other.value,
        )

    def __hash__(self) -> int:
        return hash((self.key, self.op, type(self.value), self.value))


@dataclass(frozen=True)
class In:
    key: Key
    values: tuple[Literal, ...]
    negated: bool = False

    def __str__(self) -> str:
        values = ", ".join(_literal_text(v) for v in self.values)
        return f"{self.key} {'not in' if self.negated else 'in'} ({values})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, In)
            and (self.key, self.negated) == (other.key, other.negated)
            and [(type(v), v) for v in self.values] == [(type(v), v) for v in other.values]
        )

    def __hash__(self) -> int:
        return hash((self.key, self.negated, self.values))


@dataclass(frozen=True)
class IsNull:
    key: Key
    negated: bool = False

    def __str__(self) -> str:
        return f"{self.key} is {'not ' if self.negated else ''}null"


@dataclass(frozen=True)
class Text:
    """Plain text: a case-insensitive substring of a run's name, id, tag values or user."""

    text: str

    def __str__(self) -> str:
        return _string_text(self.text)


@dataclass(frozen=True)
class Not:
    item: Node

    def __str__(self) -> str:
        inner = str(self.item)
        return f"not ({inner})" if isinstance(self.item, (And, Or)) else f"not {inner}"


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(f"({i})" if isinstance(i, (And, Or)) else str(i) for i in self.items)


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(f"({i})" if isinstance(i, Or) else str(i) for i in self.items)


Node = Compare | In | IsNull | Text | Not | And | Or


@dataclass(frozen=True)
class OrderKey:
    """One sort key: ``metrics.acc desc``, or ``-metrics.acc`` for short."""

    key: Key
    descending: bool = False

    def __str__(self) -> str:
        return f"{self.key} desc" if self.descending else str(self.key)


def _string_text(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name_text(name: str) -> str:
    return name if _SEGMENT.fullmatch(name) else _string_text(name)


def _literal_text(v: Literal) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _string_text(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


# ------------------------------------------------------------------------------------- the parser


class _Parser:
    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"a query is a str, not {type(text).__name__}: {text!r}")
        self.text = text
        self.pos = 0
        self.depth = 0

    def fail(self, problem: str, at: int | None = None, hint: str = "") -> QueryError:
        return QueryError(self.text, (self.pos if at is None else at) + 1, problem, hint)

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.ws()
        return self.text[self.pos : self.pos + 1]

    def at_end(self) -> bool:
        return self.peek() == ""

    def keyword(self, *words: str) -> str | None:
        """Consume one of ``words`` (any case) if it is the next whole word."""
        self.ws()
        m = _WORD.match(self.text, self.pos)
        if m and m.group().lower() in words:
            self.pos = m.end()
            return m.group().lower()
        return None

    def char(self, c: str) -> bool:
        if self.peek() == c:
            self.pos += 1
            return True
        return False

    # expression := or ; or := and ("or" and)* ; and := not ("and" not)* ; not := "not" not | primary
    def expression(self) -> Node:
        node = self.or_()
        if not self.at_end():
            raise self.fail("expected 'and', 'or' or the end of the expression")
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.keyword("or"):
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Node:
        items = [self.not_()]
        while self.keyword("and"):
            items.append(self.not_())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_(self) -> Node:
        if self.keyword("not"):
            with self.nested():
                return Not(self.not_())
        return self.primary()

    @contextlib.contextmanager
    def nested(self) -> Iterator[None]:
        # A query may come from anyone who can reach the UI or the server: nesting is bounded, so
        # that no input makes the parser, the printer or the matcher run out of stack.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expected at most {MAX_DEPTH} nested 'not's and parentheses")
        yield
        self.depth -= 1

    def primary(self) -> Node:
        c = self.peek()
        if c == "(":
            self.pos += 1
            with self.nested():
                node = self.or_()
            if not self.char(")"):
                raise self.fail("expected ')'")
            return node
        if c in ("'", '"'):
            return Text(self.quoted())
        key = self.key()
        return self.condition(key)

    def quoted(self) -> str:
        quote, start = self.text[self.pos], self.pos
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail(f"unterminated {quote}...{quote} that starts", start)
            c = self.text[self.pos]
            if c == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if c == quote:
                return "".join(out)
            out.append(c)

    def key(self) -> Key:
        self.ws()
        start = self.pos
        m = _WORD.match(self.text, self.pos)
        if not m:
            raise self.fail(
                "expected a key", hint="params.NAME, metrics.NAME, tags.NAME or an attribute such as status"
            )
        word = m.group().lower()
        self.pos = m.end()
        dotted = self.text[self.pos : self.pos + 1] == "."
        scope = _SCOPE_ALIASES.get(word) if dotted else None
        if scope == "attributes":
            self.pos += 1
            start = self.pos
            m = _WORD.match(self.text, self.pos)
            if not m:
                raise self.fail("expected an attribute name")
            word = m.group().lower()
            self.pos = m.end()
            dotted = self.text[self.pos : self.pos + 1] == "."
        elif scope is not None:
            self.pos += 1
            return self.named(scope)
        if word == "git" and dotted:
            m = _WORD.match(self.text, self.pos + 1)
            if m and f"git.{m.group().lower()}" in ATTRIBUTES:
                self.pos = m.end()
                return Key("attributes", f"git.{m.group().lower()}")
        if word in ATTRIBUTES:
            return Key("attributes", word)
        raise self.fail(
            f"unknown key {self.text[start : self.pos]!r}",
            start,
            f"use params.NAME, metrics.NAME, tags.NAME or one of {', '.join(ATTRIBUTES)}",
        )

    def named(self, scope: str) -> Key:
        parts: list[tuple[str, bool]] = [self.segment()]
        while (
            self.text[self.pos : self.pos + 1] == "."
            and self.pos + 1 < len(self.text)
            and (self.text[self.pos + 1] in _NAME_QUOTES or _SEGMENT.match(self.text, self.pos + 1))
        ):
            self.pos += 1
            parts.append(self.segment())
        field = None
        if scope == "metrics":
            field = "last"
            last, quoted = parts[-1]
            if len(parts) > 1 and not quoted and last.lower() in FIELDS:
                field = last.lower()
                parts.pop()
        return Key(scope, ".".join(p for p, _ in parts), field)

    def segment(self) -> tuple[str, bool]:
        if self.pos < len(self.text) and self.text[self.pos] in _NAME_QUOTES:
            return self.quoted(), True
        m = _SEGMENT.match(self.text, self.pos)
        if not m:
            raise self.fail(
                "expected a name after the '.'", hint='quote one with spaces or dots: params."my name"'
            )
        self.pos = m.end()
        return m.group(), False

    def condition(self, key: Key) -> Node:
        if self.keyword("is"):
            negated = self.keyword("not") is not None
            if not self.keyword("null"):
                raise self.fail("expected null")
            return IsNull(key, negated)
        if self.keyword("not"):
            if not self.keyword("in"):
                raise self.fail("expected in")
            return In(key, self.value_list(), True)
        if self.keyword("in"):
            return In(key, self.value_list())
        self.ws()
        m = _OPS.match(self.text, self.pos)
        if not m:
            raise self.fail(
                "expected an operator",
                hint="=, !=, <, <=, >, >=, ~, in (...), not in (...), is null or is not null",
            )
        op = "=" if m.group() == "==" else m.group()
        self.pos = m.end()
        self.ws()
        at = self.pos
        value = self.value()
        if op == "~" and not isinstance(value, str):
            raise self.fail("expected a quoted pattern", at, '~ matches a glob such as "resnet*"')
        return Compare(key, op, value)

    def value_list(self) -> tuple[Literal, ...]:
        if not self.char("("):
            raise self.fail("expected '('")
        values = [self.value()]
        while self.char(","):
            values.append(self.value())
        if not self.char(")"):
            raise self.fail("expected ',' or ')'")
        return tuple(values)

    def value(self) -> Literal:
        c = self.peek()
        if c in ("'", '"'):
            return self.quoted()
        m = _NUMBER.match(self.text, self.pos)
        if m and not _WORD_CHAR.match(self.text, m.end()):
            self.pos = m.end()
            return _number(m.group())
        word = self.keyword("true", "false")
        if word:
            return word == "true"
        raise self.fail("expected a value", hint="a number, a quoted string, true or false")

    def order(self) -> OrderKey:
        self.ws()
        descending = self.char("-")
        key = self.key()
        way = self.keyword("asc", "desc")
        if not self.at_end():
            raise self.fail("expected asc, desc or the end of the sort key")
        if way is not None:
            if descending:
                raise self.fail("give either a leading '-' or asc/desc, not both", 0)
            descending = way == "desc"
        return OrderKey(key, descending)


def _number(text: str) -> int | float:
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return float(text)


@functools.lru_cache(maxsize=256)
def parse(text: str) -> Node:
    """The tree of filter expression ``text``; QueryError (naming the column) if it does not parse.

    parse('params.lr < 0.1 and status = "completed"')
    """
    p = _Parser(text)
    if p.at_end():
        raise p.fail("the expression is empty")
    return p.expression()


def looks_like_text(text: str) -> bool:
    """Whether search-box input is plain text rather than an expression: it has no operator, no
    parenthesis, no ``key.`` prefix and no ``is``/``in`` keyword."""
    if re.search(r"[=<>!~()]", text):
        return False
    if re.search(r"(?i)\b(params?|parameters?|tags?|metrics?|attributes?|attr|run|git)\.", text):
        return False
    words = {w.lower() for w in _WORD.findall(text)}
    if len(words) > 1 and words & {"is", "in"} and re.search(r"(?i)\bis\s+(not\s+)?null\b|\bin\s*\(", text):
        return False
    return True


def parse_search(text: str) -> Node | None:
    """What a search box's ``text`` asks for: None for blank, ``Text`` for plain text (``resnet``,
    matched as a case-insensitive substring of a run's name, id, tag values and user), else the
    filter expression's tree (QueryError if it does not parse).

        parse_search("resnet")            # Text("resnet")
        parse_search("params.bs = 32")    # Compare(Key("params", "bs"), "=", 32)
    """
    stripped = text.strip()
    if not stripped:
        return None
    if looks_like_text(stripped):
        return Text(stripped)
    return parse(text)


@functools.lru_cache(maxsize=256)
def parse_order(text: str) -> OrderKey:
    """One sort key: ``KEY``, ``KEY asc``, ``KEY desc`` (any case), or ``-KEY`` for descending.

    parse_order("metrics.acc DESC") == parse_order("-metrics.acc")
    """
    p = _Parser(text)
    if p.at_end():
        raise p.fail("the sort key is empty")
    return p.order()


def parse_orders(keys: str | Iterable[str] | None) -> list[OrderKey]:
    """``order_by`` as given (a string or a list of them) as sort keys."""
    if keys is None:
        return []
    if isinstance(keys, str):
        keys = [keys]
    return [parse_order(k) for k in keys]


def as_tree(filter: str | Node | None) -> Node | None:
    """A filter given as an expression, a tree already parsed, or None."""
    if filter is None or isinstance(filter, (Compare, In, IsNull, Text, Not, And, Or)):
        return filter
    if isinstance(filter, str):
        return parse(filter) if filter.strip() else None
    raise TypeError(f"filter is a str expression, not {type(filter).__name__}: {filter!r}")


def keys_of(tree: Node | None) -> list[Key]:
    """Every key ``tree`` reads, in order, once each."""
    out: dict[Key, None] = {}

    def walk(n: Node | None) -> None:
        if isinstance(n, (Compare, In, IsNull)):
            out[n.key] = None
        elif isinstance(n, Not):
            walk(n.item)
        elif isinstance(n, (And, Or)):
            for i in n.items:
                walk(i)

    walk(tree)
    return list(out)


# ----------------------------------------------------------------------------------- evaluation


class Row(Protocol):
    """What the evaluator reads of a run; None means absent (null)."""

    def attr(self, name: str) -> Any: ...
    def param(self, name: str) -> Any: ...
    def tag(self, name: str) -> Any: ...
    def metric(self, name: str, field: str) -> Any: ...
    def text(self) -> Iterable[Any]: ...


def getter(key: Key) -> Callable[[Row], Any]:
    """The function that reads ``key`` from a row."""
    name = key.name
    if key.scope == "params":
        return lambda row: row.param(name)
    if key.scope == "tags":
        return lambda row: row.tag(name)
    if key.scope == "metrics":
        field = key.field or "last"
        return lambda row: row.metric(name, field)
    return lambda row: row.attr(name)


def as_number(v: Any) -> int | float | None:
    """``v`` as a number to compare: an int or float as it is, a string that reads as a decimal
    number (``"32"``, ``" 1e-3 "``) as that number; None for anything else (bools included)."""
    t = type(v)
    if t is int or t is float:
        return v
    if t is str and len(v) < 64 and _NUMERIC_TEXT.fullmatch(v):
        s = v.strip()
        return int(s) if re.fullmatch(r"[+-]?[0-9]+", s) else float(s)
    return None


def _bool_of(v: Any) -> bool | None:
    if type(v) is bool:
        return v
    if type(v) is str and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def _as_text(v: Any) -> str | None:
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return repr(v)
    return None


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _comparer(op: str, literal: Literal) -> Callable[[Any], bool]:
    """``value -> bool`` for ``value OP literal`` where value is present (not None).

    Numbers compare as numbers, and a string that reads as a number compares as that number
    against a number (``params.bs = 32`` matches 32 and "32"); strings compare as strings; bools
    equal bools or the strings "true"/"false". Anything else is unequal (``!=`` is true) and unordered.
    """
    if op == "~":
        pattern = re.compile(fnmatch.translate(str(literal)), re.DOTALL)

        def glob(v: Any) -> bool:
            text = _as_text(v)
            return text is not None and pattern.match(text) is not None

        return glob
    cmp = _CMP[op]
    unequal = op == "!="
    if isinstance(literal, bool):
        if op not in ("=", "!="):
            return lambda v: False
        return lambda v: (b := _bool_of(v)) is not None and cmp(b, literal) or (b is None and unequal)
    if isinstance(literal, str):
        lit_num = as_number(literal)

        def text(v: Any) -> bool:
            t = type(v)
            if t is str:
                return cmp(v, literal)
            if (t is int or t is float) and lit_num is not None:
                return cmp(v, lit_num)
            if t is bool and op in ("=", "!="):
                return cmp("true" if v else "false", literal.lower())
            return unequal

        return text

    def number(v: Any) -> bool:
        n = as_number(v)
        if n is None:
            return unequal
        return cmp(n, literal)

    return number


Matcher = Callable[[Row], bool]


def matcher(tree: Node | None) -> Matcher:
    """``row -> bool`` for the tree (None matches every row)."""
    if tree is None:
        return lambda row: True
    if isinstance(tree, Compare):
        get, comp = getter(tree.key), _comparer(tree.op, tree.value)
        return lambda row: (v := get(row)) is not None and comp(v)
    if isinstance(tree, In):
        get = getter(tree.key)
        comps = [_comparer("=", lit) for lit in tree.values]
        if tree.negated:
            return lambda row: (v := get(row)) is not None and not any(c(v) for c in comps)
        return lambda row: (v := get(row)) is not None and any(c(v) for c in comps)
    if isinstance(tree, IsNull):
        get = getter(tree.key)
        if tree.negated:
            return lambda row: get(row) is not None
        return lambda row: get(row) is None
    if isinstance(tree, Text):
        needle = tree.text.lower()
        return lambda row: any(isinstance(t, str) and needle in t.lower() for t in row.text())
    if isinstance(tree, Not):
        inner = matcher(tree.item)
        return lambda row: not inner(row)
    if isinstance(tree, And):
        parts = [matcher(i) for i in tree.items]
        return lambda row: all(p(row) for p in parts)
    if isinstance(tree, Or):
        parts = [matcher(i) for i in tree.items]
        return lambda row: any(p(row) for p in parts)
    raise TypeError(f"not a query tree: {tree!r}")


# -------------------------------------------------------------------------------------- ordering

T = TypeVar("T")


def _sort_value(v: Any) -> tuple[int, Any] | None:
    """How a value sorts: numbers (and numeric strings) before strings before bools; None (and NaN)
    when it has no place, so that it goes last."""
    n = as_number(v)
    if n is not None:
        return None if n != n else (0, n)
    t = type(v)
    if t is str:
        return (1, v)
    if t is bool:
        return (2, v)
    return None


def sort(items: Sequence[T], orders: Sequence[OrderKey], row_of: Callable[[T], Row]) -> list[T]:
    """``items`` sorted by ``orders``: each key ascending or descending, the items that lack it last
    either way, and ties kept in the order given (newest first, for runs)."""
    out = list(items)
    for order in reversed(orders):
        get = getter(order.key)
        keyed = [(_sort_value(get(row_of(i))), i) for i in out]
        present = [(k, i) for k, i in keyed if k is not None]
        present.sort(key=lambda ki: ki[0], reverse=order.descending)
        out = [i for _, i in present] + [i for k, i in keyed if k is None]
    return out
