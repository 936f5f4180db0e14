"""The outputs mirror: how soon a closed file is stored, and what mirroring costs a training loop.

    python benchmarks/bench_mirror.py            # 300 files for latency, 1,000 for the slowdown
    python benchmarks/bench_mirror.py --smoke    # tiny sizes, run by the test suite

1. Latency: files are written 20 ms apart into a mirrored folder; the time from close() returning
   to the manifest line that says "stored" (median and p99). By design a closed file waits 0.5 s
   (SETTLE) before it is copied, so a temporary file can be renamed away first.
2. Slowdown: a pure-Python training loop that writes a 10 KB file into outputs/ every few steps,
   1,000 files in all, timed with the mirror off and on (the run's final sweep excluded), each in a
   fresh process, alternating, median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap

LATENCY = textwrap.dedent("""
    import json, os, sys, threading, time, orjson
    from pathlib import Path
    from amltrack._mirror import Mirror
    n, tmp = int(sys.argv[1]), Path(sys.argv[2])
    run_dir = tmp / "run"; run_dir.mkdir()
    m = Mirror(tmp / "outputs", run_dir); m.start()
    closed, stored = {}, {}
    manifest = run_dir / "artifacts.jsonl"
    done = threading.Event()

    def watch():  # read the manifest as it grows, while the files are being written
        seen = 0
        while not done.is_set():
            data = manifest.read_bytes() if manifest.exists() else b""
            lines = data.splitlines()
            now = time.monotonic()
            for line in lines[seen:]:
                stored.setdefault(orjson.loads(line)["path"], now)
            seen = len(lines)
            time.sleep(0.002)

    t = threading.Thread(target=watch); t.start()
    for i in range(n):
        p = tmp / "outputs" / f"f{i}.bin"
        with open(p, "wb") as f:
            f.write(os.urandom(10_000))
        closed[f"outputs/f{i}.bin"] = time.monotonic()
        time.sleep(0.02)
    deadline = time.monotonic() + 60
    while len(stored) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set(); t.join()
    m.stop()
    lat = sorted((stored[k] - closed[k]) * 1000 for k in closed if k in stored)
    print(json.dumps({"median_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)], "n": len(lat)}))
""")

TRAIN = textwrap.dedent("""
    import json, os, sys, time
    import amltrack
    files, mode = int(sys.argv[1]), sys.argv[2]
    logger = amltrack.get_logger("bench", store=sys.argv[3], outputs="outputs" if mode == "on" else None)
    os.makedirs("outputs", exist_ok=True)
    steps = files * 20
    payload = os.urandom(10_000)
    t = time.perf_counter()
    acc = 0.0
    for step in range(steps):
        for k in range(2000):  # the 'model': pure Python work holding the GIL
            acc += (k * step) % 7
        logger.log("loss", acc / (step + 1))
        if step % 20 == 0:
            with open(f"outputs/sample_{step // 20:05d}.bin", "wb") as f:
                f.write(payload)
    loop = time.perf_counter() - t
    logger.finish()
    print(json.dumps({"loop_s": loop, "files": len(os.listdir("outputs"))}))
""")


def child(code: str, *args: str, cwd: str | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=cwd
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n_lat, n_files, repeat = (20, 20, 1) if a.smoke else (300, 1000, 5)
    repeat = a.repeat or repeat
    res: dict[str, list[float]] = {"median_ms": [], "p99_ms": [], "off_s": [], "on_s": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            lat = child(LATENCY, str(n_lat), tmp)
            res["median_ms"].append(lat["median_ms"])
            res["p99_ms"].append(lat["p99_ms"])
        for mode in ("off", "on"):
            with tempfile.TemporaryDirectory() as tmp:
                out = child(TRAIN, str(n_files), mode, f"{tmp}/store", cwd=tmp)
                assert out["files"] == n_files
                res[f"{mode}_s"].append(out["loop_s"])
    med = {k: statistics.median(v) for k, v in res.items()}
    med["slowdown_pct"] = (med["on_s"] / med["off_s"] - 1) * 100
    if a.json:
        print(json.dumps(med))
        return
    print(
        f"close -> stored, {n_lat} files 20 ms apart: median {med['median_ms']:.0f} ms, p99 {med['p99_ms']:.0f} ms "
        "(0.5 s of it is the deliberate settle time)"
    )
    print(
        f"training loop writing {n_files:,} files to outputs/: {med['off_s']:.2f} s unmirrored, "
        f"{med['on_s']:.2f} s mirrored: {med['slowdown_pct']:+.1f} % (target <= 5 %)"
    )
    print(f"(median of {repeat} runs, each in a fresh process)")


if __name__ == "__main__":
    main()
