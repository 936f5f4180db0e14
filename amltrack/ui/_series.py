"""Downsampling a series for a chart: each bucket's minimum and maximum, so spikes stay visible.

A chart ``width`` pixels wide cannot show more than about one point per pixel column, so the series
is cut into ``width`` buckets of equal point counts and each bucket gives at most two points: its
minimum and its maximum, in the order they were logged. The first and last points are always kept,
so the line reaches both ends. A series of at most ``2 * width`` points is returned whole.

    xs, ys = downsample(steps, values, 800)      # at most ~1,600 points, every spike kept

NaN and infinities cannot be drawn: they are left out (the series cache counts them per metric).
"""

from __future__ import annotations

import math

import numpy as np

MIN_WIDTH = 10
MAX_WIDTH = 4000
_MIN = np.int64(0)
_MAX = np.int64(np.iinfo(np.int64).max)


def clamp_width(width: int) -> int:
    return max(MIN_WIDTH, min(MAX_WIDTH, int(width)))


def window(steps: np.ndarray, x0: float | None, x1: float | None, *, ordered: bool) -> np.ndarray | slice:
    """The points whose step is in ``[x0, x1]``, plus one neighbour on each side so the line runs on
    to the chart's edges. A slice when ``steps`` never decreases (a binary search), else indices.
    ``steps`` may be float64 timestamps too, for a chart over time."""
    n = len(steps)
    if x0 is None and x1 is None:
        return slice(0, n)
    if steps.dtype.kind == "f":  # timestamps: float keys are the column's own type
        lo: np.generic = np.float64(-np.inf if x0 is None else x0)
        hi: np.generic = np.float64(np.inf if x1 is None else x1)
        return _cut(steps, lo, hi, ordered)
    # Steps are int64: search with int64 keys. A float key would make numpy convert the whole
    # column to float for every comparison, an O(n) pass in what should be a binary search.
    lo = _MIN if x0 is None else np.int64(max(int(_MIN), min(int(_MAX), math.ceil(x0))))
    hi = _MAX if x1 is None else np.int64(max(int(_MIN), min(int(_MAX), math.floor(x1))))
    return _cut(steps, lo, hi, ordered)


def _cut(steps: np.ndarray, lo: np.generic, hi: np.generic, ordered: bool) -> np.ndarray | slice:
    n = len(steps)
    if ordered:
        i0 = int(np.searchsorted(steps, lo, side="left"))
        i1 = int(np.searchsorted(steps, hi, side="right"))
        return slice(max(0, i0 - 1), min(n, i1 + 1))
    inside = np.flatnonzero((steps >= lo) & (steps <= hi))
    if len(inside) == 0:
        return inside
    edges = np.array([inside[0] - 1, inside[-1] + 1])
    edges = edges[(edges >= 0) & (edges < n)]
    return np.union1d(inside, edges)


def downsample(
    x: np.ndarray, y: np.ndarray, width: int, *, all_finite: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``2 * width + 2`` points of (x, y): per bucket its min and its max, in order.

    Non-finite values of ``y`` are dropped; ``all_finite=True`` says there are none, which saves a
    pass. ``x`` and ``y`` are equally long; either may be a memory map, of which only the chosen
    points are copied.
    """
    idx = pick(y, width, all_finite=all_finite)
    return np.asarray(x[idx]), np.asarray(y[idx])


def pick(y: np.ndarray, width: int, *, all_finite: bool | None = None) -> np.ndarray | slice:
    """The positions ``downsample`` keeps, for taking the same points of other columns (steps and
    timestamps both, on a chart over time)."""
    width = clamp_width(width)
    n = len(y)
    finite_y = np.ones(0, dtype=bool)
    if all_finite is None or not all_finite:
        finite_y = np.isfinite(y)
        all_finite = bool(finite_y.all())
    if n <= 2 * width:
        if all_finite:
            return slice(0, n)
        return np.flatnonzero(finite_y)
    k = -(-n // width)  # points per bucket, rounded up: at most `width` buckets
    full = n // k
    if all_finite:
        lo_src = hi_src = np.asarray(y)
    else:
        # NaN would win every argmin and argmax: make it lose both instead.
        lo_src = np.where(finite_y, y, np.inf)
        hi_src = np.where(finite_y, y, -np.inf)
    base = np.arange(full, dtype=np.int64) * k
    imin = lo_src[: full * k].reshape(full, k).argmin(axis=1) + base
    imax = hi_src[: full * k].reshape(full, k).argmax(axis=1) + base
    parts = [np.minimum(imin, imax), np.maximum(imin, imax)]
    if full * k < n:  # the last, shorter bucket
        tail = full * k
        parts.append(np.array([tail + int(lo_src[tail:].argmin()), tail + int(hi_src[tail:].argmax())]))
    idx = np.stack(parts[:2], axis=1).ravel()
    if len(parts) == 3:
        idx = np.concatenate([idx, np.sort(parts[2])])
    idx = np.concatenate([[0], idx, [n - 1]])
    # Buckets are in order and each gives (first, second) in order, so idx never decreases.
    idx = idx[np.concatenate([[True], idx[1:] != idx[:-1]])]
    if not all_finite:
        idx = idx[finite_y[idx]]
    return idx
