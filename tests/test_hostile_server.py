"""Hostile input to the history server and the UI, against real processes on 127.0.0.1: writes a web
page could send cross-site, a '#' inside a token, run.json and summary.json of the wrong shape, and
the headers of error answers. (tests/torture/test_server_auth.py walks every route for the first.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

import amltrack

from .conftest import ui_process
from .sync_helpers import WRITE_TOKEN, ServerProcess, cli, make_run

RID = "20261206T101010123-0123456789abcdef"
LINE = b'{"name":"pwned","step":0,"value":1,"ts":1,"seq":1}\n'
EVIL = "http://evil.example"
SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server without tokens, as on a laptop: loopback only, and nothing but the cross-site rule
    between a web page and the store."""
    d = tmp_path_factory.mktemp("open-server")
    srv = ServerProcess(d / "store", d / "server.log", tokens=None).start()
    with srv.client(None) as c:
        assert c.put(f"/v1/runs/{RID}").status_code in (200, 201)
    try:
        yield srv
    finally:
        srv.stop()


def metrics_size(srv: ServerProcess) -> int:
    with srv.client() as c:
        r = c.get(f"/v1/runs/{RID}")
        assert r.status_code == 200, r.text
        return (r.json()["files"]["metrics.jsonl"] or {"size": 0})["size"]  # None: no file yet


def assert_cross_site(r: httpx.Response) -> None:
    assert r.status_code == 403, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "cross_site" and "X-Amltrack-Client" in err["message"], err
    for k, v in SECURITY.items():
        assert r.headers[k] == v, (k, r.headers)


# ----------------------------------------------------------------- cross-site writes


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL, "Content-Type": "text/plain"},  # the curl: a page's fetch() or form
        {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},
        {"Origin": "null", "Content-Type": "multipart/form-data; boundary=x"},  # a sandboxed page
        {"Content-Type": "text/plain"},  # a browser that sends no Origin on a form post
        {},  # no Content-Type at all: fetch(url, {method: "POST", body: blob}) sends none
        {"Sec-Fetch-Site": "cross-site", "X-Amltrack-Client": "x"},
        {"Sec-Fetch-Site": "same-site", "Content-Type": "application/octet-stream"},  # another port
        {"Origin": EVIL, "X-Amltrack-Client": "x", "Content-Type": "application/octet-stream"},
    ],
    ids=[
        "origin-text",
        "origin-form",
        "null-origin",
        "form-no-origin",
        "no-type",
        "fetch-site",
        "same-site",
        "origin-with-header",
    ],
)
def test_a_write_a_page_could_send_is_refused_and_changes_nothing(
    open_server: ServerProcess, headers: dict[str, str]
) -> None:
    before = metrics_size(open_server)
    base = open_server.url
    r = httpx.post(
        f"{base}/v1/runs/{RID}/append/metrics.jsonl",
        params={"offset": before},
        content=LINE,
        headers=headers,
        timeout=30,
    )
    assert_cross_site(r)
    sha = "0" * 64
    r = httpx.post(
        f"{base}/v1/runs/{RID}/blobs/{sha}",
        params={"offset": 0, "size": 1},
        content=b"x",
        headers=headers,
        timeout=30,
    )
    assert_cross_site(r)
    assert metrics_size(open_server) == before
    with open_server.client(None) as c:
        assert c.get(f"/v1/runs/{RID}/blobs/{sha}").status_code == 404  # no upload was started


def test_what_sync_sends_and_what_only_a_script_can_send_are_accepted(open_server: ServerProcess) -> None:
    base = open_server.url
    for headers in (
        {"X-Amltrack-Client": "amltrack/x"},  # what amltrack sync sends
        {"Content-Type": "application/octet-stream"},  # a script's raw body: a page would need a preflight
        {"Origin": base, "Sec-Fetch-Site": "same-origin", "X-Amltrack-Client": "x"},  # the server's own page
    ):
        size = metrics_size(open_server)
        r = httpx.post(
            f"{base}/v1/runs/{RID}/append/metrics.jsonl",
            params={"offset": size},
            content=LINE,
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 200, (headers, r.text)
        assert metrics_size(open_server) == size + len(LINE)


def test_a_preflight_is_never_granted(open_server: ServerProcess) -> None:
    r = httpx.options(
        f"{open_server.url}/v1/runs/{RID}/append/metrics.jsonl",
        timeout=30,
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-amltrack-client",
        },
    )
    assert "access-control-allow-origin" not in r.headers and r.status_code >= 400


