"""What checking tokens in PostgreSQL (`amltrack server --database`) costs a request, against a
tokens file, on a real `amltrack server` over loopback.

    python benchmarks/bench_server_tokens.py             # 2,000 requests a side, as in docs/benchmarks.md
    python benchmarks/bench_server_tokens.py --smoke     # a few, run by the test suite
    python benchmarks/bench_server_tokens.py --markdown --repeat 3

Each repeat starts two servers on fresh stores, one with `$AMLTRACK_SERVER_TOKENS` and one with
`--database` on a database of its own (created on the PostgreSQL at 127.0.0.1:5432 and dropped
after), and times the same authenticated request, `GET /v1/runs` of an empty store, one after the
other on one keep-alive connection, alternating between the servers so that the machine's load
falls on both alike. Figures are per request, client side: p50 and p99.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import psycopg
from bench_cli import amltrack_command
from bench_core import cpu_model
from psycopg import sql

TOKEN = "bench-write-token-0123456789abcdef"
HOST = "127.0.0.1:5432"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLTRACK_")}
    env.update(extra)
    return env


def admin_url() -> str:
    for user in ("postgres", getpass.getuser()):
        url = f"postgresql://{user}@{HOST}/test"
        try:
            with psycopg.connect(url, connect_timeout=5):
                return url
        except psycopg.OperationalError:
            continue
    raise SystemExit(f"no PostgreSQL at {HOST} to benchmark against")


class Server:
    """`amltrack server --port 0` over ``store`` with ``args``; a context manager."""

    def __init__(self, args: list[str], log: str, **env: str) -> None:
        self.args, self.log, self.env = args, log, env
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> Server:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*amltrack_command(), "server", "--port", "0", *self.args],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=child_env(**self.env),
            )
        deadline = time.monotonic() + 60
        while not self.url:
            with open(self.log) as f:
                m = re.search(r"on (http://127\.0\.0\.1:\d+)", f.read())
            if m:
                self.url = m.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                with open(self.log) as f:
                    raise RuntimeError(f"the server did not start:\n{f.read()}")
            else:
                time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)


def one_repeat(requests: int, tmp: str, admin: str) -> dict[str, list[float]]:
    name = f"amltrack_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = admin.rsplit("/", 1)[0] + "/" + name
    try:
        made = subprocess.run(
            [*amltrack_command(), "server", "token", "create", "--database", database]
            + ["--scope", "write", "--name", "bench", "--json"],
            capture_output=True,
            text=True,
            check=True,
            env=child_env(),
        )
        db_token = json.loads(made.stdout)["token"]
        file_args = ["--store", os.path.join(tmp, "file-store")]
        db_args = ["--store", os.path.join(tmp, "db-store"), "--database", database]
        with (
            Server(file_args, os.path.join(tmp, "file.log"), AMLTRACK_SERVER_TOKENS=f"write:{TOKEN}") as fs,
            Server(db_args, os.path.join(tmp, "db.log")) as ds,
        ):
            sides = {
                "file": httpx.Client(base_url=fs.url, headers={"Authorization": f"Bearer {TOKEN}"}),
                "database": httpx.Client(base_url=ds.url, headers={"Authorization": f"Bearer {db_token}"}),
            }
            times: dict[str, list[float]] = {side: [] for side in sides}
            try:
                for client in sides.values():  # the first request opens the connection: not timed
                    client.get("/v1/runs").raise_for_status()
                for _ in range(requests):
                    for side, client in sides.items():
                        t = time.perf_counter()
                        client.get("/v1/runs").raise_for_status()
                        times[side].append(time.perf_counter() - t)
            finally:
                for client in sides.values():
                    client.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return times


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a few requests, to check the script runs")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    requests = 20 if args.smoke else 2000
    admin = admin_url()
    load = [os.getloadavg()[0]]
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_repeat(requests, tmp, admin))
    load.append(os.getloadavg()[0])
    figures: dict[str, float] = {}
    for side in ("file", "database"):
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            figures[f"{side}_{label}_ms"] = statistics.median(quantile(r[side], q) for r in runs) * 1000
    figures["database_extra_p50_ms"] = figures["database_p50_ms"] - figures["file_p50_ms"]
    if args.json:
        print(json.dumps({**figures, "requests": requests, "repeat": args.repeat}))
        return
    if args.markdown:
        print(
            f"{cpu_model()}, {os.cpu_count()} cores; median of {args.repeat} repeat(s) of {requests} "
            f"requests a side; load average {load[0]:.1f} before, {load[1]:.1f} after.\n"
        )
        print("| tokens | p50 | p99 |\n|---|---:|---:|")
        for side, label in (("file", "tokens file (in memory)"), ("database", "`--database` (PostgreSQL)")):
            print(f"| {label} | {figures[f'{side}_p50_ms']:.2f} ms | {figures[f'{side}_p99_ms']:.2f} ms |")
        return
    for key, value in figures.items():
        print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    sys.exit(main())
