"""What a person and a program get when a UI URL finds nothing: a page for a browser's navigation
(``Accept: text/html``), the one JSON error shape for everything else and for every ``/api/`` route;
from a real ``amltrack ui`` process and from the UI a real ``amltrack server`` mounts at ``/ui/``,
whose bare address sends a browser there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

import amltrack

from .conftest import ui_process
from .sync_helpers import READ_TOKEN, ServerProcess

pytest.importorskip("numpy", reason="the UI needs the ui extra: pip install -e '.[ui]'")

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # a browser's navigation
JSON = {"Accept": "application/json"}
XSS = "<script>alert(1)</script>"
PAGE_HEADERS = (
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
)
CLI_ADVICE = ("amltrack history", "--store")


@pytest.fixture
def ui(store: Path, tmp_path: Path) -> Iterator[httpx.Client]:
    """A real ``amltrack ui`` over a store with one run, and a client of it; the process is stopped."""
    with amltrack.start_run("pages", store=store, outputs=None, name="one") as logger:
        logger.log("loss", 1.0)
    with ui_process(store, tmp_path / "ui.log") as url, httpx.Client(base_url=url, timeout=30) as client:
        client.run_id = logger.run_id
        yield client


def assert_error_page(r: httpx.Response, status: int, says: str, home: str, like: httpx.Response) -> None:
    """An HTML page that says ``says``, links back to the runs list at ``home``, advises no command,
    and carries every security header that the page ``like`` carries."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html"), r.headers["content-type"]
    assert says in r.text, r.text
    assert f'href="{home}">Back to the runs list</a>' in r.text
    assert not [a for a in CLI_ADVICE if a in r.text], r.text
    for h in PAGE_HEADERS:
        assert r.headers.get(h) == like.headers[h], h


def assert_json_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert not [a for a in CLI_ADVICE if a in body["error"]["message"]], body


def test_a_browser_gets_a_page_that_says_what_was_not_found(ui: httpx.Client) -> None:
    runs = ui.get("/", headers=HTML)
    assert runs.status_code == 200
    assert_error_page(
        ui.get("/runs/nosuchrun", headers=HTML), 404, "There is no run “nosuchrun” in this store.", "/", runs
    )
    assert_error_page(
        ui.get("/no/such/page", headers=HTML), 404, "There is no page at /no/such/page.", "/", runs
    )
    # The page of a run that is there is still the page: only errors change.
    assert ui.get(f"/runs/{ui.run_id}", headers=HTML).status_code == 200


def test_a_program_gets_json_and_the_api_always_answers_json(ui: httpx.Client) -> None:
    for headers in (JSON, {"Accept": "*/*"}, {}):
        assert_json_error(ui.get("/runs/nosuchrun", headers=headers), 404, "run_not_found")
        assert_json_error(ui.get("/no/such/page", headers=headers), 404, "not_found")
    for headers in (HTML, JSON):
        assert_json_error(ui.get("/api/runs/nosuchrun", headers=headers), 404, "run_not_found")
        assert_json_error(ui.get("/api/nothing", headers=headers), 404, "not_found")
        assert_json_error(
            ui.get("/api/runs/nosuchrun/series?name=loss", headers=headers), 404, "run_not_found"
        )


def test_a_ref_in_the_url_is_shown_escaped(ui: httpx.Client) -> None:
    for path in (f"/runs/{quote(XSS, safe='')}", f"/{quote(XSS, safe='')}"):
        r = ui.get(path, headers=HTML)
        assert r.status_code == 404 and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text, r.text
        assert "<script>alert" not in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]


def test_the_server_sends_a_browser_from_its_address_to_the_ui(tmp_path: Path) -> None:
    with amltrack.start_run("served", store=tmp_path / "store", outputs=None, name="served") as logger:
        logger.log("loss", 1.0)
    open_server = ServerProcess(tmp_path / "store", tmp_path / "open.log", tokens=None).start()
    try:
        with httpx.Client(base_url=open_server.url, timeout=30) as c:
            for headers in (HTML, JSON, {}):
                r = c.get("/", headers=headers)
                assert r.status_code == 307 and r.headers["location"] == "/ui/", (r.status_code, r.headers)
                assert r.headers["x-frame-options"] == "DENY"
            page = c.get("/", headers=HTML, follow_redirects=True)
            assert page.status_code == 200 and 'data-page="runs"' in page.text
            assert c.get("/", headers={"Host": "attacker.example"}).status_code == 400, (
                "Host is checked first"
            )
    finally:
        open_server.stop()
    server = ServerProcess(tmp_path / "store", tmp_path / "server.log").start()  # with tokens
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.get("/", headers=HTML)
            assert r.status_code == 307 and r.headers["location"] == "/ui/"
            assert c.get("/ui/", headers=HTML).status_code == 401, "the UI itself still needs the token"
            signed = {"Authorization": f"Bearer {READ_TOKEN}"}
            runs = c.get("/ui/", headers={**HTML, **signed})
            assert runs.status_code == 200
            missing = c.get("/ui/runs/nosuchrun", headers={**HTML, **signed})
            assert_error_page(missing, 404, "There is no run “nosuchrun” in this store.", "/ui/", runs)
            assert_json_error(c.get("/ui/runs/nosuchrun", headers={**JSON, **signed}), 404, "run_not_found")
            assert_json_error(
                c.get("/ui/api/runs/nosuchrun", headers={**HTML, **signed}), 404, "run_not_found"
            )
            assert_error_page(
                c.get("/ui/nothing", headers={**HTML, **signed}),
                404,
                "There is no page at /ui/nothing.",
                "/ui/",
                runs,
            )
    finally:
        server.stop()
