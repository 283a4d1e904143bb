"""Line charts drawn as SVG on the server: rounded ticks, percent axes, and gaps where a
series has no value (a day a surface served nothing is not drawn as a zero)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

COLOURS = ("#1f5fbf", "#c0392b", "#2e8b57", "#d68910", "#7d3c98", "#5d6d7e")
_W, _H = 560, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 40, 40


def nice_step(high: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) covering ``high`` in ``ticks``."""
    if high <= 0 or not math.isfinite(high):
        return 1.0
    raw = high / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw))


def _label(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.{0 if value * 100 >= 10 or value == 0 else 1}f}%"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    percent: bool = False,
    x_label: str = "",
) -> str:
    """One line per series over shared x labels; NaN values leave a gap."""
    values = [v for s in series.values() for v in s if math.isfinite(v)]
    step = nice_step(max(values, default=0.0))
    top = step * max(1, math.ceil(max(values, default=0.0) / step))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    n = max(1, len(x_labels) - 1)

    def x_of(i: int) -> float:
        return _LEFT + (plot_w * i / n if len(x_labels) > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        return _TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}">',
        f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">'
        f"{escape(title)}</text>",
    ]
    tick = 0.0
    while tick <= top + step / 2:
        y = y_of(tick)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" stroke="#e4e7ec"/>'
            f'<text x="{_LEFT - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{_label(tick, percent)}</text>"
        )
        tick += step
    every = max(1, math.ceil(len(x_labels) / 10))  # at most ten labels under the axis
    for i, label in enumerate(x_labels):
        if i % every == 0 or i == len(x_labels) - 1:
            parts.append(
                f'<text x="{x_of(i):.1f}" y="{_H - _BOTTOM + 14}" text-anchor="middle" '
                f'font-size="10">{escape(label)}</text>'
            )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 6}" text-anchor="middle" font-size="10" fill="#5b6475">'
        f"{escape(x_label)}</text>"
    )
    for k, (name, points) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        run: list[str] = []
        for i, v in enumerate([*points, math.nan]):
            if math.isfinite(v):
                run.append(f"{x_of(i):.1f},{y_of(v):.1f}")
                parts.append(
                    f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="2.5" fill="{colour}"/>'
                )
                continue
            if len(run) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                    f'points="{" ".join(run)}"/>'
                )
            run = []
        parts.append(
            f'<rect x="{_LEFT + 8 + 120 * k}" y="24" width="10" height="10" fill="{colour}"/>'
            f'<text x="{_LEFT + 22 + 120 * k}" y="33" font-size="10">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
