"""Small dependency-free SVG charts for HTML reports: lines, bars, stacked bars, intervals
and log-log ranks.

Axes tick at round steps (1, 2 or 5 times a power of ten) and label every value in one
unit: ``"%"`` takes fractions and shows percents, ``"ms"`` milliseconds, ``""`` plain
numbers. Line and bar charts over days take vertical markers (a model version, say) at
fractional positions between the x labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from html import escape

COLOURS = (
    "#1f5fbf",
    "#c0392b",
    "#2e8b57",
    "#d68910",
    "#7d3c98",
    "#5d6d7e",
    "#17a2b8",
    "#a0522d",
    "#e84393",
    "#6b8e23",
    "#34495e",
    "#b8860b",
    "#008b8b",
)
_W, _H = 540, 270
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 20, 46, 44
_MARKER = "#8a8f98"


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at ``x`` (in x-label positions: 1.5 is between the second and the
    third label) with a short label at its top."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Interval:
    """One row of an interval chart: a point estimate and its interval."""

    label: str
    value: float
    low: float
    high: float
    colour: int = 0  # an index into the palette
    hollow: bool = False  # drawn as an open circle (a second kind of estimate, say)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round ticks covering [``low``, ``high``]: steps of 1, 2 or 5 times a power of ten,
    about ``count`` of them, the first at or below ``low`` and the last at or above
    ``high``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high <= low:
        high = low + (abs(low) or 1.0)
    step = nice_step((high - low) / max(1, count - 1))
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    n = round((last - first) / step)
    # Rounding to the step's own decimals keeps 0.1 + 0.2 from drawing as 0.30000000000000004.
    digits = max(0, -math.floor(math.log10(step)) + 1)
    return [round(first + i * step, digits) for i in range(n + 1)]


def nice_step(raw: float) -> float:
    """The smallest step of 1, 2 or 5 times a power of ten that is at least ``raw``."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9)))


def format_value(value: float, unit: str = "", step: float | None = None) -> str:
    """``value`` in ``unit`` ("%": a fraction shown as a percent; "ms"; "" plain), with as
    many decimals as ``step`` needs (or three significant digits without one)."""
    if not math.isfinite(value):
        return "n/a"
    shown = value * 100 if unit == "%" else value
    if step is not None:
        shown_step = step * 100 if unit == "%" else step
        decimals = max(0, -math.floor(math.log10(shown_step) + 1e-9)) if shown_step > 0 else 0
        text = f"{shown:,.{decimals}f}"
    elif shown == 0:
        text = "0"
    elif abs(shown) >= 100:
        text = f"{shown:,.0f}"
    else:
        decimals = max(0, 2 - math.floor(math.log10(abs(shown))))
        text = f"{shown:.{decimals}f}"
    if text.startswith("-") and float(text.replace(",", "")) == 0:
        text = text[1:]
    text = text.replace("-", "\u2212")
    if unit == "%":
        return f"{text}%"
    if unit:
        return f"{text} {unit}"
    return text


def _frame(title: str, x_label: str, y_label: str, body: str, width: int = _W) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_H}" '
        f'viewBox="0 0 {width} {_H}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui, sans-serif">'
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">'
        f"{escape(title)}</text>"
        f'<text x="{(_LEFT + width - _RIGHT) / 2}" y="{_H - 6}" text-anchor="middle" '
        f'font-size="11" fill="#555">{escape(x_label)}</text>'
        f'<text x="14" y="{_H / 2}" text-anchor="middle" font-size="11" fill="#555" '
        f'transform="rotate(-90 14 {_H / 2})">{escape(y_label)}</text>'
        f"{body}</svg>"
    )


def _y_axis(ticks: Sequence[float], y_of: Callable[[float], float], unit: str, right: float) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
            f'stroke="{"#999" if tick == 0 else "#e6e8eb"}"/>'
            f'<text x="{_LEFT - 5}" y="{y + 3.5:.1f}" text-anchor="end" font-size="10">'
            f"{escape(format_value(tick, unit if unit == '%' else '', step))}</text>"
        )
    return "".join(parts)


