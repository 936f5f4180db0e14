"""A metric's overview: its kind, count, last value, range, and the points a sparkline draws.

``history info`` shows one line per metric; this module computes that line's figures, either from a
whole series (a local run) or folded in from ``metrics.jsonl`` a piece at a time (a server, which
keeps a run's fold beside it so that answering costs nothing however long the run is)::

    describe(run.metric("loss"))          # {"kind", "count", "last", "min", "max", "points"}
    fold = Fold(); fold.feed(lines); fold.describe()   # the same, for every metric in the lines

``points`` are the means of ``POINTS`` equal buckets of the series' finite numbers (fewer if it has
fewer). A fold keeps at most ``CHUNKS`` running sums a metric: its points are exact while the series
has no more finite numbers than that, and otherwise means of buckets whose edges fall on a chunk's
edge, which a sparkline of ``POINTS`` characters cannot tell apart.
"""

from __future__ import annotations

import math
from typing import Any

from . import _kinds, _records
from ._records import Series

POINTS = 24
_PLAIN = {int, float}
CHUNKS = 4096
_FIELDS = ("last", "min", "max")


def kind_name(value: Any) -> str:
    """number, bool, string or list: what a metric is, by its latest value."""
    return _kinds.kind_by_type(value).name


def finite_numbers(values: list[Any]) -> list[Any]:
    """The ints and floats among ``values`` that are finite (bools, strings and lists left out)."""
    # A metric of a million numbers is the common case: when every value is a finite number, which
    # C-level passes tell, the values are used as they are.
    if set(map(type, values)) <= _PLAIN and math.isfinite(sum(values)):
        return values
    return [v for v in values if type(v) in (int, float) and math.isfinite(v)]


