"""The bar chart of the peers benchmark: an SVG written by hand (no plotting library needed).

One panel per figure, one bar per tool, on a log scale (the figures span five orders of magnitude);
amltrack's bar is coloured, the peers' are grey, and each bar is labelled with its value and the ratio
to amltrack. ``run.py`` calls ``svg(results, FIGURES)``.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

PANEL_W, LABEL_W, BAR_W, ROW_H, TITLE_H, AXIS_H, GAP = 490, 120, 230, 18, 26, 20, 18
COLUMNS = 2
AMLTRACK, PEER, SCALED = "#2b6cb0", "#a0aec0", "#cbd5e0"  # amltrack, a peer, a peer's scaled or bound figure


def _tick(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _value(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _ratio(r: float) -> str:
    return f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"


def _panel(
    x0: float, y0: float, title: str, rows: list[tuple[str, float, float | None, bool, str]]
) -> list[str]:
    """rows: (name, value, ratio, is_amltrack, mark) where mark is "", "≈" (scaled) or "> " (lower bound)."""
    out = [f'<text x="{x0}" y="{y0 + 16}" font-weight="bold">{escape(title)}</text>']
    vals = [r[1] for r in rows if r[1] > 0]
    if not vals:
        return out
    lo = math.floor(math.log10(min(vals))) - 1
    hi = math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo + 1
    bx = x0 + LABEL_W

    def xpos(v: float) -> float:
        return bx + BAR_W * (math.log10(v) - lo) / (hi - lo)

    top = y0 + TITLE_H
    bottom = top + ROW_H * len(rows)
    for e in range(lo, hi + 1):
        x = bx + BAR_W * (e - lo) / (hi - lo)
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" stroke="#e2e8f0"/>')
        out.append(
            f'<text x="{x:.1f}" y="{bottom + 13}" text-anchor="middle" fill="#718096" '
            f'font-size="10">{_tick(10.0**e)}</text>'
        )
    for i, (name, v, ratio, ours, mark) in enumerate(rows):
        y = top + i * ROW_H
        colour = AMLTRACK if ours else SCALED if mark else PEER
        out.append(
            f'<text x="{bx - 6}" y="{y + 12}" text-anchor="end"'
            f"{' font-weight=' + chr(34) + 'bold' + chr(34) if ours else ''}>{escape(name)}</text>"
        )
        if v <= 0:
            continue
        w = max(1.0, xpos(v) - bx)
        out.append(f'<rect x="{bx}" y="{y + 2}" width="{w:.1f}" height="{ROW_H - 5}" fill="{colour}"/>')
        bound = "> " if mark == "> " else ""
        label = mark + _value(v) + ("" if ours or ratio is None else f"  ({bound}{_ratio(ratio)})")
        out.append(f'<text x="{bx + w + 4:.1f}" y="{y + 12}" fill="#2d3748">{escape(label)}</text>')
    return out


def svg(results: dict, figures: list[tuple[str, str, str, str]]) -> str:
    """The chart of ``results`` (see run.py) as an SVG document."""
    variants, summary = results["variants"], results["summary"]
    names = [n for n in variants if n in summary]
    panels = []
    for key, label, unit, _ in figures:
        rows = [
            (
                variants[n].get("short", n),
                summary[n][key]["median"],
                summary[n][key].get("ratio"),
                n == "amltrack",
                "> " if summary[n][key].get("lower_bound") else "≈" if summary[n][key].get("scaled") else "",
            )
            for n in names
            if key in summary[n]
        ]
        panels.append((f"{label.replace('`', '')}, {unit} (log scale, lower is better)", rows))
    panel_h = TITLE_H + ROW_H * max([len(r) for _, r in panels] + [1]) + AXIS_H + GAP
    n_rows = math.ceil(len(panels) / COLUMNS)
    width, height = PANEL_W * COLUMNS + 20, panel_h * n_rows + 40
    meta = results["meta"]
    body = [
        f'<text x="10" y="20" font-size="14" font-weight="bold">amltrack and its peers, '
        f"{escape(meta['date'])}: median of {meta['repeat']} runs; ratio peer / amltrack in brackets; "
        f"≈ scaled from a smaller run; &gt; timed out</text>"
    ]
    for i, (title, rows) in enumerate(panels):
        x0 = 10 + (i % COLUMNS) * PANEL_W
        y0 = 34 + (i // COLUMNS) * panel_h
        body += _panel(x0, y0, title, rows)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n"
    )
