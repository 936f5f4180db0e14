"""Join an existing run COUNT times in a row, each time as a new writer that opens metrics.jsonl.

    python rejoin_many.py STORE RUN_ID COUNT

Each round: get_logger(run_id=...) joins, logs one record of metric "j", waits for it, finish()
(which for a joining process only flushes and closes its writer). Prints ``done`` at the end.
"""

import sys

import amltrack

store, run_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    logger = amltrack.get_logger(run_id=run_id, store=store, outputs=None)
    logger.log("j", i).wait(timeout=30)
    logger.finish()
print("done", flush=True)
