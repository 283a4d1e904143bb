"""Token buckets: never more than the burst plus the rate over any stretch of time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.api.limits import TokenBuckets, retry_after

pytestmark = pytest.mark.unit


def test_a_full_bucket_lets_the_burst_through_then_says_when_to_come_back() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3.0)
    assert [buckets.take("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", 0.0) == pytest.approx(0.5)
    assert buckets.take("k", 0.5) == 0.0  # one token back after half a second
    assert buckets.take("other", 0.5) == 0.0  # each key has its own


def test_waiting_takes_nothing() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1.0)
    assert buckets.wait("k", 0.0) == 0.0
    assert buckets.wait("k", 0.0) == 0.0
    buckets.take("k", 0.0)
    assert buckets.wait("k", 0.25) == pytest.approx(0.75)


@given(
    rate=st.floats(0.1, 100.0),
    burst=st.floats(1.0, 50.0),
    gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=200),
)
def test_what_passes_never_exceeds_burst_plus_rate_times_time(
    rate: float, burst: float, gaps: list[float]
) -> None:
    buckets = TokenBuckets(rate, burst)
    now, passed = 0.0, 0
    for gap in gaps:
        now += gap
        passed += buckets.take("k", now) == 0.0
    assert passed <= burst + rate * now + 1e-9


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after(0.01) == 1
    assert retry_after(1.2) == 2
