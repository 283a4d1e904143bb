"""The suggestion service: one request in, one logged list of queries out.

The pipeline, stage by stage (each traced; ``debug=true`` returns the trace and the rules'
audit):

1. **model**: the app's trained suggestion model (loaded with its model version), or the
   cold model built from the store (traced ``cold``; the response says ``cold: true``),
   and the live overlay of the searches received since its cut-off
   (``serving.suggest_live``), when it counts from that model's cut-off.
2. **context**: the user's latest searches from the store (strongly consistent, like the
   item history); for ``feed``, the categories of the items they engaged with; for
   ``related``, the anchor item.
3. **sources** by mode (``suggest.sources``): typed text → prefix, the overlay's queries
   that enough users searched since the cut-off, word-start, typo tolerance when few
   match, the user's and the session's matching searches; no text →
   the session's and the user's searches, the co-click walk from their last searches,
   trending, popular; ``related`` → the item's co-clicked queries and its catalog queries;
   ``feed`` → the user's categories' queries, their searches, trending, popular. An
   optional source not started within ``budget_ms`` is skipped (traced ``timeout``,
   ``fallback: true``); the mode's main source (prefix; popular; the item's; the
   categories' and popular) always runs, and a cold model's first build does not count.
   A ``related`` or ``feed`` list with nothing to serve falls back to trending and popular.
4. **rank**: the transparent score (``suggest.scoring``); the overlay's counts add to the
   model's.
5. **rules** (``suggest.rules``): safety, k-anonymity, minimum length, zero-result,
   near-duplicates, over the overlay's queries as over the model's; never skipped.
6. **explore**: epsilon-greedy (``explore.policies``) over the queries just below the list,
   with a propensity for every position.
7. **log**: the list is queued for ``recommendation_log`` under surface ``suggest``,
   ``suggest:related`` or ``suggest:feed``, each query in place of an item id, so a search
   event carrying the ``requestId`` and ``position`` joins the suggestion it came from.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from recloop.config import SuggestionSettings
from recloop.domain import (
    CONSUMING_EVENTS,
    Item,
    RecommendationRecord,
    RequestContext,
    ScoredItem,
    Slate,
    served_items,
)
from recloop.errors import InvalidInput
from recloop.experiments.assignment import Assigner
from recloop.explore.policies import EpsilonGreedy, EpsilonGreedyConfig
from recloop.monitoring.metrics import Metrics
from recloop.serving.budget import StageTrace, Stopwatch
from recloop.serving.suggest_cold import ColdSuggestions
from recloop.serving.suggest_live import LiveSearches
from recloop.store.protocols import Catalog, EventLog, SearchRecord
from recloop.store.writer import StoreWriter
from recloop.suggest.blocklist import SafetyFilters
from recloop.suggest.live import LiveQueries
from recloop.suggest.model import SuggestionModel, SuggestionModels
from recloop.suggest.normalize import match_key, normalize, validate_query
from recloop.suggest.rules import Filtered, QueryRule, RuleContext, default_rules
from recloop.suggest.scoring import ScoredQuery, score_candidates
from recloop.suggest.sources import (
    QueryCandidate,
    category_candidates,
    item_candidates,
    item_catalog_candidates,
    live_candidates,
    personal_candidates,
    popular_candidates,
    prefix_candidates,
    related_candidates,
    trending_candidates,
    typo_candidates,
    word_candidates,
)

#: Surfaces of the suggestion API, and the surface their lists are logged under.
SURFACES: Mapping[str, str] = {
    "suggest": "suggest",
    "related": "suggest:related",
    "feed": "suggest:feed",
}
_CONSUMING = sorted(t.value for t in CONSUMING_EVENTS)
#: Engaged items read for the feed's categories, and the categories it uses.
FEED_HISTORY = 50
FEED_CATEGORIES = 3
#: Searches (session's first) the co-click walk starts from.
RELATED_SEEDS = 3
#: Shortest typed text that typo tolerance is tried for.
TYPO_MIN_CHARS = 4
# A source of the plan: it sees the candidates of the sources before it.
_Source = Callable[[list[QueryCandidate]], list[QueryCandidate]]


@dataclass(frozen=True, slots=True)
class SuggestionRequest:
    """What a client asked for."""

    user_id: str
    prefix: str | None = None
    locale: str | None = None
    session_id: str | None = None
    limit: int = 10
    surface: str = "suggest"
    item_id: str | None = None
    explain: bool = False  # every safety reason in the audit (debug), not only the first


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One served query."""

    query: str
    score: float
    reason: str
    source: str
    sources: tuple[str, ...] = ()
    features: Mapping[str, float] = field(default_factory=dict)
    propensity: float = 1.0


