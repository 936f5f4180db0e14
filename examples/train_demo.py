"""Train a tiny two-layer network on a synthetic two-class dataset and track it with amltrack.

    python examples/train_demo.py                   # store: $AMLTRACK_STORE, or the nearest .amltrack/
    python examples/train_demo.py --store /tmp/st --steps 500

It logs loss and accuracy every step, the learning-rate schedule once (as a list), the optimizer
and a closing note as string metrics, and writes the trained weights to ./outputs/model.npz, which
the outputs mirror stores with the run. It ends with one line: the run ID and how to look at the
run (``amltrack history last``, ``amltrack ui``). Only numpy is needed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

import amltrack

SEED = 7


def make_moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: a 2-class problem a linear model cannot solve."""
    half = n // 2
    t_outer = rng.uniform(0.0, math.pi, half)
    t_inner = rng.uniform(0.0, math.pi, n - half)
    outer = np.stack([np.cos(t_outer), np.sin(t_outer)], axis=1)
    inner = np.stack([1.0 - np.cos(t_inner), 0.5 - np.sin(t_inner)], axis=1)
    x = np.concatenate([outer, inner]) + rng.normal(0.0, noise, (n, 2))
    y = np.concatenate([np.zeros(half), np.ones(n - half)])
    order = rng.permutation(n)
    return x[order], y[order]


def lr_schedule(steps: int, base_lr: float, warmup: int) -> list[float]:
    """Linear warmup, then cosine decay to 1% of the base rate."""
    out = []
    for s in range(steps):
        if s < warmup:
            out.append(base_lr * (s + 1) / warmup)
        else:
            p = (s - warmup) / max(1, steps - warmup - 1)
            out.append(base_lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * p))))
    return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train a tiny MLP on synthetic two-moons data and log it with amltrack.",
    )
    p.add_argument(
        "--store",
        metavar="DIR",
        default=None,
        help="store directory (default: $AMLTRACK_STORE, else the nearest .amltrack/ upwards, else ./.amltrack)",
    )
    p.add_argument("--steps", metavar="N", type=int, default=300, help="training steps (default: 300)")
    p.add_argument("--lr", type=float, default=0.5, help="peak learning rate (default: 0.5)")
    p.add_argument("--hidden", type=int, default=16, help="hidden units (default: 16)")
    p.add_argument("--name", default=None, help="run name (default: mlp-h<hidden>-lr<lr>)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if args.hidden < 1:
        p.error("--hidden must be at least 1")
    return args


def train(args: argparse.Namespace) -> amltrack.Logger:
    rng = np.random.default_rng(SEED)
    x, y = make_moons(1000, noise=0.15, rng=rng)
    n_train = 800
    x_tr, y_tr, x_va, y_va = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    warmup = max(1, args.steps // 10)
    momentum = 0.9
    schedule = lr_schedule(args.steps, args.lr, warmup)
    params = {
        "model": "mlp",
        "hidden": args.hidden,
        "lr": args.lr,
        "momentum": momentum,
        "steps": args.steps,
        "warmup": warmup,
        "seed": SEED,
        "n_train": n_train,
    }
    logger = amltrack.get_logger(
        "demo",
        name=args.name or f"mlp-h{args.hidden}-lr{args.lr:g}",
        params=params,
        tags={"dataset": "two-moons", "framework": "numpy"},
        store=args.store,
    )
    logger.log("optimizer", "sgd+momentum")
    logger.log("lr_schedule", schedule)

    # A 2-H-1 network: tanh hidden layer, sigmoid output, binary cross-entropy, full-batch SGD.
    w1 = rng.normal(0.0, 1.0, (2, args.hidden))
    b1 = np.zeros(args.hidden)
    w2 = rng.normal(0.0, 1.0 / math.sqrt(args.hidden), (args.hidden, 1))
    b2 = np.zeros(1)
    weights = [w1, b1, w2, b2]
    velocity = [np.zeros_like(w) for w in weights]
    eps = 1e-7
    val_every = max(1, args.steps // 20)

    for step in range(args.steps):
        h = np.tanh(x_tr @ w1 + b1)
        p = sigmoid(h @ w2 + b2)[:, 0]
        loss = float(-np.mean(y_tr * np.log(p + eps) + (1 - y_tr) * np.log(1 - p + eps)))
        acc = float(np.mean((p > 0.5) == y_tr))
        logger.log_metrics({"loss": loss, "accuracy": acc}, step=step)  # one record for the step

        # Backward pass.
        d_logit = ((p - y_tr) / len(y_tr))[:, None]
        g_w2 = h.T @ d_logit
        g_b2 = d_logit.sum(axis=0)
        d_h = (d_logit @ w2.T) * (1.0 - h**2)
        g_w1 = x_tr.T @ d_h
        g_b1 = d_h.sum(axis=0)
        lr = schedule[step]
        for w, v, g in zip(weights, velocity, (g_w1, g_b1, g_w2, g_b2)):
            v *= momentum
            v -= lr * g
            w += v

        if step % val_every == 0 or step == args.steps - 1:
            pv = sigmoid(np.tanh(x_va @ w1 + b1) @ w2 + b2)[:, 0]
            logger.log("val/accuracy", float(np.mean((pv > 0.5) == y_va)), step=step)

    pv = sigmoid(np.tanh(x_va @ w1 + b1) @ w2 + b2)[:, 0]
    val_acc = float(np.mean((pv > 0.5) == y_va))
    logger.log("note", f"final val accuracy {val_acc:.3f} after {args.steps} steps")

    out_dir = Path("outputs")  # relative to the working directory, like a real training script
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = out_dir / "model.npz"
    np.savez(model_file, w1=w1, b1=b1, w2=w2, b2=b2)  # stored with the run by the outputs mirror

    logger.finish()
    return logger


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    logger = train(args)
    seconds = time.perf_counter() - t0
    run = amltrack.Store(logger.store).run(logger.run_id)
    points = sum(s["count"] for s in run.summary().values())
    store = f" --store {args.store}" if args.store else ""
    print(
        f"run {run.id} logged {points} points in {seconds:.2f} s; "
        f"see it with `amltrack history last{store}` or `amltrack ui{store}`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
