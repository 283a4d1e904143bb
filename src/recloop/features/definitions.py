"""Every feature, defined once: how events update state, and how state becomes values.

Both paths use this module and nothing else to compute a feature:
- offline, ``data/training.py`` replays a snapshot's events in time order into in-memory
  ``Counters`` and reads each training row's features just before its impression time;
- online, ``features/online.py`` folds the event log into the online store with the same
  ``updates_for`` and reads the same ``FeatureSet.row`` at request time.
A feature added to ``FEATURE_NAMES`` and ``FeatureSet.row`` appears in both.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from recloop.domain import CONSUMING_EVENTS, EventType
from recloop.features.state import RETENTION_DAYS, Counters, day_bucket

#: Engagement: the events that count as activity and popularity.
ENGAGEMENT = frozenset(t.value for t in CONSUMING_EVENTS)
#: How many recent items a session remembers.
SESSION_LENGTH = 20
#: Half-life of the recency weighting in affinities, in days.
AFFINITY_HALF_LIFE_DAYS = 7.0
#: A Beta prior on CTR: ``PRIOR_IMPRESSIONS`` impressions at ``PRIOR_CTR``.
PRIOR_CTR = 0.02
PRIOR_IMPRESSIONS = 50.0

FEATURE_NAMES: tuple[str, ...] = (
    "user_engagement_1d",
    "user_engagement_7d",
    "user_engagement_30d",
    "user_impressions_7d",
    "user_days_since_first_seen",
    "user_preferred_device",
    "item_engagement_1d",
    "item_engagement_7d",
    "item_engagement_30d",
    "item_ctr_30d",
    "item_age_hours",
    "item_category",
    "item_creator",
    "item_mean_dwell_s_30d",
    "context_hour",
    "context_day_of_week",
    "context_device",
    "context_surface",
    "session_length",
    "session_same_category_share",
    "session_has_item",
    "user_category_affinity",
    "user_creator_affinity",
)
#: The item's own features (``FeatureSet.item_part``), in the order ``item_values`` gives.
ITEM_FEATURES: tuple[str, ...] = tuple(name for name in FEATURE_NAMES if name.startswith("item_"))
_COLUMN = {name: col for col, name in enumerate(FEATURE_NAMES)}
_ITEM_COLUMNS = np.array([_COLUMN[name] for name in ITEM_FEATURES], dtype=np.intp)
#: Features whose values are codes of categories rather than quantities.
CATEGORICAL = frozenset(
    {"user_preferred_device", "item_category", "item_creator", "context_device", "context_surface"}
)


def code(value: str | None) -> float:
    """A stable numeric code for a categorical value (0 for none), the same in every process."""
    if not value:
        return 0.0
    digest = hashlib.blake2b(value.encode(), digest_size=4).digest()
    return float(int.from_bytes(digest, "big") % 1_000_003 + 1)


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """The catalog attributes features read."""

    category: str | None
    creator_id: str | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One item a session engaged with, and its category."""

    item_id: str
    category: str | None


@dataclass(frozen=True, slots=True)
class Update:
    """One counter increment: which entity (``u`` user or ``i`` item), counter, time, amount."""

    entity: str
    entity_id: str
    counter: str
    ts: float
    amount: float = 1.0
    hourly: bool = True


def updates_for(
    user_id: str,
    item_id: str | None,
    event_type: str,
    value: float | None,
    device: str | None,
    ts: float,
    meta: ItemMeta | None,
) -> list[Update]:
    """The counter increments one event causes (the online and offline paths both use this)."""
    out: list[Update] = []
    engaged = event_type in ENGAGEMENT
    if engaged:
        out.append(Update("u", user_id, "eng", ts))
        if device:
            out.append(Update("u", user_id, f"dev:{device}", ts, hourly=False))
    if event_type == EventType.IMPRESSION:
        out.append(Update("u", user_id, "imp", ts))
    if item_id is None:
        return out
    if engaged:
        out.append(Update("i", item_id, "eng", ts))
        if meta is not None and meta.category:
            out.append(Update("u", user_id, f"cat:{meta.category}", ts, hourly=False))
        if meta is not None and meta.creator_id:
            out.append(Update("u", user_id, f"cre:{meta.creator_id}", ts, hourly=False))
    if event_type == EventType.IMPRESSION:
        out.append(Update("i", item_id, "imp", ts))
    elif event_type == EventType.CLICK:
        out.append(Update("i", item_id, "click", ts))
    elif event_type == EventType.VIEW and value is not None:
        out.append(Update("i", item_id, "view", ts))
        out.append(Update("i", item_id, "dwell_s", ts, amount=value / 1000.0))
    return out