@dataclass(frozen=True, slots=True)
class Suggestions:
    """A served list of queries and how it was made."""

    request_id: str
    suggestions: tuple[Suggestion, ...]
    model_version: str
    experiment: str | None
    variant: str
    fallback: bool
    cold: bool
    trace: tuple[StageTrace, ...]
    filtered: tuple[Filtered, ...]
    latency_ms: float
    prefix: str  # the typed text, normalized


def typed_key(prefix: str | None, locale: str | None) -> tuple[str, str]:
    """The normalized prefix and its match key; a trailing space in what was typed is kept
    on the key, so a finished word matches only itself ("shoe " does not find "shoes").

    Raises:
        InvalidInput: naming ``prefix``: too long before or after normalization.
    """
    if not prefix or not normalize(prefix, locale):
        return "", ""
    # The rules of a stored query: too long before or after normalization is refused.
    normalized = validate_query(prefix, locale, field="prefix")
    key = match_key(normalized)
    if key and prefix[-1:].isspace():
        key += " "
    return normalized, key


def _matches(candidate: QueryCandidate, key: str) -> QueryCandidate | None:
    """``candidate`` when its query starts with ``key`` or has a word that does (with its
    match kind set), else None."""
    if not key:
        return candidate
    if candidate.key.startswith(key):
        return QueryCandidate(
            candidate.key, candidate.display, candidate.source, candidate.score, "prefix"
        )
    if f" {key}" in f" {candidate.key}":
        return QueryCandidate(
            candidate.key, candidate.display, candidate.source, candidate.score, "word"
        )
    return None


