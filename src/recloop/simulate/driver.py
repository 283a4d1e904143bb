"""The driver: runs the world against the service on a simulated clock, day by day.

Each day new items and users arrive, tastes drift, and every user starts a random number
of sessions (a Poisson draw around their activity rate). A session asks for lists until the
user leaves; with search on (``DriverConfig.search``), search sessions are interleaved with
them: a user types a query, the client asks for suggestions as they type, and the search's
outcome goes back as events (``search.py``). Each list's response goes back as events, some
of them late and some twice, as mobile clients do. Events are stamped by their clients'
clocks (``clocks.py``), and an offline client's session may reach the service hours after
it happened. Users are split
between variants (each a surface of the service) by a hash of their id, and every figure is
kept per day and per variant, beside the same figures of the world's own best lists for the
same requests (the oracle).
"""

from __future__ import annotations

import hashlib
import heapq
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.simulate.behaviour import Behaviour, ListTruth, Session
from recloop.simulate.clients import ServiceClient, Suggested
from recloop.simulate.clocks import ClientClockConfig, ClientClocks
from recloop.simulate.search import (
    SEARCH_COUNTS,
    Episode,
    MostPopularCompletion,
    SearchBehaviour,
    SearchConfig,
    SearchDayStats,
    TypingState,
    query_key,
    search_rates,
    typing_times,
)
from recloop.simulate.world import SimUser, World


class DriverConfig(BaseModel):
    """How the driver runs the world."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: int = Field(default=7, ge=1)
    list_size: int = Field(default=10, ge=1, le=100)
    variants: dict[str, str] = Field(
        default_factory=lambda: {"home": "home"},
        description="variant name -> surface it is served from",
    )
    late_share: float = Field(default=0.03, ge=0, le=1)
    duplicate_share: float = Field(default=0.02, ge=0, le=1)
    new_item_hours: float = Field(default=48.0, gt=0)
    salt: str = "recloop-sim"
    experiment_surface: str | None = Field(
        default=None,
        description="Ask this surface for every user and file each list under the variant "
        "the service assigned (an experiment runs there); otherwise the driver splits users "
        "between the variants' surfaces itself.",
    )
    clients: ClientClockConfig = Field(
        default_factory=ClientClockConfig,
        description="Client clocks and late uploads; by default every client is on time.",
    )
    search: SearchConfig | None = Field(
        default=None,
        description="Search sessions with query suggestions; None (the default) runs none, "
        "and the item sessions are exactly those of a run without search.",
    )


@dataclass
class DayStats:
    """One variant's figures for one simulated day."""

    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    satisfied: int = 0
    likes: int = 0
    hides: int = 0
    skips: int = 0
    fallbacks: int = 0
    expected_clicks: float = 0.0
    expected_satisfied: float = 0.0
    oracle_clicks: float = 0.0
    oracle_satisfied: float = 0.0
    new_item_impressions: int = 0
    diversity_sum: float = 0.0
    diversity_lists: int = 0
    served_items: set[str] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)
    catalog_size: int = 0

    def summary(self) -> dict[str, float]:
        """The day's rates (per served impression) and service figures."""
        impressions = max(1, self.impressions)
        latencies = sorted(self.latencies_ms) or [0.0]
        return {
            "requests": self.requests,
            "impressions": self.impressions,
            "ctr": self.clicks / impressions,
            "true_ctr": self.expected_clicks / impressions,
            "satisfaction": self.satisfied / impressions,
            "true_satisfaction": self.expected_satisfied / impressions,
            "oracle_true_ctr": self.oracle_clicks / impressions,
            "oracle_true_satisfaction": self.oracle_satisfied / impressions,
            "like_rate": self.likes / impressions,
            "hide_rate": self.hides / impressions,
            "coverage": len(self.served_items) / max(1, self.catalog_size),
            "diversity": self.diversity_sum / max(1, self.diversity_lists),
            "new_item_share": self.new_item_impressions / impressions,
            "fallback_share": self.fallbacks / max(1, self.requests),
            "latency_p50_ms": statistics.median(latencies),
            "latency_p99_ms": latencies[
                min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))
            ],
        }


