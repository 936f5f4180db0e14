"""Listing 100,000 runs in SQL, filtered by a param and sorted by a metric (issue 21, "reads scale").

    python benchmarks/bench_server_query.py               # 100,000 runs, as in docs/benchmarks.md
    python benchmarks/bench_server_query.py --explain     # and the plans PostgreSQL chose
    python benchmarks/bench_server_query.py --smoke       # tiny sizes, run by the test suite

Needs the team extra (psycopg) and a PostgreSQL that ``--admin-url`` reaches (default
``postgresql://postgres@127.0.0.1:5432/test``, trust authentication, as on these machines). Makes a
database of its own, applies the team server's schema, fills ``runs`` with N published rows by one
COPY (each as the team store keeps a run: run.json and summary.json as bytes and as jsonb, metric
ranges; 10 params, two of them strings half the time as argparse gives them, 3 tags, 6 metrics),
ANALYZEs it, then times each listing as the team server's history API asks it
(``_sqlquery.history_sql``: the first page of 100 rows) and its total (``count_sql``), the median
(min-max) of --repeat tries after one untimed try, and drops the database.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amltrack import _format as fmt  # noqa: E402
from amltrack.server._database import migrate  # noqa: E402
from amltrack.server._sqlquery import count_sql, history_sql, listing_sql  # noqa: E402

# (label, filter, order): the first is the case.
QUERIES: list[tuple[str, str | None, list[str]]] = [
    ("param filter, metric sort", "params.bs = 32 and params.lr < 0.05", ["metrics.acc desc"]),
    ("string param, metric min", "params.optimizer = 'adam'", ["metrics.loss.min"]),
    ("rare param value", "params.seed = 4242", ["-metrics.acc"]),
    ("no filter, newest first", None, []),
]
PAGE = 100
METRICS = ("loss", "acc", "val/loss", "val/acc", "lr", "system/cpu")


def run_row(i: int) -> tuple[Any, ...]:
    """Run ``i`` as its ``runs`` row: what a run of a sweep synced to the team server holds."""
    created = 1.7e9 + i * 7.0
    run_id = fmt.new_run_id(created)
    params = {
        "lr": (0.1, 0.03, 0.01, 0.003)[i % 4],
        "bs": "32" if i % 2 else (32, 64)[i % 3 % 2],
        "optimizer": ("adam", "sgd")[i % 5 % 2],
        "seed": i % 10_000,
        "epochs": "10" if i % 3 else 20,
        "dropout": (0.0, 0.1, 0.2)[i % 3],
        "model": ("resnet18", "resnet50", "vit-b16")[i % 3],
        "weight_decay": 1e-4,
        "warmup": i % 7 == 0,
        "dataset": "imagenet-1k",
    }
    info = {
        "schema": 1,
        "id": run_id,
        "experiment": f"exp{i % 20}",
        "name": f"sweep-{i}",
        "status": "completed" if i % 10 else "failed",
        "created": fmt.utc_iso(created),
        "created_ts": created,
        "ended": fmt.utc_iso(created + 3600),
        "ended_ts": created + 3600,
        "hostname": f"gpu{i % 64:02d}",
        "user": f"user{i % 50}",
        "pid": 1000 + i % 30000,
        "params": params,
        "tags": {"team": ("vision", "nlp", "speech")[i % 3], "sweep": f"s{i // 1000}", "priority": "high"},
        "git": {"commit": f"{i * 2654435761 % 2**32:08x}" * 5, "branch": "main", "dirty": False},
    }
    metrics, ranges = {}, {}
    for k, name in enumerate(METRICS):
        base = ((i * (k + 3)) % 997) / 997
        metrics[name] = {"count": 1000, "kind": "number", "last": base, "step": 999, "ts": created + 3500}
        ranges[name] = [base / 2, base + 0.5]
    listing = {
        "schema": 1,
        "records": 6000,
        "heartbeat": created + 3590,
        "metrics": metrics,
        "offsets": {"": 600_000},
    }
    run_json, summary_json = orjson.dumps(info), orjson.dumps(listing)
    return (
        run_id,
        True,
        run_json.decode(),
        summary_json.decode(),
        orjson.dumps(ranges).decode(),
        run_json,
        summary_json,
    )


def fill(conn: Any, n: int) -> float:
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        columns = "id, published, info, listing, ranges, run_json, summary_json"
        with cur.copy(f"COPY runs ({columns}) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row(run_row(i))
    # Statistics as autovacuum would keep them, and the visibility map an index-only scan reads.
    conn.execute("VACUUM ANALYZE runs")
    conn.execute("VACUUM ANALYZE run_keys")
    return time.perf_counter() - t0


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # untimed: plans and pages into memory
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def explain(conn: Any, filter: str | None, order: list[str]) -> str:
    plans = []
    for sql, params in listing_sql(None, None, filter, order):  # one query a part
        with conn.transaction():
            conn.execute("SET LOCAL jit = off")  # as history_sql runs it
            rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", [*params, PAGE, 0]).fetchall()
        plans.append("\n".join(r[0] for r in rows))
    return "\n-- the next part, if the first holds less than a page:\n".join(plans)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--runs", type=int, default=100_000, help="rows of runs (default 100,000)")
    ap.add_argument("--repeat", type=int, default=9, help="timed tries of each (median, min and max)")
    ap.add_argument(
        "--admin-url", default="postgresql://postgres@127.0.0.1:5432/test", help="where to make the database"
    )
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each listing")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    if a.smoke:
        a.runs, a.repeat = 300, 1
    import psycopg
    from psycopg import sql

    name = f"amltrack_bench_{os.getpid()}_{secrets.token_hex(3)}"
    base = a.admin_url.rsplit("/", 1)[0]
    with psycopg.connect(a.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    figures: dict[str, Any] = {"runs": a.runs}
    plans = {}
    try:
        with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
            migrate(conn)
            figures["fill_s"] = fill(conn, a.runs)
            for label, filter, order in QUERIES:
                total = count_sql(conn, filter=filter)
                page = history_sql(conn, filter=filter, order_by=order, limit=PAGE)
                assert len(page) == min(PAGE, total), (label, len(page), total)
                figures[label] = {
                    "matched": total,
                    "page_ms": [
                        1000 * t
                        for t in timed(
                            lambda f=filter, o=order: history_sql(conn, filter=f, order_by=o, limit=PAGE),
                            a.repeat,
                        )
                    ],
                    "count_ms": [
                        1000 * t for t in timed(lambda f=filter: count_sql(conn, filter=f), a.repeat)
                    ],
                }
                if a.explain:
                    plans[label] = explain(conn, filter, order)
    finally:
        with psycopg.connect(a.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    load = os.getloadavg()[0]
    if a.json:
        print(json.dumps({**figures, "load": load}))
        return
    print(
        f"{a.runs} runs in PostgreSQL (filled in {figures['fill_s']:.1f} s); first page of {PAGE}, and the total;"
    )
    print(f"median (min-max) of {a.repeat} tries, load average {load:.1f}:")
    for label, filter, order in QUERIES:
        f = figures[label]
        page, count = f["page_ms"], f["count_ms"]
        print(
            f"  {label:<28} {f['matched']:>7} rows   page {statistics.median(page):7.1f} ms ({min(page):.1f}-{max(page):.1f})"
            f"   count {statistics.median(count):7.1f} ms ({min(count):.1f}-{max(count):.1f})"
        )
        print(f"      filter {filter!r}, order {order}")
        if label in plans:
            print("\n".join("      | " + line for line in plans[label].splitlines()))


if __name__ == "__main__":
    main()
