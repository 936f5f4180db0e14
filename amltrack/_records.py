"""The metrics.jsonl record grammar: how records are encoded, and decoded into columns.

The one owner of what a record is (docs/format.md, "metrics.jsonl"). A **point** is
``{"name", "step", "value", "ts", "seq"}``, a **row** (``log_metrics()``) is
``{"step", "values": {name: value}, "ts", "seq"}`` and reads as one point per entry; ``nonfinite``
flags NaN and infinities written as strings, and ``w`` names a joined process. A value's kind
(number, bool, string, list, ...) is ``amltrack/_kinds.py``'s to say. Everyone asks here:

- ``encode_value`` / ``decode_value``: a value's JSON form (the writer, the summary);
- ``decode``: JSON Lines bytes to per-metric columns, as ``Run.metrics()`` reads them;
- ``decode_chunk``: the same records with line offsets for strings and lists, for the UI's cache;
- ``block_columns`` / ``block_extras``: the writer's column index (``_columns.py``) decoded;
- ``parse_line`` / ``record_points``: one line to points, and a value to MLflow's points (sync);
- ``check``: the one rule for a point record, which every path above applies.

The common cases have C-level fast paths (``map``, ``set`` and, for the UI, numpy), measured by
``benchmarks/bench_core.py`` and ``bench_ui.py``; anything odd falls back to ``check`` per record,
so every path skips and counts the same records.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import operator
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from . import _format as fmt
from . import _kinds

if TYPE_CHECKING:
    from ._columns import Block

_K_NAME = operator.itemgetter("name")
_K_STEP = operator.itemgetter("step")
_K_VALUE = operator.itemgetter("value")
_K_TS = operator.itemgetter("ts")
_K_VALUES = operator.itemgetter("values")
_NUMBER = (int, float)
_NUMBER_SET = {int, float}
_SCALAR_SET = {int, float, str, bool}
_ROW_SET = {int, float, bool}
_MAX_STEP = 2**63


# ------------------------------------------------------------------ values and records


def encode_value(value: Any) -> tuple[Any, bool]:
    """Map a validated metric value to its JSON form; the flag says non-finite floats were replaced."""
    if type(value) is float:
        if math.isfinite(value):
            return value, False
        return fmt.NONFINITE_TO_STR[repr(value)], True
    if type(value) is list:
        for v in value:
            if type(v) is float and not math.isfinite(v):
                return [
                    fmt.NONFINITE_TO_STR[repr(x)] if type(x) is float and not math.isfinite(x) else x
                    for x in value
                ], True
    return value, False


def decode_value(value: Any, nonfinite: bool) -> Any:
    if not nonfinite:
        return value
    if type(value) is list:
        return [fmt.STR_TO_NONFINITE[v] if type(v) is str else v for v in value]
    return fmt.STR_TO_NONFINITE.get(value, value)


def is_row(r: Any) -> bool:
    """Whether a metrics.jsonl record is a row (``log_metrics()``: several metrics at one step)."""
    return type(r) is dict and "values" in r and "name" not in r


def row_points(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The point records of row ``r``, in its key order, as if ``log()`` had written each one.

    A row holds numbers and bools only, so a string in it is a non-finite marker when the row is
    flagged; its entries keep the flag and the rest do not need it.
    """
    values = r.get("values")
    if type(values) is not dict:
        return []
    shared = {k: v for k, v in r.items() if k != "values" and k != "nonfinite"}
    flagged = r.get("nonfinite") is True
    out = []
    for name, value in values.items():
        p = {"name": name, **shared, "value": value}
        if flagged and type(value) is str:
            p["nonfinite"] = True
        out.append(p)
    return out


def expand_rows(records: list[Any]) -> list[Any]:
    """``records`` with each row replaced by its point records, in file order. A row without
    entries (``values`` not an object, or empty) stays as it is, for the reader to count as bad."""
    out: list[Any] = []
    for r in records:
        if is_row(r):
            out += row_points(r) or [r]
        else:
            out.append(r)
    return out