@dataclass
class SimulationResult:
    """Everything a run measured: per day and variant, and the shapes of its logs."""

    days: list[datetime]
    variants: list[str]
    per_day: dict[str, list[dict[str, float]]]
    clicks_per_item: Counter[str]
    events_per_user: Counter[str]
    impressions_by_position: list[int]
    clicks_by_position: list[int]
    events_sent: int
    late_events: int
    duplicate_events: int
    bots: int
    late_uploads: int = 0
    """Sessions whose events reached the service only after the client came back online."""
    per_user: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """variant -> user -> summed figures (``USER_FIGURES``), people only."""
    search_per_day: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """Suggestion variant (as the service named it) -> per day: the search counts and
    rates (``search.search_rates``); empty when search was off."""

    def search_totals(self, variant: str) -> dict[str, float]:
        """The search figures of one suggestion variant over the whole run."""
        days = self.search_per_day[variant]
        counts = {k: sum(d[k] for d in days) for k in SEARCH_COUNTS}
        out = {**counts, **search_rates(counts)}
        for k in ("latency_p50_ms", "latency_p99_ms"):
            with_lists = [d[k] for d in days if d["lists"]]
            out[k] = statistics.fmean(with_lists) if with_lists else 0.0
        return out

    def totals(self, variant: str) -> dict[str, float]:
        """Impression-weighted figures over the whole run for one variant."""
        days = self.per_day[variant]
        impressions = sum(d["impressions"] for d in days) or 1
        weighted = (
            "ctr",
            "true_ctr",
            "satisfaction",
            "true_satisfaction",
            "oracle_true_ctr",
            "oracle_true_satisfaction",
            "like_rate",
            "hide_rate",
            "new_item_share",
        )
        out = {k: sum(d[k] * d["impressions"] for d in days) / impressions for k in weighted}
        out["requests"] = sum(d["requests"] for d in days)
        out["impressions"] = sum(d["impressions"] for d in days)
        for k in ("coverage", "diversity", "latency_p50_ms", "latency_p99_ms", "fallback_share"):
            out[k] = statistics.fmean(d[k] for d in days)
        return out


USER_FIGURES = (
    "requests",
    "impressions",
    "clicks",
    "satisfied",
    "hides",
    "expected_clicks",
    "expected_satisfied",
    "oracle_clicks",
    "oracle_satisfied",
)


def assign_variant(user_id: str, variants: list[str], salt: str) -> str:
    """A stable variant for a user: a hash of (salt, user id), never a random draw."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return variants[int.from_bytes(digest[:8], "big") % len(variants)]


def _intra_list_diversity(vectors: np.ndarray) -> float:
    """Mean pairwise (1 - cosine) between the items of one list."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float((n * n - sims.sum()) / (n * (n - 1)))