def test_a_write_token_in_a_page_s_hands_cannot_write_either(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "store", tmp_path / "server.log").start()
    try:
        headers = {"Authorization": f"Bearer {WRITE_TOKEN}", "Origin": EVIL, "X-Amltrack-Client": "x"}
        assert_cross_site(httpx.put(f"{srv.url}/v1/runs/{RID}", headers=headers, timeout=30))
        r = httpx.put(f"{srv.url}/v1/runs/{RID}", headers={"Origin": EVIL}, timeout=30)
        assert r.status_code == 401  # no token: the token check comes first, as before
        with srv.client() as c:
            assert c.get("/v1/runs").json()["runs"] == []
    finally:
        srv.stop()


def test_sync_still_pushes_to_a_server_without_tokens(open_server: ServerProcess, tmp_path: Path) -> None:
    local = tmp_path / "local"
    run_id = make_run(local, records=20, artifacts={"a.txt": b"a"})
    out = cli("sync", "--store", str(local), "--to", open_server.url, "--json")
    assert out.returncode == 0, out.stderr
    assert (open_server.store / "runs" / run_id / "artifacts" / "a.txt").read_bytes() == b"a"


# ----------------------------------------------------------------- tokens files


def test_a_hash_inside_a_token_is_part_of_it(tmp_path: Path) -> None:
    token = "probe-token-0123456789#secretpart"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# the team's tokens\nwrite:{token}   # laptop\n  read:{'r' * 20}#not-a-comment\n")
    srv = ServerProcess(
        tmp_path / "store", tmp_path / "server.log", tokens=None, args=("--tokens-file", str(tokens))
    ).start()
    try:

        def status(t: str) -> int:
            return httpx.get(
                f"{srv.url}/v1/runs", headers={"Authorization": f"Bearer {t}"}, timeout=30
            ).status_code

        assert status(token) == 200
        assert status("probe-token-0123456789") == 401  # what the '#' used to cut it to
        assert status("r" * 20 + "#not-a-comment") == 200 and status("r" * 20) == 401
    finally:
        srv.stop()


def test_a_tokens_line_with_a_space_inside_its_token_is_refused_naming_the_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"write:{'w' * 20}\nwrite:probe-token-0123456789 secretpart\n")
    out = cli("server", "--store", str(tmp_path / "s"), "--port", "0", "--tokens-file", str(tokens))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "line 2" in out.stderr and "space inside its token" in out.stderr


# ----------------------------------------------------------------- run.json and summary.json


@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    srv = ServerProcess(tmp_path / "remote", tmp_path / "server.log").start()
    local = tmp_path / "local"
    run_id = make_run(local, records=10)
    out = cli("sync", "--store", str(local), "--to", srv.url, "--json", AMLTRACK_TOKEN=WRITE_TOKEN)
    assert out.returncode == 0, out.stderr
    try:
        yield srv, run_id
    finally:
        srv.stop()


def _put(srv: ServerProcess, run_id: str, name: str, body: bytes) -> httpx.Response:
    with srv.client() as c:
        sizes = c.get(f"/v1/runs/{run_id}").json()["files"]
        size = {n: (sizes[n] or {"size": 0})["size"] for n in ("metrics.jsonl", "artifacts.jsonl")}
        params = {"metrics_bytes": size["metrics.jsonl"], "manifest_bytes": size["artifacts.jsonl"]}
        return c.put(f"/v1/runs/{run_id}/{name}", content=body, params=params if name == "run.json" else None)


