"""Join a run made by another process and log into it; started by multi_owner.py.

    python multi_joiner.py K N MODE env
    python multi_joiner.py K N MODE arg RUN_ID STORE

"env" joins through the inherited AMLTRACK_RUN_ID and AMLTRACK_STORE; "arg" passes run_id= and
store=. After ``joined <run id>`` it waits for a ``go`` line, then logs N records of ``own/K`` and
N/2 of ``shared`` interleaved, values (K + 1) * 1_000_000 + i. MODE "flush" calls flush() at the end,
MODE "exit" just returns and lets the interpreter exit.
"""

import sys

import amltrack

k, n, mode, via = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if via == "env":
    logger = amltrack.get_logger(outputs=None)
else:
    logger = amltrack.get_logger(run_id=sys.argv[5], store=sys.argv[6], outputs=None)
print("joined", logger.run_id, flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
base = (k + 1) * 1_000_000
for i in range(n):
    logger.log(f"own/{k}", base + i)
    if i % 2 == 0:
        logger.log("shared", base + i)
if mode == "flush":
    logger.flush(timeout=60)
