"""Bytes on disk per point: amltrack's files for the peers' training loop, and other encodings of it.

    python benchmarks/bench_bytes.py            # 10 metrics x 10,000 steps, as benchmarks/peers
    python benchmarks/bench_bytes.py --smoke    # 10 x 100, run by the test suite

Logs the peers' training-loop workload with amltrack, a point at a time with ``log()`` and a step at
a time with ``log_metrics()``, then re-encodes the ``log()`` records in other ways: what each costs
per point on disk. Sizes only; nothing here is timed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import tempfile
from pathlib import Path

import orjson

import amltrack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    steps, names = (100 if a.smoke else 10_000), [f"metric_{k}" for k in range(10)]
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        logger = amltrack.get_logger("bytes", store=Path(tmp) / "store", outputs=None)
        for step in range(steps):
            for k, name in enumerate(names):
                logger.log(name, math.exp(-step / steps) * (k + 1) + rng.random() * 0.01, step=step)
        logger.finish()
        jsonl = (logger.run_dir / "metrics.jsonl").read_bytes()
        index = (logger.run_dir / "cache" / "columns.bin").stat().st_size
        rows_logger = amltrack.get_logger("bytes-rows", store=Path(tmp) / "rows", outputs=None)
        rng = random.Random(1)
        for step in range(steps):
            rows_logger.log_metrics(
                {
                    name: math.exp(-step / steps) * (k + 1) + rng.random() * 0.01
                    for k, name in enumerate(names)
                },
                step=step,
            )
        rows_logger.finish()
        rows_jsonl = (rows_logger.run_dir / "metrics.jsonl").stat().st_size
        rows_index = (rows_logger.run_dir / "cache" / "columns.bin").stat().st_size
    recs = [orjson.loads(line) for line in jsonl.splitlines()]
    points = len(recs)

    def lines(objs: list) -> int:
        return sum(len(orjson.dumps(o)) + 1 for o in objs)

    per_step: dict[int, dict] = {}
    for r in recs:
        row = per_step.setdefault(
            r["step"], {"step": r["step"], "ts": r["ts"], "seq": r["seq"], "values": {}}
        )
        row["values"][r["name"]] = r["value"]
    out = {
        "points": points,
        "log(): metrics.jsonl as written": len(jsonl),
        "log(): the writer's column index (cache/columns.bin)": index,
        "log_metrics(): metrics.jsonl as written": rows_jsonl,
        "log_metrics(): the writer's column index": rows_index,
        "metrics.jsonl without seq": lines([{k: v for k, v in r.items() if k != "seq"} for r in recs]),
        "short keys, no seq, millisecond timestamps": lines(
            [{"n": r["name"], "s": r["step"], "v": r["value"], "t": round(r["ts"] * 1000)} for r in recs]
        ),
        "one line per step with its values": lines(list(per_step.values())),
        "metrics.jsonl gzipped": len(gzip.compress(jsonl, 6)),
    }
    per_point = {k: round(v / points, 1) for k, v in out.items() if k != "points"}
    if a.json:
        print(json.dumps({"points": points, "bytes_per_point": per_point}, indent=2))
        return
    print(f"{points:,} points ({len(names)} metrics x {steps:,} steps), bytes per point:")
    for k, v in per_point.items():
        print(f"  {k:<54} {v:>6.1f}")


if __name__ == "__main__":
    main()
