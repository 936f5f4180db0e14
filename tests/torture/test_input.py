"""hypothesis over what log(), log_metrics() and upload() are given: each call is either stored and read
back exactly, or rejected at the call with TypeError or ValueError, and which one is decided here,
independently of the code under test, from the documented domain."""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import amltrack
from amltrack import _logger

from .conftest import FULL, size

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_STRING = 2**20
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# ----------------------------------------------------------------- strategies

surrogates = st.text(
    alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3
)
int64 = st.integers(INT_MIN, INT_MAX)
edge_ints = st.sampled_from([INT_MAX, INT_MIN, INT_MAX + 1, INT_MIN - 1, 2**64 - 1, 2**64, -(2**64)])
ints = st.one_of(int64, st.integers(), edge_ints)  # st.integers() is unbounded: big ints too
numbers = st.one_of(st.floats(), ints)  # floats: NaN, infinities and -0.0 included
numpy_scalars = st.one_of(
    st.floats().map(np.float64),
    st.floats(width=32).map(np.float32),
    int64.map(np.int64),
    st.booleans().map(np.bool_),
)
numpy_arrays = st.one_of(
    st.lists(st.floats(), max_size=6).map(lambda v: np.array(v, dtype=np.float64)),
    st.lists(int64, max_size=6).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.booleans(), min_size=1, max_size=3).map(np.array),  # an array of bools is no chart
    st.lists(st.floats(), min_size=1, max_size=3).map(lambda v: np.array([v, v])),  # 2-D
    st.floats().map(lambda v: np.array(v)),  # 0-D
)
elements = st.one_of(
    numbers, st.booleans(), st.none(), st.text(max_size=3), st.lists(numbers, max_size=2), numpy_scalars
)
values = st.one_of(
    numbers,
    st.booleans(),
    st.text(max_size=40),  # control characters included: a string metric may hold any text
    surrogates,
    st.sampled_from(["x" * MAX_STRING, "x" * (MAX_STRING + 1)]),
    st.lists(elements, max_size=8),
    st.lists(numbers, max_size=8),
    st.lists(numbers, max_size=8).map(tuple),
    st.none(),
    st.dictionaries(st.text(max_size=3), numbers, max_size=2),
    st.binary(max_size=5),
    numpy_scalars,
    numpy_arrays,
)
good_names = st.one_of(
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40),
    st.sampled_from(["x" * 255, "loss", "val/acc", "a},{b", "ü 名前"]),
)
names = st.one_of(
    good_names,
    good_names,
    st.text(max_size=300),  # empty, control characters and over-long names included
    surrogates,
    st.sampled_from(["", "x" * 256, "a\nb", "nul\x00", "c1\x85"]),
    st.none(),
    st.integers(),
    st.lists(st.text(max_size=2), max_size=1),
)
edge_steps = st.sampled_from([0, INT_MAX - 1, INT_MAX, INT_MAX + 1, 2**64 - 1, 2**64, 2**100, -1, INT_MIN])
# one_of leans to its first branches: the edges go first
steps = st.one_of(
    edge_steps,
    st.none(),
    st.integers(),
    st.integers(0, INT_MAX),
    st.booleans(),
    st.floats(),
    st.text(max_size=2),
    st.integers(0, INT_MAX).map(np.int64),
    st.integers(0, 2**64 - 1).map(np.uint64),
)
good_values = st.one_of(
    st.floats(),
    int64,
    st.booleans(),
    st.text(max_size=40),
    st.lists(st.one_of(st.floats(), int64), max_size=8),
    st.lists(st.one_of(st.floats(), int64), max_size=8).map(tuple),
    numpy_scalars,
    st.lists(st.floats(), max_size=6).map(lambda v: np.array(v, dtype=np.float64)),
)
good_steps = st.one_of(
    st.none(), st.integers(0, INT_MAX), st.sampled_from([0, INT_MAX]), st.integers(0, INT_MAX).map(np.int64)
)


@st.composite
def calls(draw: st.DrawFn) -> list[tuple[Any, Any, Any]]:
    """A few log() calls into one run. Each call draws one of name, value and step (or all three) from
    the wide strategy and the others from inside the domain, so that every kind of fault is tried on
    its own and not only hidden behind another."""
    pool = draw(st.lists(names, min_size=1, max_size=3))  # a few names, so default steps count up
    good_pool = [n for n in pool if isinstance(n, str) and not name_faults(n)] or ["m"]
    out = []
    for _ in range(draw(st.integers(1, 6))):
        wide = draw(st.sampled_from(["name", "value", "step", "all"]))
        name = draw(st.sampled_from(pool if wide in ("name", "all") else good_pool))
        value = draw(values if wide in ("value", "all") else good_values)
        step = draw(steps if wide in ("step", "all") else good_steps)
        out.append((name, value, step))
    return out


