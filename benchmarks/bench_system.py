"""What the system metrics sampler (amltrack/_system.py) costs: CPU time per sample, and the share
of one core that makes at the default interval of 10 s, against the target of 0.5 %.

    python benchmarks/bench_system.py            # 100 samples, 0.05 s apart
    python benchmarks/bench_system.py --smoke    # a few, for the test suite

It opens a real run in a child process with ``system_metrics=INTERVAL``, idles while the sampler
thread takes its samples, then reads that thread's own CPU time (user + system, from psutil's
per-thread times) and divides by the samples it logged. Setting the sampler up (psutil's import,
NVML's when installed) is counted too, once, and shown apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap

TARGET_PERCENT = 0.5
DEFAULT_INTERVAL = 10.0

SAMPLER = textwrap.dedent("""
    import json, sys, threading, time
    import psutil
    import amltrack
    samples, interval, store = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    logger = amltrack.get_logger("bench", store=store, outputs=None, system_metrics=interval)
    monitor = logger._system
    thread = monitor._thread
    def cpu():
        for t in psutil.Process().threads():
            if t.id == thread.native_id:
                return t.user_time + t.system_time
        return 0.0
    while monitor.samples < 1:
        time.sleep(interval / 10)
    first, before = monitor.samples, cpu()
    while monitor.samples < first + samples:
        time.sleep(interval / 2)
    spent, taken = cpu() - before, monitor.samples - first
    logger.finish()
    print(json.dumps({"per_sample_ms": spent / taken * 1000, "samples": taken}))
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a few samples, for the test suite")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--repeat", type=int, default=None)
    a = ap.parse_args()
    samples, interval, repeat = (5, 0.02, 1) if a.smoke else (100, 0.05, 3)
    repeat = a.repeat or repeat
    per_sample = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            out = subprocess.run(
                [sys.executable, "-c", SAMPLER, str(samples), str(interval), tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            per_sample.append(r["per_sample_ms"])
    ms = statistics.median(per_sample)
    share = ms / 1000 / DEFAULT_INTERVAL * 100
    figures = {"per_sample_ms": ms, "core_percent_at_10s": share}
    if a.json:
        print(json.dumps(figures))
        return
    print(
        f"system metrics sampler: {ms:.2f} ms of CPU a sample (median of {repeat} runs of {samples} samples)"
    )
    verdict = "within" if share <= TARGET_PERCENT else "OVER"
    print(
        f"at the default interval of {DEFAULT_INTERVAL:.0f} s: {share:.4f} % of one core, "
        f"{verdict} the target of {TARGET_PERCENT} %"
    )


if __name__ == "__main__":
    main()
