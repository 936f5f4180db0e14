"""The writer's column index (cache/columns.bin): reading through it gives exactly what the JSON
Lines give, and an index that is torn, stale or stopped is never trusted beyond what it covers."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import amltrack
from amltrack._columns import columns_path, read_columns

from .conftest import child_env


def from_json(run_dir: Path) -> dict:
    """The run's metrics read from metrics.jsonl alone: from a copy of the store without the index."""
    store = run_dir.parent.parent
    copy = store.parent / (store.name + "-json-only")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns("cache"))
    return as_plain(amltrack.Store(copy).run(run_dir.name).metrics())


def as_plain(metrics: dict) -> dict:
    # NaN != NaN: compare its repr
    return {n: (m.steps, [repr(v) for v in m.values], m.timestamps) for n, m in metrics.items()}


def covered(run_dir: Path) -> int:
    with open(run_dir / "metrics.jsonl", "rb") as f:
        cols = read_columns(run_dir, f)
    return 0 if cols is None else cols.end


def mixed_run(store: Path, batches: int = 4) -> amltrack.Logger:
    logger = amltrack.get_logger("cols", store=store, outputs=None)
    for b in range(batches):
        for i in range(300):
            logger.log("loss", 1.0 / (i + 1 + b))
            logger.log("acc", i / 300, step=b * 1000 + i)
        logger.log("epoch", b)
        logger.log("done", b % 2 == 0)
        logger.log("note", f"batch {b} }},{{ with separators")
        logger.log("curve", [1.0, math.nan, -math.inf, 2])
        logger.log("odd", math.nan if b % 2 else math.inf)
        logger.log("big int", 2**63 - 1 - b)
        logger.flush()
    return logger


def test_reading_through_the_index_equals_reading_the_json_lines(store: Path) -> None:
    logger = mixed_run(store)
    logger.finish()
    run_dir = logger.run_dir
    size = (run_dir / "metrics.jsonl").stat().st_size
    assert covered(run_dir) == size  # every batch was indexed
    got = amltrack.Store(store).run(logger.run_id).metrics()
    assert as_plain(got) == from_json(run_dir)
    assert got["big int"].values[0] == 2**63 - 1 and type(got["epoch"].values[0]) is int
    assert got["done"].values[:2] == [True, False] and got["curve"].values[0][1] != got["curve"].values[0][1]


def test_records_after_the_index_are_read_from_the_json_lines(store: Path) -> None:
    logger = mixed_run(store, batches=2)
    logger.finish()
    run_dir = logger.run_dir
    end = covered(run_dir)
    # A line the index does not cover, as a tool or a synced copy might append.
    with open(run_dir / "metrics.jsonl", "ab") as f:
        f.write(b'{"name":"loss","step":9999,"value":0.5,"ts":1.0,"seq":99999}\n')
        f.write(b'{"name":"late","step":0,"value":"x","ts":2.0,"seq":100000}\n')
    assert covered(run_dir) == end
    got = amltrack.Store(store).run(logger.run_id).metrics()
    assert got["loss"].steps[-1] == 9999 and got["late"].values == ["x"]
    assert as_plain(got) == from_json(run_dir)


@pytest.mark.parametrize("cut", [1, 7, 40, 1000, -1, -29])
def test_a_torn_index_is_used_only_up_to_its_last_whole_block(store: Path, cut: int) -> None:
    logger = mixed_run(store)
    logger.finish()
    path = columns_path(logger.run_dir)
    data = path.read_bytes()
    path.write_bytes(data[: cut if cut > 0 else len(data) + cut])
    assert covered(logger.run_dir) < (logger.run_dir / "metrics.jsonl").stat().st_size
    assert as_plain(amltrack.Store(store).run(logger.run_id).metrics()) == from_json(logger.run_dir)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_line_edited_by_hand_is_read_from_the_json_even_at_the_same_length(store: Path, where: str) -> None:
    logger = mixed_run(store)
    logger.finish()
    metrics = logger.run_dir / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    i = {"first": 0, "middle": len(lines) // 2, "last": len(lines) - 1}[where]
    j = lines[i].index(b',"seq":') - 1  # the timestamp's last digit
    edited = lines[i][:j] + (b"2" if lines[i][j : j + 1] == b"1" else b"1") + lines[i][j + 1 :]
    assert len(edited) == len(lines[i]) and edited != lines[i]
    metrics.write_bytes(b"".join(lines[:i] + [edited] + lines[i + 1 :]))
    assert covered(logger.run_dir) <= sum(map(len, lines[:i]))  # the index ends before the edit
    got = amltrack.Store(store).run(logger.run_id).metrics()
    assert as_plain(got) == from_json(logger.run_dir)


def test_an_index_longer_than_its_file_is_used_up_to_the_file(store: Path) -> None:
    logger = mixed_run(store)
    logger.finish()
    metrics = logger.run_dir / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:1000]))  # cut short, as by a restore from an old copy
    assert covered(logger.run_dir) <= metrics.stat().st_size
    got = amltrack.Store(store).run(logger.run_id).metrics()
    assert sum(len(m) for m in got.values()) == 1000
    assert as_plain(got) == from_json(logger.run_dir)


