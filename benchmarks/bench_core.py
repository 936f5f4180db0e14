"""Core speed of amltrack on this machine: log() latency, 1M-scalar throughput, read-back.

    python benchmarks/bench_core.py            # full sizes, as in docs/benchmarks.md
    python benchmarks/bench_core.py --smoke    # tiny sizes, run by the test suite

Each figure is measured in a fresh child process and repeated; the median is reported. The same run
also times the floor the peers note describes (``deque.append`` of a tuple) so that a loaded machine
shows up as a slower floor rather than as a slower amltrack.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

LATENCY = textwrap.dedent("""
    import gc, json, sys, time, collections
    import amltrack
    n = int(sys.argv[1])
    logger = amltrack.get_logger("bench", store=sys.argv[2], outputs=None)
    pc = time.perf_counter_ns
    out = {}
    for label in ("floor", "amltrack"):
        times = [0] * n
        if label == "floor":
            q = collections.deque()
            for i in range(n):
                t = pc(); q.append(("loss", 1.0 / (i + 1), i, time.time())); times[i] = pc() - t
        else:
            log = logger.log
            for i in range(n):
                t = pc(); log("loss", 1.0 / (i + 1)); times[i] = pc() - t
        times.sort()
        out[label] = {"median_us": times[n // 2] / 1000, "p99_us": times[int(n * 0.99)] / 1000}
    logger.finish()
    print(json.dumps(out))
""")

THROUGHPUT = textwrap.dedent("""
    import json, resource, sys, time
    t0 = time.perf_counter()
    import amltrack
    amltrack.get_logger  # amltrack loads its modules on first use: the baseline includes them
    n = int(sys.argv[1])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    logger = amltrack.get_logger("bench", store=sys.argv[2], outputs=None)
    log = logger.log
    t1 = time.perf_counter()
    for i in range(n):
        log("loss", 1.0 / (i + 1))
    t2 = time.perf_counter()
    logger.finish()
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall_s": t3 - t1, "loop_s": t2 - t1, "finish_s": t3 - t2,
                      "mem_above_baseline_mb": (peak - base) / 1024, "run": logger.run_id}))
""")

ROWS = textwrap.dedent("""
    import json, sys, time
    import amltrack
    steps = int(sys.argv[1])
    names = ("loss", "accuracy", "lr", "grad_norm", "val_loss", "val_accuracy", "epoch", "throughput",
             "weight_norm", "gpu_mem")
    logger = amltrack.get_logger("bench", store=sys.argv[2], outputs=None)
    log_metrics = logger.log_metrics
    t1 = time.perf_counter()
    for step in range(steps):
        x = 1.0 / (step + 1)
        log_metrics({k: x + j for j, k in enumerate(names)}, step=step)
    logger.finish()
    t2 = time.perf_counter()
    run = amltrack.Store(sys.argv[2]).run(logger.run_id)
    t3 = time.perf_counter()
    metrics = run.metrics()
    t4 = time.perf_counter()
    assert sum(map(len, metrics.values())) == 10 * steps
    print(json.dumps({"wall_s": t2 - t1, "read_s": t4 - t3}))
""")

READ = textwrap.dedent("""
    import json, sys, time
    import amltrack, amltrack._columns
    if sys.argv[4] == "json":  # as for a run without the writer's index: synced, or joined by others
        amltrack._columns.ENABLED = False
    run = amltrack.Store(sys.argv[2]).run(sys.argv[3])
    t = time.perf_counter()
    m = run.metric("loss")
    dt = time.perf_counter() - t
    assert len(m) == int(sys.argv[1]), len(m)
    print(json.dumps({"read_s": dt}))
""")


LISTING = textwrap.dedent("""
    import json, sys, time
    import amltrack
    t = time.perf_counter()
    runs = amltrack.Store(sys.argv[1]).runs()
    statuses = [r.status for r in runs]
    t1 = time.perf_counter()
    rows = [(r.id, r.experiment, r.status, len(r.cached_summary().get("metrics", {}))) for r in runs]
    t2 = time.perf_counter()
    assert len(rows) == int(sys.argv[2]), len(rows)
    print(json.dumps({"runs_s": t1 - t, "rows_s": t2 - t}))
