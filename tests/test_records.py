"""The metrics.jsonl grammar's one owner (amltrack/_records.py) and the value kinds (_kinds.py)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import orjson
import pytest

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
    b'{"name":"img","step":0,"value":{"kind":"image","path":"a.png"},"ts":5.0,"seq":8}',
    b'{"name":"bad","step":-1,"value":1,"ts":5.0}',
    b'{"name":"bad","step":1,"value":[1,"a"],"ts":5.0}',
    b'{"name":"bad","step":1,"value":{"x":1},"ts":5.0}',
    b"[1, 2]",
    b"garbage",
]


@pytest.mark.parametrize("line", LINES)
def test_parse_line_gives_what_the_mlflow_reader_gives(line: bytes) -> None:
    from amltrack.sync import _mlflow

    ours = _records.parse_line(line)
    theirs = _mlflow.parse_line(line)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if a is None:
            # The MLflow reader keeps a value of an unknown kind as a record and then maps it to
            # no points; the grammar leaves it out at once. Either way MLflow gets nothing.
            assert b is None or _records.record_points(b[1], b[4]) is None
            continue
        name, step, ts, value = a
        assert b is not None and (b[0], b[1], b[2]) == (name, step, ts)
        assert orjson.dumps(b[4]) == orjson.dumps(value) or (value != value and b[4] != b[4])
        assert _records.record_points(step, value) == _mlflow.record_points(step, b[4])


def test_kinds_are_one_table() -> None:
    assert [k.name for k in _kinds.KINDS] == ["number", "bool", "string", "list"]
    assert _kinds.kind_of(1.5) is _kinds.NUMBER and _kinds.kind_of(True) is _kinds.BOOL
    assert _kinds.kind_of("a") is _kinds.STRING and _kinds.kind_of([1, 2.0]) is _kinds.LIST
    assert _kinds.kind_of([1, "a"]) is None and _kinds.kind_of({"kind": "image"}) is None
    assert _kinds.unknown_kind({"kind": "image"}) == "image" and _kinds.unknown_kind({"x": 1}) is None
    assert _kinds.LIST.mlflow_points(5, [1, 2]) == [(0, 1.0), (1, 2.0)]
    assert _kinds.STRING.mlflow_points(5, "a") is None
    assert {k.column for k in _kinds.KINDS} == {"value", "str", "list"}


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
        n: len(p.steps) + len(p.strs) + len(p.lists) for n, p in parts.items()
    }
    assert math.isinf(metrics["b"].values[0]) and math.isnan(metrics["hist"].values[0][2])


def test_a_record_of_an_unknown_kind_is_skipped_with_one_warning_that_is_not_damage(tmp_path: Path) -> None:
    with amltrack.start_run("k", store=tmp_path / "s", outputs=None) as logger:
        logger.log("loss", 0.5)
    run = amltrack.Store(tmp_path / "s").last()
    image = {"name": "x", "step": 0, "value": {"kind": "image", "path": "x/0.png"}, "ts": 1.0, "seq": 9}
    with open(run.dir / fmt.METRICS_FILE, "ab") as f:
        f.write(orjson.dumps(image) + b"\n" + orjson.dumps({**image, "step": 1}) + b"\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = run.metrics()
    assert list(metrics) == ["loss"] and run.skipped == 0
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "'image'" in messages[0] and "2 of kind" in messages[0]
    assert "damaged" not in messages[0]