def _x_labels(labels: Sequence[tuple[float, str]]) -> str:
    every = max(1, math.ceil(len(labels) / 12))  # at most a dozen labels under the axis
    return "".join(
        f'<text x="{x:.1f}" y="{_H - _BOTTOM + 15}" text-anchor="middle" font-size="10">'
        f"{escape(label)}</text>"
        for i, (x, label) in enumerate(labels)
        if i % every == 0 or i == len(labels) - 1
    )


def _markers(
    markers: Sequence[Marker], x_of: Callable[[float], float], low: float, high: float
) -> str:
    parts = []
    for marker in markers:
        if not low <= marker.x <= high:
            continue
        x = x_of(marker.x)
        parts.append(
            f'<line x1="{x:.1f}" y1="{_TOP - 4}" x2="{x:.1f}" y2="{_H - _BOTTOM}" '
            f'stroke="{_MARKER}" stroke-dasharray="3 3"/>'
            f'<text x="{x + 3:.1f}" y="{_TOP + 6}" font-size="9" fill="#555">'
            f"{escape(marker.label)}</text>"
        )
    return "".join(parts)


def _legend(entries: Sequence[tuple[str, str, bool]], right: float) -> str:
    """Swatches in rows under the title: (name, colour, dashed)."""
    parts = []
    x, y = float(_LEFT), 30.0
    for name, colour, dashed in entries:
        width = 26 + 6.2 * len(name)
        if x + width > right and x > _LEFT:
            x, y = float(_LEFT), y + 12
        dash = ' stroke-dasharray="4 2"' if dashed else ""
        parts.append(
            f'<line x1="{x:.1f}" y1="{y - 3:.1f}" x2="{x + 16:.1f}" y2="{y - 3:.1f}" '
            f'stroke="{colour}" stroke-width="2.5"{dash}/>'
            f'<text x="{x + 20:.1f}" y="{y:.1f}" font-size="10">{escape(name)}</text>'
        )
        x += width
    return "".join(parts)


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    unit: str = "",
    y_label: str = "",
    x_label: str = "",
    markers: Sequence[Marker] = (),
    dashed: Collection[str] = (),
    colours: Mapping[str, int] | None = None,
) -> str:
    """One line per series over shared x labels; a value that is not finite leaves a gap.
    Series named in ``dashed`` are drawn dashed; ``colours`` picks a palette index per
    series (so a variant keeps its colour across charts)."""
    values = [v for s in series.values() for v in s if math.isfinite(v)]
    ticks = nice_ticks(min(0.0, *values) if values else 0.0, max(values, default=0.0) * 1.05)
    right = _W - _RIGHT
    plot_w = right - _LEFT
    n = max(1, len(x_labels) - 1)

    def x_of(i: float) -> float:
        return _LEFT + (plot_w * i / n if len(x_labels) > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        span = ticks[-1] - ticks[0]
        return _H - _BOTTOM - (_H - _TOP - _BOTTOM) * (v - ticks[0]) / span

    body = [
        _y_axis(ticks, y_of, unit, right),
        _x_labels([(x_of(i), label) for i, label in enumerate(x_labels)]),
        _markers(markers, x_of, 0, len(x_labels) - 1),
    ]
    legend = []
    for k, (name, points) in enumerate(series.items()):
        colour = COLOURS[(colours or {}).get(name, k) % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        run: list[str] = []
        for i, v in enumerate([*points, math.nan]):
            if math.isfinite(v):
                run.append(f"{x_of(i):.1f},{y_of(v):.1f}")
                continue
            if len(run) > 1:
                body.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} '
                    f'points="{" ".join(run)}"/>'
                )
            run = []
        body.extend(
            f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="{2 if dash else 3}" '
            f'fill="{"#fff" if dash else colour}" stroke="{colour}"/>'
            for i, v in enumerate(points)
            if math.isfinite(v)
        )
        legend.append((name, colour, name in dashed))
    body.append(_legend(legend, right))
    return _frame(title, x_label, y_label, "".join(body))


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    unit: str = "",
    y_label: str = "",
    x_label: str = "",
) -> str:
    """Vertical bars, one per label."""
    finite = [v for v in values if math.isfinite(v)]
    ticks = nice_ticks(0.0, max(finite, default=0.0))
    right = _W - _RIGHT
    plot_w = right - _LEFT
    width = plot_w / max(1, len(values))

    def y_of(v: float) -> float:
        return _H - _BOTTOM - (_H - _TOP - _BOTTOM) * v / ticks[-1]

    body = [
        _y_axis(ticks, y_of, unit, right),
        _x_labels([(_LEFT + width * (i + 0.5), lab) for i, lab in enumerate(labels)]),
    ]
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        y = y_of(v)
        body.append(
            f'<rect x="{_LEFT + width * i + 2:.1f}" y="{y:.1f}" width="{max(1.0, width - 4):.1f}" '
            f'height="{_H - _BOTTOM - y:.1f}" fill="{COLOURS[0]}"/>'
        )
    return _frame(title, x_label, y_label, "".join(body))


