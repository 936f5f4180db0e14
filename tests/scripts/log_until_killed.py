"""Log records as fast as possible until killed; now and then wait for one and print its step.

    python log_until_killed.py STORE SEED

Prints ``run <id>`` first, then ``waited <step>`` after ``.wait()`` on the record of that step
returned. Metric "x" has value step / 4 and metric "y" has value 3 * step, both at ``step``.
"""

import random
import sys

import amltrack

store, seed = sys.argv[1], int(sys.argv[2])
logger = amltrack.get_logger("sigkill", store=store, outputs=None)
print("run", logger.run_id, flush=True)
rng = random.Random(seed)
for i in range(50_000_000):
    h = logger.log("x", i / 4, step=i)
    logger.log("y", 3 * i, step=i)
    if rng.random() < 0.001:
        h.wait(timeout=30)
        print("waited", i, flush=True)
