"""What redacting secrets (docs/redaction.md) costs a run's start: ``get_logger()`` then ``finish()``,
with redaction on and off, alternating in one process, and the rules alone.

    python benchmarks/bench_redact.py            # 300 runs each way
    python benchmarks/bench_redact.py --smoke    # tiny sizes, run by the test suite

The process's command line is a long training command (40 arguments, two of them secrets) and each
run gets 30 params and 10 tags, so the rules have more to read than in most runs. The working
directory is a fresh folder outside any git work tree, so no ``git status`` pads the start-up and
redaction's share is the largest it can be. Printed: the median of each, their ratio, the rules'
own time on that run.json, and compiling the patterns (paid once, at import).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import timeit

ARGV = ["train.py", "--hf-token", "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f", "--lr", "0.1"]
ARGV += ["--db-url", "postgresql://ada:pw@db.example.com/x", "--max-tokens", "512", "--tokenizer", "bert"]
ARGV += [f"--option-{i}=value-{i}" for i in range(30)]
PARAMS = {f"param_{i}": i * 0.5 for i in range(29)} | {"api_key": "k-123"}
TAGS = {f"tag{i}": f"a tag value of some length {i}" for i in range(10)}


def start_and_close(store: str, redact: bool) -> tuple[float, float]:
    """Seconds in get_logger(), and in get_logger() and finish() together."""
    import amltrack

    t = time.perf_counter()
    logger = amltrack.get_logger("bench", store=store, outputs=None, params=PARAMS, tags=TAGS, redact=redact)
    started = time.perf_counter()
    logger.finish()
    return started - t, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300, help="runs each way")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    runs = 5 if args.smoke else args.runs
    sys.argv = ARGV
    os.environ.pop("AMLTRACK_REDACT", None)

    from amltrack import _redact
    from amltrack._metadata import process_info

    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # outside any git work tree
        for _ in range(3):  # warm the imports and the file system
            start_and_close(tmp, True)
            start_and_close(tmp, False)
        for i in range(runs):
            for redact in (True, False) if i % 2 else (False, True):
                (on if redact else off).append(start_and_close(tmp, redact))

        info = {**process_info(), "params": PARAMS, "tags": TAGS, "git": None, "error": None}
        rules = _redact.Rules()
        n = 50 if args.smoke else 1000
        # CPU time of this thread, the best of 5: other processes on a busy machine do not count.
        rules_s = (
            min(timeit.repeat(lambda: rules.run_info(info), number=n, repeat=5, timer=time.thread_time)) / n
        )

    patterns = [
        v for v in vars(_redact).values() if isinstance(v, re.Pattern)
    ]  # every pattern the module compiles at import
    t = time.perf_counter()
    for p in patterns:
        re.compile(p.pattern + "(?#fresh)", p.flags)  # a pattern re has not cached
    compile_s = time.perf_counter() - t

    def median_ms(times: list[tuple[float, float]], i: int) -> float:
        return statistics.median(t[i] for t in times) * 1e3

    figures = {
        "runs": runs,
        "start_on_median_ms": median_ms(on, 0),
        "start_off_median_ms": median_ms(off, 0),
        "start_ratio": median_ms(on, 0) / median_ms(off, 0),
        "on_median_ms": median_ms(on, 1),
        "off_median_ms": median_ms(off, 1),
        "ratio": median_ms(on, 1) / median_ms(off, 1),
        "rules_us": rules_s * 1e6,
        "compile_ms": compile_s * 1e3,
    }
    if args.json:
        print(json.dumps(figures))
        return
    f = figures
    print(f"{runs} runs each way, alternating; medians    get_logger()   get_logger() + finish()")
    print(
        f"  redaction on                          {f['start_on_median_ms']:8.2f} ms   {f['on_median_ms']:8.2f} ms"
    )
    print(
        f"  redaction off                         {f['start_off_median_ms']:8.2f} ms   {f['off_median_ms']:8.2f} ms"
    )
    print(f"  on / off                              {f['start_ratio']:8.3f}      {f['ratio']:8.3f}")
    print(f"the rules alone on that run.json: {figures['rules_us']:.0f} us of CPU time")
    print(f"compiling the patterns, once at import: {figures['compile_ms']:.2f} ms")


if __name__ == "__main__":
    main()
