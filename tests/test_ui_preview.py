"""The UI's artifact previews and charts over time, through a real server: what kind each file is
previewed as (by its bytes, its name only where they agree), the preview and image answers' headers,
and the series API's wall and relative time axes. tests/test_ui_charts.py shows them in a browser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import amltrack

pytest.importorskip("starlette", reason="the UI needs the ui extra: pip install 'amltrack[ui]'")

import httpx  # noqa: E402

from amltrack.ui import _preview, create_app  # noqa: E402

from .test_ui import ThreadServer  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
SVG = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
TEXT_BYTES = _preview.TEXT_BYTES


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[[], httpx.Client]]:
    servers: list[ThreadServer] = []
    clients: list[httpx.Client] = []

    def start() -> httpx.Client:
        servers.append(ThreadServer(create_app(tmp_path / "store")))
        clients.append(httpx.Client(base_url=servers[-1].url, timeout=30))
        return clients[-1]

    yield start
    for c in clients:
        c.close()
    for s in servers:
        s.stop()


@pytest.fixture
def run(tmp_path: Path) -> str:
    with amltrack.start_run("files", store=tmp_path / "store", outputs=None) as lg:
        for name, content in {
            "a.png": PNG,
            "b.jpg": JPEG,
            "c.gif": GIF,
            "d.webp": WEBP,
            "no-extension": PNG,  # an image by its bytes, whatever its name
            "e.svg": SVG,
            "fake.png": "not a png at all",  # text by its bytes: never an image
            "fake.svg": "just words",
            "page.html": "<html><script>alert(1)</script></html>",
            "notes.txt": "line 1\nline 2 ✓\n",
            "latin1.txt": b"caf\xe9\n",
            "cfg.json": '{"b": [1, 2.5, NaN], "a": {"deep": "<b>"}, "big": 123456789012345678901234567890}',
            "bad.json": '{"a": 1',
            "table.csv": 'x,y,z\n1,"a,b",3\n4,"multi\nline",6\n',
            "table.tsv": "x\ty\n1\t2\n",
            "long.csv": "".join(f"{i},{i * i}\n" for i in range(2000)),
            "big.txt": "é" * (TEXT_BYTES // 2) + "tail",  # 2-byte characters: the MiB cut falls between them
            "odd.txt": "a" * (TEXT_BYTES - 1) + "é",  # ... and here in the middle of one
            "weights.bin": bytes(range(256)),
            "late-binary.txt": "text " * 2000 + "\x00",  # binary past the sniffed head: still no text
        }.items():
            lg.upload(name, content)
    return lg.run_id


def preview(client: httpx.Client, run: str, path: str) -> dict:
    r = client.get(f"/api/runs/{run}/preview/{path}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert (
        r.headers["x-content-type-options"] == "nosniff"
        and "script-src 'self'" in r.headers["content-security-policy"]
    )
    return r.json()


def test_each_file_is_previewed_as_its_bytes_say(served: Callable[[], httpx.Client], run: str) -> None:
    c = served()
    kinds = {
        path: (p := preview(c, run, path))["kind"] + (f":{p['media']}" if "media" in p else "")
        for path in (
            "a.png b.jpg c.gif d.webp no-extension e.svg fake.png fake.svg page.html notes.txt cfg.json bad.json "
            "table.csv weights.bin late-binary.txt"
        ).split()
    }
    assert kinds == {
        "a.png": "image:image/png",
        "b.jpg": "image:image/jpeg",
        "c.gif": "image:image/gif",
        "d.webp": "image:image/webp",
        "no-extension": "image:image/png",
        "e.svg": "image:image/svg+xml",
        "fake.png": "text",
        "fake.svg": "text",
        "page.html": "text",
        "notes.txt": "text",
        "cfg.json": "json",
        "bad.json": "text",
        "table.csv": "csv",
        "weights.bin": "none",
        "late-binary.txt": "none",
    }
    assert preview(c, run, "page.html")["text"] == "<html><script>alert(1)</script></html>"
    assert preview(c, run, "notes.txt") == {
        "path": "notes.txt",
        "kind": "text",
        "size": 18,
        "truncated": False,
        "text": "line 1\nline 2 ✓\n",
    }
    assert preview(c, run, "latin1.txt")["text"] == "caf\ufffd\n", "UTF-8 with replacement"


def test_json_is_pretty_and_csv_is_rows(served: Callable[[], httpx.Client], run: str) -> None:
    c = served()
    assert preview(c, run, "cfg.json")["text"] == (
        '{\n  "b": [\n    1,\n    2.5,\n    NaN\n  ],\n  "a": {\n    "deep": "<b>"\n  },\n'
        '  "big": 123456789012345678901234567890\n}'
    )
    bad = preview(c, run, "bad.json")
    assert bad["text"] == '{"a": 1' and bad["note"].startswith("not valid JSON")
    assert preview(c, run, "table.csv")["rows"] == [
        ["x", "y", "z"],
        ["1", "a,b", "3"],
        ["4", "multi\nline", "6"],
    ]
    assert preview(c, run, "table.tsv")["rows"] == [["x", "y"], ["1", "2"]]
    long = preview(c, run, "long.csv")
    assert (
        long["truncated"] and len(long["rows"]) == _preview.CSV_ROWS and long["rows"][-1] == ["499", "249001"]
    )


def test_text_shows_its_first_mib_and_never_half_a_character(
    served: Callable[[], httpx.Client], run: str
) -> None:
    c = served()
    big = preview(c, run, "big.txt")
    assert big["truncated"] and big["size"] == TEXT_BYTES + 4 and big["text"] == "é" * (TEXT_BYTES // 2)
    odd = preview(c, run, "odd.txt")
    assert odd["truncated"] and odd["text"] == "a" * (TEXT_BYTES - 1), "the cut character is left out"


def test_images_are_sent_typed_by_their_bytes_and_as_attachments(
    served: Callable[[], httpx.Client], run: str
) -> None:
    c = served()
    for path, media, content in (
        ("a.png", "image/png", PNG),
        ("d.webp", "image/webp", WEBP),
        ("e.svg", "image/svg+xml", SVG.encode()),
    ):
        r = c.get(f"/api/runs/{run}/images/{path}")
        assert r.status_code == 200 and r.content == content
        assert r.headers["content-type"] == media
        assert r.headers["content-disposition"].startswith("attachment;")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
    # Nothing else is sent as an image (nor ever as HTML): the page and a fake PNG are refused.
    for path in ("page.html", "fake.png", "weights.bin", "notes.txt"):
        r = c.get(f"/api/runs/{run}/images/{path}")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", path
        assert "download it" in r.json()["error"]["message"]
    # The download of every kind is unchanged: octet-stream, an attachment.
    r = c.get(f"/api/runs/{run}/artifacts/e.svg")
    assert r.headers["content-type"] == "application/octet-stream" and r.content == SVG.encode()


def test_previews_follow_the_download_s_rules(
    served: Callable[[], httpx.Client], run: str, tmp_path: Path
) -> None:
    c = served()
    run_dir = amltrack.Store(tmp_path / "store").run(run).dir
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (run_dir / "artifacts" / "link.txt").symlink_to(outside)
    for route in ("preview", "images"):
        assert c.get(f"/api/runs/{run}/{route}/nothing.txt").json()["error"]["code"] == "artifact_not_found"
        assert c.get(f"/api/runs/{run}/{route}/link.txt").status_code == 404, "not in the manifest"
        bad = c.get(f"/api/runs/{run}/{route}/%2e%2e/run.json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_path"


# ---------------------------------------------------------------------------- charts over time


def test_the_series_over_time_is_the_timestamps_with_the_steps_beside(
    served: Callable[[], httpx.Client], tmp_path: Path
) -> None:
    with amltrack.start_run("time", store=tmp_path / "store", outputs=None) as lg:
        for i in range(5000):
            lg.log("loss", 100.0 if i == 3210 else math.exp(-i / 1000), step=i * 2)
    c = served()
    run = amltrack.Store(tmp_path / "store").run(lg.run_id)
    loss = run.metric("loss")
    created = run.info["created_ts"]
    url = f"/api/runs/{lg.run_id}/series"
    step = c.get(url, params={"name": "loss", "width": 100}).json()
    wall = c.get(url, params={"name": "loss", "width": 100, "xaxis": "wall"}).json()
    rel = c.get(url, params={"name": "loss", "width": 100, "xaxis": "relative"}).json()
    assert step["xaxis"] == "step" and "steps" not in step
    # The same min/max points on every axis: only x differs, the steps ride along.
    assert wall["y"] == rel["y"] == step["y"] and wall["steps"] == rel["steps"] == step["x"]
    assert len(wall["x"]) <= 2 * 100 + 2 and 100.0 in wall["y"], "downsampled, the spike kept"
    ts_of = dict(zip(loss.steps, loss.timestamps))
    assert wall["x"] == [ts_of[s] for s in wall["steps"]] and wall["t0"] is None
    assert rel["t0"] == created and rel["x"] == pytest.approx([ts_of[s] - created for s in rel["steps"]])
    # A zoom over time: the points in [x0, x1] seconds, one neighbour each side, every one of them.
    a, b = loss.timestamps[1000] - created, loss.timestamps[1100] - created
    zoomed = c.get(url, params={"name": "loss", "width": 100, "xaxis": "relative", "x0": a, "x1": b}).json()
    inside = [s for s, t in zip(loss.steps, loss.timestamps) if a <= t - created <= b]
    assert zoomed["steps"][1:-1] == inside and zoomed["in_range"] == len(inside) + 2
    wall_zoom = c.get(
        url, params={"name": "loss", "width": 100, "xaxis": "wall", "x0": a + created, "x1": b + created}
    ).json()
    assert wall_zoom["steps"] == zoomed["steps"]
    bad = c.get(url, params={"name": "loss", "xaxis": "time"})
    assert bad.status_code == 400 and "xaxis='time'" in bad.json()["error"]["message"]
