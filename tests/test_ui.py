"""The web UI without a browser: downsampling, the series cache, the JSON API, auth, and the command.

tests/test_ui_browser.py drives the same pages in a real browser.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amltrack
from amltrack import _format as fmt
from amltrack import _records

pytest.importorskip("starlette", reason="the UI needs the ui extra: pip install 'amltrack[ui]'")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from amltrack.ui import _cache, _series, create_app, token_auth  # noqa: E402
from amltrack.ui._static import plotly_path  # noqa: E402

from .conftest import child_env, wait_until  # noqa: E402
from .test_records import VALUES  # noqa: E402  the values the grammar accepts, one strategy

ROOT = Path(__file__).resolve().parent.parent
XSS = "<script>alert(1)</script>"
HTML_NAME = "<img src=x onerror=alert(1)>.html"


# ---------------------------------------------------------------------------- downsampling


def test_a_short_series_is_returned_whole() -> None:
    x = np.arange(50)
    y = np.sin(x)
    xs, ys = _series.downsample(x, y, 100)
    assert xs.tolist() == x.tolist() and ys.tolist() == y.tolist()


def test_downsampling_keeps_every_bucket_s_spike() -> None:
    n = 1_000_000
    x = np.arange(n, dtype=np.int64)
    y = np.zeros(n)
    spikes = [3, 123_457, 500_001, 999_998]
    y[spikes] = [5.0, -7.0, 9.0, 4.0]
    xs, ys = _series.downsample(x, y, 800)
    assert len(xs) <= 2 * 800 + 2
    assert set(spikes) <= set(xs.tolist())
    assert ys.max() == 9.0 and ys.min() == -7.0
    assert xs[0] == 0 and xs[-1] == n - 1
    assert np.all(np.diff(xs) > 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=400),
    st.integers(min_value=1, max_value=60),
)
def test_downsampling_keeps_the_extremes_in_order(values: list[float], width: int) -> None:
    y = np.array(values, dtype=np.float64)
    x = np.arange(len(y)) * 3
    xs, ys = _series.downsample(x, y, width)
    finite = np.isfinite(y)
    assert np.all(np.isfinite(ys))
    assert len(xs) <= 2 * _series.clamp_width(width) + 4
    assert np.all(np.diff(xs) > 0), "points stay in order, each once"
    assert np.array_equal(y[xs // 3], ys), "every point shown is a logged point"
    if finite.any():
        assert ys.min() == y[finite].min() and ys.max() == y[finite].max()
    else:
        assert len(xs) == 0


def test_window_cuts_to_a_step_range_with_one_neighbour_each_side() -> None:
    steps = np.arange(0, 100, 2)
    w = _series.window(steps, 10, 20, ordered=True)
    assert steps[w].tolist() == [8, 10, 12, 14, 16, 18, 20, 22]
    unordered = np.array([5, 1, 9, 3, 7])
    idx = _series.window(unordered, 3, 5, ordered=False)
    assert unordered[idx].tolist() == [5, 3, 7]  # steps 5 and 3, and the neighbour after 3
    assert _series.window(steps, None, None, ordered=True) == slice(0, len(steps))


# ---------------------------------------------------------------------------- the series cache


def log_mixed(store: Path) -> amltrack.Logger:
    logger = amltrack.get_logger("ui", store=store, outputs=None)
    for i in range(300):
        logger.log("loss", 1.0 / (i + 1))
        if i % 3 == 0:
            logger.log("acc", i / 300, step=i)
    logger.log("flag", True)
    logger.log("flag", False)
    logger.log("odd", float("nan"))
    logger.log("odd", 2.5)
    logger.log("odd", float("-inf"))
    logger.log("note", "NaN")
    logger.log("note", "hello")
    logger.log("hist", [1, 2.5, 3])
    logger.log("hist", [float("nan"), 1])
    logger.log("mixed", 1.0)
    logger.log("mixed", "one")
    logger.log("mixed", [1])
    logger.log(XSS, 1)
    return logger


def assert_cache_matches_reader(run_dir: Path) -> None:
    cache = _cache.SeriesCache(run_dir)
    assert cache.update().done
    run = amltrack.Store(run_dir.parent.parent).run(run_dir.name)
    expected = run.metrics()
    idx = cache.index()
    assert set(idx["metrics"]) == set(expected)
    for name, metric in expected.items():
        nums = [(s, v, t) for s, v, t in metric if type(v) in (int, float, bool)]
        strs = [(s, v, t) for s, v, t in metric if type(v) is str]
        lists = [(s, v, t) for s, v, t in metric if type(v) is list]
        got = cache.numbers(name)
        if nums:
            assert got is not None
            assert got.steps.tolist() == [p[0] for p in nums]
            assert np.array_equal(got.values, np.array([float(p[1]) for p in nums]), equal_nan=True)
            assert got.timestamps.tolist() == [float(p[2]) for p in nums]
        else:
            assert got is None
        assert [(s, v) for s, v, _ in cache.records(name, "str", 0, None)] == [(s, v) for s, v, _ in strs]
        got_lists = cache.records(name, "list", 0, None)
        assert len(got_lists) == len(lists)
        for (s1, v1, _), (s2, v2, _) in zip(got_lists, lists):
            assert s1 == s2 and np.array_equal(np.array(v1, float), np.array(v2, float), equal_nan=True)


def test_the_cache_holds_what_the_reader_reads(store: Path) -> None:
    logger = log_mixed(store)
    logger.finish()
    assert_cache_matches_reader(logger.run_dir)
    cache = _cache.SeriesCache(logger.run_dir)
    m = cache.index()["metrics"]
    assert (m["flag"]["numbers"], m["flag"]["bools"]) == (2, 2)
    assert (m["odd"]["numbers"], m["odd"]["nonfinite"]) == (3, 2)
    assert (m["mixed"]["numbers"], m["mixed"]["strings"], m["mixed"]["lists"]) == (1, 1, 1)
    assert (logger.run_dir / "cache" / "ui" / "index.json").is_file()


def spy_on_sources(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """Bytes parsed from JSON per chunk, and records taken from the writer's index per step."""
    parsed: list[int] = []
    indexed: list[int] = []
    parse, from_blocks = _cache.parse_chunk, _cache._parts_from_blocks
    monkeypatch.setattr(
        _cache, "parse_chunk", lambda data, base: (parsed.append(len(data)), parse(data, base))[1]
    )
    monkeypatch.setattr(
        _cache,
        "_parts_from_blocks",
        lambda names, blocks: (indexed.append(sum(b.n for b in blocks)), from_blocks(names, blocks))[1],
    )
    return parsed, indexed


