"""What each user of an experiment was served and did, read back from the logs.

The unit of analysis is the user, because users are what is randomised: per variant, each
user's served lists, served items (impressions), clicks, satisfied clicks and hides are
summed, so ratio metrics (CTR = clicks / impressions) are analysed over users with the
delta method rather than over impressions as if they were independent. Request latencies
and the distinct items served are kept per variant for the guardrails.

Events count toward a list when they carry its ``requestId`` and name one of its items;
events without one are not attributed (the simulator and the SDK examples always send it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from recloop.config import LabelRules
from recloop.domain import Event, EventType, RecommendationRecord
from recloop.store.protocols import EventLog, RecommendationLog

_PAGE = 5000
HIDE_EVENTS = frozenset({EventType.HIDE, EventType.NOT_INTERESTED, EventType.REPORT})
UNIT_FIGURES = ("requests", "impressions", "clicks", "satisfied", "hides", "fallbacks")


@dataclass
class VariantOutcomes:
    """One variant's figures: per user sums, request latencies, the items it served."""

    users: dict[str, dict[str, float]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    served_items: set[str] = field(default_factory=set)
    fallbacks: int = 0
    user_items: dict[str, set[str]] = field(default_factory=dict)  # the items each user saw

    def unit(self, user_id: str) -> dict[str, float]:
        """The user's sums, created at zero."""
        found = self.users.get(user_id)
        if found is None:
            found = self.users[user_id] = dict.fromkeys(UNIT_FIGURES, 0.0)
        return found

    def column(self, figure: str) -> list[float]:
        """One figure for every user, in a stable (user id) order."""
        return [self.users[u][figure] for u in sorted(self.users)]


@dataclass
class ExperimentOutcomes:
    """Every variant's outcomes for one experiment, over the window read."""

    experiment: str
    variants: dict[str, VariantOutcomes]
    first_served: datetime | None
    last_served: datetime | None
    unattributed_events: int


def read_outcomes(
    rec_log: RecommendationLog,
    events: EventLog,
    app_id: str,
    experiment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    rules: LabelRules | None = None,
) -> ExperimentOutcomes:
    """Join the experiment's served lists with the events that came from them."""
    return _read(
        rec_log,
        events,
        app_id,
        experiment,
        lambda record: variant_in(record, experiment),
        since,
        until,
        rules or LabelRules(),
    )


#: The one group ``read_surface_outcomes`` files every list under.
ALL = "all"


def read_surface_outcomes(
    rec_log: RecommendationLog,
    events: EventLog,
    app_id: str,
    surface: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    rules: LabelRules | None = None,
) -> ExperimentOutcomes:
    """Every list served on a surface, whatever its experiment, with its events, filed under
    ``ALL``: the baseline an experiment on the surface would start from."""
    return _read(
        rec_log,
        events,
        app_id,
        surface,
        lambda record: ALL if record.surface == surface else None,
        since,
        until,
        rules or LabelRules(),
    )


def _read(
    rec_log: RecommendationLog,
    events: EventLog,
    app_id: str,
    name: str,
    group_of: Callable[[RecommendationRecord], str | None],
    since: datetime | None,
    until: datetime | None,
    rules: LabelRules,
) -> ExperimentOutcomes:
    variants: dict[str, VariantOutcomes] = {}
    lists: dict[str, tuple[str, str, frozenset[str]]] = {}  # request -> (variant, user, items)
    first: datetime | None = None
    last: datetime | None = None
    for record in served_lists(rec_log, app_id, since):
        variant = group_of(record)
        if variant is None:
            continue
        if (since is not None and record.served_at < since) or (
            until is not None and record.served_at >= until
        ):
            continue
        first = record.served_at if first is None else min(first, record.served_at)
        last = record.served_at if last is None else max(last, record.served_at)
        outcomes = variants.setdefault(variant, VariantOutcomes())
        unit = outcomes.unit(record.user_id)
        unit["requests"] += 1
        unit["impressions"] += len(record.items)
        outcomes.latencies_ms.append(record.latency_ms)
        outcomes.fallbacks += record.fallback
        unit["fallbacks"] += record.fallback
        items = frozenset(i.item_id for i in record.items)
        outcomes.served_items.update(items)
        outcomes.user_items.setdefault(record.user_id, set()).update(items)
        lists[record.request_id] = (variant, record.user_id, items)
    unattributed = 0
    positive = frozenset(rules.positive_events)
    # Each served item counts once per outcome, however many events it drew.
    outcomes_of: dict[str, set[tuple[str, str]]] = {
        "clicks": set(),
        "satisfied": set(),
        "hides": set(),
    }
    for event in app_events(events, app_id, since):
        if event.request_id is None:
            unattributed += 1
            continue
        served = lists.get(event.request_id)
        if served is None or event.item_id is None or event.item_id not in served[2]:
            continue
        kind = event.event_type
        impression = (event.request_id, event.item_id)
        if kind is EventType.CLICK:
            outcomes_of["clicks"].add(impression)
        elif kind.value in positive or (
            kind is EventType.VIEW
            and event.value is not None
            and event.value >= rules.view_positive_min_ms
        ):
            outcomes_of["satisfied"].add(impression)
        elif kind in HIDE_EVENTS:
            outcomes_of["hides"].add(impression)
    for figure, impressions in outcomes_of.items():
        for request_id, _ in impressions:
            variant, user, _ = lists[request_id]
            variants[variant].unit(user)[figure] += 1
    return ExperimentOutcomes(name, variants, first, last, unattributed)


def variant_in(record: RecommendationRecord, experiment: str) -> str | None:
    """The record's variant in ``experiment`` (lists log every experiment they were in)."""
    if record.experiment is None:
        return None
    names = record.experiment.split(",")
    if experiment not in names:
        return None
    variants = record.variant.split(",")
    return variants[names.index(experiment)] if len(variants) == len(names) else None


def served_lists(
    rec_log: RecommendationLog, app_id: str, since: datetime | None = None
) -> Iterator[RecommendationRecord]:
    """Every list served in the app (since ``since``), page by page, in request id order."""
    after: str | None = None
    while True:
        page = rec_log.scan(after, _PAGE, app_id=app_id, served_since=since)
        if not page:
            return
        yield from page
        after = page[-1].request_id


def app_events(events: EventLog, app_id: str, since: datetime | None = None) -> Iterator[Event]:
    """Every event of the app (received since ``since``), page by page, in arrival order.

    An event that comes from a list arrives after the list was served, so the events of
    lists served since a time are among those received since then.
    """
    after = 0
    while True:
        page = events.scan(after, _PAGE, app_id=app_id, received_since=since)
        if not page:
            return
        for _, event in page:
            yield event
        after = page[-1][0]
