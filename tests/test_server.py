"""The history server as a real process on 127.0.0.1: auth, the one error shape, paths, limits, the protocol."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import amltrack
from amltrack._web._auth import TokenConfigError
from amltrack._web._errors import ApiError
from amltrack._web._serve import is_loopback
from amltrack.server import ERROR_CODES, Tokens, entry_for
from amltrack.server._faults import Faults, WritePoint
from amltrack.server._storage import ServerStore

from .conftest import wait_until
from .sync_helpers import READ_TOKEN, SMALL_BODY, WRITE_TOKEN, ServerProcess, cli, make_run

RID = "20261127T005321123-7f3a9c2e1b4d6a80"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("server")
    tokens = d / "tokens"
    # One token stored hashed, one in the clear, a comment and a blank line.
    tokens.write_text(f"# the team\n{entry_for('write', WRITE_TOKEN)}  # laptop\n\nread:{READ_TOKEN}\n")
    srv = ServerProcess(d / "store", d / "server.log", tokens=None, args=("--tokens-file", str(tokens)))
    srv.start()
    yield srv
    srv.stop()


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    """The one error shape: {"error": {"code", "message", [committed]}}, and nothing else."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) <= {"code", "message", "committed"} and {"code", "message"} <= set(err), err
    assert err["code"] == code and err["code"] in ERROR_CODES, err
    assert isinstance(err["message"], str) and err["message"] and "\n" not in err["message"]
    return err


