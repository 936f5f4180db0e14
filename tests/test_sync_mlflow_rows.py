"""Rows (``log_metrics()``: several metrics at one step in one line) pushed to a real MLflow server.

A row must reach MLflow exactly as if each of its entries had been logged on its own with ``log()``:
one point per entry, in the row's key order, at its step and timestamp. The push's cursor counts the
points of a line across the row's entries, so a push cut inside a row resumes at the next entry.
The server and the fault-injecting transport are those of ``test_sync_mlflow``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import amltrack
from amltrack.sync import MlflowRemote, NullProgress, snapshot, sync

from . import test_sync_mlflow as base
from .test_sync_mlflow import Crash, Flaky, MlflowServer, mlflow_number, to_ms

pytestmark = pytest.mark.timeout(300)

server = base.server  # one MLflow server for this module, as for test_sync_mlflow's
creds = base.creds

NAN, INF = float("nan"), float("inf")
WIRE_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class Wire(Flaky):
    """Flaky's faults and counts, and every metric point each log-batch sent, as sent."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.metrics: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/runs/log-batch"):
            self.metrics += json.loads(request.content).get("metrics") or []
        return super().handle_request(request)


def file_points(run_dir: Path) -> tuple[list[tuple[str, int, int, float]], list[tuple[int, int]], int]:
    """What the spec says MLflow gets from metrics.jsonl, read here without amltrack's code:
    the numeric points (name, step, ms, value) in file order, the (offset, points) of each line, and
    how many lines are rows."""
    points: list[tuple[str, int, int, float]] = []
    lines: list[tuple[int, int]] = []
    rows = 0
    offset = 0
    for line in (run_dir / "metrics.jsonl").read_bytes().splitlines(keepends=True):
        r = orjson.loads(line)
        flagged = r.get("nonfinite") is True
        if "values" in r and "name" not in r:
            rows += 1
            entries = list(r["values"].items())
        else:
            entries = [(r["name"], r["value"])]
        n = 0
        for name, value in entries:
            if flagged and isinstance(value, list):
                value = [float(x) if isinstance(x, str) else x for x in value]  # "NaN" -> nan
            elif flagged and isinstance(value, str):
                value = float(value)
            elif isinstance(value, str):
                continue  # a string metric: an artifact line, not a point
            if isinstance(value, list):
                pts = list(enumerate(value))
            else:
                pts = [(r["step"], value)]
            points += [(name, s, to_ms(r["ts"]), float(v)) for s, v in pts]
            n += len(pts)
        lines.append((offset, n))
        offset += len(line)
    return points, lines, rows


def cursor_after(lines: list[tuple[int, int]], sent: int) -> str:
    """The cursor tag ("OFFSET:K") after the first ``sent`` points of lines of (offset, points)."""
    before = 0
    for offset, n in lines:
        if before + n > sent:
            return f"{offset}:{sent - before}"
        before += n
    raise AssertionError(f"the file has {before} points, not more than {sent}")


def histories(points: list[tuple[str, int, int, float]]) -> dict[str, list[list[Any]]]:
    """Metric key -> [step, ms, value] as MLflow's client reads them back (tests/scripts/mlflow_read.py)."""
    out: dict[str, list[list[Any]]] = {}
    for name, step, ms, value in points:
        out.setdefault(name, []).append([step, ms, mlflow_number(value)])
    return {k: sorted(v, key=repr) for k, v in out.items()}


def wire_value(v: float) -> float | str:
    return v if math.isfinite(v) else WIRE_NONFINITE[repr(v)]


