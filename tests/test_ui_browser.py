"""The UI in a real browser: Playwright driving Debian's chromium against an ``amltrack ui`` process.

Each page is saved as a screenshot under test-results/ui/, which each session empties first; a test
that fails leaves FAILED-<test>.png there. .ci/run installs chromium with apt-get; without it (or
without the playwright package) these tests skip and say why.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest

import amltrack
from amltrack import _assets
from amltrack import _format as fmt

from .conftest import child_env, ui_process, wait_until
from .sync_helpers import READ_TOKEN, ServerProcess

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-results" / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Waits bound only a failing test: generous, so that a loaded or single-core machine is never a failure.
WAIT = 60_000  # ms, for anything the page does
LIVE_WAIT = 60_000  # ms, for what only the page's polling brings in
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"  # a metric of two runs: the compare page's legend
BOLD = "<b>bold</b> &amp; <sup>2</sup>"  # one that plotly would draw as markup, were it not escaped
HTML_FILE = "odd/<img src=x onerror=alert(2)>.html"  # an artifact: the run page's tree
WEIGHTS = hashlib.sha256(b"weights").digest() * 1000  # 32,000 bytes

if not os.path.exists(CHROMIUM):
    pytest.skip(
        "chromium is not installed: apt-get install -y chromium (.ci/run does)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'"
)
pytest.importorskip("plotly", reason="plotly is not installed: pip install -e '.[ui]'")


def manifest_has(run_dir: Path, path: str, status: str) -> bool:
    manifest = run_dir / fmt.MANIFEST_FILE
    lines = manifest.read_text().splitlines() if manifest.exists() else []
    return any(f'"path":"{path}"' in line and f'"status":"{status}"' in line for line in lines)


def make_store(root: Path) -> dict[str, str]:
    """Four runs: two completed mnist runs, a failed cifar run and a crashed one, plus an asset.

    Call with $AMLTRACK_OUTPUTS_KEEP_DELETED=1: baseline's outputs/ckpt_1.pt is deleted, its copy kept.
    """
    store = root / "store"
    outputs = root / "outputs"
    outputs.mkdir()
    (outputs / "old.bin").write_bytes(b"an earlier run's")  # there before the run: preexisting
    logger = amltrack.get_logger(
        "mnist",
        store=store,
        outputs=outputs,
        name="baseline",
        tags={"model": "<b>cnn</b>"},
        params={"lr": 0.1},
    )
    # Made during the run (a file there before it would be preexisting): the mirror records a link
    # as skipped, with the reason.
    (outputs / "link.txt").symlink_to(root)
    (outputs / "ckpt_1.pt").write_bytes(b"checkpoint 1")
    for i in range(2000):
        logger.log("loss", math.exp(-i / 400) + (3.0 if i == 1234 else 0.0))
        logger.log("accuracy", 1 - math.exp(-i / 300))
    logger.log("hist", [1, 3, 5, 3, 1])
    logger.log("hist", [2, 4, 6, 4, 2, 1])
    logger.log("phase", "warmup")
    logger.log("phase", "<b>train</b>")
    logger.log(XSS, 1.0)
    logger.log(IMG, 2.0)
    logger.log(BOLD, 2.0)
    logger.upload("notes/config.txt", "lr=0.1\n")
    logger.upload("model/weights.bin", WEIGHTS)
    logger.upload(HTML_FILE, "<script>alert(3)</script>")
    wait_until(
        lambda: manifest_has(logger.run_dir, "outputs/ckpt_1.pt", "stored"),
        60,
        "the mirror to copy ckpt_1.pt",
    )
    (outputs / "ckpt_1.pt").unlink()
    wait_until(
        lambda: manifest_has(logger.run_dir, "outputs/ckpt_1.pt", "deleted"),
        60,
        "the mirror to see it deleted",
    )
    logger.finish()
    baseline = logger.run_id
    with amltrack.start_run("mnist", store=store, outputs=None, name="tuned") as other:
        for i in range(1500):
            other.log("loss", math.exp(-i / 250))
            other.log("accuracy", 1 - math.exp(-i / 200))
        other.log(IMG, 1.0)
        other.log(IMG, 3.0)
        other.log(BOLD, 1.0)
        other.upload("model/weights.bin", WEIGHTS[::-1])
    with (
        pytest.raises(ValueError),
        amltrack.start_run("cifar", store=store, outputs=None, name="diverged") as bad,
    ):
        bad.log("loss", float("inf"))
        raise ValueError("loss diverged")
    script = (
        "import amltrack, os, signal\n"
        f"lg = amltrack.get_logger('cifar', store={str(store)!r}, outputs=None, name='oom')\n"
        "lg.log('loss', 2.0).wait()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", script], env=child_env(), timeout=60, check=False)
    s = amltrack.Store(store)
    crashed = s.runs(status="crashed")[0].id
    _assets.promote(s.run(baseline), "model", "mnist-cnn")
    _assets.promote(s.run(other.run_id), "model", "mnist-cnn")
    return {
        "store": str(store),
        "baseline": baseline,
        "tuned": other.run_id,
        "failed": bad.run_id,
        "crashed": crashed,
    }


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as mp:  # as conftest's per-test fixture does, for the whole module
        mp.chdir(root)
        for var in ("AMLTRACK_RUN_ID", "AMLTRACK_STORE", "AMLTRACK_EXPERIMENT", "AMLTRACK_OUTPUTS"):
            mp.delenv(var, raising=False)
        mp.setenv("AMLTRACK_OUTPUTS_KEEP_DELETED", "1")
        runs = make_store(root)
    log = root / "ui.log"
    with ui_process(runs["store"], log, cwd=root) as url:
        yield {**runs, "url": url, "log": log}


@pytest.fixture(scope="session")
def shots() -> Path:
    """test-results/ui/, emptied once a session: no screenshot there is from an earlier one."""
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return SHOTS


@pytest.fixture(scope="module")
def browser(shots: Path) -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: object, ui: dict, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page that fails the test on a script error, a CSP violation, or any alert().

    When the test failed (or the page had problems), the page as it was is saved as
    FAILED-<test>.png. ``page.expected_errors`` lists console errors a test means to cause.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    problems: list[str] = []
    pg.expected_errors = []

    def on_console(m: object) -> None:
        if m.type == "error" and not any(e in m.text for e in pg.expected_errors):
            problems.append(f"console {m.type}: {m.text}")

    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", on_console)
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.set_default_timeout(WAIT)
    failed = request.session.testsfailed
    yield pg
    # The call's report is in by now: a failure of the test body has been counted.
    if request.session.testsfailed > failed or problems:
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        try:
            pg.screenshot(path=str(SHOTS / f"FAILED-{name}.png"), full_page=True)
        except sync_api.Error:
            pass  # a page that crashed or closed has nothing to show
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


def settled(page: object) -> None:
    """Waits for the runs page to show the answer to its latest filter, sort or page: the server
    filters now, so the table changes a request after the input does."""
    page.wait_for_function("() => document.body.dataset.loaded && !document.body.dataset.busy")


def test_runs_page_filters_and_sorts(page: object, ui: dict) -> None:
    page.goto(ui["url"])
    page.wait_for_selector("body[data-loaded]")
    assert set(rows(page)) >= {ui["baseline"], ui["tuned"], ui["failed"], ui["crashed"]}
    status = page.eval_on_selector(f"tr[data-run-id='{ui['crashed']}'] .status", "e => e.textContent")
    assert status == "crashed"
    shot(page, "runs")
    page.select_option("#filter-status", "crashed")
    settled(page)
    assert rows(page) == [ui["crashed"]]
    page.select_option("#filter-status", "")
    page.select_option("#filter-experiment", "cifar")
    settled(page)
    assert set(rows(page)) == {ui["failed"], ui["crashed"]}
    page.select_option("#filter-experiment", "")
    page.fill("#filter-text", "tune")
    settled(page)
    assert rows(page) == [ui["tuned"]]
    # Tag values are searched, and shown as text. ("<b>cnn" has an operator in it: an expression.)
    page.fill("#filter-text", "cnn")
    settled(page)
    assert rows(page) == [ui["baseline"]]
    assert page.inner_text(f"tr[data-run-id='{ui['baseline']}'] .tag") == "model=<b>cnn</b>"
    page.fill("#filter-text", "")
    settled(page)
    page.click("th[data-sort='name'] button")
    settled(page)
    names = page.eval_on_selector_all("#runs tbody .run-link", "as => as.map(a => a.textContent)")
    assert (
        names[:4] == sorted(names)[:4]
        and page.get_attribute("th[data-sort='name']", "aria-sort") == "ascending"
    )
    assert "sort=name" in page.url


def test_run_page_draws_every_chart(page: object, ui: dict) -> None:
    page.goto(ui["url"])
    page.click(f"tr[data-run-id='{ui['baseline']}'] .run-link")
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_function("() => [...document.querySelectorAll('.chart-card')].every(c => c.dataset.ready)")
    names = page.eval_on_selector_all("#charts .chart-card", "cs => cs.map(c => c.dataset.metric)")
    # In sections by the part of the name before its first "/": none for three of them.
    assert names == ["loss", "accuracy", IMG, XSS, BOLD]
    groups = page.eval_on_selector_all("#charts details.metric-group", "ds => ds.map(d => d.dataset.group)")
    assert groups == ["", "<script>alert(1)<", "<b>bold<"]
    assert traces(page, "#charts .chart") == [1, 1, 1, 1, 1]
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
    page.click("#meta-details > summary")  # the full record, below the compact header
    assert page.inner_text("#meta") and "model" in page.inner_text(".tags-table")
    tree = page.inner_text("#artifacts")
    assert "weights.bin" in tree and "31.3 KiB" in tree and "config.txt" in tree
    assert page.get_attribute("#artifacts li.file[data-path='outputs/link.txt']", "data-status") == "skipped"
    assert "links are not followed" in page.inner_text("#rejected")
    # A file name is text in the tree, and its link a download.
    html_file = f"#artifacts li.file[data-path='{HTML_FILE}']"
    assert page.inner_text(f"{html_file} a.download") == HTML_FILE.split("/")[-1]
    assert page.eval_on_selector_all("#artifacts img, #artifacts script", "es => es.length") == 0
    # A file deleted from outputs/ whose copy was kept: deleted, not rejected, and still a download.
    ckpt = "#artifacts li.file[data-path='outputs/ckpt_1.pt']"
    assert page.get_attribute(ckpt, "data-status") == "deleted"
    assert page.get_attribute(f"{ckpt} .status", "class") == "status artifact-deleted"
    assert page.inner_text(f"{ckpt} .status") == "deleted" and "last copy kept" in page.inner_text(
        f"{ckpt} .reason"
    )
    assert page.eval_on_selector(
        f"{ckpt} .status", "e => getComputedStyle(e).backgroundColor"
    ) != page.eval_on_selector(
        "#artifacts li.file[data-path='outputs/link.txt'] .status", "e => getComputedStyle(e).backgroundColor"
    )
    assert page.get_attribute(f"{ckpt} a.download", "download") == "ckpt_1.pt"
    assert "ckpt_1.pt" not in page.inner_text("#rejected")
    assert "1 rejected, 1 deleted, 1 there before the run" in page.inner_text("#artifacts > p.note")
    # A file that was in outputs/ before the run: listed as such, never rejected, no download.
    old = "#artifacts li.file[data-path='outputs/old.bin']"
    assert page.get_attribute(old, "data-status") == "preexisting"
    assert page.get_attribute(f"{old} .status", "class") == "status artifact-preexisting"
    assert page.eval_on_selector_all(f"{old} a.download", "es => es.length") == 0
    assert "old.bin" not in page.inner_text("#rejected")
    # Zoom: the chart asks for the visible steps again, every point of them.
    page.evaluate(
        "(sel) => Plotly.relayout(document.querySelector(sel), {'xaxis.range': [1200, 1260]})", loss
    )
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


def grid_card(metric: str) -> str:
    """The compare grid's chart card of a metric, by its name (which may hold quotes and markup)."""
    return f"#compare-grid .chart-card[data-metric={json.dumps(metric)}]"


