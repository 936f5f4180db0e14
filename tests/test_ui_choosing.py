"""Choosing between runs in a real browser (issue #18): the runs table's columns, sorting, filter,
pages and empty states, and the compare page's table, grid, parallel coordinates and scatter.

Playwright drives Debian's chromium against a real ``amltrack ui`` process, with the fixtures of
tests/test_ui_browser.py (a page that fails on any script error, CSP violation or alert()).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

import amltrack

from . import test_ui_browser as browser_tests
from .conftest import ui_process
from .test_ui_browser import SHOTS, settled, shot, traces

# The browser and its checked page, shared with tests/test_ui_browser.py; "ui" is this module's own.
browser = browser_tests.browser
page = browser_tests.page

GRID = 120  # runs of the sweep: more than a page of 100
LRS = (0.1, 0.03, 0.01, 0.003)
BATCHES = (16, 32, 64)
BIG = 1234567  # a param that must read exactly so: no thousands separator
CLOSE = (0.1234561, 0.1234562)  # two losses that six digits would not tell apart


def grid_loss(i: int) -> float:
    return math.exp(-LRS[i % 4]) / (1 + i / 100)


def make_store(store: Path) -> dict[str, object]:
    """A sweep of GRID runs ("grid": lr, bs, opt, seed; loss and acc), and three hand-made runs
    ("small": a tagged one, two whose losses differ in the seventh digit, and a dotted param)."""
    ids = []
    for i in range(GRID):
        params = {"lr": LRS[i % 4], "bs": BATCHES[i % 3], "opt": "adam" if i % 2 else "sgd", "seed": 7}
        with amltrack.start_run("grid", store=store, outputs=None, name=f"g{i:03d}", params=params) as lg:
            for step in range(5):
                acc = 1 - math.exp(-LRS[i % 4] * step)
                lg.log_metrics({"loss": grid_loss(i) + (4 - step) / 10, "acc": acc}, step=step)
        ids.append(lg.run_id)
    small = {}
    for name, loss, params, tags in (
        ("resnet-a", CLOSE[0], {"lr": 0.1, "steps": BIG, "model.depth": 50}, {"model": "resnet"}),
        ("vgg-b", CLOSE[1], {"lr": 0.01, "steps": BIG, "model.depth": 16}, {"model": "vgg"}),
        ("vgg-c", 0.5, {"lr": 0.01, "steps": 10, "model.depth": 16}, {"model": "vgg"}),
    ):
        with amltrack.start_run(
            "small", store=store, outputs=None, name=name, params=params, tags=tags
        ) as lg:
            lg.log("loss", 1.0)
            lg.log("loss", loss)
            lg.log("acc", 0.5)
            if name == "vgg-c":
                lg.log("only_c", 3.0)
        small[name] = lg.run_id
    return {"store": str(store), "grid": ids, **small}


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("choosing")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for var in ("AMLTRACK_RUN_ID", "AMLTRACK_STORE", "AMLTRACK_EXPERIMENT", "AMLTRACK_OUTPUTS"):
            mp.delenv(var, raising=False)
        runs = make_store(root / "store")
    with ui_process(runs["store"], root / "ui.log", cwd=root) as url:
        yield {**runs, "url": url}


@pytest.fixture(scope="session")
def shots() -> Path:
    """test-results/ui/, kept as tests/test_ui_browser.py left it (it empties it once a session)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def rows(page: object) -> list[str]:
    return page.eval_on_selector_all("#runs tbody tr", "trs => trs.map(t => t.dataset.runId)")


def column(page: object, key: str) -> list[str]:
    return page.eval_on_selector_all(
        f"#runs tbody td[data-col='{key}']", "tds => tds.map(t => t.textContent)"
    )


def headers(page: object) -> list[str]:
    return page.eval_on_selector_all("#runs thead th[data-col]", "ths => ths.map(t => t.dataset.col)")


def query(page: object) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query, keep_blank_values=True)