@pytest.mark.parametrize("with_index", [True, False])
def test_the_cache_reads_only_new_bytes(
    store: Path, monkeypatch: pytest.MonkeyPatch, with_index: bool
) -> None:
    logger = amltrack.get_logger("ui", store=store, outputs=None)
    if not with_index:
        logger._writer._columns.stop()  # as for a synced run: only the JSON Lines
    for i in range(100):
        logger.log("loss", float(i))
    logger.log("loss", 100.0).wait()
    cache = _cache.SeriesCache(logger.run_dir)
    parsed, indexed = spy_on_sources(monkeypatch)
    cache.update()
    assert (indexed, parsed) == (([101], []) if with_index else ([], [parsed[0]]))
    parsed.clear(), indexed.clear()
    assert cache.update().done and parsed == [] and indexed == []
    logger.log("loss", 101.0).wait()
    cache.update()
    line = (logger.run_dir / fmt.METRICS_FILE).read_bytes().splitlines(keepends=True)[-1]
    assert (indexed, parsed) == (([1], []) if with_index else ([], [len(line)]))
    assert cache.numbers("loss").values.tolist() == [float(i) for i in range(102)]
    logger.finish()


def test_the_cache_takes_numbers_from_the_writers_index_and_strings_from_the_json(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = amltrack.get_logger("ui", store=store, outputs=None)
    for i in range(500):
        logger.log("loss", 1.0 / (i + 1))
        logger.log("epoch", i // 100)
        logger.log("flag", i % 2 == 0)
    logger.log("odd", float("nan"))
    logger.log("odd", float("inf"))
    logger.flush()
    logger.log("note", "a string: this batch is parsed from the JSON Lines")
    logger.log("loss", 7.0)
    logger.flush()
    logger.log("loss", 8.0)
    logger.finish()
    parsed, indexed = spy_on_sources(monkeypatch)
    assert_cache_matches_reader(logger.run_dir)
    assert indexed == [1502, 1] and len(parsed) == 1  # before, at and after the string's batch
    m = _cache.SeriesCache(logger.run_dir).index()["metrics"]
    assert (m["flag"]["numbers"], m["flag"]["bools"]) == (500, 500)
    assert (m["odd"]["numbers"], m["odd"]["nonfinite"]) == (2, 2)
    # ids in first-appearance order, as from JSON
    assert sorted(m, key=lambda n: m[n]["id"]) == ["loss", "epoch", "flag", "odd", "note"]


def test_the_chart_cache_ignores_an_index_that_does_not_match(store: Path) -> None:
    logger = log_mixed(store)
    logger.finish()
    metrics = logger.run_dir / fmt.METRICS_FILE
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:-1]) + lines[-1].replace(b'"step":', b'"step":1', 1))
    assert_cache_matches_reader(logger.run_dir)