def test_compare_overlays_two_runs(page: object, ui: dict) -> None:
    page.goto(ui["url"])
    page.wait_for_selector("body[data-loaded]")
    for rid in (ui["baseline"], ui["tuned"]):
        page.check(f"tr[data-run-id='{rid}'] input[type=checkbox]")
    page.click("#compare-selected")
    # One chart per metric the two runs share, every one of them at once, in a grid.
    page.wait_for_selector(f"{grid_card('loss')}[data-ready]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#compare-grid .chart-card')].every(c => c.dataset.ready)"
    )
    shared = page.eval_on_selector_all(
        "#compare-grid .chart-card[data-shared='1']", "cs => cs.map(c => c.dataset.metric)"
    )
    assert shared == ["loss", "accuracy", IMG, BOLD]
    assert traces(page, "#compare-grid .chart-card[data-shared='1'] .chart") == [2, 2, 2, 2]
    for metric in ("loss", "accuracy"):
        legend = page.eval_on_selector(f"{grid_card(metric)} .chart", "e => e.data.map(t => t.name)")
        assert sorted(legend) == ["baseline", "tuned"]
    # A metric named as HTML, in both runs: its name is text in the title and the legend's title.
    img = grid_card(IMG)
    assert page.inner_text(f"{img} h3") == IMG
    assert page.eval_on_selector(f"{img} .legendtitletext", "t => t.textContent") == IMG
    assert sorted(page.eval_on_selector_all(f"{img} .legendtext", "ts => ts.map(t => t.textContent)")) == [
        "baseline",
        "tuned",
    ]
    assert page.eval_on_selector(f"{grid_card(BOLD)} .legendtitletext", "t => t.textContent") == BOLD
    assert page.eval_on_selector_all("img, #compare-grid script", "es => es.length") == 0
    shot(page, "compare")


