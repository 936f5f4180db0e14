"""Speed of the command line as a user feels it: each command's whole process, start to exit.

    python benchmarks/bench_cli.py              # full sizes, as in docs/benchmarks.md
    python benchmarks/bench_cli.py --smoke      # tiny sizes, run by the test suite

Targets (issue 3): `amltrack --help` within 150 ms; `history list` over 10,000 runs within 1 s;
`history info` on a run with a 1,000,000-point metric within 1 s. The commands are interleaved and
repeated, and the same run times a bare `python -c pass` as the floor every command pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from bench_core import make_runs

LOG_ONE_METRIC = textwrap.dedent("""
    import sys
    import amltrack
    n = int(sys.argv[1])
    logger = amltrack.get_logger("bench", store=sys.argv[2], outputs=None)
    log = logger.log
    for i in range(n):
        log("loss", 1.0 / (i + 1))
    for i in range(100):
        log("accuracy", i / 100)
    logger.finish()
    print(logger.run_id)
""")


def amltrack_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "amltrack")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "amltrack"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--repeat", type=int, default=None, help="runs of each command (default 15)")
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table for docs/benchmarks.md")
    a = ap.parse_args()
    n_runs, n_points, repeat = (50, 20_000, 2) if a.smoke else (10_000, 1_000_000, 15)
    repeat = a.repeat or repeat
    cli = amltrack_command()
    with tempfile.TemporaryDirectory() as tmp:
        listing = os.path.join(tmp, "listing")
        make_runs(listing, n_runs)
        big = os.path.join(tmp, "big")
        run_id = subprocess.run(
            [sys.executable, "-c", LOG_ONE_METRIC, str(n_points), big],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        commands = {
            "floor_python_s": [sys.executable, "-c", "pass"],
            "help_s": [*cli, "--help"],
            "list_s": [*cli, "history", "list", "--store", listing],
            "list_all_json_s": [*cli, "history", "list", "--limit", "0", "--json", "--store", listing],
            "info_s": [*cli, "history", "info", "-r", run_id, "--store", big],
            "info_json_s": [*cli, "history", "info", "-r", run_id, "--json", "--store", big],
        }
        results: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(repeat):
            for key, cmd in commands.items():
                results[key].append(timed(cmd))
    med = {k: statistics.median(v) for k, v in results.items()}
    if a.json:
        print(json.dumps(med))
        return
    rows = [
        ("`amltrack --help`", "-", "≤ 150 ms", "help_s"),
        ("`history list` (the newest 20)", f"{n_runs:,} runs", "≤ 1 s", "list_s"),
        ("`history list --limit 0 --json` (every run)", f"{n_runs:,} runs", "-", "list_all_json_s"),
        ("`history info -r RUN`", f"{n_points:,}-point metric", "≤ 1 s", "info_s"),
        ("`history info -r RUN --json`", f"{n_points:,}-point metric", "-", "info_json_s"),
        ("floor: `python -c pass`", "-", "-", "floor_python_s"),
    ]

    def spread(key: str) -> str:
        vals = sorted(results[key])
        return " / ".join(f"{v * 1000:.0f}" for v in (vals[0], med[key], vals[-1])) + " ms"

    if a.markdown:
        import platform

        print(
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; min / median / max of {repeat} runs of each command, "
            f"interleaved, each a fresh process ({'the `amltrack` console script' if len(cli) == 1 else '`python -m amltrack`'})."
        )
        print()
        print("| command | size | target | min / median / max |")
        print("|---|---:|---|---|")
        for what, size, target, key in rows:
            print(f"| {what} | {size} | {target} | {spread(key)} |")
        return
    for what, size, target, key in rows:
        print(f"{what.replace('`', ''):45} {size:>22}  {spread(key):>22}  (target {target})")
    print(f"(min / median / max of {repeat} runs of each command, interleaved)")


if __name__ == "__main__":
    main()
