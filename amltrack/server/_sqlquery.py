"""The query language (docs/query.md) as PostgreSQL, over the team server's ``runs`` table.

``amltrack/_query.py`` owns what an expression means; this module says the same thing in SQL, so
that a replicated server filters, sorts and pages 100,000 runs in the database instead of reading
them all into Python. Every value goes to psycopg as a parameter: no text of a query is ever
pasted into the SQL, which is built only from this module's own fragments::

    history_sql(conn, filter="params.bs = 32", order_by=["-metrics.acc"], limit=100)
    count_sql(conn, filter="params.bs = 32")

The queries read ``run_keys`` (schema step 3), where triggers on ``runs`` keep each param, tag
and metric figure of each run as a row with the columns that compare and sort it (a double, an
exact integer, a string, a bool): a condition is a set of run ids an index narrows, and a listing
sorted by a key walks that key's index in order and stops at a page, then lists the runs that
lack the key. Attributes (status, name, created...) are read from ``runs`` itself.

**What a row of ``runs`` must hold** (the team store writes it; ``row_columns(run)`` computes it
from a file-store ``Run``, and the tests fill rows with it):

- ``id``: the run id; runs are listed newest first by it, as the file store lists them.
- ``published``: only published rows are listed.
- ``info``: run.json, parsed.
- ``listing``: ``Run.listing_summary()``, i.e. summary.json parsed and cleaned
  (``_format.clean_summary``): ``heartbeat``, ``records`` and ``metrics``, a name to
  ``{"count", "last", "kind", "step", "ts"[, "length"]}``, with a non-finite ``last`` spelled
  ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` as summary.json spells it.
- ``ranges``: ``{metric name: [min, max]}`` over metrics.jsonl's numbers (NaN left out, a list's
  elements in), with infinities as the strings ``"Infinity"``/``"-Infinity"``: ``encode_ranges()``
  of ``RunRow.ranges()``, the same encoding as the runs index (``amltrack/_runindex.py``).
- ``run_json``, ``summary_json``: the bytes, which ``history_sql`` returns.

The team store writes these columns as it does (``amltrack/server/_team.py``); nothing else is
needed: ``run_keys`` follows every INSERT (a COPY of many runs in one statement) and every UPDATE
of ``published``, ``info``, ``listing`` or ``ranges`` (only the part that changed is rewritten).

**Where SQL and the file store part** (each a limit of what a server can know, or of jsonb):

- ``status``: a run on file as running is crashed once its heartbeat (else its creation) is 120 s
  old at ``now``. The file store asks the process itself when the run is on its own host; a
  server cannot see a client's processes, so a run whose process died reads as running until its
  heartbeat ages. The file store also repairs a crashed run's figures from metrics.jsonl; a
  server has only the listing it was sent.
- jsonb keeps a number's digits but not how they were written (``1e+16`` is kept as
  ``10000000000000000``), so a JSON number of 1e16 or more with at most 17 significant digits is
  read as the float run.json writes that way, and any other without a fraction as an int. An int
  param that big with so few digits (``10**17``) therefore reads as a float: equal to the int
  when the int is exactly a double, as most such are, but a glob sees ``1e+17``. A float ``-0.0``
  reads as ``0.0``.
- Plain-text search lower-cases with ICU where PostgreSQL has it (else the database's own
  ``lower()``), which may differ from Python's ``str.lower()`` for characters newer than ICU's
  Unicode.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import _format as fmt
from .. import _query
from .._errors import QueryError
from .._query import And, Compare, In, IsNull, Key, Literal, Node, Not, Or, OrderKey, Text

if TYPE_CHECKING:
    import psycopg

    from .._store import Run


# ----------------------------------------------------------------------------- building SQL


@dataclass
class _Sql:
    """A piece of SQL with ``%s`` placeholders and the values that fill them, in order."""

    text: str
    params: list[Any] = field(default_factory=list)

    def __add__(self, other: _Sql | str) -> _Sql:
        if isinstance(other, str):
            return _Sql(self.text + other, self.params)
        return _Sql(self.text + other.text, [*self.params, *other.params])

    def __radd__(self, other: str) -> _Sql:
        return _Sql(other + self.text, self.params)


def _join(sep: str, parts: Iterable[_Sql]) -> _Sql:
    out = _Sql("")
    for i, p in enumerate(parts):
        out = out + (sep if i else "") + p
    return out


def _p(value: Any, cast: str) -> _Sql:
    """One parameter, typed, so PostgreSQL never guesses."""
    return _Sql(f"%s::{cast}", [value])


_TRUE, _FALSE = _Sql("true"), _Sql("false")


def _const(b: bool) -> _Sql:
    return _TRUE if b else _FALSE


# ------------------------------------------------------------------------------- a key's value
# A query starts from the runs' rows of ``run_keys`` (scope '', alias ``b``). A param, tag or metric
# figure is a row of ``run_keys`` of its own (alias ``s`` in a condition, ``oN`` in an order), so a
# condition on one is a set of run ids an index narrows. An attribute is read from the run's row
# of ``runs`` (alias ``x``), joined only when the query reads one.


def _scoped(key: Key) -> tuple[str, str, str] | None:
    """``run_keys``' (scope, name, field) of ``key``; None for an attribute."""
    if key.scope in ("params", "tags"):
        return key.scope, key.name, ""
    if key.scope == "metrics":
        return key.scope, key.name, key.field or "last"
    return None


