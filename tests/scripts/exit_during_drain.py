"""Log records and wait for them, then exit normally; say so just before amltrack's exit hook runs.

    python exit_during_drain.py STORE

Prints ``logged <run id>``, waits for a ``go`` line on stdin, and returns. An atexit hook registered
after get_logger() runs before amltrack's own (atexit runs last-registered first) and prints
``exiting``: from then on the process is in, or about to enter, amltrack's exit drain.
"""

import atexit
import sys

import amltrack

logger = amltrack.get_logger("drain", store=sys.argv[1], outputs=None)
for i in range(1000):
    h = logger.log("m", i)
h.wait(timeout=30)
print("logged", logger.run_id, flush=True)
atexit.register(print, "exiting", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