def encode_nonfinite(recs: list[Any]) -> list[Any]:
    """``recs`` with NaN and infinities as their JSON Lines strings, in copies of the records
    that hold them (the records are the callers' handles)."""
    out = recs.copy()
    encode = encode_value
    isfinite = math.isfinite
    for i, rec in enumerate(recs):
        values = rec.get("values")
        if values is None:
            v = rec["value"]
            if type(v) is float or type(v) is list:
                enc, nonfinite = encode(v)
                if nonfinite:
                    out[i] = {**rec, "value": enc, "nonfinite": True}
        elif not isfinite(sum(values.values())) and not all(map(isfinite, values.values())):
            out[i] = {**rec, "values": {k: encode(v)[0] for k, v in values.items()}, "nonfinite": True}
    return out


# Appended to a batch's array so that its last separator, like the others, becomes a newline.
BATCH_END: dict[str, Any] = {}


def as_lines(data: bytes, recs: list[Any], check: bool = True) -> memoryview:
    """The JSON Lines of ``recs`` from ``data``, their one ``orjson.dumps`` as ``[*recs, BATCH_END]``:
    the separators ``},{`` become newlines, and the trailing empty object turns the last one into
    the final newline. With ``check``, a batch where a string holds ``},{`` (more separators than
    records) is encoded a record at a time instead."""
    if check and data.count(b"},{") != len(recs):
        return memoryview(b"\n".join(map(orjson.dumps, recs)) + b"\n")
    # [{...}\n{...}\n{}] without its first byte and its last three
    return memoryview(data.replace(b"},{", b"}\n{"))[1:-3]


def check(r: Any) -> tuple[str, int, Any, float, _kinds.Kind] | str | None:
    """The one rule for a point record: ``(name, step, value, ts, kind)`` with the value decoded;
    the name of its kind if that is a kind this amltrack does not know (written by a newer one:
    skipped, but not damage); None for a record every reader skips as damaged."""
    try:
        name = r["name"]
        step = r["step"]
        value = r["value"]
        ts = r["ts"]
        if type(name) is not str or type(step) is not int or step < 0 or type(ts) not in _NUMBER:
            return None
        if "nonfinite" in r:
            value = decode_value(value, r["nonfinite"] is True)
    except (KeyError, TypeError):
        return None
    kind = _kinds.kind_of(value)
    if kind is None:
        return _kinds.unknown_kind(value)
    return name, step, value, ts, kind


def warn_unknown(where: str, unknown: dict[str, int]) -> None:
    """Say once per file that records of kinds this amltrack does not know were left out."""
    if unknown:
        kinds = ", ".join(f"{n} of kind {k!r}" for k, n in sorted(unknown.items()))
        fmt.warn_once(
            f"{where}:kinds",
            f"amltrack skipped {kinds} in {where}, written by a newer amltrack; upgrade amltrack to read them",
        )


def warn_bad(where: str, bad: int) -> None:
    if bad:
        fmt.warn_once(
            f"{where}:types",
            f"amltrack skipped {bad} record(s) with missing or wrong-typed fields in {where} and read "
            "the rest; the file was damaged or edited by hand",
        )


# ------------------------------------------------------------------ one line (sync)

# A metric record of metrics.jsonl for a reader of single lines: (name, step, ts, value).
Record = tuple[str, int, float, Any]


def parse_line(line: bytes) -> list[Record | None]:
    """The records of a metrics.jsonl line: one for a point record, one per entry for a row, in its
    key order, as if each had been logged alone; None for each that every reader skips (a line
    that is not a record, a row with no entries, a value of a kind this amltrack does not know)."""
    try:
        r = orjson.loads(line)
    except orjson.JSONDecodeError:
        return [None]
    if type(r) is not dict:
        return [None]
    if is_row(r):
        return [_record(p) for p in row_points(r)] or [None]
    return [_record(r)]


def _record(r: dict[str, Any]) -> Record | None:
    p = check(r)
    if type(p) is not tuple:
        return None
    name, step, value, ts, _ = p
    return name, step, ts, value


def record_points(step: int, value: Any) -> list[tuple[int, float]] | None:
    """The (step, value) points MLflow gets for a value, as its kind maps it: one for a number or
    bool (as 1.0 or 0.0), one per element for a list (step = index); None for what MLflow cannot
    hold as a metric (a string, a kind this amltrack does not know)."""
    kind = _kinds.kind_of(value)
    return None if kind is None else kind.mlflow_points(step, value)


