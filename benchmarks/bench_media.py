"""What the rich kinds cost (issue 19): the caller's time per log_image and log_histogram call, how
long 1,000 images take to be durable, and how fast the UI answers an image card's records.

    python benchmarks/bench_media.py            # 1,000 images of 256 x 256 RGB, 1,000 histograms of 10,000 values
    python benchmarks/bench_media.py --smoke    # tiny sizes, run by the test suite
    python benchmarks/bench_media.py --copies   # what one copy of 256 x 256 RGB costs, by where it lands

- ``log_image``: each call timed with ``perf_counter_ns`` (a copy of the pixels and a queue append;
  the PNG is encoded in the writer's thread, which shares the GIL with the loop: its cost shows in
  the wall time, not here), then ``finish()``: ``images_durable_s`` is from the first call to
  ``finish()`` returning, every file and record on disk.
- ``log_image_batched``: 50 batches of 16 calls (a batch of sample predictions every epoch), the
  last of each batch waited for (untimed) before the next batch: the writer lags within a batch
  and has caught up by the next one, so the copies go into buffers it gave back. (A single call
  waited for each time measures the GIL handed back by the writer's thread as it finishes its
  write, not the copy, and is not a figure here.)
- ``log_histogram``: each call of 10,000 float64 values timed the same way (a copy; the bins are
  counted in the writer).
- ``--copies``: the copy ``log_image`` makes of 256 x 256 x 3 uint8 pixels, 1,000 times, by itself
  (no logger): ``tobytes()`` with every copy kept (as the writer keeps them until encoded) and freed
  at once; into a new ``bytearray``; into a new populated mapping (``mmap`` with ``MAP_POPULATE``);
  into a buffer used before (what ``_media.Buffers`` recycles). Median and mean.
- ``ui_media_ms``: the UI's ``/api/runs/{ref}/media`` answer for every record of the 1,000-step
  image metric, what the image card asks for when it opens, median of 5 after a first call that
  builds the series cache, from a real ``amltrack ui`` process over HTTP (bench_ui.py's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import amltrack


def timed_calls(call, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter_ns()
        call(i)
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def copy_costs(n: int = 1000, side: int = 256) -> dict[str, tuple[float, float]]:
    """(median, mean) µs of one copy of a side x side RGB uint8 array into each kind of memory."""
    import mmap

    arr = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
    src = memoryview(arr).cast("B")

    def into(new):
        def copy(i: int):
            buf = new()
            memoryview(buf)[:] = src
            return buf

        return copy

    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    used = [bytearray(arr.nbytes) for _ in range(4)]
    for b in used:
        memoryview(b)[:] = src
    ways = {
        "tobytes(), kept": (lambda i: arr.tobytes(), True),
        "tobytes(), freed at once": (lambda i: arr.tobytes(), False),
        "new bytearray, kept": (into(lambda: bytearray(arr.nbytes)), True),
        "new populated mmap, kept": (into(lambda: mmap.mmap(-1, arr.nbytes, flags=flags)), True),
        "a buffer used before": (into(lambda: used[0]), False),
    }
    out = {}
    for label, (call, keep) in ways.items():
        held = []
        times = []
        for i in range(n):
            t = time.perf_counter_ns()
            buf = call(i)
            times.append((time.perf_counter_ns() - t) / 1000)
            if keep:
                held.append(buf)
        del held
        out[label] = (statistics.median(times), statistics.mean(times))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--noise", action="store_true", help="images of random noise, PNG's worst case")
    ap.add_argument(
        "--copies", action="store_true", help="only the cost of one copy of the pixels, by kind of memory"
    )
    a = ap.parse_args()
    if a.copies:
        costs = copy_costs(20 if a.smoke else 1000)
        if a.json:
            print(json.dumps({k: {"median_us": m, "mean_us": u} for k, (m, u) in costs.items()}))
            return
        print("one copy of 256 x 256 x 3 uint8 (196,608 bytes), 1,000 times:")
        for label, (m, u) in costs.items():
            print(f"  {label:28} median {m:6.1f} us, mean {u:6.1f} us")
        return
    n = 20 if a.smoke else 1000
    side = 32 if a.smoke else 256
    rng = np.random.default_rng(0)
    # Sample-prediction-like pictures: smooth shapes with a little noise (pure noise does not
    # compress, and costs PNG several times as much: --noise measures that worst case).
    yy, xx = np.mgrid[0:side, 0:side] / side
    images = []
    for k in range(8):
        base = np.stack([np.sin(6 * xx + k), np.cos(5 * yy - k), np.sin(4 * (xx + yy) + k)], axis=-1)
        noise = rng.random(base.shape) * 255 if a.noise else rng.normal(0, 2, base.shape)  # in levels
        images.append(np.clip((base + 1) * 127 + noise, 0, 255).astype(np.uint8))
    values = rng.standard_normal(10_000)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        logger = amltrack.get_logger("media-bench", store=store, outputs=None)
        start = time.perf_counter()
        image_us = timed_calls(lambda i: logger.log_image("samples", images[i % 8], step=i), n)
        logger.finish()
        figures["images_durable_s"] = time.perf_counter() - start
        figures["log_image_median_us"] = statistics.median(image_us)
        figures["log_image_p99_us"] = pct(image_us, 0.99)
        figures["image_files_mb"] = sum(f.stat().st_size for f in store.rglob("*.png")) / 1e6

        batched = amltrack.get_logger("media-batched", store=store, outputs=None)
        batched_us = []
        for b in range(max(n // 20, 2)):
            for i in range(16):
                t = time.perf_counter_ns()
                h = batched.log_image("samples", images[i % 8], step=b * 16 + i)
                batched_us.append((time.perf_counter_ns() - t) / 1000)
            h.wait()
        batched.finish()
        figures["log_image_batched_median_us"] = statistics.median(batched_us)
        figures["log_image_batched_p99_us"] = pct(batched_us, 0.99)

        hist = amltrack.get_logger("hist-bench", store=store, outputs=None)
        hist_us = timed_calls(lambda i: hist.log_histogram("weights", values, step=i), n)
        hist.finish()
        figures["log_histogram_median_us"] = statistics.median(hist_us)
        figures["log_histogram_p99_us"] = pct(hist_us, 0.99)

        try:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_ui import Ui  # a real `amltrack ui` process, as bench_ui measures it
        except ImportError:  # the UI extra is not installed
            pass
        else:
            ui = Ui(store, Path(tmp) / "ui.log")
            try:
                url = f"/api/runs/{logger.run_id}/media?name=samples"
                ui.client.get(url).raise_for_status()  # builds the series cache
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    r = ui.client.get(url)
                    times.append((time.perf_counter() - t) * 1000)
                    assert len(r.json()["records"]) == n
                figures["ui_media_ms"] = statistics.median(times)
            finally:
                ui.close()
    if a.json:
        print(json.dumps(figures))
        return
    print(f"log_image of {side}x{side} RGB uint8, {n} calls:")
    print(
        f"  caller: median {figures['log_image_median_us']:.1f} us, p99 {figures['log_image_p99_us']:.1f} us"
    )
    print(
        f"  durable (finish() returned): {figures['images_durable_s']:.2f} s, {figures['image_files_mb']:.1f} MB"
    )
    print(
        f"  in batches of 16 (each batch waited for): median {figures['log_image_batched_median_us']:.1f} us, "
        f"p99 {figures['log_image_batched_p99_us']:.1f} us"
    )
    print(f"log_histogram of 10,000 values, {n} calls:")
    print(
        f"  caller: median {figures['log_histogram_median_us']:.1f} us, p99 {figures['log_histogram_p99_us']:.1f} us"
    )
    if "ui_media_ms" in figures:
        print(f"UI: the {n} records of the image card: {figures['ui_media_ms']:.1f} ms")


if __name__ == "__main__":
    main()
