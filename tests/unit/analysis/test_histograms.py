"""Quantiles of cumulative histogram buckets, as Prometheus estimates them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.analysis.histograms import histogram_quantile

pytestmark = pytest.mark.unit


def test_known_answers() -> None:
    # 10 at or below 0.01 s, 30 at or below 0.05 s, 40 in all.
    buckets = {0.01: 10.0, 0.05: 30.0, math.inf: 40.0}
    assert histogram_quantile(buckets, 0.25) == pytest.approx(0.01)
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.01 + 0.04 * 0.5)
    # Past the last finite bound, that bound is all that is known.
    assert histogram_quantile(buckets, 0.99) == pytest.approx(0.05)
    assert histogram_quantile({}, 0.5) is None
    assert histogram_quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None


@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=8),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_quantiles_rise_with_q_and_stay_within_the_bounds(
    counts: list[int], q1: float, q2: float
) -> None:
    bounds = [0.005 * 2**k for k in range(len(counts))]
    running = 0.0
    buckets: dict[float, float] = {}
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        buckets[bound] = running
    buckets[math.inf] = running + 1
    low, high = sorted((q1, q2))
    a, b = histogram_quantile(buckets, low), histogram_quantile(buckets, high)
    assert a is not None
    assert b is not None
    assert 0.0 <= a <= b <= bounds[-1]
