"""Create a run, then start four processes at once that join it and log into it concurrently.

    python multi_owner.py STORE N MODE

Two children find the run through the AMLTRACK_RUN_ID / AMLTRACK_STORE this process inherited to
them (get_logger() set both), two are given ``run_id=`` and ``store=`` with neither variable set.
Prints ``run <id>``, then ``children <exit codes>`` once all four have exited, then waits for a
line on stdin before exiting normally (without finish()), so the caller can look at the run while
its owner is alive. MODE is passed on to the children (see multi_joiner.py).
"""

import os
import subprocess
import sys
from pathlib import Path

import amltrack

store, n, mode = sys.argv[1], sys.argv[2], sys.argv[3]
joiner = str(Path(__file__).with_name("multi_joiner.py"))
logger = amltrack.get_logger("multi", store=store, outputs=None)
for i in range(100):
    logger.log("owner", i)
print("run", logger.run_id, flush=True)

inherited = dict(os.environ)
if inherited.get("AMLTRACK_RUN_ID") != logger.run_id or not inherited.get("AMLTRACK_STORE"):
    sys.exit(f"get_logger() did not export the run: {inherited.get('AMLTRACK_RUN_ID')!r}")
explicit = {k: v for k, v in os.environ.items() if k not in ("AMLTRACK_RUN_ID", "AMLTRACK_STORE")}
specs = [(0, "env", inherited), (1, "env", inherited), (2, "arg", explicit), (3, "arg", explicit)]

procs: list[subprocess.Popen] = []
try:
    for k, via, env in specs:
        argv = [sys.executable, joiner, str(k), n, mode, via]
        if via == "arg":
            argv += [logger.run_id, store]
        procs.append(
            subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    # A barrier: every child has joined the run before any of them logs.
    for p in procs:
        line = p.stdout.readline().split()
        if line != ["joined", logger.run_id]:
            sys.exit(f"a child did not join {logger.run_id}: {line}")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.stdin.close()
    codes = [p.wait(timeout=60) for p in procs]
    print("children", *codes, flush=True)
    sys.stdin.readline()
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
