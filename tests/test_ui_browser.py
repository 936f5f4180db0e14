"""The UI in a real browser: Playwright driving Debian's chromium against an ``amltrack ui`` process.

Each page is saved as a screenshot under test-results/ui/. .ci/run installs chromium with apt-get;
without it (or without the playwright package) these tests skip and say why.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import amltrack
from amltrack import _assets

from .conftest import child_env, wait_until

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-results" / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = "<script>alert(1)</script>"
WEIGHTS = hashlib.sha256(b"weights").digest() * 1000  # 32,000 bytes

if not os.path.exists(CHROMIUM):
    pytest.skip("chromium is not installed: apt-get install -y chromium (.ci/run does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
pytest.importorskip("plotly", reason="plotly is not installed: pip install -e '.[ui]'")


def make_store(root: Path) -> dict[str, str]:
    """Four runs: two completed mnist runs, a failed cifar run and a crashed one, plus an asset."""
    store = root / "store"
    outputs = root / "outputs"
    outputs.mkdir()
    (outputs / "link.txt").symlink_to(root)  # the mirror records a link as skipped, with the reason
    logger = amltrack.get_logger("mnist", store=store, outputs=outputs, name="baseline",
                                 tags={"model": "<b>cnn</b>"}, params={"lr": 0.1})
    for i in range(2000):
        logger.log("loss", math.exp(-i / 400) + (3.0 if i == 1234 else 0.0))
        logger.log("accuracy", 1 - math.exp(-i / 300))
    logger.log("hist", [1, 3, 5, 3, 1])
    logger.log("hist", [2, 4, 6, 4, 2, 1])
    logger.log("phase", "warmup")
    logger.log("phase", "<b>train</b>")
    logger.log(XSS, 1.0)
    logger.upload("notes/config.txt", "lr=0.1\n")
    logger.upload("model/weights.bin", WEIGHTS)
    logger.finish()
    baseline = logger.run_id
    with amltrack.start_run("mnist", store=store, outputs=None, name="tuned") as other:
        for i in range(1500):
            other.log("loss", math.exp(-i / 250))
            other.log("accuracy", 1 - math.exp(-i / 200))
        other.upload("model/weights.bin", WEIGHTS[::-1])
    with pytest.raises(ValueError), amltrack.start_run("cifar", store=store, outputs=None, name="diverged") as bad:
        bad.log("loss", float("inf"))
        raise ValueError("loss diverged")
    script = ("import amltrack, os, signal\n"
              f"lg = amltrack.get_logger('cifar', store={str(store)!r}, outputs=None, name='oom')\n"
              "lg.log('loss', 2.0).wait()\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", script], env=child_env(), timeout=60, check=False)
    s = amltrack.Store(store)
    crashed = s.runs(status="crashed")[0].id
    _assets.promote(s.run(baseline), "model", "mnist-cnn")
    _assets.promote(s.run(other.run_id), "model", "mnist-cnn")
    return {"store": str(store), "baseline": baseline, "tuned": other.run_id, "failed": bad.run_id,
            "crashed": crashed}


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as mp:  # as conftest's per-test fixture does, for the whole module
        mp.chdir(root)
        for var in ("AMLTRACK_RUN_ID", "AMLTRACK_STORE", "AMLTRACK_EXPERIMENT", "AMLTRACK_OUTPUTS"):
            mp.delenv(var, raising=False)
        runs = make_store(root)
    log = root / "ui.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "amltrack", "ui", "--store", runs["store"], "--port", "0"],
                                stdout=subprocess.DEVNULL, stderr=err, env=child_env(), cwd=root)
    try:
        found = wait_until(lambda: proc.poll() is not None or re.search(r"http://127\.0\.0\.1:\d+/", log.read_text()),
                           30, "the UI to print its URL")
        assert proc.poll() is None, log.read_text()
        yield {**runs, "url": found.group(0), "log": log}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: object, ui: dict) -> Iterator[object]:
    """A fresh page that fails the test on a script error, a CSP violation, or any alert()."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert not problems, problems


