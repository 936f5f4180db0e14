"""metrics.jsonl as the MLflow push reads it: its whole lines, and the records of each line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ... import _records as records
from ._mapping import to_ms

_INT64_MAX = (1 << 63) - 1


# A metric record of metrics.jsonl: (name, step, ts, ms, value).
Record = tuple[str, int, float, int, Any]


def parse_line(line: bytes) -> list[Record | None]:
    """The records of a metrics.jsonl line as ``_records.parse_line`` reads them (one per point,
    one per entry of a row, None for each that every reader skips), with the time in MLflow's
    milliseconds; a step or a time MLflow's int64 cannot hold is skipped too."""
    return [_with_ms(r) for r in records.parse_line(line)]


def _with_ms(r: tuple[str, int, float, Any] | None) -> Record | None:
    if r is None:
        return None
    name, step, ts, value = r
    if step > _INT64_MAX:
        return None
    ms = to_ms(ts)
    if not 0 <= ms <= _INT64_MAX:
        return None
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
