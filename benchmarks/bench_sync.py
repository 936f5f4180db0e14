"""Speed of `amltrack sync` to a real `amltrack server` on loopback, each sync a fresh CLI process.

    python benchmarks/bench_sync.py              # full sizes, as in docs/benchmarks.md
    python benchmarks/bench_sync.py --smoke      # tiny sizes, run by the test suite
    python benchmarks/bench_sync.py --markdown --repeat 3

Targets (issue 5): one run of 1,000,000 metric records pushed within 10 s; a 200 MB artifact at
100 MB/s or more; a re-sync of 100 runs with nothing to send within 0.5 s. The runs are made once
by the real logger in a child process; each repeat starts `amltrack server --port 0` on a fresh
store (so every push is real, and the local ledgers are cleared for it), then times
`amltrack sync --to URL --json` as the user would type it, each once the server is idle (its UI
warms the chart caches of new runs in the background). The same repeat times
`python -c "import amltrack.sync"` and a bare `python -c pass`, the floor every command pays.
The CPU column is the sync process's user + system time and the server's during the sync.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from bench_cli import amltrack_command
from bench_core import cpu_model

TOKEN = "bench-write-token-0123456789abcdef"
MB = 1_000_000

ONE_METRIC = textwrap.dedent("""
    import sys
    import amltrack
    with amltrack.start_run("bench-sync", store=sys.argv[2], outputs=None) as lg:
        log = lg.log
        for i in range(int(sys.argv[1])):
            log("loss", 1.0 / (i + 1))
""")

ONE_ARTIFACT = textwrap.dedent("""
    import os, sys
    import amltrack
    size, store, scratch = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    with open(scratch, "wb") as f:  # random bytes: nothing on the way may compress them
        for left in range(size, 0, -(1 << 20)):
            f.write(os.urandom(min(left, 1 << 20)))
    with amltrack.start_run("bench-sync", store=store, outputs=None) as lg:
        lg.log("loss", 0.5)
        lg.upload_file("model/weights.bin", scratch).wait()
    os.unlink(scratch)
""")

MANY_RUNS = textwrap.dedent("""
    import sys
    import amltrack
    for r in range(int(sys.argv[1])):
        with amltrack.start_run("bench-sync", store=sys.argv[2], outputs=None, params={"r": r}) as lg:
            for i in range(1000):
                lg.log("loss", 1.0 / (i + 1))
            lg.upload("notes.txt", f"run {r}")