class Suggester:
    """Runs the suggestion pipeline (see the module docstring).

    Args:
        settings: the ``[suggestions]`` section.
        models: the trained models, published by the model loader with their version.
        cold: the cold state's models, for apps without a trained one.
        safety: each app's compiled safety filter (policy plus admin blocklist).
        events: read for the user's searches and engagement history.
        catalog: read for the anchor item and the history's categories.
        writer: where served lists are queued for the recommendation log.
        metrics: where requests and stage outcomes are counted.
        assigner: assigns users to experiments on the suggestion surfaces.
        request_ids: makes request ids (exploration draws are seeded by them).
        live: each app's overlay of the searches since its model's cut-off (None: off).
    """

    def __init__(
        self,
        settings: SuggestionSettings,
        *,
        models: SuggestionModels,
        cold: ColdSuggestions,
        safety: SafetyFilters,
        events: EventLog,
        catalog: Catalog,
        writer: StoreWriter,
        metrics: Metrics,
        assigner: Assigner | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        request_ids: Callable[[], str] | None = None,
        live: LiveSearches | None = None,
    ) -> None:
        self.settings = settings
        self.live = live
        self.models = models
        self.cold = cold
        self.safety = safety
        self._events = events
        self._catalog = catalog
        self._writer = writer
        self._metrics = metrics
        self._assigner = assigner or Assigner([])
        self._clock = clock
        self._request_ids = request_ids or (lambda: uuid.uuid4().hex)
        self._explore = EpsilonGreedy(
            EpsilonGreedyConfig(
                epsilon=settings.exploration_epsilon, pool=settings.exploration_pool
            )
        )

    def suggest(self, app_id: str, request: SuggestionRequest) -> Suggestions:
        """Serve one list of suggested queries.

        Raises:
            InvalidInput: an unknown surface, ``related`` without an ``itemId``, a prefix
                that is too long, or a limit outside 1-50.
        """
        watch = Stopwatch()
        settings = self.settings
        if request.surface not in SURFACES:
            raise InvalidInput(
                "surface",
                f"unknown suggestion surface {request.surface!r}; known: " + ", ".join(SURFACES),
            )
        if request.surface == "related" and request.item_id is None:
            raise InvalidInput("itemId", "required for surface 'related'")
        if not 1 <= request.limit <= 50:
            raise InvalidInput("limit", "must be from 1 to 50")
        prefix, key = typed_key(request.prefix, request.locale)
        now = self._clock()
        trace: list[StageTrace] = []

        stage = Stopwatch()
        build_ms = 0.0  # a cold model's first build is not the request's own work
        model = self.models.get(app_id)
        cold = model is None
        if model is None:
            model = self.cold.get(app_id)
            build_ms = stage.ms()
            trace.append(
                StageTrace(
                    "model",
                    stage.ms(),
                    "cold",
                    "no trained suggestion model: catalog and recent searches "
                    f"({len(model)} queries)",
                )
            )
        else:
            trace.append(
                StageTrace("model", stage.ms(), "ok", f"{model.version} ({len(model)} queries)")
            )
        live = self._live(app_id, model)

        stage = Stopwatch()
        searches: list[SearchRecord] = (
            self._events.recent_searches(app_id, request.user_id, settings.recent_searches)
            if settings.recent_searches
            else []
        )
        categories = self._categories(app_id, request.user_id) if request.surface == "feed" else []
        item = (
            self._catalog.get_item(app_id, request.item_id)
            if request.surface == "related" and request.item_id is not None
            else None
        )
        trace.append(
            StageTrace(
                "context",
                stage.ms(),
                "ok",
                f"{len(searches)} searches, {len(categories)} categories"
                + (
                    f", item {'found' if item else 'unknown'}"
                    if request.surface == "related"
                    else ""
                ),
            )
        )

        # Each source recalls the list and the exploration pool, and a margin for the rules.
        need = request.limit + settings.exploration_pool
        ask = need + 10
        candidates: list[QueryCandidate] = []
        fallback = False
        plan = self._plan(request, model, live, key, searches, categories, item, ask)
        for name, run, required in plan:
            if not required and watch.ms() - build_ms > settings.budget_ms:
                trace.append(
                    StageTrace(f"source:{name}", 0.0, "timeout", "past the request's budget")
                )
                fallback = True
                continue
            stage = Stopwatch()
            found = run(candidates)
            if key and request.surface != "suggest":
                found = [m for m in (_matches(c, key) for c in found) if m is not None]
            candidates.extend(found)
            trace.append(
                StageTrace(
                    f"source:{name}",
                    stage.ms(),
                    "ok" if found else "empty",
                    f"{len(found)} queries",
                )
            )
        if not candidates and request.surface != "suggest":
            # Nothing about this item or user yet: what everyone searches, said as a fallback.
            stage = Stopwatch()
            found = trending_candidates(model, ask) + popular_candidates(model, ask)
            if key:
                found = [m for m in (_matches(c, key) for c in found) if m is not None]
            candidates.extend(found)
            fallback = True
            trace.append(
                StageTrace("source:fallback", stage.ms(), "fallback", f"{len(found)} queries")
            )

        stage = Stopwatch()
        scored = score_candidates(candidates, model, settings.weights, live)
        trace.append(
            StageTrace(
                "rank",
                stage.ms(),
                "ok",
                f"{len(scored)} queries scored"
                + (f", {len(live)} live queries since the model" if live is not None else ""),
            )
        )

        kept, filtered = self._apply_rules(app_id, scored, model, live, request, need, trace)

        stage = Stopwatch()
        by_display = {q.display: q for q in kept}
        ctx = RequestContext(
            app_id=app_id,
            request_id=self._request_ids(),
            surface=SURFACES[request.surface],
            user_id=request.user_id,
            now=now,
            session_id=request.session_id,
            locale=request.locale,
        )
        slate = Slate(
            tuple(
                ScoredItem(q.display, q.score, q.source, q.reason, q.sources)
                for q in kept[: request.limit + settings.exploration_pool]
            )
        )
        served = self._explore.explore(slate, ctx, request.limit)
        trace.append(
            StageTrace("explore", stage.ms(), "ok", f"epsilon {settings.exploration_epsilon:g}")
        )
        suggestions = tuple(
            Suggestion(
                query=s.item_id,
                score=s.score,
                reason=s.reason,
                source=s.source,
                sources=s.sources,
                features=by_display[s.item_id].features,
                propensity=s.propensity,
            )
            for s in served.items
        )
        assignment = self._assigner.assign(request.user_id, ctx.surface, now)
        result = Suggestions(
            request_id=ctx.request_id,
            suggestions=suggestions,
            model_version="suggestions:" + model.version,
            experiment=assignment.experiment,
            variant=assignment.variant,
            fallback=fallback,
            cold=cold,
            trace=tuple(trace),
            filtered=tuple(filtered),
            latency_ms=watch.ms(),
            prefix=prefix,
        )
        self._log(ctx, result, served.items)
        return result

    def _live(self, app_id: str, model: SuggestionModel) -> LiveQueries | None:
        """The app's overlay when it counts from this model's cut-off. Just after a swap,
        until the follower's next step, it still counts from the last model's: the model
        then serves alone rather than count searches twice."""
        overlay = self.live.get(app_id) if self.live is not None else None
        if overlay is None or overlay.since != model.built_at:
            return None
        return overlay

    def _plan(
        self,
        request: SuggestionRequest,
        model: SuggestionModel,
        live: LiveQueries | None,
        key: str,
        searches: list[SearchRecord],
        categories: list[tuple[str, float]],
        item: Item | None,
        ask: int,
    ) -> list[tuple[str, _Source, bool]]:
        """The sources of this request, in order, each with whether it runs past the budget
        (the mode's main source always does); each sees what came before it."""
        session = request.session_id

        def personal(_: list[QueryCandidate]) -> list[QueryCandidate]:
            return personal_candidates(searches, key, session, ask)

        if request.surface == "related":
            assert request.item_id is not None
            item_id = request.item_id
            return [
                ("item", lambda _: item_candidates(model, item_id, ask), True),
                ("catalog", lambda _: item_catalog_candidates(model, item) if item else [], True),
            ]
        if request.surface == "feed":
            return [
                ("categories", lambda _: category_candidates(model, categories, ask), True),
                ("personal", personal, False),
                ("trending", lambda _: trending_candidates(model, ask), False),
                ("popular", lambda _: popular_candidates(model, ask), True),
            ]
        if key:

            def typo(before: list[QueryCandidate]) -> list[QueryCandidate]:
                matched = {c.key for c in before if c.source in ("prefix", "words")}
                if len(matched) >= self.settings.typo_below or len(key) < TYPO_MIN_CHARS:
                    return []
                return typo_candidates(model, key, ask)

            typed: list[tuple[str, _Source, bool]] = [
                ("prefix", lambda _: prefix_candidates(model, key, ask), True)
            ]
            if live is not None:
                overlay = live
                typed.append(("live", lambda _: live_candidates(overlay, key, ask), False))
            if len(key) >= self.settings.word_min_chars:
                typed.append(("words", lambda _: word_candidates(model, key, ask), False))
            return [
                *typed,
                ("typo", typo, False),
                ("personal", personal, False),
            ]

        def related(_: list[QueryCandidate]) -> list[QueryCandidate]:
            ordered = sorted(searches, key=lambda s: s.session_id != session or session is None)
            seeds = list(dict.fromkeys(match_key(s.query) for s in ordered))[:RELATED_SEEDS]
            return related_candidates(model, seeds, ask)

        return [
            ("personal", personal, False),
            ("related", related, False),
            ("trending", lambda _: trending_candidates(model, ask), False),
            ("popular", lambda _: popular_candidates(model, ask), True),
        ]

    def _categories(self, app_id: str, user_id: str) -> list[tuple[str, float]]:
        """The user's top categories among their latest engaged items, with their shares."""
        engaged = self._events.engagement_history(app_id, user_id, _CONSUMING)
        recent = list(dict.fromkeys(item_id for item_id, _ in engaged))[:FEED_HISTORY]
        if not recent:
            return []
        entries = self._catalog.active_entries(app_id, recent)
        counts = Counter(e.category for e in entries.values() if e.category)
        total = sum(counts.values())
        return [(c, n / total) for c, n in counts.most_common(FEED_CATEGORIES)]

    def _apply_rules(
        self,
        app_id: str,
        scored: list[ScoredQuery],
        model: SuggestionModel,
        live: LiveQueries | None,
        request: SuggestionRequest,
        need: int,
        trace: list[StageTrace],
    ) -> tuple[list[ScoredQuery], list[Filtered]]:
        """The rules over the head of the scored list (twice what is served and explored),
        or over all of it when the head keeps too few."""
        rules: tuple[QueryRule, ...] = default_rules(
            self.safety.get(app_id),
            min_users=self.settings.min_users,
            min_chars=self.settings.min_query_chars,
        )
        ctx = RuleContext(request.locale, model, explain=request.explain, live=live)

        def judge(
            queries: list[ScoredQuery],
        ) -> tuple[list[ScoredQuery], list[Filtered], list[StageTrace]]:
            kept, filtered, stages = queries, [], []
            for rule in rules:
                stage = Stopwatch()
                kept, out = rule.apply(kept, ctx)
                filtered.extend(out)
                stages.append(
                    StageTrace(f"rule:{rule.name}", stage.ms(), "ok", f"{len(out)} filtered")
                )
            return kept, filtered, stages

        kept, filtered, stages = judge(scored[: 2 * need])
        if len(kept) < need < len(scored):
            kept, filtered, stages = judge(scored)
        trace.extend(stages)
        return kept, filtered

    def _log(
        self, ctx: RequestContext, result: Suggestions, served: tuple[ScoredItem, ...]
    ) -> None:
        self._writer.log_recommendation(
            RecommendationRecord(
                app_id=ctx.app_id,
                request_id=ctx.request_id,
                user_id=ctx.user_id,
                surface=ctx.surface,
                served_at=ctx.now,
                items=served_items(served),
                model_version=result.model_version,
                experiment=result.experiment,
                variant=result.variant,
                fallback=result.fallback,
                latency_ms=result.latency_ms,
                session_id=ctx.session_id,
            )
        )
        metrics = self._metrics
        metrics.recommendations.labels(ctx.app_id, ctx.surface, str(result.fallback).lower()).inc()
        if result.cold:
            metrics.cold_recommendations.labels(ctx.app_id, ctx.surface).inc()
        metrics.request_seconds.labels(ctx.app_id, ctx.surface).observe(result.latency_ms / 1000.0)
        for stage in result.trace:
            metrics.stage_outcomes.labels(
                ctx.app_id, stage.stage.split(":", 1)[0], stage.outcome
            ).inc()
