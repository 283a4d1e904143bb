"""The checkerboard world every contract check runs on, and the answers known in it.

Two groups of users and two of items (implicit's checkerboard fixture): a user of group
``a`` engages only with ``a`` items, a ``b`` user only with ``b`` items, so a fitted source
asked for a new user with an ``a`` history must answer mostly ``a`` items. Each group's
items share words in their texts, a category, and their users a region and an interest:
content and segment sources know the answer as well. A few answers are planted for the
sources that do not personalise: ``a00`` is the most engaged item of all time, ``b01`` the
one engaged most in the last day, ``a11`` the newest, ``b04`` the one clicked most often
when shown (every other engaged item was shown ten times per click); four items were
created in the last three days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np

from recloop.domain import CatalogEntry, EventRecord, EventType, RequestContext
from recloop.retrieval.interactions import Interactions, ItemTable, TrainingData
from recloop.retrieval.models import RecallQuery, scalar_attributes
from recloop.retrieval.popularity import PopularityModel, PopularitySnapshot
from recloop.store.protocols import CatalogChange

APP = "contracts"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = 86_400.0
GROUPS = ("a", "b")
ITEMS_PER_GROUP = 12
USERS_PER_GROUP = 60
PICKS = 8  # items each user engages with, besides the group's hit
CATEGORY = {"a": "Alpha", "b": "Beta"}
REGION = {"a": "north", "b": "south"}
DEVICE = "phone"
WORDS = {
    "a": "orbit rocket launch astronaut galaxy telescope",
    "b": "recipe oven kitchen baking flour butter",
}
MOST_POPULAR = "a00"
TRENDING = "b01"
NEWEST = "a11"
BEST_CLICK_RATE = "b04"
#: Created in the last three days (the fresh source's default window): newest first.
FRESH_AGE_DAYS = {"a11": 1 / 24, "b11": 1.0, "a10": 2.0, "b10": 2.5}
#: The share of a personalised answer that must come from the asker's own group. Every
#: registered source answers 100% on this world; 0.8 leaves room for a legitimate stray.
SAME_GROUP_SHARE = 0.8


def group_of(item_id: str) -> str:
    """The group an item belongs to (its first letter)."""
    return item_id[0]


def same_group_share(item_ids: Sequence[str], group: str) -> float:
    """The share of ``item_ids`` from ``group``."""
    return sum(group_of(i) == group for i in item_ids) / max(len(item_ids), 1)


@dataclass(frozen=True)
class Asker:
    """A user new to the models, with a short history in one group: what every source is
    asked for. History and session are consumed; the anchor is the item being viewed."""

    group: str
    user_id: str
    history: tuple[str, ...]
    session: tuple[str, ...]
    anchor: str
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def consumed(self) -> frozenset[str]:
        """What serving excludes for this user: the history and the anchor."""
        return frozenset({*self.history, self.anchor})

    def recall_query(self, exclude: frozenset[str] | None = None) -> RecallQuery:
        """The question a trained model is asked, as ``ModelSource`` asks it."""
        return RecallQuery(
            user_id=self.user_id,
            history=self.history,
            session=self.session,
            now_ts=NOW.timestamp(),
            device=DEVICE,
            exclude=self.consumed if exclude is None else exclude,
            attributes=scalar_attributes(self.attributes),
        )

    def context(
        self,
        *,
        request_id: str = "r-1",
        excluded: frozenset[str] | None = None,
        app_id: str = APP,
        anchored: bool = True,
    ) -> RequestContext:
        """The request a candidate source is asked, as serving builds it."""
        return RequestContext(
            app_id=app_id,
            request_id=request_id,
            surface="contracts",
            user_id=self.user_id,
            now=NOW,
            session_id="s-1",
            device=DEVICE,
            anchor_item_id=self.anchor if anchored else None,
            excluded_item_ids=self.consumed if excluded is None else excluded,
            history=self.history,
            session_items=self.session,
            user_attributes=dict(self.attributes),
        )


ASKERS = {
    g: Asker(
        group=g,
        user_id=f"new-{g}",
        history=(f"{g}03", f"{g}05", f"{g}07"),
        session=(f"{g}03",),
        anchor=f"{g}02",
        attributes={"region": REGION[g], "interests": CATEGORY[g]},
    )
    for g in GROUPS
}


class World:
    """The world's items, users and engagements, and what serving reads of them."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.item_ids = tuple(f"{g}{j:02d}" for g in GROUPS for j in range(ITEMS_PER_GROUP))
        self.created: dict[str, datetime] = {
            item_id: NOW - timedelta(days=FRESH_AGE_DAYS.get(item_id, 100.0 + j / 24))
            for j, item_id in enumerate(self.item_ids)
        }
        self.user_attributes: dict[str, dict[str, Any]] = {}
        users: list[str] = []
        items: list[str] = []
        ts: list[float] = []
        # Fresh items have no engagement yet: only the content and newest paths know them.
        engaged = {g: [f"{g}{j:02d}" for j in range(1, 10)] for g in GROUPS}
        for g in GROUPS:
            for n in range(USERS_PER_GROUP):
                user = f"{g}u{n:02d}"
                self.user_attributes[user] = {
                    "region": REGION[g],
                    "interests": CATEGORY[g],
                    "device": "phone" if n % 2 else "desktop",
                }
                picks = [f"{g}00", *rng.choice(engaged[g], size=PICKS, replace=False).tolist()]
                if g == "a":
                    picks.append("a00")  # twice: the most engaged item of all time
                # Spread over a month that ends a week ago, at every hour of the day.
                start = NOW.timestamp() - (30 - 24 * n / USERS_PER_GROUP) * DAY
                for step, item in enumerate(picks):
                    users.append(user)
                    items.append(item)
                    ts.append(start + step * 60.0)
        # The last day belongs to b01: trending, though not the most popular of all time.
        # One engagement an hour, so that the hour of day says nothing about the group.
        for n in range(20):
            users.append(f"bu{n:02d}")
            items.append(TRENDING)
            ts.append(NOW.timestamp() - (n + 0.5) * 3600.0)
        self.interactions = Interactions.from_records(
            users,
            items,
            ts,
            sessions=[f"{u}-{int(t // DAY)}" for u, t in zip(users, ts, strict=True)],
            item_vocabulary=self.item_ids,
        )

    @cached_property
    def training_data(self) -> TrainingData:
        """What trained models fit on."""
        table = ItemTable(
            item_ids=self.item_ids,
            titles=tuple(f"{CATEGORY[group_of(i)]} {i}" for i in self.item_ids),
            texts=tuple(f"{WORDS[group_of(i)]} item {i}" for i in self.item_ids),
            categories=tuple(CATEGORY[group_of(i)] for i in self.item_ids),
            created_ts=np.array([self.created[i].timestamp() for i in self.item_ids]),
        )
        # Each user was shown the other group's hits and ignored them: the impressions log's
        # hard negatives, for the models that learn from them.
        x = self.interactions
        pairs = [
            (u, x.item_index(f"{other}{j:02d}"))
            for u, user_id in enumerate(x.user_ids)
            for other in GROUPS
            if other != user_id[0]
            for j in range(3)
        ]
        negatives = (
            np.array([u for u, _ in pairs], dtype=np.int64),
            np.array([i for _, i in pairs], dtype=np.int64),
        )
        return TrainingData(x, table, negatives, self.user_attributes)

    def events(self) -> list[EventRecord]:
        """The engagements as the event log holds them, each after the impressions that
        led to it: ten per click, but five per four clicks of ``BEST_CLICK_RATE``."""
        x = self.interactions
        out: list[EventRecord] = []
        for n, (item, t) in enumerate(zip(x.items, x.timestamps, strict=True)):
            item_id = x.item_ids[int(item)]
            at = datetime.fromtimestamp(float(t), UTC)
            shown = (2 if n % 4 == 0 else 1) if item_id == BEST_CLICK_RATE else 10
            for event_type in [EventType.IMPRESSION] * shown + [EventType.CLICK]:
                out.append(EventRecord(len(out), APP, item_id, event_type, at))
        return out

    def catalog_changes(self, blocked: frozenset[str] = frozenset()) -> list[CatalogChange]:
        """Every item as the catalog follower sees it."""
        return [
            CatalogChange(
                app_id=APP,
                item_id=item_id,
                category=CATEGORY[group_of(item_id)],
                is_active=item_id not in blocked,
                updated_at=self.created[item_id],
                created_at=self.created[item_id],
                creator_id=f"creator-{item_id[:2]}",  # a0.. and a1.. items: two creators
            )
            for item_id in self.item_ids
        ]

    def popularity(self, blocked: frozenset[str] = frozenset()) -> PopularitySnapshot:
        """The popularity snapshot serving reads, as of ``NOW``."""
        model = PopularityModel()
        model.apply_catalog(self.catalog_changes(blocked))
        model.update(self.events())
        return model.snapshot(NOW)


class Catalog:
    """The catalog's active entries, with some items blocked: what serving's gate reads."""

    def __init__(self, item_ids: Sequence[str], blocked: frozenset[str] = frozenset()) -> None:
        self.item_ids = tuple(item_ids)
        self.blocked = set(blocked)

    def active_entries(self, app_id: str, item_ids: Sequence[str]) -> dict[str, CatalogEntry]:
        """Entries of the requested items that exist and are not blocked."""
        known = set(self.item_ids) - self.blocked if app_id == APP else set()
        return {
            i: CatalogEntry(i, CATEGORY[group_of(i)], f"creator-{i[:2]}")
            for i in item_ids
            if i in known
        }
