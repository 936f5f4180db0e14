"""Log COUNT records of a few metrics and an artifact without waiting, then just exit (no finish).

python log_and_exit.py STORE COUNT
"""

import sys

import amltrack

store, count = sys.argv[1], int(sys.argv[2])
logger = amltrack.get_logger("normal", store=store, outputs=None)
print("run", logger.run_id, flush=True)
for i in range(count):
    logger.log("i", i)
    logger.log("f", i + 0.5)
    if i % 10 == 0:
        logger.log("s", f"step {i}")
        logger.log("l", [i, i + 1, i + 2])
logger.upload("notes/end.txt", "the end")
