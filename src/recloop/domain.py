"""The shared vocabulary: items, users, events, candidates and slates.

This module imports nothing of ours; every layer of the pipeline speaks in these values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """What a user did with an item (or, for ``search``, with a query)."""

    IMPRESSION = "impression"
    CLICK = "click"
    VIEW = "view"
    LIKE = "like"
    SHARE = "share"
    PURCHASE = "purchase"
    ADD_TO_CART = "add_to_cart"
    HIDE = "hide"
    SKIP = "skip"
    REPORT = "report"
    NOT_INTERESTED = "not_interested"
    SEARCH = "search"


#: Events that mean the user has consumed the item; it is not recommended to them again.
CONSUMING_EVENTS: frozenset[EventType] = frozenset(
    {
        EventType.CLICK,
        EventType.VIEW,
        EventType.LIKE,
        EventType.SHARE,
        EventType.PURCHASE,
        EventType.ADD_TO_CART,
    }
)


#: How much each engagement counts toward popularity and as a training signal: stronger
#: signals weigh more. Other event types count nothing.
ENGAGEMENT_WEIGHTS: dict[EventType, float] = {
    EventType.CLICK: 1.0,
    EventType.VIEW: 1.0,
    EventType.LIKE: 2.0,
    EventType.ADD_TO_CART: 2.0,
    EventType.SHARE: 3.0,
    EventType.PURCHASE: 4.0,
}


class Feedback(StrEnum):
    """Explicit negative feedback that suppresses an item for one user."""

    NOT_INTERESTED = "not_interested"
    HIDE = "hide"
    REPORT = "report"


#: Event types that are also explicit feedback, and so suppress the item for the user.
SUPPRESSING_EVENTS: dict[EventType, Feedback] = {
    EventType.NOT_INTERESTED: Feedback.NOT_INTERESTED,
    EventType.HIDE: Feedback.HIDE,
    EventType.REPORT: Feedback.REPORT,
}


class ItemStatus(StrEnum):
    """Whether an item may be served. Only ``active`` items ever are."""

    ACTIVE = "active"
    REMOVED = "removed"
    BLOCKED = "blocked"


class Scope(StrEnum):
    """What an API key may do."""

    INGEST = "ingest"
    SERVE = "serve"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Item:
    """A thing that can be recommended: a video, product, song, article or query."""

    item_id: str
    type: str = "item"
    title: str | None = None
    description: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    creator_id: str | None = None
    locale: str | None = None
    status: ItemStatus = ItemStatus.ACTIVE
    created_at: datetime | None = None
    updated_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class User:
    """A person recommendations are made for, with free-form attributes."""

    user_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a user did, as accepted by ingestion (server time stamped, id assigned)."""

    app_id: str
    event_id: str
    user_id: str
    event_type: EventType
    event_ts: datetime
    server_ts: datetime
    item_id: str | None = None
    value: float | None = None
    surface: str | None = None
    session_id: str | None = None
    device: str | None = None
    position: int | None = None
    request_id: str | None = None
    context: dict[str, Any] | None = None
    # A search's query, normalized, with personal data replaced by tags (``<email>``).
    query: str | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """The slim view of a stored event that incremental readers (popularity) need."""

    seq: int
    app_id: str
    item_id: str | None
    event_type: EventType
    event_ts: datetime


@dataclass(frozen=True, slots=True)
class Candidate:
    """An item recalled by one candidate source, with that source's own score."""

    item_id: str
    source: str
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """A candidate after ranking: the final score, and the propensity it was served with."""

    item_id: str
    score: float
    source: str
    reason: str
    sources: tuple[str, ...] = ()
    propensity: float = 1.0
    # Each recalling source's normalised score, as the ranker saw it: logged with the list,
    # so that the next ranker can learn from them.
    source_scores: tuple[tuple[str, float], ...] = ()
    # In an interleaved list, the variant whose ranking contributed the item ("" for the
    # rankings' shared top, credited to neither).
    team: str | None = None
    # Each ranker head's prediction for the item (click, satisfaction), for debugging.
    heads: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Slate:
    """An ordered list of scored items; the unit that rerank rules and policies transform."""

    items: tuple[ScoredItem, ...]

    def item_ids(self) -> list[str]:
        """The ids in serving order."""
        return [item.item_id for item in self.items]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """The attributes of a servable item that per-request rules read from the durable store."""

    item_id: str
    category: str | None
    creator_id: str | None


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Everything one recommendation request knows; stages never read the clock themselves."""

    app_id: str
    request_id: str
    surface: str
    user_id: str
    now: datetime
    session_id: str | None = None
    device: str | None = None
    locale: str | None = None
    anchor_item_id: str | None = None
    category: str | None = None
    excluded_item_ids: frozenset[str] = frozenset()
    history: tuple[str, ...] = ()  # items the user engaged with, most recent first
    session_items: tuple[str, ...] = ()  # the part of the history in this session
    user_attributes: dict[str, Any] | None = None  # read for users with a short history


@dataclass(frozen=True, slots=True)
class ServedItem:
    """One position of a logged recommendation list."""

    item_id: str
    position: int
    score: float
    source: str
    propensity: float
    source_scores: tuple[tuple[str, float], ...] = ()
    team: str | None = None  # the contributing variant, in an interleaved list


@dataclass(frozen=True, slots=True)
class RecommendationRecord:
    """A served list as written to the recommendation log."""

    app_id: str
    request_id: str
    user_id: str
    surface: str
    served_at: datetime
    items: tuple[ServedItem, ...]
    model_version: str
    experiment: str | None
    variant: str
    fallback: bool
    latency_ms: float
    session_id: str | None = None
    device: str | None = None


def served_items(items: Sequence[ScoredItem]) -> tuple[ServedItem, ...]:
    """A list's items as the logs keep them, with their positions."""
    return tuple(
        ServedItem(
            item.item_id,
            position,
            item.score,
            item.source,
            item.propensity,
            item.source_scores,
            item.team,
        )
        for position, item in enumerate(items)
    )


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """The list a shadow pipeline made for a served request, computed but never shown.

    ``request_id`` is the served request's: the shadow list is judged against the list the
    user did see, and the events that came from it.
    """

    app_id: str
    request_id: str
    shadow: str
    user_id: str
    surface: str
    computed_at: datetime
    items: tuple[ServedItem, ...]
    model_version: str
    fallback: bool
    latency_ms: float
    # Per shadow item: the probability the served list's policy would have put that item at
    # that position for this request (0: it never could); None when the policy cannot say.
    support: tuple[float, ...] | None = None