class RawResponse:
    """What assert_error needs of a response, from a request sent byte for byte (no URL normalising)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.text = status, headers, body.decode()

    def json(self) -> dict:
        return json.loads(self.text)


def raw(server: ServerProcess, method: str, target: str, body: bytes = b"x\n") -> RawResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            method,
            target,
            body=body,
            headers={"Authorization": f"Bearer {WRITE_TOKEN}", "X-Amltrack-Client": "tests"},
        )
        r = conn.getresponse()
        return RawResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_health_and_openapi_need_no_token(server: ServerProcess) -> None:
    health = httpx.get(server.url + "/v1/health").json()
    assert health == {
        "server": "amltrack",
        "version": amltrack.__version__,
        "api": 1,
        "max_body": SMALL_BODY,
        "auth": "token",
    }
    spec = httpx.get(server.url + "/openapi.json").json()
    assert spec["info"]["title"] == "amltrack history server"
    paths = spec["paths"]
    assert {
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/append/{name}",
        "/v1/runs/{run_id}/blobs/{sha256}",
        "/v1/runs/{run_id}/artifacts/{path}",
        "/v1/runs/{run_id}/summary.json",
        "/v1/runs/{run_id}/run.json",
    } <= set(paths)
    assert set(paths["/v1/runs/{run_id}/artifacts/{path}"]) == {"put", "delete"}
    assert (
        "application/octet-stream"
        in paths["/v1/runs/{run_id}/append/{name}"]["post"]["requestBody"]["content"]
    )
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    codes = spec["paths"]["/v1/runs/{run_id}"]["get"]["responses"]["4XX"]["content"]["application/json"]
    assert set(codes["schema"]["properties"]["error"]["properties"]["code"]["enum"]) == set(ERROR_CODES)


def test_auth_no_token_wrong_token_and_read_token_on_a_write_route(server: ServerProcess) -> None:
    with (
        server.client(None) as anon,
        server.client("not-a-known-token-at-all") as wrong,
        server.client(READ_TOKEN) as reader,
        server.client(WRITE_TOKEN) as writer,
    ):
        r = anon.get("/v1/runs")
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(anon.put(f"/v1/runs/{RID}"), 401, "unauthorized")
        assert_error(wrong.get("/v1/runs"), 401, "unauthorized")
        r = anon.get("/v1/runs", headers={"Authorization": f"Basic {WRITE_TOKEN}"})
        assert_error(r, 401, "unauthorized")
        assert reader.get("/v1/runs").status_code == 200
        assert_error(reader.put(f"/v1/runs/{RID}"), 403, "forbidden")
        assert_error(
            reader.post(f"/v1/runs/{RID}/append/metrics.jsonl", params={"offset": 0}, content=b"x\n"),
            403,
            "forbidden",
        )
        assert writer.put(f"/v1/runs/{RID}").status_code in (200, 201)
        assert reader.get(f"/v1/runs/{RID}").status_code == 200


def test_every_error_has_the_one_shape(server: ServerProcess) -> None:
    rid = "20261127T005321123-00000000000000e1"
    with server.client() as c:
        assert_error(c.get("/v1/nothing-here"), 404, "not_found")
        assert_error(c.post("/v1/health"), 405, "method_not_allowed")
        assert_error(c.get(f"/v1/runs/{rid}"), 404, "run_not_found")
        assert_error(
            c.post(f"/v1/runs/{rid}/append/metrics.jsonl", params={"offset": 0}, content=b"x\n"),
            404,
            "run_not_found",
        )
        assert c.put(f"/v1/runs/{rid}").status_code == 201
        assert_error(
            c.post(f"/v1/runs/{rid}/append/metrics.jsonl", params={"offset": -1}, content=b"x\n"),
            422,
            "invalid_request",
        )
        assert_error(c.post(f"/v1/runs/{rid}/append/metrics.jsonl", content=b"x\n"), 422, "invalid_request")
        assert_error(
            c.post(f"/v1/runs/{rid}/append/metrics.jsonl", params={"offset": 0}, content=b""),
            400,
            "invalid_request",
        )
        assert_error(
            c.post(f"/v1/runs/{rid}/append/run.json", params={"offset": 0}, content=b"{}\n"), 404, "not_found"
        )
        assert_error(c.get(f"/v1/runs/{rid}/blobs/{'0' * 64}"), 404, "blob_not_found")
        assert_error(c.get(f"/v1/runs/{rid}/blobs/xyz"), 400, "invalid_request")
        assert_error(
            c.put(f"/v1/runs/{rid}/artifacts/a.txt", params={"sha256": "0" * 64}), 409, "blob_missing"
        )
        assert_error(c.put(f"/v1/runs/{rid}/summary.json", content=b"[1, 2]"), 400, "invalid_json")
        assert_error(
            c.put(
                f"/v1/runs/{rid}/run.json",
                params={"metrics_bytes": 0, "manifest_bytes": 0},
                content=b"{not json",
            ),
            400,
            "invalid_json",
        )


def test_appends_are_conditional_on_the_committed_offset(server: ServerProcess) -> None:
    rid = "20261127T005321123-00000000000000a1"
    with server.client() as c:
        assert c.put(f"/v1/runs/{rid}").status_code == 201
        assert c.put(f"/v1/runs/{rid}").status_code == 200  # creating again is a no-op
        url = f"/v1/runs/{rid}/append/metrics.jsonl"
        assert c.post(url, params={"offset": 0}, content=b'{"a":1}\n').json() == {
            "file": "metrics.jsonl",
            "size": 8,
        }
        err = assert_error(c.post(url, params={"offset": 0}, content=b'{"a":1}\n'), 409, "offset_mismatch")
        assert err["committed"] == 8
        assert_error(c.post(url, params={"offset": 20}, content=b'{"a":2}\n'), 409, "offset_mismatch")
        assert c.post(url, params={"offset": 8}, content=b'{"a":2}\n').json()["size"] == 16
        state = c.get(f"/v1/runs/{rid}", params={"hashes": "true"}).json()
        assert state["published"] is False
        assert state["files"]["metrics.jsonl"] == {"size": 16, "sha256": sha(b'{"a":1}\n{"a":2}\n')}
        # Finalising checks that the pushed lengths are complete.
        run_json = b'{"id": "%s", "schema": 1, "status": "completed"}\n' % rid.encode()
        err = assert_error(
            c.put(
                f"/v1/runs/{rid}/run.json",
                params={"metrics_bytes": 24, "manifest_bytes": 0},
                content=run_json,
            ),
            409,
            "incomplete",
        )
        assert err["committed"] == {"metrics.jsonl": 16, "artifacts.jsonl": 0}
        other = b'{"id": "20261127T005321123-00000000000000ff"}'
        assert_error(
            c.put(
                f"/v1/runs/{rid}/run.json", params={"metrics_bytes": 16, "manifest_bytes": 0}, content=other
            ),
            400,
            "invalid_json",
        )
        assert rid not in amltrack.Store(server.store).run_ids()  # staged: readers do not see it yet
        r = c.put(
            f"/v1/runs/{rid}/run.json", params={"metrics_bytes": 16, "manifest_bytes": 0}, content=run_json
        )
        assert r.status_code == 200 and r.json()["published"] is True
    run = amltrack.Store(server.store).run(rid)
    assert run.status == "completed" and (run.dir / "run.json").read_bytes() == run_json


def test_a_client_gone_mid_body_is_one_info_line_and_nothing_written(server: ServerProcess) -> None:
    rid = "20261127T005321123-00000000000000c1"
    blob = sha(b"x" * 1000)
    with server.client() as c:
        assert c.put(f"/v1/runs/{rid}").status_code == 201
        c.post(f"/v1/runs/{rid}/append/metrics.jsonl", params={"offset": 0}, content=b'{"a":1}\n')
    start = server.log.stat().st_size
    targets = [
        f"/v1/runs/{rid}/append/metrics.jsonl?offset=8",
        f"/v1/runs/{rid}/blobs/{blob}?offset=0&size=1000",
        f"/v1/runs/{rid}/summary.json",
    ]
    for target in targets:
        # A sync killed mid-request: it announced 1000 bytes, sent a few, and its socket closed.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            method = "PUT" if target.endswith(".json") else "POST"
            s.sendall(
                f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {WRITE_TOKEN}\r\n"
                "X-Amltrack-Client: tests\r\nContent-Length: 1000\r\n\r\n".encode()
                + b'{"a":2}\n'
            )

    def logged() -> list[str] | None:
        lines = server.log.read_text()[start:].splitlines()
        return lines if sum("went away" in line for line in lines) == len(targets) else None

    lines = wait_until(logged, 60, "the server to note each client that went away")
    assert len(lines) == len(targets), lines  # one line each, and no traceback
    assert all(line.startswith("INFO") for line in lines), lines
    # In any order: the server notes each disconnect when it finds it, not when it was made.
    for target in targets:
        assert sum(target.split("?")[0] + ":" in line for line in lines) == 1, (target, lines)
    with server.client() as c:
        state = c.get(f"/v1/runs/{rid}").json()
        assert state["files"]["metrics.jsonl"]["size"] == 8 and state["files"]["summary.json"] is None
        assert_error(c.get(f"/v1/runs/{rid}/blobs/{blob}"), 404, "blob_not_found")


def test_uploads_resume_by_offset_and_are_checked_by_hash(server: ServerProcess) -> None:
    rid = "20261127T005321123-00000000000000b1"
    data = os.urandom(1000)
    with server.client() as c:
        c.put(f"/v1/runs/{rid}").raise_for_status()
        blob = f"/v1/runs/{rid}/blobs/{sha(data)}"
        r = c.post(blob, params={"offset": 0, "size": 1000}, content=data[:400])
        assert r.json() == {"sha256": sha(data), "size": 400, "complete": False}
        assert c.get(blob).json()["size"] == 400
        assert (
            assert_error(
                c.post(blob, params={"offset": 0, "size": 1000}, content=data[:400]), 409, "offset_mismatch"
            )["committed"]
            == 400
        )
        assert_error(
            c.post(blob, params={"offset": 400, "size": 1000}, content=data[400:] + b"x"),
            400,
            "invalid_request",
        )
        assert (
            c.post(blob, params={"offset": 400, "size": 1000}, content=data[400:]).json()["complete"] is True
        )
        r = c.put(f"/v1/runs/{rid}/artifacts/deep/dir/data.bin", params={"sha256": sha(data)})
        assert r.json() == {"path": "deep/dir/data.bin", "size": 1000, "sha256": sha(data)}
        # Placing it again is a no-op; so is an empty file.
        assert (
            c.put(f"/v1/runs/{rid}/artifacts/deep/dir/data.bin", params={"sha256": sha(data)}).status_code
            == 200
        )
        empty = f"/v1/runs/{rid}/blobs/{sha(b'')}"
        assert c.post(empty, params={"offset": 0, "size": 0}, content=b"").json()["complete"] is True
        c.put(f"/v1/runs/{rid}/artifacts/empty", params={"sha256": sha(b"")}).raise_for_status()
        # Content whose hash is not the announced one is discarded.
        bad = f"/v1/runs/{rid}/blobs/{sha(b'right')}"
        assert_error(c.post(bad, params={"offset": 0, "size": 5}, content=b"wrong"), 422, "hash_mismatch")
        assert_error(c.get(bad), 404, "blob_not_found")
        c.post(empty, params={"offset": 0, "size": 0}, content=b"").raise_for_status()  # placing consumed it
        assert_error(
            c.put(f"/v1/runs/{rid}/artifacts/deep", params={"sha256": sha(b"")}), 409, "path_conflict"
        )
        assert_error(
            c.put(f"/v1/runs/{rid}/artifacts/empty/x", params={"sha256": sha(b"")}), 409, "path_conflict"
        )
        state = c.get(f"/v1/runs/{rid}").json()
        assert state["artifacts"] == {
            "deep/dir/data.bin": {"size": 1000, "sha256": sha(data)},
            "empty": {"size": 0, "sha256": sha(b"")},
        }
        assert c.delete(f"/v1/runs/{rid}/artifacts/empty").json() == {"path": "empty", "deleted": True}
        assert c.delete(f"/v1/runs/{rid}/artifacts/empty").json() == {"path": "empty", "deleted": False}
        # A path can change from a folder to a file: deleting the folder's last file removes the folder.
        c.delete(f"/v1/runs/{rid}/artifacts/deep/dir/data.bin").raise_for_status()
        c.post(empty, params={"offset": 0, "size": 0}, content=b"").raise_for_status()
        c.put(f"/v1/runs/{rid}/artifacts/deep", params={"sha256": sha(b"")}).raise_for_status()
        assert c.get(f"/v1/runs/{rid}").json()["artifacts"] == {"deep": {"size": 0, "sha256": sha(b"")}}
    staged = server.store / ".server" / "incoming" / rid / "artifacts"
    assert sorted(p.name for p in staged.iterdir()) == ["deep"] and (staged / "deep").is_file()


@pytest.mark.parametrize(
    "path",
    [
        "../escape.txt",
        "a/../../escape.txt",
        "%2E%2E/escape.txt",
        "a/%2e%2e/%2e%2e/escape.txt",
        "/etc/escape.txt",
        "a%00b",
        "a%5Cb",
        "a//b",
        "./a",
        "a/.",
        "a/%01b",
    ],
)
def test_artifact_paths_that_escape_are_refused(server: ServerProcess, path: str) -> None:
    rid = "20261127T005321123-00000000000000c1"
    with server.client() as c:
        c.put(f"/v1/runs/{rid}").raise_for_status()
    for method in ("PUT", "DELETE"):
        r = raw(server, method, f"/v1/runs/{rid}/artifacts/{path}?sha256={'0' * 64}")
        assert_error(r, 400, "invalid_path")
    assert not list(server.store.parent.rglob("escape.txt"))


@pytest.mark.parametrize("run_id", ["..", "%2E%2E", "a..b", ".hidden", "-dash", "x" * 129, "a%00b", "a%20b"])
def test_bad_run_ids_are_refused(server: ServerProcess, run_id: str) -> None:
    for method, suffix in (
        ("PUT", ""),
        ("GET", ""),
        ("POST", "/append/metrics.jsonl?offset=0"),
        ("PUT", "/run.json?metrics_bytes=0&manifest_bytes=0"),
    ):
        assert_error(raw(server, method, f"/v1/runs/{run_id}{suffix}"), 400, "invalid_run_id")
    assert sorted(os.listdir(server.store.parent)) == ["server.log", "store", "tokens"]


@pytest.mark.parametrize(
    "target",
    ["/v1/runs/../../escape", "/v1/runs/..%2F..%2Fescape", "/v1/runs/x/append/..%2F..%2Fescape?offset=0"],
)
def test_run_paths_with_slashes_never_reach_the_store(server: ServerProcess, target: str) -> None:
    r = raw(server, "PUT" if "append" not in target else "POST", target)
    assert r.status_code in (400, 404)
    assert_error(r, r.status_code, {400: "invalid_run_id", 404: "not_found"}[r.status_code])
    assert not list(server.store.parent.parent.rglob("escape"))


def test_oversize_bodies_are_refused(server: ServerProcess) -> None:
    rid = "20261127T005321123-00000000000000d1"
    with server.client() as c:
        c.put(f"/v1/runs/{rid}").raise_for_status()
        url = f"/v1/runs/{rid}/append/metrics.jsonl"
        big = b"x" * SMALL_BODY + b"\n"
        assert_error(c.post(url, params={"offset": 0}, content=big), 413, "body_too_large")

        def chunked():  # no Content-Length: counted as it arrives
            for _ in range(4):
                yield b"y" * (SMALL_BODY // 2)

        assert_error(c.post(url, params={"offset": 0}, content=chunked()), 413, "body_too_large")
        assert c.post(url, params={"offset": 0}, content=big[-SMALL_BODY:]).json()["size"] == SMALL_BODY
        assert c.get(f"/v1/runs/{rid}").json()["files"]["metrics.jsonl"]["size"] == SMALL_BODY


def test_tokens_are_parsed_hashed_and_checked() -> None:
    tokens = Tokens.parse(
        f"write:{WRITE_TOKEN}, read:sha256:{hashlib.sha256(READ_TOKEN.encode()).hexdigest()}"
    )
    assert tokens.scope_of(WRITE_TOKEN) == "write" and tokens.scope_of(READ_TOKEN) == "read"
    assert tokens.scope_of("nope") is None and tokens.scope_of("") is None
    assert Tokens.parse(f"read:{WRITE_TOKEN}\nwrite:{WRITE_TOKEN}").scope_of(WRITE_TOKEN) == "write"
    for bad in ("admin:" + WRITE_TOKEN, WRITE_TOKEN, "write:short", "read:sha256:abc", "# nothing"):
        with pytest.raises(TokenConfigError):
            Tokens.parse(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.org")


def test_new_token_prints_a_usable_hashed_entry() -> None:
    out = cli("server", "--new-token", "write")
    assert out.returncode == 0, out.stderr
    token = out.stdout.split("token: ", 1)[1].split()[0]
    line = out.stdout.split("tokens-file line: ", 1)[1].strip()
    assert token not in line and Tokens.parse(line).scope_of(token) == "write"


def test_without_tokens_it_refuses_anything_but_loopback(tmp_path: Path) -> None:
    out = cli("server", "--store", str(tmp_path / "s"), "--host", "0.0.0.0", "--port", "0")
    assert out.returncode == 1
    assert out.stderr.startswith("amltrack: refusing to listen on 0.0.0.0 without tokens")
    assert "Traceback" not in out.stderr
    out = cli("server", "--store", str(tmp_path / "s"), "--port", "0", AMLTRACK_SERVER_TOKENS="write:short")
    assert out.returncode == 1 and "shorter than 16" in out.stderr


def test_one_server_per_store(server: ServerProcess) -> None:
    out = cli(
        "server", "--store", str(server.store), "--port", "0", AMLTRACK_SERVER_TOKENS=f"write:{WRITE_TOKEN}"
    )
    assert out.returncode == 1 and "another amltrack server is serving" in out.stderr


def test_the_servers_store_is_an_ordinary_store(server: ServerProcess) -> None:
    out = cli("history", "list", "--store", str(server.store), "--json")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr


def test_the_web_ui_is_served_to_holders_of_a_read_token(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        r = anon.get("/ui/api/runs")
        assert r.status_code == 401
        page = anon.get("/ui/")
        assert page.status_code == 401 and 'action="/ui/login"' in page.text  # the sign-in form
        assert 'name="token"' in page.text and "ui.js" not in page.text
    with server.client(READ_TOKEN) as c:
        r = c.get("/ui/api/runs")
        assert r.status_code == 200, r.text
        assert c.get("/ui/").status_code == 200
    with httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": "Bearer wrong-token-123456"}
    ) as bad:
        assert bad.get("/ui/api/runs").status_code == 401


def test_the_web_ui_is_announced_at_start_in_the_help_and_in_the_docs(server: ServerProcess) -> None:
    assert f"web UI at {server.url}/ui/" in server.log.read_text()
    assert "/ui/" in cli("server", "--help").stdout
    docs = Path(__file__).resolve().parent.parent / "docs"
    assert "/ui/" in (docs / "sync.md").read_text() and "amltrack server" in (docs / "ui.md").read_text()
    assert "`/ui/`" in (docs / "ui.md").read_text()


def test_with_tokens_any_host_name_is_answered(server: ServerProcess) -> None:
    with server.client(READ_TOKEN) as c:
        assert c.get("/v1/runs", headers={"Host": "amltrack.example.org"}).status_code == 200
        assert c.get("/ui/api/runs", headers={"Host": "amltrack.example.org:443"}).status_code == 200


def test_without_tokens_it_answers_only_to_loopback_host_names(tmp_path: Path) -> None:
    """A loopback server without tokens is open to any web page by DNS rebinding unless it checks Host."""
    srv = ServerProcess(tmp_path / "store", tmp_path / "server.log", tokens=None).start()
    try:
        with srv.client(None) as c:
            for path in ("/v1/health", "/v1/runs", "/ui/api/runs", "/ui/", "/openapi.json"):
                for host in (
                    f"127.0.0.1:{srv.port}",
                    f"localhost:{srv.port}",
                    f"[::1]:{srv.port}",
                    "localhost",
                ):
                    assert c.get(path, headers={"Host": host}).status_code == 200, (path, host)
                for host in ("attacker.example", f"attacker.example:{srv.port}", "127.0.0.1.nip.io", ""):
                    r = c.get(path, headers={"Host": host})
                    assert r.status_code == 400, (path, host, r.status_code)
                    assert r.json()["error"]["code"] == "invalid_host" and "invalid_host" in ERROR_CODES
                    assert "127.0.0.1" in r.json()["error"]["message"]
            r = c.put(f"/v1/runs/{RID}", headers={"Host": "attacker.example"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
            assert (
                not (srv.store / "runs" / RID).exists()
                and not (srv.store / ".server" / "incoming" / RID).exists()
            )
    finally:
        srv.stop()


class Recording:
    """A Faults object that records each write's begin, middle and end instead of failing it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def write(self, kind: str) -> WritePoint:
        seen = self.seen

        class Write(WritePoint):
            def __enter__(self) -> WritePoint:
                seen.append((kind, "begin"))
                return self

            def midway(self, data: object = b"", write: object = None) -> None:
                seen.append((kind, "midway", bytes(data)))  # type: ignore[call-overload]

            def __exit__(self, *exc: object) -> None:
                seen.append((kind, "end" if exc[0] is None else "raised"))

        return Write()