#: An event stamped within this many seconds of its arrival keeps its own time for the
#: features; one further off (a wrong clock, a replay, a late upload) counts at its arrival.
CLOCK_TOLERANCE_S = 300.0


def feature_time(event_ts: float, server_ts: float) -> float:
    """When an event counts for the features, in epoch seconds, on the server's timeline.

    The same rule online (as events are folded in) and offline (as a snapshot is
    replayed): a client clock months off would otherwise age every counter to nothing.
    """
    return event_ts if abs(server_ts - event_ts) <= CLOCK_TOLERANCE_S else server_ts


def joins_session(event_type: str) -> bool:
    """Whether an event adds its item to the session's recent items."""
    return event_type in ENGAGEMENT


def _days_since_first_seen(counters: Counters, now: float) -> float:
    """Days since the user's earliest bucket, capped at the retention window."""
    first = counters.first_day()
    if first is None:
        return 0.0
    today = day_bucket(now)
    return float(max(0, today - max(first, today - RETENTION_DAYS)))


def _prefix_totals(counters: Counters, prefix: str, now: float) -> dict[str, float]:
    """Each prefixed counter's total over the last 30 daily buckets."""
    today = day_bucket(now)
    totals: dict[str, float] = {}
    for counter, buckets in counters.daily(prefix):
        total = sum(v for b, v in buckets.items() if today - 30 < b <= today)
        if total:
            totals[counter[len(prefix) :]] = total
    return totals


def _argmax_prefixed(counters: Counters, prefix: str, now: float) -> str | None:
    totals = _prefix_totals(counters, prefix, now)
    if not totals:
        return None
    # Highest total; ties to the smallest name, so both paths agree.
    return min(totals, key=lambda k: (-totals[k], k))


def _decayed_total(counters: Counters, family: str, now: float) -> float:
    """The recency-weighted engagement over every counter of a family (``cat:``)."""
    return counters.family_decayed(family, now, 30, AFFINITY_HALF_LIFE_DAYS)