def test_a_line_being_written_waits_for_its_newline(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    full = b'{"name":"a","step":0,"value":1.5,"ts":1.0,"seq":1}\n'
    half = b'{"name":"a","step":1,"value":2.5,'
    (run_dir / fmt.METRICS_FILE).write_bytes(full + half)
    cache = _cache.SeriesCache(run_dir)
    p = cache.update()
    assert p.done and p.offset == len(full)
    with open(run_dir / fmt.METRICS_FILE, "ab") as f:
        f.write(b'"ts":2.0,"seq":2}\n')
    cache.update()
    assert cache.numbers("a").values.tolist() == [1.5, 2.5]


def test_a_replaced_metrics_file_starts_a_new_generation(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / fmt.METRICS_FILE
    path.write_bytes(b'{"name":"a","step":0,"value":1,"ts":1.0,"seq":1}\n' * 3)
    cache = _cache.SeriesCache(run_dir)
    cache.update()
    gen = cache.index()["gen"]
    path.write_bytes(b'{"name":"b","step":0,"value":7,"ts":1.0,"seq":1}\n' * 5)  # longer, other head
    cache.update()
    idx = cache.index()
    assert idx["gen"] != gen and set(idx["metrics"]) == {"b"}
    assert not (cache.dir / gen).exists()
    path.write_bytes(b'{"name":"c","step":0,"value":7,"ts":1.0,"seq":1}\n')  # shorter
    cache.update()
    assert set(cache.index()["metrics"]) == {"c"}


def test_bytes_a_crashed_update_left_behind_are_cut(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / fmt.METRICS_FILE
    path.write_bytes(b'{"name":"a","step":0,"value":1,"ts":1.0,"seq":1}\n')
    cache = _cache.SeriesCache(run_dir)
    cache.update()
    column = cache.dir / cache.index()["gen"] / "0.value"
    with open(column, "ab") as f:
        f.write(b"\xff" * 13)  # appended, then the index was never replaced
    with open(path, "ab") as f:
        f.write(b'{"name":"a","step":1,"value":2,"ts":1.0,"seq":2}\n')
    cache.update()
    assert cache.numbers("a").values.tolist() == [1.0, 2.0]
    assert column.stat().st_size == 16


def test_a_deleted_cache_is_built_again(store: Path) -> None:
    logger = amltrack.get_logger("ui", store=store, outputs=None)
    logger.log("loss", 1.0).wait()
    cache = _cache.SeriesCache(logger.run_dir)
    cache.update()
    shutil.rmtree(logger.run_dir / "cache")
    logger.log("loss", 2.0).wait()
    cache.update()
    assert cache.numbers("loss").values.tolist() == [1.0, 2.0]
    logger.finish()
    shutil.rmtree(logger.run_dir)
    assert cache.update().done and not logger.run_dir.exists(), "a deleted run is not made again"


def test_a_deadline_returns_progress_and_the_next_update_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    line = b'{"name":"a","step":%d,"value":%d,"ts":1.0,"seq":1}\n'
    (run_dir / fmt.METRICS_FILE).write_bytes(b"".join(line % (i, i) for i in range(2000)))
    monkeypatch.setattr(_cache, "CHUNK", 4096)
    cache = _cache.SeriesCache(run_dir)
    p = cache.update(deadline=0.0)
    assert not p.done and 0 < p.offset < p.size
    while not cache.update(deadline=0.0).done:
        pass
    assert cache.numbers("a").steps.tolist() == list(range(2000))


def test_a_run_directory_the_ui_cannot_write_is_cached_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / fmt.METRICS_FILE).write_bytes(b'{"name":"a","step":0,"value":1,"ts":1.0,"seq":1}\n')
    (run_dir / "cache").write_bytes(b"")  # mkdir under it fails, as in a read-only directory
    private = tmp_path / "private"
    monkeypatch.setattr(_cache, "_fallback_dir", lambda d: private / "key")
    cache = _cache.SeriesCache(run_dir)
    cache.update()
    assert cache.numbers("a").values.tolist() == [1.0]
    assert (private / "key" / "index.json").is_file()
    assert private.stat().st_mode & 0o077 == 0


def test_joined_processes_are_merged_by_time(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recs = [
        {"name": "x", "step": 0, "value": 0, "ts": 1.0, "seq": 1},
        {"name": "x", "step": 10, "value": 10, "ts": 3.0, "seq": 2},
        {"name": "x", "step": 5, "value": 5, "ts": 2.0, "seq": 1, "w": "b"},
    ]
    (run_dir / fmt.METRICS_FILE).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    cache = _cache.SeriesCache(run_dir)
    cache.update()
    nums = cache.numbers("x")
    assert nums.steps.tolist() == [0, 5, 10] and nums.ordered


NAMES = st.sampled_from(["loss", "acc", "a,b", 'q"uote', "x:y", "},{", "ünï", XSS])
RECORD = st.tuples(NAMES, st.integers(min_value=0, max_value=2**63 - 1), VALUES, st.floats(0, 2e9))


def grow_and_compare(
    tmp_path_factory: pytest.TempPathFactory, records: list, cuts: list[int], chunk: int
) -> None:
    """Write ``records`` (point tuples and row tuples) as a metrics file that grows to each cut, maybe
    mid-line, updating the cache at each; then the cache must hold what the reader reads."""
    run_dir = tmp_path_factory.mktemp("store") / "runs" / "20260101T000000000-0000000000000000"
    run_dir.mkdir(parents=True)
    fmt.write_json_atomic(run_dir / fmt.RUN_FILE, {"schema": 1, "id": run_dir.name, "status": "completed"})
    data = b""
    for seq, r in enumerate(records, 1):
        if len(r) == 3:  # a row
            values, step, ts = r
            enc = {k: _records.encode_value(v) for k, v in values.items()}
            rec = {"step": step, "values": {k: e for k, (e, _) in enc.items()}, "ts": ts, "seq": seq}
            if any(nf for _, nf in enc.values()):
                rec["nonfinite"] = True
        else:
            name, step, value, ts = r
            e, nonfinite = _records.encode_value(value)
            rec = {"name": name, "step": step, "value": e, "ts": ts, "seq": seq}
            if nonfinite:
                rec["nonfinite"] = True
        data += orjson.dumps(rec) + b"\n"
    if records:
        data = data.replace(b"\n", b"\n\n", 1) + b"garbage\n"
    old = _cache.CHUNK
    _cache.CHUNK = chunk
    try:
        cache = _cache.SeriesCache(run_dir)
        path = run_dir / fmt.METRICS_FILE
        path.write_bytes(b"")
        for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
            with open(path, "r+b") as f:
                f.seek(0, 2)
                f.write(data[f.tell() : cut])
            cache.update()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert_cache_matches_reader(run_dir)
    finally:
        _cache.CHUNK = old


# The records themselves are decoded by one grammar (tests/test_records.py: the store's reader and
# the cache's decoder agree on any file in any pieces); the cache's own growth is tested with rows
# below (test_any_file_with_rows_read_in_any_pieces_caches_as_the_reader_reads_it).


# ---------------------------------------------------------------------------- the API


@pytest.fixture
def ui_store(store: Path) -> dict:
    """Two finished runs (one with every kind of metric and artifact) and a promoted asset."""
    logger = log_mixed(store)
    logger.upload("notes/config.txt", "lr=0.1")
    logger.upload("model/weights.bin", bytes(range(256)))
    logger.upload(f"odd/{HTML_NAME}", "<script>alert(1)</script>")
    logger.finish()
    outside = store.parent / "secret.txt"
    outside.write_text("secret")
    (logger.run_dir / "artifacts" / "notes" / "link.txt").symlink_to(outside)
    with open(logger.run_dir / fmt.MANIFEST_FILE, "ab") as f:
        f.write(
            orjson.dumps(
                {
                    "path": "notes/link.txt",
                    "size": 6,
                    "sha256": None,
                    "source": "upload",
                    "status": "stored",
                    "time": "2026-01-01T00:00:00.000000Z",
                }
            )
            + b"\n"
        )
        f.write(
            orjson.dumps(
                {
                    "path": "big.bin",
                    "size": 2**30,
                    "sha256": None,
                    "source": "outputs",
                    "status": "rejected",
                    "reason": "1 GiB is over the 512 MiB limit",
                    "time": "2026-01-01T00:00:00.000000Z",
                }
            )
            + b"\n"
        )
    with amltrack.start_run("other", store=store, outputs=None, name="second") as other:
        other.log("loss", 0.5)
    from amltrack import _assets

    _assets.promote(amltrack.Store(store).run(logger.run_id), "model", "mnist-cnn")
    return {"store": store, "run": logger.run_id, "other": other.run_id}


class ThreadServer:
    """An app served by uvicorn on 127.0.0.1 from a thread of the test process, stopped and joined."""

    def __init__(self, app: object) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="ui-test-server"
        )
        self.thread.start()
        wait_until(lambda: self.server.started, 60, "the test server to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()
        assert not self.thread.is_alive(), "the test server did not stop"


@pytest.fixture
def serve() -> Iterator[Callable[..., httpx.Client]]:
    """serve(app) -> an httpx client of a real server of ``app``; every server stops after the test."""
    servers: list[ThreadServer] = []
    clients: list[httpx.Client] = []

    def start(app: object, **kwargs: object) -> httpx.Client:
        servers.append(ThreadServer(app))
        clients.append(httpx.Client(base_url=servers[-1].url, timeout=30, **kwargs))
        return clients[-1]

    yield start
    for c in clients:
        c.close()
    for s in servers:
        s.stop()


@pytest.fixture
def client(ui_store: dict, serve: Callable[..., httpx.Client]) -> httpx.Client:
    return serve(create_app(ui_store["store"]))


def test_runs_lists_every_run_with_its_status(client: httpx.Client, ui_store: dict) -> None:
    r = client.get("/api/runs")
    assert r.status_code == 200
    runs = r.json()["runs"]
    assert [x["id"] for x in runs] == [ui_store["other"], ui_store["run"]]
    assert runs[0]["name"] == "second" and runs[1]["status"] == "completed"
    assert r.json()["experiments"] == ["other", "ui"]
    assert client.get("/api/runs", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    only = client.get("/api/runs", params={"experiment": "other"}).json()["runs"]
    assert [x["id"] for x in only] == [ui_store["other"]]
    assert client.get("/api/runs", params={"status": "crashed"}).json()["runs"] == []
    assert client.get("/api/runs", params={"status": "bogus"}).json()["error"]["code"] == "invalid_request"


def test_a_run_has_its_metadata_and_artifacts(client: httpx.Client, ui_store: dict) -> None:
    body = client.get("/api/runs/last").json()
    assert body["run"]["id"] == ui_store["other"]
    body = client.get(f"/api/runs/{ui_store['run'].split('-')[1][:6]}").json()
    assert body["run"]["status"] == "completed" and body["run"]["experiment"] == "ui"
    paths = {a["path"]: a for a in body["artifacts"]}
    assert paths["big.bin"]["status"] == "rejected" and "512 MiB" in paths["big.bin"]["reason"]
    assert paths["notes/config.txt"]["size"] == 6
    missing = client.get("/api/runs/nosuchrun")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"


def test_metrics_lists_every_metric_by_kind(client: httpx.Client, ui_store: dict) -> None:
    body = client.get(f"/api/runs/{ui_store['run']}/metrics").json()
    by = {m["name"]: m for m in body["metrics"]}
    assert [m["name"] for m in body["metrics"]][:2] == ["loss", "acc"]  # the order they were first logged
    assert by["loss"]["numbers"] == 300 and by["hist"]["lists"] == 2 and by["note"]["strings"] == 2
    assert by[XSS]["numbers"] == 1
    assert body["building"] is None


def test_series_downsamples_to_the_width_and_zooms(client: httpx.Client, ui_store: dict) -> None:
    url = f"/api/runs/{ui_store['run']}/series"
    full = client.get(url, params={"name": "loss", "width": 1000}).json()
    assert full["count"] == 300 and full["downsampled"] is False and full["x"] == list(range(300))
    small = client.get(url, params={"name": "loss", "width": 20}).json()
    assert small["downsampled"] is True and len(small["x"]) <= 42
    assert small["y"][0] == 1.0 and min(small["y"]) == 1 / 300
    zoom = client.get(url, params={"name": "loss", "width": 1000, "x0": 100, "x1": 110}).json()
    assert zoom["x"] == list(range(99, 112)) and zoom["in_range"] == 13
    odd = client.get(url, params={"name": "odd"}).json()
    assert odd["x"] == [1] and odd["y"] == [2.5] and odd["nonfinite"] == 2
    flag = client.get(url, params={"name": "flag"}).json()
    assert flag["bools"] is True and flag["y"] == [1.0, 0.0]
    r = client.get(url, params={"name": "loss", "width": 1000})
    assert (
        client.get(
            url, params={"name": "loss", "width": 1000}, headers={"If-None-Match": r.headers["etag"]}
        ).status_code
        == 304
    )
    assert client.get(url, params={"name": "nope"}).status_code == 404
    assert (
        client.get(url, params={"name": "loss", "width": "wide"}).json()["error"]["code"] == "invalid_request"
    )
    assert client.get(url, params={"name": "loss", "x0": "nan"}).status_code == 400


def test_lists_and_strings(client: httpx.Client, ui_store: dict) -> None:
    base = f"/api/runs/{ui_store['run']}"
    last = client.get(f"{base}/lists", params={"name": "hist"}).json()
    assert (last["count"], last["index"], last["y"]) == (2, 1, [1.0])  # NaN is not drawn
    first = client.get(f"{base}/lists", params={"name": "hist", "index": 0}).json()
    assert first["y"] == [1, 2.5, 3] and first["step"] == 0
    assert client.get(f"{base}/lists", params={"name": "hist", "index": 5}).status_code == 400
    strings = {s["name"]: s for s in client.get(f"{base}/strings").json()["strings"]}
    assert [r["value"] for r in strings["note"]["rows"]] == ["NaN", "hello"]
    assert [r["value"] for r in strings["mixed"]["rows"]] == ["one"]
    assert (
        client.get(f"{base}/strings", params={"limit": 1}).json()["strings"][0]["rows"][0]["value"] == "hello"
    )


def test_poll_answers_what_changed(client: httpx.Client, store: Path) -> None:
    logger = amltrack.get_logger("live", store=store, outputs=None)
    logger.log("loss", 1.0).wait()
    url = f"/api/runs/{logger.run_id}/poll"
    first = client.get(url).json()
    assert first["changed"] and first["status"] == "running" and first["counts"]["loss"]["numbers"] == 1
    same = client.get(url, params={"cursor": first["cursor"]}).json()
    assert same == {**same, "changed": False, "cursor": first["cursor"], "status": "running"}
    logger.log("loss", 2.0).wait()
    grown = client.get(url, params={"cursor": first["cursor"]}).json()
    assert grown["changed"] and grown["counts"]["loss"]["numbers"] == 2
    logger.finish()
    done = client.get(url, params={"cursor": grown["cursor"]}).json()
    assert done["changed"] and done["status"] == "completed"


def test_artifacts_download_as_attachments(client: httpx.Client, ui_store: dict) -> None:
    base = f"/api/runs/{ui_store['run']}/artifacts"
    r = client.get(f"{base}/model/weights.bin")
    assert r.status_code == 200 and r.content == bytes(range(256))
    assert (
        r.headers["content-disposition"]
        == "attachment; filename=\"weights.bin\"; filename*=UTF-8''weights.bin"
    )
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"] == "application/octet-stream"
    assert "sandbox" in r.headers["content-security-policy"]
    html = client.get(f"{base}/odd/{HTML_NAME}")
    assert html.status_code == 200 and html.headers["content-type"] == "application/octet-stream"
    assert html.headers["content-disposition"].startswith("attachment;")
    assert (
        "filename*=UTF-8''%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.html"
        in html.headers["content-disposition"]
    )
    assert client.get(f"{base}/big.bin").json()["error"]["code"] == "artifact_not_found"
    assert client.get(f"{base}/notes/link.txt").status_code == 404, "a symlink out of the run is not followed"
    assert client.get(f"{base}/notes/nothing").status_code == 404
    bad = client.get(f"{base}/notes/%2e%2e/%2e%2e/run.json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_path"


def test_assets_and_their_files(client: httpx.Client, ui_store: dict) -> None:
    body = client.get("/api/assets").json()
    (asset,) = body["assets"]
    assert asset["name"] == "mnist-cnn" and [v["version"] for v in asset["versions"]] == [1]
    v = asset["versions"][0]
    assert v["source_run"] == ui_store["run"] and [f["path"] for f in v["files"]] == ["model/weights.bin"]
    r = client.get("/api/assets/mnist-cnn/1/files/model/weights.bin")
    assert r.content == bytes(range(256)) and r.headers["content-disposition"].startswith("attachment;")
    assert (
        client.get("/api/assets/mnist-cnn/2/files/model/weights.bin").json()["error"]["code"]
        == "asset_not_found"
    )
    assert client.get("/api/assets/mnist-cnn/1/files/notes/config.txt").status_code == 404


def test_pages_carry_no_user_data(client: httpx.Client, ui_store: dict) -> None:
    for url in ("/", f"/runs/{ui_store['run']}", "/compare?runs=x", "/assets"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert "<script>alert" not in r.text and "mnist-cnn" not in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert (
        'data-run="' + ui_store["run"] + '"' in client.get(f"/runs/{ui_store['run'].split('-')[1][:6]}").text
    )
    missing = client.get(
        "/runs/%3Cb%3Enope", headers={"Accept": "text/html"}
    )  # a browser: the error is a page
    assert missing.status_code == 404 and "&lt;b&gt;nope" in missing.text and "<b>nope" not in missing.text
    assert client.get("/api/nothing").json() == {"error": {"code": "not_found", "message": "no such URL"}}


@pytest.mark.skipif(plotly_path() is None, reason="plotly is not installed (the ui extra)")
def test_plotly_comes_from_the_installed_wheel(client: httpx.Client) -> None:
    r = client.get("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.content.startswith(b"/**\n* plotly.js v")
    assert r.content == plotly_path().read_bytes()
    assert "site-packages" in str(plotly_path()) or "dist-packages" in str(plotly_path())
    assert (
        client.get("/static/plotly.min.js", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    )
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not [p for p in tracked if "plotly" in p.lower() and p.endswith(".js")]
    assert not list((ROOT / "amltrack").rglob("plotly*.js"))
    assert client.get("/static/ui.js").text.startswith("// amltrack UI")
    page = client.get("/").text
    versioned = re.search(r'data-plotly="(/static/plotly\.min\.js\?v=\w+)"', page).group(1)
    assert "immutable" in client.get(versioned).headers["cache-control"]
    assert client.get("/static/plotly.min.js?v=old").headers["cache-control"] == "no-cache"
    assert client.get("/static/other.js").status_code == 404


def test_the_host_header_must_be_loopback_when_asked(
    ui_store: dict, serve: Callable[..., httpx.Client]
) -> None:
    c = serve(create_app(ui_store["store"], allowed_hosts=["127.0.0.1", "localhost", "::1"]))
    assert c.get("/api/runs").status_code == 200
    assert c.get("/api/runs", headers={"Host": "localhost:8766"}).status_code == 200
    assert c.get("/api/runs", headers={"Host": "[::1]:8766"}).status_code == 200
    r = c.get("/api/runs", headers={"Host": "attacker.example:8766"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
    assert r.headers["x-frame-options"] == "DENY", "the refusal has the security headers too"
    # The address the connection came in on is allowed too: an IP literal cannot be rebound.
    only = serve(create_app(ui_store["store"], allowed_hosts=["localhost"]))
    assert only.get("/api/runs").status_code == 200  # Host: 127.0.0.1:<port>, the server's own address
    assert only.get("/api/runs", headers={"Host": "127.0.0.2"}).status_code == 400


TOKEN = "read-token-0123456789"


def test_an_auth_hook_guards_everything_but_code_and_health(
    ui_store: dict, serve: Callable[..., httpx.Client]
) -> None:
    c = serve(create_app(ui_store["store"], auth=token_auth(lambda t: t == TOKEN)))
    assert c.get("/api/health").status_code == 200
    assert c.get("/static/ui.css").status_code == 200
    r = c.get("/api/runs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    page = c.get("/runs/last?x=1")
    assert page.status_code == 401 and 'name="token"' in page.text and 'value="/runs/last?x=1"' in page.text
    assert c.get(f"/api/runs/{ui_store['run']}/artifacts/notes/config.txt").status_code == 401
    assert c.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/api/runs", headers={"Authorization": "Bearer wrong-token-0123456"}).status_code == 401
    wrong = c.post("/login", data={"token": "nope", "next": "/"})
    assert wrong.status_code == 401 and "does not know" in wrong.text
    ok = c.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie
        and "SameSite=strict" in cookie.replace("Strict", "strict")
        and "Path=/" in cookie
    )
    assert c.get("/api/runs").status_code == 200  # the client kept the cookie


def test_the_ui_mounts_under_a_prefix(ui_store: dict, serve: Callable[..., httpx.Client]) -> None:
    ui = create_app(ui_store["store"], auth=token_auth(lambda t: t == TOKEN))
    c = serve(Starlette(routes=[Mount("/ui", app=ui)]))
    login = c.get("/ui/")
    assert login.status_code == 401 and 'action="/ui/login"' in login.text
    ok = c.post("/ui/login", data={"token": TOKEN, "next": "/ui/assets"})
    assert ok.headers["location"] == "/ui/assets" and "Path=/ui/" in ok.headers["set-cookie"]
    page = c.get("/ui/assets")
    assert 'src="/ui/static/ui.js?v=' in page.text and 'data-base="/ui"' in page.text
    assert c.get("/ui/api/runs").json()["runs"][0]["id"] == ui_store["other"]
    assert c.get(f"/ui/api/runs/{ui_store['run']}/artifacts/notes/config.txt").content == b"lr=0.1"


# ---------------------------------------------------------------------------- the command


def ui_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amltrack", "ui", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )


def test_the_command_refuses_other_addresses_unless_asked(store: Path) -> None:
    out = ui_cli("--store", str(store), "--host", "0.0.0.0", "--port", "0")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "refusing to listen on 0.0.0.0" in out.stderr and "--allow-remote" in out.stderr
    assert ui_cli("--port", "70000").returncode == 1
    help_text = ui_cli("--help").stdout
    assert "--allow-remote" in help_text and "example" in help_text


def test_the_command_serves_until_terminated(store: Path, tmp_path: Path) -> None:
    log = tmp_path / "ui.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amltrack", "ui", "--store", str(store), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=child_env(),
        )
    try:
        line = wait_until(lambda: re.search(r"http://127\.0\.0\.1:\d+/", log.read_text()), 60, "the UI's URL")
        url = line.group(0)
        health = httpx.get(url + "api/health", timeout=10).json()
        assert health["ui"] == 1 and health["store"] == str(store)
        assert httpx.get(url + "api/runs", timeout=10, headers={"Host": "evil.example"}).status_code == 400
    finally:
        proc.terminate()
        code = proc.wait(timeout=20)
    # uvicorn shuts down gracefully, then lets SIGTERM end the process as it would have.
    assert code == -signal.SIGTERM, log.read_text()
    assert "Traceback" not in log.read_text()


def test_the_benchmark_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ui.py"), "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    for key in ("points", "cold_open_s", "warm_open_s", "series_warm_ms", "cold_json_open_s"):
        assert figures[key] > 0, key
    assert math.isfinite(figures["warm_open_s"])


def test_docs_name_every_route(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "ui.md").read_text()
    app = create_app(tmp_path / "empty")
    for route in app.routes:
        path = re.sub(r"\{(\w+)(:path)?\}", r"{\1}", route.path)
        assert path in doc, f"docs/ui.md does not mention {path}"


def test_the_chart_cache_finds_the_index_again_after_parsing_json(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = amltrack.get_logger("ui", store=store, outputs=None)
    for b in range(3):
        for i in range(1000):
            logger.log("loss", float(b * 1000 + i))
        logger.flush()
    logger.finish()
    # The chart cache has read the first batch and half of the second from JSON, as a cache built
    # before the index could be read would have: it ends mid-batch.
    lines = (logger.run_dir / fmt.METRICS_FILE).read_bytes().splitlines(keepends=True)
    monkeypatch.setattr(_cache, "read_blocks", lambda *a, **k: None)
    cache = _cache.SeriesCache(logger.run_dir)
    monkeypatch.setattr(_cache, "CHUNK", sum(map(len, lines[:1500])))
    cache.update(deadline=0)
    assert cache.index()["offset"] == sum(map(len, lines[:1500]))
    monkeypatch.undo()
    parsed, indexed = spy_on_sources(monkeypatch)
    cache.update()
    assert len(parsed) == 1 and indexed == [1000]  # the rest of batch 2 from JSON, batch 3 indexed
    assert cache.numbers("loss").values.tolist() == [float(i) for i in range(3000)]


# ---------------------------------------------------------------------------- rows (log_metrics)


def log_with_rows(store: Path) -> amltrack.Logger:
    """log() points and rows, flushed so that the writer's index has raw blocks between normal ones."""
    logger = amltrack.get_logger("rows", store=store, outputs=None)
    for i in range(200):
        logger.log("loss", 1.0 / (i + 1))
    logger.flush()  # an index block
    for i in range(50):
        logger.log_metrics({"loss": 0.5 / (i + 1), "acc": i / 50, "epoch": i // 10, "best": i % 2 == 0})
    logger.log("note", "rows and strings in one batch")
    logger.log_metrics({"odd": float("nan"), "acc": 1.0})
    logger.log_metrics({"odd": float("inf"), "big": 2**62})
    logger.log_metrics({"odd": float("-inf"), "loss": 0.01}, step=1000)
    logger.flush()  # a raw block
    for _ in range(100):
        logger.log("loss", 0.001)
        logger.log("acc", 0.99)
    logger.flush()  # an index block
    logger.log_metrics({"only_rows": 3.5})
    logger.flush()
    logger.log_metrics({"only_rows": 4.5, "loss": 0.0}, step=5)  # a step that goes back: not sorted
    logger.flush()  # two raw blocks in a row
    logger.log("loss", 1.0)
    return logger


def block_sizes(run_dir: Path) -> list[tuple[int, int]]:
    """The writer's index blocks as (records, bytes of metrics.jsonl): records 0 for a raw block."""
    from amltrack._columns import read_blocks

    with open(run_dir / fmt.METRICS_FILE, "rb") as f:
        found = read_blocks(run_dir, f)
    return [(b.n, b.end - b.start) for b in found[1]] if found else []


def as_points(run_dir: Path, to: Path) -> Path:
    """A copy of the run whose metrics.jsonl has each row as the lines log() writes, and no index."""
    shutil.copytree(run_dir, to)
    shutil.rmtree(to / "cache")
    info = orjson.loads((to / fmt.RUN_FILE).read_bytes())
    fmt.write_json_atomic(to / fmt.RUN_FILE, {**info, "id": to.name})
    lines = (run_dir / fmt.METRICS_FILE).read_bytes().splitlines()
    points = _records.expand_rows([orjson.loads(line) for line in lines])
    (to / fmt.METRICS_FILE).write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in points))
    return to


def cache_contents(run_dir: Path) -> dict:
    """Everything the chart cache holds of a run, as plain values (NaN as a string, to compare)."""
    cache = _cache.SeriesCache(run_dir)
    assert cache.update().done
    idx = cache.index()
    out: dict = {"skipped": idx["skipped"], "records": idx["records"]}
    for name, m in idx["metrics"].items():
        nums = cache.numbers(name)
        out[name] = {
            **{
                k: m[k]
                for k in ("id", "numbers", "bools", "nonfinite", "strings", "lists", "sorted", "last_step")
            },
            "series": None
            if nums is None
            else [
                nums.steps.tolist(),
                [repr(v) for v in nums.values.tolist()],
                nums.timestamps.tolist(),
                nums.ordered,
                nums.all_finite,
                nums.all_bool,
            ],
            "str": cache.records(name, "str", 0, None),
            "list": cache.records(name, "list", 0, None),
        }
    return out


def test_rows_read_through_the_cache_as_the_reader_reads_them_and_as_points(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = log_with_rows(store)
    logger.finish()
    sizes = block_sizes(logger.run_dir)
    kinds = "".join("r" if n == 0 else "i" for n, _ in sizes)
    assert re.fullmatch(r"i+ri+rri+", kinds), sizes  # raw blocks between normal ones, two in a row
    parsed, indexed = spy_on_sources(monkeypatch)
    assert_cache_matches_reader(logger.run_dir)
    # Normal blocks from the index; each run of raw blocks parsed from its lines, in one piece.
    runs = [list(g) for _, g in itertools.groupby(sizes, key=lambda s: s[0] == 0)]
    assert indexed == [sum(n for n, _ in g) for g in runs if g[0][0]] == [200, 200, 1]
    assert parsed == [sum(size for _, size in g) for g in runs if not g[0][0]]
    got = cache_contents(logger.run_dir)
    assert got == cache_contents(
        as_points(logger.run_dir, store / "runs" / "20260101T000000000-0000000000000000")
    )
    assert (got["loss"]["numbers"], got["loss"]["sorted"], got["loss"]["last_step"]) == (353, False, 6)
    assert (got["best"]["numbers"], got["best"]["bools"]) == (50, 50)
    assert (got["odd"]["numbers"], got["odd"]["nonfinite"]) == (3, 3)
    assert got["only_rows"]["series"][:2] == [[0, 5], ["3.5", "4.5"]]
    assert got["skipped"] == 0 and got["records"] == 200 + 200 + 1 + 50 * 4 + 1 + 6 + 3


def test_the_api_answers_the_same_for_rows_as_for_points(
    store: Path, serve: Callable[..., httpx.Client]
) -> None:
    logger = log_with_rows(store)
    logger.finish()
    copy = as_points(logger.run_dir, store / "runs" / "20260101T000000000-0000000000000000")
    client = serve(create_app(store))
    answers = []
    for rid in (logger.run_id, copy.name):
        body = client.get(f"/api/runs/{rid}/metrics").json()
        assert body["building"] is None
        series = {
            m["name"]: client.get(f"/api/runs/{rid}/series", params={"name": m["name"], "width": 20}).json()
            for m in body["metrics"]
        }
        strings = client.get(f"/api/runs/{rid}/strings").json()
        answers.append((body["metrics"], body["skipped"], series, strings))
    assert answers[0] == answers[1]
    metrics, _, series, _ = answers[0]
    assert [m["name"] for m in metrics][:3] == ["loss", "acc", "epoch"]
    assert series["only_rows"]["x"] == [0, 5] and series["only_rows"]["y"] == [3.5, 4.5]
    assert series["odd"]["nonfinite"] == 3 and series["odd"]["x"] == []
    assert (
        series["loss"]["downsampled"] and min(series["loss"]["y"]) == 0.0 and max(series["loss"]["y"]) == 1.0
    )


def test_rows_between_index_blocks_are_read_in_slices_while_the_run_grows(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cache, "CHUNK", 200)  # smaller than a batch of rows: a raw block is parsed whole
    monkeypatch.setattr(_cache, "INDEX_STEP", 7)  # the index is read a few blocks at a time
    logger = amltrack.get_logger("rows", store=store, outputs=None)
    cache = _cache.SeriesCache(logger.run_dir)
    stopped = 0  # slices that ended with bytes left to read
    for b in range(12):
        if b % 3 == 0:
            for i in range(5):
                logger.log_metrics({"a": b + i / 10, "b": i % 2 == 1, "c": float("nan") if i == 3 else i})
        elif b % 3 == 1:
            for i in range(10):
                logger.log("a", float(b * 100 + i))
        else:
            logger.log_metrics({"c": b})
            logger.flush()
            logger.log("a", 0.5)
            logger.flush()
            logger.log_metrics({"a": b, "d": -b})
        logger.flush()
        for _ in range(2):  # a slice or two of work as the file grows: each may stop anywhere
            stopped += not cache.update(deadline=0).done
    logger.finish()
    assert 0 in [n for n, _ in block_sizes(logger.run_dir)][1:-1]
    while not cache.update(deadline=0).done:
        stopped += 1
    assert stopped >= 8  # at least after the first two of the three blocks of each third batch
    assert_cache_matches_reader(logger.run_dir)
    assert cache_contents(logger.run_dir) == cache_contents(
        as_points(logger.run_dir, store / "runs" / "20260101T000000000-0000000000000000")
    )


def test_a_cache_that_stopped_inside_rows_goes_on_from_the_index(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = log_with_rows(store)
    logger.finish()
    data = (logger.run_dir / fmt.METRICS_FILE).read_bytes()
    expected = cache_contents(logger.run_dir)
    shutil.rmtree(logger.run_dir / "cache" / "ui")
    ends = [i + 1 for i, c in enumerate(data) if c == ord("\n")]
    for cut in ends[195:260:7] + ends[-6:-1]:  # around and inside the raw blocks
        # A cache built before the index could be read (or by an older amltrack) ends at any line.
        with monkeypatch.context() as m:
            m.setattr(_cache, "read_blocks", lambda *a, **k: None)
            m.setattr(_cache, "CHUNK", cut)
            cache = _cache.SeriesCache(logger.run_dir)
            cache.update(deadline=0)
            assert cache.index()["offset"] == cut
        assert cache_contents(logger.run_dir) == expected, cut
        shutil.rmtree(logger.run_dir / "cache" / "ui")


def test_nonfinite_entries_of_rows_are_nonfinite_numbers(tmp_path: Path) -> None:
    run_dir = tmp_path / "store" / "runs" / "20260101T000000000-0000000000000000"
    run_dir.mkdir(parents=True)
    fmt.write_json_atomic(run_dir / fmt.RUN_FILE, {"schema": 1, "id": run_dir.name, "status": "completed"})
    (run_dir / fmt.METRICS_FILE).write_bytes(
        b'{"step":0,"values":{"a":"NaN","b":1.5,"c":"-Infinity"},"ts":1.0,"seq":1,"nonfinite":true}\n'
        b'{"step":1,"values":{"a":2.0,"c":"Infinity","d":true},"ts":2.0,"seq":2,"nonfinite":true}\n'
        b'{"name":"a","step":2,"value":"Infinity","ts":2.5,"seq":3,"nonfinite":true}\n'
        # Not flagged: a string (a row never holds one, but as the reader reads it).
        b'{"step":3,"values":{"a":3,"b":"NaN"},"ts":3.0,"seq":4}\n'
    )
    assert_cache_matches_reader(run_dir)
    got = cache_contents(run_dir)
    assert (got["a"]["numbers"], got["a"]["nonfinite"]) == (4, 2)
    assert got["a"]["series"][:2] == [[0, 1, 2, 3], ["nan", "2.0", "inf", "3.0"]]
    assert (got["b"]["numbers"], got["b"]["nonfinite"], got["b"]["str"]) == (1, 0, [(3, "NaN", 3.0)])
    assert (got["c"]["numbers"], got["c"]["nonfinite"], got["c"]["series"][1]) == (2, 2, ["-inf", "inf"])
    assert (got["d"]["numbers"], got["d"]["bools"], got["d"]["series"][4]) == (1, 1, True)


@pytest.mark.parametrize(
    "rows",
    [
        ['"a":1,"b":2.5', '"b":3,"a":4.5', '"a":-2,"b":-1'],  # the same metrics, in any order
        ['"a":1,"b":true', '"b":false,"a":4.5'],  # a metric of bools
        ['"a":1,"b":true', '"b":2,"a":4.5'],  # bools and numbers in one metric
        ['"a":1,"b":2.5', '"a":2,"c":7', '"c":3,"a":1'],  # others, as many
        ['"a":1,"b":2.5', '"a":2,"c":7', '"a":3'],  # others, fewer
        ['"a":1,"b":2.5', '"a":2,"b":"Infinity"'],  # a flagged row: checked one by one
        ['"a":1,"b":2.5', '"a":2,"b":[1]'],  # a list, which a row never holds: as the reader reads it
    ],
)
def test_rows_of_the_same_metrics_or_of_others_in_one_chunk(tmp_path: Path, rows: list[str]) -> None:
    run_dir = tmp_path / "store" / "runs" / "20260101T000000000-0000000000000001"
    run_dir.mkdir(parents=True)
    fmt.write_json_atomic(run_dir / fmt.RUN_FILE, {"schema": 1, "id": run_dir.name, "status": "completed"})
    (run_dir / fmt.METRICS_FILE).write_bytes(
        b"".join(
            b'{"step":%d,"values":{%s},"ts":%d.5,"seq":%d%s}\n'
            % (i, r.encode(), i, i + 1, b',"nonfinite":true' if "Infinity" in r else b"")
            for i, r in enumerate(rows)
        )
    )
    assert_cache_matches_reader(run_dir)
    got = cache_contents(run_dir)
    assert list(got)[2:4] == ["a", "b"]  # in the order of the first row's keys
    assert got["a"]["series"][0] == list(range(len(rows)))
    assert got == cache_contents(
        as_points(run_dir, tmp_path / "store" / "runs" / "20260101T000000000-0000000000000000")
    )


def test_a_damaged_row_is_skipped_and_counted_as_a_damaged_point_is(store: Path) -> None:
    logger = log_with_rows(store)
    logger.finish()
    path = logger.run_dir / fmt.METRICS_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith(b'{"step":') and b'"acc"' in line)
    point = next(i for i in range(row + 60, len(lines)) if lines[i].startswith(b'{"name":"loss"'))
    clean = cache_contents(logger.run_dir)
    import warnings

    for damaged in (row, point):
        # Same length: the index's CRC of its lines finds the edit, and the JSON from there is parsed.
        broken = lines[damaged].replace(b",", b";", 1)
        path.write_bytes(b"".join(lines[:damaged] + [broken] + lines[damaged + 1 :]))
        shutil.rmtree(logger.run_dir / "cache" / "ui")  # an edit in place, past the head the cache checks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reader warns about the line
            assert_cache_matches_reader(logger.run_dir)
            run = amltrack.Store(store).run(logger.run_id)
            run.metrics()
        got = cache_contents(logger.run_dir)
        assert got["skipped"] == run.skipped == 1
        assert got["records"] == clean["records"] - (4 if damaged == row else 1)
    # A field of the wrong type (a negative step): skipped as the reader skips it, counted as it counts.
    bad = lines[row].replace(b'{"step":', b'{"step":-', 1)
    path.write_bytes(b"".join(lines[:row] + [bad] + lines[row + 1 :]))
    shutil.rmtree(logger.run_dir / "cache" / "ui")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader warns about the record, once a process
        assert_cache_matches_reader(logger.run_dir)
        run = amltrack.Store(store).run(logger.run_id)
        run.metrics()
    got = cache_contents(logger.run_dir)
    assert got["skipped"] == run.skipped > 0 and got["records"] == clean["records"] - 4


ROW_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
)
ROW = st.tuples(
    st.dictionaries(NAMES, ROW_VALUES, min_size=1, max_size=4),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.floats(0, 2e9),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(st.one_of(RECORD, ROW), max_size=40),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=4),
    st.sampled_from([64, 256, 1 << 20]),
)
def test_any_file_with_rows_read_in_any_pieces_caches_as_the_reader_reads_it(
    tmp_path_factory: pytest.TempPathFactory, records: list, cuts: list[int], chunk: int
) -> None:
    grow_and_compare(tmp_path_factory, records, cuts, chunk)