def stacked_bar_chart(
    title: str,
    x_labels: Sequence[str],
    stacks: Mapping[str, Sequence[float]],
    *,
    unit: str = "",
    y_label: str = "",
    x_label: str = "",
    markers: Sequence[Marker] = (),
) -> str:
    """One bar per x label, stacked from the ``stacks`` in order (bottom first), with a
    legend in a column on the right."""
    legend_w = 130
    width = _W + legend_w
    right = width - _RIGHT - legend_w
    totals = [
        sum(s[i] for s in stacks.values() if math.isfinite(s[i])) for i in range(len(x_labels))
    ]
    ticks = nice_ticks(0.0, max(totals, default=0.0))
    slot = (right - _LEFT) / max(1, len(x_labels))

    def x_of(i: float) -> float:
        return _LEFT + slot * (i + 0.5)

    def y_of(v: float) -> float:
        return _H - _BOTTOM - (_H - _TOP - _BOTTOM) * v / ticks[-1]

    body = [
        _y_axis(ticks, y_of, unit, right),
        _x_labels([(x_of(i), label) for i, label in enumerate(x_labels)]),
    ]
    bar = max(2.0, min(48.0, slot * 0.7))
    for i in range(len(x_labels)):
        base = 0.0
        for k, values in enumerate(stacks.values()):
            v = values[i]
            if not math.isfinite(v) or v <= 0:
                continue
            top, bottom = y_of(base + v), y_of(base)
            body.append(
                f'<rect x="{x_of(i) - bar / 2:.1f}" y="{top:.1f}" width="{bar:.1f}" '
                f'height="{bottom - top:.1f}" fill="{COLOURS[k % len(COLOURS)]}"/>'
            )
            base += v
    body.append(_markers(markers, x_of, -0.5, len(x_labels) - 0.5))
    # The legend reads top-down in the order the bars stack bottom-up, so it matches them.
    names = list(stacks)
    for row, k in enumerate(reversed(range(len(names)))):
        y = _TOP + 12 * row
        body.append(
            f'<rect x="{right + 14}" y="{y - 8}" width="10" height="10" '
            f'fill="{COLOURS[k % len(COLOURS)]}"/>'
            f'<text x="{right + 28}" y="{y + 1}" font-size="10">{escape(names[k])}</text>'
        )
    return _frame(title, x_label, y_label, "".join(body), width=width)