# Runs on file as running whose owner this host can ask (``Store``'s rule, ``owner_alive``): the ids
# whose process is gone, and those whose process lives though their heartbeat is old.
Local = tuple[Sequence[str], Sequence[str]]
NO_LOCAL: Local = ((), ())


def _status(run: str, now: float, local: Local) -> _Sql:
    """The text expression of the status of the ``runs`` row ``run``."""
    return (
        _Sql(f"(CASE WHEN {run}.id = ANY(")
        + _p(list(local[0]), "text[]")
        + f") THEN 'crashed' WHEN {run}.id = ANY("
        + _p(list(local[1]), "text[]")
        + f") THEN 'running' ELSE amltrack_status({run}.info, {run}.listing, "
        + _p(now, "float8")
        + ") END)"
    )


def _attribute(name: str, now: float, local: Local = NO_LOCAL) -> _Sql:
    """A jsonb expression of attribute ``name`` of the joined ``runs`` row ``x``, as ``RunRow.attr``
    gives it: NULL where it gives None."""
    if name == "id":
        return _Sql("to_jsonb(b.run_id)")
    if name == "experiment":
        return _Sql(
            "(CASE WHEN jsonb_typeof(x.info -> 'experiment') = 'string' AND x.info ->> 'experiment' <> '' "
            "THEN x.info -> 'experiment' ELSE '\"default\"'::jsonb END)"
        )
    if name == "status":
        return "to_jsonb(" + _status("x", now, local) + ")"
    if name == "duration":
        return "amltrack_duration(x.info, x.listing, " + _p(now, "float8") + ")"
    if name.startswith("git."):
        path = _Sql("x.info -> 'git' -> ") + _p(name[4:], "text")
    else:
        path = _Sql("x.info -> ") + _p("hostname" if name == "host" else name, "text")
    return "(CASE WHEN jsonb_typeof(" + path + ") = 'string' THEN " + path + " END)"


class _Query:
    """What a translation collects besides its text: whether it reads ``runs`` (``x``), and the
    ``run_keys`` joined for its order."""

    def __init__(self, now: float, local: Local = NO_LOCAL) -> None:
        self.now = now
        self.local = local
        self.reads_runs = False
        self.joins: list[_Sql] = []

    def attribute(self, name: str) -> _Sql:
        if name != "id":
            self.reads_runs = True
        return _attribute(name, self.now, self.local)

    def keys(self, key: tuple[str, str, str], condition: _Sql | None = None, alias: str = "s") -> _Sql:
        """The ids of the runs that have ``key`` (and whose value meets ``condition``)."""
        scope, name, field = key
        text = (
            f"b.run_id IN (SELECT {alias}.run_id FROM run_keys {alias} WHERE {alias}.scope = "
            + _p(scope, "text")
            + f" AND {alias}.name = "
            + _p(name, "text")
            + f" AND {alias}.field = "
            + _p(field, "text")
        )
        if condition is not None:
            text = text + " AND " + condition
        return text + ")"

    def joined(self, key: tuple[str, str, str]) -> str:
        """The alias of ``key``'s row of ``run_keys`` joined to each run (NULLs where it has none)."""
        alias = f"o{len(self.joins)}"
        scope, name, field = key
        self.joins.append(
            f" LEFT JOIN run_keys {alias} ON {alias}.run_id = b.run_id AND {alias}.scope = "
            + _p(scope, "text")
            + f" AND {alias}.name = "
            + _p(name, "text")
            + f" AND {alias}.field = "
            + _p(field, "text")
        )
        return alias


# --------------------------------------------------------------------------------- comparisons