# ------------------------------------------------------------------ bytes to columns (Run.metrics)


class Series:
    """One metric's columns as decoded: ``steps``, ``values`` and ``timestamps`` in file order."""

    __slots__ = ("name", "steps", "values", "timestamps", "media")

    def __init__(
        self,
        name: str,
        steps: list[int] | None = None,
        values: list[Any] | None = None,
        timestamps: list[float] | None = None,
    ) -> None:
        self.name = name
        self.steps: list[int] = [] if steps is None else steps
        self.values: list[Any] = [] if values is None else values
        self.timestamps: list[float] = [] if timestamps is None else timestamps
        # Whether a value is of a tagged kind (an image, a table, ...), which readers wrap: only
        # the checked path meets them, so plain series are never scanned for them.
        self.media = False

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int, Any, float]]:
        return zip(self.steps, self.values, self.timestamps)


def decode(data: bytes, where: str) -> tuple[dict[str, Series], int, int]:
    """The metrics of JSON Lines ``data``, each in call order (several processes' records merged by
    time), the lines that are not JSON, and the records skipped as damaged. Records of a kind this
    amltrack does not know are left out with one warning, and not counted."""
    enabled = gc.isenabled()
    # Millions of small containers make the cyclic collector rescan everything again and again.
    gc.disable()
    try:
        unknown: dict[str, int] = {}
        out, skipped, bad = _parse(data, where, unknown)
    finally:
        if enabled:
            gc.enable()
    warn_unknown(where, unknown)
    return out, skipped, bad


def group(records: list[Any], where: str) -> tuple[dict[str, Series], int]:
    """Records already parsed (rows among them) grouped into metrics in file order, each checked;
    the number skipped as damaged (unknown kinds: left out, with one warning)."""
    unknown: dict[str, int] = {}
    out, bad = _group_checked(expand_rows(records), unknown)
    warn_unknown(where, unknown)
    return out, bad


def _parse(data: bytes, where: str, unknown: dict[str, int]) -> tuple[dict[str, Series], int, int]:
    """Metrics of JSON Lines ``data``, the unreadable lines and the records with bad fields."""
    records, skipped = fmt.parse_jsonl(data, where)
    rows = b'"values"' in data
    if b'"w":' in data:
        out, bad = _group_multi(expand_rows(records) if rows else records, unknown)
    elif rows:
        out, bad = _group_rows(records, b'"nonfinite"' in data, unknown)
    else:
        out, bad = _group(records, b'"nonfinite"' in data, unknown)
    return out, skipped, bad


def _group_rows(
    records: list[Any], nonfinite: bool, unknown: dict[str, int]
) -> tuple[dict[str, Series], int]:
    """Group records that include rows (``log_metrics()``) into metrics, as columns.

    Rows with the same names become columns at once, a transposition in C; log() records
    among them are grouped as ``_group`` does; a metric found in several of those parts is put
    back into file order. A field of the wrong type anywhere sends the lot down the checked
    path, one point per entry, so that it is counted as the reader counts bad records.
    """
    by_names: dict[tuple[str, ...], list[int]] = {}
    points: list[int] = []  # log() records among the rows
    for i, r in enumerate(records):
        v = r.get("values") if type(r) is dict and "name" not in r else None
        if type(v) is not dict or not v:
            points.append(i)
            continue
        key = tuple(v)
        ix = by_names.get(key)
        if ix is None:
            by_names[key] = [i]
        else:
            ix.append(i)
    parts: dict[str, list[tuple[list[int], list[int], list[Any], list[float]]]] = {}
    for key, ix in by_names.items():
        rows = records if len(by_names) == 1 and not points else [records[i] for i in ix]
        columns = _row_columns(key, rows, nonfinite)
        if columns is None:
            return _group(expand_rows(records), nonfinite, unknown)
        steps, stamps = columns[0], columns[1]
        for name, values in zip(key, columns[2]):
            # each metric its own lists: reading more of the file extends them in place
            parts.setdefault(name, []).append((ix, steps.copy(), values, stamps.copy()))
    if points:
        grouped, bad = _group([records[i] for i in points], nonfinite, unknown)
        if bad:
            unknown.clear()  # counted again below
            return _group(expand_rows(records), nonfinite, unknown)
        at: dict[str, list[int]] = {}
        for i in points:
            at.setdefault(records[i]["name"], []).append(i)
        for name, m in grouped.items():
            parts.setdefault(name, []).append((at[name], m.steps, m.values, m.timestamps))
        media = [name for name, m in grouped.items() if m.media]
    out = {}
    for name, series in parts.items():
        if len(series) == 1:
            out[name] = Series(name, *series[0][1:])
            continue
        where = [i for ix, *_ in series for i in ix]
        order = sorted(range(len(where)), key=where.__getitem__)
        pick = operator.itemgetter(*order)  # two parts or more: two points or more
        out[name] = Series(name, *(list(pick([x for part in series for x in part[k]])) for k in (1, 2, 3)))
    if points:
        for name in media:
            out[name].media = True
    return out, 0


