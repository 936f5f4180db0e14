"""``log_metrics()``: several metrics at one step as one record (a row). A row reads back exactly as
one ``log()`` per entry, through the index or without it, and bad input is refused at the call."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest

import amltrack
from amltrack import _records
from amltrack._columns import columns_path, read_segments

from .conftest import child_env
from .test_columns import as_plain, from_json


def rows_and_points(store: Path, batches: int = 3) -> tuple[amltrack.Logger, amltrack.Logger]:
    """The same data logged twice: with log_metrics() and log() mixed, and with log() alone."""
    rows_cm = amltrack.start_run("rows", store=store, outputs=None)
    points_cm = amltrack.start_run("points", store=store, outputs=None)
    rows, points = rows_cm.__enter__(), points_cm.__enter__()
    assert rows.run_id != points.run_id
    for b in range(batches):
        for i in range(200):
            step = b * 1000 + i
            values = {
                "loss": 1.0 / (step + 1),
                "acc": i / 200,
                "lr": math.nan if i == 7 else 0.1,
                "done": i % 2 == 0,
                "epoch": b,
                "big": 2**63 - 1 - i,
                "inf": -math.inf,
            }
            rows.log_metrics(values, step=step)
            for k, v in values.items():
                points.log(k, v, step=step)
            rows.log("note", f"row {i}", step=step)
            points.log("note", f"row {i}", step=step)
        if b == 1:
            # a batch of log() alone between batches with rows: an ordinary index block
            for lg in (rows, points):
                lg.flush()
                for i in range(300):
                    lg.log("loss", float(i), step=10**6 + i)
        for lg in (rows, points):
            lg.flush()
    rows.finish()
    points.finish()
    return rows, points


def values_only(metrics: dict) -> dict:
    # timestamps differ between the two runs: compare steps and values
    return {n: (m.steps, [repr(v) for v in m.values]) for n, m in metrics.items()}


def test_rows_read_back_as_one_log_per_entry(store: Path) -> None:
    rows, points = rows_and_points(store)
    s = amltrack.Store(store)
    got = s.run(rows.run_id).metrics()
    assert values_only(got) == values_only(s.run(points.run_id).metrics())
    assert type(got["big"].values[0]) is int and type(got["done"].values[0]) is bool
    assert math.isnan(got["lr"].values[7]) and got["inf"].values[0] == -math.inf
    # every entry of a row has the row's time
    line = orjson.loads((rows.run_dir / "metrics.jsonl").read_bytes().splitlines()[0])
    assert got["loss"].timestamps[0] == got["acc"].timestamps[0] == line["ts"]


def test_reading_through_the_index_with_raw_blocks_equals_the_json_lines(store: Path) -> None:
    rows, _ = rows_and_points(store)
    with open(rows.run_dir / "metrics.jsonl", "rb") as f:
        segments = read_segments(rows.run_dir, f)
    kinds = [type(seg).__name__ for seg in segments or []]
    # rows, then the log()-only batch as columns, then rows again; the index covers the whole file
    assert kinds == ["tuple", "Columns", "tuple"], kinds
    assert segments[-1][1] == (rows.run_dir / "metrics.jsonl").stat().st_size
    got = amltrack.Store(store).run(rows.run_id).metrics()
    assert as_plain(got) == from_json(rows.run_dir)


def test_a_row_edited_by_hand_reads_as_edited_and_a_moved_line_end_is_not_trusted(store: Path) -> None:
    rows, _ = rows_and_points(store)
    metrics = rows.run_dir / "metrics.jsonl"
    data = metrics.read_bytes()
    i = data.rindex(b'"acc":0.5,')  # a row in the last raw range, edited to the same length
    metrics.write_bytes(data[:i] + b'"acc":0.6,' + data[i + 10 :])
    got = amltrack.Store(store).run(rows.run_id).metrics()
    assert got["acc"].values.count(0.5) == 2 and got["acc"].values[500] == 0.6
    assert as_plain(got) == from_json(rows.run_dir)
    metrics.write_bytes(data[: i - 3] + b"garbage" + data[i:])  # a damaged row is skipped and counted
    run = amltrack.Store(store).run(rows.run_id)
    with pytest.warns(UserWarning, match="unreadable"):
        got = run.metrics()
    assert run.skipped == 1
    assert len(got["acc"]) == 599


def test_a_torn_raw_block_leaves_the_rows_to_the_json(store: Path) -> None:
    rows, _ = rows_and_points(store)
    path = columns_path(rows.run_dir)
    path.write_bytes(path.read_bytes()[:-7])
    assert as_plain(amltrack.Store(store).run(rows.run_id).metrics()) == from_json(rows.run_dir)


def test_summary_counts_every_entry(store: Path) -> None:
    rows, points = rows_and_points(store, batches=1)
    a = orjson.loads((rows.run_dir / "summary.json").read_bytes())
    b = orjson.loads((points.run_dir / "summary.json").read_bytes())
    strip = {n: {k: v for k, v in m.items() if k != "ts"} for n, m in a["metrics"].items()}
    assert strip == {n: {k: v for k, v in m.items() if k != "ts"} for n, m in b["metrics"].items()}
    assert a["records"] == b["records"] == 200 * 8


def test_the_line_is_plain_json(logger: amltrack.Logger) -> None:
    logger.log_metrics({"loss": 0.25, "acc": math.inf}, step=4).wait()
    line = (logger.run_dir / "metrics.jsonl").read_bytes().splitlines()[-1]
    rec = orjson.loads(line)
    assert rec["step"] == 4 and rec["values"] == {"loss": 0.25, "acc": "Infinity"}
    assert rec["nonfinite"] is True and isinstance(rec["ts"], float) and isinstance(rec["seq"], int)
    assert "name" not in rec


def test_default_steps_count_per_name_as_log_does(logger: amltrack.Logger) -> None:
    for _ in range(3):
        logger.log_metrics({"loss": 1.0, "acc": 0.5})
    logger.log("loss", 2.0)  # loss moves on to 3
    logger.log_metrics({"loss": 1.0, "acc": 0.5})  # the highest next step of the two: 4
    logger.log("acc", 1.0)
    logger.log_metrics({"val": 1.0}, step=10)
    logger.log_metrics({"val": 2.0})
    logger.finish()
    got = amltrack.Store(logger.store).run(logger.run_id).metrics()
    assert got["loss"].steps == [0, 1, 2, 3, 4]
    assert got["acc"].steps == [0, 1, 2, 4, 5]
    assert got["val"].steps == [10, 11]


def test_numpy_scalars_and_mappings_are_taken(logger: amltrack.Logger) -> None:
    from types import MappingProxyType

    logger.log_metrics(MappingProxyType({"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True)}))
    logger.finish()
    got = amltrack.Store(logger.store).run(logger.run_id).metrics()
    assert (got["f"].values, got["i"].values, got["b"].values) == ([0.5], [3], [True])
    assert type(got["i"].values[0]) is int and type(got["b"].values[0]) is bool


@pytest.mark.parametrize(
    ("values", "step", "error", "words"),
    [
        ([("loss", 1.0)], None, TypeError, "not list"),
        ({}, None, amltrack.InvalidMetricError, "empty"),
        ({"loss": "high"}, None, TypeError, "'loss'.*not str 'high'.*log\\('loss'"),
        ({"curve": [1.0, 2.0]}, None, TypeError, "'curve'.*list"),
        ({"m": np.zeros(3)}, None, TypeError, "'m'.*ndarray"),
        ({"ok": 1.0, "": 2.0}, None, amltrack.InvalidMetricError, "empty"),
        ({"ok": 1.0, 5: 2.0}, None, TypeError, "5"),
        ({"bad\nname": 1.0}, None, amltrack.InvalidMetricError, "control"),
        ({"huge": 2**64}, None, amltrack.InvalidMetricError, "'huge'.*64 bits"),
        ({"loss": 1.0}, -1, amltrack.InvalidMetricError, "step -1 of metric 'loss'"),
        ({"loss": 1.0}, 2**63, amltrack.InvalidMetricError, "step"),
        ({"loss": 1.0}, 1.5, TypeError, "step 1.5"),
        ({f"m{i}": 1.0 for i in range(10_001)}, None, amltrack.InvalidMetricError, "10001 metrics"),
    ],
)
def test_bad_input_is_refused_at_the_call_and_changes_nothing(
    logger: amltrack.Logger, values: object, step: object, error: type, words: str
) -> None:
    logger.log_metrics({"loss": 0.0, "ok": 0.0}).wait()
    with pytest.raises(error, match=words):
        logger.log_metrics(values, step=step)  # type: ignore[arg-type]
    logger.log_metrics({"loss": 1.0, "ok": 1.0})  # steps went on as if the bad call never happened
    logger.finish()
    got = amltrack.Store(logger.store).run(logger.run_id).metrics()
    assert set(got) == {"loss", "ok"} and got["loss"].steps == [0, 1] and got["ok"].steps == [0, 1]


def test_a_finished_logger_refuses_rows(logger: amltrack.Logger) -> None:
    logger.finish()
    with pytest.raises(amltrack.RunFinishedError):
        logger.log_metrics({"loss": 1.0})


def test_the_callers_dict_is_copied(logger: amltrack.Logger) -> None:
    values = {"loss": 1.0}
    logger.log_metrics(values)
    values["loss"] = 2.0
    values["late"] = 3.0
    logger.finish()
    got = amltrack.Store(logger.store).run(logger.run_id).metrics()
    assert got == {"loss": got["loss"]} and got["loss"].values == [1.0]


JOINER = textwrap.dedent("""
    import sys, amltrack
    logger = amltrack.get_logger(store=sys.argv[1], run_id=sys.argv[2], outputs=None)
    for i in range(100):
        logger.log_metrics({"loss": 10.0 + i, "joined": True}, step=500 + i)
    logger.finish()
