"""The no-regression gate end to end: a new version that recalls less than the served one
on the latest days is trained, recorded and kept back; the served one keeps serving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from recloop.config import (
    PromotionSettings,
    RankerTrainSettings,
    Settings,
    TrainSettings,
    TrainSourceConfig,
)
from recloop.domain import Event, EventType, Item
from recloop.registry.artifacts import ModelRegistry
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from recloop.training.job import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2026, 10, 1, tzinfo=UTC)
GROUPS, PER_GROUP, USERS, DAYS = 4, 30, 200, 20


def _history() -> tuple[list[Item], list[Event]]:
    """Users of four tastes, back every day for one item of their taste."""
    rng = np.random.default_rng(11)
    items = [
        Item(f"g{g}-i{i}", title=f"item {g}/{i}", category=f"c{g}", created_at=START)
        for g in range(GROUPS)
        for i in range(PER_GROUP)
    ]
    events = []
    for u in range(USERS):
        for day in range(DAYS):
            at = START + timedelta(days=day, minutes=int(rng.integers(0, 1440)))
            item = f"g{u % GROUPS}-i{rng.integers(PER_GROUP)}"
            events.append(
                Event(
                    app_id="default",
                    event_id=f"u{u}-{day}",
                    user_id=f"u{u}",
                    item_id=item,
                    event_type=EventType.CLICK,
                    event_ts=at,
                    server_ts=at,
                )
            )
    return items, events


def _settings(data_dir: Path, sources: list[TrainSourceConfig]) -> Settings:
    return Settings(
        data_dir=data_dir,
        train=TrainSettings(
            sources=sources,
            ranker=RankerTrainSettings(enabled=False),
            # 120 items: recall@100 finds nearly everything; the top ten tell sources apart.
            promotion=PromotionSettings(metric="recall@10"),
        ),
    )


def test_a_version_worse_than_the_served_one_on_the_latest_days_is_kept_back(
    tmp_path: Path,
) -> None:
    good = _settings(tmp_path, [TrainSourceConfig(name="item-knn")])
    store = prepare_store(good)
    ensure_dev_key(store, tmp_path)  # creates the app
    items, events = _history()
    store.catalog.upsert_items("default", items, START)
    cut = START + timedelta(days=DAYS - 4)
    store.events.append([e for e in events if e.event_ts < cut])
    try:
        first = train(good, store, now=cut)
        assert first.promoted, first.verdict
        # A taste-blind source alone, on all twenty days: validated on the last two.
        store.events.append([e for e in events if e.event_ts >= cut])
        blind = _settings(tmp_path, [TrainSourceConfig(name="segment-popular")])
        second = train(blind, store, now=START + timedelta(days=DAYS))
    finally:
        store.close()

    gates = {g.name: g for g in second.verdict.gates}
    assert gates["validated"].passed
    regression = gates["no_regression"]
    assert not regression.passed, regression.detail
    assert f"against served {first.version}" in regression.detail
    assert "best source segment-popular" in regression.detail
    assert "item-knn" in regression.detail
    assert "more than 10% (train.promotion.max_regression)" in regression.detail
    assert not second.promoted
    registry = ModelRegistry(good.resolved_model_dir())
    assert registry.current("default") == first.version
    manifest = registry.manifest("default", second.version)
    assert manifest.extra["promotion"]["passed"] is False
    assert manifest.extra["trained_through_ts"] > manifest.extra["validation_cutoff_ts"]
    assert any(note.startswith("blocked by no_regression:") for note in manifest.notes)


def test_the_same_recipe_on_more_days_is_not_blocked(tmp_path: Path) -> None:
    settings = _settings(tmp_path, [TrainSourceConfig(name="item-knn")])
    store = prepare_store(settings)
    ensure_dev_key(store, tmp_path)  # creates the app
    items, events = _history()
    store.catalog.upsert_items("default", items, START)
    cut = START + timedelta(days=DAYS - 4)
    store.events.append([e for e in events if e.event_ts < cut])
    try:
        first = train(settings, store, now=cut)
        store.events.append([e for e in events if e.event_ts >= cut])
        second = train(settings, store, now=START + timedelta(days=DAYS))
    finally:
        store.close()
    regression = next(g for g in second.verdict.gates if g.name == "no_regression")
    assert f"against served {first.version}" in regression.detail  # compared, not skipped
    assert regression.passed, regression.detail
    assert second.promoted
