"""Domain values and settings for tests, with sensible defaults: name only what a test is about.

The record builders take keyword overrides for any field of what they build, so a test reads as
the few values it cares about.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recloop.config import ComponentConfig, Settings, SurfaceConfig, default_surfaces
from recloop.domain import (
    Event,
    EventType,
    RecommendationRecord,
    ScoredItem,
    ServedItem,
    ShadowRecord,
    Slate,
)
from recloop.retrieval.interactions import Interactions, TrainingData

APP = "app1"
OTHER_APP = "app2"
#: A time with microseconds, so that round trips through a store show any lost precision.
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_event(event_id: str = "e1", **fields: Any) -> Event:
    """A click by ``u1`` on ``i1`` in ``APP``, happened and received at ``T0``."""
    event = Event(
        app_id=APP,
        event_id=event_id,
        user_id="u1",
        event_type=EventType.CLICK,
        event_ts=T0,
        server_ts=T0,
        item_id="i1",
    )
    return dataclasses.replace(event, **fields)


def make_record(request_id: str = "r1", **fields: Any) -> RecommendationRecord:
    """A list of two items served to ``u1`` on ``home`` at ``T0``, in an experiment."""
    record = RecommendationRecord(
        app_id=APP,
        request_id=request_id,
        user_id="u1",
        surface="home",
        served_at=T0,
        items=(
            ServedItem("i1", 0, 0.987654321, "trending", 0.75),
            ServedItem("i2", 1, 0.5, "popular", 1.0),
        ),
        model_version="pop-3",
        experiment="exp-a",
        variant="treatment",
        fallback=False,
        latency_ms=12.345,
        session_id="s1",
        device="ios",
    )
    return dataclasses.replace(record, **fields)


def make_shadow(request_id: str = "r1", shadow: str = "next", **fields: Any) -> ShadowRecord:
    """A shadow's list of two items for ``u1``'s request on ``home``, computed at ``T0``."""
    record = ShadowRecord(
        app_id=APP,
        request_id=request_id,
        shadow=shadow,
        user_id="u1",
        surface="home",
        computed_at=T0,
        items=(ServedItem("i7", 0, 0.5, "newest", 1.0), ServedItem("i8", 1, 0.25, "als", 1.0)),
        model_version="ranker:v2",
        fallback=False,
        latency_ms=3.5,
    )
    return dataclasses.replace(record, **fields)


def make_slate(n: int) -> Slate:
    """A ranked list of ``n`` items, ``i0`` (score 100) first, each scored one less."""
    return Slate(tuple(ScoredItem(f"i{m}", 100.0 - m, "src", "why") for m in range(n)))


def settings_with(data_dir: Path, **overrides: Any) -> Settings:
    """Embedded settings in ``data_dir`` that fold new events into popularity quickly.

    ``overrides`` are any fields of ``Settings``; ``serving`` is merged into the fast refresh.
    """
    serving = {"popularity_refresh_s": 0.05, **overrides.pop("serving", {})}
    return Settings(data_dir=data_dir, serving=serving, **overrides)


def surfaces_without_home_exploration() -> dict[str, SurfaceConfig]:
    """The default surfaces, with home's exploration off so that its ranked order is stable.

    Home's exploration swaps a random tenth of the positions on every request (seeded by the
    random request id); tests that pin down the ranked order itself turn it off.
    """
    surfaces = default_surfaces()
    surfaces["home"] = surfaces["home"].model_copy(
        update={"exploration": ComponentConfig(name="none")}
    )
    return surfaces


class ServedListsStub:
    """The recommendation log as far as ``recently-shown`` reads it: fixed counts, and a
    record of what was asked."""

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self.counts = dict(counts or {})
        self.asked: list[tuple[datetime, datetime | None]] = []
        self.surfaces: list[str | None] = []

    def shown_counts(
        self,
        app_id: str,
        user_id: str,
        since: datetime,
        limit: int = 50,
        until: datetime | None = None,
        surface: str | None = None,
    ) -> dict[str, int]:
        """The fixed counts, whatever is asked."""
        self.asked.append((since, until))
        self.surfaces.append(surface)
        return self.counts


def returning_users(users: int = 80, days: int = 12, seed: int = 5) -> TrainingData:
    """Every user back every day, each on the items of one of four groups: a live service's
    engagement log, as retrieval training sees it."""
    rng = np.random.default_rng(seed)
    user_ids, item_ids, ts = [], [], []
    for u in range(users):
        for step in range(days):
            user_ids.append(f"u{u}")
            item_ids.append(f"g{u % 4}-{rng.integers(0, 12)}")
            ts.append(step * 86_400.0 + u)
    return TrainingData(Interactions.from_records(user_ids, item_ids, ts))