def mixed_run(store: Path) -> str:
    """log() points and rows interleaved, with NaN, infinities, ints, bools, a list and a string."""
    with amltrack.start_run("mlflow-rows", store=store, outputs=None, params={"kind": "mixed"}) as lg:
        for i in range(3):
            lg.log("loss", 1.0 / (i + 1))  # steps 0-2
        lg.log_metrics({"loss": 0.2, "acc": 0.5, "epoch": 3, "best": True}, step=3)
        lg.log("hist", [1, 2.5, NAN])
        lg.log_metrics({"loss": NAN, "acc": INF, "grad": -INF, "best": False})  # step 4: after loss's 3
        lg.log("note", "NaN")  # a string, not a NaN
        lg.log("loss", 0.125)  # step 5
        lg.log_metrics({"z/last": 1.5, "a first": -2, "loss": 0.0625}, step=9)  # not in sorted order
        lg.log("grad", -INF, step=9)
        return lg.run_id


# What mixed_run logged, as (name, step, value) in file order: each row's entries in its key order.
MIXED = [
    ("loss", 0, 1.0), ("loss", 1, 0.5), ("loss", 2, 1 / 3),
    ("loss", 3, 0.2), ("acc", 3, 0.5), ("epoch", 3, 3.0), ("best", 3, 1.0),
    ("hist", 0, 1.0), ("hist", 1, 2.5), ("hist", 2, NAN),
    ("loss", 4, NAN), ("acc", 4, INF), ("grad", 4, -INF), ("best", 4, 0.0),
    ("loss", 5, 0.125),
    ("z/last", 9, 1.5), ("a first", 9, -2.0), ("loss", 9, 0.0625),
    ("grad", 9, -INF),
]  # fmt: skip


