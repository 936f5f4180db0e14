"""A training job as a preemptible machine runs it: it resumes its run (``AMLTRACK_RUN_ID`` and
``resume="auto"``) and trains from the step after the last one recorded, up to step 999.

    AMLTRACK_RUN_ID=... python preempted_job.py STORE [STOP_AT]

With STOP_AT, it prints ``at STOP_AT`` once that step is on disk and blocks there until a signal
(the test's SIGKILL) ends it. Each step logs "loss" with log() and "acc" with log_metrics(), both at
their default steps.
"""

import sys

import amltrack

store = sys.argv[1]
stop_at = int(sys.argv[2]) if len(sys.argv) > 2 else None
logger = amltrack.get_logger("preempt", store=store, outputs=None, params={"lr": 0.1}, resume="auto")
start = logger.resumed_steps.get("loss", -1) + 1
print("start", start, flush=True)
for i in range(start, 1000):
    logger.log_metrics({"acc": i / 1000})
    handle = logger.log("loss", 1.0 / (i + 1))
    if i == stop_at:
        handle.wait()
        print("at", i, flush=True)
        sys.stdin.readline()  # blocks: the test kills this process here
