"""How a simulated user responds to a served list, and the ground truth behind it.

Examination falls with position (a position-based model): position ``k`` (0 is the top) is
looked at with probability ``(1 + k) ** -position_decay``. An examined item is clicked with a
probability that grows with the user's taste match and the item's attractiveness, and falls
with fatigue (seen before, too much of one category in this session). A click's
satisfaction follows the item's quality and the match: satisfied clicks dwell long and may
be liked, shared or bought; unsatisfied ones bounce, and clickbait may get hidden. Examined
items that match poorly are skipped, and rarely hidden. Because the click probabilities are
computed in closed form, the world knows each list's expected clicks and satisfaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.simulate.world import SimUser, World


class BehaviourConfig(BaseModel):
    """The response model's parameters (see the module docstring and docs/simulator.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position_decay: float = Field(default=0.85, ge=0)
    click_bias: float = -3.6
    taste_weight: float = 3.2
    attractiveness_weight: float = 1.0
    seen_penalty: float = 1.2
    category_fatigue: float = 0.25
    intent_boost: float = 0.9
    satisfaction_sharpness: float = 4.0
    like_given_satisfied: float = 0.3
    share_given_satisfied: float = 0.06
    purchase_given_satisfied: float = 0.02
    skip_below_match: float = 0.15
    skip_probability: float = 0.4
    hide_below_match: float = -0.1
    hide_probability: float = 0.02
    not_interested_probability: float = 0.01
    clickbait_hide_after_click: float = 0.08
    continue_after_click: float = 0.95
    continue_without_click: float = 0.6
    max_requests_per_session: int = Field(default=8, ge=1)
    organic_per_session: float = Field(default=0.6, ge=0)
    organic_pool: int = Field(default=200, ge=1)
    organic_temperature: float = Field(default=0.15, gt=0)
    bot_clicks_per_list: int = Field(default=10, ge=0)


@dataclass
class Session:
    """One visit: its id, device, and what it has shown and led to so far."""

    session_id: str
    user: SimUser
    started_at: datetime
    requests: int = 0
    clicked_categories: dict[str, int] = field(default_factory=dict)
    shown_categories: dict[str, int] = field(default_factory=dict)
    rng: np.random.Generator | None = None  # None: the world's generator


@dataclass(frozen=True, slots=True)
class ListTruth:
    """The world's ground truth for one list shown to one user in one session state."""

    examination: np.ndarray
    click_probability: np.ndarray  # per position, examination included
    satisfaction: np.ndarray  # probability that the position yields a satisfied click

    @property
    def expected_clicks(self) -> float:
        """Expected clicks on the whole list."""
        return float(self.click_probability.sum())


@dataclass
class ListResponse:
    """What a user did with one list: the events to send and the counts for the report."""

    events: list[dict[str, Any]]
    clicks: list[int]  # positions clicked
    satisfied: int
    likes: int
    hides: int
    skips: int
    leaves: bool


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def _top(ids: list[str], values: np.ndarray, k: int) -> list[str]:
    """The ids of the ``k`` largest values, largest first."""
    chosen = np.argpartition(-values, k - 1)[:k]
    return [ids[int(n)] for n in chosen[np.argsort(-values[chosen], kind="stable")]]


@dataclass(frozen=True, slots=True)
class _Catalog:
    """The world's items as arrays, for scoring all of them at once."""

    ids: list[str]
    index: dict[str, int]
    vectors: np.ndarray
    attractiveness: np.ndarray
    quality: np.ndarray
    published: np.ndarray  # POSIX seconds
    categories: np.ndarray  # index into the world's categories
    category_index: dict[str, int]