""")


def make_runs(store: str, n: int) -> None:
    """n finished runs with realistic run.json and summary.json files, written directly for speed."""
    import orjson

    from amltrack import _format as fmt

    runs = os.path.join(store, "runs")
    os.makedirs(runs)
    info = {
        "schema": 1,
        "experiment": "bench",
        "name": None,
        "status": "completed",
        "created": "2026-01-01T00:00:00.000000Z",
        "created_ts": 1.7e9,
        "ended": "2026-01-01T00:01:00Z",
        "ended_ts": 1.7e9 + 60,
        "hostname": "h",
        "user": "u",
        "pid": 1,
        "python": "3.11",
        "platform": "Linux",
        "argv": ["train.py", "--lr", "0.1"],
        "cwd": "/work",
        "git": None,
        "tags": {"team": "a"},
        "params": {"lr": 0.1, "layers": 3},
        "error": None,
    }
    summary = {
        "schema": 1,
        "records": 30000,
        "heartbeat": 1.7e9 + 60,
        "metrics": {
            f"m{i}": {"count": 10000, "last": 0.5, "kind": "number", "step": 9999, "ts": 1.7e9}
            for i in range(3)
        },
    }
    for i in range(n):
        rid = fmt.new_run_id(1.7e9 + i)
        d = os.path.join(runs, rid)
        os.mkdir(d)
        with open(os.path.join(d, "run.json"), "wb") as f:
            f.write(orjson.dumps({**info, "id": rid}))
        with open(os.path.join(d, "summary.json"), "wb") as f:
            f.write(orjson.dumps(summary))


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo, for the machine line of a table."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


# The system metrics sampler (amltrack/_system.py) is on by default; each log() figure is also
# measured with it off, side by side, to show that sampling does not show in them.
SYSTEM_OFF = {"AMLTRACK_SYSTEM_METRICS": "0"}


def child(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env} if env else None,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(med: dict, n_lat: int, n_put: int, n_runs: int, repeat: int, results: dict) -> str:
    import platform
    import time

    import orjson

    import amltrack

    def spread(key: str, fmt: str) -> str:
        vals = sorted(results[key])
        return " / ".join(format(v, fmt) for v in (vals[0], med[key], vals[-1]))

    cpu = cpu_model()
    rows = [
        ("`log()` of a scalar, median", f"{n_lat:,} calls", "≤ 2 µs", spread("log_median_us", ".2f") + " µs"),
        ("`log()` of a scalar, p99", f"{n_lat:,} calls", "≤ 20 µs", spread("log_p99_us", ".2f") + " µs"),
        (
            "... median / p99 with system metrics off",
            f"{n_lat:,} calls",
            "as on",
            spread("log_median_us_system_off", ".2f")
            + " / "
            + spread("log_p99_us_system_off", ".2f")
            + " µs",
        ),
        (
            "floor: `deque.append` of a tuple, median",
            f"{n_lat:,} calls",
            "-",
            spread("floor_median_us", ".2f") + " µs",
        ),
        (
            "scalars written and durable (`finish()` returned)",
            f"{n_put:,}",
            "≤ 3 s",
            spread("throughput_wall_s", ".2f") + " s",
        ),
        (
            "... with system metrics off",
            f"{n_put:,}",
            "as on",
            spread("throughput_wall_s_system_off", ".2f") + " s",
        ),
        (
            "memory above baseline while doing so",
            f"{n_put:,}",
            "≤ 100 MB",
            spread("throughput_mem_mb", ".0f") + " MB",
        ),
        ("reading back one metric", f"{n_put:,} points", "≤ 1.5 s", spread("read_s", ".2f") + " s"),
        (
            "... from the JSON Lines alone, without the index",
            f"{n_put:,} points",
            "-",
            spread("read_json_s", ".2f") + " s",
        ),
        (
            "points written as rows of 10 (`log_metrics()`) and durable",
            f"{n_put:,}",
            "-",
            spread("rows_wall_s", ".2f") + " s",
        ),
        ("reading back every metric of them", f"{n_put:,} points", "-", spread("rows_read_s", ".2f") + " s"),
        (
            "listing runs with their status",
            f"{n_runs:,} runs",
            "well under 1 s",
            spread("list_runs_s", ".2f") + " s",
        ),
        (
            "... and their cached metric summaries",
            f"{n_runs:,} runs",
            "-",
            spread("list_rows_s", ".2f") + " s",
        ),
    ]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({cpu}, {os.cpu_count()} cores), "
        f"Python {platform.python_version()}, amltrack {amltrack.__version__}, orjson {orjson.__version__}; "
        f"min / median / max of {repeat} runs, each in a fresh process.",
        "",
        "| what | size | target | min / median / max |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table for docs/benchmarks.md")
    a = ap.parse_args()
    n_lat, n_put, n_runs, repeat = (2_000, 20_000, 50, 1) if a.smoke else (100_000, 1_000_000, 10_000, 5)
    repeat = a.repeat or repeat
    results: dict[str, list[float]] = {}

    def add(key: str, v: float) -> None:
        results.setdefault(key, []).append(v)

    with tempfile.TemporaryDirectory() as tmp:
        listing = os.path.join(tmp, "listing")
        make_runs(listing, n_runs)
        for i in range(repeat):
            lst = child(LISTING, listing, str(n_runs))
            add("list_runs_s", lst["runs_s"])
            add("list_rows_s", lst["rows_s"])
            lat = child(LATENCY, str(n_lat), os.path.join(tmp, f"lat{i}"))
            off = child(LATENCY, str(n_lat), os.path.join(tmp, f"latoff{i}"), env=SYSTEM_OFF)
            add("log_median_us_system_off", off["amltrack"]["median_us"])
            add("log_p99_us_system_off", off["amltrack"]["p99_us"])
            add("floor_median_us", lat["floor"]["median_us"])
            add("floor_p99_us", lat["floor"]["p99_us"])
            add("log_median_us", lat["amltrack"]["median_us"])
            add("log_p99_us", lat["amltrack"]["p99_us"])
            store = os.path.join(tmp, f"put{i}")
            put = child(THROUGHPUT, str(n_put), store)
            add("throughput_wall_s", put["wall_s"])
            add("throughput_mem_mb", put["mem_above_baseline_mb"])
            put_off = child(THROUGHPUT, str(n_put), os.path.join(tmp, f"putoff{i}"), env=SYSTEM_OFF)
            add("throughput_wall_s_system_off", put_off["wall_s"])
            add("read_s", child(READ, str(n_put), store, put["run"], "index")["read_s"])
            add("read_json_s", child(READ, str(n_put), store, put["run"], "json")["read_s"])
            rows = child(ROWS, str(n_put // 10), os.path.join(tmp, f"rows{i}"))
            add("rows_wall_s", rows["wall_s"])
            add("rows_read_s", rows["read_s"])
    med = {k: statistics.median(v) for k, v in results.items()}
    if a.json:
        print(json.dumps(med))
        return
    if a.markdown:
        print(markdown(med, n_lat, n_put, n_runs, repeat, results))
        return
    print(
        f"log() of a scalar, {n_lat:,} calls: median {med['log_median_us']:.2f} µs, "
        f"p99 {med['log_p99_us']:.2f} µs (floor deque.append: median {med['floor_median_us']:.2f} µs, "
        f"p99 {med['floor_p99_us']:.2f} µs; ratio {med['log_median_us'] / med['floor_median_us']:.1f}x)"
    )
    print(
        f"{n_put:,} scalars written and durable (finish() returned): {med['throughput_wall_s']:.2f} s wall, "
        f"peak memory {med['throughput_mem_mb']:.0f} MB above baseline"
    )
    print(
        "system metrics on (the default, every 10 s) / off: log() median "
        f"{med['log_median_us']:.2f} / {med['log_median_us_system_off']:.2f} µs, p99 "
        f"{med['log_p99_us']:.2f} / {med['log_p99_us_system_off']:.2f} µs; {n_put:,} scalars durable "
        f"{med['throughput_wall_s']:.2f} / {med['throughput_wall_s_system_off']:.2f} s"
    )
    print(
        f"reading back a {n_put:,}-point metric: {med['read_s']:.2f} s "
        f"({med['read_json_s']:.2f} s from the JSON Lines alone)"
    )
    print(
        f"{n_put:,} points as rows of 10 (log_metrics) written and durable: {med['rows_wall_s']:.2f} s; "
        f"every metric read back: {med['rows_read_s']:.2f} s"
    )
    print(
        f"listing {n_runs:,} runs with their status: {med['list_runs_s']:.2f} s, "
        f"plus their cached metric summaries: {med['list_rows_s']:.2f} s"
    )
    print(f"(median of {repeat} runs, each in a fresh process)")


if __name__ == "__main__":
    main()