""")


def test_rows_from_a_joined_process_merge_by_time(store: Path) -> None:
    logger = amltrack.get_logger("rows", store=store, outputs=None)
    for i in range(100):
        logger.log_metrics({"loss": float(i)}, step=i)
    logger.flush()
    subprocess.run([sys.executable, "-c", JOINER, str(store), logger.run_id], check=True, env=child_env())
    for i in range(100):
        logger.log_metrics({"loss": float(1000 + i)}, step=1000 + i)
    logger.finish()
    assert b'"w":' in (logger.run_dir / "metrics.jsonl").read_bytes()
    got = amltrack.Store(store).run(logger.run_id).metrics()
    assert got["loss"].steps == [*range(100), *range(500, 600), *range(1000, 1100)]
    assert got["joined"].values == [True] * 100
    assert as_plain(got) == from_json(logger.run_dir)


def test_a_step_of_ten_metrics_costs_under_40_bytes_a_point(logger: amltrack.Logger) -> None:
    """The disk cost that puts amltrack ahead of tensorboardX (47 B a point) in benchmarks/peers."""
    names = (
        "loss",
        "accuracy",
        "lr",
        "grad_norm",
        "val_loss",
        "val_accuracy",
        "epoch",
        "throughput",
        "weight_norm",
        "gpu_mem",
    )
    for step in range(2000):
        x = 1.0 / (step + 1)
        logger.log_metrics({k: x + j for j, k in enumerate(names)}, step=step)
    logger.finish()
    size = (logger.run_dir / "metrics.jsonl").stat().st_size + columns_path(logger.run_dir).stat().st_size
    assert size / 20_000 < 40


def _row(step: int, values: dict, **extra: object) -> dict:
    return {"step": step, "values": values, "ts": 1000.0 + step, "seq": step + 1, **extra}


ROW_FILES = {
    "two name sets sharing a name": [
        _row(i, {"loss": float(i), "lr": 0.1} if i % 3 else {"loss": -float(i), "val": i, "ok": True})
        for i in range(30)
    ],
    "rows and log() records of one name": [
        _row(i, {"loss": float(i)})
        if i % 2
        else {"name": "loss", "step": i, "value": "text", "ts": 5.0, "seq": 1}
        for i in range(20)
    ],
    "the same names in another order": [
        _row(i, {"a": i, "b": -i} if i % 2 else {"b": -i, "a": i}) for i in range(10)
    ],
    "non-finite entries and a string in an unflagged row": [
        _row(0, {"x": "NaN", "y": 1.0}, nonfinite=True),
        _row(1, {"x": "-Infinity", "y": "Infinity"}, nonfinite=True),
        _row(2, {"x": "NaN", "y": 2}),
    ],
    "a row with a step of the wrong type": [
        _row(0, {"x": 1.0}),
        {**_row(1, {"x": 2.0}), "step": "1"},
        _row(2, {"x": 3.0}),
    ],
    "a row with a list in it": [_row(0, {"x": 1.0, "l": [1, 2]}), _row(1, {"x": 2.0, "l": 3.0})],
    "an empty row and one that is not an object": [
        _row(0, {"x": 1.0}),
        _row(1, {}),
        {**_row(2, {}), "values": [1]},
    ],
}


@pytest.mark.parametrize("case", list(ROW_FILES))
def test_reading_rows_equals_reading_one_line_per_entry(store: Path, case: str) -> None:
    """The reader's column path for rows gives what one point line per entry gives, bad fields too."""

    amltrack.get_logger("a", store=store, outputs=None).finish()
    rows_run = amltrack.Store(store).last()
    records = ROW_FILES[case]
    (rows_run.dir / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    (rows_run.dir / "cache" / "columns.bin").unlink(missing_ok=True)
    points_dir = rows_run.dir.parent / (rows_run.id[:-1] + ("1" if rows_run.id.endswith("0") else "0"))
    points_dir.mkdir()
    (points_dir / "run.json").write_bytes((rows_run.dir / "run.json").read_bytes())
    points = [p for r in records for p in (_records.row_points(r) or [r] if _records.is_row(r) else [r])]
    (points_dir / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in points))
    got = amltrack.Store(store).run(rows_run.id)
    want = amltrack.Store(store).run(points_dir.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged lines are reported once per file: not the point here
        assert as_plain(got.metrics()) == as_plain(want.metrics())
    assert got.skipped == want.skipped


def test_the_queue_bound_counts_a_rows_points(logger: amltrack.Logger) -> None:
    """The writer's queue holds at most max_pending points, not rows: 30 rows of 100 fill 3,000."""
    import threading
    import time

    w = logger._writer
    w.max_pending = 3000  # above BATCH_SIZE (2,000), as in use
    release = threading.Event()
    orig = w._write_batch

    def held_up(*batch: object) -> None:  # a disk that takes its time
        release.wait(10)
        orig(*batch)

    w._write_batch = held_up  # type: ignore[method-assign]

    def producer() -> None:
        for i in range(100):
            logger.log_metrics({f"m{k}": float(i) for k in range(100)}, step=i)

    t = threading.Thread(target=producer)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while len(w.queue) < 30:  # full: the producer is held at the bound from here on
            assert time.monotonic() < deadline, f"the queue never filled: {len(w.queue)} rows"
            time.sleep(0.01)
        time.sleep(0.3)  # time for a producer that the bound failed to hold to overfill it
        assert t.is_alive() and len(w.queue) <= 31, len(w.queue)
    finally:
        release.set()
        t.join(10)
    logger.finish()
    got = amltrack.Store(logger.store).run(logger.run_id).metrics()
    assert len(got) == 100 and all(m.values == [float(i) for i in range(100)] for m in got.values())