def concat(parts: list[dict[str, Series]]) -> dict[str, Series]:
    """Metrics read from consecutive parts of metrics.jsonl, each metric's points in file order."""
    out = parts[0]
    for part in parts[1:]:
        for name, m in part.items():
            head = out.get(name)
            if head is None:
                out[name] = m
            else:
                head.steps += m.steps
                head.values += m.values
                head.timestamps += m.timestamps
                head.media |= m.media
    return out


def _group(records: list[Any], nonfinite: bool, unknown: dict[str, int]) -> tuple[dict[str, Series], int]:
    """Group records into metrics, as columns.

    A clean file, the common case, goes through C-level map and set calls; anything odd in it
    (a missing field, a wrong type, a flagged non-finite value) falls back to checking each
    record.
    """
    columns = None if nonfinite or not records else _point_columns(records)
    if columns is None:
        return _group_checked(records, unknown)
    names, steps, values, stamps = columns
    if (
        set(map(type, names)) != {str}
        or set(map(type, steps)) != {int}
        or min(steps) < 0
        or not set(map(type, stamps)) <= _NUMBER_SET
        or not set(map(type, values)) <= _SCALAR_SET
    ):
        return _group_checked(records, unknown)
    return {n: Series(n, *series) for n, series in split_columns(names, steps, values, stamps).items()}, 0


def _group_checked(records: list[Any], unknown: dict[str, int]) -> tuple[dict[str, Series], int]:
    out: dict[str, Series] = {}
    bad = 0
    for r in records:
        p = check(r)
        if not isinstance(p, tuple):
            if p is None:
                bad += 1
            else:
                unknown[p] = unknown.get(p, 0) + 1
            continue
        name, step, value, ts, kind = p
        m = out.get(name)
        if m is None:
            m = out[name] = Series(name)
        if kind.column == "media":
            m.media = True
        m.steps.append(step)
        m.values.append(value)
        m.timestamps.append(ts)
    return out, bad


def _group_multi(records: list[Any], unknown: dict[str, int]) -> tuple[dict[str, Series], int]:
    """Several processes logged: keep each one's call order (seq) and merge them by time."""
    by_writer: dict[Any, list[Any]] = {}
    for r in records:
        w = r.get("w") if type(r) is dict else None
        by_writer.setdefault(w, []).append(r)
    streams = []
    bad = 0
    for recs in by_writer.values():
        try:
            recs.sort(key=lambda r: r["seq"])
        except (KeyError, TypeError):
            pass
        grouped, b = _group_checked(recs, unknown)
        bad += b
        streams.append(grouped)
    out: dict[str, Series] = {}
    names = {n for g in streams for n in g}
    for name in names:
        parts = [g[name] for g in streams if name in g]
        if len(parts) == 1:
            out[name] = parts[0]
            continue
        m = out[name] = Series(name)
        m.media = any(p.media for p in parts)
        for step, value, ts in heapq.merge(*parts, key=lambda p: p[2]):
            m.steps.append(step)
            m.values.append(value)
            m.timestamps.append(ts)
    return out, bad


