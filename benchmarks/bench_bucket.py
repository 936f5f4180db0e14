"""Speed of `amltrack sync --to s3://...` and of reading the bucket in place, against moto's S3 server
on loopback, each command a fresh CLI process; beside `bench_sync.py`'s figures for amltrack's server.

    python benchmarks/bench_bucket.py              # full sizes, as in docs/benchmarks.md
    python benchmarks/bench_bucket.py --smoke      # tiny sizes, run by the test suite
    python benchmarks/bench_bucket.py --markdown --repeat 3

Targets (issue 22): listing 1,000 runs in place within 2 s. The runs are made once by the real
logger in a child process; each repeat starts `python -m moto.server` on a free port with a fresh
bucket (so every push is real, and the local ledgers are cleared for it), then times the commands
as a user would type them. moto is a Python server that keeps objects in memory: a real S3 or
MinIO is faster per request, so these figures are an upper bound for loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from bench_cli import amltrack_command
from bench_core import cpu_model
from bench_sync import MB, ONE_ARTIFACT, ONE_METRIC, child_env, forget_pushes, make, timed

MANY_RUNS = """
import sys
import amltrack
for r in range(int(sys.argv[1])):
    with amltrack.start_run("bench-bucket", store=sys.argv[2], outputs=None, params={"r": r}) as lg:
        for i in range(100):
            lg.log("loss", 1.0 / (i + 1))
"""

AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class Moto:
    """`python -m moto.server` on a free port of 127.0.0.1; a context manager."""

    def __enter__(self) -> Moto:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_env(**AWS),
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        import boto3

        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, **_creds())
        deadline = time.monotonic() + 60
        while True:
            try:
                self.s3.list_buckets()
                return self
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_REGION"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--repeat", type=int, default=None, help="runs of each figure (default 3)")
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table for docs/benchmarks.md")
    a = ap.parse_args()
    n_records, art_bytes, n_runs, repeat = (
        (20_000, 2 * MB, 10, 1) if a.smoke else (1_000_000, 200 * MB, 1000, 3)
    )
    repeat = a.repeat or repeat
    cli = amltrack_command()
    results: dict[str, list[float]] = {}
    load = [os.getloadavg()[0]]

    def add(key: str, v: float) -> None:
        results.setdefault(key, []).append(v)

    with tempfile.TemporaryDirectory(prefix="bench-bucket-") as tmp:
        metrics, artifact, many = (os.path.join(tmp, n) for n in ("metrics", "artifact", "many"))
        make(ONE_METRIC, str(n_records), metrics)
        make(ONE_ARTIFACT, str(art_bytes), artifact, os.path.join(tmp, "weights.bin"))
        make(MANY_RUNS, str(n_runs), many)
        env = child_env(AMLTRACK_CONFIG_DIR=os.path.join(tmp, "config"), **AWS)

        def run(key: str, cmd: list[str]) -> dict:
            dt, cpu, rep = timed(cmd, env)
            add(key, dt)
            add(key + "_cpu", cpu)
            return rep

        for i in range(repeat):
            with Moto() as moto:
                bucket = f"bench-{i}"
                moto.s3.create_bucket(Bucket=bucket)
                url = f"s3://{bucket}/team?endpoint={moto.endpoint}"
                for store in (metrics, artifact, many):
                    forget_pushes(store)

                def sync(key: str, store: str, *extra: str, url: str = url) -> dict:
                    return run(key, [*cli, "sync", "--store", store, "--to", url, "--json", *extra])

                rep = sync("metrics_push_s", metrics)
                assert rep["counts"]["pushed"] == 1, rep
                rep = sync("artifact_push_s", artifact)
                assert rep["counts"]["pushed"] == 1 and rep["bytes"] >= art_bytes, rep
                add("artifact_mb_s", art_bytes / MB / results["artifact_push_s"][-1])
                # The many small runs go to their own prefix, so the listings count only them.
                many_url = f"s3://{bucket}/many?endpoint={moto.endpoint}"
                rep = sync("first_push_runs_s", many, url=many_url)
                assert rep["counts"]["pushed"] == n_runs, rep
                rep = sync("resync_s", many, url=many_url)
                assert rep["counts"]["up_to_date"] == n_runs and rep["bytes"] == 0, rep
                listed = run(
                    "list_s", [*cli, "history", "list", "--store", many_url, "--limit", "0", "--json"]
                )
                assert len(listed) == n_runs, len(listed)
                # Without the index: every run's manifest is read (16 at a time).
                moto.s3.delete_object(Bucket=bucket, Key="many/index.json")
                listed = run(
                    "list_cold_s", [*cli, "history", "list", "--store", many_url, "--limit", "0", "--json"]
                )
                assert len(listed) == n_runs, len(listed)
                run("cli_floor_s", [*cli, "--version"])
    load.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in results.items()}
    if a.json:
        print(json.dumps(med))
        return
    rows = [
        ("push one run's metrics", f"{n_records:,} records", "-", "metrics_push_s", "s"),
        ("push one run's artifact", f"{art_bytes / MB:.0f} MB, random", "-", "artifact_push_s", "s"),
        ("... as throughput", f"{art_bytes / MB:.0f} MB, random", "-", "artifact_mb_s", "MB/s"),
        ("first push of many small runs", f"{n_runs:,} runs", "-", "first_push_runs_s", "s"),
        ("re-sync, nothing to send (the ledger answers)", f"{n_runs:,} runs", "-", "resync_s", "s"),
        ("`history list --store s3://...` (the index)", f"{n_runs:,} runs", "≤ 2 s", "list_s", "s"),
        ("... with no index.json (every manifest read)", f"{n_runs:,} runs", "-", "list_cold_s", "s"),
        ("start-up: `amltrack --version`", "-", "-", "cli_floor_s", "s"),
    ]

    def spread(key: str, unit: str) -> str:
        vals = sorted(results[key])
        fmt = "{:.0f}" if unit == "MB/s" else "{:.2f}"
        return " / ".join(fmt.format(v) for v in (vals[0], med[key], vals[-1])) + f" {unit}"

    if a.markdown:
        import platform

        import amltrack

        print(
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({cpu_model()}, {os.cpu_count()} "
            f"cores), Python {platform.python_version()}, amltrack {amltrack.__version__}; min / median / "
            f"max of {repeat} repeats, each on a fresh moto server, each command a fresh CLI process over "
            f"loopback; load average {load[0]:.1f} before, {load[1]:.1f} after."
        )
        print()
        print("| what | size | target | min / median / max | client CPU, median |")
        print("|---|---:|---|---|---|")
        for what, size, target, key, unit in rows:
            cpu = med.get(key + "_cpu")
            print(
                f"| {what} | {size} | {target} | {spread(key, unit)} | {'-' if cpu is None else f'{cpu:.2f} s'} |"
            )
        return
    for what, size, target, key, unit in rows:
        print(f"{what.replace('`', ''):50} {size:>20}  {spread(key, unit):>24}  (target {target})")


if __name__ == "__main__":
    main()