_SQL_OP = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _int_test(i: _Sql, op: str, literal: int | float) -> _Sql:
    """``i OP literal`` for ``i`` a numeric (a Python int): exact, as Python compares; NULL for NULL."""
    if isinstance(literal, float) and math.isinf(literal):
        below = literal > 0  # every int is below +inf and above -inf
        holds = {"=": False, "!=": True, "<": below, "<=": below, ">": not below, ">=": not below}[op]
        return "(CASE WHEN " + i + " IS NOT NULL THEN " + _const(holds) + " END)"
    return "(" + i + f" {_SQL_OP[op]} " + _p(Decimal(literal), "numeric") + ")"


def _float_test(f: _Sql, op: str, literal: int | float) -> _Sql:
    """``f OP literal`` for ``f`` a float8 (a Python float): as Python compares a float with an int
    or a float, exactly; NaN is unequal to everything and unordered (PostgreSQL puts it above all).
    NULL for NULL."""
    if isinstance(literal, int):
        try:
            near = float(literal)
        except OverflowError:
            near = math.inf if literal > 0 else -math.inf
        if math.isinf(near) or int(near) != literal:
            # No double equals the int: compare with the doubles on either side of it.
            lo, hi = (
                (math.nextafter(near, -math.inf), near)
                if near > literal
                else (near, math.nextafter(near, math.inf))
            )
            if op in ("=", "!="):
                return "(CASE WHEN " + f + " IS NOT NULL THEN " + _const(op == "!=") + " END)"
            if op in ("<", "<="):
                return "(" + f + " <= " + _p(lo, "float8") + ")"
            return "(" + f + " >= " + _p(hi, "float8") + " AND " + f + " <> 'NaN'::float8)"
        literal = near
    test = "(" + f + f" {_SQL_OP[op]} " + _p(literal, "float8")
    if op in (">", ">="):
        test = test + " AND " + f + " <> 'NaN'::float8"
    return test + ")"


def _number_test(v: _Sql, op: str, literal: int | float, unequal: bool, strings: bool = True) -> _Sql:
    """as_number(v) OP literal, or ``unequal`` for a value that is no number (a string only when
    ``strings``). Never NULL for a present ``v``."""
    if strings:
        i, f = "amltrack_int(" + v + ")", "amltrack_float(" + v + ")"
    else:
        numeric = "(CASE WHEN jsonb_typeof(" + v + ") <> 'string' THEN " + v + " END)"
        i, f = "amltrack_int(" + numeric + ")", "amltrack_float(" + numeric + ")"
    return (
        "coalesce("
        + _int_test(i, op, literal)
        + ", "
        + _float_test(f, op, literal)
        + ", "
        + _const(unequal)
        + ")"
    )


def _compare(v: _Sql, op: str, literal: Literal) -> _Sql:
    """``_query._comparer(op, literal)`` of a present ``v``: never NULL."""
    unequal = op == "!="
    if op == "~":
        regex = _glob_regex(str(literal))
        if regex is None:
            return _FALSE
        return "coalesce((amltrack_text(" + v + ') COLLATE "C") ~ ' + _p(regex, "text") + ", false)"
    if isinstance(literal, bool):
        if op not in ("=", "!="):
            return _FALSE
        b = "amltrack_bool(" + v + ")"
        if op == "=":
            return "coalesce(" + b + " = " + _p(literal, "boolean") + ", false)"
        return "(" + b + " IS DISTINCT FROM " + _p(literal, "boolean") + ")"
    if isinstance(literal, str):
        as_text = "(CASE WHEN jsonb_typeof(" + v + ") = 'string' THEN (" + v + " #>> '{}') COLLATE \"C\" "
        as_text = as_text + _SQL_OP[op] + " " + _p(literal, "text") + " END)"
        parts = [as_text]
        if op in ("=", "!="):
            parts.append(
                "(CASE WHEN jsonb_typeof("
                + v
                + ") = 'boolean' THEN "
                + v
                + "::text "
                + _SQL_OP[op]
                + " "
                + _p(literal.lower(), "text")
                + " END)"
            )
        number = _query.as_number(literal)
        if number is not None:
            parts.append(_number_test(v, op, number, unequal, strings=False))
        return "coalesce(" + _join(", ", parts) + ", " + _const(unequal) + ")"
    return _number_test(v, op, literal, unequal)


