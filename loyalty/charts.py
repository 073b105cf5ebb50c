"""Server-rendered SVG charts: no JavaScript, no CDN, no dependency.

    from loyalty.charts import bar_chart, line_chart
    svg = bar_chart(labels=["Jan", "Feb"], series={"Issued": [120, 80], "Redeemed": [40, 0]},
                    title="Points per month", unit="pts")
    # in a template: {{ svg }} (the result is a SafeString; every label, title and series
    # name is escaped here)

Accessibility: the chart is one `<svg role="img">` named by its `<title>` and described by
a `<desc>` that lists every value, so a screen reader gets the numbers too (pages should
still show the same figures in a table next to the chart). Series colours are dark enough
for 3:1 contrast on white (WCAG 1.4.11 for graphics) and each series is also named in a
legend; line series have distinct point markers so colour is not the only cue. Text is
real SVG text sized in CSS pixels of the viewBox, scaled with the chart.

Empty data (no labels, or no series) renders a small "No data" chart instead of failing;
all-zero data gets an axis from 0 to 1. Negative values get an axis below zero.

The CSS classes (documented in static/css/app.css, "Charts" section): chart, chart-bar /
chart-line (kind), chart-title, chart-axis, chart-grid, chart-tick, chart-label,
chart-legend, chart-series-<n>, chart-empty. Colours are presentation attributes, so a
chart keeps them even without the stylesheet (in an email, an export).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Each at least 4.5:1 on white (so also usable as text colour) and distinct from each other.
PALETTE = ("#2451b7", "#b45309", "#05603a", "#7e22ce", "#b42318", "#0e7490", "#4d5562")
# Point markers per series for line charts, so the series differ by shape as well as colour.
MARKERS = ("circle", "square", "diamond", "triangle")

WIDTH = 640
HEIGHT = 300
_MARGIN_LEFT = 64
_MARGIN_RIGHT = 16
_MARGIN_TOP = 44  # title + legend
_MARGIN_BOTTOM = 48  # x labels
_MAX_X_LABELS = 12

_ids = itertools.count(1)


def bar_chart(
    *, labels: Sequence[str], series: dict[str, Sequence[float]], title: str, unit: str = ""
) -> SafeString:
    """Grouped vertical bars: one group per label, one bar per series."""
    return _chart("bar", labels=labels, series=series, title=title, unit=unit)


def line_chart(
    *, labels: Sequence[str], series: dict[str, Sequence[float]], title: str, unit: str = ""
) -> SafeString:
    """One line per series over the labels (e.g. months), with a marker at each value."""
    return _chart("line", labels=labels, series=series, title=title, unit=unit)


def nice_ticks(low: float, high: float, *, count: int = 5) -> list[float]:
    """Round axis ticks (steps of 1, 2, 2.5 or 5 times a power of ten) covering low..high."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1
    raw_step = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    if step >= 1:
        step = max(1, round(step))  # whole numbers: points are integers
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while True:
        ticks.append(round(value, 10))
        if value >= high - 1e-9:
            break
        value += step
    return ticks


def format_number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _with_unit(value: float, unit: str) -> str:
    return f"{format_number(value)} {unit}".strip()