# ----------------------------------------------------------------- the documented domain


def name_faults(name: Any) -> set[type]:
    if not isinstance(name, str):
        return {TypeError}
    if not name or len(name) > 255 or CONTROL.search(name) or not _utf8(name):
        return {ValueError}
    return set()


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _number(v: Any) -> Any:
    """The stored form of one list element, or the exception type it must raise."""
    if isinstance(v, (bool, np.bool_)):
        return TypeError
    if isinstance(v, (int, np.integer)):
        return int(v) if INT_MIN <= int(v) <= INT_MAX else ValueError
    if isinstance(v, (float, np.floating)):
        return float(v)
    return TypeError


def stored_value(v: Any) -> Any:
    """What reading ``v`` back gives, or the exception type log() must raise for it."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str):
        return v if len(v) <= MAX_STRING and _utf8(v) else ValueError
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return stored_value(v.item())
        if v.ndim > 1:
            return ValueError
        if v.dtype.kind == "b":
            return TypeError
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        out = []
        for x in v:
            got = _number(x)
            if isinstance(got, type):
                return got  # the first bad element decides
            out.append(got)
        return out
    if isinstance(v, (int, float, np.integer, np.floating)):
        return _number(v)
    return TypeError  # None, dict, bytes, ...


def step_fault(step: Any) -> type | None:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        return TypeError
    return None if 0 <= int(step) <= INT_MAX else ValueError


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture
def quick_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A store for one run per example. Durability and git metadata are not what these tests are
    about: without fsync and the git subprocess a run takes 10 ms instead of 90."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr(_logger, "git_info", lambda cwd: (None, None))
    return tmp_path / "store"


# ----------------------------------------------------------------- log()


@pytest.mark.timeout(size(120, 600))
@settings(
    max_examples=size(150, 2000),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(calls=calls())
def test_every_log_call_is_stored_exactly_or_rejected_at_the_call(quick_runs: Path, calls) -> None:
    expected: dict[str, list[tuple[int, Any]]] = {}
    next_step: dict[str, int] = {}
    with amltrack.start_run("input", store=quick_runs, outputs=None) as logger:
        for name, value, step in calls:
            faults = name_faults(name)
            stored = stored_value(value)
            if isinstance(stored, type):
                faults.add(stored)
            if step is None:
                if not faults and next_step.get(name, 0) > INT_MAX:
                    faults.add(ValueError)  # the step after 2**63-1 does not exist
            elif fault := step_fault(step):
                faults.add(fault)
            if faults:
                with pytest.raises((TypeError, ValueError)) as e:
                    logger.log(name, value, step=step)
                assert isinstance(e.value, tuple(faults)), (name, value, step, e.value)
                assert "\n" not in str(e.value)
                continue
            logger.log(name, value, step=step)  # inside the domain: must be accepted
            s = next_step.get(name, 0) if step is None else int(step)
            next_step[name] = s + 1
            expected.setdefault(name, []).append((s, stored))
    run = amltrack.Store(quick_runs).run(logger.run_id)
    assert run.status == "completed" and "write_error" not in run.info  # nothing failed in the writer
    metrics = run.metrics()  # a skipped line would warn, and warnings are errors here
    assert sorted(metrics) == sorted(expected)
    for name, points in expected.items():
        got = list(zip(metrics[name].steps, metrics[name].values))
        assert len(got) == len(points) and all(
            gs == s and same(gv, v) for (gs, gv), (s, v) in zip(got, points)
        ), (name, points, got)


# ----------------------------------------------------------------- log_metrics()

MAX_ROW = 10_000  # names a call may hold

# Keys a dict can hold: names of every kind, non-str ones included (an unhashable one cannot be a key).
row_names = st.one_of(
    good_names,
    good_names,
    st.text(max_size=300),  # empty, control characters and over-long names included
    surrogates,
    st.sampled_from(["", "x" * 256, "a\nb", "nul\x00", "c1\x85", "x" * 255]),
    st.none(),
    st.integers(),
    st.booleans(),
    st.floats(),
    st.binary(max_size=3),
    st.tuples(st.text(max_size=2)),
    int64.map(np.int64),
)
row_values = st.one_of(
    values,  # all that log() is tried with: strings, lists, tuples, arrays, None, dicts, bytes, ...
    st.sampled_from(["NaN", "Infinity", "-Infinity"]),  # the file's markers, but given as str: a str
    st.sampled_from(["NaN", "1.5"]).map(np.str_),
    st.sampled_from(
        [
            np.array("x"),
            np.array(True),
            np.array(INT_MAX),
            np.array([1.0]),
            np.array([[1.0]]),
            np.array([], dtype=np.float64),
        ]
    ),
)
good_row_values = st.one_of(
    st.floats(),  # NaN, infinities and -0.0 included
    int64,
    st.sampled_from(
        [INT_MAX, INT_MIN, math.nan, math.inf, -math.inf, -0.0, 1.7e308]
    ),  # 1.7e308 twice: an inf sum
    st.booleans(),
    numpy_scalars,
    st.floats().map(np.array),  # 0-D: a scalar
)


@st.composite
def big_rows(draw: st.DrawFn, good_pool: list[str]) -> dict[Any, Any]:
    """A dict of many names (around the 10,000-name limit in full mode; quick mode keeps to smaller
    ones, and the test's explicit examples try the limit), names of up to 254 characters (a line of
    2.6 MB), the small pool's names first or not, and one entry somewhere drawn from the wide sets or
    not."""
    n = draw(
        st.one_of(st.sampled_from([MAX_ROW - 1, MAX_ROW, MAX_ROW + 1]), st.integers(1000, MAX_ROW + 1))
        if FULL
        else st.integers(200, 1200)
    )
    prefix = draw(st.sampled_from(["m", "x" * 250]))
    items: list[tuple[Any, Any]] = [(f"{prefix}{i}", i / 3 if i % 7 else i) for i in range(n)]
    if draw(st.booleans()):
        items[: len(good_pool)] = [(name, -1.5) for name in good_pool]
    if draw(st.booleans()):
        i = draw(st.integers(0, n - 1))
        if draw(st.booleans()):
            items[i] = (draw(row_names), items[i][1])
        else:
            items[i] = (items[i][0], draw(row_values))
    return dict(items)


def mappings(good_pool: list[str]) -> st.SearchStrategy[Any]:
    """What the first argument may be besides a dict drawn entry by entry."""
    entries = st.lists(st.tuples(st.sampled_from(good_pool), good_row_values), min_size=1, max_size=4)
    return st.one_of(
        big_rows(good_pool),
        st.just({}),
        entries.map(lambda e: MappingProxyType(dict(e))),  # any Mapping is taken
        entries.map(OrderedDict),
        entries,  # a list of pairs is no mapping
        st.none(),
        st.text(max_size=3),
        st.floats(),
        st.sampled_from(good_pool).map(lambda n: {n}),
    )


@st.composite
def row_calls(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """A few log_metrics() calls into one run, log() calls among them (the default step counters are
    the same). As for log(): each call draws its names, its values, its step, its first argument
    itself, or all of them from the wide sets and the rest from inside the domain; a few names are
    shared by the calls, so that default steps count up."""
    pool = draw(st.lists(row_names, min_size=1, max_size=4))
    good_pool = list(
        dict.fromkeys(
            [
                *(n for n in pool if isinstance(n, str) and not name_faults(n)),
                *draw(st.lists(good_names, min_size=1, max_size=5)),  # rows of several entries: names enough
            ]
        )
    )
    out: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 6))):
        wide = draw(st.sampled_from(["none", "none", "name", "value", "step", "all", "mapping", "log"]))
        if wide == "log":
            out.append(
                (
                    "log",
                    draw(st.sampled_from(good_pool)),
                    draw(st.one_of(st.floats(), int64)),
                    draw(good_steps),
                )
            )
            continue
        step = draw(steps if wide in ("step", "all") else good_steps)
        if wide == "mapping":
            out.append(("rows", draw(mappings(good_pool)), step))
            continue
        row = {}
        for _ in range(draw(st.integers(1, 6))):
            wide_entry = wide == "all" or (wide in ("name", "value") and draw(st.booleans()))
            name = draw(
                st.sampled_from(pool) if wide_entry and wide != "value" else st.sampled_from(good_pool)
            )
            value = draw(row_values if wide_entry and wide != "name" else good_row_values)
            row[name] = value
        out.append(("rows", row, step))
    return out


def row_stored_value(v: Any) -> Any:
    """What reading an entry ``v`` of a row back gives, or the exception type log_metrics() must raise:
    a bool, an int in the signed 64-bit range or a float, numpy scalars (0-D arrays too) included."""
    if isinstance(v, np.ndarray):
        if v.ndim:
            return TypeError  # log() takes a 1-D array as a list metric; a row takes numbers only
        v = v.item()
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v) if INT_MIN <= int(v) <= INT_MAX else ValueError
    if isinstance(v, (float, np.floating)):
        return float(v)
    return TypeError  # str (the non-finite markers too), list, tuple, None, dict, bytes, ...


def name_mentions(name: Any) -> list[str]:
    """How an error message may name the metric ``name``: its repr (of its first 40 characters when it
    is too long to quote whole)."""
    if isinstance(name, str):
        return [repr(name), repr(name[:40])] if name else ["empty"]
    return [repr(name)]


def row_offences(values: Any, step: Any, next_step: dict[str, int]) -> list[tuple[set[type], list[str]]]:
    """Each fault of the call ``log_metrics(values, step=step)`` as the exception types it allows and
    the words that name it; empty if the call is inside the documented domain."""
    if not isinstance(values, Mapping):
        return [({TypeError}, ["dict"])]
    entries = list(dict(values).items())
    if not entries:
        return [({ValueError}, ["empty"])]
    if len(entries) > MAX_ROW:
        return [({ValueError}, [f"{len(entries)} metrics"])]
    out = []
    for name, value in entries:
        faults = name_faults(name)
        stored = row_stored_value(value)
        if isinstance(stored, type):
            faults.add(stored)
        if faults:
            out.append((faults, name_mentions(name)))
    if step is not None:
        if fault := step_fault(step):
            words = [repr(step), str(step)]
            if isinstance(step, (int, np.integer)):
                words.append(str(int(step)))
            out.append(({fault}, words))
    elif not out:
        last = [n for n, _ in entries if next_step.get(n, 0) > INT_MAX]
        if last:  # a name was logged at step 2**63-1: its default step after that does not exist
            out.append(({ValueError}, [repr(n) for n in last]))
    return out


@pytest.mark.timeout(size(120, 900))
@settings(
    max_examples=size(100, 2000),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(calls=row_calls())
# the limits, whatever quick mode draws: 10,000 names of up to 254 characters in a row, 10,001 names,
# and the default step after 2**63-1
@example(
    calls=[
        ("rows", {f"{'x' * 250}{i}": i / 3 if i % 7 else i for i in range(MAX_ROW)}, None),
        ("rows", {f"m{i}": 1.0 for i in range(MAX_ROW + 1)}, None),
        ("rows", {"loss": 1.0, "x" * 2500: 2.0}, 5),
        ("rows", {"loss": -0.0, "acc": True}, INT_MAX),
        ("rows", {"acc": 2, "loss": 2.0}, None),
        ("rows", {"acc": 2}, np.int64(3)),
    ]
)
def test_every_log_metrics_call_is_stored_exactly_or_rejected_at_the_call(quick_runs: Path, calls) -> None:
    expected: dict[str, list[tuple[int, Any, int]]] = {}  # name: (step, value, index of the call)
    next_step: dict[str, int] = {}  # the documented default step counters
    named: dict[str, None] = {}  # valid names the calls gave, refused calls' too, in order
    lines = 0
    with amltrack.start_run("input", store=quick_runs, outputs=None) as logger:
        for i, (kind, *args) in enumerate(calls):
            if kind == "log":
                name, value, step = args
                if step is None and next_step.get(name, 0) > INT_MAX:
                    with pytest.raises(amltrack.InvalidMetricError):
                        logger.log(name, value, step=step)
                    continue
                logger.log(name, value, step=step)
                s = next_step.get(name, 0) if step is None else int(step)
                next_step[name] = s + 1
                expected.setdefault(name, []).append((s, stored_value(value), i))
                lines += 1
                continue
            values, step = args
            if isinstance(values, Mapping):
                named.update((n, None) for n in values if isinstance(n, str) and not name_faults(n))
            offences = row_offences(values, step, next_step)
            size_ = len(values) if isinstance(values, Mapping) else -1
            event(
                f"log_metrics() {'refused' if offences else 'accepted'}"
                + (" (200 names or more)" if size_ >= 200 else "")
            )
            if offences:
                with pytest.raises((TypeError, ValueError)) as e:
                    logger.log_metrics(values, step=step)
                err, msg = e.value, str(e.value)
                if not multiline_repr(values):  # that case is test_a_refused_array_is_named_on_one_line
                    assert "\n" not in msg
                assert isinstance(err, amltrack.InvalidMetricError) or type(err) is TypeError, err
                # the error is one the domain says, and it names the metric (or the step) at fault
                assert any(
                    isinstance(err, tuple(types)) and any(w in msg for w in words)
                    for types, words in offences
                ), (values, step, err, offences)
                continue
            logger.log_metrics(values, step=step)  # inside the domain: must be accepted
            entries = list(dict(values).items())
            floats = [v for _, v in entries if type(row_stored_value(v)) is float]
            if any(math.isfinite(v) for v in floats) and not all(math.isfinite(v) for v in floats):
                event("log_metrics() accepted, finite and non-finite floats in one row")
            s = max(next_step.get(n, 0) for n, _ in entries) if step is None else int(step)
            for n, v in entries:
                next_step[n] = s + 1
                expected.setdefault(n, []).append((s, row_stored_value(v), i))
            lines += 1
        # Refused calls moved no default step on: one more row per name lands where the counters say.
        probes = list(named)
        for k, name in enumerate(probes[:20] + probes[20:][-20:], start=len(calls)):
            if next_step.get(name, 0) > INT_MAX:
                with pytest.raises(amltrack.InvalidMetricError, match="pass step= explicitly"):
                    logger.log_metrics({name: 0.25})
                continue
            logger.log_metrics({name: 0.25})
            s = next_step.get(name, 0)
            next_step[name] = s + 1
            expected.setdefault(name, []).append((s, 0.25, k))
            lines += 1
    run = amltrack.Store(quick_runs).run(logger.run_id)
    assert run.status == "completed" and "write_error" not in run.info  # nothing failed in the writer
    metrics = run.metrics()  # a skipped line would warn, and warnings are errors here
    assert run.skipped == 0
    assert sorted(metrics) == sorted(expected)
    stamps: dict[int, set[float]] = {}
    for name, points in expected.items():
        m = metrics[name]
        got = list(zip(m.steps, m.values))
        assert len(got) == len(points) and all(
            gs == s and same(gv, v) for (gs, gv), (s, v, _) in zip(got, points)
        ), (name, points, got)
        for ts, (_, _, call) in zip(m.timestamps, points):
            stamps.setdefault(call, set()).add(ts)
    assert all(len(ts) == 1 for ts in stamps.values()), stamps  # a row's entries share its time
    # nothing refused was written: one line per accepted call, and the summary counts every entry
    file = run.dir / "metrics.jsonl"
    assert (len(file.read_bytes().splitlines()) if file.exists() else 0) == lines
    assert run.cached_summary().get("records", 0) == sum(map(len, expected.values()))


def multiline_repr(values: Any) -> bool:
    return isinstance(values, Mapping) and any("\n" in repr(v) for v in dict(values).values())


def test_a_refused_array_is_named_on_one_line(quick_runs: Path) -> None:
    """Errors are one line, as log()'s are. Once this passes, drop multiline_repr() above."""
    with amltrack.start_run("input", store=quick_runs, outputs=None) as logger:
        for value in (np.zeros((2, 2)), np.arange(40.0)):
            with pytest.raises(TypeError, match="'m'") as e:
                logger.log_metrics({"m": value})
            assert "\n" not in str(e.value)