def _glob_regex(pattern: str) -> str | None:
    """``fnmatch``'s glob as a PostgreSQL regular expression that matches the same strings: every
    character written as a ``\\U`` escape, so nothing in a pattern is read as regex syntax; None
    for a glob that matches nothing (it holds an empty class)."""
    out = ["^"]
    i, n = 0, len(pattern)
    star = False
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not star:
                out.append(".*")
            star = True
            continue
        star = False
        if c == "?":
            out.append(".")
        elif c == "[":
            cls, i = _glob_class(pattern, i)
            if cls == _NEVER:
                return None
            out.append(cls)
        else:
            out.append(_char(c))
    out.append("$")
    return "".join(out)


_NEVER = ""  # a class no character is in: the glob matches nothing


def _char(c: str) -> str:
    return f"\\U{ord(c):08X}"


def _glob_class(pat: str, i: int) -> tuple[str, int]:
    """The bracket expression that starts after the ``[`` at ``i - 1``, and where the glob goes on.

    Cut as ``fnmatch.translate`` (Python 3.11 to 3.13) cuts it, into the body of a Python regex
    class, then that body read as Python's regex parser reads it: so odd classes (``[z-a]``,
    ``[!]``, ``[a-c-e]``) mean here what they mean to the file store.
    """
    n = len(pat)
    j = i
    if j < n and pat[j] == "!":
        j = j + 1
    if j < n and pat[j] == "]":
        j = j + 1
    while j < n and pat[j] != "]":
        j = j + 1
    if j >= n:
        return _char("["), i
    stuff = pat[i:j]
    if "-" not in stuff:
        stuff = stuff.replace("\\", r"\\")
    else:
        chunks = []
        k = i + 2 if pat[i] == "!" else i + 1
        while True:
            k = pat.find("-", k, j)
            if k < 0:
                break
            chunks.append(pat[i:k])
            i = k + 1
            k = k + 3
        chunk = pat[i:j]
        if chunk:
            chunks.append(chunk)
        else:
            chunks[-1] += "-"
        for k in range(len(chunks) - 1, 0, -1):
            if chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
        stuff = "-".join(s.replace("\\", r"\\").replace("-", r"\-") for s in chunks)
    stuff = re.sub(r"([&~|])", r"\\\1", stuff)
    if not stuff:
        return _NEVER, j + 1  # an empty class matches nothing
    if stuff == "!":
        return ".", j + 1
    negated = stuff[0] == "!"
    if negated:
        stuff = stuff[1:]
    elif stuff[0] in ("^", "["):
        stuff = "\\" + stuff
    return f"[{'^' if negated else ''}{_class_body(stuff)}]", j + 1


def _class_body(stuff: str) -> str:
    """A Python regex class body (escapes and ranges only, as fnmatch writes them) as ``\\U``
    escapes and ranges of them."""
    atoms: list[tuple[str, bool]] = []  # (character, is an unescaped '-')
    k = 0
    while k < len(stuff):
        c = stuff[k]
        if c == "\\" and k + 1 < len(stuff):
            atoms.append((stuff[k + 1], False))
            k += 2
        else:
            atoms.append((c, c == "-"))
            k += 1
    out = []
    k = 0
    while k < len(atoms):
        c = atoms[k][0]
        if k + 2 < len(atoms) and atoms[k + 1][1]:
            out.append(f"{_char(c)}-{_char(atoms[k + 2][0])}")
            k += 3
        else:
            out.append(_char(c))
            k += 1
    return "".join(out)


# ---------------------------------------------------------------------------------- the tree


def _narrowing(op: str, literal: Literal) -> _Sql | None:
    """A condition on ``s.num`` or ``s.text`` that every value meeting ``value OP literal`` meets,
    which an index finds; None when there is none. The exact test is made after it."""
    if isinstance(literal, bool) or op in ("!=", "~"):
        return None
    if isinstance(literal, str):
        if op != "=" or _query.as_number(literal) is not None or literal.lower() in ("true", "false"):
            return None
        return "s.text = " + _p(literal, "text")
    try:
        bound = float(literal)
    except OverflowError:
        bound = math.inf if literal > 0 else -math.inf
    # Rounding to a double never crosses the literal: v < L gives float(v) <= float(L).
    way = {"=": "=", "<": "<=", "<=": "<=", ">": ">=", ">=": ">="}[op]
    return f"s.rank = 0 AND s.num {way} " + _p(bound, "float8")