def test_every_write_goes_through_the_faults_seam(tmp_path: Path) -> None:
    """What the crash tests' KillAt (tests/scripts/faulty_server.py) relies on: each write kind
    begins, ends, and where it has a middle, passes it with the data a crash could leave half of."""
    local = tmp_path / "local"
    rid = make_run(local, records=3)
    run_json = (local / "runs" / rid / "run.json").read_bytes()
    line = (local / "runs" / rid / "metrics.jsonl").read_bytes().splitlines(keepends=True)[0]
    faults = Recording()
    store = ServerStore(tmp_path / "server", faults=faults)  # type: ignore[arg-type]
    content = b"weights"
    sha = hashlib.sha256(content).hexdigest()
    store.create(rid)
    store.append(rid, "metrics.jsonl", 0, line)
    with pytest.raises(ApiError):  # a refused write ends by raising: a fault must not act on it
        store.append(rid, "metrics.jsonl", 0, b"again\n")
    store.put_blob(rid, sha, 0, len(content), content)
    store.commit_artifact(rid, "w.bin", sha)
    store.delete_artifact(rid, "w.bin")
    store.put_summary(rid, b"{}")
    store.finalise(rid, run_json, len(line), 0)
    store._folder.shutdown(wait=True)  # the summary it folds after finalising
    assert faults.seen == [
        ("create", "begin"),
        ("create", "end"),
        ("append", "begin"),
        ("append", "midway", line),
        ("append", "end"),
        ("append", "begin"),
        ("append", "raised"),
        ("blob", "begin"),
        ("blob", "midway", content),
        ("blob", "end"),
        ("commit", "begin"),
        ("commit", "midway", b""),
        ("commit", "end"),
        ("delete", "begin"),
        ("delete", "end"),
        ("summary", "begin"),
        ("summary", "end"),
        ("finalise", "begin"),
        ("finalise", "midway", b""),
        ("finalise", "end"),
    ]
    assert (tmp_path / "server" / "runs" / rid / "metrics.jsonl").read_bytes() == line
    plain = ServerStore(tmp_path / "plain")
    assert type(plain.faults) is Faults  # the default does nothing
    plain._folder.shutdown()