class _Name(StrEnum):
    LOSS = "loss"


def test_a_str_subclass_name_seen_before_is_stored(quick_runs: Path) -> None:
    """A name is a str, subclasses too (log() takes them). Once this passes, put str subclasses into
    ``row_names`` above."""
    with amltrack.start_run("input", store=quick_runs, outputs=None) as logger:
        logger.log("loss", 0.5)
        logger.log_metrics({_Name.LOSS: 1.0}).wait()  # it returns: the row is on disk
        assert amltrack.Store(quick_runs).run(logger.run_id).metric("loss").values == [0.5, 1.0]
        logger.log_metrics({np.str_("loss"): np.float64(2.0)}, step=7)
    run = amltrack.Store(quick_runs).run(logger.run_id)
    assert "write_error" not in run.info
    loss = run.metric("loss")
    assert (loss.steps, loss.values) == ([0, 1, 7], [0.5, 1.0, 2.0])


# ----------------------------------------------------------------- upload()

SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
segments = st.one_of(
    st.text(max_size=12),  # any Unicode, control characters included
    st.text(alphabet=SAFE, min_size=1, max_size=12),
    st.sampled_from(["..", ".", "", "\\", "a\\b", "\x00", "nul\x00x", "C:", "~", "é"]),
    surrogates,
    st.integers(190, 300).map(lambda n: "p" * n),  # around the part limit
    st.integers(90, 140).map(lambda n: "é" * n),  # 2 bytes each: a part under 255 characters, over 200 bytes
)
long_parts = st.one_of(
    st.integers(190, 300).map(lambda n: "p" * n),
    st.integers(90, 140).map(lambda n: "é" * n),
    st.integers(45, 70).map(lambda n: "😀" * n),  # 4 bytes each
)


