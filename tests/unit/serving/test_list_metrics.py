"""A served list's metrics: stage and source times, outcomes with bounded names, causes."""

from __future__ import annotations

import pytest

from recloop.domain import ScoredItem
from recloop.monitoring.metrics import Metrics
from recloop.serving.budget import StageTrace
from recloop.serving.list_metrics import ListMetrics

pytestmark = pytest.mark.unit


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _record(lists: ListMetrics, version: str, trace: tuple[StageTrace, ...]) -> None:
    lists.record(
        "a",
        "home",
        "default",
        f"request-{version}",
        fallback=any(t.degraded for t in trace),
        cold=False,
        latency_ms=12.0,
        items=(ScoredItem("i1", 1.0, "popular", "r"),),
        trace=trace,
    )


def test_stages_and_sources_are_timed_and_degraded_stages_counted_by_cause() -> None:
    metrics = Metrics()
    lists = ListMetrics(metrics)
    for version in ("v1", "v2"):
        _record(
            lists,
            version,
            (
                StageTrace("retrieve:popular", 2.0, "ok"),
                StageTrace("retrieve:als", 25.0, "timeout"),
                StageTrace("filter:consumed", 0.1, "ok"),
                StageTrace("features", 1.0, "fallback"),
                StageTrace(f"rank:learned-{version}", 3.0, "ok"),
                StageTrace("fallback:newest", 1.0, "fallback"),
            ),
        )

    assert _sample(metrics, "recloop_stage_seconds_count", app="a", stage="retrieve") == 4
    assert _sample(metrics, "recloop_stage_seconds_count", app="a", stage="rank") == 2
    assert _sample(metrics, "recloop_stage_seconds_sum", app="a", stage="rank") == 0.006
    assert _sample(metrics, "recloop_source_seconds_count", app="a", source="als") == 2
    assert _sample(metrics, "recloop_source_seconds_count", app="a", source="newest") == 2
    assert _sample(metrics, "recloop_source_timeouts_total", app="a", source="als") == 2
    assert _sample(metrics, "recloop_source_timeouts_total", app="a", source="popular") == 0
    # The ranker's version is not a label: two versions, one series.
    ranked = {"app": "a", "stage": "rank", "outcome": "ok"}
    assert _sample(metrics, "recloop_stage_outcomes_total", **ranked) == 2
    assert "rank:learned" not in metrics.render().decode()
    causes = {"app": "a", "surface": "home"}
    assert (
        _sample(metrics, "recloop_fallback_causes_total", **causes, cause="retrieve_timeout") == 2
    )
    assert (
        _sample(metrics, "recloop_fallback_causes_total", **causes, cause="features_fallback") == 2
    )
    assert _sample(metrics, "recloop_fallback_causes_total", **causes, cause="fallback_served") == 2
    requests = {"app": "a", "surface": "home", "fallback": "true"}
    assert _sample(metrics, "recloop_recommendations_total", **requests) == 2
    assert _sample(metrics, "recloop_recommendation_seconds_count", app="a", surface="home") == 2
