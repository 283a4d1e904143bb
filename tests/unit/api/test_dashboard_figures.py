"""The dashboard's readings of Prometheus text: quantiles from buckets, counters by label."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from recloop.api.dashboard.charts import line_chart, nice_step
from recloop.api.dashboard.figures import (
    counter_table,
    counter_totals,
    histogram_quantiles,
    samples_named,
)

pytestmark = pytest.mark.unit


def _text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_quantiles_interpolate_within_the_bucket_the_rank_falls_in() -> None:
    registry = CollectorRegistry()
    seconds = Histogram(
        "t_stage_seconds", "t", ["app", "stage"], buckets=(0.01, 0.1, 1.0), registry=registry
    )
    for _ in range(50):
        seconds.labels("a", "rank").observe(0.005)  # all 50 in (0, 0.01]
    for _ in range(50):
        seconds.labels("a", "rank").observe(0.05)  # all 50 in (0.01, 0.1]
    seconds.labels("a", "gate").observe(5.0)  # past the last finite bound

    found = {q.name: q for q in histogram_quantiles(_text(registry), "t_stage_seconds", "stage")}

    rank = found["rank"]
    assert rank.count == 100
    # Rank 50 is the last of the first bucket; rank 99 lies 49/50 into the second.
    assert rank.p50_s == pytest.approx(0.01)
    assert rank.p99_s == pytest.approx(0.01 + 0.09 * 49 / 50)
    assert found["gate"].p99_s == pytest.approx(1.0)  # all Prometheus can say: above 1 s


def test_a_histogram_not_exported_is_none_and_an_empty_one_is_no_series() -> None:
    registry = CollectorRegistry()
    Histogram("t_lag_seconds", "t", ["app"], registry=registry)
    text = _text(registry)
    assert histogram_quantiles(text, "t_missing_seconds", "app") is None
    assert histogram_quantiles(text, "t_lag_seconds", "app") == []


def test_counters_sum_over_the_labels_not_asked_for() -> None:
    registry = CollectorRegistry()
    outcomes = Counter("t_outcomes", "t", ["app", "stage", "outcome"], registry=registry)
    outcomes.labels("a", "rank", "ok").inc(3)
    outcomes.labels("b", "rank", "ok").inc(2)
    outcomes.labels("a", "rank", "fallback").inc()
    text = _text(registry)

    assert counter_totals(text, "t_outcomes", "outcome") == {"ok": 5.0, "fallback": 1.0}
    assert counter_table(text, "t_outcomes", "stage", "outcome") == {
        "rank": {"ok": 5.0, "fallback": 1.0}
    }
    assert counter_totals(text, "t_nothing", "outcome") is None
    assert [s.name for s in samples_named(text, "outcomes")] == ["t_outcomes_total"] * 3


def test_a_chart_leaves_a_gap_where_a_series_has_no_value() -> None:
    svg = line_chart("CTR", ["a", "b", "c", "d"], {"home": [0.1, 0.2, math.nan, 0.3]}, percent=True)
    # Two points joined, then a gap: one line of two points, and a lone point.
    assert svg.count("<polyline") == 1
    assert svg.count("<circle") == 3
    assert "nan" not in svg
    assert ">30%<" in svg  # the top tick, rounded


def test_ticks_are_round() -> None:
    assert nice_step(0.083) == pytest.approx(0.025)
    assert nice_step(7.0) == pytest.approx(2.0)
    assert nice_step(0.0) == 1.0