def test_points_and_rows_are_each_sent_once_and_read_back_exactly(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    rid = mixed_run(local)
    run_dir = local / "runs" / rid
    points, _lines, rows = file_points(run_dir)
    assert rows == 3  # the run really holds rows, not one line per metric
    assert [(n, s, repr(v)) for n, s, _ms, v in points] == [(n, s, repr(float(v))) for n, s, v in MIXED]

    wire = Wire()
    with MlflowRemote(server.url, transport=wire) as remote:
        report = sync(local, remote)
    assert report.ok and report.runs[0].outcome == "pushed", report

    # On the wire: every point once, in file order, a row's entries at its step and millisecond, NaN
    # and infinities as the strings MLflow parses, steps and timestamps as integers.
    assert [(m["key"], m["step"], m["timestamp"], m["value"]) for m in wire.metrics] == [
        (n, s, ms, wire_value(v)) for n, s, ms, v in points
    ]
    assert all(type(m["step"]) is int and type(m["timestamp"]) is int for m in wire.metrics)
    assert all(type(m["value"]) in (float, str) for m in wire.metrics)

    (there,) = server.read(rid)[rid]
    want = histories(points)
    assert (
        sorted(there["metrics"])
        == sorted(want)
        == ["a first", "acc", "best", "epoch", "grad", "hist", "loss", "z/last"]
    )
    for key, history in want.items():
        assert sorted(there["metrics"][key], key=repr) == history, key
    assert there["tags"]["amltrack.sync.state"] == "complete"
    assert there["tags"]["amltrack.string_metrics"] == "1 values in artifact amltrack/string_metrics.jsonl"

    # Syncing again sends no point, even when the server is asked, and --verify finds no difference.
    again = Wire()
    with MlflowRemote(server.url, transport=again) as remote:
        checked = sync(local, remote, all_runs=True, verify=True)
    (r,) = checked.runs
    assert r.outcome == "up_to_date" and r.differences == [], r
    assert again.metrics == [] and again.batches == 0


def rows_run(store: Path, rows: int = 12, width: int = 25) -> str:
    """Rows wider than a batch of the test's pushes, each after a log() point of the same step."""
    with amltrack.start_run("mlflow-rows-resume", store=store, outputs=None) as lg:
        for i in range(rows):
            lg.log("loss", 1.0 / (i + 1), step=i)
            lg.log_metrics(
                {f"m{j:02d}": NAN if (i + j) % 11 == 0 else i + j / 100 for j in range(width)}, step=i
            )
        return lg.run_id


def test_a_push_cut_inside_a_row_resumes_at_the_next_entry(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    rid = rows_run(local)
    store = amltrack.Store(local)
    run_dir = local / "runs" / rid
    points, lines, rows = file_points(run_dir)
    total = len(points)
    assert rows == 12 and total == 12 * 26

    # Batches of 7 points (the 8th entity is the cursor tag). The answer to batch 3 is lost (its
    # retry finds it landed, inside a row, and sends nothing), and batch 11 lands without its cursor
    # as the client dies: the cursor stays after batch 10, 70 points in, 17 entries into the third
    # row, further in than a batch.
    first = Wire(lose=frozenset({3}), crash_at=11)
    with MlflowRemote(server.url, max_metrics=8, backoff=0.01, transport=first) as remote:
        with pytest.raises(Crash):
            remote.push_run(snapshot(store, rid), NullProgress())
    tags = server.tags(rid)
    assert tags["amltrack.sync.state"] == "in_progress"
    assert cursor_after(lines, 70) == f"{lines[5][0]}:17"  # the third row is the file's sixth line
    assert tags["amltrack.sync.cursor"] == cursor_after(lines, 70)
    assert first.points == 77  # batch 3 once, batch 11 too although the cursor is before it
    assert [(m["key"], m["step"]) for m in first.metrics] == [(n, s) for n, s, _ms, _v in points[:77]]

    second = Wire()
    with MlflowRemote(server.url, max_metrics=8, backoff=0.01, transport=second) as remote:
        remote.push_run(snapshot(store, rid), NullProgress())
    # The resumed push checked its first batch (batch 11 again) against the server and sent the
    # rest once: no point twice, none left out.
    assert first.points + second.points == total, (first.points, second.points)
    assert [(m["key"], m["step"]) for m in second.metrics] == [(n, s) for n, s, _ms, _v in points[77:]]

    (there,) = server.read(rid)[rid]
    want = histories(points)
    assert sorted(there["metrics"]) == sorted(want) and len(want) == 26
    for key, history in want.items():
        assert sorted(there["metrics"][key], key=repr) == history, key
    tags = server.tags(rid)
    assert tags["amltrack.sync.state"] == "complete"
    assert tags["amltrack.sync.cursor"] == f"{(run_dir / 'metrics.jsonl').stat().st_size}:0"

    again = Wire()
    with MlflowRemote(server.url, transport=again) as remote:
        checked = sync(local, remote, all_runs=True, verify=True)
    (r,) = checked.runs
    assert r.outcome == "up_to_date" and r.differences == [], r
    assert again.batches == 0


def test_verify_counts_each_entry_of_a_row(
    server: MlflowServer, tmp_path: Path, creds: dict[str, str]
) -> None:
    local = tmp_path / "local"
    with amltrack.start_run("mlflow-rows-verify", store=local, outputs=None) as lg:
        lg.log("loss", 0.5, step=0)
        lg.log_metrics({"loss": 0.25, "acc": 0.75}, step=1)
        lg.log_metrics({"acc": 0.875, "loss": NAN}, step=2)
        rid = lg.run_id
    assert sync(local, server.url).ok
    assert sync(local, server.url, all_runs=True, verify=True).runs[0].differences == []

    # A row written by hand after the push, as log_metrics() writes one: each of its entries is a
    # point the server lacks, a non-finite one too.
    metrics = local / "runs" / rid / "metrics.jsonl"
    row = {"step": 3, "values": {"acc": "Infinity", "loss": "NaN", "extra": 1}, "ts": 1.8e9, "seq": 9}
    with open(metrics, "ab") as f:
        f.write(orjson.dumps({**row, "nonfinite": True}) + b"\n")
    with MlflowRemote(server.url) as remote:
        diffs = remote.verify_run(snapshot(amltrack.Store(local), rid))
    assert [d for d in diffs if d.startswith("metric ")] == [
        f"metric {key}: 1 point(s) missing on the remote, 0 extra, 0 doubled"
        for key in ("acc", "extra", "loss")
    ], diffs
