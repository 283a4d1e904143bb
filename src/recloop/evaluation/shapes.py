"""Shape statistics of interaction logs: how concentrated popularity and activity are.

Real logs are long-tailed: a few items take most clicks and a few users make most events.
These numbers let a simulated log be put beside a real one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def gini(counts: Sequence[float]) -> float:
    """Gini coefficient of non-negative counts: 0 when all equal, towards 1 when one has all.

    Defined as ``sum_i (2i - n - 1) x_i / (n * sum x)`` over the counts sorted ascending
    (``i`` from 1); entities with zero count are included, so pass them if they exist.
    """
    values = np.sort(np.asarray(counts, dtype=float))
    n = len(values)
    total = values.sum()
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * values).sum() / (n * total))


def top_share(counts: Sequence[float], fraction: float) -> float:
    """Share of the total held by the top ``fraction`` of entities (at least one entity)."""
    values = np.sort(np.asarray(counts, dtype=float))[::-1]
    total = values.sum()
    if len(values) == 0 or total <= 0:
        return 0.0
    k = max(1, round(fraction * len(values)))
    return float(values[:k].sum() / total)


def rate_by_position(clicks: Sequence[int], impressions: Sequence[int]) -> list[float]:
    """Clicks over impressions at each position (0 where nothing was shown)."""
    return [c / i if i else 0.0 for c, i in zip(clicks, impressions, strict=True)]
