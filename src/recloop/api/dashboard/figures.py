"""The Overview's figures, read from what the service already keeps: this process's
Prometheus registry, the store's counts, and the recommendation log joined to its events.

Nothing here is estimated or made up: a figure the service does not measure is returned as
None, and the page says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from recloop.analysis.histograms import histogram_quantile
from recloop.analysis.outcomes import HIDE_EVENTS, app_events, served_lists
from recloop.config import LabelRules
from recloop.domain import EventType
from recloop.store import Store
from recloop.store.schema import users as users_table

#: The most rows a "last minute" count reads before it says "at least".
RATE_CAP = 100_000


@dataclass(frozen=True, slots=True)
class Quantiles:
    """p50 and p99 of one histogram series (seconds), from its cumulative buckets."""

    name: str
    count: int
    p50_s: float | None
    p99_s: float | None


def histogram_quantiles(metrics_text: str, family: str, label: str) -> list[Quantiles] | None:
    """p50/p99 of each series of a Prometheus histogram, by the value of ``label`` (other
    labels summed), or None when the registry has no such histogram.

    As Prometheus' ``histogram_quantile`` does: linear within the bucket the rank falls in;
    a rank past the last finite bound answers that bound.
    """
    found = False
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for metric in text_string_to_metric_families(metrics_text):
        if metric.name != family or metric.type != "histogram":
            continue
        found = True
        for sample in metric.samples:
            if sample.name != f"{family}_bucket":
                continue
            bound = float(sample.labels["le"])
            buckets[sample.labels.get(label, "")][bound] += sample.value
    if not found:
        return None
    out = []
    for name, cumulative in sorted(buckets.items()):
        bounds = sorted(cumulative)
        total = cumulative[bounds[-1]] if bounds else 0.0
        out.append(
            Quantiles(
                name,
                int(total),
                histogram_quantile(cumulative, 0.5),
                histogram_quantile(cumulative, 0.99),
            )
        )
    return out


def _counter_samples(metrics_text: str, family: str) -> list[tuple[dict[str, str], float]] | None:
    """A counter's ``_total`` samples, each with its labels (None: no such counter)."""
    samples = None
    for metric in text_string_to_metric_families(metrics_text):
        if metric.name != family:
            continue
        samples = samples or []
        samples += [(s.labels, s.value) for s in metric.samples if s.name == f"{family}_total"]
    return samples


def counter_totals(metrics_text: str, family: str, label: str) -> dict[str, float] | None:
    """A counter's total by the value of ``label`` (None: no such counter)."""
    samples = _counter_samples(metrics_text, family)
    if samples is None:
        return None
    totals: dict[str, float] = defaultdict(float)
    for labels, value in samples:
        totals[labels.get(label, "")] += value
    return dict(totals)


def counter_table(
    metrics_text: str, family: str, row: str, column: str
) -> dict[str, dict[str, float]] | None:
    """A counter's totals by two labels, ``{row value: {column value: total}}`` (None: no
    such counter)."""
    samples = _counter_samples(metrics_text, family)
    if samples is None:
        return None
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in samples:
        table[labels.get(row, "")][labels.get(column, "")] += value
    return {k: dict(v) for k, v in table.items()}


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample of an exported metric, its labels written out."""

    name: str
    labels: str
    value: float


def samples_named(metrics_text: str, part: str) -> list[Sample]:
    """Every gauge or counter sample whose metric's name contains ``part`` (histogram
    buckets left out), in the registry's order."""
    out = []
    for metric in text_string_to_metric_families(metrics_text):
        if part not in metric.name or metric.type == "histogram":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            labels = ", ".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "app")
            out.append(Sample(sample.name, labels, sample.value))
    return out


@dataclass(frozen=True, slots=True)
class Counts:
    """The app's size: items, user profiles, stored events."""

    items: int
    user_profiles: int
    events: int


def store_counts(store: Store, app_id: str) -> Counts:
    """Catalog items, user profiles and events of the app."""
    with store.engine.connect() as conn:
        profiles = conn.execute(
            sa.select(sa.func.count()).where(users_table.c.app_id == app_id)
        ).scalar_one()
    return Counts(store.catalog.count_items(app_id), int(profiles), store.events.count(app_id))


@dataclass(frozen=True, slots=True)
class Rate:
    """Rows in a window, per second; ``capped`` when the count stopped at ``RATE_CAP``."""

    count: int
    window_s: float
    capped: bool

    @property
    def per_s(self) -> float:
        """The rate."""
        return self.count / self.window_s


