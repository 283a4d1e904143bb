"""A small seeded world: a catalog with categories and creators, users with tastes, events.

Users prefer a few categories; items differ in appeal, so popularity is long-tailed.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

CATEGORIES = (
    "Comedy",
    "Drama",
    "Sci-Fi",
    "Music",
    "Cooking",
    "Travel",
    "Gaming",
    "News",
    "Sports",
    "Science",
    "Fashion",
    "Kids",
)
_ADJECTIVES = (
    "Quiet",
    "Golden",
    "Lost",
    "Electric",
    "Hidden",
    "Midnight",
    "Wild",
    "Broken",
    "Silver",
    "Endless",
    "Little",
    "Final",
    "Secret",
    "Bright",
    "Cold",
    "Last",
)
_NOUNS = (
    "Harbor",
    "Signal",
    "Garden",
    "Engine",
    "Winter",
    "Road",
    "Kitchen",
    "Orbit",
    "Echo",
    "Summit",
    "Market",
    "Storm",
    "Island",
    "Letter",
    "Circuit",
    "River",
)


@dataclass(frozen=True, slots=True)
class WorldItem:
    """An item and how appealing it is (hidden from the service)."""

    item_id: str
    category: str
    creator_id: str
    title: str
    tags: tuple[str, ...]
    appeal: float
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The item as the API takes it."""
        return {
            "itemId": self.item_id,
            "type": "video",
            "title": self.title,
            "description": f"A {self.category.lower()} video: {self.title}.",
            "category": self.category,
            "tags": list(self.tags),
            "creatorId": self.creator_id,
            "locale": "en",
            "createdAt": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class WorldUser:
    """A user, their favourite categories and how active they are."""

    user_id: str
    favourites: tuple[str, ...]
    activity: float
    attributes: dict[str, Any]


class World:
    """Items, users and a generator of plausible events, all from one seed."""

    def __init__(self, *, seed: int, n_items: int, n_users: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.now = now
        rng = self.rng
        self.items = [
            WorldItem(
                item_id=f"v{n:05d}",
                category=(category := rng.choice(CATEGORIES)),
                creator_id=f"creator{rng.randrange(max(1, n_items // 8)):04d}",
                title=f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
                tags=(category.lower(), rng.choice(_NOUNS).lower()),
                # Log-normal appeal: a few items get most of the attention, as in real logs.
                appeal=rng.lognormvariate(0.0, 1.2),
                created_at=now - timedelta(days=rng.uniform(0, 60)),
            )
            for n in range(n_items)
        ]
        self.users = [
            WorldUser(
                user_id=f"u{n:05d}",
                favourites=tuple(rng.sample(CATEGORIES, rng.choice((1, 2, 2, 3)))),
                activity=rng.lognormvariate(0.0, 1.0),
                attributes={
                    "ageGroup": rng.choice(("18-24", "25-34", "35-44", "45+")),
                    "region": rng.choice(("EU", "NA", "APAC", "LATAM")),
                    "language": "en",
                },
            )
            for n in range(n_users)
        ]
        self._by_category: dict[str, list[WorldItem]] = {}
        for item in self.items:
            self._by_category.setdefault(item.category, []).append(item)

    def pick_item(self, user: WorldUser) -> WorldItem:
        """An item this user would engage with: mostly from a favourite category."""
        rng = self.rng
        category = rng.choice(user.favourites) if rng.random() < 0.8 else rng.choice(CATEGORIES)
        pool = self._by_category.get(category) or self.items
        return rng.choices(pool, weights=[i.appeal for i in pool])[0]

    def events(self, n: int, span: timedelta) -> list[dict[str, Any]]:
        """``n`` events spread over the ``span`` before now, oldest first."""
        rng = self.rng
        users = rng.choices(self.users, weights=[u.activity for u in self.users], k=n)
        offsets = sorted((rng.uniform(0, span.total_seconds()) for _ in range(n)), reverse=True)
        out: list[dict[str, Any]] = []
        for user, offset in zip(users, offsets, strict=True):
            item = self.pick_item(user)
            roll = rng.random()
            event_type = (
                "purchase"
                if roll < 0.02
                else "like"
                if roll < 0.12
                else "click"
                if roll < 0.55
                else "view"
            )
            event: dict[str, Any] = {
                "eventId": uuid.UUID(int=rng.getrandbits(128)).hex,
                "userId": user.user_id,
                "itemId": item.item_id,
                "eventType": event_type,
                "surface": "home",
                "device": rng.choice(("ios", "android", "web")),
                "eventTs": (self.now - timedelta(seconds=offset)).isoformat(),
            }
            if event_type == "view":
                event["value"] = round(rng.uniform(2_000, 600_000))
            out.append(event)
        return out
