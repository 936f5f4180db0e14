"""The run page's charts and artifact previews in a real browser (issue #18): the x-axis and
smoothing controls, metric sections by prefix, combined charts, exact hover values, widening, the
compact header that follows the run's end, and a preview of each kind.

The browser, the page (which fails a test on any script error, CSP violation or alert()) and the
screenshots are tests/test_ui_browser.py's.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

import amltrack

from . import test_ui_browser as _browser
from .conftest import ui_process
from .test_ui_browser import WAIT, shot, traces

# The fixtures this module shares, by assignment (an import of them reads as unused to a linter).
shots, browser, page = _browser.shots, _browser.browser, _browser.page

LIVE_WAIT = WAIT
LOSS = "#charts .chart-card[data-metric='train/loss']"
READY = "() => [...document.querySelectorAll('.chart-card')].every(c => c.dataset.ready)"


def png(width: int, height: int) -> bytes:
    """A valid PNG of one grey: the format's own chunks, so the browser decodes it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="red"/>'
    "<script>alert(4)</script></svg>"
)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("charts")
    store = root / "store"
    params = {"lr": 0.1, "seed": 123456789, "bs": 32}
    with amltrack.start_run("charts", store=store, outputs=None, name="prefixed", params=params) as lg:
        for i in range(300):
            lg.log_metrics(
                {
                    "train/loss": math.exp(-i / 80) + 0.1 * math.sin(i),
                    "train/acc": i / 300,
                    "val/loss": 1.5 * math.exp(-i / 90),
                },
                step=i * 1000,
            )
            lg.log("lr", 0.1 + 0.2 if i == 1 else 0.1 + i * 1e-9, step=i * 1000)
        lg.upload("notes.txt", "hello\n<b>world</b>\n")
        lg.upload("cfg.json", '{"a":[1,2],"b":{"c":"<script>alert(5)</script>"}}')
        lg.upload("table.csv", "x,y\n1,<b>2</b>\n3,4\n")
        lg.upload("plot.png", png(30, 10))
        lg.upload("plot.svg", SVG)
        lg.upload("blob.bin", bytes(range(256)))
    log = root / "ui.log"
    with ui_process(store, log, cwd=root) as url:
        yield {"store": str(store), "run": lg.run_id, "url": url, "page": f"{url}runs/{lg.run_id}"}


def open_run(page: object, ui: dict, query: str = "") -> None:
    page.goto(ui["page"] + query)
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_function(READY)


def query(page: object) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def test_the_x_axis_control_redraws_every_chart_over_step_wall_or_relative_time(
    page: object, ui: dict
) -> None:
    open_run(page, ui)
    chart = f"{LOSS} .chart"
    axis = (
        "gd => [gd.dataset.xaxis, gd.layout.xaxis.type, gd.layout.xaxis.title.text, gd.data[0].x.slice(0, 2)]"
    )
    assert page.eval_on_selector(chart, axis) == ["step", "linear", "step", [0, 1000]]
    page.select_option("#chart-xaxis", "wall")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#charts .chart')].every(c => c.dataset.xaxis === 'wall')"
    )
    kind, typ, title, xs = page.eval_on_selector(chart, axis)
    assert (typ, title) == ("date", "wall time") and all(x.startswith("20") and len(x) == 23 for x in xs)
    assert query(page)["xaxis"] == ["wall"]
    page.select_option("#chart-xaxis", "relative")
    page.wait_for_function("(sel) => document.querySelector(sel).dataset.xaxis === 'relative'", arg=chart)
    kind, typ, title, xs = page.eval_on_selector(chart, axis)
    assert typ == "linear" and title == "relative time (s)" and 0 <= xs[0] <= xs[1] < 60
    # Hover in time says the step too; zooming asks for the seconds shown, on the same axis.
    assert "(step 0)" in page.eval_on_selector(chart, "gd => gd.data[0].text[0]")
    first, last = page.eval_on_selector(chart, "gd => [gd.data[0].x[0], gd.data[0].x.at(-1)]")
    middle = (first + last) / 2
    with page.expect_request(
        lambda r: "name=train%2Floss" in r.url and "xaxis=relative" in r.url and "x0=" in r.url
    ) as asked:
        page.evaluate(
            "([sel, a, b]) => Plotly.relayout(document.querySelector(sel), {'xaxis.range': [a, b]})",
            [chart, first, middle],
        )
    assert float(parse_qs(urlparse(asked.value.url).query)["x1"][0]) == middle
    page.wait_for_function(
        "([sel, b]) => { const x = document.querySelector(sel).data[0].x; return x.at(-2) <= b && x.length < 300; }",
        arg=[chart, middle],
    )
    # The choice is the URL's: the page opened from it draws over relative time from the start.
    page.goto(page.url)
    page.wait_for_function(READY)
    assert page.input_value("#chart-xaxis") == "relative"
    assert page.eval_on_selector(chart, "gd => gd.dataset.xaxis") == "relative"
    shot(page, "charts-relative")


