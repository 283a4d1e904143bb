"""Online CTR and coverage: served lists counted, clicks joined by request id, distinct items."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from recloop.domain import Event, EventType
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.served import COVERAGE_WINDOW_S, JOIN_WINDOW_S, ServedTracker

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _event(kind: EventType, request_id: str | None, item_id: str | None, n: int = 0) -> Event:
    return Event(
        app_id="a",
        event_id=f"e{n}",
        user_id="u",
        event_type=kind,
        event_ts=NOW,
        server_ts=NOW,
        item_id=item_id,
        request_id=request_id,
    )


def test_clicks_join_the_served_list_once_per_item() -> None:
    metrics, clock = Metrics(), Clock()
    tracker = ServedTracker(metrics, clock=clock)
    tracker.served("a", "home", "treatment", "r1", ["i1", "i2", "i3"])
    tracker.served("a", "home", "control", "r2", ["i1", "i4"])

    tracker.events(
        "a",
        [
            _event(EventType.CLICK, "r1", "i2", 1),
            _event(EventType.CLICK, "r1", "i2", 2),  # the same item again: one click
            _event(EventType.CLICK, "r1", "i3", 3),
            _event(EventType.VIEW, "r2", "i1", 4),  # not a click
            _event(EventType.CLICK, "r2", "i9", 5),  # not in that list
            _event(EventType.CLICK, "nope", "i1", 6),  # a list this process did not serve
            _event(EventType.CLICK, None, "i1", 7),  # no request id: not a list's click
        ],
    )
    tracker.events("b", [_event(EventType.CLICK, "r2", "i1", 8)])  # another app's id

    registry = metrics.registry
    labels = {"app": "a", "surface": "home"}
    assert _value(registry, "recloop_served_lists_total", **labels, variant="treatment") == 1
    assert _value(registry, "recloop_served_items_total", **labels, variant="treatment") == 3
    assert _value(registry, "recloop_served_items_total", **labels, variant="control") == 2
    assert _value(registry, "recloop_served_clicks_total", **labels, variant="treatment") == 2
    assert _value(registry, "recloop_served_clicks_total", **labels, variant="control") == 0
    assert _value(registry, "recloop_unjoined_clicks_total", app="a") == 2
    assert _value(registry, "recloop_unjoined_clicks_total", app="b") == 1


def test_old_and_evicted_lists_are_not_joined() -> None:
    metrics, clock = Metrics(), Clock()
    tracker = ServedTracker(metrics, capacity=2, clock=clock)
    for n in range(3):
        tracker.served("a", "home", "default", f"r{n}", ["i1"])
    clock.t += 10
    tracker.events("a", [_event(EventType.CLICK, "r0", "i1")])  # evicted (capacity 2)
    tracker.events("a", [_event(EventType.CLICK, "r2", "i1")])
    clock.t += JOIN_WINDOW_S
    tracker.events("a", [_event(EventType.CLICK, "r1", "i1")])  # too old

    registry = metrics.registry
    labels = {"app": "a", "surface": "home", "variant": "default"}
    assert _value(registry, "recloop_served_clicks_total", **labels) == 1
    assert _value(registry, "recloop_unjoined_clicks_total", app="a") == 2


def test_coverage_counts_distinct_items_over_the_last_windows() -> None:
    metrics, clock = Metrics(), Clock()
    tracker = ServedTracker(metrics, clock=clock)
    # 20,000 distinct items in lists of 10, each served twice.
    for _ in range(2):
        for start in range(0, 20_000, 10):
            items = [f"item-{n}" for n in range(start, start + 10)]
            tracker.served("a", "home", "default", f"r{start}", items)

    gauges = {
        (name, labels["surface"]): value
        for name, _, labels, value in tracker.coverage(lambda app: 40_000 if app == "a" else None)
    }

    distinct = gauges[("recloop_served_distinct_items", "home")]
    assert distinct == pytest.approx(20_000, rel=0.02)
    assert gauges[("recloop_catalog_coverage", "home")] == pytest.approx(0.5, rel=0.02)

    # Two windows on, the first window's items are forgotten.
    for window in (1, 2):
        clock.t += COVERAGE_WINDOW_S
        tracker.served("a", "home", "default", f"late{window}", [f"late-{window}"])
    (name, _, _, value), *_ = tracker.coverage(lambda app: None)
    assert name == "recloop_served_distinct_items"
    assert value == 2
