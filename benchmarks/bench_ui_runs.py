"""The UI's runs page over 10,000 runs (issue 18): how long until a person sees the first rows.

    python benchmarks/bench_ui_runs.py              # 10,000 runs, as in docs/benchmarks.md
    python benchmarks/bench_ui_runs.py --smoke      # tiny sizes, run by the test suite

Builds the store of benchmarks/bench_query.py (N small completed runs: params lr, bs, optimizer;
metrics loss and acc), starts a real ``amltrack ui`` on it, and drives Debian's chromium with
Playwright, each figure the median (min-max) of --repeat tries, every try in a fresh browser
context (nothing cached):

- ``first rows``: from asking for ``/`` to the first page's 100 rows in the table;
- ``filtered``: the same for a shared view, ``?q=params.bs = 32 and params.lr < 0.05`` sorted by
  ``metrics.acc`` descending;
- ``workbench``: from asking for ``/`` to the Workbench chart of ``loss`` across every run drawn
  (one request for the whole list with ``columns=``, and plotly.js fetched and compiled).

Target: the first rows within 1 s on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from bench_query import build

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
VIEW = "?q=" + quote("params.bs = 32 and params.lr < 0.05") + "&sort=metrics.acc"


def start_ui(store: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    err = open(log, "w")  # noqa: SIM115  (the process writes it until stopped)
    proc = subprocess.Popen(
        [sys.executable, "-m", "amltrack", "ui", "--store", str(store), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"http://127\.0\.0\.1:\d+/", log.read_text())
        if found:
            return proc, found.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"amltrack ui did not start: {log.read_text()}")


def timed(browser: object, url: str, ready: str) -> float:
    """Seconds from asking for ``url`` in a fresh context until ``ready`` holds in the page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_function(ready, timeout=120_000)
        took = time.perf_counter() - t0
        # The page asks for the Workbench chart's list next: let the server finish it, so that
        # it does not slow the next try down.
        page.wait_for_selector("#wb-chart[data-ready]", timeout=120_000)
        return took
    finally:
        context.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--runs", type=int, default=None, help="runs in the store (default 10,000)")
    ap.add_argument("--repeat", type=int, default=None, help="tries of each figure (default 7)")
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    a = ap.parse_args()
    n, repeat = (150, 1) if a.smoke else (10_000, 7)
    n, repeat = a.runs or n, a.repeat or repeat
    from playwright.sync_api import sync_playwright

    rows = f"() => document.querySelectorAll('#runs tbody tr').length === {min(n, 100)}"
    chart = f"() => document.querySelector('#wb-chart[data-ready]')?.dataset.points === '{n}'"
    checks = {
        "first_rows_s": ("", rows),
        "filtered_s": (
            VIEW,
            "() => document.body.dataset.loaded && document.querySelectorAll('#runs tbody tr').length > 0",
        ),
        "workbench_s": ("?chart=loss", chart),
    }
    results: dict[str, list[float]] = {k: [] for k in checks}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        build(store, n)
        proc, url = start_ui(store, Path(tmp) / "ui.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    timed(browser, url, rows)  # the runs index built once, as any first use does
                    for _ in range(repeat):
                        for key, (query, ready) in checks.items():
                            results[key].append(timed(browser, url + query, ready))
                finally:
                    browser.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    med = {k: statistics.median(v) for k, v in results.items()}
    if a.json:
        print(json.dumps(med))
        return
    names = {
        "first_rows_s": "first rows of /",
        "filtered_s": "first rows of a filtered, sorted view",
        "workbench_s": "the Workbench chart of every run",
    }
    print(
        f"{n:,} runs, {os.cpu_count()} cores; median (min-max) of {repeat} tries, each in a fresh browser context"
    )
    for key, vals in results.items():
        print(f"{names[key]:40} {med[key]:.2f} s ({min(vals):.2f}-{max(vals):.2f})")


if __name__ == "__main__":
    main()