def interval_chart(
    title: str, rows: Sequence[Interval], *, unit: str = "", x_label: str = ""
) -> str:
    """Point estimates with their intervals, one row each, on a shared horizontal axis."""
    label_w = 170
    height = _TOP + 22 * len(rows) + _BOTTOM
    right = _W - _RIGHT
    bounds = [v for r in rows for v in (r.low, r.high, r.value) if math.isfinite(v)]
    ticks = nice_ticks(min(0.0, *bounds) if bounds else 0.0, max(bounds, default=0.0))

    def x_of(v: float) -> float:
        return label_w + (right - label_w) * (v - ticks[0]) / (ticks[-1] - ticks[0])

    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui, sans-serif">'
        f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">'
        f"{escape(title)}</text>"
    ]
    bottom = height - _BOTTOM
    for tick in ticks:
        x = x_of(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{_TOP - 14}" x2="{x:.1f}" y2="{bottom}" '
            f'stroke="{"#999" if tick == 0 else "#e6e8eb"}"/>'
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10">'
            f"{escape(format_value(tick, unit, step))}</text>"
        )
    for i, row in enumerate(rows):
        y = _TOP + 22 * i
        colour = COLOURS[row.colour % len(COLOURS)]
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end" font-size="11">'
            f"{escape(row.label)}</text>"
        )
        if math.isfinite(row.low) and math.isfinite(row.high):
            parts.append(
                f'<line x1="{x_of(row.low):.1f}" y1="{y}" x2="{x_of(row.high):.1f}" y2="{y}" '
                f'stroke="{colour}" stroke-width="2"/>'
                f'<line x1="{x_of(row.low):.1f}" y1="{y - 5}" x2="{x_of(row.low):.1f}" '
                f'y2="{y + 5}" stroke="{colour}" stroke-width="2"/>'
                f'<line x1="{x_of(row.high):.1f}" y1="{y - 5}" x2="{x_of(row.high):.1f}" '
                f'y2="{y + 5}" stroke="{colour}" stroke-width="2"/>'
            )
        if math.isfinite(row.value):
            parts.append(
                f'<circle cx="{x_of(row.value):.1f}" cy="{y}" r="4.5" '
                f'fill="{"#fff" if row.hollow else colour}" stroke="{colour}" stroke-width="2"/>'
            )
    parts.append(
        f'<text x="{(label_w + right) / 2}" y="{height - 8}" text-anchor="middle" '
        f'font-size="11" fill="#555">{escape(x_label)}</text></svg>'
    )
    return "".join(parts)


def rank_chart(
    title: str, series: Mapping[str, Sequence[float]], *, y_label: str = "", x_label: str = "rank"
) -> str:
    """Log-log rank-frequency curves: a straight falling line is a power law (a long tail)."""
    curves = {
        name: [v for v in sorted(values, reverse=True) if v > 0] for name, values in series.items()
    }
    max_rank = max((len(c) for c in curves.values()), default=1)
    max_value = max((c[0] for c in curves.values() if c), default=1.0)
    right = _W - _RIGHT
    plot_w = right - _LEFT
    plot_h = _H - _TOP - _BOTTOM
    decades_r = max(1, math.ceil(math.log10(max(10, max_rank))))
    decades_v = max(1, math.ceil(math.log10(max(10.0, max_value))))

    def x_of(rank: float) -> float:
        return _LEFT + plot_w * math.log10(rank) / decades_r

    def y_of(value: float) -> float:
        return _H - _BOTTOM - plot_h * math.log10(max(1.0, value)) / decades_v

    body = [
        _y_axis([float(10**d) for d in range(decades_v + 1)], y_of, "", right),
        _x_labels([(x_of(10**d), f"{10**d:,}") for d in range(decades_r + 1)]),
    ]
    legend = []
    for k, curve in enumerate(curves.values()):
        # Thin the points on a log scale so a big curve stays a small file.
        keep = (
            sorted(
                {
                    min(len(curve), max(1, round(10 ** (i / 40 * math.log10(len(curve))))))
                    for i in range(41)
                }
            )
            if curve
            else []
        )
        path = " ".join(f"{x_of(r):.1f},{y_of(curve[r - 1]):.1f}" for r in keep)
        colour = COLOURS[k % len(COLOURS)]
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        legend.append((list(curves)[k], colour, False))
    body.append(_legend(legend, right))
    return _frame(title, x_label, y_label, "".join(body))
