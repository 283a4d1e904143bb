"""Small dependency-free SVG charts for HTML reports: lines, bars, and log-log ranks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
_W, _H = 520, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 20, 30, 40


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    step = (high - low) / (n - 1)
    return [low + i * step for i in range(n)]


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _frame(title: str, x_label: str, y_label: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}">'
        f'<text x="{_W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">'
        f"{escape(title)}</text>"
        f'<text x="{_W / 2}" y="{_H - 6}" text-anchor="middle" font-size="11">'
        f"{escape(x_label)}</text>"
        f'<text x="14" y="{_H / 2}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 14 {_H / 2})">{escape(y_label)}</text>'
        f"{body}</svg>"
    )


def _axes(
    y_ticks: list[float], y_of: Callable[[float], float], x_labels: Sequence[tuple[float, str]]
) -> str:
    bottom = _H - _BOTTOM
    parts = [
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{_W - _RIGHT}" y2="{bottom}" stroke="#444"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#444"/>',
    ]
    for tick in y_ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{_fmt(tick)}</text>"
        )
    for x, label in x_labels:
        parts.append(
            f'<text x="{x:.1f}" y="{_H - _BOTTOM + 14}" text-anchor="middle" font-size="10">'
            f"{escape(label)}</text>"
        )
    return "".join(parts)


def _legend(names: Sequence[str]) -> str:
    return "".join(
        f'<rect x="{_LEFT + 10 + 110 * i}" y="{_TOP - 2}" width="10" height="10" '
        f'fill="{_COLOURS[i % 6]}"/>'
        f'<text x="{_LEFT + 24 + 110 * i}" y="{_TOP + 7}" font-size="10">{escape(name)}</text>'
        for i, name in enumerate(names)
    )


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    y_label: str = "",
    x_label: str = "",
) -> str:
    """One line per series over shared x labels."""
    values = [v for s in series.values() for v in s if math.isfinite(v)]
    high = max(values, default=1.0) * 1.1 or 1.0
    ticks = _ticks(0.0, high)
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM - 12
    n = max(1, len(x_labels) - 1)

    def x_of(i: int) -> float:
        return _LEFT + plot_w * (i / n if len(x_labels) > 1 else 0.5)

    def y_of(v: float) -> float:
        return _H - _BOTTOM - plot_h * (v / ticks[-1])

    body = [_axes(ticks, y_of, [(x_of(i), label) for i, label in enumerate(x_labels)])]
    for k, points in enumerate(series.values()):
        colour = _COLOURS[k % 6]
        path = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(points))
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        body.extend(
            f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="3" fill="{colour}"/>'
            for i, v in enumerate(points)
        )
    body.append(_legend(list(series)))
    return _frame(title, x_label, y_label, "".join(body))


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    y_label: str = "",
    x_label: str = "",
) -> str:
    """Vertical bars, one per label."""
    high = max(values, default=1.0) * 1.1 or 1.0
    ticks = _ticks(0.0, high)
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM - 12
    width = plot_w / max(1, len(values))

    def y_of(v: float) -> float:
        return _H - _BOTTOM - plot_h * (v / ticks[-1])

    body = [_axes(ticks, y_of, [(_LEFT + width * (i + 0.5), lab) for i, lab in enumerate(labels)])]
    for i, v in enumerate(values):
        y = y_of(v)
        body.append(
            f'<rect x="{_LEFT + width * i + 2:.1f}" y="{y:.1f}" width="{max(1.0, width - 4):.1f}" '
            f'height="{_H - _BOTTOM - y:.1f}" fill="{_COLOURS[0]}"/>'
        )
    return _frame(title, x_label, y_label, "".join(body))


def rank_chart(
    title: str, series: Mapping[str, Sequence[float]], *, y_label: str = "", x_label: str = "rank"
) -> str:
    """Log-log rank-frequency curves: a straight falling line is a power law (a long tail)."""
    curves = {
        name: [v for v in sorted(values, reverse=True) if v > 0] for name, values in series.items()
    }
    max_rank = max((len(c) for c in curves.values()), default=1)
    max_value = max((c[0] for c in curves.values() if c), default=1.0)
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM - 12
    log_rank = math.log10(max(10, max_rank))
    log_value = math.log10(max(10.0, max_value))

    def x_of(rank: int) -> float:
        return _LEFT + plot_w * math.log10(rank) / log_rank

    def y_of(value: float) -> float:
        return _H - _BOTTOM - plot_h * math.log10(max(1.0, value)) / log_value

    decades = [10**d for d in range(int(log_value) + 1)]
    ranks = [10**d for d in range(int(log_rank) + 1)]
    body = [_axes([float(d) for d in decades], y_of, [(x_of(r), _fmt(r)) for r in ranks])]
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
        body.append(
            f'<polyline fill="none" stroke="{_COLOURS[k % 6]}" stroke-width="2" points="{path}"/>'
        )
    body.append(_legend(list(curves)))
    return _frame(title, x_label, y_label, "".join(body))
