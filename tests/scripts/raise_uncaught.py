"""Log COUNT records without waiting for any, then die of an uncaught RuntimeError.

python raise_uncaught.py STORE COUNT
"""

import sys

import amltrack


def fail_here() -> None:
    raise RuntimeError("deliberate failure 42")


store, count = sys.argv[1], int(sys.argv[2])
logger = amltrack.get_logger("uncaught", store=store, outputs=None)
print("run", logger.run_id, flush=True)
for i in range(count):
    logger.log("before", i * 2)
fail_here()
