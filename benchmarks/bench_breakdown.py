"""Where the time of 1,000,000 durable scalars goes: the caller, the encoder, the disk.

    python benchmarks/bench_breakdown.py [--n 1000000] [--repeat 3]

Runs the same loop three ways, each in a fresh process: with the writer's batch handling replaced by
a no-op (the caller's cost alone), by the encoder without the write, and unchanged.
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
            self.durable_seq = self._swapped_seq
            self.cond.notify_all()
    if mode == "caller":
        W.Writer._write_batch = lambda self, items, *flags: done(self)
    elif mode == "encode":
        W.Writer._write_batch = lambda self, items, fsync, *flags: (self._encode(items, *flags), done(self))
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
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for mode in ("caller", "encode", "full"):
            times = []
            for i in range(a.repeat):
                out = subprocess.run([sys.executable, "-c", CHILD, mode, str(a.n), f"{tmp}/{mode}{i}"],
                                     capture_output=True, text=True, check=True)
                times.append(json.loads(out.stdout)["s"])
            res[mode] = statistics.median(times)
    print(f"{a.n:,} scalars, median of {a.repeat}: caller alone {res['caller']:.2f} s; "
          f"+ encoding {res['encode'] - res['caller']:.2f} s; + writing {res['full'] - res['encode']:.2f} s; "
          f"total {res['full']:.2f} s")


if __name__ == "__main__":
    main()
