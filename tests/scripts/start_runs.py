"""amltrack.start_run() in a script.

    python start_runs.py STORE MODE

MODE "ok": one block that logs and ends normally. "raise": a block that logs, then raises
ValueError("inside the block"), which is caught outside the block; the script then exits normally.
"two": two blocks one after the other. Each block prints ``run <id>`` while inside it.
"""

import sys

import amltrack

store, mode = sys.argv[1], sys.argv[2]


def block(tag: str, raise_inside: bool = False) -> None:
    with amltrack.start_run("start-run", name=tag, store=store, outputs=None) as logger:
        print("run", logger.run_id, flush=True)
        for i in range(100):
            logger.log(tag, i)
        if raise_inside:
            raise ValueError("inside the block")


if mode == "ok":
    block("only")
elif mode == "raise":
    try:
        block("failing", raise_inside=True)
    except ValueError:
        print("caught", flush=True)
else:
    block("first")
    block("second")
print("end", flush=True)