def ema(ys: list[float], w: float) -> list[float]:
    out, acc = [], 0.0
    for n, y in enumerate(ys, 1):
        acc = acc * w + (1 - w) * y
        out.append(acc / (1 - w**n))
    return out


def test_smoothing_draws_the_debiased_average_over_a_faint_raw_line(page: object, ui: dict) -> None:
    open_run(page, ui)
    chart = f"{LOSS} .chart"
    assert traces(page, chart) == [1]
    page.eval_on_selector(
        "#chart-smoothing", "e => { e.value = '0.9'; e.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    page.wait_for_function("(sel) => document.querySelector(sel).data.length === 2", arg=chart)
    raw, smoothed = page.eval_on_selector(
        chart, "gd => gd.data.map(t => ({meta: t.meta, y: t.y, opacity: t.opacity, hover: t.hoverinfo}))"
    )
    assert raw["meta"] == "raw" and raw["opacity"] < 0.5 and raw["hover"] == "skip"
    assert smoothed["meta"] == "smoothed" and smoothed["opacity"] is None
    assert smoothed["y"][0] == raw["y"][0], "debiased: the first point is the first value, not 0.1 of it"
    assert smoothed["y"] == pytest.approx(ema(raw["y"], 0.9), rel=1e-12)
    assert traces(page, chart) == [2]
    assert query(page)["smoothing"] == ["0.9"] and page.inner_text("#chart-smoothing-value") == "0.9"
    # A constant series stays as it is, as TensorBoard's does; from the URL after a reload.
    page.goto(page.url)
    page.wait_for_function(READY)
    assert page.input_value("#chart-smoothing") == "0.9"
    assert traces(page, chart) == [2]
    page.eval_on_selector(
        "#chart-smoothing", "e => { e.value = '0'; e.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    page.wait_for_function("(sel) => document.querySelector(sel).data.length === 1", arg=chart)
    assert "smoothing" not in query(page)


def test_metrics_are_grouped_by_prefix_into_sections_that_collapse(page: object, ui: dict) -> None:
    open_run(page, ui)
    groups = page.eval_on_selector_all(
        "#charts details.metric-group",
        "ds => ds.map(d => [d.dataset.group, [...d.querySelectorAll('.chart-card')].map(c => c.dataset.metric)])",
    )
    assert groups == [["train", ["train/loss", "train/acc"]], ["val", ["val/loss"]], ["", ["lr"]]]
    assert page.inner_text("#charts details[data-group=''] > summary").startswith("ungrouped")
    assert page.is_visible(LOSS)
    page.click("#charts details[data-group='train'] > summary")
    page.wait_for_function("() => !document.querySelector(\"#charts details[data-group='train']\").open")
    assert not page.is_visible(LOSS) and page.is_visible("#charts .chart-card[data-metric='val/loss']")
    page.click("#charts details[data-group='train'] > summary")
    page.wait_for_selector(LOSS, state="visible")


def test_a_chart_draws_the_metrics_picked_for_it_and_the_url_keeps_them(page: object, ui: dict) -> None:
    open_run(page, ui)
    options = page.eval_on_selector_all(f"{LOSS} select.combine option", "os => os.map(o => o.value)")
    assert options == ["", "train/acc", "val/loss", "lr"]
    page.select_option(f"{LOSS} select.combine", "val/loss")
    page.wait_for_function("(sel) => document.querySelector(sel).data.length === 2", arg=f"{LOSS} .chart")
    assert page.eval_on_selector(f"{LOSS} .chart", "gd => gd.data.map(t => t.name)") == [
        "train/loss",
        "val/loss",
    ]
    assert page.eval_on_selector(f"{LOSS} .chart", "gd => gd.layout.showlegend") is True
    assert query(page)["combine"] == ["train/loss\nval/loss"]
    page.goto(page.url)
    page.wait_for_function(READY)
    page.wait_for_function("(sel) => document.querySelector(sel).data.length === 2", arg=f"{LOSS} .chart")
    assert traces(page, f"{LOSS} .chart") == [2]
    shot(page, "charts-combined")
    page.click(f"{LOSS} .combined .chip[data-metric='val/loss'] button.remove")
    page.wait_for_function("(sel) => document.querySelector(sel).data.length === 1", arg=f"{LOSS} .chart")
    assert "combine" not in query(page)


def unified_hover(page: object, chart: str, step: int) -> list[str]:
    """The lines of plotly's unified hover box with the mouse over ``step``, once its title (the x
    under the mouse) says so: plotly throttles mouse moves."""
    page.locator(chart).scroll_into_view_if_needed()
    left, top, width, height = page.eval_on_selector(
        f"{chart} .nsewdrag",
        "e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; }",
    )
    x0, x1 = page.eval_on_selector(chart, "gd => gd.layout.xaxis.range")
    page.mouse.move(left + width / 2, top + height / 3)
    page.mouse.move(left + (step - x0) / (x1 - x0) * width, top + height / 2, steps=3)
    box = f"{chart} .hoverlayer .legend"
    page.wait_for_function(
        "([sel, t]) => document.querySelector(sel)?.querySelector('.legendtitletext').textContent === t",
        arg=[box, str(step)],
    )
    return page.eval_on_selector(
        box,
        "g => [g.querySelector('.legendtitletext').textContent, "
        "...[...g.querySelectorAll('.legendtext')].map(t => t.textContent)]",
    )


def test_hover_shows_every_series_at_the_cursor_s_step_exactly(page: object, ui: dict) -> None:
    open_run(page, ui, "?combine=lr%0Aval%2Floss")
    chart = "#charts .chart-card[data-metric='lr'] .chart"
    page.wait_for_function("(sel) => document.querySelector(sel).data.length === 2", arg=chart)
    # The step with no thousands separator, each value with every digit it needs (0.1 + 0.2).
    _, lr, val = unified_hover(page, chart, 1000)
    assert lr == "lr : 0.30000000000000004" and val == f"val/loss : {1.5 * math.exp(-1 / 90)!r}"
    assert unified_hover(page, chart, 298000)[1] == f"lr : {0.1 + 298 * 1e-9!r}"
    shot(page, "charts-hover")


def test_a_chart_widens_to_the_page_and_escape_brings_it_back(page: object, ui: dict) -> None:
    open_run(page, ui)
    card, chart = LOSS, f"{LOSS} .chart"
    narrow = page.eval_on_selector(chart, "gd => [gd.clientWidth, gd.layout.height]")
    with page.expect_request(lambda r: "name=train%2Floss" in r.url and "/series?" in r.url) as asked:
        page.click(f"{card} button.widen")
    page.wait_for_function("(sel) => document.querySelector(sel).layout.height > 600", arg=chart)
    wide = page.eval_on_selector(chart, "gd => [gd.clientWidth, gd.layout.height]")
    assert wide[0] > 1.5 * narrow[0] and wide[1] > 2 * narrow[1]
    assert int(parse_qs(urlparse(asked.value.url).query)["width"][0]) >= wide[0]
    assert page.get_attribute(f"{card} button.widen", "aria-pressed") == "true"
    shot(page, "charts-wide")
    page.keyboard.press("Escape")
    page.wait_for_function("(sel) => document.querySelector(sel).layout.height === 260", arg=chart)
    assert "chart-wide" not in page.get_attribute(card, "class")
    page.click(f"{card} button.widen")
    page.wait_for_function("(sel) => document.querySelector(sel).layout.height > 600", arg=chart)
    page.click(f"{card} button.widen")
    page.wait_for_function("(sel) => document.querySelector(sel).layout.height === 260", arg=chart)


def test_the_compact_header_leaves_the_charts_above_the_fold_and_follows_the_run_s_end(
    page: object, ui: dict
) -> None:
    logger = amltrack.get_logger(
        "header", store=ui["store"], outputs=None, name="ending", params={"seed": 1234567}
    )
    try:
        logger.log("loss", 1.0).wait()
        page.goto(f"{ui['url']}runs/{logger.run_id}")
        page.wait_for_selector("#charts .chart-card[data-ready]")
        assert page.inner_text("#run-status") == "running"
        assert page.is_hidden("#run-facts [data-fact='ended']")
        assert page.inner_text("#run-facts [data-param='seed']") == "seed=1234567"
        assert page.inner_text("#run-facts [data-fact='experiment']") == "experiment header"
        # The full record is one click away, and the first chart is on the first screen.
        assert page.eval_on_selector("#meta-details", "d => d.open") is False
        assert page.eval_on_selector("#charts .chart-card", "c => c.getBoundingClientRect().bottom") < 900
        page.evaluate("window.reloaded = false")
    finally:
        logger.finish()
    page.wait_for_function(
        "() => document.querySelector('#run-status').textContent === 'completed' && "
        "!document.querySelector(\"#run-facts [data-fact='ended']\").hidden",
        timeout=LIVE_WAIT,
    )
    assert page.evaluate("window.reloaded") is False
    assert page.inner_text("#run-ended")[:4] == "20" + logger.run_id[2:4]
    page.click("#meta-details > summary")
    assert page.is_visible("#meta") and "seed" in page.inner_text(".params-table")
    shot(page, "charts-header")


def open_preview(page: object, path: str) -> None:
    page.click(f"#artifacts li.file[data-path='{path}'] button.preview-button")
    page.wait_for_selector(f"#artifact-preview[data-kind] .preview-head strong:text-is('{path}')")


def test_artifacts_preview_as_text_json_a_table_or_an_image(page: object, ui: dict) -> None:
    open_run(page, ui)
    open_preview(page, "notes.txt")
    assert (
        page.inner_text("#artifact-preview pre") == "hello\n<b>world</b>\n".rstrip("\n")
        or page.eval_on_selector("#artifact-preview pre", "p => p.textContent") == "hello\n<b>world</b>\n"
    )
    assert page.get_attribute("#artifact-preview a.download", "download") == "notes.txt"
    assert query(page)["artifact"] == ["notes.txt"]
    open_preview(page, "cfg.json")
    assert page.eval_on_selector("#artifact-preview pre", "p => p.textContent") == (
        '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {\n    "c": "<script>alert(5)</script>"\n  }\n}'
    )
    open_preview(page, "table.csv")
    cells = page.eval_on_selector_all(
        "#artifact-preview table th, #artifact-preview table td", "cs => cs.map(c => c.textContent)"
    )
    assert cells == ["x", "y", "1", "<b>2</b>", "3", "4"]
    for path, size in (("plot.png", [30, 10]), ("plot.svg", [40, 20])):
        open_preview(page, path)
        page.wait_for_function("() => document.querySelector('#artifact-preview img')?.complete")
        assert (
            page.eval_on_selector("#artifact-preview img", "i => [i.naturalWidth, i.naturalHeight]") == size
        )
        assert "/images/" in page.get_attribute("#artifact-preview img", "src")
    open_preview(page, "blob.bin")
    assert "No preview" in page.inner_text("#artifact-preview")
    # Nothing of a file's content became markup: no script, no element but the one <img>.
    assert page.eval_on_selector_all("#artifact-preview script, #artifact-preview b", "es => es.length") == 0
    page.goto(page.url.replace("artifact=blob.bin", "artifact=plot.svg"))
    page.wait_for_selector("#artifact-preview[data-kind='image'] img")
    shot(page, "charts-preview")
    page.click("#artifact-preview button.close")
    assert page.is_hidden("#artifact-preview") and "artifact" not in query(page)


def test_an_image_preview_s_bytes_are_still_an_attachment(page: object, ui: dict, tmp_path: Path) -> None:
    open_run(page, ui)
    open_preview(page, "plot.png")
    with page.expect_download() as info:
        page.click("#artifact-preview a.download")
    target = tmp_path / "plot.png"
    info.value.save_as(str(target))
    assert target.read_bytes() == png(30, 10)


def test_system_metrics_have_their_own_section_closed_at_first(page: object, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with amltrack.start_run("sys", store=store, outputs=None, system_metrics=False) as lg:
        for i in range(5):
            lg.log_metrics({"loss": 1 / (i + 1), "system/cpu_percent": 10.0 * i}, step=i)
    with ui_process(store, tmp_path / "ui.log", cwd=tmp_path) as url:
        page.goto(f"{url}runs/{lg.run_id}")
        page.wait_for_selector("body[data-loaded]")
        page.wait_for_function(READY)
        cpu = "#charts details[data-group='system'] .chart-card[data-metric='system/cpu_percent']"
        assert page.eval_on_selector("#charts details[data-group='system']", "d => d.open") is False
        assert page.eval_on_selector("#charts details[data-group='']", "d => d.open") is True
        assert not page.is_visible(cpu)
        page.click("#charts details[data-group='system'] > summary")
        page.wait_for_selector(cpu, state="visible")
        page.wait_for_function("(sel) => document.querySelector(sel).offsetWidth > 100", arg=f"{cpu} .chart")