BAD_RUN_JSON = {
    "no id": lambda rid: {"schema": 1, "status": "completed"},
    "another run's id": lambda rid: {"id": RID, "schema": 1, "status": "completed"},
    "schema zz": lambda rid: {"id": rid, "schema": "zz", "status": "completed"},
    "schema null": lambda rid: {"id": rid, "schema": None, "status": "completed"},
    "schema 1.5": lambda rid: {"id": rid, "schema": 1.5, "status": "completed"},
    "schema true": lambda rid: {"id": rid, "schema": True, "status": "completed"},
    "schema 0": lambda rid: {"id": rid, "schema": 0, "status": "completed"},
    "schema 99": lambda rid: {"id": rid, "schema": 99, "status": "completed"},
    "status bogus": lambda rid: {"id": rid, "schema": 1, "status": "bogus"},
    "status crashed": lambda rid: {"id": rid, "schema": 1, "status": "crashed"},
    "no status": lambda rid: {"id": rid, "schema": 1},
    "created a number": lambda rid: {"id": rid, "schema": 1, "status": "completed", "created": 5},
    "created_ts a string": lambda rid: {"id": rid, "schema": 1, "status": "completed", "created_ts": "x"},
    "tags a list": lambda rid: {"id": rid, "schema": 1, "status": "completed", "tags": ["a"]},
    "params nested": lambda rid: {"id": rid, "schema": 1, "status": "completed", "params": {"a": {"b": 1}}},
    "pid a string": lambda rid: {"id": rid, "schema": 1, "status": "completed", "pid": "1"},
    "a list": lambda rid: [rid],
}


@pytest.mark.parametrize("case", sorted(BAD_RUN_JSON))
def test_a_run_json_readers_cannot_rely_on_is_refused_and_the_published_one_kept(
    published: tuple[ServerProcess, str], case: str
) -> None:
    srv, run_id = published
    path = srv.store / "runs" / run_id / "run.json"
    before = path.read_bytes()
    r = _put(srv, run_id, "run.json", orjson.dumps(BAD_RUN_JSON[case](run_id)))
    assert r.status_code == 400, (case, r.status_code, r.text)
    err = r.json()["error"]
    assert (
        err["code"] == "invalid_json"
        and err["message"].startswith("run.json ")
        and "\n" not in err["message"]
    )
    assert path.read_bytes() == before
    assert amltrack.Store(srv.store).run(run_id).status == "completed"


def test_the_run_json_a_run_wrote_is_accepted(published: tuple[ServerProcess, str]) -> None:
    srv, run_id = published
    path = srv.store / "runs" / run_id / "run.json"
    info = orjson.loads(path.read_bytes())
    info["tags"] = {"note": "edited", "n": 1, "ok": True, "none": None}
    assert _put(srv, run_id, "run.json", orjson.dumps(info)).status_code == 200
    assert amltrack.Store(srv.store).run(run_id).tags["note"] == "edited"


@pytest.mark.parametrize(
    "summary",
    [
        {"metrics": 5},
        {"metrics": {"loss": 3}},
        {"metrics": {"loss": {"count": "many"}}},
        {"metrics": {"loss": {"count": 1, "last": [1, 2]}}},
        {"heartbeat": "now"},
        {"records": 1.5},
        [1],
    ],
    ids=["metrics-int", "entry-int", "count-str", "last-list", "heartbeat-str", "records-float", "a-list"],
)
def test_a_summary_json_of_the_wrong_shape_is_refused(
    published: tuple[ServerProcess, str], summary: object
) -> None:
    srv, run_id = published
    path = srv.store / "runs" / run_id / "summary.json"
    before = path.read_bytes()
    r = _put(srv, run_id, "summary.json", orjson.dumps(summary))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    assert path.read_bytes() == before


def test_a_damaged_summary_costs_its_run_the_cached_figures_never_the_listing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    good = make_run(store, records=5)
    bad = make_run(store, records=5)
    (store / "runs" / bad / "summary.json").write_text('{"metrics": 5, "heartbeat": "x"}')
    run = amltrack.Store(store).run(bad)
    assert run.cached_summary() == {} and run.summary()["loss"]["count"] == 5  # the truth is in metrics.jsonl
    with ui_process(store, tmp_path / "ui.log") as url:
        r = httpx.get(url + "api/runs", timeout=30)
        assert r.status_code == 200, r.text
        rows = {row["id"]: row for row in r.json()["runs"]}
        assert set(rows) == {good, bad}
        assert rows[bad]["metric_count"] == 0 and rows[good]["metric_count"] == 3
    out = cli("history", "list", "--store", str(store), "--json")
    assert out.returncode == 0 and bad in out.stdout, out.stderr


