"""Item stats for bandits: impressions and clicks per item from the online counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from recloop.features.item_stats import OnlineItemStats
from recloop.features.online import counters_key
from recloop.features.state import increments
from recloop.online.memory import MemoryOnlineStore

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _count(store: MemoryOnlineStore, item: str, counter: str, at: datetime, n: int) -> None:
    fields = increments(counter, at.timestamp())
    store.hincr_many([(counters_key("app", "i", item), name, float(n)) for name in fields])


def test_stats_are_the_items_impressions_and_clicks_within_the_window() -> None:
    store = MemoryOnlineStore()
    _count(store, "a", "imp", NOW - timedelta(hours=2), 40)
    _count(store, "a", "click", NOW - timedelta(hours=2), 4)
    _count(store, "a", "imp", NOW - timedelta(days=10), 1000)  # outside a 7-day window
    _count(store, "b", "click", NOW - timedelta(days=1), 3)  # clicks, no impressions logged
    stats = OnlineItemStats(store, days=7, clock=lambda: NOW)

    impressions, clicks = stats.get("app", ["a", "b", "unknown"])

    assert impressions.tolist() == [40.0, 3.0, 0.0]
    assert clicks.tolist() == [4.0, 3.0, 0.0]
