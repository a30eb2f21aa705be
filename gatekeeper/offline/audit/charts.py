"""Small inline-SVG charts for the HTML report: no fonts, no network.

A bar or column may carry a filter (``links``, e.g. ``reason=quota_exceeded``) in a
``data-filter`` attribute: the report's script applies it to the decision table when clicked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

ALLOW, DENY = "#2e7d32", "#c62828"
PALETTE = ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#9e9d24", "#5d4037", "#ad1457")
Series = Sequence[tuple[str, Mapping[str, int]]]


def _nice_max(value: int) -> int:
    if value <= 4:
        return max(value, 1)
    if value <= 8:
        return 8
    magnitude: int = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def _steps(peak: int) -> int:
    """Grid lines for an axis up to ``peak`` (a ``_nice_max``) that fall on whole numbers."""
    if peak <= 4:
        return peak
    return 4 if str(peak)[0] in "28" else 5


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


def _filter(links: Sequence[str | None] | None, index: int) -> str:
    link = links[index] if links is not None and index < len(links) else None
    return f' data-filter="{escape(link)}" tabindex="0"' if link else ""


def stacked_columns(
    series: Series,
    keys: Sequence[tuple[str, str]],
    *,
    title: str,
    height: int = 220,
    links: Sequence[str | None] | None = None,
) -> str:
    """Columns over ``series`` (x label → counts per key), stacked in the order of ``keys``."""
    width, left, bottom, top = 760, 48, 34, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = _nice_max(max((sum(c.get(k, 0) for k, _ in keys) for _, c in series), default=0))
    slot = plot_w / max(1, len(series))
    bar = min(48.0, max(1.0, slot * 0.8))  # a few columns stay columns, not blocks
    parts = [_svg_open(width, height, title)]
    steps = _steps(peak)
    for i in range(steps + 1):
        value = peak * i // steps
        y = top + plot_h - plot_h * i / steps
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
            f'<rect x="{x:.1f}" y="{top}" width="{bar:.1f}" height="{plot_h}" class="hit"'
            f"{_filter(links, index)}>"
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
    links: Sequence[str | None] | None = None,
    peak: int | None = None,
) -> str:
    """Horizontal bars, one per row of ``series``, stacked in the order of ``keys`` (scaled to
    ``peak``, default the longest bar)."""
    row = 24
    height = max(1, len(series)) * row + 8
    plot_w = width - label_width - 50
    peak = peak or max((sum(c.get(k, 0) for k, _ in keys) for _, c in series), default=0) or 1
    parts = [_svg_open(width, height, title)]
    if not series:
        parts.append(f'<text x="{label_width}" y="18">no data</text>')
    for index, (label, counts) in enumerate(series):
        y = 4 + index * row
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(f'<g class="row"{_filter(links, index)}>')
        parts.append(f'<rect x="0" y="{y}" width="{width}" height="{row}" class="hit"/>')
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
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}">{total:,}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )
