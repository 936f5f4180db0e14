"""The on-disk format: a cut or damaged file still reads. (That every value log() and upload() accept
round-trips is tests/torture/test_input.py.)"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import orjson
import pytest

import amltrack
from amltrack import _format as fmt


def make_metrics(logger: amltrack.Logger) -> bytes:
    logger.log("a", 1.5)
    logger.log("b", "text with \n newline and } , {")
    logger.log("c", [1, math.nan, 3])
    logger.log("d", math.inf)
    logger.log("e", True)
    logger.log("a", 2)
    logger.flush()
    return (logger.run_dir / "metrics.jsonl").read_bytes()


def test_a_file_cut_at_any_byte_yields_every_complete_record(logger: amltrack.Logger) -> None:
    data = make_metrics(logger)
    full, skipped = fmt.parse_jsonl(data)
    assert skipped == 0 and len(full) == 6
    ends = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cut in range(len(data) + 1):
            got, skipped = fmt.parse_jsonl(data[:cut], f"cut{cut}")
            complete = sum(1 for e in ends if e - 1 <= cut)  # the closing brace is in
            assert got == full[:complete], cut
            assert skipped <= 1


def test_reader_skips_torn_and_garbage_lines_and_warns(logger: amltrack.Logger) -> None:
    make_metrics(logger)
    logger.finish()
    path = logger.run_dir / "metrics.jsonl"
    good = path.read_bytes()
    path.write_bytes(
        b"garbage\n"
        + good
        + b'{"name": 5, "step": 1, "value": 1, "ts": 1, "seq": 1}\n'
        + b'[1,2]\n{"name":"a","step":"x","value":1,"ts":1,"seq":9}\n\n'
        + b'{"name":"a","step":7,"value":{"obj":1},"ts":1,"seq":9}\n{"name":"a","step":3,"val'
    )
    run = amltrack.Store(logger.store).run(logger.run_id)
    with pytest.warns(UserWarning, match="skipped"):
        metrics = run.metrics()
    assert [p.value for p in metrics["a"]] == [1.5, 2]
    assert metrics["b"][0].value == "text with \n newline and } , {"
    assert run.skipped == 6  # garbage, torn tail, name 5, [1,2], step "x", value object


def test_writer_ends_a_torn_line_before_appending(store: Path) -> None:
    logger = amltrack.get_logger(store=store, outputs=None)
    logger.log("a", 1).wait()
    path = logger.run_dir / "metrics.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"name":"a","step":9,"va')  # a process killed mid-write
    joiner = amltrack._logger._open_logger(None, None, None, None, store, None, logger.run_id)
    joiner.log("a", 2).wait()
    joiner.finish()
    with pytest.warns(UserWarning):
        values = amltrack.Store(store).run(logger.run_id).metric("a").values
    assert values == [1, 2]


def test_future_schema_is_a_clear_error(tmp_path: Path) -> None:
    s = tmp_path / "s"
    (s / "runs").mkdir(parents=True)
    (s / "store.json").write_bytes(orjson.dumps({"schema": 99}))
    with pytest.raises(amltrack.StoreError, match="upgrade amltrack"):
        amltrack.Store(s)


def test_records_are_flat_json_objects_with_the_documented_fields(logger: amltrack.Logger) -> None:
    data = make_metrics(logger)
    for line in data.splitlines():
        rec = orjson.loads(line)
        assert (
            {"name", "step", "value", "ts", "seq"}
            <= set(rec)
            <= {"name", "step", "value", "ts", "seq", "nonfinite", "w"}
        )


@pytest.mark.parametrize("path", ["a", "a/b/c.txt", "outputs/model.pt", "ü/名前", "a b/c-d_e.f"])
def test_good_artifact_paths(path: str) -> None:
    assert fmt.check_artifact_path(path) == path


def test_run_ids_sort_by_time_and_are_random() -> None:
    a = fmt.new_run_id(1_700_000_000.001)
    b = fmt.new_run_id(1_700_000_000.002)
    assert a < b and fmt.is_valid_run_id(a)
    assert len(a.split("-")[1]) == 16  # 64 random bits
    assert len({fmt.new_run_id(1.0) for _ in range(1000)}) == 1000
