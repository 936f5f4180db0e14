"""The query language over a real store: Store.runs(filter=, order_by=), Store.runs_frame, the
runs index, the UI's /api/runs, and the same answers from the CLI and the server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

import amltrack
from amltrack import _format as fmt
from amltrack.sync import AmltrackRemote, sync
from amltrack.ui import create_app

from .sync_helpers import READ_TOKEN, WRITE_TOKEN, ServerProcess, cli
from .test_ui import ThreadServer

SWEEP = [  # lr, bs (argparse gives strings; a config file numbers), depth, team
    (0.1, "32", 2, "vision"),
    (0.01, 32, 4, "vision"),
    (0.001, 64, None, "nlp"),
    (0.1, "16", 8, None),
]


def make_sweep(store: Path) -> list[str]:
    """Four ended runs with params, tags and metrics, oldest first; the third logs a NaN too."""
    ids = []
    for i, (lr, bs, depth, team) in enumerate(SWEEP):
        params = {"lr": lr, "bs": bs}
        if depth is not None:
            params["model.depth"] = depth
        tags = {"team": team} if team else {}
        with amltrack.start_run(
            "sweep", name=f"run-{i}", params=params, tags=tags, store=store, outputs=None
        ) as lg:
            for step in range(5):
                lg.log_metrics({"loss": 1.0 / (step + 1 + i), "acc": 0.5 + 0.1 * i + 0.01 * step}, step=step)
            if i == 2:
                lg.log("val/loss", float("nan"))
            ids.append(lg.run_id)
    return ids


@pytest.fixture
def sweep(store: Path) -> list[str]:
    return make_sweep(store)


def names(runs: list[amltrack.Run]) -> list[str | None]:
    return [r.name for r in runs]


# The expressions every reader must agree on, and what they select (newest first unless sorted).
CASES: list[tuple[str | None, list[str], list[str]]] = [
    ("params.bs = 32", [], ["run-1", "run-0"]),
    ("params.bs >= 32 and params.lr < 0.05", [], ["run-2", "run-1"]),
    ('params."model.depth" in (2, 8)', [], ["run-3", "run-0"]),
    ("params.model.depth is null", [], ["run-2"]),
    ("tags.team = 'vision' or tags.team is null", [], ["run-3", "run-1", "run-0"]),
    ("metrics.acc.max > 0.7 and metrics.loss.min < 0.15", [], ["run-3", "run-2"]),
    ('metrics."val/loss" is not null', [], ["run-2"]),
    (
        "metrics.loss.count = 5 and status = 'completed'",
        ["-metrics.acc"],
        ["run-3", "run-2", "run-1", "run-0"],
    ),
    ("name ~ 'run-[01]'", ["params.lr"], ["run-1", "run-0"]),
    (None, ["params.lr desc", "params.bs"], ["run-3", "run-0", "run-1", "run-2"]),
    (None, ["params.model.depth"], ["run-0", "run-1", "run-3", "run-2"]),  # missing last
    (None, ["-params.model.depth"], ["run-3", "run-1", "run-0", "run-2"]),  # missing last either way
    ("params.nope = 1", [], []),
]


@pytest.mark.parametrize(("expr", "order", "expected"), CASES)
def test_store_runs_filters_and_sorts(
    sweep: list[str], store: Path, expr: str | None, order: list[str], expected: list[str]
) -> None:
    s = amltrack.Store(store)
    assert names(s.runs(filter=expr, order_by=order or None)) == expected
    if expected:
        assert names(s.runs(filter=expr, order_by=order or None, limit=1)) == expected[:1]


def test_store_runs_keeps_its_old_arguments(sweep: list[str], store: Path) -> None:
    s = amltrack.Store(store)
    assert names(s.runs(experiment="sweep", filter="params.bs = 32")) == ["run-1", "run-0"]
    assert s.runs(experiment="other", filter="params.bs = 32") == []
    assert names(s.runs(status="completed", order_by="params.lr")) == ["run-2", "run-1", "run-3", "run-0"]
    with pytest.raises(amltrack.QueryError, match="at column 12"):
        s.runs(filter="params.lr >> 1")
    with pytest.raises(ValueError, match="bogus"):
        s.runs(status="bogus", filter="params.lr = 1")
    with pytest.raises(TypeError, match="filter"):
        s.runs(filter=3)  # type: ignore[arg-type]


def test_runs_frame_has_a_column_per_attribute_param_and_metric_figure(sweep: list[str], store: Path) -> None:
    pytest.importorskip("pandas")
    s = amltrack.Store(store)
    df = s.runs_frame(order_by="params.lr")
    assert list(df["run_id"]) == [sweep[2], sweep[1], sweep[3], sweep[0]]
    for col in ("name", "experiment", "status", "user", "host", "created", "ended", "duration", "git.commit"):
        assert col in df.columns
    assert {"params.lr", "params.bs", "params.model.depth", "tags.team"} <= set(df.columns)
    for f in ("", ".min", ".max", ".count"):
        assert f"metrics.loss{f}" in df.columns and f"metrics.val/loss{f}" in df.columns
    row = df.iloc[0]
    assert row["params.lr"] == 0.001 and row["metrics.loss.count"] == 5
    assert row["metrics.loss.max"] == pytest.approx(1 / 3) and row["metrics.loss"] == pytest.approx(1 / 7)
    assert str(df["created"].dtype).startswith("datetime64")
    few = s.runs_frame(filter="params.bs = 32", columns=["params.lr", "metrics.acc.max"])
    assert list(few.columns) == ["run_id", "params.lr", "metrics.acc.max"]
    assert list(few["params.lr"]) == [0.01, 0.1]


# ------------------------------------------------------------------------------- the index


def index_file(store: Path) -> Path:
    return store / fmt.CACHE_DIR / fmt.RUNS_INDEX_FILE


def age(path: Path, seconds: float = 60) -> None:
    """Move a file's times back, so the index trusts what it read of it (see _runindex.RACY)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_the_index_is_derived_data_that_follows_every_change(sweep: list[str], store: Path) -> None:
    for rid in sweep:
        for name in (fmt.RUN_FILE, fmt.SUMMARY_FILE, fmt.METRICS_FILE):
            age(store / fmt.RUNS_DIR / rid / name)
    s = amltrack.Store(store)
    assert names(s.runs(filter="params.bs = 32", order_by="metrics.loss.max")) == ["run-1", "run-0"]
    assert index_file(store).is_file()
    entries = orjson.loads(index_file(store).read_bytes())["runs"]
    assert set(entries) == set(sweep)

    # run.json replaced (a new inode), as every writer does: the next listing sees it.
    run_dir = store / fmt.RUNS_DIR / sweep[0]
    info = orjson.loads((run_dir / fmt.RUN_FILE).read_bytes())
    info["params"]["bs"] = 128
    fmt.write_json_atomic(run_dir / fmt.RUN_FILE, info)
    assert names(amltrack.Store(store).runs(filter="params.bs = 32")) == ["run-1"]
    assert names(s.runs(filter="params.bs = 32")) == ["run-1"]  # the same Store object too

    # metrics appended: ranges are folded in from where they stopped.
    with open(run_dir / fmt.METRICS_FILE, "ab") as f:
        f.write(b'{"name":"loss","step":9,"value":-5,"ts":1.0,"seq":99}\n')
    assert names(s.runs(filter="metrics.loss.min < 0")) == ["run-0"]

    # a deleted run leaves it; a deleted index is rebuilt; a damaged one is ignored.
    import shutil

    shutil.rmtree(store / fmt.RUNS_DIR / sweep[3])
    assert names(s.runs(filter="params.bs = 16")) == []
    assert sweep[3] not in orjson.loads(index_file(store).read_bytes())["runs"]
    index_file(store).unlink()
    assert names(amltrack.Store(store).runs(filter="params.lr = 0.1")) == ["run-0"]
    index_file(store).write_bytes(b"\x00garbage")
    assert names(amltrack.Store(store).runs(filter="params.lr = 0.1")) == ["run-0"]


