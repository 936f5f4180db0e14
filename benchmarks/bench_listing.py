"""Listing runs when some crashed with their summary.json behind their metrics (issue 25, item 2).

    python benchmarks/bench_listing.py               # full sizes, as in docs/benchmarks.md
    python benchmarks/bench_listing.py --smoke       # tiny sizes, run by the test suite

Two stores, built under a temporary folder and deleted after:

(a) BIG crashed runs of BIG_MB of metrics each, and 19 small completed ones (the soak's shape).
    Each crashed run's summary.json covers all but its last MiB, as a SIGKILL leaves it.
(b) 10,000 small runs of which 1,000 crashed, each with its last records uncounted.

For each, ``amltrack history list --limit 0 --json`` is timed as a whole process, and
``Store().runs()`` with each run's ``listing_summary()`` in this process, with the bytes it read
(``rchar`` of /proc/self/io): first with the crashes seconds old, when each listing repairs the
summaries in memory (as on a store that cannot be written), then an hour old, when the first
listing writes the repairs back and the next ones only read summaries. ``--old`` gives the crashed
runs summaries without ``offsets`` (as amltrack wrote them before it kept them): each of their
repairs counts the whole metrics file, until one is written back. Target: (a) with the soak's sizes within 1 s, (b) within 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from amltrack import _format as fmt
from amltrack._store import Store

GONE_PID = 2**22 + 7  # no process has it: the run's process is gone
TAIL = 1 << 20  # bytes of records after what a crashed run's summary counts


def write_run(runs: Path, i: int, metrics_bytes: int, crashed: bool, old: bool) -> None:
    """A run whose metrics.jsonl holds about ``metrics_bytes`` of log() records of two metrics."""
    created = 1.7e9 + i
    run_id = fmt.new_run_id(created)
    d = runs / run_id
    d.mkdir()
    line = b'{"name":"loss","step":%d,"value":0.%06d,"ts":%.3f,"seq":%d}\n'
    block = b"".join(line % (s, s, created + s / 1000, s + 1) for s in range(10_000))
    tail = min(TAIL, metrics_bytes // 4) if crashed else 0
    with open(d / fmt.METRICS_FILE, "wb") as f:
        records = write_lines(f, block, metrics_bytes - tail)
        covered = f.tell()
        write_lines(f, block, tail)  # written after the summary's last merge
    summary = {
        "schema": 1,
        "records": records,
        "heartbeat": created + 60,
        "metrics": {"loss": {"count": records, "kind": "number", "last": 0.5, "step": 1, "ts": created + 1}},
        "offsets": {"": covered},
    }
    if old:
        del summary["offsets"]
    fmt.write_json_atomic(d / fmt.SUMMARY_FILE, summary, fsync=False)
    info = {
        "schema": 1,
        "id": run_id,
        "experiment": "bench",
        "name": f"run{i}",
        "status": "running" if crashed else "completed",
        "created": fmt.utc_iso(created),
        "created_ts": created,
        "ended": None if crashed else fmt.utc_iso(created + 60),
        "ended_ts": None if crashed else created + 60,
        "hostname": socket.gethostname(),
        "pid": GONE_PID if crashed else 1,
        "pid_start": None,
    }
    fmt.write_json_atomic(d / fmt.RUN_FILE, info, fsync=False)


def write_lines(f: Any, block: bytes, nbytes: int) -> int:
    """Write whole lines of ``block``, repeated, up to ``nbytes``; the number of lines written."""
    whole, rest = divmod(nbytes, len(block))
    for _ in range(whole):
        f.write(block)
    part = block[: block.rfind(b"\n", 0, rest) + 1]
    f.write(part)
    return whole * block.count(b"\n") + part.count(b"\n")


def build(root: Path, n_runs: int, n_crashed: int, crashed_bytes: int, other_bytes: int, old: bool) -> Path:
    runs = root / fmt.RUNS_DIR
    runs.mkdir(parents=True)
    fmt.write_json_atomic(root / fmt.STORE_FILE, {"schema": 1, "created": fmt.utc_iso(time.time())})
    step = max(1, n_runs // max(1, n_crashed))
    crashed = set(range(0, n_runs, step)[:n_crashed])
    for i in range(n_runs):
        write_run(runs, i, crashed_bytes if i in crashed else other_bytes, i in crashed, old)
    return root


def rchar() -> int:
    try:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))
    except OSError:  # not Linux: no figure
        return 0


def list_in_process(root: Path) -> tuple[float, int, int]:
    """Seconds and bytes read to list every run with its figures, and the number of runs."""
    before, t0 = rchar(), time.perf_counter()
    runs = Store(root).runs()
    rows = [(r.status, r.listing_summary(), r.duration()) for r in runs]
    return time.perf_counter() - t0, rchar() - before, len(rows)


def list_cli(root: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "amltrack", "history", "list", "--limit", "0", "--json", "--store", str(root)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def beat(root: Path, when: float) -> None:
    """Set every crashed run's last heartbeat; its metrics file's time just after it."""
    for d in (root / fmt.RUNS_DIR).iterdir():
        if fmt.read_json(d / fmt.RUN_FILE)["status"] == "running":
            summary = fmt.read_json(d / fmt.SUMMARY_FILE)
            summary["heartbeat"] = when
            fmt.write_json_atomic(d / fmt.SUMMARY_FILE, summary, fsync=False)
            os.utime(d / fmt.METRICS_FILE, (when + 1, when + 1))


def measure(root: Path, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    # A crash seconds ago: another process of the run may still merge, so the repair is made in
    # memory at each listing, as on a store that cannot be written.
    beat(root, time.time() - 5)
    out["memory_cli_s"] = statistics.median(list_cli(root) for _ in range(repeat))
    out["memory_store_s"], read, out["runs"] = list_in_process(root)
    out["memory_read_mib"] = read / 2**20
    # A crash long ago: the first listing writes the repair back, and the next ones read summaries.
    beat(root, time.time() - 3600)
    out["first_store_s"], read, _ = list_in_process(root)
    out["first_read_mib"] = read / 2**20
    out["cli_s"] = statistics.median(list_cli(root) for _ in range(repeat))
    out["store_s"], read, _ = list_in_process(root)
    out["read_mib"] = read / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--big", type=int, default=3, help="crashed runs in store (a) (default 3)")
    ap.add_argument("--big-mb", type=float, default=300, help="MiB of metrics per crashed run in (a)")
    ap.add_argument("--runs", type=int, default=10_000, help="runs in store (b)")
    ap.add_argument("--crashed", type=int, default=1_000, help="crashed runs among them")
    ap.add_argument("--old", action="store_true", help="summaries without offsets, as before they were kept")
    ap.add_argument("--repeat", type=int, default=3, help="listings timed after the first (median)")
    ap.add_argument("--dir", default=None, help="where to build the stores (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    if a.smoke:
        a.big, a.big_mb, a.runs, a.crashed, a.repeat = 2, 2, 40, 4, 1
    tmp = Path(tempfile.mkdtemp(prefix="amltrack-bench-listing-", dir=a.dir))
    try:
        big = build(tmp / "a", a.big + 19, a.big, int(a.big_mb * 2**20), 2**20, a.old)
        many = build(tmp / "b", a.runs, a.crashed, 4096, 2048, a.old)
        figures = {"a": measure(big, a.repeat), "b": measure(many, a.repeat)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures["sizes"] = {"big": a.big, "big_mb": a.big_mb, "runs": a.runs, "crashed": a.crashed, "old": a.old}
    if a.json:
        print(json.dumps(figures))
        return
    for key, what in (
        ("a", f"(a) {a.big} crashed runs of {a.big_mb:g} MiB and 19 completed"),
        ("b", f"(b) {a.runs} runs, {a.crashed} crashed"),
    ):
        f = figures[key]
        print(
            f"{what}:\n"
            f"  repaired in memory: history list {f['memory_cli_s']:.2f} s; "
            f"Store().runs() + rows {f['memory_store_s']:.2f} s, {f['memory_read_mib']:.1f} MiB read\n"
            f"  first listing, repair kept: {f['first_store_s']:.2f} s, {f['first_read_mib']:.1f} MiB read\n"
            f"  after it: history list {f['cli_s']:.2f} s; "
            f"Store().runs() + rows {f['store_s']:.2f} s, {f['read_mib']:.1f} MiB read"
        )


if __name__ == "__main__":
    main()