def _chart(
    kind: str, *, labels: Sequence[str], series: dict[str, Sequence[float]], title: str, unit: str
) -> SafeString:
    chart_id = f"chart-{next(_ids)}"
    labels = [str(label) for label in labels]
    clean: dict[str, list[float]] = {}
    for name, values in series.items():
        values = [float(v or 0) for v in values][: len(labels)]
        clean[str(name)] = values + [0.0] * (len(labels) - len(values))
    if not labels or not clean:
        return _empty(kind, chart_id=chart_id, title=title)

    desc = "; ".join(
        f"{name}: "
        + ", ".join(f"{label} {_with_unit(v, unit)}" for label, v in zip(labels, values, strict=True))
        for name, values in clean.items()
    )
    all_values = [v for values in clean.values() for v in values]
    ticks = nice_ticks(min(all_values), max(all_values))
    low, high = ticks[0], ticks[-1]
    plot_w = WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = HEIGHT - _MARGIN_TOP - _MARGIN_BOTTOM

    def y_of(value: float) -> float:
        return _MARGIN_TOP + plot_h - (value - low) / (high - low) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="xMidYMid meet" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
        f'<text class="chart-title" x="{_MARGIN_LEFT}" y="18" font-size="14" font-weight="600" '
        f'fill="#1b2430">{escape(title)}</text>',
    ]
    parts.append(_legend(kind, list(clean)))

    # Y axis: gridlines and tick labels.
    parts.append('<g class="chart-grid" aria-hidden="true">')
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{_MARGIN_LEFT}" x2="{WIDTH - _MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{"#576273" if tick == 0 else "#dde2ea"}" stroke-width="1"/>'
            f'<text class="chart-tick" x="{_MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#424b59">{escape(format_number(tick))}</text>'
        )
    if unit:
        parts.append(
            f'<text class="chart-tick" x="{_MARGIN_LEFT - 6}" y="{_MARGIN_TOP - 6}" text-anchor="end" '
            f'font-size="11" fill="#424b59">{escape(unit)}</text>'
        )
    parts.append("</g>")

    # X axis labels: thinned out when there are many, so they never overlap.
    slot = plot_w / len(labels)
    every = max(1, math.ceil(len(labels) / _MAX_X_LABELS))
    parts.append('<g class="chart-axis" aria-hidden="true">')
    for index, label in enumerate(labels):
        if index % every:
            continue
        x = _MARGIN_LEFT + slot * (index + 0.5)
        short = label if len(label) <= 14 else label[:13] + "…"
        parts.append(
            f'<text class="chart-label" x="{x:.1f}" y="{HEIGHT - _MARGIN_BOTTOM + 18}" text-anchor="middle" '
            f'font-size="11" fill="#424b59">{escape(short)}</text>'
        )
    parts.append("</g>")

    zero_y = y_of(0.0)
    for number, (name, values) in enumerate(clean.items()):
        colour = PALETTE[number % len(PALETTE)]
        parts.append(f'<g class="chart-series chart-series-{number}" fill="{colour}" stroke="{colour}">')
        if kind == "bar":
            group = slot * 0.8
            bar_w = group / len(clean)
            for index, value in enumerate(values):
                x = _MARGIN_LEFT + slot * index + slot * 0.1 + bar_w * number
                top, bottom = sorted((y_of(value), zero_y))
                parts.append(
                    f'<rect x="{x:.1f}" y="{top:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{bottom - top:.1f}" stroke="none">'
                    f"<title>{escape(f'{name}, {labels[index]}: {_with_unit(value, unit)}')}</title></rect>"
                )
        else:
            points = [
                (_MARGIN_LEFT + slot * (index + 0.5), y_of(value)) for index, value in enumerate(values)
            ]
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke-width="2"/>')
            for index, (x, y) in enumerate(points):
                tip = escape(f"{name}, {labels[index]}: {_with_unit(values[index], unit)}")
                parts.append(_marker(MARKERS[number % len(MARKERS)], x, y, tip))
        parts.append("</g>")
    parts.append("</svg>")
    # Every piece of text above went through escape().
    return mark_safe("".join(parts))


def _legend(kind: str, names: list[str]) -> str:
    parts = ['<g class="chart-legend">']
    x = _MARGIN_LEFT
    for number, name in enumerate(names):
        colour = PALETTE[number % len(PALETTE)]
        if kind == "bar":
            parts.append(f'<rect x="{x}" y="26" width="10" height="10" fill="{colour}"/>')
        else:
            marker = _marker(MARKERS[number % len(MARKERS)], x + 5, 31, "")
            parts.append(f'<g fill="{colour}" stroke="{colour}">{marker}</g>')
        shown = name if len(name) <= 24 else name[:23] + "…"
        parts.append(f'<text x="{x + 14}" y="35" font-size="12" fill="#1b2430">{escape(shown)}</text>')
        x += 22 + 7 * len(shown)
    parts.append("</g>")
    return "".join(parts)


def _marker(shape: str, x: float, y: float, tip: str) -> str:
    title = f"<title>{tip}</title>" if tip else ""
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8">{title}</rect>'
    if shape == "diamond":
        points = f"{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}"
        return f'<polygon points="{points}">{title}</polygon>'
    if shape == "triangle":
        points = f"{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} {x - 5:.1f},{y + 4:.1f}"
        return f'<polygon points="{points}">{title}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4">{title}</circle>'


def _empty(kind: str, *, chart_id: str, title: str) -> SafeString:
    return mark_safe(  # the title is escaped
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind} chart-empty" role="img" '
        f'viewBox="0 0 {WIDTH} 80" aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">No data for this period.</desc>'
        f'<text class="chart-title" x="16" y="24" font-size="14" font-weight="600" fill="#1b2430">'
        f"{escape(title)}</text>"
        f'<text x="16" y="56" font-size="13" fill="#424b59">No data for this period.</text></svg>'
    )
