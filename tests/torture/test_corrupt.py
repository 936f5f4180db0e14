"""The reader over damaged stores: only clear amltrack errors, it says what it skipped, and a row
(log_metrics()) reads back whole or not at all."""

from __future__ import annotations

import itertools
import math
import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amltrack
import amltrack._logger  # the fixture patches it; imported here so that this file may run first or alone
from amltrack import _format as fmt
from amltrack import _records
from amltrack._columns import read_segments

from ..test_columns import as_plain
from .conftest import size

FILES = [
    "run.json",
    "metrics.jsonl",
    "summary.json",
    "artifacts.jsonl",
    "artifacts/a/b.txt",
    "../../store.json",
    "cache/columns.bin",
]
ROW = (
    "alpha",
    "beta",
    "gamma",
    "delta",
)  # the names of each row: no one of them is another with more inserted


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("pristine") / "s"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(store.parent)  # not in a git checkout: no git/diff.patch, the same run everywhere
        # every call its own time, so that a row's entries are told apart by theirs
        mp.setattr(amltrack._logger, "_time", itertools.count(1_800_000_000.0).__next__)
        logger = amltrack._logger._open_logger("c", "n", {"t": "1"}, {"p": 2}, store, None, None)
        for i in range(50):
            logger.log("loss", 1 / (i + 1))
            logger.log("list", [i, i + 1.5, float("nan")])
            logger.log("text", f"line {i}")
            if (
                10 <= i < 30 or i >= 40
            ):  # batches of points alone and batches with rows: both kinds of index block
                logger.log_metrics(dict(zip(ROW, (i, i / 3, math.nan if i % 2 else -math.inf, i % 3 == 0))))
            if i % 10 == 9:
                logger.flush()
        logger.upload("a/b.txt", "artifact")
        logger.finish()
    return store


@pytest.fixture(scope="module")
def pristine_read(pristine: Path) -> dict[str, Any]:
    read, skipped = read_everything(pristine)
    assert skipped == 0 and read
    ((counts, _, _),) = read.values()
    assert all(counts[name] == 30 for name in ROW)
    (run_dir,) = (pristine / "runs").iterdir()
    with open(run_dir / "metrics.jsonl", "rb") as f:
        kinds = [type(seg).__name__ for seg in read_segments(run_dir, f) or []]
    assert kinds == ["Columns", "tuple", "Columns", "tuple"], kinds  # the index has both kinds of block
    return read


def read_everything(store: Path) -> tuple[dict[str, Any], int]:
    """What the reader gives back (per run: points per metric, manifest paths and states, and the
    points themselves) and the lines it said it skipped (``run.skipped``, after each read that sets it)."""
    s = amltrack.Store(store)
    out: dict[str, Any] = {}
    skipped = 0
    for run in s.runs():
        run.status, run.experiment, run.name, run.tags, run.params, run.duration()
        metrics = run.metrics()
        skipped += run.skipped
        run.summary()
        skipped += run.skipped
        run.cached_summary()
        artifacts = run.artifacts()
        skipped += run.skipped
        for a in artifacts:
            if a.get("status") == "stored":
                run.read_artifact(a["path"])
        out[run.id] = (
            {name: len(m) for name, m in metrics.items()},
            {a["path"]: a.get("status") for a in artifacts},
            as_plain(metrics),
        )
    s.runs(status="crashed")
    try:
        s.last().metric("loss")
    except (amltrack.MetricNotFoundError, amltrack.RunNotFoundError):
        pass
    return out, skipped