def _row_columns(
    names: tuple[str, ...], rows: list[dict[str, Any]], nonfinite: bool
) -> tuple[list[int], list[float], list[list[Any]]] | None:
    """Steps, timestamps and one column of values per name of rows that all hold ``names`` in that
    order; None if a field has the wrong type, for the checked path to sort out."""
    try:
        steps = list(map(_K_STEP, rows))
        stamps = list(map(_K_TS, rows))
    except KeyError:
        return None
    if set(map(type, steps)) != {int} or min(steps) < 0 or not set(map(type, stamps)) <= _NUMBER_SET:
        return None
    columns = [list(c) for c in zip(*map(dict.values, map(_K_VALUES, rows)))]
    flags = None
    for k, col in enumerate(columns):
        types = set(map(type, col))
        if types <= _ROW_SET:
            continue
        if not types <= _ROW_SET | {str}:
            return None
        if flags is None:
            flags = [nonfinite and r.get("nonfinite") is True for r in rows]
        get = fmt.STR_TO_NONFINITE.get
        columns[k] = [get(v, v) if type(v) is str and flags[j] else v for j, v in enumerate(col)]
    return steps, stamps, columns


def split_columns(
    keys: list[Any], steps: list[int], values: list[Any], stamps: list[float]
) -> dict[Any, tuple[list[int], list[Any], list[float]]]:
    """Columns of records split by each record's key, keys in order of first appearance."""
    n = len(keys)
    if not n:
        return {}
    if keys.count(keys[0]) == n:
        return {keys[0]: (steps, values, stamps)}
    out: dict[Any, tuple[list[int], list[Any], list[float]]] = {k: ([], [], []) for k in dict.fromkeys(keys)}
    # In chunks, because metrics are often logged in long stretches of one name (a chunk of one
    # key is three slices, counted in C) and the per-record loop is needed only where names mix.
    for a in range(0, n, _SPLIT_CHUNK):
        b = a + _SPLIT_CHUNK
        chunk = keys[a:b]
        if chunk.count(chunk[0]) == len(chunk):
            s, v, t = out[chunk[0]]
            s += steps[a:b]
            v += values[a:b]
            t += stamps[a:b]
            continue
        where: dict[Any, list[int]] = {k: [] for k in dict.fromkeys(chunk)}
        for i, k in enumerate(chunk, a):
            where[k].append(i)
        for k, ix in where.items():
            s, v, t = out[k]
            if len(ix) == 1:
                i = ix[0]
                s.append(steps[i])
                v.append(values[i])
                t.append(stamps[i])
            else:
                pick = operator.itemgetter(*ix)
                s += pick(steps)
                v += pick(values)
                t += pick(stamps)
    return out


_SPLIT_CHUNK = 2048


# ------------------------------------------------------------------ the column index's blocks


