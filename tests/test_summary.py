"""``_summary``: a fold of metrics.jsonl gives what a whole read gives, piece by piece and across saves."""

from __future__ import annotations

import math
import random
from pathlib import Path

import orjson
import pytest

import amltrack
from amltrack import _summary
from amltrack._summary import CHUNKS, Fold, decode_overview, describe, encode_overview


def log_mixed(store: Path, n: int, seed: int) -> Path:
    """A run of numbers, NaN and infinities, bools, strings and lists, through the real logger."""
    rnd = random.Random(seed)
    lg = amltrack.get_logger("fold", store=store, outputs=None)
    for i in range(n):
        lg.log("loss", rnd.random() * 10 - i / 10)
        if i % 7 == 0:
            lg.log("odd", rnd.choice([math.nan, math.inf, -math.inf, 3, 2.5, -1]))
        if i % 11 == 0:
            lg.log("flag", rnd.random() < 0.5)
        if i % 13 == 0:
            lg.log("phase", rnd.choice(["warmup", "NaN", "train"]))
        if i % 17 == 0:
            lg.log("hist", [rnd.random(), math.nan, rnd.randint(-5, 5)])
        if i % 19 == 0:
            lg.log_metrics({"a": rnd.random(), "b": i}, step=i)
    lg.finish()
    return store / "runs" / lg.run_id


def fold_in_pieces(data: bytes, rnd: random.Random, save: bool) -> Fold:
    """Feed ``data`` at random whole-line cuts, through a save and a load between pieces if ``save``."""
    fold = Fold()
    cuts = sorted(rnd.sample([i + 1 for i, b in enumerate(data) if b == 10], k=min(8, data.count(b"\n"))))
    start = 0
    for cut in [*cuts, len(data)]:
        if cut > start:
            fold.feed(data[start:cut], "metrics.jsonl")
            start = cut
            if save:
                fold = Fold.from_json(orjson.loads(orjson.dumps(fold.to_json())))
                assert fold is not None
    return fold


@pytest.mark.parametrize("save", [False, True])
def test_a_fold_in_pieces_equals_the_whole_read(tmp_path: Path, save: bool) -> None:
    run_dir = log_mixed(tmp_path / "store", 600, seed=3)
    run = amltrack.Store(tmp_path / "store").run("last")
    whole = run._overview()
    assert set(whole) == {"loss", "odd", "flag", "phase", "hist", "a", "b"}
    fold = fold_in_pieces((run_dir / "metrics.jsonl").read_bytes(), random.Random(5), save)
    assert fold.end == (run_dir / "metrics.jsonl").stat().st_size
    # NaN == NaN is false: compare through the JSON form, which writes NaN as the metrics files do.
    assert encode_overview(fold.describe()) == encode_overview(whole)
    assert whole["odd"]["min"] == -math.inf and whole["hist"]["kind"] == "list"


def test_the_json_form_keeps_nonfinite_values_and_strings_that_look_like_them() -> None:
    overview = {
        "odd": {
            "kind": "number",
            "count": 3,
            "last": math.nan,
            "min": -math.inf,
            "max": math.inf,
            "points": [1],
        },
        "phase": {"kind": "string", "count": 1, "last": "NaN", "min": None, "max": None, "points": []},
    }
    wire = orjson.loads(orjson.dumps(encode_overview(overview)))
    assert wire["odd"]["nonfinite"] == ["last", "min", "max"] and "nonfinite" not in wire["phase"]
    back = decode_overview(wire)
    assert math.isnan(back["odd"]["last"]) and back["odd"]["min"] == -math.inf
    assert back["phase"]["last"] == "NaN"


def test_a_long_series_keeps_exact_figures_and_points_close_to_the_bucket_means() -> None:
    rnd = random.Random(7)
    n = CHUNKS * 5 + 123
    values = [math.sin(i / 900) * 10 + rnd.random() for i in range(n)]
    lines = b"".join(
        orjson.dumps({"name": "x", "step": i, "value": v, "ts": 1.0 + i}) + b"\n"
        for i, v in enumerate(values)
    )
    fold = fold_in_pieces(lines, rnd, save=True)
    got = fold.describe()["x"]
    exact = describe(amltrack.Metric("x", list(range(n)), values, [1.0 + i for i in range(n)]))
    assert fold.series["x"].size > 1  # the sums were halved: this is the inexact case
    assert {k: got[k] for k in ("count", "last", "min", "max")} == {
        k: exact[k] for k in ("count", "last", "min", "max")
    }
    assert len(got["points"]) == len(exact["points"]) == _summary.POINTS
    span = exact["max"] - exact["min"]
    assert max(abs(a - b) for a, b in zip(got["points"], exact["points"])) < span / 50


def test_several_writers_take_the_latest_value_by_time() -> None:
    lines = b"".join(
        orjson.dumps({"name": "x", "step": s, "value": v, "ts": ts, "w": w, "seq": s}) + b"\n"
        for w, s, v, ts in [("a", 1, 1.0, 10.0), ("b", 1, 2.0, 30.0), ("a", 2, 3.0, 20.0)]
    )
    fold = Fold()
    fold.feed(lines[: lines.index(b"\n") + 1], "m")
    fold.feed(lines[lines.index(b"\n") + 1 :], "m")
    assert fold.describe()["x"]["last"] == 2.0


@pytest.mark.parametrize("saved", [None, {"version": 99}, {"version": 1, "end": "x"}, [], {"version": 1}])
def test_a_damaged_or_foreign_saved_fold_is_started_over(saved: object) -> None:
    assert Fold.from_json(saved) is None