def test_a_forged_index_is_not_trusted_once_a_file_changes(sweep: list[str], store: Path) -> None:
    s = amltrack.Store(store)
    s.runs(filter="params.lr = 1")
    # Let an index claim a param the run never had: a stale entry whose files then change.
    doc = orjson.loads(index_file(store).read_bytes())
    doc["runs"][sweep[1]]["info"]["params"]["bs"] = 999
    index_file(store).write_bytes(orjson.dumps(doc))
    run_dir = store / fmt.RUNS_DIR / sweep[1]
    fmt.write_json_atomic(run_dir / fmt.RUN_FILE, orjson.loads((run_dir / fmt.RUN_FILE).read_bytes()))
    assert names(amltrack.Store(store).runs(filter="params.bs = 999")) == []


def test_a_read_only_store_is_read_without_writing_an_index(
    sweep: list[str], store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.chmod(store, 0o555)
    if os.geteuid() == 0:  # root writes anyway: make the write fail as it does for anyone else

        def refused(path: Path, *a: object, **k: object) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(fmt, "write_bytes_atomic", refused)
    try:
        assert names(amltrack.Store(store).runs(filter="params.bs = 32")) == ["run-1", "run-0"]
        assert not index_file(store).exists()
    finally:
        os.chmod(store, 0o755)


def test_a_running_run_s_figures_are_current(store: Path) -> None:
    logger = amltrack.get_logger("live", store=store, outputs=None, params={"bs": 1})
    try:
        logger.log("loss", 5.0).wait()
        logger.flush()
        s = amltrack.Store(store)
        assert names(s.runs(filter="metrics.loss.max = 5 and status = 'running'")) == [None]
        logger.log("loss", 7.0).wait()
        logger.flush()
        assert len(s.runs(filter="metrics.loss.max = 7")) == 1
        assert len(s.runs(filter="metrics.loss.min = 5")) == 1
    finally:
        logger.finish()
    assert len(amltrack.Store(store).runs(filter="status = 'completed' and metrics.loss = 7")) == 1


# ----------------------------------------------------------------------------- /api/runs


@pytest.fixture
def ui(sweep: list[str], store: Path) -> Iterator[httpx.Client]:
    server = ThreadServer(create_app(store))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()


def api_names(client: httpx.Client, **params: object) -> list[str]:
    r = client.get("/api/runs", params=params)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return [row["name"] for row in r.json()["runs"]]


@pytest.mark.parametrize(("expr", "order", "expected"), CASES)
def test_the_ui_route_answers_as_the_store_does(
    ui: httpx.Client, expr: str | None, order: list[str], expected: list[str]
) -> None:
    assert api_names(ui, q=expr or "", sort=order) == expected


def test_the_ui_route_s_contract(ui: httpx.Client, sweep: list[str]) -> None:
    body = ui.get("/api/runs").json()
    assert body["total"] == 4 and body["offset"] == 0 and body["limit"] == 0
    assert body["keys"] == {
        "params": ["bs", "lr", "model.depth"],
        "metrics": ["acc", "loss", "val/loss"],
        "tags": ["team"],
    }
    assert body["defaults"] == {"params": ["bs", "lr", "model.depth"], "metrics": ["acc", "loss"]}
    row = body["runs"][1]  # run-2
    for field in (
        "id",
        "short_id",
        "experiment",
        "name",
        "status",
        "created",
        "ended",
        "duration_s",
        "user",
        "hostname",
        "tags",
        "metric_count",
        "metrics",
    ):
        assert field in row
    assert row["params"] == {"lr": 0.001, "bs": 64}
    assert row["summaries"]["loss"] == {
        "last": 1 / 7,
        "min": 1 / 7,
        "max": 1 / 3,
        "count": 5,
        "kind": "number",
    }
    assert row["summaries"]["val/loss"] == {
        "last": "NaN",
        "min": None,
        "max": None,
        "count": 1,
        "kind": "number",
    }

    page = ui.get("/api/runs", params={"sort": "metrics.acc DESC", "offset": 1, "limit": 2}).json()
    assert [r["name"] for r in page["runs"]] == ["run-2", "run-1"]
    assert (page["total"], page["offset"], page["limit"]) == (4, 1, 2)
    same = ui.get("/api/runs", params={"sort": "-metrics.acc", "offset": 1, "limit": 2}).json()
    assert same["runs"] == page["runs"]

    slim = ui.get("/api/runs", params={"columns": "params.lr,metrics.loss", "q": "params.bs = 32"}).json()
    assert [r["params"] for r in slim["runs"]] == [{"lr": 0.01}, {"lr": 0.1}]
    assert [set(r["summaries"]) for r in slim["runs"]] == [{"loss"}, {"loss"}]
    # 32 and "32" are one value, so bs is no default column when only they are matched
    assert slim["defaults"]["params"] == ["lr", "model.depth"] and slim["total"] == 2

    text = ui.get("/api/runs", params={"q": "VISION"}).json()
    assert [r["name"] for r in text["runs"]] == ["run-1", "run-0"]
    assert api_names(ui, q="run-2") == ["run-2"] and api_names(ui, q=sweep[3][-6:]) == ["run-3"]
    none = ui.get("/api/runs", params={"q": "params.bs = 1"}).json()
    assert none["runs"] == [] and none["total"] == 0 and none["experiments"] == ["sweep"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "params.lr >> 1"}, "expected a value at column 12"),
        ({"sort": "metrics.acc sideways"}, "expected asc, desc or the end of the sort key at column 13"),
        ({"columns": "params.lr,bogus"}, "unknown key 'bogus' at column 1"),
    ],
)
def test_a_bad_query_is_a_400_with_the_parser_s_line(ui: httpx.Client, params: dict, message: str) -> None:
    r = ui.get("/api/runs", params=params)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_query" and err["message"].startswith(message)
    assert ui.get("/api/runs", params={"limit": "-1"}).status_code == 400