# ----------------------------------------------------------------- error answers' headers


def test_error_answers_carry_the_security_headers(open_server: ServerProcess, tmp_path: Path) -> None:
    base = open_server.url
    for r in (
        httpx.get(f"{base}/v1/nowhere", timeout=30),  # 404
        httpx.get(f"{base}/v1/runs/..bad", timeout=30),  # 400
        httpx.get(f"{base}/v1/history/runs/{RID}", timeout=30),  # 404 run_not_found
        httpx.get(f"{base}/ui/api/runs/nosuch", timeout=30),  # the UI's 404
        httpx.get(f"{base}/v1/health", timeout=30),  # and a success
    ):
        for k, v in SECURITY.items():
            assert r.headers.get(k) == v, (r.request.url, r.status_code, k, dict(r.headers))
        assert "content-security-policy" in r.headers


def test_a_crash_s_answer_carries_the_security_headers_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 500 is answered from outside every middleware. No request makes the server crash on purpose,
    # so the fault is injected: the store's listing raises.
    from amltrack.server import create_app
    from amltrack.server._storage import ServerStore
    from amltrack.ui import _api

    from .test_ui import ThreadServer

    def broken(self: object, *a: object, **k: object) -> object:
        raise RuntimeError("injected")

    make_run(tmp_path / "store", records=1)  # a run for the listing to fail on
    monkeypatch.setattr(ServerStore, "list_runs", broken)
    monkeypatch.setattr(_api, "run_row", broken)
    server = ThreadServer(create_app(tmp_path / "store"))
    try:
        for path in ("/v1/runs", "/ui/api/runs"):
            r = httpx.get(server.url + path, timeout=30)
            assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error", (path, r.text)
            for k, v in SECURITY.items():
                assert r.headers.get(k) == v, (path, k, dict(r.headers))
    finally:
        server.stop()


# ----------------------------------------------------------------- symlinks on the server's side


@pytest.mark.parametrize("where", ["artifacts", "file", "run"])
def test_the_server_and_its_ui_serve_no_file_through_a_symlink(
    published: tuple[ServerProcess, str], tmp_path: Path, where: str
) -> None:
    srv, run_id = published
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "leak.txt").write_bytes(b"the secret")
    run_dir = srv.store / "runs" / run_id
    manifest = run_dir / "artifacts.jsonl"
    with open(manifest, "ab") as f:  # the manifest says it is stored, as an attacker's would
        f.write(
            orjson.dumps({"path": "leak.txt", "status": "stored", "size": 10, "sha256": "0" * 64}) + b"\n"
        )
    if where == "artifacts":  # the whole artifacts folder is a link to an outside folder
        if (run_dir / "artifacts").exists():
            (run_dir / "artifacts").rename(tmp_path / "old-artifacts")
        (run_dir / "artifacts").symlink_to(secret)
    elif where == "file":
        (run_dir / "artifacts").mkdir(exist_ok=True)
        (run_dir / "artifacts" / "leak.txt").symlink_to(secret / "leak.txt")
    else:  # the run's own metrics file is a link
        (run_dir / "metrics.jsonl").unlink()
        (run_dir / "metrics.jsonl").symlink_to(secret / "leak.txt")
    with srv.client() as c:
        answers = [
            c.get(f"/v1/history/runs/{run_id}/artifacts/leak.txt"),
            c.get(f"/v1/history/runs/{run_id}/files/metrics.jsonl"),
            c.get(f"/ui/api/runs/{run_id}/artifacts/leak.txt"),
        ]
    for r in answers:
        assert b"the secret" not in r.content, (r.request.url, r.status_code)
    assert answers[0].status_code == 404 and answers[2].status_code == 404
    if where == "run":
        assert answers[1].status_code == 404