class Behaviour:
    """The response model; its randomness comes from the session's generator."""

    def __init__(self, world: World, config: BehaviourConfig | None = None) -> None:
        self.world = world
        self.config = config or BehaviourConfig()
        self._catalog_cache: _Catalog | None = None

    def _rng(self, session: Session) -> np.random.Generator:
        return session.rng if session.rng is not None else self.world.rng

    def truth(self, session: Session, item_ids: list[str]) -> ListTruth:
        """Expected click and satisfaction probability of every position of a list."""
        if not item_ids:
            empty = np.zeros(0)
            return ListTruth(empty, empty, empty)
        items = [self.world.item_by_id[i] for i in item_ids]
        click, satisfied_given_click = self._probabilities(
            session,
            np.stack([item.vector for item in items]),
            np.array([item.attractiveness for item in items]),
            np.array([item.quality for item in items]),
            np.array([session.user.seen.get(i, 0) for i in item_ids], dtype=float),
            np.array(
                [session.shown_categories.get(item.category, 0) for item in items], dtype=float
            ),
            np.array(
                [min(2, session.clicked_categories.get(item.category, 0)) for item in items],
                dtype=float,
            ),
        )
        examination = (1.0 + np.arange(len(items))) ** -self.config.position_decay
        click = examination * click
        return ListTruth(examination, click, click * satisfied_given_click)

    def _probabilities(
        self,
        session: Session,
        vectors: np.ndarray,
        attractiveness: np.ndarray,
        quality: np.ndarray,
        seen: np.ndarray,
        fatigue: np.ndarray,
        intent: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """P(click | examined) and P(satisfied | click) of items in a session's state."""
        c = self.config
        match = vectors @ session.user.taste
        logits = (
            c.click_bias
            + c.taste_weight * match
            + c.attractiveness_weight * attractiveness
            + c.intent_boost * intent
            - c.seen_penalty * np.log1p(seen)
            - c.category_fatigue * fatigue
        )
        return _sigmoid(logits), quality * _sigmoid(c.satisfaction_sharpness * match)

    def best_lists(self, session: Session, k: int, now: datetime) -> tuple[list[str], list[str]]:
        """The world's own best lists of ``k`` items for a session in its current state.

        The first maximises expected clicks, the second expected satisfied clicks, over every
        item published by ``now``: examination depends only on position, so sorting items by
        their own probability is optimal (the rearrangement inequality). They are oracles, the
        ceiling any recommender could reach on the same request.
        """
        catalog = self._catalog()
        available = catalog.published <= now.timestamp()
        if k <= 0 or not available.any():
            return [], []
        user = session.user
        seen = np.zeros(len(catalog.ids))
        for item_id, count in user.seen.items():
            seen[catalog.index[item_id]] = count
        shown = np.zeros(len(self.world.categories))
        clicked = np.zeros(len(self.world.categories))
        for category, count in session.shown_categories.items():
            shown[catalog.category_index[category]] = count
        for category, count in session.clicked_categories.items():
            clicked[catalog.category_index[category]] = min(2, count)
        click, satisfied_given_click = self._probabilities(
            session,
            catalog.vectors,
            catalog.attractiveness,
            catalog.quality,
            seen,
            shown[catalog.categories],
            clicked[catalog.categories],
        )
        click = np.where(available, click, -1.0)
        satisfied = np.where(available, click * satisfied_given_click, -1.0)
        k = min(k, int(available.sum()))
        return _top(catalog.ids, click, k), _top(catalog.ids, satisfied, k)

    def _catalog(self) -> _Catalog:
        # The world only adds items, so the arrays are rebuilt when the count changes.
        items = self.world.items
        if self._catalog_cache is None or len(self._catalog_cache.ids) != len(items):
            category_index = {c: k for k, c in enumerate(self.world.categories)}
            self._catalog_cache = _Catalog(
                ids=[item.item_id for item in items],
                index={item.item_id: n for n, item in enumerate(items)},
                vectors=np.stack([item.vector for item in items]),
                attractiveness=np.array([item.attractiveness for item in items]),
                quality=np.array([item.quality for item in items]),
                published=np.array([item.published_at.timestamp() for item in items]),
                categories=np.array([category_index[item.category] for item in items]),
                category_index=category_index,
            )
        return self._catalog_cache

    def organic(self, session: Session, now: datetime) -> list[dict[str, Any]]:
        """Items the user finds outside recommendations (search, links, browsing).

        Real logs are not only the recommender's echo: people reach items by other paths,
        mostly ones that match their taste. Each found item yields a click and a view.
        """
        rng = self._rng(session)
        c = self.config
        user = session.user
        found = int(rng.poisson(c.organic_per_session))
        if found == 0 or user.is_bot:
            return []
        items = self.world.items
        pool = [
            items[int(i)] for i in rng.integers(len(items), size=min(c.organic_pool, len(items)))
        ]
        # Taste decides most of it; an item's general appeal (its attractiveness) the rest.
        appeal = np.array([item.vector @ user.taste + 0.15 * item.attractiveness for item in pool])
        weights = np.exp((appeal - appeal.max()) / c.organic_temperature)
        chosen = rng.choice(len(pool), size=found, p=weights / weights.sum())
        events: list[dict[str, Any]] = []
        for n, index in enumerate(chosen):
            item = pool[int(index)]
            if item.published_at > now:
                continue
            at = now + timedelta(seconds=5.0 * n)
            user.seen[item.item_id] = user.seen.get(item.item_id, 0) + 1
            for event_type, offset, value in (
                ("click", 0, None),
                ("view", 1, float(rng.uniform(5_000, 200_000))),
            ):
                event: dict[str, Any] = {
                    "eventId": f"{rng.integers(1 << 62):016x}",
                    "userId": user.user_id,
                    "itemId": item.item_id,
                    "eventType": event_type,
                    "surface": "browse",
                    "sessionId": session.session_id,
                    "device": user.device,
                    "eventTs": (at + timedelta(seconds=offset)).isoformat(),
                }
                if value is not None:
                    event["value"] = round(value)
                events.append(event)
        return events

    def respond(
        self,
        session: Session,
        item_ids: list[str],
        *,
        request_id: str,
        surface: str,
        now: datetime,
    ) -> ListResponse:
        """Sample what the user does with a served list, as API events on the sim clock."""
        rng = self._rng(session)
        c = self.config
        user = session.user
        truth = self.truth(session, item_ids)
        events: list[dict[str, Any]] = []
        clicks: list[int] = []
        satisfied = likes = hides = skips = 0

        def emit(
            event_type: str, position: int, item_id: str, at: datetime, value: float | None = None
        ) -> None:
            event: dict[str, Any] = {
                "eventId": f"{rng.integers(1 << 62):016x}",
                "userId": user.user_id,
                "itemId": item_id,
                "eventType": event_type,
                "surface": surface,
                "sessionId": session.session_id,
                "device": user.device,
                "position": position,
                "requestId": request_id,
                "eventTs": at.isoformat(),
            }
            if value is not None:
                event["value"] = value
            events.append(event)

        for position, item_id in enumerate(item_ids):
            item = self.world.item_by_id[item_id]
            at = now + timedelta(seconds=2.0 + 1.5 * position)
            if user.is_bot:
                examined = True
                clicked = position < c.bot_clicks_per_list
            else:
                examined = bool(rng.random() < truth.examination[position])
                clicked = examined and bool(
                    rng.random() < truth.click_probability[position] / truth.examination[position]
                )
            if not examined:
                continue
            emit("impression", position, item_id, at)
            user.seen[item_id] = user.seen.get(item_id, 0) + 1
            session.shown_categories[item.category] = (
                session.shown_categories.get(item.category, 0) + 1
            )
            match = float(item.vector @ user.taste)
            if clicked:
                clicks.append(position)
                emit("click", position, item_id, at + timedelta(seconds=1))
                session.clicked_categories[item.category] = (
                    session.clicked_categories.get(item.category, 0) + 1
                )
                if user.is_bot:
                    continue
                p_satisfied = item.quality / (1.0 + math.exp(-c.satisfaction_sharpness * match))
                if rng.random() < p_satisfied:
                    satisfied += 1
                    dwell = float(rng.uniform(30_000, 300_000))
                    emit("view", position, item_id, at + timedelta(seconds=2), round(dwell))
                    if rng.random() < c.like_given_satisfied:
                        likes += 1
                        emit("like", position, item_id, at + timedelta(seconds=3))
                    if rng.random() < c.share_given_satisfied:
                        emit("share", position, item_id, at + timedelta(seconds=4))
                    if rng.random() < c.purchase_given_satisfied:
                        emit("purchase", position, item_id, at + timedelta(seconds=5), 4.99)
                else:
                    dwell = float(rng.uniform(1_000, 30_000))
                    emit("view", position, item_id, at + timedelta(seconds=2), round(dwell))
                    if item.is_clickbait and rng.random() < c.clickbait_hide_after_click:
                        hides += 1
                        emit("hide", position, item_id, at + timedelta(seconds=3))
            elif match < c.skip_below_match:
                if match < c.hide_below_match and rng.random() < c.hide_probability:
                    hides += 1
                    emit("hide", position, item_id, at)
                elif match < c.hide_below_match and rng.random() < c.not_interested_probability:
                    hides += 1
                    emit("not_interested", position, item_id, at)
                elif rng.random() < c.skip_probability:
                    skips += 1
                    emit("skip", position, item_id, at)
        session.requests += 1
        keep_going = c.continue_after_click if clicks else c.continue_without_click
        leaves = (
            session.requests >= c.max_requests_per_session
            or rng.random() > user.patience * keep_going
        )
        return ListResponse(events, clicks, satisfied, likes, hides, skips, leaves)