def _node(tree: Node, q: _Query) -> _Sql:
    """``_query.matcher(tree)`` as a boolean SQL expression over a run: never NULL."""
    if isinstance(tree, (Compare, In, IsNull)):
        key = _scoped(tree.key)
        if key is None:
            return _attribute_node(tree, q)
        if isinstance(tree, IsNull):
            return q.keys(key) if tree.negated else "(NOT " + q.keys(key) + ")"
        if isinstance(tree, Compare):
            test = _key_compare(tree.op, tree.value)
            narrow = _narrowing(tree.op, tree.value)
            return q.keys(key, test if narrow is None else narrow + " AND " + test)
        anyof = "(" + _join(" OR ", (_key_compare("=", lit) for lit in tree.values)) + ")"
        return q.keys(key, "NOT " + anyof if tree.negated else anyof)
    if isinstance(tree, Text):
        q.reads_runs = True
        needle = _p(tree.text.lower(), "text")
        found = [
            "strpos(amltrack_lower(b.run_id), " + needle + ") > 0",
            "coalesce(strpos(amltrack_lower(CASE WHEN jsonb_typeof(x.info -> 'name') = 'string' "
            "THEN x.info ->> 'name' END), " + needle + ") > 0, false)",
            "coalesce(strpos(amltrack_lower(CASE WHEN jsonb_typeof(x.info -> 'user') = 'string' "
            "THEN x.info ->> 'user' END), " + needle + ") > 0, false)",
            "EXISTS (SELECT 1 FROM jsonb_each(CASE WHEN jsonb_typeof(x.info -> 'tags') = 'object' "
            "THEN x.info -> 'tags' ELSE '{}'::jsonb END) t WHERE jsonb_typeof(t.value) = 'string' "
            "AND strpos(amltrack_lower(t.value #>> '{}'), " + needle + ") > 0)",
        ]
        return "(" + _join(" OR ", found) + ")"
    if isinstance(tree, Not):
        return "(NOT " + _node(tree.item, q) + ")"
    if isinstance(tree, (And, Or)):
        return (
            "(" + _join(" AND " if isinstance(tree, And) else " OR ", (_node(i, q) for i in tree.items)) + ")"
        )
    raise TypeError(f"not a query tree: {tree!r}")


def _key_compare(op: str, literal: Literal) -> _Sql:
    """``_query._comparer(op, literal)`` of a row ``s`` of ``run_keys``, from its columns (a glob
    from its value): never NULL."""
    unequal = op == "!="
    if op == "~":
        return _compare(_Sql("s.value"), op, literal)
    if isinstance(literal, bool):
        if op not in ("=", "!="):
            return _FALSE
        b = "(CASE WHEN s.bool IS NOT NULL THEN s.bool WHEN lower(s.text) IN ('true', 'false') THEN lower(s.text) = 'true' END)"
        if op == "=":
            return "coalesce(" + b + " = " + _p(literal, "boolean") + ", false)"
        return "(" + b + " IS DISTINCT FROM " + _p(literal, "boolean") + ")"
    if isinstance(literal, str):
        number = _query.as_number(literal)
        text = "(CASE WHEN s.text IS NOT NULL THEN s.text " + _SQL_OP[op] + " " + _p(literal, "text")
        if op in ("=", "!="):
            text = text + " WHEN s.bool IS NOT NULL THEN (CASE WHEN s.bool THEN 'true' ELSE 'false' END) "
            text = text + _SQL_OP[op] + " " + _p(literal.lower(), "text")
        else:
            text = text + " WHEN s.bool IS NOT NULL THEN false"
        if number is not None:
            text = text + " WHEN s.rank = 0 THEN " + _columns_test(op, number)
        return text + " ELSE " + _const(unequal) + " END)"
    return "(CASE WHEN s.rank = 0 THEN " + _columns_test(op, literal) + " ELSE " + _const(unequal) + " END)"


_MAX_DOUBLE = sys.float_info.max


def _columns_test(op: str, literal: int | float) -> _Sql:
    """``number OP literal`` for a number in ``s.num`` (its double) and ``s.exact`` (its exact value
    when an integer, else NULL): as Python compares ints and floats, exactly. Never NULL."""
    if isinstance(literal, int) and abs(literal) > _MAX_DOUBLE:
        # Beyond every double: compare with the greatest (or least) double instead.
        edge = _MAX_DOUBLE if literal > 0 else -_MAX_DOUBLE
        if op in ("=", "!="):
            return _const(op == "!=")
        if literal > 0:
            op = {"<": "<=", "<=": "<=", ">": ">", ">=": ">"}[op]
        else:
            op = {"<": "<", "<=": "<", ">": ">=", ">=": ">="}[op]
        literal = edge
    num = float(literal) if isinstance(literal, int) else literal
    exact = (
        Decimal(literal)
        if isinstance(literal, int)
        else (Decimal(int(literal)) if math.isfinite(literal) and literal == int(literal) else None)
    )
    n, e = _p(num, "float8"), _p(exact, "numeric")
    if op == "=":
        return "coalesce(s.num = " + n + " AND s.exact IS NOT DISTINCT FROM " + e + ", false)"
    if op == "!=":
        return "NOT coalesce(s.num = " + n + " AND s.exact IS NOT DISTINCT FROM " + e + ", false)"
    strict = op[0]  # < or >
    test = f"s.num {strict} " + n + " OR (s.num = " + n + f" AND (s.exact {strict} " + e
    if op in ("<=", ">="):
        test = test + " OR s.exact IS NOT DISTINCT FROM " + e
    return "coalesce(" + test + ")), false)"