def test_a_live_run_s_chart_grows_without_a_reload(page: object, ui: dict) -> None:
    logger = amltrack.get_logger("live", store=ui["store"], outputs=None, name="live run")
    try:
        for i in range(10):
            logger.log("loss", 1.0 / (i + 1))
        logger.log("loss", 0.05)
        page.goto(f"{ui['url']}runs/{logger.run_id}")
        chart = "#charts .chart-card[data-metric='loss'] .chart"
        points = "([sel, n]) => document.querySelector(sel)?.dataset.points === n"
        page.wait_for_function(points, arg=[chart, "11"])
        assert page.inner_text("#run-status") == "running"
        page.evaluate("window.reloaded = false")
        for i in range(20):
            logger.log("loss", 0.04 - i / 1000)
        logger.log("acc", 0.5)  # a new metric appears as a new chart
        # No reload and no navigation: only the page's own polling can bring these in. How soon is a
        # matter of the poll interval (benchmarks/bench_ui.py), not of a timed test.
        page.wait_for_function(points, arg=[chart, "31"], timeout=LIVE_WAIT)
        page.wait_for_selector("#charts .chart-card[data-metric='acc'][data-ready]", timeout=LIVE_WAIT)
        assert page.evaluate("window.reloaded") is False, "the page was not reloaded"
        shot(page, "live")
    finally:
        logger.finish()
    page.wait_for_function(
        "() => document.querySelector('#run-status').textContent === 'completed'", timeout=LIVE_WAIT
    )