# ------------------------------------------------------- one answer from every reader


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ServerProcess]]:
    """The sweep in a local store, synced to a real ``amltrack server`` process."""
    d = tmp_path_factory.mktemp("query-served")
    local = d / "local"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)  # runs record the git state of the working directory: not this repository's
        make_sweep(local)
    srv = ServerProcess(d / "server-store", d / "server.log").start()
    try:
        with AmltrackRemote(srv.url, WRITE_TOKEN, backoff=0.02) as remote:
            assert sync(local, remote).ok
        yield local, srv
    finally:
        srv.stop()


def cli_names(*args: str) -> list[str]:
    r = cli("history", "list", "-n", "0", "--json", *args, AMLTRACK_TOKEN=READ_TOKEN)
    assert r.returncode == 0, r.stderr
    return [row["name"] for row in orjson.loads(r.stdout)]


def query_args(expr: str | None, order: list[str]) -> list[str]:
    args = [] if expr is None else ["--filter", expr]
    for key in order:
        args += ["--sort", key]
    return args


@pytest.mark.parametrize(("expr", "order", "expected"), CASES)
def test_the_api_the_cli_the_ui_and_the_server_return_the_same_runs(
    served: tuple[Path, ServerProcess], expr: str | None, order: list[str], expected: list[str]
) -> None:
    local, srv = served
    assert names(amltrack.Store(local).runs(filter=expr, order_by=order or None)) == expected
    assert cli_names("--store", str(local), *query_args(expr, order)) == expected
    assert cli_names("--remote", srv.url, *query_args(expr, order)) == expected
    with srv.client(READ_TOKEN) as c:
        params: dict[str, object] = {"order_by": order}
        if expr is not None:
            params["filter"] = expr
        r = c.get("/v1/history/runs", params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        assert [e["run"]["name"] for e in r.json()["runs"]] == expected
    ui = ThreadServer(create_app(local))
    try:
        with httpx.Client(base_url=ui.url) as c:
            assert api_names(c, q=expr or "", sort=order) == expected
    finally:
        ui.stop()


def test_the_cli_s_columns_and_shorthand(served: tuple[Path, ServerProcess]) -> None:
    local, srv = served
    for where in (["--store", str(local)], ["--remote", srv.url]):
        r = cli(
            "history", "list", *where, "--json", "--filter", "tags.team = 'vision'", "--sort", "-params.lr",
            "--columns", "params.lr, params.model.depth,metrics.loss.min,metrics.val/loss",
            AMLTRACK_TOKEN=READ_TOKEN,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        rows = orjson.loads(r.stdout)
        assert [row["name"] for row in rows] == ["run-0", "run-1"]
        assert rows[0]["columns"] == {
            "params.lr": 0.1,
            'params."model.depth"': 2,
            "metrics.loss.min": 0.2,
            "metrics.val/loss": None,
        }
        assert rows[1]["columns"]["metrics.loss.min"] == pytest.approx(1 / 6)
        table = cli("history", "list", *where, "--filter", "'resnet' or name = 'run-2'", "--columns", "params.bs",
                    AMLTRACK_TOKEN=READ_TOKEN)  # fmt: skip
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert "params.bs" in lines[0] and len(lines) == 3 and "run-2" in lines[2] and " 64 " in lines[2]
        assert cli_names(*where, "--filter", "VISION") == ["run-1", "run-0"]  # plain text, as the UI's box
    plain = cli("history", "list", "--store", str(local))
    assert "params" not in plain.stdout and len(plain.stdout.splitlines()) == 6  # as before: no new columns


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--filter", "params.lr >> 1"],
            "amltrack: --filter 'params.lr >> 1': expected a value at column 12",
        ),
        (
            ["--sort", "metrics.acc sideways"],
            "amltrack: --sort 'metrics.acc sideways': expected asc, desc or",
        ),
        (["--columns", "params.lr,,bogus"], "amltrack: --columns 'bogus': unknown key 'bogus' at column 1"),
    ],
)
def test_a_bad_expression_is_one_line_and_exit_2(
    served: tuple[Path, ServerProcess], args: list[str], message: str
) -> None:
    local, srv = served
    for where in (["--store", str(local)], ["--remote", srv.url]):
        r = cli("history", "list", *where, *args, AMLTRACK_TOKEN=READ_TOKEN)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    with srv.client(READ_TOKEN) as c:
        for params in ({"filter": "params.lr >> 1"}, {"order_by": ["ok", "metrics.acc sideways"]}):
            r = c.get("/v1/history/runs", params=params)  # type: ignore[arg-type]
            assert r.status_code == 400
            assert (
                r.json()["error"]["code"] == "invalid_query" and "at column" in r.json()["error"]["message"]
            )