""")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLTRACK_")}
    env.update(extra)
    return env


class Server:
    """`amltrack server --port 0` on 127.0.0.1 over ``store``, with one write token; a context manager."""

    def __init__(self, cli: list[str], store: str, log: str) -> None:
        self.cmd = [*cli, "server", "--store", store, "--port", "0"]
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> Server:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=child_env(AMLTRACK_SERVER_TOKENS=f"write:{TOKEN}"),
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


def make(code: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=child_env())


def forget_pushes(store: str) -> None:
    """Drop the runs' ledgers (runs/<id>/sync/), so that the next sync asks the fresh server."""
    runs = os.path.join(store, "runs")
    for rid in os.listdir(runs):
        shutil.rmtree(os.path.join(runs, rid, "sync"), ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process so far (Linux; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, quiet: float, timeout: float = 300) -> None:
    """Until the process has used under 2 % of a core for ``quiet`` seconds. The server's UI warms
    the chart caches of newly pushed runs in the background (it looks every 2 s), and a push timed
    meanwhile would share the CPU with it."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if not now - before > 0.02 * quiet:  # NaN (no /proc) counts as idle
            return
        before = now
    raise RuntimeError(f"the server (pid {pid}) stayed busy for {timeout} s")


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, dict]:
    """Wall time and CPU time of the command's process, and its JSON output."""
    c0, t0 = children_cpu(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt, cpu = time.perf_counter() - t0, children_cpu() - c0
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {out.returncode}:\n{out.stdout}{out.stderr}")
    return dt, cpu, (json.loads(out.stdout) if out.stdout.lstrip().startswith(("{", "[")) else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--repeat", type=int, default=None, help="runs of each figure (default 5)")
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table for docs/benchmarks.md")
    a = ap.parse_args()
    n_records, art_bytes, n_runs, repeat = (
        (20_000, 2 * MB, 5, 1) if a.smoke else (1_000_000, 200 * MB, 100, 5)
    )
    repeat = a.repeat or repeat
    cli = amltrack_command()
    results: dict[str, list[float]] = {}
    load = [os.getloadavg()[0]]  # other work on the machine shows up in every figure here

    def add(key: str, v: float) -> None:
        results.setdefault(key, []).append(v)

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        metrics, artifact, many = (os.path.join(tmp, n) for n in ("metrics", "artifact", "many"))
        make(ONE_METRIC, str(n_records), metrics)
        make(ONE_ARTIFACT, str(art_bytes), artifact, os.path.join(tmp, "weights.bin"))
        make(MANY_RUNS, str(n_runs), many)
        metrics_bytes = sum(
            os.path.getsize(os.path.join(metrics, "runs", r, "metrics.jsonl"))
            for r in os.listdir(os.path.join(metrics, "runs"))
        )
        # No remotes config of the user's is read, and the token reaches the CLI as a user's would.
        env = child_env(AMLTRACK_TOKEN=TOKEN, AMLTRACK_CONFIG_DIR=os.path.join(tmp, "config"))

        def run(key: str, cmd: list[str], server: Server | None = None) -> dict:
            """Time ``cmd``; record its wall time, its CPU and the server's CPU meanwhile."""
            pid = server.proc.pid if server and server.proc else None
            if pid:
                wait_idle(pid, 0.5 if a.smoke else 3.0)
            s0 = cpu_seconds(pid) if pid else 0.0
            dt, cpu, rep = timed(cmd, env)
            add(key, dt)
            add(key + "_client_cpu", cpu)
            if pid:
                add(key + "_server_cpu", cpu_seconds(pid) - s0)
            return rep

        def sync(key: str, server: Server, store: str, *extra: str) -> dict:
            return run(key, [*cli, "sync", "--store", store, "--to", server.url, "--json", *extra], server)

        for i in range(repeat):
            run("floor_python_s", [sys.executable, "-c", "pass"])
            run("import_sync_s", [sys.executable, "-c", "import amltrack.sync"])
            served = os.path.join(tmp, f"server{i}")
            with Server(cli, served, os.path.join(tmp, f"server{i}.log")) as server:
                for store in (metrics, artifact, many):
                    forget_pushes(store)
                rep = sync("metrics_push_s", server, metrics)
                assert rep["counts"]["pushed"] == 1 and rep["bytes"] >= metrics_bytes, rep
                # What `history info` costs over that run: the server's summary, against the local
                # read of the whole file, and the CLI's own start-up.
                (rid,) = os.listdir(os.path.join(metrics, "runs"))
                info = run(
                    "info_remote_s",
                    [*cli, "history", "info", "-r", rid, "--remote", server.url, "--json"],
                    server,
                )
                assert info["metrics"]["loss"]["count"] == n_records, info["metrics"]
                run("info_local_s", [*cli, "history", "info", "-r", rid, "--store", metrics, "--json"])
                run("cli_floor_s", [*cli, "--version"])
                rep = sync("artifact_push_s", server, artifact)
                assert rep["counts"]["pushed"] == 1 and rep["bytes"] >= art_bytes, rep
                add("artifact_mb_s", art_bytes / MB / results["artifact_push_s"][-1])
                rep = sync("first_push_runs_s", server, many)
                assert rep["counts"]["pushed"] == n_runs, rep
                rep = sync("resync_s", server, many)
                assert rep["counts"]["up_to_date"] == n_runs and rep["bytes"] == 0, rep
                rep = sync("resync_all_s", server, many, "--all")
                assert rep["counts"]["up_to_date"] == n_runs and rep["bytes"] == 0, rep
            shutil.rmtree(served)  # a few hundred MB a repeat
    load.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in results.items()}
    if a.json:
        print(json.dumps(med))
        return
    rows = [
        (
            "push one run's metrics",
            f"{n_records:,} records ({metrics_bytes / MB:.0f} MB)",
            "≤ 10 s",
            "metrics_push_s",
            "s",
        ),
        ("push one run's artifact", f"{art_bytes / MB:.0f} MB, random", "-", "artifact_push_s", "s"),
        ("... as throughput", f"{art_bytes / MB:.0f} MB, random", "≥ 100 MB/s", "artifact_mb_s", "MB/s"),
        ("first push of many small runs", f"{n_runs:,} runs", "-", "first_push_runs_s", "s"),
        ("re-sync, nothing to send (the ledger answers)", f"{n_runs:,} runs", "≤ 0.5 s", "resync_s", "s"),
        (
            "re-sync with `--all` (the server is asked about each)",
            f"{n_runs:,} runs",
            "-",
            "resync_all_s",
            "s",
        ),
        (
            "`history info --remote` of that run (the server's summary)",
            f"{n_records:,} records",
            "≤ 0.3 s + start-up",
            "info_remote_s",
            "s",
        ),
        (
            "`history info` of that run, local (reads the whole file)",
            f"{n_records:,} records",
            "-",
            "info_local_s",
            "s",
        ),
        ("start-up: `amltrack --version`", "-", "-", "cli_floor_s", "s"),
        ('`python -c "import amltrack.sync"`', "-", "-", "import_sync_s", "s"),
        ("floor: `python -c pass`", "-", "-", "floor_python_s", "s"),
    ]

    def spread(key: str, unit: str) -> str:
        vals = sorted(results[key])
        if unit == "MB/s":
            return " / ".join(f"{v:.0f}" for v in (vals[0], med[key], vals[-1])) + " MB/s"
        return " / ".join(f"{v:.2f}" for v in (vals[0], med[key], vals[-1])) + " s"

    def cpu(key: str) -> str:
        if key + "_client_cpu" not in med:
            return "-"
        server = med.get(key + "_server_cpu")
        return f"{med[key + '_client_cpu']:.2f}" + (f" + {server:.2f}" if server is not None else "") + " s"

    if a.markdown:
        import platform

        import amltrack

        model = cpu_model()
        print(
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({model}, {os.cpu_count()} cores), "
            f"Python {platform.python_version()}, amltrack {amltrack.__version__}; min / median / max of "
            f"{repeat} repeats, each on a fresh server store, each sync a fresh `amltrack sync --to URL "
            f"--json` process over loopback with a write token; load average {load[0]:.1f} before, "
            f"{load[1]:.1f} after."
        )
        print()
        print("| what | size | target | min / median / max | CPU: client + server, median |")
        print("|---|---:|---|---|---|")
        for what, size, target, key, unit in rows:
            print(f"| {what} | {size} | {target} | {spread(key, unit)} | {cpu(key)} |")
        return
    for what, size, target, key, unit in rows:
        print(
            f"{what.replace('`', ''):55} {size:>28}  {spread(key, unit):>24}  CPU {cpu(key):>14}  "
            f"(target {target})"
        )
    print(f"(min / median / max of {repeat} repeats, each on a fresh server store)")


if __name__ == "__main__":
    main()