def test_a_deleted_index_only_costs_speed(store: Path) -> None:
    logger = mixed_run(store)
    logger.finish()
    before = as_plain(amltrack.Store(store).run(logger.run_id).metrics())
    shutil.rmtree(logger.run_dir / "cache")
    assert as_plain(amltrack.Store(store).run(logger.run_id).metrics()) == before


JOINER = textwrap.dedent("""
    import sys, amltrack
    logger = amltrack.get_logger(store=sys.argv[1], run_id=sys.argv[2], outputs=None)
    for i in range(500):
        logger.log("loss", 10.0 + i)
    logger.log("joined", "yes").wait()
""")


def test_when_another_process_joins_the_index_stops_and_reading_merges_by_time(store: Path) -> None:
    logger = amltrack.get_logger("cols", store=store, outputs=None)
    for i in range(500):
        logger.log("loss", float(i))
    logger.flush()
    subprocess.run([sys.executable, "-c", JOINER, str(store), logger.run_id], check=True, env=child_env())
    for i in range(500):
        logger.log("loss", float(1000 + i))
    logger.finish()
    run_dir = logger.run_dir
    assert 0 < covered(run_dir) < (run_dir / "metrics.jsonl").stat().st_size
    assert not logger._writer._columns.active  # it saw the joiner's bytes before its own next batch
    got = amltrack.Store(store).run(logger.run_id).metrics()
    assert len(got["loss"]) == 1500 and got["joined"].values == ["yes"]
    assert as_plain(got) == from_json(run_dir)


def test_an_index_that_cannot_be_written_leaves_logging_alone(store: Path) -> None:
    logger = amltrack.get_logger("cols", store=store, outputs=None)
    (logger.run_dir / "cache").write_bytes(b"not a directory")  # the index cannot be created
    for i in range(100):
        logger.log("loss", float(i))
    logger.finish()
    assert not logger._writer._columns.active
    assert amltrack.Store(store).run(logger.run_id).metric("loss").values == [float(i) for i in range(100)]
    assert os.path.isfile(logger.run_dir / "cache")


@pytest.mark.parametrize("at", [0.1, 0.5, 0.9, -1])
def test_a_flipped_byte_in_the_index_costs_speed_not_correctness(store: Path, at: float) -> None:
    logger = mixed_run(store)
    logger.finish()
    path = columns_path(logger.run_dir)
    data = bytearray(path.read_bytes())
    i = len(data) - 1 if at == -1 else int(len(data) * at)
    data[i] ^= 0x10
    path.write_bytes(bytes(data))
    assert covered(logger.run_dir) < (logger.run_dir / "metrics.jsonl").stat().st_size
    assert as_plain(amltrack.Store(store).run(logger.run_id).metrics()) == from_json(logger.run_dir)
    from .test_ui import assert_cache_matches_reader

    assert_cache_matches_reader(logger.run_dir)


@pytest.mark.parametrize(
    "keys",
    [
        [0] * 5000 + [1] * 3 + [0] * 4000,  # long stretches of one name, and a short one
        [i % 7 for i in range(9000)],  # names interleaved in every chunk
        [0] * 2048 + [1] * 2048 + [i % 3 for i in range(100)],  # chunk-aligned stretches, then a mixed tail
        ["a"],
        [],
    ],
)
def test_split_columns_keeps_each_keys_records_in_order(keys: list) -> None:
    from amltrack._columns import split_columns

    n = len(keys)
    steps, values, stamps = list(range(n)), [f"v{i}" for i in range(n)], [i / 2 for i in range(n)]
    expected: dict = {}
    for k, s, v, t in zip(keys, steps, values, stamps):
        cols = expected.setdefault(k, ([], [], []))
        cols[0].append(s), cols[1].append(v), cols[2].append(t)
    got = split_columns(keys, steps, values, stamps)
    assert list(got) == list(expected)
    assert {k: tuple(map(list, c)) for k, c in got.items()} == expected