class Simulation:
    """Runs a world against a service.

    Args:
        world: the users and items.
        behaviour: how users respond.
        client: how the service is reached.
        config: days, list size, variants, late and duplicate shares.
        on_night: called after each simulated day (the offline jobs of that night).
        on_day: called with (day, sessions planned) when a day starts.
        on_session: called after every session.
        on_clock: called with the simulated time before every request.
        on_served: called with the session and request id of every served list, before the
            user responds to it.
        on_deliver: called with the world's time at which the next write (items, users,
            events) reaches the service, before it is made.
        on_suggested: called with the typing state and the list of every suggestion
            request, before the user looks at it (search on).
    """

    def __init__(
        self,
        world: World,
        behaviour: Behaviour,
        client: ServiceClient,
        config: DriverConfig,
        *,
        on_night: Callable[[int], None] = lambda day: None,
        on_day: Callable[[int, int], None] = lambda day, sessions: None,
        on_session: Callable[[], None] = lambda: None,
        on_clock: Callable[[datetime], None] = lambda now: None,
        on_served: Callable[[Session, str], None] = lambda session, request_id: None,
        on_deliver: Callable[[datetime], None] = lambda at: None,
        on_suggested: Callable[[TypingState, Suggested], None] = lambda state, served: None,
    ) -> None:
        self.world = world
        self.behaviour = behaviour
        self.client = client
        self.config = config
        self._on_night = on_night
        self._on_day = on_day
        self._on_session = on_session
        self._on_clock = on_clock
        self._on_served = on_served
        self._on_deliver = on_deliver
        self._clocks = ClientClocks(config.clients, world.config.seed)
        self._now = world.start  # the world's time of the latest request or arrival
        # Sessions held by offline clients: (release time, session number, events).
        self._uploads: list[tuple[datetime, int, list[dict[str, Any]]]] = []
        self._late_uploads = 0
        self._late: list[dict[str, Any]] = []
        self._events_sent = self._late_count = self._duplicate_count = 0
        self._clicks_per_item: Counter[str] = Counter()
        self._events_per_user: Counter[str] = Counter()
        self._impressions_by_position = [0] * config.list_size
        self._clicks_by_position = [0] * config.list_size
        self._session_count = 0
        self._per_user: dict[str, dict[str, dict[str, float]]] = {}
        self._on_suggested = on_suggested
        # Search draws from streams of its own, so that with search off nothing above moves.
        self.search = (
            SearchBehaviour(world, behaviour.config, config.search) if config.search else None
        )
        self.baseline = MostPopularCompletion()
        self._search_count = 0
        self._search_per_day: dict[str, list[dict[str, float]]] = {}

    def run(self) -> SimulationResult:
        """Simulate every day and return the measurements."""
        world, config = self.world, self.config
        variants = list(config.variants)
        self._on_deliver(world.start)
        self.client.put_items([item.as_json() for item in world.items])
        for user in world.users:
            self.client.put_user(user.user_id, user.attributes())
        self._on_night(-1)
        per_day: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        self._per_user = {v: {} for v in variants}
        days: list[datetime] = []
        for day in range(config.days):
            day_start = world.start + timedelta(days=day)
            days.append(day_start)
            self._on_clock(day_start)
            self._now = day_start
            new_items, new_users = world.advance_day(day_start)
            self._on_deliver(day_start)
            if new_items:
                self.client.put_items([item.as_json() for item in new_items])
            for user in new_users:
                self.client.put_user(user.user_id, user.attributes())
            stats = {v: DayStats() for v in variants}
            sessions = self._schedule(day_start)
            searches = self._search_schedule(day, day_start)
            search_stats: dict[str, SearchDayStats] = {}
            self._on_day(day, len(sessions) + len(searches))
            # Item sessions (kind 0) and search sessions (kind 1) in order of their start.
            for started_at, _, kind, user in sorted(
                [(t, u.user_id, 0, u) for t, u in sessions]
                + [(t, u.user_id, 1, u) for t, u in searches],
                key=lambda s: s[:3],
            ):
                self._release_uploads(started_at)
                if kind == 0:
                    variant = assign_variant(user.user_id, variants, config.salt)
                    self._run_session(user, started_at, variant, stats)
                else:
                    self._run_search(user, started_at, search_stats)
                self._on_session()
            self._release_uploads(day_start + timedelta(days=1))
            self._flush_late()
            catalog = sum(
                1 for item in world.items if item.published_at <= day_start + timedelta(days=1)
            )
            for variant in variants:
                stats[variant].catalog_size = catalog
                per_day[variant].append(stats[variant].summary())
            if self.search is not None:
                self._close_search_day(day, search_stats)
            self._on_night(day)
        # Sessions still offline at the end arrive after the last night, for a complete log.
        self._release_uploads(None)
        return SimulationResult(
            days=days,
            variants=variants,
            per_day=per_day,
            clicks_per_item=self._clicks_per_item,
            events_per_user=self._events_per_user,
            impressions_by_position=self._impressions_by_position,
            clicks_by_position=self._clicks_by_position,
            events_sent=self._events_sent,
            late_events=self._late_count,
            duplicate_events=self._duplicate_count,
            bots=sum(1 for u in world.users if u.is_bot),
            per_user=self._per_user,
            late_uploads=self._late_uploads,
            search_per_day=self._search_per_day,
        )

    def _schedule(self, day_start: datetime) -> list[tuple[datetime, SimUser]]:
        rng = self.world.rng
        sessions: list[tuple[datetime, SimUser]] = []
        for user in self.world.users:
            if user.joined_at > day_start + timedelta(days=1):
                continue
            for _ in range(int(rng.poisson(user.sessions_per_day))):
                earliest = max(0.0, (user.joined_at - day_start).total_seconds())
                offset = float(rng.uniform(earliest, 86_400.0))
                sessions.append((day_start + timedelta(seconds=offset), user))
        sessions.sort(key=lambda s: (s[0], s[1].user_id))
        return sessions

    def _run_session(
        self, user: SimUser, started_at: datetime, variant: str, stats: dict[str, DayStats]
    ) -> None:
        config = self.config
        self._session_count += 1
        rng = self.world.session_rng(self._session_count)
        session = Session(f"s{self._session_count:08d}", user, started_at, rng=rng)
        now = started_at
        surface = config.experiment_surface or config.variants[variant]
        delay = self._clocks.upload_delay(self._session_count)
        held: list[dict[str, Any]] | None = [] if delay is not None else None
        organic = self.behaviour.organic(session, now)
        if organic:
            self._send(organic, held)
            self._count(user, organic)
        while True:
            self._on_clock(now)
            self._now = now
            served = self.client.recommend(
                user.user_id, surface, config.list_size, session.session_id, user.device
            )
            if config.experiment_surface is not None:
                variant = served.variant
                if variant not in stats:
                    raise RuntimeError(
                        f"the service assigned variant {variant!r}, not one of {sorted(stats)}"
                    )
            truth = self.behaviour.truth(session, served.item_ids)
            oracle = (0.0, 0.0) if user.is_bot else self._oracle(session, len(served.item_ids), now)
            # Before the user responds: an observer judges other lists in the same state.
            self._on_served(session, served.request_id)
            response = self.behaviour.respond(
                session, served.item_ids, request_id=served.request_id, surface=surface, now=now
            )
            # Bots' events go to the service like anyone's, but the figures are about people.
            if not user.is_bot:
                self._record(
                    stats[variant],
                    served.item_ids,
                    served.latency_ms,
                    served.fallback,
                    truth,
                    oracle,
                    response,
                    now,
                )
                self._record_user(
                    variant, user.user_id, len(served.item_ids), truth, oracle, response
                )
            self._send(response.events, held)
            self._count(user, response.events)
            if response.leaves or not served.item_ids:
                break
            now += timedelta(seconds=float(20 + 15 * len(response.clicks) + rng.exponential(20)))
        if held is not None and delay is not None:
            # The client was offline: the whole session goes up when it is back.
            heapq.heappush(self._uploads, (now + delay, self._session_count, held))
            self._late_uploads += 1

    def _search_schedule(self, day: int, day_start: datetime) -> list[tuple[datetime, SimUser]]:
        """Search sessions: Poisson(activity x ``searches_per_session``) per person a day,
        at uniform times, from a generator of their own (bots do not search)."""
        if self.search is None:
            return []
        rate = self.search.config.searches_per_session
        rng = np.random.default_rng([self.world.config.seed, 3, day])
        searches: list[tuple[datetime, SimUser]] = []
        for user in self.world.users:
            if user.is_bot or user.joined_at > day_start + timedelta(days=1):
                continue
            for _ in range(int(rng.poisson(user.sessions_per_day * rate))):
                earliest = max(0.0, (user.joined_at - day_start).total_seconds())
                offset = float(rng.uniform(earliest, 86_400.0))
                searches.append((day_start + timedelta(seconds=offset), user))
        return searches

    def _run_search(
        self, user: SimUser, started_at: datetime, stats: dict[str, SearchDayStats]
    ) -> None:
        """One search session: an intent typed with suggestions, submitted, then engaged
        with, reformulated within seconds, or abandoned. Suggestions need the network, so
        these sessions are never held by an offline client."""
        search = self.search
        assert search is not None
        c = search.config
        self._search_count += 1
        rng = np.random.default_rng([self.world.config.seed, 5, self._search_count])
        session_id = f"q{self._search_count:08d}"
        episode = search.draw_episode(user, session_id, started_at, rng)
        variant: str | None = None
        tried: list[str] = []
        reformulations = 0
        while episode is not None:
            times = typing_times(episode, c, rng)
            submitted, typed_chars = episode.typed, len(episode.typed)
            request_id: str | None = None
            position: int | None = None
            for state in search.states(episode):
                at = episode.started_at + timedelta(seconds=float(times[state.typed_chars]))
                self._on_clock(at)
                self._now = at
                served = self.client.suggest(
                    user.user_id,
                    state.prefix,
                    locale=user.locale,
                    session_id=session_id,
                    limit=c.list_size,
                    surface=c.surface,
                )
                # A session's figures go to the variant its first list was served from.
                variant = variant or served.variant
                day = stats.setdefault(variant, SearchDayStats())
                self._judge_suggestions(day, state, served)
                self._on_suggested(state, served)
                choice = search.choose(state, served.queries, rng)
                if choice.clicked is not None:
                    day.add("clicks")
                    submitted, typed_chars = served.queries[choice.clicked], state.typed_chars
                    request_id, position = served.request_id, choice.clicked
                    break
            day = stats.setdefault(variant or "default", SearchDayStats())
            at = episode.started_at + timedelta(seconds=float(times[typed_chars]) + 0.5)
            events, success = self._submit(
                episode, submitted, typed_chars, request_id, position, at, rng, day
            )
            self._send(events)
            self._count(user, events)
            if success:
                day.add("sessions")
                return
            tried += [episode.intent, query_key(submitted)]
            if reformulations >= c.max_reformulations or rng.random() >= c.reformulate_probability:
                day.add("sessions")
                day.add("abandoned")
                return
            episode = self._reformulate(episode, submitted, tried, at, rng)
            if episode is None:  # nothing else to try for that item
                day.add("sessions")
                day.add("abandoned")
            else:
                reformulations += 1
                day.add("reformulations")

    def _reformulate(
        self,
        episode: Episode,
        submitted: str,
        tried: list[str],
        at: datetime,
        rng: np.random.Generator,
    ) -> Episode | None:
        """The next search after a failure, within seconds: the intent itself, carefully
        typed, when what was submitted was not it (a typo, another suggestion); else
        another query for the same item."""
        search = self.search
        assert search is not None
        low, high = search.config.reformulate_after_s
        start = at + timedelta(seconds=float(rng.uniform(low, high)))
        meant, had_typo = search.corrected(submitted)
        if had_typo or meant != episode.intent:
            return Episode(
                episode.user,
                episode.session_id,
                episode.intent,
                episode.intent,
                episode.kind,
                episode.target,
                start,
            )
        return search.draw_episode(
            episode.user, episode.session_id, start, rng, target=episode.target, avoid=tried
        )

    def _submit(
        self,
        episode: Episode,
        submitted: str,
        typed_chars: int,
        request_id: str | None,
        position: int | None,
        at: datetime,
        rng: np.random.Generator,
        day: SearchDayStats,
    ) -> tuple[list[dict[str, Any]], bool]:
        """The search event, the world's verdict on its results, and the engagement of a
        success (a click and a satisfied view of a result, on surface ``search``)."""
        search = self.search
        assert search is not None
        user = episode.user
        event: dict[str, Any] = {
            "eventId": f"{rng.integers(1 << 62):016x}",
            "userId": user.user_id,
            "eventType": "search",
            "query": submitted,
            "surface": "search",
            "sessionId": episode.session_id,
            "device": user.device,
            "eventTs": at.isoformat(),
            "context": {"prefix": episode.typed[:typed_chars]},
        }
        if request_id is not None and position is not None:
            event["requestId"] = request_id
            event["position"] = position
        events = [event]
        self.baseline.add(submitted)
        key = query_key(submitted)
        p_success = search.success_probability(episode, submitted)
        day.add("searches")
        day.add("expected_success", p_success)
        day.add("query_chars", len(key))
        day.add("typed_chars", typed_chars)
        if request_id is not None:
            day.add("from_suggestion")
            day.add("saved_chars", max(0, len(key) - typed_chars))
        success = bool(rng.random() < p_success)
        engaged = search.engaged_item(episode, submitted, rng) if success else None
        if engaged is None:
            return events, False
        day.add("successes")
        item_id, rank = engaged
        user.seen[item_id] = user.seen.get(item_id, 0) + 1
        clicked_at = at + timedelta(seconds=float(rng.uniform(2.0, 10.0)))
        dwell = round(float(rng.uniform(30_000, 300_000)))
        for event_type, offset, value in (("click", 0, None), ("view", 1, dwell)):
            engagement: dict[str, Any] = {
                "eventId": f"{rng.integers(1 << 62):016x}",
                "userId": user.user_id,
                "itemId": item_id,
                "eventType": event_type,
                "surface": "search",
                "sessionId": episode.session_id,
                "device": user.device,
                "position": rank,
                "eventTs": (clicked_at + timedelta(seconds=offset)).isoformat(),
            }
            if value is not None:
                engagement["value"] = value
            events.append(engagement)
        return events, True

    def _judge_suggestions(
        self, day: SearchDayStats, state: TypingState, served: Suggested
    ) -> None:
        """The served list's truth beside most-popular-completion's and the world's best
        lists', all in the state the served list met."""
        search = self.search
        assert search is not None
        k = search.config.list_size
        day.add("lists")
        day.add("fallbacks", float(served.fallback))
        day.add("empty_lists", float(not served.queries))
        day.latencies_ms.append(served.latency_ms)
        truth = search.truth(state, served.queries)
        baseline = self.baseline.complete(state.prefix, k)
        base = search.truth(state, baseline)
        best_click, best_success = search.best_lists(state, k, against=[served.queries, baseline])
        by_click = search.truth(state, best_click)
        day.add("expected_clicks", truth.ctr)
        day.add("baseline_clicks", base.ctr)
        day.add("oracle_clicks", by_click.ctr)
        day.add("success_value", truth.expected_success)
        day.add("baseline_success_value", base.expected_success)
        day.add("oracle_success_value", search.truth(state, best_success).expected_success)
        day.add("expected_saved", truth.expected_saved)
        day.add("baseline_saved", base.expected_saved)
        day.add("oracle_saved", by_click.expected_saved)

    def _close_search_day(self, day: int, stats: dict[str, SearchDayStats]) -> None:
        """File the day's search figures; a variant first seen today gets zeros before."""
        for variant in stats:
            if variant not in self._search_per_day:
                self._search_per_day[variant] = [SearchDayStats().summary() for _ in range(day)]
        for variant, days in self._search_per_day.items():
            days.append(stats.get(variant, SearchDayStats()).summary())

    def _oracle(self, session: Session, k: int, now: datetime) -> tuple[float, float]:
        """Expected clicks and satisfied clicks of the world's best lists for this request,
        judged in the state the served list met."""
        best_click, best_satisfied = self.behaviour.best_lists(session, k, now)
        return (
            self.behaviour.truth(session, best_click).expected_clicks,
            float(self.behaviour.truth(session, best_satisfied).satisfaction.sum()),
        )

    def _count(self, user: SimUser, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._events_per_user[user.user_id] += 1
            if event["eventType"] == "click":
                self._clicks_per_item[event["itemId"]] += 1

    def _record(
        self,
        stats: DayStats,
        item_ids: list[str],
        latency_ms: float,
        fallback: bool,
        truth: ListTruth,
        oracle: tuple[float, float],
        response: Any,
        now: datetime,
    ) -> None:
        world = self.world
        stats.requests += 1
        stats.impressions += len(item_ids)
        stats.clicks += len(response.clicks)
        stats.satisfied += response.satisfied
        stats.likes += response.likes
        stats.hides += response.hides
        stats.skips += response.skips
        stats.fallbacks += fallback
        stats.latencies_ms.append(latency_ms)
        stats.expected_clicks += truth.expected_clicks
        stats.expected_satisfied += float(truth.satisfaction.sum())
        stats.oracle_clicks += oracle[0]
        stats.oracle_satisfied += oracle[1]
        stats.served_items.update(item_ids)
        fresh = timedelta(hours=self.config.new_item_hours)
        stats.new_item_impressions += sum(
            1 for i in item_ids if now - world.item_by_id[i].published_at <= fresh
        )
        if item_ids:
            stats.diversity_sum += _intra_list_diversity(world.item_matrix(item_ids))
            stats.diversity_lists += 1
        for position in range(min(len(item_ids), self.config.list_size)):
            self._impressions_by_position[position] += 1
        for position in response.clicks:
            self._clicks_by_position[position] += 1

    def _record_user(
        self,
        variant: str,
        user_id: str,
        shown: int,
        truth: ListTruth,
        oracle: tuple[float, float],
        response: Any,
    ) -> None:
        figures = self._per_user[variant].setdefault(user_id, dict.fromkeys(USER_FIGURES, 0.0))
        figures["requests"] += 1
        figures["impressions"] += shown
        figures["clicks"] += len(response.clicks)
        figures["satisfied"] += response.satisfied
        figures["hides"] += response.hides
        figures["expected_clicks"] += truth.expected_clicks
        figures["expected_satisfied"] += float(truth.satisfaction.sum())
        figures["oracle_clicks"] += oracle[0]
        figures["oracle_satisfied"] += oracle[1]

    def _send(self, events: list[dict[str, Any]], held: list[dict[str, Any]] | None = None) -> None:
        if held is not None:
            held.extend(events)
            return
        rng = self.world.delivery_rng
        now_batch: list[dict[str, Any]] = []
        for event in events:
            if rng.random() < self.config.late_share:
                self._late.append(event)
                self._late_count += 1
                continue
            now_batch.append(event)
            if rng.random() < self.config.duplicate_share:
                # A mobile client that did not hear the 202 sends the same event again.
                self._late.append(event)
                self._duplicate_count += 1
        if len(self._late) >= 200:
            now_batch.extend(self._late)
            self._late = []
        if now_batch:
            self._post(now_batch)

    def _flush_late(self) -> None:
        if self._late:
            self._post(self._late)
            self._late = []

    def _release_uploads(self, until: datetime | None) -> None:
        """Send the held sessions due by ``until`` (all of them with None)."""
        while self._uploads and (until is None or self._uploads[0][0] <= until):
            at, _, events = heapq.heappop(self._uploads)
            self._now = max(self._now, at)
            self._post(events, at)

    def _post(self, events: list[dict[str, Any]], at: datetime | None = None) -> None:
        """Send events as their clients stamped them; they arrive at the world's ``at``, or
        as soon as the last of them has happened."""
        if at is None:
            last = max(datetime.fromisoformat(e["eventTs"]) for e in events)
            at = max(self._now, last)
        if not self.config.clients.synced:
            events = [self._stamped(e) for e in events]
        self._on_deliver(at)
        self.client.post_events(events)
        self._events_sent += len(events)

    def _stamped(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event as its client's clock stamps it (a copy: a duplicate is the same dict)."""
        offset = self._clocks.offset(event["userId"])
        if not offset:
            return event
        at = datetime.fromisoformat(event["eventTs"]) + offset
        return {**event, "eventTs": at.isoformat()}
