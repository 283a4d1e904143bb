"""Quantiles of a Prometheus histogram's cumulative bucket counts."""

from __future__ import annotations

import math
from collections.abc import Mapping


def histogram_quantile(cumulative: Mapping[float, float], q: float) -> float | None:
    """The ``q`` quantile in the histogram's own units, as Prometheus' ``histogram_quantile``
    estimates it: linear within the bucket the rank falls in; a rank past the last finite
    bound answers that bound (all that is known). None for an empty histogram.

    ``cumulative`` maps each bucket's upper bound (``le``, ``inf`` included) to the count of
    observations at or below it.
    """
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower
