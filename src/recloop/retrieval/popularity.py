"""Popularity and trending counts per app, kept current from the event log.

``PopularityModel`` follows the model habit: ``update(events)`` and ``apply_catalog(changes)``
fold new data in (off the request path, from a background refresher), and ``snapshot()``
publishes an immutable ``PopularitySnapshot`` that request threads read without locks.

Besides engagement counts it keeps each item's impressions and clicks: the click-rate list
ranks items by how often they are clicked *when shown*, which engagement counts cannot
tell (an item shown everywhere collects clicks however dull it is). Raw rates of items
shown a handful of times are noise, so each is shrunk toward the catalog's rate by an
empirical-Bayes Beta prior fitted to the counts themselves (``click_rates``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import ENGAGEMENT_WEIGHTS, EventRecord, EventType
from recloop.store.protocols import CatalogChange

#: Bounds of the prior's strength, in impressions: at least one, and never so strong that
#: thousands of impressions could not move an item off the catalog's rate.
MIN_PRIOR_IMPRESSIONS = 1.0
MAX_PRIOR_IMPRESSIONS = 1_000.0
#: The events the click-rate list counts: impressions and clicks.
_RATE_EVENTS = frozenset({EventType.IMPRESSION, EventType.CLICK})

#: A ranked list: item ids best first, and their scores.
Ranked = tuple[tuple[str, ...], tuple[float, ...]]
_EMPTY: Ranked = ((), ())


class PopularityConfig(BaseModel):
    """How events count toward popularity and trending."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[EventType, float] = Field(default_factory=lambda: dict(ENGAGEMENT_WEIGHTS))
    half_life_hours: float = Field(default=24.0, gt=0)
    top_n: int = Field(default=1000, ge=1)


@dataclass(frozen=True)
class PopularitySnapshot:
    """Ranked lists of active catalog items, overall and per category, as of one refresh."""

    popular: Ranked = _EMPTY
    trending: Ranked = _EMPTY
    newest: Ranked = _EMPTY
    click_rate: Ranked = _EMPTY
    popular_by_category: Mapping[str, Ranked] = field(default_factory=dict)
    trending_by_category: Mapping[str, Ranked] = field(default_factory=dict)
    newest_by_category: Mapping[str, Ranked] = field(default_factory=dict)
    click_rate_by_category: Mapping[str, Ranked] = field(default_factory=dict)
    category_of: Mapping[str, str] = field(default_factory=dict)
    creator_of: Mapping[str, str] = field(default_factory=dict)
    created_of: Mapping[str, float] = field(default_factory=dict)  # seconds since the epoch
    events_seen: int = 0
    active_items: int = 0  # the catalog's active items (coverage's denominator)

    def ranked(self, kind: str, category: str | None) -> Ranked:
        """The ``popular``, ``trending``, ``newest`` or ``click-rate`` list, within one
        category when given."""
        if category is None:
            return {
                "popular": self.popular,
                "trending": self.trending,
                "newest": self.newest,
                "click-rate": self.click_rate,
            }[kind]
        by_category = {
            "popular": self.popular_by_category,
            "trending": self.trending_by_category,
            "newest": self.newest_by_category,
            "click-rate": self.click_rate_by_category,
        }[kind]
        return by_category.get(category, _EMPTY)


