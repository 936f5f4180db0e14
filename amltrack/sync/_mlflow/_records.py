"""metrics.jsonl as the MLflow push reads it: its whole lines, and the records of each line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ... import _format as fmt
from ._mapping import to_ms

_INT64_MAX = (1 << 63) - 1


# A metric record of metrics.jsonl: (name, step, ts, ms, value).
Record = tuple[str, int, float, int, Any]


def parse_line(line: bytes) -> list[Record | None]:
    """The records of a metrics.jsonl line: one for a point record, one per entry for a row, in its
    key order, as if each had been logged alone; None for each that every reader skips (a line
    that is not a record, or a row with no entries, is one None)."""
    try:
        r = orjson.loads(line)
    except orjson.JSONDecodeError:
        return [None]
    if type(r) is not dict:
        return [None]
    if fmt.is_row(r):
        return [_record(p) for p in fmt.row_points(r)] or [None]
    return [_record(r)]


def _record(r: dict[str, Any]) -> Record | None:
    if "value" not in r:
        return None
    name, step, ts = r.get("name"), r.get("step"), r.get("ts")
    if type(name) is not str or type(step) is not int or not 0 <= step <= _INT64_MAX:
        return None
    if type(ts) not in (int, float):
        return None
    ms = to_ms(ts)
    if not 0 <= ms <= _INT64_MAX:
        return None
    value = r["value"]
    if "nonfinite" in r:
        value = fmt.decode_value(value, r["nonfinite"] is True)
    return name, step, ts, ms, value



def _lines(path: Path, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """(offset, next offset, line) of the whole lines of ``path`` in [start, end)."""
    if end <= start:
        return
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        for line in f:
            nxt = pos + len(line)
            if nxt > end:
                break
            yield pos, nxt, line
            pos = nxt
            if pos >= end:
                break