def test_assets_page_lists_every_version(page: object, ui: dict) -> None:
    page.goto(f"{ui['url']}assets")
    page.wait_for_selector("body[data-loaded]")
    versions = page.eval_on_selector_all(
        "section[data-asset='mnist-cnn'] tbody tr", "trs => trs.map(t => t.dataset.version)"
    )
    assert versions == ["2", "1"]
    assert ui["baseline"] in page.inner_text("section[data-asset='mnist-cnn']")
    page.click("section[data-asset='mnist-cnn'] tr[data-version='1'] summary")
    with page.expect_download() as info:
        page.click("section[data-asset='mnist-cnn'] tr[data-version='1'] a.download")
    assert Path(info.value.path()).read_bytes() == WEIGHTS
    shot(page, "assets")


def plot_point(page: object, chart: str, x: float, y: float) -> tuple[float, float]:
    """Where on the screen the chart's drag layer (.nsewdrag) shows the point (x, y), scrolled into view.

    A point on the layer's edge is moved 2 pixels in: plotly does not hover on the edge itself.
    """
    page.locator(chart).scroll_into_view_if_needed()
    return tuple(
        page.eval_on_selector(
            chart,
            """(gd, [x, y]) => {
        const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
        const [x0, x1] = gd.layout.xaxis.range, [y0, y1] = gd.layout.yaxis.range;
        const inside = (v, lo, size) => Math.min(Math.max(v, lo + 2), lo + size - 2);
        return [inside(box.left + (x - x0) / (x1 - x0) * box.width, box.left, box.width),
                inside(box.top + (y1 - y) / (y1 - y0) * box.height, box.top, box.height)];
    }""",
            [x, y],
        )
    )