def block_columns(blocks: list[Block]) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The blocks' codes (uint32), steps (int64), values and timestamps (float64): per column, each
    block's little-endian bytes in order, for ``array.frombytes`` block by block (joining them first
    would copy every column once more) or for ``numpy.frombuffer`` once joined."""
    return (
        [b.codes for b in blocks],
        [b.steps for b in blocks],
        [b.values for b in blocks],
        [b.stamps for b in blocks],
    )


def block_extras(blocks: list[Block]) -> Iterator[tuple[int, Any]]:
    """``(i, value)`` for each record i of the joined blocks whose value is not in the float column,
    decoded as the JSON Lines would be. Raises TypeError, ValueError, IndexError or KeyError for
    extras that are not as the writer writes them."""
    base = 0
    for b in blocks:
        for i, value, nonfinite in b.extras:
            yield base + i, decode_value(value, nonfinite is True)
        base += b.n


# ------------------------------------------------------------------ bytes to columns with line offsets (UI)


class Part:
    """What one chunk holds of one metric."""

    __slots__ = ("steps", "values", "stamps", "bools", "nonfinite", "strings", "lists", "media")

    def __init__(self) -> None:
        self.steps: Any = []
        self.values: Any = []
        self.stamps: Any = []
        self.bools = 0
        self.nonfinite = 0
        self.strings: list[int] = []  # offsets of lines, per kind kept so (Kind.counter)
        self.lists: list[int] = []
        self.media: list[int] = []  # the tagged kinds' (images, tables, ...), one column for all


def decode_chunk(data: bytes, base: int) -> tuple[dict[str, Part], int, bool]:
    """Parse whole lines ``data`` (ending in a newline) found at byte ``base`` of metrics.jsonl.

    Returns the parts per metric name, in first-appearance order, the number of lines skipped, and
    whether any record came from a joined process (``"w"``), whose records the reader merges by time.
    """
    enabled = gc.isenabled()
    # Tens of thousands of small dicts make the cyclic collector rescan them again and again.
    gc.disable()
    try:
        return _decode_chunk(data, base)
    finally:
        if enabled:
            gc.enable()


def _decode_chunk(data: bytes, base: int) -> tuple[dict[str, Part], int, bool]:
    n_lines = data.count(b"\n")
    multi = b'"w":' in data
    recs: list[Any] | None = None
    # One JSON array for the whole chunk; an empty or broken line makes it fail, and then every line
    # is parsed on its own. A line holding two values would make the count differ: the same.
    if b"\n\n" not in data and not data.startswith(b"\n"):
        try:
            recs = orjson.loads(b"[" + data[:-1].replace(b"\n", b",") + b"]")
        except orjson.JSONDecodeError:
            recs = None
        if recs is not None and len(recs) != n_lines:
            recs = None
    if recs is not None and not multi and b'"nonfinite"' not in data:
        fast = _parse_clean(recs)
        if fast is None and b'"values"' in data:  # rows (log_metrics()): a row has no "name"
            fast = _parse_clean_rows(recs)
        if fast is not None:
            return fast, 0, False
    lines = data.split(b"\n")
    lines.pop()
    # A row's "values" key, unless a hand-written line spells a letter of it as a \u escape.
    rows = b'"values"' in data or b"\\u" in data
    return _parse_checked(lines, recs, base, multi, rows)


def _parse_clean(recs: list[Any]) -> dict[str, Part] | None:
    """The common case, a chunk of plain numbers, through C-level passes; None if anything is odd."""
    columns = _point_columns(recs)
    return None if columns is None else _clean_columns(*columns)


def _point_columns(recs: list[Any]) -> tuple[list[Any], list[Any], list[Any], list[Any]] | None:
    """Names, steps, values and timestamps of point records, unchecked, by C-level passes; None if
    a record lacks a field or is not an object."""
    try:
        return (
            list(map(_K_NAME, recs)),
            list(map(_K_STEP, recs)),
            list(map(_K_VALUE, recs)),
            list(map(_K_TS, recs)),
        )
    except (KeyError, TypeError):
        return None


def _parse_clean_rows(recs: list[Any]) -> dict[str, Part] | None:
    """``_parse_clean`` for a chunk with rows: each row's entries as points at its step and ts."""
    uniform = _parse_uniform_rows(recs)
    if uniform is not None:
        return uniform
    names: list[Any] = []
    steps: list[Any] = []
    values: list[Any] = []
    stamps: list[Any] = []
    try:
        for r in recs:
            if "name" in r:
                names.append(r["name"])
                steps.append(r["step"])
                values.append(r["value"])
                stamps.append(r["ts"])
                continue
            entries = r["values"]
            if type(entries) is not dict or not entries:
                return None  # a row without entries is a damaged record: the checked path counts it
            k = len(entries)
            names += entries
            values += entries.values()
            steps += [r["step"]] * k
            stamps += [r["ts"]] * k
    except (KeyError, TypeError):
        return None
    return _clean_columns(names, steps, values, stamps)


def _parse_uniform_rows(recs: list[Any]) -> dict[str, Part] | None:
    """The common case of rows: the same metrics in every record of the chunk (``log_metrics()``
    with the same dict keys each step), through C-level passes; else None. The order of a row's
    keys matters only for the order in which metrics first appear, that of the first row."""
    import numpy as np  # the UI's only; the store's readers stay without it

    try:
        entries = list(map(_K_VALUES, recs))
        steps = list(map(_K_STEP, recs))
        stamps = list(map(_K_TS, recs))
        if any(map(operator.contains, recs, itertools.repeat("name"))):
            return None  # a record with a "name" is a point, whatever else it has
    except (KeyError, TypeError):
        return None
    if not entries or set(map(type, entries)) != {dict}:
        return None
    first = entries[0]
    if (
        not first
        or set(map(len, entries)) != {len(first)}
        or set(map(type, steps)) != {int}
        or not set(map(type, stamps)) <= _NUMBER_SET
        or min(steps) < 0
    ):
        return None
    out: dict[str, Part] = {}
    try:
        s = np.array(steps, dtype="<i8")
        t = np.array(stamps, dtype="<f8")
        for name in first:
            # As many entries in each row, and each of the first row's names in every row: the same.
            values = list(map(operator.itemgetter(name), entries))
            types = set(map(type, values))
            if not types <= _NUMBER_SET and types != {bool}:
                return None  # bools mixed with numbers, or a string or a list: checked one by one
            part = out[name] = Part()
            part.steps, part.values, part.stamps = s, np.array(values, dtype="<f8"), t
            if bool in types:
                part.bools = len(values)
    except (KeyError, OverflowError):
        return None
    return out