class FeatureSet:
    """Computes feature rows; request-independent parts are computed once per entity."""

    names = FEATURE_NAMES

    def user_part(self, user: Counters, now: float) -> dict[str, float]:
        """Features of the user alone."""
        return {
            "user_engagement_1d": user.window("eng", now, 1),
            "user_engagement_7d": user.window("eng", now, 7),
            "user_engagement_30d": user.window("eng", now, 30),
            "user_impressions_7d": user.window("imp", now, 7),
            "user_days_since_first_seen": _days_since_first_seen(user, now),
            "user_preferred_device": code(_argmax_prefixed(user, "dev:", now)),
            # Denominators of the affinities; not features themselves.
            "_category_total": _decayed_total(user, "cat:", now),
            "_creator_total": _decayed_total(user, "cre:", now),
        }

    def item_part(self, item: Counters, meta: ItemMeta | None, now: float) -> dict[str, float]:
        """Features of the item alone."""
        clicks = item.window("click", now, 30)
        impressions = item.window("imp", now, 30)
        views = item.window("view", now, 30)
        created = meta.created_at.timestamp() if meta and meta.created_at else None
        return {
            "item_engagement_1d": item.window("eng", now, 1),
            "item_engagement_7d": item.window("eng", now, 7),
            "item_engagement_30d": item.window("eng", now, 30),
            "item_ctr_30d": (clicks + PRIOR_CTR * PRIOR_IMPRESSIONS)
            / (impressions + PRIOR_IMPRESSIONS),
            "item_age_hours": max(0.0, (now - created) / 3600.0) if created is not None else -1.0,
            "item_category": code(meta.category if meta else None),
            "item_creator": code(meta.creator_id if meta else None),
            "item_mean_dwell_s_30d": item.window("dwell_s", now, 30) / views if views else 0.0,
        }

    @staticmethod
    def context_part(now: float, device: str | None, surface: str | None) -> dict[str, float]:
        """Features of the request's context."""
        moment = datetime.fromtimestamp(now, UTC)
        return {
            "context_hour": float(moment.hour),
            "context_day_of_week": float(moment.weekday()),
            "context_device": code(device),
            "context_surface": code(surface),
        }

    @staticmethod
    def item_values(item_part: Mapping[str, float]) -> tuple[float, ...]:
        """An item part's values in ``ITEM_FEATURES`` order (what ``rows`` takes)."""
        return tuple(item_part[name] for name in ITEM_FEATURES)

    @staticmethod
    def row(named: Mapping[str, float]) -> list[float]:
        """Named features (from ``named``) in ``FEATURE_NAMES`` order."""
        return [named[name] for name in FEATURE_NAMES]

    def named(
        self,
        *,
        user_part: Mapping[str, float],
        item_part: Mapping[str, float],
        context_part: Mapping[str, float],
        user: Counters,
        item_id: str,
        meta: ItemMeta | None,
        session: Sequence[SessionEntry],
        now: float,
    ) -> dict[str, float]:
        """One candidate's features by name (``row`` orders them)."""
        category = meta.category if meta else None
        creator = meta.creator_id if meta else None
        same = sum(1 for e in session if category is not None and e.category == category)
        values = {
            **{k: v for k, v in user_part.items() if not k.startswith("_")},
            **item_part,
            **context_part,
            "session_length": float(len(session)),
            "session_same_category_share": same / len(session) if session else 0.0,
            "session_has_item": float(any(e.item_id == item_id for e in session)),
            "user_category_affinity": _affinity(
                user, f"cat:{category}", user_part["_category_total"], now, category
            ),
            "user_creator_affinity": _affinity(
                user, f"cre:{creator}", user_part["_creator_total"], now, creator
            ),
        }
        return values

    def rows(
        self,
        *,
        user_part: Mapping[str, float],
        item_values: npt.ArrayLike,
        context_part: Mapping[str, float],
        user: Counters,
        item_ids: Sequence[str],
        metas: Sequence[ItemMeta | None],
        session: Sequence[SessionEntry],
        now: float,
    ) -> npt.NDArray[np.float64]:
        """Many candidates' rows for one user and context, in ``FEATURE_NAMES`` order.

        Equal, value for value, to ``row(named(...))`` for each candidate in turn: the user
        and context parts fill whole columns, ``item_values`` (one ``item_values`` tuple per
        candidate) fills the item columns, and what pairs a candidate with the user or
        session is computed once per distinct category, creator or item.
        """
        n = len(item_ids)
        # NaN until filled: a feature of FEATURE_NAMES that no part fills stays NaN, not 0.
        out = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float64)
        for name, value in user_part.items():
            if not name.startswith("_"):
                out[:, _COLUMN[name]] = value
        for name, value in context_part.items():
            out[:, _COLUMN[name]] = value
        if n == 0:
            return out
        out[:, _ITEM_COLUMNS] = np.asarray(item_values, dtype=np.float64).reshape(
            n, len(ITEM_FEATURES)
        )
        length = len(session)
        out[:, _COLUMN["session_length"]] = float(length)
        categories = [meta.category if meta else None for meta in metas]
        creators = [meta.creator_id if meta else None for meta in metas]
        if length:
            same = Counter(e.category for e in session if e.category is not None)
            shares = {c: same[c] / length if c is not None else 0.0 for c in set(categories)}
            out[:, _COLUMN["session_same_category_share"]] = [shares[c] for c in categories]
            in_session = {e.item_id for e in session}
            out[:, _COLUMN["session_has_item"]] = [float(i in in_session) for i in item_ids]
        else:
            out[:, _COLUMN["session_same_category_share"]] = 0.0
            out[:, _COLUMN["session_has_item"]] = 0.0
        # Affinities depend on the candidate only through its category and creator.
        total = user_part["_category_total"]
        by_category = {c: _affinity(user, f"cat:{c}", total, now, c) for c in set(categories)}
        out[:, _COLUMN["user_category_affinity"]] = [by_category[c] for c in categories]
        total = user_part["_creator_total"]
        by_creator = {c: _affinity(user, f"cre:{c}", total, now, c) for c in set(creators)}
        out[:, _COLUMN["user_creator_affinity"]] = [by_creator[c] for c in creators]
        return out


def _affinity(user: Counters, counter: str, total: float, now: float, value: str | None) -> float:
    """The recency-weighted share of the user's engagement that went to ``value``."""
    if value is None or total <= 0.0:
        return 0.0
    return user.decayed(counter, now, 30, AFFINITY_HALF_LIFE_DAYS) / total


def finite(values: Sequence[float]) -> bool:
    """Whether every value is a finite number."""
    return all(math.isfinite(v) for v in values)