def harmless(path: str) -> str:
    """An absolute path still, but one under /tmp, should the guard ever break while tests run as root."""
    return "/tmp/amltrack-escape" + path if path.startswith("/") else path


# one_of leans to its first branches: the single parts around the limits go first
upload_paths = st.one_of(
    st.tuples(st.sampled_from(["", "a/", "a/b/"]), long_parts).map("".join),
    st.lists(segments, min_size=1, max_size=5).map("/".join).map(harmless),
    st.lists(segments, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts)).map(harmless),
    st.lists(st.text(alphabet=SAFE, min_size=190, max_size=200), min_size=5, max_size=6).map("/".join),
    st.text(max_size=60).map(harmless),
    st.none(),
    st.binary(max_size=5),
    st.integers(),
)
contents = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100),
    surrogates,
    st.none(),
    st.integers(),
    st.binary(max_size=20).map(bytearray),
    st.lists(st.integers(0, 255), max_size=3),
)


def path_fault(path: Any) -> type | None:
    """The documented rule for an artifact path: a relative POSIX path of at most 1024 bytes in UTF-8,
    each part at most 200 bytes, with no empty, '.' or '..' part, backslash, control character, drive
    letter or lone surrogate."""
    if not isinstance(path, str):
        return ValueError  # InvalidPathError, as for any path that is not allowed
    if not path or path.startswith("/") or "\\" in path or CONTROL.search(path) or not _utf8(path):
        return ValueError
    parts = path.split("/")
    if len(path.encode()) > 1024 or re.match(r"[A-Za-z]:", parts[0]):
        return ValueError
    if any(p in ("", ".", "..") or len(p.encode()) > 200 for p in parts):
        return ValueError
    return None