def _attribute_node(tree: Compare | In | IsNull, q: _Query) -> _Sql:
    v = q.attribute(tree.key.name)
    if isinstance(tree, IsNull):
        return "(" + v + (" IS NOT NULL)" if tree.negated else " IS NULL)")
    if isinstance(tree, Compare):
        return "(" + v + " IS NOT NULL AND " + _compare(v, tree.op, tree.value) + ")"
    anyof = "(" + _join(" OR ", (_compare(v, "=", lit) for lit in tree.values)) + ")"
    return "(" + v + " IS NOT NULL AND " + ("NOT " if tree.negated else "") + anyof + ")"


def _order(order: OrderKey, q: _Query) -> list[tuple[_Sql, str]]:
    """``_query.sort``'s order for one key, as (expression, direction) pairs: numbers (numeric
    strings too) before strings before bools, reversed whole when descending, and the runs without
    a value (or NaN) last either way."""
    way = " DESC" if order.descending else ""
    key = _scoped(order.key)
    if key is not None:
        o = q.joined(key)
        columns = [
            f"{o}.rank",
            f"{o}.num",
            f"{o}.exact",
            f"(CASE WHEN {o}.rank = 1 THEN {o}.str END)",
            f"{o}.bool",
        ]
        return [(_Sql(f"({o}.rank IS NULL)"), ""), *((_Sql(c), way) for c in columns)]
    v = q.attribute(order.key.name)
    rank = "amltrack_rank(" + v + ")"
    number = "coalesce(amltrack_int(" + v + ")::float8, amltrack_float(" + v + "))"
    exact = "coalesce(amltrack_int(" + v + "), amltrack_exact(amltrack_float(" + v + ")))"
    return [
        ("(" + rank + " IS NULL)", ""),
        (rank, way),
        ("(CASE WHEN " + rank + " = 0 THEN " + number + " END)", way),
        ("(CASE WHEN " + rank + " = 0 THEN " + exact + " END)", way),
        ("(CASE WHEN " + rank + " = 1 THEN " + v + " #>> '{}' END) COLLATE \"C\"", way),
        ("(CASE WHEN jsonb_typeof(" + v + ") = 'boolean' THEN " + v + "::boolean END)", way),
    ]


@dataclass(frozen=True)
class SqlPart:
    """Some of the runs a listing lists, as SQL over ``runs`` and ``run_keys``: ``page``, a subquery
    of their ids (column ``id``) and what they sort by, whose two last placeholders are its LIMIT
    (None for all) and OFFSET; ``order``, the ORDER BY list that puts its rows (as ``page``) in
    order; ``count``, how many there are. ``params`` and ``count_params`` fill the other ``%s``."""

    page: str
    order: str
    params: tuple[Any, ...]
    count: str
    count_params: tuple[Any, ...]


@dataclass(frozen=True)
class SqlQuery:
    """The runs ``Store.runs(experiment, status, filter=, order_by=)`` lists: the runs of each of
    ``parts`` in turn. A listing sorted by a param, tag or metric has two: the runs with a value of
    it to sort by, in its order (which an index gives, so a page stops early), then the rest."""

    parts: tuple[SqlPart, ...]


