"""The UI's run page on a run with a 10,000,000-point metric: how long until every chart has its data.

    python benchmarks/bench_ui.py                   # 10,000,000 points of "loss", plus small metrics
    python benchmarks/bench_ui.py --points 1000000
    python benchmarks/bench_ui.py --smoke --json    # tiny sizes, run by the test suite

A real run is made with the logger: small metrics "acc", "lr" and a list "hist", and the big series
"loss" logged through ``log()`` too, so that the writer keeps its column index of it as it would in
training. An ``amltrack ui`` process serves the store on 127.0.0.1.

"Open" is what the run page asks for, timed from the first request to the last answer: the HTML,
the run's metadata, its metric list (repeated while the cache reports progress) and every numeric
chart's series at 1,200 pixels, the four series requests in parallel as a browser sends them.

- cold: no series cache yet; the first view builds it once, from the writer's column index for the
  numbers and from metrics.jsonl for the list's lines (the files are in the OS page cache, having
  just been written).
- cold, JSON only: the same with the writer's index deleted, as for a run synced from elsewhere:
  every line of metrics.jsonl is parsed.
- background: nobody asks; the time from the UI's start until its warmer (amltrack/ui/_cache.py)
  has the run's cache complete, with and without the writer's index, and then an open.
- warm: the cache built, the UI process restarted, so nothing is held in its memory.
- series: one chart-data request alone (warm, median of 10), full range and zoomed to 1%, over
  steps and over relative time.
- browser: with Playwright and Debian's chromium present, the time to every chart drawn (warm cache)
  for a run clicked on the runs page (which loads plotly.js while idle), and for a first-ever deep
  link in a fresh browser profile, which must fetch and compile plotly.js's 4.8 MB first.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
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

import httpx
import numpy as np

import amltrack

WIDTH = 1200
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_run(store: Path, points: int) -> str:
    logger = amltrack.get_logger("bench-ui", store=store, outputs=None, name="ten million")
    for i in range(1000):
        logger.log("acc", 1 - math.exp(-i / 200))
        if i % 100 == 0:
            logger.log("lr", 0.1 * 0.9 ** (i // 100))
            logger.log("hist", [math.sin(i + k / 10) for k in range(64)])
    rng = np.random.default_rng(1)
    log = logger.log
    block = 200_000
    for start in range(0, points, block):
        noise = (rng.random(min(block, points - start)) * 0.01).tolist()
        for j, i in enumerate(range(start, start + len(noise))):
            log("loss", math.exp(-5 * i / points) + noise[j] + (i % 999_983 == 7), step=i)
    logger.finish()
    return logger.run_id


class Ui:
    def __init__(self, store: Path, log: Path) -> None:
        self.log = log
        # SIGTERM waits until the process is held here, so the handler's exit can always stop it.
        term = {signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, term)
        try:
            with open(log, "w") as err:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "amltrack", "ui", "--store", str(store), "--port", "0"],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, term),
                )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, term)
        try:
            deadline = time.monotonic() + 30
            while not (m := re.search(r"http://[\d.]+:\d+/", log.read_text())):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the UI did not start: " + log.read_text())
                time.sleep(0.02)
        except BaseException:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            raise
        self.url = m.group(0)
        self.client = httpx.Client(base_url=self.url, timeout=600)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def open_run_page(ui: Ui, run_id: str) -> tuple[float, dict]:
    c = ui.client
    t = time.perf_counter()
    c.get(f"/runs/{run_id}").raise_for_status()
    c.get(f"/api/runs/{run_id}").raise_for_status()
    while True:
        m = c.get(f"/api/runs/{run_id}/metrics").json()
        if not m["building"]:
            break
    names = [x["name"] for x in m["metrics"] if x["numbers"]]
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda n: series(c, run_id, n), names))
    elapsed = time.perf_counter() - t
    return elapsed, dict(zip(names, answers))


def background(store: Path, run_dir: Path, run_id: str, tmp: Path, out: dict, suffix: str) -> None:
    """Start a UI with no chart cache and ask for nothing until its warmer has the run ready."""
    shutil.rmtree(run_dir / "cache" / "ui")
    t = time.perf_counter()
    ui = Ui(store, tmp / f"ui-background{suffix}.log")
    try:
        out[f"background_ready{suffix}_s"] = wait_ready(run_dir, t)
        out[f"background_then_open{suffix}_s"], _ = open_run_page(ui, run_id)
    finally:
        ui.close()


def wait_ready(run_dir: Path, since: float) -> float:
    """Seconds from ``since`` until the run's chart cache covers its whole metrics file."""
    size = (run_dir / "metrics.jsonl").stat().st_size
    index = run_dir / "cache" / "ui" / "index.json"
    while True:
        try:
            if json.loads(index.read_bytes())["offset"] >= size:
                return time.perf_counter() - since
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)


