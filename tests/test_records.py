"""The metrics.jsonl grammar's one owner (amltrack/_records.py) and the value kinds (_kinds.py)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amltrack
from amltrack import _format as fmt
from amltrack import _kinds, _records

LINES = [
    b'{"name":"loss","step":0,"value":0.5,"ts":1.0,"seq":1}',
    b'{"name":"ok","step":3,"value":true,"ts":2,"seq":2}',
    b'{"name":"note","step":1,"value":"hi","ts":2.5,"seq":3}',
    b'{"name":"hist","step":1,"value":[1,2.5,"NaN"],"ts":3.0,"seq":4,"nonfinite":true}',
    b'{"name":"x","step":1,"value":"NaN","ts":3.0,"seq":5,"nonfinite":true}',
    b'{"step":7,"values":{"a":1,"b":"Infinity","c":false},"ts":4.0,"seq":6,"nonfinite":true}',
    b'{"step":7,"values":{},"ts":4.0,"seq":7}',
    b'{"name":"img","step":0,"value":{"kind":"video","path":"a.mp4"},"ts":5.0,"seq":8}',
    b'{"name":"bad","step":-1,"value":1,"ts":5.0}',
    b'{"name":"bad","step":1,"value":[1,"a"],"ts":5.0}',
    b'{"name":"bad","step":1,"value":{"x":1},"ts":5.0}',
    b"[1, 2]",
    b"garbage",
]


@pytest.mark.parametrize("line", LINES)
def test_the_mlflow_reader_reads_the_grammars_records_with_mlflows_times(line: bytes) -> None:
    from amltrack.sync._mlflow._mapping import to_ms
    from amltrack.sync._mlflow._records import parse_line

    ours = _records.parse_line(line)
    theirs = parse_line(line)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if a is None:
            assert b is None
            continue
        name, step, ts, value = a
        assert b is not None and b[:4] == (name, step, ts, to_ms(ts))
        assert orjson.dumps(b[4]) == orjson.dumps(value) or (value != value and b[4] != b[4])


def test_the_mlflow_reader_skips_what_mlflows_int64_cannot_hold() -> None:
    from amltrack.sync._mlflow._records import parse_line

    assert parse_line(b'{"name":"x","step":9223372036854775808,"value":1,"ts":1.0}') == [None]
    assert parse_line(b'{"name":"x","step":1,"value":1,"ts":1e300}') == [None]
    assert parse_line(b'{"name":"x","step":1,"value":1,"ts":1.5}') == [("x", 1, 1.5, 1500, 1)]


def test_kinds_are_one_table() -> None:
    assert [k.name for k in _kinds.KINDS] == [
        "number",
        "bool",
        "string",
        "list",
        "image",
        "table",
        "histogram",
        "confusion_matrix",
    ]
    assert _kinds.kind_of(1.5) is _kinds.NUMBER and _kinds.kind_of(True) is _kinds.BOOL
    assert _kinds.kind_of("a") is _kinds.STRING and _kinds.kind_of([1, 2.0]) is _kinds.LIST
    assert _kinds.kind_of([1, "a"]) is None and _kinds.kind_of({"kind": "video"}) is None
    assert _kinds.kind_of({"kind": "image"}) is None  # a known kind without its fields: damage
    assert _kinds.unknown_kind({"kind": "video"}) == "video" and _kinds.unknown_kind({"x": 1}) is None
    image = {"kind": "image", "path": "media/x/0-1.png", "width": 2, "height": 3, "format": "png"}
    assert _kinds.kind_of(image) is _kinds.IMAGE and _kinds.IMAGE.mlflow_points(0, image) is None
    assert _kinds.LIST.mlflow_points(5, [1, 2]) == [(0, 1.0), (1, 2.0)]
    assert _kinds.STRING.mlflow_points(5, "a") is None
    assert {k.column for k in _kinds.KINDS} == {"value", "str", "list", "media"}


def test_decode_and_decode_chunk_keep_and_skip_the_same_records() -> None:
    data = b"\n".join(LINES) + b"\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics, skipped, bad = _records.decode(data, "x")
        parts, cache_skipped, _ = _records.decode_chunk(data, 0)
    assert skipped == 1  # garbage
    assert bad == 5  # step -1, a list with a string, an object without a kind, [1, 2], an empty row
    assert cache_skipped == skipped + bad
    assert "img" not in metrics and "img" not in parts
    assert {n: len(m) for n, m in metrics.items()} == {
        n: len(p.steps) + len(p.strings) + len(p.lists) + len(p.media) for n, p in parts.items()
    }
    assert math.isinf(metrics["b"].values[0]) and math.isnan(metrics["hist"].values[0][2])


def test_a_record_of_an_unknown_kind_is_skipped_with_one_warning_that_is_not_damage(tmp_path: Path) -> None:
    with amltrack.start_run("k", store=tmp_path / "s", outputs=None) as logger:
        logger.log("loss", 0.5)
    run = amltrack.Store(tmp_path / "s").last()
    image = {"name": "x", "step": 0, "value": {"kind": "video", "path": "x/0.mp4"}, "ts": 1.0, "seq": 9}
    with open(run.dir / fmt.METRICS_FILE, "ab") as f:
        f.write(orjson.dumps(image) + b"\n" + orjson.dumps({**image, "step": 1}) + b"\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = run.metrics()
    assert list(metrics) == ["loss"] and run.skipped == 0
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "'video'" in messages[0] and "2 of kind" in messages[0]
    assert "damaged" not in messages[0]


# ---------------------------------------------------------------------------- one decoder, two outputs

NAMES = st.sampled_from(["loss", "acc", "a,b", 'q"uote', "x:y", "},{", "ünï"])
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
)
STEPS = st.integers(min_value=0, max_value=2**63 - 1)
POINT = st.tuples(NAMES, STEPS, VALUES, st.floats(0, 2e9))
ROW = st.tuples(
    st.dictionaries(
        NAMES, st.one_of(st.floats(allow_nan=True), st.integers(-(2**53), 2**53), st.booleans()), max_size=4
    ),
    STEPS,
    st.floats(0, 2e9),
)
ODD = st.sampled_from(
    [
        b"garbage",
        b"",
        b'{"name":"img","step":0,"value":{"kind":"video"},"ts":1.0}',
        b'{"name":"loss","step":-1,"value":1,"ts":1.0}',
        b'{"name":"loss","step":1,"value":[1,"a"],"ts":1.0}',
    ]
)


def _line(r: Any, seq: int) -> bytes:
    if type(r) is bytes:
        return r
    if len(r) == 3:
        values, step, ts = r
        enc = {k: _records.encode_value(v) for k, v in values.items()}
        rec = {"step": step, "values": {k: e for k, (e, _) in enc.items()}, "ts": ts, "seq": seq}
        if any(nf for _, nf in enc.values()):
            rec["nonfinite"] = True
        return orjson.dumps(rec)
    name, step, value, ts = r
    e, nonfinite = _records.encode_value(value)
    rec = {"name": name, "step": step, "value": e, "ts": ts, "seq": seq}
    if nonfinite:
        rec["nonfinite"] = True
    return orjson.dumps(rec)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(POINT, ROW, ODD), max_size=60), st.lists(st.integers(0, 60), max_size=4))
def test_any_file_in_any_pieces_decodes_to_the_same_columns_with_or_without_offsets(
    records: list, cuts: list[int]
) -> None:
    """``decode`` (the store's reader) and ``decode_chunk`` (the UI's cache, fed a piece at a time)
    keep and skip the same records: the one grammar, through each of their fast paths."""
    lines = [_line(r, seq) for seq, r in enumerate(records, 1)]
    data = b"".join(line + b"\n" for line in lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, skipped, bad = _records.decode(data, "x")
        got: dict[str, Any] = {}
        cache_skipped = 0
        bounds = sorted({0, len(lines), *(c % (len(lines) + 1) for c in cuts)})
        base = 0
        for a, b in zip(bounds, bounds[1:]):
            piece = b"".join(line + b"\n" for line in lines[a:b])
            parts, sk, _ = _records.decode_chunk(piece, base)
            cache_skipped += sk
            for name, p in parts.items():
                g = got.setdefault(name, {"steps": [], "values": [], "offsets": []})
                g["steps"] += list(p.steps)
                g["values"] += [float(v) for v in p.values]
                g["offsets"] += p.strings + p.lists
            base += len(piece)
    too_big = sum(1 for m in expected.values() for s in m.steps if s >= 2**63)
    assert cache_skipped == skipped + bad + too_big
    assert set(got) == set(expected)
    for name, m in expected.items():
        nums = [(s, v) for s, v in zip(m.steps, m.values) if type(v) in (int, float, bool)]
        assert got[name]["steps"] == [s for s, _ in nums]
        assert np.array_equal(
            np.array(got[name]["values"]), np.array([float(v) for _, v in nums]), equal_nan=True
        )
        others = [
            orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY) for v in m.values if type(v) in (str, list)
        ]
        at = sorted(got[name]["offsets"])
        found = []
        for off in at:
            rec = orjson.loads(data[off : data.index(b"\n", off)])
            found.append(orjson.dumps(_records.decode_value(rec["value"], rec.get("nonfinite") is True)))
        assert found == others