def lost(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What ``before`` has that ``after`` does not: runs, metric points, manifest entries."""
    out = []
    for rid, (metrics, artifacts, _) in before.items():
        if rid not in after:
            out.append(f"run {rid}")
            continue
        got_metrics, got_artifacts, _ = after[rid]
        short = {n: k - got_metrics.get(n, 0) for n, k in metrics.items() if got_metrics.get(n, 0) < k}
        # Garbage inside a name (a space in "list") files its points under another name: moved, not
        # lost, and nothing in the line says so.
        moved = sum(k for n, k in got_metrics.items() if n not in metrics)
        if sum(short.values()) > moved:
            out += [f"{n}: {k} point(s)" for n, k in short.items()]
        out += [f"artifact {p}" for p in artifacts if p not in got_artifacts]
    return out


def cuts_whole_lines(which: str, how: str, data: bytes, cut: int) -> bool:
    """Damage that leaves a JSON Lines file a shorter, valid one: nothing in it says lines are missing,
    so the reader cannot tell it from a run that logged less (docs/reliability.md says so)."""
    if not which.endswith(".jsonl"):
        return False
    # A cut just before a newline leaves the last line whole, only without its newline.
    at_line_end = cut == 0 or data[cut - 1 : cut] == b"\n" or data[cut : cut + 1] == b"\n"
    return how in ("delete", "empty") or (how == "truncate" and at_line_end)


def rows_in_part(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[float, int]]:
    """The times at which the damaged run ``after`` has a number of points that is neither one point
    nor a whole row, with that number. Every call of the pristine run ``before`` has its own time, so
    the points at a row's time are its entries (damage to a time moves them all)."""
    rows = set(before[ROW[0]][2])
    points = {ts for _, _, stamps in before.values() for ts in stamps} - rows
    got = Counter(ts for _, _, stamps in after.values() for ts in stamps)
    return sorted(
        (ts, k)
        for ts, k in got.items()
        if k not in ({len(ROW)} if ts in rows else {1} if ts in points else {1, len(ROW)})
    )


WRONG = [5, "x", None, [1], {"a": 1}, -1.5, True]


def damage_a_field(data: bytes, cut: int) -> tuple[bytes, bool]:
    """JSON Lines ``data`` with one field of the record around byte ``cut`` given a value of another
    type, and whether that field was an entry of a row: one entry goes alone, as its log() would."""
    lines = data.split(b"\n")
    i = min(data[:cut].count(b"\n"), len(lines) - 1)
    if not lines[i]:  # after the last newline
        i -= 1
    rec = orjson.loads(lines[i])
    fields: list[Any] = list(rec)
    if _records.is_row(rec):
        # "values" itself, or one of its entries
        fields = list(rec) + [("values", name) for name in rec["values"]]
    field = fields[(cut // 7) % len(fields)]
    wrong = WRONG[cut % len(WRONG)]
    if field in ("name", "path") and isinstance(wrong, str):
        wrong = None  # another str there is another metric or artifact, no damage the reader could see
    if isinstance(field, tuple):
        rec["values"][field[1]] = wrong
    else:
        rec[field] = wrong
    lines[i] = orjson.dumps(rec)
    return b"\n".join(lines), isinstance(field, tuple)


_examples = itertools.count()


@settings(
    max_examples=size(150, 2000),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.sampled_from(FILES),
    how=st.sampled_from(["truncate", "garbage", "flip", "delete", "empty", "wrongtype", "future", "fields"]),
    pos=st.floats(0, 1),
    junk=st.binary(min_size=1, max_size=40),
)
def test_damaged_stores_read_or_fail_clearly_and_report_what_they_drop(
    pristine: Path,
    pristine_read: dict[str, Any],
    tmp_path: Path,
    which: str,
    how: str,
    pos: float,
    junk: bytes,
) -> None:
    # A fresh path per example: the reader warns once per file, and each example must see its warning.
    store = tmp_path / f"s{next(_examples)}"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    target = (run_dir / which).resolve()
    data = target.read_bytes()
    cut = int(len(data) * pos)
    one_entry = False  # the damage is to one entry of a row
    if how == "truncate":
        target.write_bytes(data[:cut])
    elif how == "garbage":
        target.write_bytes(data[:cut] + junk + data[cut:])
    elif how == "flip" and data:
        i = min(cut, len(data) - 1)
        target.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif how == "delete":
        target.unlink()
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "wrongtype":
        target.write_bytes(
            b'[1, "two", null]\n' if target.suffix != ".jsonl" else b'{"name": 1, "step": "x"}\n[]\n'
        )
    elif how == "fields" and target.suffix == ".jsonl":
        damaged, one_entry = damage_a_field(data, cut)
        target.write_bytes(damaged)
    elif how == "fields" and target.suffix == ".json":
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = {}
        wrong = [5, "x", None, [1], {"a": 1}, -1.5, True]
        obj = {k: wrong[(i + cut) % len(wrong)] for i, k in enumerate(obj)}
        target.write_bytes(orjson.dumps(obj))
    elif how == "future":
        if target.suffix == ".json":
            target.write_bytes(orjson.dumps({"schema": 99, "status": "completed"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got, skipped = read_everything(store)
        except amltrack.AmltrackError as e:
            assert str(e) and "\n" not in str(e)  # one clear sentence
            return
    for w in caught:
        assert issubclass(w.category, UserWarning) and "\n" not in str(w.message), w
    missing = lost(pristine_read, got)
    if missing and not cuts_whole_lines(which, how, data, cut):
        assert caught or skipped, f"{how} {which} at {cut}: lost {missing} without a warning or a skip count"
    if which == "cache/columns.bin":  # derived data: damage to it costs nothing and changes nothing
        assert got == pristine_read and not skipped and not caught, f"{how} {which} at {cut}"
    for rid, (_, _, points) in got.items():
        if not one_entry:
            torn = rows_in_part(pristine_read[rid][2], points)
            assert not torn, f"{how} {which} at {cut}: rows read back in part (time, points): {torn}"
    shutil.rmtree(store)


def test_a_run_folder_without_run_json_is_reported_unless_it_is_being_created(
    pristine: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    (run_dir / "run.json").unlink()
    being_created = store / "runs" / "20200101T000000000-0000000000000000"
    being_created.mkdir()
    (being_created / ".run.json.x1y2z3.tmp").write_bytes(b"{")
    with pytest.warns(UserWarning, match=f"skipped run {run_dir.name}: .* no run.json; restore") as caught:
        assert amltrack.Store(store).runs() == []
    assert len(caught) == 1  # the folder being created is no damage


def test_manifest_skips_are_counted(pristine: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    with open(run_dir / "artifacts.jsonl", "ab") as f:
        f.write(b'not json\n{"path": 5, "status": "stored"}\n{"path": "x"}\n{"pa')
    run = amltrack.Store(store).run(run_dir.name)
    with pytest.warns(UserWarning, match="skipped"):
        assert [a["path"] for a in run.artifacts()] == ["a/b.txt"]
    assert run.skipped == 4


def test_skips_are_counted(pristine: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    with open(run_dir / "metrics.jsonl", "ab") as f:
        f.write(b'not json\n{"name":"loss","step":-1,"value":1,"ts":1,"seq":1}\n{"torn')
    run = amltrack.Store(store).run(run_dir.name)
    with pytest.warns(UserWarning, match="skipped"):
        run.metrics()
    assert run.skipped == 3


def test_a_future_run_schema_is_a_clear_error(pristine: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(pristine, store)
    (run_dir,) = (store / "runs").iterdir()
    info = orjson.loads((run_dir / "run.json").read_bytes())
    info["schema"] = fmt.SCHEMA_VERSION + 1
    (run_dir / "run.json").write_bytes(orjson.dumps(info))
    with pytest.raises(amltrack.StoreError, match="upgrade amltrack"):
        _ = amltrack.Store(store).run(run_dir.name).info


def test_a_row_whose_values_is_not_an_object_is_counted(pristine: Path, tmp_path: Path) -> None:
    """A record with a wrong-typed field is skipped and counted (docs/reliability.md)."""
    for wrong in ([1], 5, "x", None):
        store = tmp_path / f"s{next(_examples)}"
        shutil.copytree(pristine, store)
        (run_dir,) = (store / "runs").iterdir()
        metrics = run_dir / "metrics.jsonl"
        lines = metrics.read_bytes().splitlines()
        i = next(i for i, line in enumerate(lines) if b'"values":' in line)
        lines[i] = orjson.dumps({**orjson.loads(lines[i]), "values": wrong})
        metrics.write_bytes(b"\n".join(lines) + b"\n")
        run = amltrack.Store(store).run(run_dir.name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = run.metrics()
        assert len(got["alpha"]) == 29
        assert run.skipped and caught, f"values {wrong!r}: a row lost without a skip count or a warning"
