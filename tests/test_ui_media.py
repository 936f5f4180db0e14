"""The rich kinds' cards (issue 19) in a real browser: Playwright driving chromium against an
``amltrack ui`` process over runs that logged images, tables, histograms and confusion matrices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import amltrack

from . import test_ui_browser as _browser_tests
from .conftest import ui_process
from .test_ui_browser import shot

# The browser tests' fixtures: a browser, and a page that fails a test on any script error or alert.
browser, page, shots = _browser_tests.browser, _browser_tests.page, _browser_tests.shots

XSS = "<img src=x onerror=alert(7)>"


def media_run(store: Path, name: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    with amltrack.start_run("media", store=store, outputs=None, name=name) as lg:
        for step in range(5):
            image = np.zeros((24, 32, 3), dtype=np.uint8)
            image[:, : 6 * (step + 1), 0] = 255
            lg.log_image("samples", image, step=step, caption=f"{XSS} step {step}")
            lg.log_histogram("weights", rng.standard_normal(1000) * (step + 1), step=step, bins=20)
            lg.log_row("per epoch", epoch=step, loss=1 / (step + 1), note=XSS if step == 0 else None)
        lg.log_histogram("weights", [float("nan"), 1.0, 2.0], step=5)
        lg.log_table(
            "per class", {"class": [f"c{i:02d}" for i in range(30)], "f1": [i / 30 for i in range(30)]}
        )
        lg.log_confusion_matrix("cm", [[5, 1], [2, 7 + seed]], labels=["cat", XSS])
        lg.log("loss", 0.5)
        return lg.run_id


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("ui-media")
    store = root / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for var in ("AMLTRACK_RUN_ID", "AMLTRACK_STORE", "AMLTRACK_EXPERIMENT", "AMLTRACK_OUTPUTS"):
            mp.delenv(var, raising=False)
        first = media_run(store, "first", 0)
        second = media_run(store, "second", 1)
    with ui_process(store, root / "ui.log", cwd=root) as url:
        yield {"url": url, "first": first, "second": second}


def ready(page: object, selector: str) -> None:
    page.wait_for_function(
        f"() => {{ const cs = [...document.querySelectorAll({selector!r})]; "
        "return cs.length > 0 && cs.every(c => c.dataset.ready); }"
    )


def test_the_run_page_shows_each_rich_kind_as_its_card(page: object, ui: dict) -> None:
    page.goto(ui["url"] + "runs/" + ui["first"])
    page.wait_for_selector("body[data-loaded]")
    ready(page, "#media .media-card")
    kinds = page.eval_on_selector_all(
        "#media .media-card", "cs => cs.map(c => [c.dataset.metric, c.dataset.kind])"
    )
    assert sorted(kinds) == [
        ["cm", "confusion_matrix"],
        ["per class", "table"],
        ["per epoch", "table"],
        ["samples", "image"],
        ["weights", "histogram"],
    ]
    shot(page, "media-run")

    # The image: the last step first, its caption as text, a slider over the steps.
    card = "#media .media-card[data-metric='samples']"
    assert page.get_attribute(card, "data-step") == "4"
    assert page.inner_text(f"{card} figcaption") == f"{XSS} step 4"
    assert page.eval_on_selector(f"{card} img", "i => i.complete && i.naturalWidth") == 32
    page.fill(f"{card} input[type=range]", "1")
    page.wait_for_function(f"() => document.querySelector({card!r}).dataset.step === '1'")
    assert page.inner_text(f"{card} figcaption") == f"{XSS} step 1"
    page.wait_for_function(f"() => document.querySelector({card + ' img'!r}).naturalWidth === 32")
    assert "step 1 · 2 of 5" in page.inner_text(f"{card} .media-step")

    # The table of log_table: 30 rows, 25 a page, sorted by a click on a column's header.
    table = "#media .media-card[data-metric='per class']"
    assert page.inner_text(f"{table} .page") == "page 1 of 2 · 30 rows"
    assert len(page.query_selector_all(f"{table} tbody tr")) == 25
    page.click(f"{table} th:nth-child(2) button")  # f1, ascending
    page.click(f"{table} th:nth-child(2) button")  # descending
    assert page.get_attribute(f"{table} th:nth-child(2)", "aria-sort") == "descending"
    assert page.inner_text(f"{table} tbody tr:first-child td:first-child") == "c29"
    page.click(f"{table} button.next")
    assert page.inner_text(f"{table} .page") == "page 2 of 2 · 30 rows"
    assert len(page.query_selector_all(f"{table} tbody tr")) == 5

    # The rows of log_row: one table, led by their steps; a script-named cell is text.
    rows = page.eval_on_selector_all(
        "#media .media-card[data-metric='per epoch'] tbody tr",
        "trs => trs.map(t => t.innerText.split('\\t'))",
    )
    assert [r[:2] for r in rows] == [["0", "0"], ["1", "1"], ["2", "2"], ["3", "3"], ["4", "4"]]
    assert rows[0][3] == XSS

    # Histograms over steps, one line each, and the NaN counted apart.
    hist = "#media .media-card[data-metric='weights']"
    assert page.get_attribute(hist, "data-steps") == "6"
    assert page.eval_on_selector(f"{hist} .chart", "e => e.data.length") == 6
    assert "1 NaN counted apart" in page.inner_text(f"{hist} .media-note")

    # The confusion matrix: a heatmap with its labels, escaped for plotly.
    cm = "#media .media-card[data-metric='cm'] .chart"
    assert page.eval_on_selector(cm, "e => e.data[0].z") == [[5, 1], [2, 7]]
    assert page.eval_on_selector(cm, "e => e.data[0].x[1]") == "&#60;img src=x onerror=alert(7)&#62;"
    # The number metric beside them is a chart as before.
    assert page.eval_on_selector_all("#charts .chart-card", "cs => cs.map(c => c.dataset.metric)") == ["loss"]


def test_the_compare_page_shows_a_rich_metric_side_by_side(page: object, ui: dict) -> None:
    page.goto(ui["url"] + f"compare?runs={ui['first']},{ui['second']}&metric=cm")  # metric=: an older URL
    page.wait_for_selector("body[data-loaded]")
    # The compare grid shows every metric at once: the rich ones as each run's card side by side.
    cm = "#compare-grid .chart-card[data-metric='cm']"
    page.wait_for_selector(f"{cm}[data-ready]")
    ready(page, f"{cm} .media-card")
    labels = page.eval_on_selector_all(f"{cm} .media-card h3", "hs => hs.map(h => h.textContent)")
    assert labels == ["first", "second"]
    z = page.eval_on_selector_all(f"{cm} .media-card .chart", "cs => cs.map(c => c.data[0].z[1][1])")
    assert z == [7, 8]
    cards = page.eval_on_selector_all("#compare-grid > .chart-card", "cs => cs.map(c => c.dataset.metric)")
    assert {"samples", "weights", "cm", "loss"} <= set(cards)
    samples = "#compare-grid .chart-card[data-metric='samples']"
    page.wait_for_function(
        "(sel) => document.querySelectorAll(sel + ' .media-card img').length === 2", arg=samples
    )
    ready(page, f"{samples} .media-card")
    shot(page, "media-compare")


def test_the_image_card_of_a_thousand_steps_opens(page: object, ui: dict, tmp_path: Path) -> None:
    store = tmp_path / "big"
    image = np.zeros((16, 16), dtype=np.uint8)
    with amltrack.start_run("big", store=store, outputs=None) as lg:
        for step in range(1000):
            lg.log_image("frames", image, step=step)
    with ui_process(store, tmp_path / "ui.log", cwd=tmp_path) as url:
        page.goto(url + "runs/" + lg.run_id)
        ready(page, "#media .media-card")
        card = "#media .media-card[data-metric='frames']"
        assert page.get_attribute(card, "data-step") == "999"
        assert "1000 of 1000" in page.inner_text(f"{card} .media-step")