class PopularityModel:
    """Weighted all-time counts and exponentially decayed (trending) counts for one app.

    Only active items known to the catalog are ranked: an item nobody can be served is
    not worth a slot in the top lists. Serving still checks status per request.
    """

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._counts = np.zeros(0, dtype=np.float64)
        self._trend = np.zeros(0, dtype=np.float64)
        self._shown = np.zeros(0, dtype=np.float64)
        self._clicked = np.zeros(0, dtype=np.float64)
        # Trending scores are stored relative to a reference time and rescaled when it moves,
        # so folding in an event never touches the other items.
        self._ref_ts: float | None = None
        self._category: dict[str, str] = {}
        self._creator: dict[str, str] = {}
        self._created: dict[str, float] = {}
        self._active: set[str] = set()
        self._events_seen = 0
        self._dirty = True

    def _slot(self, item_id: str) -> int:
        slot = self._index.get(item_id)
        if slot is None:
            slot = len(self._ids)
            self._index[item_id] = slot
            self._ids.append(item_id)
            if slot >= len(self._counts):
                grow = max(1024, len(self._counts))
                self._counts = np.concatenate([self._counts, np.zeros(grow)])
                self._trend = np.concatenate([self._trend, np.zeros(grow)])
                self._shown = np.concatenate([self._shown, np.zeros(grow)])
                self._clicked = np.concatenate([self._clicked, np.zeros(grow)])
        return slot

    def update(self, events: Iterable[EventRecord]) -> None:
        """Fold new events in."""
        weights = self.config.weights
        half_life_s = self.config.half_life_hours * 3600.0
        for event in events:
            self._events_seen += 1
            if event.item_id is not None and event.event_type in _RATE_EVENTS:
                slot = self._slot(event.item_id)
                if event.event_type == EventType.IMPRESSION:
                    self._shown[slot] += 1.0
                else:
                    self._clicked[slot] += 1.0
                self._dirty = True
            weight = weights.get(event.event_type, 0.0)
            if weight <= 0.0 or event.item_id is None:
                continue
            ts = event.event_ts.timestamp()
            if self._ref_ts is None:
                self._ref_ts = ts
            exponent = (ts - self._ref_ts) / half_life_s
            if exponent > 500.0:
                # Move the reference forward before 2**exponent overflows a float.
                self._trend *= 2.0 ** (-exponent)
                self._ref_ts = ts
                exponent = 0.0
            slot = self._slot(event.item_id)
            self._counts[slot] += weight
            self._trend[slot] += weight * 2.0**exponent
            self._dirty = True

    def apply_catalog(self, changes: Iterable[CatalogChange]) -> None:
        """Follow items' categories and statuses."""
        for change in changes:
            if change.category is None:
                self._category.pop(change.item_id, None)
            else:
                self._category[change.item_id] = change.category
            if change.creator_id is None:
                self._creator.pop(change.item_id, None)
            else:
                self._creator[change.item_id] = change.creator_id
            if change.created_at is not None:
                self._created[change.item_id] = change.created_at.timestamp()
                self._slot(change.item_id)
            if change.is_active:
                self._active.add(change.item_id)
            else:
                self._active.discard(change.item_id)
            self._dirty = True

    def is_dirty(self) -> bool:
        """Whether anything changed since the last snapshot."""
        return self._dirty

    def snapshot(self, now: datetime) -> PopularitySnapshot:
        """Publish ranked lists of the active items as of ``now``."""
        self._dirty = False
        n = len(self._ids)
        ids = np.array(self._ids, dtype=object)
        active = np.fromiter((i in self._active for i in self._ids), dtype=bool, count=n)
        counts = self._counts[:n]
        trend = self._trend[:n]
        if self._ref_ts is not None:
            half_life_s = self.config.half_life_hours * 3600.0
            trend = trend * 2.0 ** ((self._ref_ts - now.timestamp()) / half_life_s)
        categories = np.array([self._category.get(i, "") for i in self._ids], dtype=object)
        eligible = active & (counts > 0)
        # Newest: 1 / (1 + age in days), so that the score falls smoothly with age.
        created = np.array([self._created.get(i, np.nan) for i in self._ids], dtype=np.float64)
        age_days = np.maximum(0.0, (now.timestamp() - created) / 86_400.0)
        recency = np.where(np.isnan(created), 0.0, 1.0 / (1.0 + np.nan_to_num(age_days)))
        is_new = active & ~np.isnan(created)
        # Only items with logged impressions have a rate: clicks alone (an imported history,
        # a client that sends no impressions) say nothing of how often they were passed over.
        shown = self._shown[:n]
        rates = click_rates(shown, self._clicked[:n])
        rated = active & (shown > 0)
        top_n = self.config.top_n
        popular_by: dict[str, Ranked] = {}
        trending_by: dict[str, Ranked] = {}
        newest_by: dict[str, Ranked] = {}
        rate_by: dict[str, Ranked] = {}
        for category in set(categories[active].tolist()) - {""}:
            in_category = categories == category
            popular_by[category] = _top(ids, counts, eligible & in_category, top_n)
            trending_by[category] = _top(ids, trend, eligible & in_category, top_n)
            newest_by[category] = _top(ids, recency, is_new & in_category, top_n)
            rate_by[category] = _top(ids, rates, rated & in_category, top_n)
        return PopularitySnapshot(
            popular=_top(ids, counts, eligible, top_n),
            trending=_top(ids, trend, eligible, top_n),
            newest=_top(ids, recency, is_new, top_n),
            click_rate=_top(ids, rates, rated, top_n),
            popular_by_category=popular_by,
            trending_by_category=trending_by,
            newest_by_category=newest_by,
            click_rate_by_category=rate_by,
            category_of=dict(self._category),
            creator_of=dict(self._creator),
            created_of=dict(self._created),
            events_seen=self._events_seen,
            active_items=int(active.sum()),
        )