def content_fault(content: Any) -> type | None:
    if isinstance(content, str):
        return None if _utf8(content) else ValueError
    return None if isinstance(content, (bytes, bytearray, memoryview)) else TypeError


@pytest.mark.timeout(size(120, 600))
@settings(
    max_examples=size(150, 2000),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=upload_paths, content=contents)
def test_every_upload_is_stored_exactly_or_rejected_at_the_call(quick_runs: Path, path, content) -> None:
    faults = {f for f in (path_fault(path), content_fault(content)) if f}
    with amltrack.start_run("input", store=quick_runs, outputs=None) as logger:  # one run per example
        if faults:
            with pytest.raises((TypeError, ValueError)) as e:
                logger.upload(path, content)
            assert isinstance(e.value, tuple(faults)), (path, content, e.value)
            if path_fault(path) is not None and content_fault(content) is None:
                # named whole up to the longest path that is stored, a longer one by its start
                long = isinstance(path, str) and len(path) > 1024
                shown = repr(path[:8])[:-1] if long else repr(path)
                assert isinstance(e.value, amltrack.InvalidPathError) and shown in str(e.value)
        else:
            logger.upload(path, content).wait(timeout=30)  # inside the domain: must be accepted and stored
    run = amltrack.Store(quick_runs).run(logger.run_id)
    assert run.status == "completed" and "write_error" not in run.info
    stored = [a for a in run.artifacts() if a["source"] == "upload"]
    files = (
        [p for p in (run.dir / "artifacts").rglob("*") if p.is_file()]
        if (run.dir / "artifacts").exists()
        else []
    )
    if faults:
        assert stored == [] and files == []  # nothing let in
        return
    data = content.encode() if isinstance(content, str) else bytes(content)
    assert run.read_artifact(path) == data
    assert [(a["path"], a["status"], a["size"], a["sha256"]) for a in stored] == [
        (path, "stored", len(data), hashlib.sha256(data).hexdigest())
    ]
    assert files == [run.dir / "artifacts" / path]  # exactly there, inside the run
