"""Where the time of 1,000,000 durable scalars goes: the caller, the encoder, the disk.

    python benchmarks/bench_breakdown.py [--n 1000000] [--repeat 3]
    python benchmarks/bench_breakdown.py --smoke --json   # tiny sizes, run by the test suite

Runs the same loop four ways, each in a fresh process: with the writer's batch handling replaced by
a no-op (the caller's cost alone), by the encoder without the write, unchanged but without the
column index (cache/columns.bin), and unchanged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import json, sys, tempfile, time
    import amltrack
    import amltrack._writer as W
    mode, n = sys.argv[1], int(sys.argv[2])
    def done(self):
        with self.cond:
            self.durable_seq = self.queue.taken
            self.cond.notify_all()
    if mode == "caller":
        W.Writer._write_batch = lambda self, items, *a, **k: done(self)
    elif mode == "encode":
        def encode_only(self, items, fsync, has_uploads=True, rows=True):
            self._encode(items, has_uploads)
            done(self)
        W.Writer._write_batch = encode_only
    elif mode == "noindex":
        import amltrack._columns
        amltrack._columns.ENABLED = False
    logger = amltrack.get_logger("b", store=sys.argv[3], outputs=None)
    log = logger.log
    t = time.perf_counter()
    for i in range(n):
        log("loss", 1.0 / (i + 1))
    logger.finish()
    print(json.dumps({"s": time.perf_counter() - t}))
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    a = ap.parse_args()
    if a.smoke:
        a.n, a.repeat = 2000, 1
    with tempfile.TemporaryDirectory() as tmp:
        modes = ("caller", "encode", "noindex", "full")
        times: dict[str, list[float]] = {m: [] for m in modes}
        for i in range(a.repeat):  # interleaved, so that a machine getting busier affects every mode
            for mode in modes:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, mode, str(a.n), f"{tmp}/{mode}{i}"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                times[mode].append(json.loads(out.stdout)["s"])
        res = {m: statistics.median(t) for m, t in times.items()}
    if a.json:
        print(json.dumps(res))
        return
    print(
        f"{a.n:,} scalars, median of {a.repeat}: caller alone {res['caller']:.2f} s; "
        f"+ encoding {res['encode'] - res['caller']:.2f} s; + writing {res['noindex'] - res['encode']:.2f} s; "
        f"+ the column index {res['full'] - res['noindex']:.2f} s; "
        f"total {res['full']:.2f} s"
    )


if __name__ == "__main__":
    main()