def bucket_means(nums: list[Any], width: int = POINTS) -> list[Any]:
    """``nums`` as at most ``width`` means of equal consecutive buckets, so a line keeps its shape."""
    if len(nums) <= width:
        return list(nums)
    step = len(nums) / width
    return [
        sum(b) / len(b)
        for i in range(width)
        if (b := nums[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
    ]


def number_range(values: list[Any]) -> tuple[Any, Any]:
    """The least and greatest number among ``values``, a list value's elements included and NaN
    left out (bools and strings are not numbers); (None, None) if there is none.

    A metric of a million plain numbers is the common case: when every value is an int or a float
    and their sum is finite (no NaN or infinity), which C-level passes tell, the values are used as
    they are, with no Python loop per value.
    """
    if set(map(type, values)) <= _PLAIN:
        nums = values if math.isfinite(sum(values)) else [v for v in values if v == v]
    else:
        nums = []
        for v in values:
            if type(v) is list:
                nums.extend(x for x in v if x == x)
            elif type(v) in _PLAIN and v == v:
                nums.append(v)
    return (min(nums), max(nums)) if nums else (None, None)


def describe(metric: Series, width: int = POINTS) -> dict[str, Any]:
    """The overview of a whole series: min and max over every number logged (a list metric's elements
    included, NaN left out); ``points`` of the series' finite numbers, or of a list metric's latest list."""
    vals = metric.values
    last = vals[-1]
    lo, hi = number_range(vals)
    kind = kind_name(last)
    return {
        "kind": kind,
        "count": len(vals),
        "last": last,
        "min": lo,
        "max": hi,
        "points": bucket_means(finite_numbers(last if kind == "list" else vals), width),
    }


class _Series:
    """One metric's fold: count, last, range, and its finite numbers as running sums of ``size`` each."""

    __slots__ = ("count", "last", "ts", "lo", "hi", "sums", "counts", "size")

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None
        self.ts = -math.inf
        self.lo: Any = None
        self.hi: Any = None
        self.sums: list[Any] = []  # a chunk of one value holds the value itself, so small series stay exact
        self.counts: list[int] = []
        self.size = 1

    def add(self, metric: Series, by_time: bool) -> None:
        vals = metric.values
        self.count += len(vals)
        # Several processes logging into one run: the last value is the latest by time, as the
        # reader's merge by time makes it; otherwise it is the last in the file.
        if not by_time or metric.timestamps[-1] >= self.ts:
            self.last, self.ts = vals[-1], metric.timestamps[-1]
        lo, hi = number_range(vals)
        if lo is not None:
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)
        nums = finite_numbers(vals)
        i = 0
        if self.counts and self.counts[-1] < self.size:  # fill the open chunk first
            take = nums[: self.size - self.counts[-1]]
            self.sums[-1] = sum(take, self.sums[-1])
            self.counts[-1] += len(take)
            i = len(take)
        while i < len(nums):
            if len(self.counts) >= CHUNKS:
                self._halve()
            take = nums[i : i + self.size]
            self.sums.append(take[0] if len(take) == 1 else sum(take))
            self.counts.append(len(take))
            i += len(take)

    def _halve(self) -> None:
        self.sums = [sum(self.sums[j : j + 2]) for j in range(0, len(self.sums), 2)]
        self.counts = [sum(self.counts[j : j + 2]) for j in range(0, len(self.counts), 2)]
        self.size *= 2

    def points(self, width: int) -> list[Any]:
        if self.size == 1:
            return bucket_means(self.sums, width)
        n = sum(self.counts)
        step = n / width
        out, first, total, count = [], 0, 0.0, 0
        edge = step
        for s, c in zip(self.sums, self.counts):
            if count and first >= edge:
                out.append(total / count)
                total, count = 0.0, 0
                while edge <= first:
                    edge += step
            total += s
            count += c
            first += c
        if count:
            out.append(total / count)
        return out

    def describe(self, width: int) -> dict[str, Any]:
        kind = kind_name(self.last)
        points = bucket_means(finite_numbers(self.last), width) if kind == "list" else self.points(width)
        return {
            "kind": kind,
            "count": self.count,
            "last": self.last,
            "min": self.lo,
            "max": self.hi,
            "points": points,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "last": _encode(self.last),
            "ts": self.ts,
            "min": _encode(self.lo),
            "max": _encode(self.hi),
            "sums": self.sums,
            "counts": self.counts,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _Series:
        s = cls()
        s.count, s.ts, s.sums, s.counts, s.size = d["count"], d["ts"], d["sums"], d["counts"], d["size"]
        s.last, s.lo, s.hi = _decode(d["last"]), _decode(d["min"]), _decode(d["max"])
        return s


def _encode(value: Any) -> list[Any]:
    """A value as [its JSON form, whether non-finite floats were replaced]: JSON has no NaN."""
    return list(_records.encode_value(value))


def _decode(pair: list[Any]) -> Any:
    return _records.decode_value(pair[0], pair[1])


class Fold:
    """Every metric's overview, folded in from ``metrics.jsonl`` a piece of whole lines at a time.

    ``end`` is how many bytes of the file it covers, so a fold saved with ``to_json()`` and loaded
    again goes on from where it stopped.
    """

    VERSION = 1

    def __init__(self) -> None:
        self.series: dict[str, _Series] = {}
        self.end = 0
        self.skipped = 0
        self.by_time = False

    def feed(self, lines: bytes, where: str) -> None:
        """Fold in ``lines``, whole JSON Lines that follow the ``end`` bytes already folded in."""
        if b'"w":' in lines:
            self.by_time = True
        metrics, skipped, bad = _records.decode(lines, where)
        self.skipped += skipped + bad
        for name, metric in metrics.items():
            if len(metric):
                self.series.setdefault(name, _Series()).add(metric, self.by_time)
        self.end += len(lines)

    def describe(self, width: int = POINTS) -> dict[str, dict[str, Any]]:
        return {name: self.series[name].describe(width) for name in sorted(self.series)}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "end": self.end,
            "skipped": self.skipped,
            "by_time": self.by_time,
            "series": {name: s.to_json() for name, s in self.series.items()},
        }

    @classmethod
    def from_json(cls, d: Any) -> Fold | None:
        """The fold ``to_json()`` saved; None for anything else (an older version, a damaged file)."""
        try:
            if d["version"] != cls.VERSION:
                return None
            fold = cls()
            fold.end, fold.skipped, fold.by_time = int(d["end"]), int(d["skipped"]), bool(d["by_time"])
            fold.series = {str(k): _Series.from_json(v) for k, v in d["series"].items()}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return None
        return fold


def encode_overview(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``describe()``'s answers as JSON can hold them: a non-finite last, min or max is written as in
    metrics.jsonl and named in the metric's ``nonfinite`` list."""
    out = {}
    for name, d in metrics.items():
        entry = dict(d)
        flagged = []
        for field in _FIELDS:
            entry[field], nonfinite = _records.encode_value(d[field])
            if nonfinite:
                flagged.append(field)
        if flagged:
            entry["nonfinite"] = flagged
        out[name] = entry
    return out


def decode_overview(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``encode_overview()`` undone."""
    out = {}
    for name, d in metrics.items():
        entry = {k: v for k, v in d.items() if k != "nonfinite"}
        for field in d.get("nonfinite") or ():
            if field in _FIELDS:
                entry[field] = _records.decode_value(d.get(field), True)
        out[name] = entry
    return out
