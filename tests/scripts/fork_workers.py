"""Use the parent's logger, a module global, in multiprocessing workers started with "fork".

    python fork_workers.py STORE MODE N

MODE "pool": Pool(2).map over 4 tasks, then close() and join(); "pool-with": the same inside
``with Pool(2) as pool:`` (whose exit terminates the workers); "process": 4 Process objects.
Task K logs N records of ``worker/K`` with values (K + 1) * 1_000_000 + i and returns without
flushing. Prints ``run <id>`` and ``exitcodes ...`` (Process mode) at the end.
"""

import multiprocessing as mp
import os
import sys

import amltrack

store, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
logger = amltrack.get_logger("fork", store=store, outputs=None)


def work(k: int) -> int:
    for i in range(n):
        logger.log(f"worker/{k}", (k + 1) * 1_000_000 + i)
    return os.getpid()


if __name__ == "__main__":
    logger.log("parent", 1)
    ctx = mp.get_context("fork")
    if mode == "pool":
        pool = ctx.Pool(2)
        try:
            pids = pool.map(work, range(4))
        finally:
            pool.close()
            pool.join()
    elif mode == "pool-with":
        with ctx.Pool(2) as pool:
            pids = pool.map(work, range(4))
    else:
        procs = [ctx.Process(target=work, args=(k,)) for k in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        print("exitcodes", *[p.exitcode for p in procs], flush=True)
    print("run", logger.run_id, flush=True)
