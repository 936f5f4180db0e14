"""A learning-rate sweep: one run per setting, each with its params, ready to compare.

    python examples/sweep.py        # store: $AMLTRACK_STORE, or the nearest .amltrack/
    amltrack history list           # the three runs, newest first
    amltrack ui                     # its compare page overlays their loss curves

``start_run()`` opens a run for the ``with`` block: completed when the block ends, failed if it
raises. The loss curve here is made up, so the script needs nothing but amltrack.
"""

from __future__ import annotations

import math
import random

import amltrack

LEARNING_RATES = (0.1, 0.03, 0.01)
STEPS = 50


def fake_loss_curve(lr: float, steps: int, seed: int = 0) -> list[float]:
    """A noisy exponential decay that falls faster for a larger learning rate."""
    rng = random.Random(seed)
    return [2.0 * math.exp(-lr * 5 * step) + 0.05 + rng.uniform(-0.02, 0.02) for step in range(steps)]


def main() -> None:
    ids = []
    for lr in LEARNING_RATES:
        # outputs=None: this sweep writes no files, so no run needs to watch ./outputs.
        with amltrack.start_run("sweep", name=f"lr{lr}", params={"lr": lr}, outputs=None) as logger:
            for step, loss in enumerate(fake_loss_curve(lr, STEPS)):
                logger.log_metrics({"loss": loss}, step=step)
            ids.append(logger.run_id)
    print(f"{len(ids)} runs of experiment 'sweep': {', '.join(ids)}")
    print("compare them with `amltrack history list` or `amltrack ui` (its compare page overlays them)")


if __name__ == "__main__":
    main()
