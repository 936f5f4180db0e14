"""Eight processes logging into one run at once: every record present, every line valid JSON."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

import amltrack

from ..conftest import child_env
from .conftest import size

WORKER = textwrap.dedent("""
    import sys, time
    import amltrack
    store, run_id, k, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    logger = amltrack.get_logger(store=store, run_id=run_id, outputs=None)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        logger.log(f"w{k}", i)
        logger.log("shared", k * 10_000_000 + i)
        if i % 5000 == 0:
            logger.log("text", "x" * (i % 3000))  # lines of varied length
        i += 1
    print(i, flush=True)
""")


def test_eight_processes_one_run(tmp_path: Path) -> None:
    store = tmp_path / "s"
    owner = amltrack.get_logger("conc", store=store, outputs=None)
    seconds = size(2, 10)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(store), owner.run_id, str(k), str(seconds)],
                              stdout=subprocess.PIPE, text=True, env=child_env()) for k in range(8)]
    counts = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        counts.append(int(out.strip()))
    owner.finish()
    raw = (owner.run_dir / "metrics.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    recs = [orjson.loads(line) for line in raw.splitlines()]  # every line valid JSON
    run = amltrack.Store(store).run(owner.run_id)
    metrics = run.metrics()
    for k, n in enumerate(counts):
        assert metrics[f"w{k}"].values == list(range(n)), k
        mine = [v - k * 10_000_000 for v in metrics["shared"].values if v // 10_000_000 == k]
        assert mine == list(range(n)), k  # each process's own order, none lost or repeated
    assert len(metrics["shared"]) == sum(counts)
    assert len(recs) == 2 * sum(counts) + len(metrics.get("text", []))
    assert run.cached_summary()["records"] == len(recs)