def translate(
    filter: str | Node | None = None,
    order_by: str | Sequence[str] | None = None,
    *,
    now: float | None = None,
    experiment: str | None = None,
    status: str | None = None,
    local: Local = NO_LOCAL,
) -> SqlQuery:
    """The SQL of ``Store.runs(experiment, status, filter=, order_by=)``; ``now`` (default
    ``time.time()``) is when a running run's heartbeat is judged and its duration measured; ``local``
    the runs on file as running that this host judged by their process (``TeamStore`` asks it).
    QueryError if the filter or order does not parse, ValueError for a status that is none.

        q = translate('params.optimizer = "adam"', "-metrics.acc")
        part = q.parts[0]
        sql = f"SELECT page.id FROM ({part.page}) page ORDER BY {part.order}"
        ids = [r[0] for r in conn.execute(sql, [*part.params, 100, 0])]   # its first 100
    """
    if status is not None and status not in fmt.STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(fmt.STATUSES)}")
    tree = _query.as_tree(filter)
    orders = _query.parse_orders(order_by)
    for text in (filter if isinstance(filter, str) else str(tree), *_as_list(order_by)):
        if "\x00" in text:
            raise QueryError(
                text,
                text.index("\x00") + 1,
                "a NUL character",
                "PostgreSQL cannot store one, so no run on the server holds one; leave it out",
            )
    at = time.time() if now is None else float(now)
    first = _scoped(orders[0].key) if orders else None
    if first is None:
        return SqlQuery((_part(tree, orders, None, at, experiment, status, local),))
    return SqlQuery(
        (
            _part(tree, orders, (first, True), at, experiment, status, local),
            _part(tree, orders[1:], (first, False), at, experiment, status, local),
        )
    )


def _part(
    tree: Node | None,
    orders: Sequence[OrderKey],
    first: tuple[tuple[str, str, str], bool] | None,
    now: float,
    experiment: str | None,
    status: str | None,
    local: Local = NO_LOCAL,
) -> SqlPart:
    """The runs that have (``first[1]``) or lack a value to sort by of the key ``first[0]``, or all."""
    q = _Query(now, local)
    source = _Sql("run_keys b")
    where = _Sql("b.scope = '' AND b.published")
    if first is not None:
        (scope, name, field), ranked = first
        key = _Sql(" AND f.scope = ") + _p(scope, "text") + " AND f.name = " + _p(name, "text")
        key = key + " AND f.field = " + _p(field, "text") + " AND f.rank IS NOT NULL"
        if ranked:
            source = "run_keys f JOIN run_keys b ON b.run_id = f.run_id" + key
        else:
            where = where + " AND NOT EXISTS (SELECT 1 FROM run_keys f WHERE f.run_id = b.run_id" + key + ")"
    if tree is not None:
        where = where + " AND " + _node(tree, q)
    if experiment is not None:
        where = where + " AND (" + q.attribute("experiment") + " #>> '{}') = " + _p(experiment, "text")
    if status is not None:
        where = where + " AND (" + q.attribute("status") + " #>> '{}') = " + _p(status, "text")
    sort: list[tuple[_Sql, str]] = []
    if first is not None and first[1]:
        way = " DESC" if orders[0].descending else ""
        sort = [(_Sql(f"f.{c}"), way) for c in ("rank", "num", "exact", "str", "bool")]
        orders = orders[1:]
    sort += [c for o in orders for c in _order(o, q)]
    if q.reads_runs:
        source = source + " JOIN runs x ON x.id = b.run_id"
    source = source + _join("", q.joins)
    count = "SELECT count(*) FROM " + source + " WHERE " + where
    columns = _join("", (", " + c + f" AS c{i}" for i, (c, _) in enumerate(sort)))
    by = _join(", ", [*(c + way for c, way in sort), _Sql("b.run_id DESC")])
    page = "SELECT b.run_id AS id" + columns + " FROM " + source + " WHERE " + where
    page = page + " ORDER BY " + by + " LIMIT %s OFFSET %s"
    order = ", ".join([*(f"page.c{i}{way}" for i, (_, way) in enumerate(sort)), 'page.id COLLATE "C" DESC'])
    return SqlPart(page.text, order, tuple(page.params), count.text, tuple(count.params))


def _as_list(order_by: str | Sequence[str] | None) -> list[str]:
    if order_by is None:
        return []
    return [order_by] if isinstance(order_by, str) else list(order_by)


# ------------------------------------------------------------------------------ the listing


