"""Torture tests: a quick subset runs in CI; AMLTRACK_TORTURE=1 runs the full sizes."""

from __future__ import annotations

import os

FULL = os.environ.get("AMLTRACK_TORTURE", "") not in ("", "0")


def size(quick: int, full: int) -> int:
    return full if FULL else quick
