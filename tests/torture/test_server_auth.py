"""Every route the server's app really has (its /v1 routes and the UI mounted at /ui, not only what
the OpenAPI description lists): without a token, with a wrong one, with a read token on a write
route, and with a body over the limit on every route that takes one."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from ..sync_helpers import READ_TOKEN, SMALL_BODY, WRITE_TOKEN, ServerProcess
from .conftest import app_routes

RID = "20261127T005321123-7f3a9c2e1b4d6a80"
FILL = {
    "run_id": RID,
    "ref": RID,
    "sha256": "0" * 64,
    "name": "metrics.jsonl",
    "path": "a/b.txt",
    "file": "metrics.jsonl",
    "version": "1",
}
PARAMS = {"offset": 0, "size": 0, "sha256": "0" * 64, "metrics_bytes": 0, "manifest_bytes": 0}
# What anyone may fetch: the server's health and its API description, the UI's health and its
# static files (a sign-in page needs its stylesheet).
PUBLIC = {"/v1/health", "/openapi.json", "/ui/api/health", "/ui/static/{name}"}
WRONG = "wrong-token-0123456789abcdef"


ROUTES = app_routes()
GUARDED = [(m, t) for m, t in ROUTES if t not in PUBLIC]
WRITES = [(m, t) for m, t in GUARDED if m not in ("GET", "HEAD")]


def url(template: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: FILL[m.group(1)], template)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("auth")
    srv = ServerProcess(d / "store", d / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_walk_sees_the_ui_and_every_route_of_the_openapi_description(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    described = {(m.upper(), t) for t, methods in spec["paths"].items() for m in methods}
    walked = {(m, t.replace(":path", "")) for m, t in ROUTES}
    assert described <= walked, described - walked
    assert len([t for _, t in GUARDED if t.startswith("/ui/api/")]) >= 10  # the mount was walked
    assert {t for _, t in GUARDED if t.startswith("/ui/") and "/api/" not in t} >= {"/ui/", "/ui/runs/{ref}"}
    assert len(WRITES) >= 7


def check_refused(r: httpx.Response, method: str, template: str, status: int, code: str) -> None:
    assert r.status_code == status, (method, template, r.status_code, r.text[:300])
    if method == "HEAD":
        return  # no body to read
    if template.startswith("/ui/") and "/api/" not in template:
        # A page, for a browser: the sign-in form, not JSON.
        assert r.headers["content-type"].startswith("text/html") and 'name="token"' in r.text
        return
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"], body


@pytest.mark.parametrize("method, template", GUARDED)
def test_no_token_and_a_wrong_token_are_refused(server: ServerProcess, method: str, template: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for headers in ({}, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": f"Basic {WRITE_TOKEN}"}):
            r = c.request(method, url(template), headers=headers, content=b"x\n", params=PARAMS)
            check_refused(r, method, template, 401, "unauthorized")


@pytest.mark.parametrize("method, template", WRITES)
def test_a_read_token_on_a_write_route_is_forbidden(
    server: ServerProcess, method: str, template: str
) -> None:
    r = httpx.request(
        method,
        server.url + url(template),
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
        content=b"x\n",
        params=PARAMS,
        timeout=30,
    )
    check_refused(r, method, template, 403, "forbidden")


def test_public_routes_need_no_token(server: ServerProcess) -> None:
    for method, template in ROUTES:
        if template in PUBLIC and method == "GET":
            target = url(template).replace("metrics.jsonl", "ui.css")
            assert httpx.get(server.url + target, timeout=30).status_code == 200, template


@pytest.mark.parametrize("method, template", WRITES)
def test_a_body_over_the_limit_is_refused_on_every_write_route(
    server: ServerProcess, method: str, template: str
) -> None:
    big = b"x" * (SMALL_BODY + 1)

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(4):
            yield b"y" * (SMALL_BODY // 2)

    with server.client(WRITE_TOKEN) as c:
        c.put(f"/v1/runs/{RID}")  # so a route that reads its body gets as far as reading it
        for content in (big, chunked()):
            r = c.request(method, url(template), content=content, params=PARAMS)
            if content is not big and r.status_code != 413:
                # Streamed, the limit can only bite once the body is read: a route that takes no
                # body never reads it, so it must not have taken this one either.
                assert r.status_code < 500, (method, template, r.status_code, r.text)
                assert "requestBody" not in described_operation(server, method, template)
                continue
            check_refused(r, method, template, 413, "body_too_large")
            assert str(SMALL_BODY) in r.json()["error"]["message"]


_spec: dict = {}


def described_operation(server: ServerProcess, method: str, template: str) -> dict:
    if not _spec:
        _spec.update(httpx.get(f"{server.url}/openapi.json", timeout=30).json())
    return _spec["paths"].get(template.replace(":path", ""), {}).get(method.lower(), {})


# ----------------------------------------------------------------- writes a web page could send

SITE_WRITES = [(m, t) for m, t in WRITES if not t.startswith("/ui/")]  # the UI has no write routes


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("open")
    srv = ServerProcess(d / "store", d / "server.log", tokens=None).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_ui_has_no_write_route_and_the_api_has_them_all() -> None:
    assert [t for _, t in WRITES if t.startswith("/ui/")] == []
    assert len(SITE_WRITES) >= 7


@pytest.mark.parametrize("tokens", ["with tokens", "without tokens"])
@pytest.mark.parametrize("method, template", SITE_WRITES)
def test_every_write_route_refuses_what_a_page_could_send_cross_site(
    server: ServerProcess, open_server: ServerProcess, tokens: str, method: str, template: str
) -> None:
    srv = server if tokens == "with tokens" else open_server
    auth = {"Authorization": f"Bearer {WRITE_TOKEN}"} if tokens == "with tokens" else {}
    before = sorted(p.relative_to(srv.store).as_posix() for p in srv.store.rglob("*"))
    for headers in (
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},  # a page's simple request
        {"Content-Type": "application/x-www-form-urlencoded"},  # a form, its Origin left out
        {},  # a body with no Content-Type, as fetch() sends a Blob
        {"Sec-Fetch-Site": "cross-site", "X-Amltrack-Client": "x"},
    ):
        r = httpx.request(
            method,
            srv.url + url(template),
            headers={**auth, **headers},
            content=b"x\n",
            params=PARAMS,
            timeout=30,
        )
        check_refused(r, method, template, 403, "cross_site")
    assert sorted(p.relative_to(srv.store).as_posix() for p in srv.store.rglob("*")) == before