def hover_text(page: object, chart: str, x: float, y: float) -> list[str]:
    """Moves the mouse onto the point (x, y) of a chart; the lines of the hover box plotly shows
    (its title, the x, then one line per series), once its title is ``x``: plotly throttles moves."""
    px, py = plot_point(page, chart, x, y)
    page.mouse.move(px - 30, py - 30)
    page.mouse.move(px, py, steps=3)
    box = f"{chart} .hoverlayer .legend"
    page.wait_for_function(
        "([sel, t]) => document.querySelector(sel)?.querySelector('.legendtitletext').textContent === t",
        arg=[box, str(x)],
    )
    lines = "g => [g.querySelector('.legendtitletext'), ...g.querySelectorAll('.legendtext')]"
    return page.eval_on_selector(box, lines + ".map(t => t.textContent)")


def test_a_chart_shows_values_on_hover(page: object, ui: dict) -> None:
    with amltrack.start_run("hover", store=ui["store"], outputs=None, name="hover") as logger:
        for v in (24.0, 0.1 + 0.2, 3.14159265, 1e-7, 12.5):
            logger.log("lr", v)
    page.goto(f"{ui['url']}runs/{logger.run_id}")
    chart = "#charts .chart-card[data-metric='lr'] .chart"
    page.wait_for_selector("#charts .chart-card[data-metric='lr'][data-ready]")
    # Every digit a value needs to be told apart, and no more: "24", not "24.0000"; 0.1 + 0.2 is not 0.3.
    assert hover_text(page, chart, 0, 24.0) == ["0", "lr : 24"]
    assert hover_text(page, chart, 1, 0.1 + 0.2) == ["1", "lr : 0.30000000000000004"]
    assert hover_text(page, chart, 2, 3.14159265) == ["2", "lr : 3.14159265"]
    assert hover_text(page, chart, 3, 1e-7) == ["3", "lr : 1e-7"]
    shot(page, "hover")


def test_a_metric_logged_only_in_rows_draws_a_chart(page: object, ui: dict) -> None:
    with amltrack.start_run("rows", store=ui["store"], outputs=None, name="in rows") as logger:
        logger.log("lr", 0.1)
        logger.flush()  # a block of the writer's index, then a raw one for the rows
        for i in range(500):
            acc = float("nan") if i == 250 else i / 500
            logger.log_metrics({"row_loss": math.exp(-i / 100), "row_acc": acc, "row_ok": i % 3 == 0})
    page.goto(f"{ui['url']}runs/{logger.run_id}")
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_function("() => [...document.querySelectorAll('.chart-card')].every(c => c.dataset.ready)")
    assert page.eval_on_selector_all("#charts .chart-card", "cs => cs.map(c => c.dataset.metric)") == [
        "lr",
        "row_loss",
        "row_acc",
        "row_ok",
    ]
    assert traces(page, "#charts .chart") == [1, 1, 1, 1]
    loss = "#charts .chart-card[data-metric='row_loss'] .chart"
    assert page.get_attribute(loss, "data-points") == "500"
    assert page.eval_on_selector(loss, "e => [e.data[0].x[0], e.data[0].y[0], e.data[0].x.at(-1)]") == [
        0,
        1.0,
        499,
    ]
    shot(page, "rows")


def test_dragging_on_a_chart_zooms_and_fetches_the_zoomed_steps(page: object, ui: dict) -> None:
    page.goto(f"{ui['url']}runs/{ui['baseline']}")
    loss = "#charts .chart-card[data-metric='loss'] .chart"
    page.wait_for_selector("#charts .chart-card[data-metric='loss'][data-ready]")
    page.locator(loss).scroll_into_view_if_needed()
    before = page.eval_on_selector(loss, "gd => [...gd.layout.xaxis.range]")
    assert len(page.eval_on_selector(loss, "gd => gd.data[0].x")) < 2000, "the full range is downsampled"
    box = page.eval_on_selector(
        f"{loss} .nsewdrag",
        "e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; }",
    )
    left, top, width, height = box
    with page.expect_request(
        lambda r: "/series?" in r.url and "name=loss" in r.url and "x0=" in r.url
    ) as asked:
        page.mouse.move(left + 0.3 * width, top + 0.5 * height)
        page.mouse.down()
        page.mouse.move(left + 0.5 * width, top + 0.5 * height + 3, steps=8)
        page.mouse.up()
    after = page.eval_on_selector(loss, "gd => [...gd.layout.xaxis.range]")
    assert before[0] < after[0] < after[1] < before[1] and after[1] - after[0] < 0.3 * (before[1] - before[0])
    query = parse_qs(urlparse(asked.value.url).query)
    x0, x1 = int(query["x0"][0]), int(query["x1"][0])
    assert (x0, x1) == (math.floor(after[0]), math.ceil(after[1]))
    # Every step of the zoomed range is drawn (one neighbour each side), no longer one of each bucket.
    every = (
        "([sel, a, b]) => { const x = document.querySelector(sel).data[0].x; "
        "return x[0] === Math.max(a - 1, 0) && x[x.length - 1] === b + 1 && x.length === b - a + 3; }"
    )
    page.wait_for_function(every, arg=[loss, x0, x1])
    shot(page, "zoomed")


