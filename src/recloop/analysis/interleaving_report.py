"""An interleaving experiment's report, read from the served lists and their clicks.

Every served list of the experiment logs, per item, the variant (team) whose ranking
contributed it, or the shared top that neither did. Clicks carrying the list's request id
are credited to the clicked items' teams; per list the team with more clicks wins, and the
preference over users is ``interleaving.aggregate``'s: Chapelle's delta with a delta-method
interval over users and a sign test of users preferring A against users preferring B.
Users who click like bots (the training data's rule) are left out, as in the A/B report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recloop.analysis.interleaving import Credit, InterleavingResult, aggregate
from recloop.analysis.outcomes import app_events, served_lists, variant_in
from recloop.analysis.stats import DEFAULT_ALPHA
from recloop.config import CleaningConfig, ExperimentConfig
from recloop.domain import EventType
from recloop.experiments.assignment import INTERLEAVED
from recloop.store.protocols import EventLog, RecommendationLog


@dataclass(frozen=True, slots=True)
class InterleavingReport:
    """The preference between an interleaving experiment's two variants."""

    experiment: str
    surface: str
    team_a: str
    team_b: str
    lists: int
    slots: dict[str, int]  # items shown per team, and "shared"
    clicks: dict[str, int]  # clicks credited per team, and "shared"
    result: InterleavingResult | None
    first_served: datetime | None
    last_served: datetime | None
    notes: tuple[str, ...]

    @property
    def winner(self) -> str | None:
        """The preferred variant when the preference is significant."""
        if self.result is None or self.result.winner is None:
            return None
        return self.team_a if self.result.winner.value == "A" else self.team_b

    def to_dict(self) -> dict[str, Any]:
        """As JSON types."""
        return {
            "experiment": self.experiment,
            "kind": "interleave",
            "surface": self.surface,
            "teams": {"A": self.team_a, "B": self.team_b},
            "lists": self.lists,
            "slots": self.slots,
            "clicks": self.clicks,
            "result": self.result.to_dict() if self.result is not None else None,
            "winner": self.winner,
            "firstServed": self.first_served.isoformat() if self.first_served else None,
            "lastServed": self.last_served.isoformat() if self.last_served else None,
            "notes": list(self.notes),
        }


def read_interleaving_report(
    config: ExperimentConfig,
    rec_log: RecommendationLog,
    events: EventLog,
    app_id: str,
    *,
    alpha: float = DEFAULT_ALPHA,
    cleaning: CleaningConfig | None = None,
) -> InterleavingReport:
    """Credit every interleaved list's clicks to its teams and test the preference."""
    team_a, team_b = (v.name for v in config.variants)
    teams: dict[str, tuple[str, tuple[str | None, ...], tuple[str, ...]]] = {}
    first: datetime | None = None
    last: datetime | None = None
    slots = {team_a: 0, team_b: 0, "shared": 0}
    for record in served_lists(rec_log, app_id, config.start):
        if variant_in(record, config.name) != INTERLEAVED:
            continue
        if (config.start is not None and record.served_at < config.start) or (
            config.stop is not None and record.served_at >= config.stop
        ):
            continue
        first = record.served_at if first is None else min(first, record.served_at)
        last = record.served_at if last is None else max(last, record.served_at)
        labels = tuple(i.team or None for i in record.items)
        teams[record.request_id] = (
            record.user_id,
            labels,
            tuple(i.item_id for i in record.items),
        )
        for label in labels:
            slots[label or "shared"] = slots.get(label or "shared", 0) + 1
    clicked: dict[str, set[int]] = defaultdict(set)
    for event in app_events(events, app_id, config.start):
        if event.event_type is not EventType.CLICK or event.request_id not in teams:
            continue
        items = teams[event.request_id][2]
        if event.item_id in items:
            clicked[event.request_id].add(items.index(event.item_id))
    rules = cleaning or CleaningConfig()
    per_user: dict[str, list[Credit]] = defaultdict(list)
    shown: dict[str, int] = defaultdict(int)
    clicks = {team_a: 0, team_b: 0, "shared": 0}
    for request_id, (user, labels, _) in teams.items():
        positions = clicked.get(request_id, set())
        counts = {team_a: 0, team_b: 0, "shared": 0}
        for position in positions:
            counts[labels[position] or "shared"] += 1
        per_user[user].append(Credit(counts[team_a], counts[team_b], counts["shared"]))
        shown[user] += len(labels)
    bots = {
        user
        for user, lists in per_user.items()
        if (n := sum(c.clicks_a + c.clicks_b + c.shared_clicks for c in lists))
        >= rules.bot_min_clicks
        and n > rules.bot_max_ctr * shown[user]
    }
    notes = []
    if bots:
        notes.append(f"{len(bots)} users left out as bots (they click nearly everything served)")
    kept = {u: c for u, c in per_user.items() if u not in bots}
    for lists in kept.values():
        for c in lists:
            clicks[team_a] += c.clicks_a
            clicks[team_b] += c.clicks_b
            clicks["shared"] += c.shared_clicks
    result = aggregate(kept, alpha=alpha) if kept else None
    if result is not None and result.users_prefer_a + result.users_prefer_b == 0:
        notes.append("no user prefers either variant yet (no clicks on either team's items)")
    return InterleavingReport(
        experiment=config.name,
        surface=config.surface,
        team_a=team_a,
        team_b=team_b,
        lists=len(teams),
        slots=slots,
        clicks=clicks,
        result=result,
        first_served=first,
        last_served=last,
        notes=tuple(notes),
    )
