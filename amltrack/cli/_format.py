"""Text output for the CLI: tables, durations, sparklines, JSON."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import orjson

SPARKS = "▁▂▃▄▅▆▇█"


def print_json(obj: Any) -> None:
    sys.stdout.write(
        orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=_default).decode()
        + "\n"
    )


def _default(o: Any) -> Any:
    if isinstance(o, float):
        return None
    raise TypeError


def json_safe(v: Any) -> Any:
    """NaN and infinities as the strings the metrics files use, so --json output is standard JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, list):
        return [json_safe(x) for x in v]
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    return v


def sparkline(values: Sequence[Any], width: int = 24) -> str:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    nums = [v for v in nums if math.isfinite(v)]
    if not nums:
        return ""
    if len(nums) > width:  # bucket means, so the line keeps its shape
        step = len(nums) / width
        nums = [
            sum(b) / len(b)
            for i in range(width)
            if (b := nums[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
        ]
    lo, hi = min(nums), max(nums)
    if hi == lo:
        return SPARKS[3] * len(nums)
    return "".join(SPARKS[min(7, int((v - lo) / (hi - lo) * 8))] for v in nums)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return f"[{len(v)} values]"
    if v is None:
        return "-"
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
