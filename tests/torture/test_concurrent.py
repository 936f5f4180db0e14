"""Eight processes, and threads of one process, logging points and rows into one run at once: every
record present once and in its process's (or thread's) order, every row whole, every line valid JSON;
a reader running meanwhile never fails and finds every record whose wait() returned."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import orjson

import amltrack

from ..conftest import child_env
from ..test_columns import as_plain, from_json
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
        if i % 4 == 0:  # a row every fourth step: read back from several processes, a point costs more
            logger.log_metrics({f"r{k}": i, "rshared": k * 10_000_000 + i, f"rf{k}": i % 2 == 0})
        if i % 5000 == 0:
            logger.log("text", "x" * (i % 3000))  # lines of varied length
            logger.log_metrics({f"wide{k}/{j:03d}": i + j for j in range(300)}, step=i)
        i += 1
    print(i, flush=True)
""")


def test_eight_processes_one_run(tmp_path: Path) -> None:
    store = tmp_path / "s"
    owner = amltrack.get_logger("conc", store=store, outputs=None)
    seconds = size(2, 10)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(store), owner.run_id, str(k), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for k in range(8)
    ]
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
    rshared = metrics["rshared"]
    for k, n in enumerate(counts):  # rows: each process's own, in its order, each one whole
        r, rf = metrics[f"r{k}"], metrics[f"rf{k}"]
        assert r.values == list(range(0, n, 4)) and r.steps == list(range(len(r))), k  # default steps
        assert rf.steps == r.steps and rf.values == [i % 2 == 0 for i in r.values], k
        mine = [j for j, v in enumerate(rshared.values) if v // 10_000_000 == k]
        assert [rshared.values[j] - k * 10_000_000 for j in mine] == r.values, k
        assert [rshared.steps[j] for j in mine] == r.steps, k
        assert [rshared.timestamps[j] for j in mine] == r.timestamps == rf.timestamps, k  # one time a row
        wide = [metrics[f"wide{k}/{j:03d}"] for j in range(300)]
        assert all(m.steps == list(range(0, n, 5000)) for m in wide), k
        assert all(
            m.values == [s + j for s in m.steps] and m.timestamps == wide[0].timestamps
            for j, m in enumerate(wide)
        ), k
    assert len(rshared) == sum((n + 3) // 4 for n in counts)
    assert run.skipped == 0
    texts = len(metrics.get("text", []))
    assert len(recs) == 2 * sum(counts) + len(rshared) + 2 * texts  # one line a call, a row's too
    assert run.cached_summary()["records"] == sum(map(len, metrics.values()))  # one record an entry


THREADS = 4
WIDE = 500  # names of the row each thread logs every 1000 steps: a line of 15 kB


def test_threads_logging_rows_and_points_into_one_run_while_it_is_read(tmp_path: Path) -> None:
    store = tmp_path / "s"
    logger = amltrack.get_logger("threads", store=store, outputs=None)
    seconds = size(0.6, 10)
    waited = [-1] * THREADS  # per thread: the last step whose row's wait() returned
    counts = [0] * THREADS
    errors: list[BaseException] = []
    stop = threading.Event()
    reads: list[int] = []  # points seen by each read

    def work(k: int) -> None:
        try:
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                h = logger.log_metrics({f"t{k}/a": i, f"t{k}/b": i / 2, "shared": k * 10_000_000 + i}, step=i)
                logger.log(f"t{k}/p", i, step=i)
                if i % 1000 == 0:
                    h = logger.log_metrics({f"t{k}/wide/{j:03d}": i + j for j in range(WIDE)}, step=i)
                if i % 97 == 0:
                    h.wait(timeout=60)
                    waited[k] = i
                i += 1
            counts[k] = i
        except BaseException as e:  # raised in the test's thread below
            errors.append(e)

    def check(metrics: dict, k: int, least: int) -> None:
        """Thread ``k``'s records in ``metrics``: a prefix of its calls (row i, point i, wide row i,
        row i + 1, ...), each row whole, at least the rows up to step ``least``."""
        a = metrics.get(f"t{k}/a")
        n = len(a) if a is not None else 0
        assert n > least, f"thread {k}: waited for step {least}, read {n} rows"
        if not n:
            return
        assert a.steps == a.values == list(range(n)), k
        b = metrics[f"t{k}/b"]
        assert b.steps == a.steps and b.values == [s / 2 for s in a.steps] and b.timestamps == a.timestamps, k
        shared = metrics["shared"]
        mine = [j for j, v in enumerate(shared.values) if v // 10_000_000 == k]
        assert [shared.values[j] - k * 10_000_000 for j in mine] == a.steps, k
        assert [shared.timestamps[j] for j in mine] == a.timestamps, k
        p = metrics.get(f"t{k}/p")
        points = len(p) if p is not None else 0
        assert points in (n - 1, n) and (not p or p.steps == p.values == list(range(points))), k
        # a wide row can be missing only if it was the last call to land: its row and point are the last
        want = list(range(0, points, 1000))
        cut_short = points == n and want[-1:] == [n - 1]
        wide = [metrics.get(f"t{k}/wide/{j:03d}") for j in range(WIDE)]
        if wide[0] is None:
            assert all(m is None for m in wide), f"thread {k}: a wide row read back in part"
            assert not want or cut_short and want == [0], k
            return
        steps = wide[0].steps
        assert steps == want or cut_short and steps == want[:-1], (k, steps, want)
        for j, m in enumerate(wide):  # each wide row whole: every name at every one of its steps
            assert m is not None and m.steps == steps and m.timestamps == wide[0].timestamps, (k, j)
            assert m.values == [s + j for s in steps], (k, j)

    def read() -> None:
        try:
            while not stop.is_set():
                least = list(waited)  # waits that returned before this read began
                run = amltrack.Store(store).run(logger.run_id)
                metrics = run.metrics()  # never fails while the file grows
                assert run.skipped <= 1, f"{run.skipped} lines skipped, only one can be in flight"
                for k in range(THREADS):
                    check(metrics, k, least[k])
                reads.append(sum(map(len, metrics.values())))
        except BaseException as e:
            errors.append(e)
            stop.set()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a line in flight, read torn, is reported: not an error here
        workers = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        reader = threading.Thread(target=read)
        for t in (*workers, reader):
            t.start()
        for t in workers:
            t.join()
        stop.set()
        reader.join()
    assert not errors, errors
    assert all("unreadable line" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert len(reads) >= 2, reads  # the reader ran while the threads logged
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    metrics = run.metrics()
    assert run.skipped == 0
    for k, n in enumerate(counts):
        assert len(metrics[f"t{k}/a"]) == n, k  # everything, not only what was waited for
        check(metrics, k, n - 1)
        assert len(metrics[f"t{k}/p"]) == n and len(metrics[f"t{k}/wide/000"]) == (n + 999) // 1000, k
    raw = (run.dir / "metrics.jsonl").read_bytes()
    lines = [orjson.loads(line) for line in raw.splitlines()]  # every line valid JSON
    assert len(lines) == sum(2 * n + (n + 999) // 1000 for n in counts)  # one line a call
    assert as_plain(metrics) == from_json(run.dir)  # the index and the JSON Lines read the same
    assert run.cached_summary()["records"] == sum(map(len, metrics.values()))


def test_threads_logging_while_finish_runs_get_each_record_written_or_refused(tmp_path: Path) -> None:
    # log() queues without a lock, so finish() on the main thread races the other threads' appends;
    # a small switch interval makes the threads take turns inside log() often enough to hit it.
    # test_writer.py forces the worst order (the append after the last drain) deterministically.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for trial in range(size(5, 60)):
            logger = amltrack.get_logger("race", store=tmp_path, outputs=None)
            returned: list[list[int]] = [[] for _ in range(3)]

            def work(k: int, logger: amltrack.Logger = logger, returned: list[list[int]] = returned) -> None:
                i = 0
                while True:
                    try:
                        logger.log(f"t{k}", i)
                    except amltrack.RunFinishedError:
                        return
                    returned[k].append(i)
                    i += 1

            threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.02)
            logger.finish()
            for t in threads:
                t.join(10)
                assert not t.is_alive()
            run = amltrack.Store(tmp_path).run(logger.run_id)
            for k in range(3):  # each value whose log() returned is written, and no other
                got = run.metric(f"t{k}").values if returned[k] else []
                assert got == returned[k], (trial, k, len(got), len(returned[k]))
    finally:
        sys.setswitchinterval(interval)