def test_columns_default_to_the_params_that_differ_and_the_metrics_every_run_has(
    page: object, ui: dict
) -> None:
    page.goto(f"{ui['url']}?experiment=small")
    settled(page)
    cols = headers(page)
    assert cols[:5] == ["name", "experiment", "status", "created", "duration"]
    # lr, steps and model.depth differ; acc and loss are in every run, only_c in one.
    assert cols[5:] == [
        "tags",
        "params.lr",
        'params."model.depth"',
        "params.steps",
        "metrics.acc",
        "metrics.loss",
    ]
    by_run = dict(zip(rows(page), column(page, "params.steps")))
    assert by_run[ui["resnet-a"]] == str(BIG), "a param reads exactly"
    losses = dict(zip(rows(page), column(page, "metrics.loss")))
    assert (losses[ui["resnet-a"]], losses[ui["vgg-b"]]) == ("0.1234561", "0.1234562"), "enough digits"
    assert losses[ui["vgg-c"]] == "0.5"
    # The chooser adds a summary column; the URL keeps it, and a reload shows the same table.
    page.click("#columns-chooser summary")
    page.check("#columns-chooser input[data-col='metrics.loss.max']")
    settled(page)
    assert headers(page)[-1] == "metrics.loss.max"
    assert set(column(page, "metrics.loss.max")) == {"1"}
    page.uncheck("#columns-chooser input[data-col='tags']")
    page.check("#columns-chooser input[data-col='metrics.only_c']")
    assert query(page)["col"] == [
        "params.lr",
        'params."model.depth"',
        "params.steps",
        "metrics.acc",
        "metrics.loss",
        "metrics.loss.max",
        "metrics.only_c",
    ]
    page.reload()
    settled(page)
    assert headers(page)[5:] == query(page)["col"]
    assert sorted(column(page, "metrics.only_c")) == ["3", "–", "–"]
    shot(page, "choosing-columns")
    page.click("#columns-chooser summary")
    page.click("#columns-defaults")
    assert "col" not in query(page) and "tags" in headers(page)


def test_any_column_sorts_on_the_server(page: object, ui: dict) -> None:
    page.goto(f"{ui['url']}?experiment=grid")
    settled(page)
    page.click("th[data-sort='params.lr'] button")
    settled(page)
    assert page.get_attribute("th[data-sort='params.lr']", "aria-sort") == "ascending"
    lrs = [float(v) for v in column(page, "params.lr")]
    assert lrs == sorted(lrs) and lrs[0] == 0.003, "sorted across all 120 runs, not within the page"
    assert query(page)["sort"] == ["params.lr"] and query(page)["order"] == ["asc"]
    page.click("th[data-sort='metrics.loss'] button")
    settled(page)
    page.click("th[data-sort='metrics.loss'] button")
    settled(page)
    assert page.get_attribute("th[data-sort='metrics.loss']", "aria-sort") == "descending"
    best = max(range(GRID), key=grid_loss)
    assert rows(page)[0] == ui["grid"][best]
    assert query(page)["sort"] == ["metrics.loss"] and "order" not in query(page)
    # The URL is the view: opened again, the same order.
    first = rows(page)
    page.goto(page.url)
    settled(page)
    assert rows(page) == first


def test_the_search_box_takes_expressions_and_text_and_shows_a_bad_one_s_error(
    page: object, ui: dict
) -> None:
    page.goto(ui["url"])
    settled(page)
    page.fill("#filter-text", "params.bs = 32 and params.opt = 'adam'")
    settled(page)
    expected = {ui["grid"][i] for i in range(GRID) if BATCHES[i % 3] == 32 and i % 2}
    assert set(rows(page)) == expected and len(expected) == 20
    assert page.inner_text("#run-count").startswith("20 runs")
    assert query(page)["q"] == ["params.bs = 32 and params.opt = 'adam'"]
    # A wrong expression: its error where it was typed, and the last good table stays.
    page.expected_errors.append("the server responded with a status of 400")
    page.fill("#filter-text", "params.lr >> 1")
    page.wait_for_selector("#query-error:not([hidden])")
    assert "expected a value at column 12" in page.inner_text("#query-error")
    assert page.get_attribute("#filter-text", "aria-invalid") == "true"
    assert set(rows(page)) == expected, "not a blank table"
    shot(page, "choosing-bad-query")
    page.fill("#filter-text", "RESNET")  # plain text: a name, id, tag value or user, any case
    settled(page)
    assert rows(page) == [ui["resnet-a"]] and page.is_hidden("#query-error")
    page.fill("#filter-text", 'params."model.depth" = 16')
    settled(page)
    assert set(rows(page)) == {ui["vgg-b"], ui["vgg-c"]}