def click_rates(shown: np.ndarray, clicked: np.ndarray) -> np.ndarray:
    """Each item's click-through rate, shrunk toward the catalog's by an empirical-Bayes prior.

    The prior is a Beta with the catalog's pooled rate ``m`` as its mean and a strength of
    ``n0`` impressions, fitted by the method of moments: the spread of the items' raw rates,
    less the spread that binomial noise alone would give them, is the spread of their true
    rates ``tau**2``, and ``n0 = m (1 - m) / tau**2 - 1``. Each item's estimate is then
    ``(clicks + n0 m) / (impressions + n0)``: items shown a few times stay near ``m``, items
    shown often earn their own rate. Items never shown get ``m``; an item's clicks are
    capped at its impressions.
    """
    shown = np.asarray(shown, dtype=np.float64)
    clicked = np.minimum(np.asarray(clicked, dtype=np.float64), shown)
    seen = shown > 0
    total = float(shown[seen].sum())
    if total <= 0:
        return np.zeros(len(shown))
    m = min(max(float(clicked[seen].sum()) / total, 1e-6), 1 - 1e-6)
    n = shown[seen]
    raw = clicked[seen] / n
    # Under the Beta-binomial, E[sum n_i (p_i - m)^2] is about tau^2 sum n_i + (items - 1)
    # m (1 - m) when items are shown many times each (exactly, tau^2 (sum n_i - items) + ...).
    spread = float(np.sum(n * (raw - m) ** 2)) - (len(n) - 1) * m * (1 - m)
    tau2 = spread / total
    if tau2 <= 0:
        strength = MAX_PRIOR_IMPRESSIONS
    else:
        strength = min(max(m * (1 - m) / tau2 - 1, MIN_PRIOR_IMPRESSIONS), MAX_PRIOR_IMPRESSIONS)
    out: np.ndarray = (clicked + strength * m) / (shown + strength)
    return out


def _top(ids: np.ndarray, scores: np.ndarray, mask: np.ndarray, n: int) -> Ranked:
    candidates = np.flatnonzero(mask)
    if candidates.size == 0:
        return _EMPTY
    values = scores[candidates]
    if candidates.size > n:
        # The n-th best score; every item above it is in, ties at it go to the smallest ids,
        # so the cut is as reproducible as the order.
        threshold = -np.partition(-values, n - 1)[n - 1]
        above = np.flatnonzero(values > threshold)
        ties = np.flatnonzero(values == threshold)
        ties = ties[np.argsort(ids[candidates[ties]].astype(str), kind="stable")]
        keep = np.concatenate([above, ties[: n - above.size]])
        candidates, values = candidates[keep], values[keep]
    # Ties broken by item id so that equal scores give a stable, reproducible order.
    order = np.lexsort((ids[candidates].astype(str), -values))
    return (
        tuple(ids[candidates[order]].tolist()),
        tuple(float(v) for v in values[order]),
    )


class PopularityIndex:
    """The current snapshot of every app; swapped atomically by the refresher."""

    def __init__(self) -> None:
        self._snapshots: dict[str, PopularitySnapshot] = {}

    def get(self, app_id: str) -> PopularitySnapshot | None:
        """The app's latest snapshot, or None before the first refresh."""
        return self._snapshots.get(app_id)

    def apps(self) -> list[str]:
        """The apps with a snapshot."""
        return sorted(self._snapshots)

    def publish(self, app_id: str, snapshot: PopularitySnapshot) -> None:
        """Replace the app's snapshot."""
        self._snapshots = {**self._snapshots, app_id: snapshot}
