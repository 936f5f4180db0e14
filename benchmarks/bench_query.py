"""Filtering and sorting 10,000 runs by a param and a metric (issue 18): the query language's speed.

    python benchmarks/bench_query.py               # 10,000 runs, as in docs/benchmarks.md
    python benchmarks/bench_query.py --smoke       # tiny sizes, run by the test suite

Builds a store of N small completed runs under a temporary folder (params lr, bs - half of them
the string "32" as argparse gives it - and optimizer; metrics loss and acc, 20 rows each), then
times, each as the median (min-max) of --repeat tries:

- ``scan``: what a filter cost before the index: ``Store().runs()`` and each run's
  ``listing_summary()``, filtered and sorted in Python (every run.json and summary.json read);
- ``cold``: ``Store().runs(filter=FILTER, order_by=ORDER)`` with no ``cache/runs-index.json``
  (it builds and writes it);
- ``warm``: the same in a new ``Store`` object with the index on disk: a script's or the CLI's
  case. Target: 0.3 s;
- ``warm, same Store``: the same ``Store`` object again, the index in memory: the web UI's case;
- ``min/max cold`` and ``min/max warm``: a filter on ``metrics.loss.min``, which reads every run's
  metrics once (cold) and then only the index;
- ``cli``: ``amltrack history list --filter FILTER --sort ORDER -n 0 --json`` as a whole process,
  with the index on disk. Target: 1 s;
- ``api page`` and ``api chart``: the web UI's ``GET /api/runs`` (needs the ui extra), warm: a page
  of 50 rows for ``q=FILTER&sort=ORDER``, and one metric's summaries for every matched run
  (``columns=metrics.acc``, no limit), as a chart across the runs asks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from amltrack import _format as fmt
from amltrack._store import Store

FILTER = "params.bs = 32 and params.lr < 0.05"
ORDER = ["metrics.acc desc"]
RANGE_FILTER = "metrics.loss.min < 0.2 and params.optimizer = 'adam'"


def build(root: Path, n: int) -> None:
    runs = root / fmt.RUNS_DIR
    runs.mkdir(parents=True)
    fmt.write_json_atomic(root / fmt.STORE_FILE, {"schema": 1, "created": fmt.utc_iso(time.time())})
    for i in range(n):
        created = 1.7e9 + i
        run_id = fmt.new_run_id(created)
        d = runs / run_id
        d.mkdir()
        lr = (0.1, 0.03, 0.01, 0.003)[i % 4]
        params = {
            "lr": lr,
            "bs": "32" if i % 2 else (32, 64)[i % 3 % 2],
            "optimizer": ("adam", "sgd")[i % 5 % 2],
        }
        rows = []
        for step in range(20):
            loss = 1.0 / (step + 1) + (i % 97) / 100
            acc = 0.5 + (i % 89) / 200 + step / 100
            rows.append(
                {"step": step, "values": {"loss": loss, "acc": acc}, "ts": created + step, "seq": step + 1}
            )
        (d / fmt.METRICS_FILE).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        last = rows[-1]
        summary = {
            "schema": 1,
            "records": 40,
            "heartbeat": created + 60,
            "metrics": {
                name: {
                    "count": 20,
                    "kind": "number",
                    "last": last["values"][name],
                    "step": 19,
                    "ts": created + 19,
                }
                for name in ("acc", "loss")
            },
            "offsets": {"": (d / fmt.METRICS_FILE).stat().st_size},
        }
        fmt.write_json_atomic(d / fmt.SUMMARY_FILE, summary, fsync=False)
        info = {
            "schema": 1,
            "id": run_id,
            "experiment": "bench",
            "name": f"run{i}",
            "status": "completed",
            "created": fmt.utc_iso(created),
            "created_ts": created,
            "ended": fmt.utc_iso(created + 60),
            "ended_ts": created + 60,
            "hostname": "bench",
            "user": "bench",
            "pid": 1,
            "params": params,
            "tags": {"sweep": "s1"},
        }
        fmt.write_json_atomic(d / fmt.RUN_FILE, info, fsync=False)


def index_file(root: Path) -> Path:
    return root / fmt.CACHE_DIR / fmt.RUNS_INDEX_FILE


def scan(root: Path) -> int:
    """Filter and sort as a script had to before: every run.json and summary.json read."""
    out = []
    for run in Store(root).runs():
        p = run.params
        bs = p.get("bs")
        if (bs == 32 or bs == "32") and isinstance(p.get("lr"), float) and p["lr"] < 0.05:
            acc = (run.listing_summary().get("metrics") or {}).get("acc", {}).get("last")
            out.append((acc, run))
    out.sort(key=lambda t: -t[0])
    return len(out)


CPU: dict[str, list[float]] = {}  # the same tries' CPU seconds (this process's, or the child's)


def cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(
    name: str, fn: Callable[[], object], repeat: int, before: Callable[[], object] | None = None
) -> list[float]:
    """Wall seconds of ``repeat`` tries of ``fn``; their CPU seconds go to CPU[name]. On a shared
    machine the wall time also holds the waits for a core, which the CPU time leaves out."""
    times, cpu = [], []
    for _ in range(repeat):
        if before is not None:
            before()
        c0, t0 = cpu_now(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(cpu_now() - c0)
    CPU[name] = cpu
    return times


def cli(root: Path) -> None:
    args = ["history", "list", "--store", str(root), "-n", "0", "--json", "--filter", FILTER]
    for key in ORDER:
        args += ["--sort", key]
    subprocess.run([sys.executable, "-m", "amltrack", *args], check=True, stdout=subprocess.DEVNULL)


def api(root: Path, repeat: int) -> dict[str, list[float]]:
    try:
        import warnings

        warnings.simplefilter("ignore")  # starlette's TestClient warns about httpx's version
        from starlette.testclient import TestClient

        from amltrack.ui import create_app
    except ImportError:  # no ui extra: no figures
        return {}
    client = TestClient(create_app(root))
    page = {"q": FILTER, "sort": ORDER, "limit": 50}
    chart = {"q": FILTER, "columns": "metrics.acc"}

    def get(params: dict[str, object]) -> None:
        r = client.get("/api/runs", params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text

    get(page)
    get(chart)
    return {
        "api page": timed("api page", lambda: get(page), repeat),
        "api chart": timed("api chart", lambda: get(chart), repeat),
    }


def measure(root: Path, repeat: int) -> dict[str, list[float]]:
    def drop() -> None:
        index_file(root).unlink(missing_ok=True)

    matched = len(Store(root).runs(filter=FILTER, order_by=ORDER))
    assert matched == scan(root), "the scan and the query disagree"
    same = Store(root)
    same.runs(filter=FILTER, order_by=ORDER)
    out = {
        "scan": timed("scan", lambda: scan(root), repeat),
        "cold": timed("cold", lambda: Store(root).runs(filter=FILTER, order_by=ORDER), repeat, drop),
        "warm": timed("warm", lambda: Store(root).runs(filter=FILTER, order_by=ORDER), repeat),
        "warm, same Store": timed(
            "warm, same Store", lambda: same.runs(filter=FILTER, order_by=ORDER), repeat
        ),
        "min/max cold": timed("min/max cold", lambda: Store(root).runs(filter=RANGE_FILTER), repeat, drop),
        "min/max warm": timed("min/max warm", lambda: Store(root).runs(filter=RANGE_FILTER), repeat),
        "cli": timed("cli", lambda: cli(root), repeat),
        **api(root, repeat),
    }
    out["matched"] = [float(matched)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--runs", type=int, default=10_000, help="runs in the store (default 10,000)")
    ap.add_argument("--repeat", type=int, default=5, help="tries of each (median, min and max)")
    ap.add_argument("--dir", default=None, help="where to build the store (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    if a.smoke:
        a.runs, a.repeat = 40, 1
    tmp = Path(tempfile.mkdtemp(prefix="amltrack-bench-query-", dir=a.dir))
    try:
        build(tmp, a.runs)
        figures = measure(tmp, a.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    if a.json:
        print(json.dumps({"runs": a.runs, **figures, "cpu": CPU, "load": load}))
        return
    print(f"{a.runs} runs, {int(figures.pop('matched')[0])} matched by {FILTER!r}, sorted by {ORDER}:")
    print(f"  {'':<18} wall min / median / max       CPU min / median / max   (load average {load:.1f})")
    for name, times in figures.items():
        cpu = CPU[name]
        print(
            f"  {name:<18} {min(times):6.3f} / {statistics.median(times):6.3f} / {max(times):6.3f} s"
            f"   {min(cpu):6.3f} / {statistics.median(cpu):6.3f} / {max(cpu):6.3f} s"
        )


if __name__ == "__main__":
    main()