def test_pages_of_a_hundred(page: object, ui: dict) -> None:
    page.goto(f"{ui['url']}?experiment=grid")
    settled(page)
    assert len(rows(page)) == 100 and page.inner_text("#page-info") == "page 1 of 2"
    assert page.inner_text("#run-count").startswith("1–100 of 120 runs")
    first = rows(page)
    page.click("#page-next")
    settled(page)
    assert len(rows(page)) == 20 and not set(rows(page)) & set(first)
    assert set(first + rows(page)) == set(ui["grid"])
    assert query(page)["page"] == ["2"] and page.is_disabled("#page-next")
    page.reload()
    settled(page)
    assert len(rows(page)) == 20 and page.inner_text("#page-info") == "page 2 of 2"
    # A run chosen on one page stays chosen on the next, and the compare link names them all.
    page.check(f"tr[data-run-id='{rows(page)[0]}'] td.select input")
    chosen = rows(page)[0]
    page.click("#page-first")
    settled(page)
    page.check(f"tr[data-run-id='{rows(page)[0]}'] td.select input")
    assert "2 selected" in page.inner_text("#run-count")
    page.click("#compare-selected")
    page.wait_for_selector("#compare-table")
    newest = ui["grid"][-1]  # the first row of page 1: newest first
    assert set(query(page)["runs"][0].split(",")) == {chosen, newest}


def test_the_workbench_chart_plots_a_metric_across_every_listed_run(page: object, ui: dict) -> None:
    page.goto(f"{ui['url']}?experiment=grid&sort=name&order=asc&chart=loss")
    settled(page)
    chart = "#wb-chart"
    page.wait_for_selector(f"{chart}[data-ready]")
    assert page.get_attribute(chart, "data-points") == str(GRID), "every matched run, not one page"
    ys = page.eval_on_selector(chart, "e => e.data[0].y")
    assert ys == pytest.approx([grid_loss(i) for i in range(GRID)]), "in the list's order: g000, g001, ..."
    page.select_option("#wb-value", "max")
    page.wait_for_function(
        "(want) => document.querySelector('#wb-chart').data[0].y[0] === want", arg=grid_loss(0) + 0.4
    )
    assert query(page)["value"] == ["max"]
    shot(page, "choosing-workbench")


def test_empty_states_say_what_to_do(page: object, ui: dict, tmp_path: Path) -> None:
    page.goto(f"{ui['url']}?q=nosuchname")
    settled(page)
    assert page.is_visible("#runs-nomatch") and page.is_hidden("#runs")
    assert "nosuchname" in page.inner_text("#runs-nomatch")
    page.click("#clear-filter")
    settled(page)
    assert len(rows(page)) == 100 and "q" not in query(page)
    empty = tmp_path / "empty"
    empty.mkdir()
    with ui_process(empty, tmp_path / "ui.log") as url:
        page.goto(url)
        settled(page)
        text = page.inner_text("#runs-empty")
        assert "get_logger" in text and "examples/train_demo.py" in text
        page.wait_for_function("() => document.querySelector('#store-path').textContent.includes('empty')")
        shot(page, "choosing-empty")