def history_sql(
    conn: psycopg.Connection[Any],
    experiment: str | None = None,
    status: str | None = None,
    limit: int = 0,
    filter: str | Node | None = None,
    order_by: str | Sequence[str] | None = None,
    offset: int = 0,
    *,
    now: float | None = None,
    local: Local = NO_LOCAL,
) -> list[tuple[str, bytes, bytes | None, str]]:
    """The published runs ``Store.runs(experiment, status, limit, filter=, order_by=)`` would list,
    from the ``runs`` table: ``(id, run_json, summary_json, status)`` each, newest first unless
    ``order_by`` says otherwise; ``limit`` 0 is all, ``offset`` skips that many first.

    For ``TeamStore.history``: ``status`` is one of ``_format.STATUSES`` (ValueError otherwise, as
    ``Store.runs``); a filter or order that does not parse raises ``QueryError`` (the API's 400
    ``invalid_query``). ``now`` defaults to this host's clock, as the file store's does. Runs in a
    transaction of its own on ``conn`` (or in the caller's), with JIT compilation off for it.

        rows = history_sql(conn, status="completed", filter="params.bs = 32", order_by="-metrics.acc", limit=100)
    """
    at = time.time() if now is None else float(now)
    q = translate(filter, order_by, now=at, experiment=experiment, status=status, local=local)
    out: list[tuple[str, bytes, bytes | None, str]] = []
    need, skip = max(0, limit), max(0, offset)
    with conn.transaction():
        _no_jit(conn)
        for part in q.parts:
            status_sql = _status("r", at, local)
            rows = conn.execute(
                _rows_sql(part, status_sql.text), [*status_sql.params, *part.params, need or None, skip]
            ).fetchall()
            out += [(r[0], bytes(r[1]), None if r[2] is None else bytes(r[2]), r[3]) for r in rows]
            if need:
                need -= len(rows)
                if need <= 0:
                    break
            if skip:
                # the offset reached into the next part by as many as this part did not hold
                skip = 0 if rows else max(0, skip - _count(conn, part))
    return out


def count_sql(
    conn: psycopg.Connection[Any],
    experiment: str | None = None,
    status: str | None = None,
    filter: str | Node | None = None,
    *,
    now: float | None = None,
    local: Local = NO_LOCAL,
) -> int:
    """How many published runs ``history_sql`` lists with no limit."""
    q = translate(filter, None, now=now, experiment=experiment, status=status, local=local)
    with conn.transaction():
        _no_jit(conn)
        return _count(conn, q.parts[0])


def _count(conn: psycopg.Connection[Any], part: SqlPart) -> int:
    row = conn.execute(part.count, part.count_params).fetchone()
    return int(row[0]) if row else 0


def _rows_sql(part: SqlPart, status: str = "amltrack_status(r.info, r.listing, %s::float8)") -> str:
    # The page's ids first, then the bytes and status of those runs only.
    return (
        f"SELECT r.id, r.run_json, r.summary_json, {status} "
        # runs.id's index has the database's collation: a "C" id on the other side of = would
        # keep it from being used, and read every run to find a page's 100.
        f'FROM ({part.page}) page JOIN runs r ON r.id = (page.id COLLATE "default") ORDER BY {part.order}'
    )


def listing_sql(
    experiment: str | None = None,
    status: str | None = None,
    filter: str | Node | None = None,
    order_by: str | Sequence[str] | None = None,
    *,
    now: float | None = None,
) -> list[tuple[str, list[Any]]]:
    """``history_sql``'s queries, one a part, and their parameters but for the last two of each,
    its LIMIT (None for all) and OFFSET: for EXPLAIN."""
    at = time.time() if now is None else float(now)
    q = translate(filter, order_by, now=at, experiment=experiment, status=status)
    return [(_rows_sql(part), [at, *part.params]) for part in q.parts]


def _no_jit(conn: psycopg.Connection[Any]) -> None:
    # These queries call many small functions, which the planner costs high enough to JIT-compile
    # them: a second of compiling for a query that runs in milliseconds.
    conn.execute("SET LOCAL jit = off")


# ------------------------------------------------------------------------------ filling rows


def encode_ranges(ranges: Mapping[str, tuple[Any, Any]]) -> dict[str, list[Any]]:
    """``RunRow.ranges()`` as the ``ranges`` column holds it: infinities as their JSON Lines strings."""
    return {name: [_encode_number(lo), _encode_number(hi)] for name, (lo, hi) in ranges.items()}


def _encode_number(v: Any) -> Any:
    if type(v) is float and not math.isfinite(v):
        return fmt.NONFINITE_TO_STR[repr(v)]
    return v


def row_columns(run: Run) -> dict[str, Any]:
    """What a file-store ``Run`` puts in its ``runs`` row's query columns: ``info``, ``listing`` and
    ``ranges`` (as Python objects, for psycopg's ``Jsonb``)."""
    ranges = {n: (s["min"], s["max"]) for n, s in run.summary().items() if s["min"] is not None}
    return {"info": run.info, "listing": run.listing_summary(), "ranges": encode_ranges(ranges)}