def test_the_runs_page_shows_status_changes_without_a_reload(page: object, ui: dict) -> None:
    script = (
        "import amltrack, sys\n"
        f"lg = amltrack.get_logger('status', store={ui['store']!r}, outputs=None, name='doomed')\n"
        "lg.log('loss', 1.0).wait()\n"
        "print(lg.run_id, flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    finishing = amltrack.get_logger("status", store=ui["store"], outputs=None, name="finishing")
    try:
        doomed = child.stdout.readline().strip()
        assert doomed, "the child did not start its run"
        page.goto(ui["url"] + "?experiment=status")
        status = "([id, s]) => document.querySelector(`tr[data-run-id='${id}'] .status`)?.textContent === s"
        page.wait_for_function(status, arg=[doomed, "running"])
        page.wait_for_function(status, arg=[finishing.run_id, "running"])
        page.evaluate("window.reloaded = false")
        child.kill()  # SIGKILL: the run stays "running" on file, and reads as crashed
        child.wait(15)
        finishing.finish()
        page.wait_for_function(status, arg=[doomed, "crashed"], timeout=LIVE_WAIT)
        page.wait_for_function(status, arg=[finishing.run_id, "completed"], timeout=LIVE_WAIT)
        assert page.evaluate("window.reloaded") is False, "the page was not reloaded"
        shot(page, "runs-live")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(15)
        child.stdout.close()
        child.stdin.close()


def test_the_server_serves_the_ui_to_a_read_token(page: object, browser: object, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with amltrack.start_run("served", store=store, outputs=None, name="on the server") as logger:
        for i in range(100):
            logger.log("loss", 1.0 / (i + 1))
            logger.log("accuracy", i / 100)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read:{READ_TOKEN}\n")
    server = ServerProcess(store, tmp_path / "server.log", tokens=None, args=("--tokens-file", str(tokens)))
    server.start()
    try:
        found = re.search(r"web UI at (http://127\.0\.0\.1:\d+/ui/)", server.log.read_text())
        assert found and found.group(1) == f"{server.url}/ui/", server.log.read_text()
        ui_url = found.group(1)
        run_page = f"{ui_url}runs/{logger.run_id}"
        # Without a token: the API answers 401, a page is the sign-in form.
        page.expected_errors.append("the server responded with a status of 401")
        anon = browser.new_context()
        try:
            for path in ("api/runs", f"api/runs/{logger.run_id}/series?name=loss", f"runs/{logger.run_id}"):
                assert anon.request.get(ui_url + path).status == 401, path
        finally:
            anon.close()
        assert page.goto(run_page).status == 401
        page.fill("input[name=token]", "not-the-token-0123456789")
        page.click("button[type=submit]")
        page.wait_for_selector("p.error")
        assert "does not know this token" in page.inner_text("p.error")
        page.fill("input[name=token]", READ_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(run_page)
        page.wait_for_selector("body[data-loaded]")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.chart-card')].every(c => c.dataset.ready)"
        )
        assert page.eval_on_selector_all("#charts .chart-card", "cs => cs.map(c => c.dataset.metric)") == [
            "loss",
            "accuracy",
        ]
        assert traces(page, "#charts .chart") == [1, 1]
        assert page.get_attribute("#charts .chart-card[data-metric='loss'] .chart", "data-points") == "100"
        shot(page, "server-run")
        # The sign-in cookie is the page's only key: the same request without it is still refused.
        assert page.request.get(ui_url + "api/runs").status == 200
        assert page.context.cookies()[0]["httpOnly"] is True
        page.context.clear_cookies()
        assert page.request.get(ui_url + "api/runs").status == 401
    finally:
        server.stop()


META = (
    "(field) => [...document.querySelectorAll('#meta tr')].find(tr => tr.cells[0].textContent === field)"
    "?.cells[1].textContent"
)


def test_a_run_s_metadata_table_shows_its_end_without_a_reload(page: object, ui: dict) -> None:
    logger = amltrack.get_logger("live-meta", store=ui["store"], outputs=None, name="ending")
    try:
        logger.log("loss", 1.0).wait()
        page.goto(f"{ui['url']}runs/{logger.run_id}")
        page.wait_for_selector("body[data-loaded]")
        assert page.evaluate(META, "Status") == "running" and page.evaluate(META, "Ended") == "–"
        page.evaluate("window.reloaded = false")
    finally:
        logger.finish()
    # Only the page's polling can bring the end in: the badge and the table alike.
    ended = (
        f"() => {{ const cell = {META}; "
        "return document.querySelector('#run-status').textContent === 'completed' && "
        "cell('Status') === 'completed' && /^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d$/.test(cell('Ended')); }"
    )
    page.wait_for_function(ended, timeout=LIVE_WAIT)
    assert page.evaluate("window.reloaded") is False, "the page was not reloaded"
    assert page.evaluate(META, "Duration") == page.inner_text("#run-duration")
    shot(page, "live-ended")


def test_compare_resolves_short_refs_to_their_runs(page: object, ui: dict) -> None:
    with amltrack.start_run("compare-refs", store=ui["store"], outputs=None) as newest:  # unnamed, and last
        for i in range(50):
            newest.log("loss", 1.0 / (i + 1))
    short = {rid: rid.split("-")[1][:8] for rid in (ui["baseline"], ui["failed"], newest.run_id)}
    refs = [short[ui["baseline"]][:6], short[ui["failed"]][:6], "last", "nosuchrun"]
    page.expected_errors.append("the server responded with a status of 404")  # nosuchrun, asked of the API
    page.goto(f"{ui['url']}compare?runs={','.join(refs)}&metric=loss")  # metric=: a URL of the one-chart page
    page.wait_for_selector(f"{grid_card('loss')}[data-ready]")
    chips = page.eval_on_selector_all(
        "#compare-runs li.chip[data-run-id]",
        """lis => lis.map(li =>
        [li.dataset.runId, li.querySelector('a').textContent, li.querySelector('.status').textContent])""",
    )
    # Each run by its name (the unnamed one by its short id) and its real status, not the ref and "other".
    assert chips == [
        [ui["baseline"], "baseline", "completed"],
        [ui["failed"], "diverged", "failed"],
        [newest.run_id, short[newest.run_id], "completed"],
    ]
    assert page.inner_text("#compare-runs li.chip[data-ref='nosuchrun']").startswith("nosuchrun not found")
    names = page.eval_on_selector(f"{grid_card('loss')} .chart", "e => e.data.map(t => t.name)")
    assert names == ["baseline", "diverged", short[newest.run_id]]
    assert parse_qs(urlparse(page.url).query)["runs"] == [",".join(refs)], "the URL keeps the refs"
    shot(page, "compare-refs")


def test_a_missing_run_s_page_says_so_and_leads_back(page: object, ui: dict) -> None:
    page.expected_errors.append("the server responded with a status of 404")  # the page itself is the 404
    # A ref with a slash in it is no run page's URL: the page for an unknown URL, as plain.
    for ref, title, text in (
        ("nosuchrun", "Run not found", "There is no run “nosuchrun” in this store."),
        (IMG, "Run not found", f"There is no run “{IMG}” in this store."),
        (XSS, "Page not found", f"There is no page at /runs/{XSS}."),
    ):
        answer = page.goto(f"{ui['url']}runs/{quote(ref, safe='')}")
        assert answer.status == 404 and answer.headers["content-type"].startswith("text/html")
        assert page.inner_text("main h1") == title
        # The ref is text on the page, never markup, and no command line is offered.
        assert page.inner_text("main p.error") == text
        assert page.eval_on_selector_all("main script, main img", "es => es.length") == 0
        assert "amltrack history" not in page.inner_text("body") and "--store" not in page.inner_text("body")
    shot(page, "missing-run")
    page.click("main a.back")
    page.wait_for_selector("body[data-loaded]")
    assert ui["baseline"] in rows(page)