def series(c: httpx.Client, run_id: str, name: str, **params: float | str) -> dict:
    while True:
        r = c.get(f"/api/runs/{run_id}/series", params={"name": name, "width": WIDTH, **params})
        r.raise_for_status()
        body = r.json()
        if not body.get("building"):
            return body


READY = (
    "() => document.querySelectorAll('#charts .chart-card').length > 0 && "
    "[...document.querySelectorAll('#charts .chart-card')].every(c => c.dataset.ready)"
)


def browser_open(url: str, run_id: str) -> dict[str, float] | None:
    """Seconds to every chart drawn: clicked on the runs page, and as a first-ever deep link."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not os.path.exists(CHROMIUM):
        return None
    out = {}
    with sync_playwright() as pw:
        for how in ("browser_from_runs_s", "browser_deep_link_s"):
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)  # a fresh profile
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                if how == "browser_from_runs_s":
                    page.goto(url)
                    page.wait_for_selector("body[data-loaded]")
                    page.wait_for_function("() => !!window.Plotly", timeout=60_000)  # warmed while idle
                    t = time.perf_counter()
                    page.click(f"tr[data-run-id='{run_id}'] .run-link")
                else:
                    t = time.perf_counter()
                    page.goto(f"{url}runs/{run_id}")  # plotly.js fetched and compiled on this load
                page.wait_for_function(READY, timeout=600_000)
                out[how] = time.perf_counter() - t
            finally:
                browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--smoke", action="store_true", help="20,000 points, no browser")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    # Killed (a test's timeout): still stop the UI process and remove the store, in the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    points = 20_000 if args.smoke else args.points
    tmp = Path(tempfile.mkdtemp(prefix="amltrack-bench-ui-"))
    out: dict = {"points": points}
    try:
        store = tmp / "store"
        t = time.perf_counter()
        run_id = make_run(store, points)
        run_dir = store / "runs" / run_id
        out["metrics_jsonl_mb"] = round((run_dir / "metrics.jsonl").stat().st_size / 1e6, 1)
        out["make_s"] = round(time.perf_counter() - t, 2)

        ui = Ui(store, tmp / "ui-1.log")
        try:
            out["cold_open_s"], answers = open_run_page(ui, run_id)
            loss = answers["loss"]
            assert loss["count"] == points and loss["shown"] <= 2 * WIDTH + 2, loss["shown"]
            out["loss_points_sent"] = loss["shown"]
            out["warm_same_process_s"], _ = open_run_page(ui, run_id)
        finally:
            ui.close()
        out["cache_mb"] = round(
            sum(f.stat().st_size for f in (run_dir / "cache").rglob("*") if f.is_file()) / 1e6, 1
        )

        ui = Ui(store, tmp / "ui-2.log")
        try:
            out["warm_open_s"], _ = open_run_page(ui, run_id)
            full, zoomed = [], []
            for i in range(10):
                t = time.perf_counter()
                series(ui.client, run_id, "loss", width=WIDTH + i)  # a new width each time: no 304
                full.append(time.perf_counter() - t)
                t = time.perf_counter()
                series(ui.client, run_id, "loss", width=WIDTH + i, x0=points * 0.4, x1=points * 0.41)
                zoomed.append(time.perf_counter() - t)
            out["series_warm_ms"] = statistics.median(full) * 1000
            out["series_zoomed_ms"] = statistics.median(zoomed) * 1000
            # The same over relative time: the x column is the timestamps, a zoom cuts it by seconds.
            whole = series(ui.client, run_id, "loss", xaxis="relative")
            span = whole["x"][-1] - whole["x"][0]
            full, zoomed = [], []
            for i in range(10):
                t = time.perf_counter()
                series(ui.client, run_id, "loss", width=WIDTH + i, xaxis="relative")
                full.append(time.perf_counter() - t)
                t = time.perf_counter()
                x0 = whole["x"][0] + span * 0.4
                series(
                    ui.client, run_id, "loss", width=WIDTH + i, xaxis="relative", x0=x0, x1=x0 + span * 0.01
                )
                zoomed.append(time.perf_counter() - t)
            out["series_time_ms"] = statistics.median(full) * 1000
            out["series_time_zoomed_ms"] = statistics.median(zoomed) * 1000
            if not args.smoke:
                out.update(browser_open(ui.url, run_id) or {})
        finally:
            ui.close()
        # Nobody asks: how soon after the UI starts does its background warmer have the run ready?
        background(store, run_dir, run_id, tmp, out, "")
        # As for a run synced from elsewhere: no writer's index, so the first view parses every line.
        (run_dir / "cache" / "columns.bin").unlink()
        shutil.rmtree(run_dir / "cache" / "ui")
        ui = Ui(store, tmp / "ui-3.log")
        try:
            out["cold_json_open_s"], answers = open_run_page(ui, run_id)
            assert answers["loss"]["count"] == points
        finally:
            ui.close()
        background(store, run_dir, run_id, tmp, out, "_json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for k, v in out.items():
        if isinstance(v, float):
            out[k] = round(v, 4)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"run page of a run with {points:,} points of 'loss' ({out['metrics_jsonl_mb']} MB of metrics.jsonl)"
    )
    print(f"  cold open (cache built on first view):   {out['cold_open_s']:.2f} s")
    print(f"  cold open without the writer's index:    {out['cold_json_open_s']:.2f} s")
    print(
        f"  ready in the background, no request:     {out['background_ready_s']:.2f} s after the UI starts "
        f"(then open: {out['background_then_open_s']:.3f} s)"
    )
    print(
        f"  ... without the writer's index:          {out['background_ready_json_s']:.2f} s "
        f"(then open: {out['background_then_open_json_s']:.3f} s)"
    )
    print(f"  warm open, same UI process:              {out['warm_same_process_s']:.3f} s")
    print(f"  warm open, restarted UI process:         {out['warm_open_s']:.3f} s")
    print(
        f"  series request alone (full / 1% zoom):   {out['series_warm_ms']:.1f} / {out['series_zoomed_ms']:.1f} ms"
    )
    print(
        f"  ... over relative time (full / 1% zoom): {out['series_time_ms']:.1f} / {out['series_time_zoomed_ms']:.1f} ms"
    )
    print(f"  points sent for 'loss' at {WIDTH} px:        {out['loss_points_sent']:,}")
    print(f"  cache on disk:                           {out['cache_mb']} MB")
    if "browser_from_runs_s" in out:
        print(
            f"  chromium, run clicked on the runs page:  {out['browser_from_runs_s']:.2f} s to every chart drawn"
        )
        print(
            f"  chromium, first-ever deep link:          {out['browser_deep_link_s']:.2f} s (plotly.js compiled)"
        )


if __name__ == "__main__":
    main()
