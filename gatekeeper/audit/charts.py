"""Small inline-SVG charts for the HTML report: no scripts, no fonts, no network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

ALLOW, DENY = "#2e7d32", "#c62828"
PALETTE = ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#9e9d24", "#5d4037", "#ad1457")
Series = Sequence[tuple[str, Mapping[str, int]]]


def _nice_max(value: int) -> int:
    if value <= 5:
        return max(value, 1)
    magnitude: int = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def legend(items: Sequence[tuple[str, str]]) -> str:
    """Colour swatches with labels, as HTML."""
    return (
        '<div class="legend">'
        + "".join(
            f'<span><i style="background:{color}"></i>{escape(label)}</span>'
            for label, color in items
        )
        + "</div>"
    )


def stacked_columns(
    series: Series, keys: Sequence[tuple[str, str]], *, title: str, height: int = 220
) -> str:
    """Columns over ``series`` (x label → counts per key), stacked in the order of ``keys``."""
    width, left, bottom, top = 760, 48, 34, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = _nice_max(max((sum(c.get(k, 0) for k, _ in keys) for _, c in series), default=0))
    slot = plot_w / max(1, len(series))
    bar = max(1.0, slot * 0.8)
    parts = [_svg_open(width, height, title)]
    for i in range(5):
        value = peak * i // 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    label_every = max(1, len(series) // 8)
    for index, (label, counts) in enumerate(series):
        x = left + index * slot + (slot - bar) / 2
        base = float(top + plot_h)
        tip = [escape(label)]
        for key, color in keys:
            value = counts.get(key, 0)
            if not value:
                continue
            h = plot_h * value / peak
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{color}"/>'
            )
            tip.append(f"{escape(key)}: {value}")
        parts.append(
            f'<rect x="{x:.1f}" y="{top}" width="{bar:.1f}" height="{plot_h}" class="hit">'
            f"<title>{' · '.join(tip)}</title></rect>"
        )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(
    series: Series,
    keys: Sequence[tuple[str, str]],
    *,
    title: str,
    label_width: int = 170,
    width: int = 760,
) -> str:
    """Horizontal bars, one per row of ``series``, stacked in the order of ``keys``."""
    row = 24
    height = max(1, len(series)) * row + 8
    plot_w = width - label_width - 50
    peak = max((sum(c.get(k, 0) for k, _ in keys) for _, c in series), default=0) or 1
    parts = [_svg_open(width, height, title)]
    if not series:
        parts.append(f'<text x="{label_width}" y="18">no data</text>')
    for index, (label, counts) in enumerate(series):
        y = 4 + index * row
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(short)}</text>"
        )
        x = float(label_width)
        total = 0
        for key, color in keys:
            value = counts.get(key, 0)
            if not value:
                continue
            w = plot_w * value / peak
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 8}" '
                f'fill="{color}"><title>{escape(label)} · {escape(key)}: {value}</title></rect>'
            )
            x += w
            total += value
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}">{total}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )
