"""Log COUNT records without waiting, print ``ready <run id>``, then block until a signal ends it.

    python log_then_block.py STORE COUNT

Metric "a" has value 7 * i at step i; metric "s" is the string "s<i>" for every 100th i.
"""

import signal
import sys
import time

import amltrack

# A process started in the background of a shell without job control inherits SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler; the SIGINT test needs the usual one.
signal.signal(signal.SIGINT, signal.default_int_handler)

store, count = sys.argv[1], int(sys.argv[2])
logger = amltrack.get_logger("signals", store=store, outputs=None)
for i in range(count):
    logger.log("a", 7 * i)
    if i % 100 == 0:
        logger.log("s", f"s{i}")
print("ready", logger.run_id, flush=True)
# Block in short sleeps, not one long blocking call: a signal the kernel hands to the writer thread
# is run by the main thread at its next bytecode, so the handler runs within 50 ms either way.
while True:
    time.sleep(0.05)