def _clean_columns(
    names: list[Any], steps: list[Any], values: list[Any], stamps: list[Any]
) -> dict[str, Part] | None:
    """The parts of records given as columns, if they are plain numbers; None if anything is odd."""
    import numpy as np  # the UI's only; the store's readers stay without it

    if (
        set(map(type, names)) != {str}
        or set(map(type, steps)) != {int}
        or not set(map(type, stamps)) <= _NUMBER_SET
        or not set(map(type, values)) <= _NUMBER_SET
        or min(steps) < 0
    ):
        return None
    try:
        s = np.array(steps, dtype="<i8")
        v = np.array(values, dtype="<f8")
        t = np.array(stamps, dtype="<f8")
    except OverflowError:
        return None
    ids = {n: i for i, n in enumerate(dict.fromkeys(names))}
    out: dict[str, Part] = {}
    if len(ids) == 1:
        part = out[names[0]] = Part()
        part.steps, part.values, part.stamps = s, v, t
        return out
    codes = np.fromiter(map(ids.__getitem__, names), dtype=np.int32, count=len(names))
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(ids)))
    start = 0
    for name, i in ids.items():
        pick = order[start : bounds[i]]
        start = bounds[i]
        part = out[name] = Part()
        part.steps, part.values, part.stamps = s[pick], v[pick], t[pick]
    return out


def _parse_checked(
    lines: list[bytes], recs: list[Any] | None, base: int, multi: bool, rows: bool = False
) -> tuple[dict[str, Part], int, bool]:
    """Every record checked by ``check``, as the store's reader checks it; line offsets kept for strings and lists.

    With ``rows`` (the chunk may hold some), each row is first replaced by its points, which all
    keep the row's line.
    """
    skipped = 0
    numbered: list[int] | None = None  # None: record i is line i
    if recs is None:
        recs = []
        numbered = []
        for i, line in enumerate(lines):
            try:
                recs.append(orjson.loads(line))
                numbered.append(i)
            except orjson.JSONDecodeError:
                if line.strip():
                    skipped += 1
    if rows:
        points: list[Any] = []
        where: list[int] = []
        for j, r in enumerate(recs):
            line_no = j if numbered is None else numbered[j]
            if is_row(r):
                found = row_points(r) or [r]  # a row without entries is a bad record, as the reader counts it
                points += found
                where += [line_no] * len(found)
            else:
                points.append(r)
                where.append(line_no)
        recs, numbered = points, where
    import numpy as np

    starts: np.ndarray | None = None
    out: dict[str, Part] = {}
    for j, r in enumerate(recs):
        p = check(r)
        if type(p) is not tuple:
            if p is None:
                skipped += 1
            continue  # a kind this amltrack does not know: not damage, and the reader says so
        name, step, value, ts, kind = p
        if step >= _MAX_STEP:
            skipped += 1  # the cache's steps are int64
            continue
        if "w" in r:
            multi = True
        if kind.column == "value":
            try:
                fv = float(value)
            except OverflowError:
                skipped += 1
                continue
            part = out.get(name)
            if part is None:
                part = out[name] = Part()
            part.steps.append(step)
            part.values.append(fv)
            part.stamps.append(float(ts))
            if kind is _kinds.BOOL:
                part.bools += 1
            elif fv != fv or fv in (np.inf, -np.inf):
                part.nonfinite += 1
            continue
        # A kind kept as the offsets of its records' lines: strings and lists.
        if starts is None:
            lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) + 1
            starts = base + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        line_no = j if numbered is None else numbered[j]
        part = out.get(name)
        if part is None:
            part = out[name] = Part()
        getattr(part, kind.counter).append(int(starts[line_no]))
    return out, skipped, multi
