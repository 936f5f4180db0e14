"""Keep appending large batches to a new run until a line arrives on stdin (or 30 s, or 1,000 batches).

    python append_heavily.py STORE

Prints ``run <id>`` once the first batch is on disk. Each batch is 500 records of metric "big" whose
value is a 2,000-character string (1 MB), then flush(): the writer spends much of its time in write().
"""

import sys
import threading
import time

import amltrack

logger = amltrack.get_logger("append", store=sys.argv[1], outputs=None)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
value = "v" * 2000
end = time.monotonic() + 30
first = True
for _batch in range(1000):
    if stop.is_set() or time.monotonic() > end:
        break
    for _ in range(500):
        logger.log("big", value)
    logger.flush(timeout=30)
    if first:
        print("run", logger.run_id, flush=True)
        first = False
