"""A small SVG bar chart (no plotting library needed): grouped bars on a log or linear axis."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

COLORS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1")


def bars(
    title: str,
    groups: Sequence[tuple[str, Sequence[float]]],
    series: Sequence[str],
    *,
    unit: str,
    log: bool = False,
    notes: Sequence[str] = (),
    width: int = 760,
) -> str:
    """Horizontal grouped bars: one group per label, one bar per series.

    Args:
        title: the chart's title.
        groups: ``(label, values)``, one value per series.
        series: names of the series (the legend).
        unit: the values' unit (axis label).
        log: a logarithmic axis (for values spanning orders of magnitude).
        notes: lines printed under the chart.
    """
    bar_h, gap, left, right, top = 18, 14, 250, 90, 54
    rows = len(groups) * (len(series) * bar_h + gap)
    height = top + rows + 40 + 16 * len(notes)
    values = [v for _, vs in groups for v in vs if v > 0]
    vmax = max(values) if values else 1.0
    vmin = min(values) if values else 1.0
    lo = 10 ** math.floor(math.log10(vmin)) if log else 0.0
    hi = 10 ** math.ceil(math.log10(vmax)) if log else vmax * 1.1
    span = width - left - right

    def x(v: float) -> float:
        if log:
            return left + span * (math.log10(max(v, lo)) - math.log10(lo)) / (
                math.log10(hi) - math.log10(lo) or 1
            )
        return left + span * v / (hi or 1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        f"{html.escape(title)}</text>",
    ]
    for i, name in enumerate(series):
        lx = left + i * 190
        out.append(f'<rect x="{lx}" y="32" width="12" height="12" fill="{COLORS[i % 4]}"/>')
        out.append(f'<text x="{lx + 18}" y="42">{html.escape(name)}</text>')
    y = top
    for label, vs in groups:
        out.append(
            f'<text x="{left - 8}" y="{y + len(series) * bar_h / 2 + 4}" text-anchor="end">'
            f"{html.escape(label)}</text>"
        )
        for i, v in enumerate(vs):
            w = max(1.0, x(v) - left)
            out.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 3}" '
                f'fill="{COLORS[i % 4]}"/>'
            )
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 6}">{_fmt(v)} {unit}</text>')
            y += bar_h
        y += gap
    out.append(f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{y}" stroke="#444"/>')
    axis = f"{unit}, log scale" if log else unit
    out.append(
        f'<text x="{left + span / 2}" y="{y + 18}" text-anchor="middle" fill="#444">'
        f"{html.escape(axis)}</text>"
    )
    for j, note in enumerate(notes):
        out.append(f'<text x="12" y="{y + 36 + 16 * j}" fill="#444">{html.escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:.1f}"
    return f"{v:.3f}"


def stack(*charts: str, width: int = 760) -> str:
    """Several charts from :func:`bars`, one above the other, in one SVG."""
    import re

    heights = [int(re.search(r'height="(\d+)"', c).group(1)) for c in charts]  # type: ignore[union-attr]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{sum(heights)}" '
        f'viewBox="0 0 {width} {sum(heights)}">'
    ]
    y = 0
    for chart, h in zip(charts, heights, strict=True):
        out.append(chart.replace("<svg ", f'<svg y="{y}" ', 1))
        y += h
    out.append("</svg>")
    return "\n".join(out)