def recent_rates(store: Store, app_id: str, now: datetime, window_s: float) -> tuple[Rate, Rate]:
    """Events received and lists served in the last ``window_s``, from the store (every
    process's, not only this one's)."""
    since = now - timedelta(seconds=window_s)
    events = _count_pages(
        lambda after: [
            seq
            for seq, _ in store.events.scan(
                int(after or 0), 5000, app_id=app_id, received_since=since
            )
        ]
    )
    lists = _count_pages(
        lambda after: [
            r.request_id
            for r in store.rec_log.scan(
                None if after is None else str(after), 5000, app_id=app_id, served_since=since
            )
        ]
    )
    return (
        Rate(events[0], window_s, events[1]),
        Rate(lists[0], window_s, lists[1]),
    )


def _count_pages(page: Callable[[int | str | None], Sequence[int | str]]) -> tuple[int, bool]:
    """Rows counted page by page (each page's last key starts the next), up to the cap."""
    count = 0
    after: int | str | None = None
    while count < RATE_CAP:
        keys = page(after)
        if not keys:
            return count, False
        count += len(keys)
        after = keys[-1]
    return count, True


@dataclass
class SurfaceDay:
    """One surface's lists on one day, and what users did with them."""

    lists: int = 0
    impressions: int = 0
    fallbacks: int = 0
    clicks: int = 0
    satisfied: int = 0
    hides: int = 0

    @property
    def ctr(self) -> float | None:
        """Clicked impressions over impressions."""
        return self.clicks / self.impressions if self.impressions else None

    @property
    def satisfaction(self) -> float | None:
        """Satisfied impressions over impressions."""
        return self.satisfied / self.impressions if self.impressions else None

    @property
    def fallback_rate(self) -> float | None:
        """Lists served with a fallback over lists."""
        return self.fallbacks / self.lists if self.lists else None


@dataclass
class Activity:
    """Per surface and UTC day: the served lists of the window and their outcomes."""

    days: list[str]
    surfaces: dict[str, dict[str, SurfaceDay]] = field(default_factory=dict)
    users: int = 0

    def series(self, surface: str, figure: str) -> list[float]:
        """One figure of a surface per day (NaN on a day with nothing served)."""
        by_day = self.surfaces.get(surface, {})
        values = []
        for day in self.days:
            value = getattr(by_day[day], figure) if day in by_day else None
            values.append(math.nan if value is None else float(value))
        return values

    def totals(self, surface: str) -> SurfaceDay:
        """A surface's figures summed over the window."""
        out = SurfaceDay()
        for day in self.surfaces.get(surface, {}).values():
            out.lists += day.lists
            out.impressions += day.impressions
            out.fallbacks += day.fallbacks
            out.clicks += day.clicks
            out.satisfied += day.satisfied
            out.hides += day.hides
        return out


def read_activity(
    store: Store, app_id: str, now: datetime, days: int, rules: LabelRules
) -> Activity:
    """The last ``days`` UTC days of served lists, each joined to the events that name it
    (by ``requestId`` and item), counted as the experiment reports count them: an impression
    is clicked, satisfied or hidden at most once."""
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    labels = [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days)]
    activity = Activity(labels)
    lists: dict[str, tuple[SurfaceDay, frozenset[str]]] = {}
    users: set[str] = set()
    for record in served_lists(store.rec_log, app_id, start):
        day = record.served_at.strftime("%Y-%m-%d")
        cell = activity.surfaces.setdefault(record.surface, {}).setdefault(day, SurfaceDay())
        cell.lists += 1
        cell.impressions += len(record.items)
        cell.fallbacks += record.fallback
        users.add(record.user_id)
        lists[record.request_id] = (cell, frozenset(i.item_id for i in record.items))
    activity.users = len(users)
    positive = frozenset(rules.positive_events)
    seen: dict[str, set[tuple[str, str]]] = {"clicks": set(), "satisfied": set(), "hides": set()}
    for event in app_events(store.events, app_id, start):
        if event.request_id is None or event.item_id is None:
            continue
        served = lists.get(event.request_id)
        if served is None or event.item_id not in served[1]:
            continue
        kind = event.event_type
        if kind is EventType.CLICK:
            figure = "clicks"
        elif kind.value in positive or (
            kind is EventType.VIEW
            and event.value is not None
            and event.value >= rules.view_positive_min_ms
        ):
            figure = "satisfied"
        elif kind in HIDE_EVENTS:
            figure = "hides"
        else:
            continue
        impression = (event.request_id, event.item_id)
        if impression not in seen[figure]:
            seen[figure].add(impression)
            cell = served[0]
            setattr(cell, figure, getattr(cell, figure) + 1)
    return activity


def active_days(activity: Activity) -> list[str]:
    """The window's days from the first with a list served to the last (the charts' x axis:
    a quiet day between is kept, and shows as a gap)."""
    active = [
        i
        for i, day in enumerate(activity.days)
        if any(day in by_day for by_day in activity.surfaces.values())
    ]
    return activity.days[active[0] : active[-1] + 1] if active else []


def finite(values: Iterable[float]) -> bool:
    """Whether any value is a number (a chart of nothing but gaps is not drawn)."""
    return any(math.isfinite(v) for v in values)