def shot(page: object, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def traces(page: object, selector: str) -> list[int]:
    """The number of series plotly drew in each chart matching ``selector``."""
    return page.eval_on_selector_all(
        selector, "els => els.map(e => e.querySelectorAll('.scatterlayer .trace').length)"
    )


def rows(page: object) -> list[str]:
    return page.eval_on_selector_all("#runs tbody tr", "trs => trs.map(t => t.dataset.runId)")


def test_runs_page_filters_and_sorts(page: object, ui: dict) -> None:
    page.goto(ui["url"])
    page.wait_for_selector("body[data-loaded]")
    assert set(rows(page)) >= {ui["baseline"], ui["tuned"], ui["failed"], ui["crashed"]}
    status = page.eval_on_selector(f"tr[data-run-id='{ui['crashed']}'] .status", "e => e.textContent")
    assert status == "crashed"
    shot(page, "runs")
    page.select_option("#filter-status", "crashed")
    assert rows(page) == [ui["crashed"]]
    page.select_option("#filter-status", "")
    page.select_option("#filter-experiment", "cifar")
    assert set(rows(page)) == {ui["failed"], ui["crashed"]}
    page.select_option("#filter-experiment", "")
    page.fill("#filter-text", "tune")
    assert rows(page) == [ui["tuned"]]
    page.fill("#filter-text", "<b>cnn")  # tags are searched, and shown as text
    assert rows(page) == [ui["baseline"]]
    assert page.inner_text(f"tr[data-run-id='{ui['baseline']}'] .tag") == "model=<b>cnn</b>"
    page.fill("#filter-text", "")
    page.click("th[data-sort='name'] button")
    names = page.eval_on_selector_all("#runs tbody .run-link", "as => as.map(a => a.textContent)")
    assert names[:4] == sorted(names)[:4] and page.get_attribute("th[data-sort='name']", "aria-sort") == "ascending"
    assert "sort=name" in page.url


def test_run_page_draws_every_chart(page: object, ui: dict) -> None:
    page.goto(ui["url"])
    page.click(f"tr[data-run-id='{ui['baseline']}'] .run-link")
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_function("() => [...document.querySelectorAll('.chart-card')].every(c => c.dataset.ready)")
    names = page.eval_on_selector_all("#charts .chart-card", "cs => cs.map(c => c.dataset.metric)")
    assert names == ["loss", "accuracy", XSS]
    assert traces(page, "#charts .chart") == [1, 1, 1]
    assert traces(page, "#lists .chart") == [1]
    # The script-named metric is a heading's text: no element was made from it, no alert fired.
    assert page.inner_text(f"#charts .chart-card[data-metric='{XSS}'] h3") == XSS
    assert page.eval_on_selector_all("#charts script", "s => s.length") == 0
    loss = "#charts .chart-card[data-metric='loss'] .chart"
    points = page.eval_on_selector(loss, "e => e.data[0].y")
    width = page.eval_on_selector(loss, "e => e.clientWidth")
    assert page.get_attribute(loss, "data-points") == "2000"
    assert len(points) <= 2 * width + 2 < 2000 and max(points) > 3.0, "downsampled to the width, spike kept"
    assert "showing" in page.inner_text("#charts .chart-card[data-metric='loss'] .chart-info")
    assert page.inner_text("#lists .chart-info").startswith("record 2 of 2, step 1, 6 values")
    values = page.eval_on_selector_all("#strings-table tbody td.value", "tds => tds.map(t => t.textContent)")
    assert values == ["warmup", "<b>train</b>"]
    assert page.inner_text("#meta") and "model" in page.inner_text(".tags-table")
    tree = page.inner_text("#artifacts")
    assert "weights.bin" in tree and "31.3 KiB" in tree and "config.txt" in tree
    assert page.get_attribute("#artifacts li.file[data-path='outputs/link.txt']", "data-status") == "skipped"
    assert "links are not followed" in page.inner_text("#rejected")
    # Zoom: the chart asks for the visible steps again, every point of them.
    page.evaluate("(sel) => Plotly.relayout(document.querySelector(sel), {'xaxis.range': [1200, 1260]})", loss)
    zoomed = "(sel) => { const x = document.querySelector(sel).data[0].x; return x.length < 100 && x.includes(1234); }"
    page.wait_for_function(zoomed, arg=loss)
    assert max(page.eval_on_selector(loss, "e => e.data[0].y")) > 3.0
    page.evaluate("(sel) => Plotly.relayout(document.querySelector(sel), {'xaxis.autorange': true})", loss)
    page.wait_for_function("(sel) => document.querySelector(sel).data[0].x.length > 100", arg=loss)
    page.click("#charts .chart-card[data-metric='loss'] .log-toggle")
    page.wait_for_function("(sel) => document.querySelector(sel).layout.yaxis.type === 'log'", arg=loss)
    shot(page, "run")


def test_an_artifact_downloads_byte_for_byte(page: object, ui: dict, tmp_path: Path) -> None:
    page.goto(f"{ui['url']}runs/{ui['baseline']}")
    page.wait_for_selector("#artifacts a.download[data-path='model/weights.bin']")
    with page.expect_download() as info:
        page.click("#artifacts a.download[data-path='model/weights.bin']")
    download = info.value
    assert download.suggested_filename == "weights.bin"
    target = tmp_path / "weights.bin"
    download.save_as(str(target))
    assert target.read_bytes() == WEIGHTS


def test_compare_overlays_two_runs(page: object, ui: dict) -> None:
    page.goto(ui["url"])
    page.wait_for_selector("body[data-loaded]")
    for rid in (ui["baseline"], ui["tuned"]):
        page.check(f"tr[data-run-id='{rid}'] input[type=checkbox]")
    page.click("#compare-selected")
    page.wait_for_selector("#compare-chart[data-ready]")
    assert page.input_value("#compare-metric") == "loss"
    assert traces(page, "#compare-chart .chart") == [2]
    legend = page.eval_on_selector("#compare-chart .chart", "e => e.data.map(t => t.name)")
    assert sorted(legend) == ["baseline", "tuned"]
    page.select_option("#compare-metric", "accuracy")
    page.wait_for_function("() => document.querySelector('#compare-chart h3').textContent === 'accuracy'")
    page.wait_for_selector("#compare-chart[data-ready]")
    assert traces(page, "#compare-chart .chart") == [2]
    assert "metric=accuracy" in page.url
    shot(page, "compare")


def test_a_live_run_s_chart_grows_without_a_reload(page: object, ui: dict) -> None:
    logger = amltrack.get_logger("live", store=ui["store"], outputs=None, name="live run")
    try:
        for i in range(10):
            logger.log("loss", 1.0 / (i + 1))
        logger.log("loss", 0.05).wait()
        page.goto(f"{ui['url']}runs/{logger.run_id}")
        chart = "#charts .chart-card[data-metric='loss'] .chart"
        points = "([sel, n]) => document.querySelector(sel)?.dataset.points === n"
        page.wait_for_function(points, arg=[chart, "11"])
        assert page.inner_text("#run-status") == "running"
        page.evaluate("window.reloaded = false")
        for i in range(20):
            logger.log("loss", 0.04 - i / 1000)
        logger.log("acc", 0.5).wait()  # a new metric appears as a new chart
        landed = time.monotonic()
        page.wait_for_function(points, arg=[chart, "31"], timeout=5000)
        page.wait_for_selector("#charts .chart-card[data-metric='acc'][data-ready]", timeout=5000)
        took = time.monotonic() - landed
        assert took < 2.0, f"the chart took {took:.2f} s to show records on disk"
        assert page.evaluate("window.reloaded") is False, "the page was not reloaded"
        shot(page, "live")
    finally:
        logger.finish()
    page.wait_for_function("() => document.querySelector('#run-status').textContent === 'completed'", timeout=5000)


def test_assets_page_lists_every_version(page: object, ui: dict) -> None:
    page.goto(f"{ui['url']}assets")
    page.wait_for_selector("body[data-loaded]")
    versions = page.eval_on_selector_all("section[data-asset='mnist-cnn'] tbody tr",
                                         "trs => trs.map(t => t.dataset.version)")
    assert versions == ["2", "1"]
    assert ui["baseline"] in page.inner_text("section[data-asset='mnist-cnn']")
    page.click("section[data-asset='mnist-cnn'] tr[data-version='1'] summary")
    with page.expect_download() as info:
        page.click("section[data-asset='mnist-cnn'] tr[data-version='1'] a.download")
    assert Path(info.value.path()).read_bytes() == WEIGHTS
    shot(page, "assets")