def test_compare_marks_what_differs_and_draws_every_shared_metric(page: object, ui: dict) -> None:
    refs = ["resnet-a", ui["vgg-b"][:-4], ui["vgg-c"].split("-")[1][:8]]  # a name, a prefix, a short id
    page.goto(f"{ui['url']}compare?runs={','.join(refs)}")
    page.wait_for_selector("#compare-grid .chart-card[data-metric='loss'][data-ready]")
    heads = page.eval_on_selector_all(
        "#compare-table thead th[data-run-id]", "ths => ths.map(t => t.innerText)"
    )
    assert [h.split("\n")[0].split(" ")[0] for h in heads] == ["resnet-a", "vgg-b", "vgg-c"]
    differs = page.eval_on_selector_all("#compare-table tr.differs", "trs => trs.map(t => t.dataset.key)")
    assert "params.lr" in differs and "params.steps" in differs and "metrics.loss" in differs
    assert "params.seed" not in differs and "experiment" not in differs and "metrics.acc" not in differs
    cells = "(key) => [...document.querySelector(`#compare-table tr[data-key='${key}']`).cells].slice(1).map(c => c.textContent)"
    assert page.evaluate(cells, "params.steps") == [str(BIG), str(BIG), "10"]
    assert page.evaluate(cells, "metrics.loss") == ["0.1234561", "0.1234562", "0.5"]
    assert page.is_visible("#compare-table tr[data-key='metrics.acc']")
    page.click("#only-diffs")
    assert page.is_hidden("#compare-table tr[data-key='metrics.acc']")
    assert page.is_visible("#compare-table tr[data-key='params.lr']")
    assert query(page)["diff"] == ["1"]
    # The grid: one chart per metric, the shared ones first with every run, named in the legend.
    cards = page.eval_on_selector_all(
        "#compare-grid .chart-card", "cs => cs.map(c => [c.dataset.metric, c.dataset.shared])"
    )
    assert cards == [["loss", "1"], ["acc", "1"], ["only_c", "0"]]
    page.wait_for_function(
        "() => [...document.querySelectorAll('#compare-grid .chart-card')].every(c => c.dataset.ready)"
    )
    assert traces(page, "#compare-grid .chart") == [3, 3, 1]
    legend = page.eval_on_selector(
        "#compare-grid .chart-card[data-metric='loss'] .chart", "e => e.data.map(t => t.name)"
    )
    assert legend == ["resnet-a", "vgg-b", "vgg-c"]
    # Parallel coordinates of the params that differ and the metric; a scatter of any two columns.
    page.wait_for_selector("#parcoords[data-ready]")
    assert page.get_attribute("#parcoords", "data-dims") == "4"  # lr, model.depth, steps, and loss
    ticks = page.eval_on_selector("#parcoords", "e => e.layout.xaxis.ticktext")
    assert ticks == ["lr", "model.depth", "steps", "loss"]
    assert traces(page, "#parcoords") == [3]
    page.wait_for_selector("#scatter[data-ready]")
    page.select_option("#scatter-x", "params:steps")
    page.select_option("#scatter-y", "metrics:last:loss")
    xy = page.eval_on_selector("#scatter", "e => [e.data[0].x, e.data[0].y]")
    assert xy == [[BIG, BIG, 10], list(CLOSE) + [0.5]]
    assert query(page)["x"] == ["params:steps"] and query(page)["y"] == ["metrics:last:loss"]
    shot(page, "choosing-compare")
    # The view is in the URL: opened again, the same toggles and axes.
    page.goto(page.url)
    page.wait_for_selector("#scatter[data-ready]")
    assert page.is_hidden("#compare-table tr[data-key='metrics.acc']")
    assert page.input_value("#scatter-x") == "params:steps"
    # The grid has the charts' x-axis and smoothing, kept in the URL beside the page's own view.
    page.select_option("#chart-xaxis", "relative")
    page.select_option("#scatter-y", "metrics:max:loss")
    assert query(page)["xaxis"] == ["relative"] and query(page)["y"] == ["metrics:max:loss"]
