"""The recommendation service: one request in, one logged list out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from recloop.domain import (
    CONSUMING_EVENTS,
    RecommendationRecord,
    RequestContext,
    ScoredItem,
    served_items,
)
from recloop.errors import InvalidInput, NotFound
from recloop.experiments.assignment import Assigner, Assignment
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.served import ServedTracker
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.models import MAX_HISTORY
from recloop.serving.budget import StageTrace, Stopwatch
from recloop.serving.interleave import interleave_lists
from recloop.serving.list_metrics import ListMetrics
from recloop.serving.pipeline import Pipeline, ServedSlate
from recloop.serving.response_cache import CachedList, ResponseCache
from recloop.serving.shadow import ShadowRunner
from recloop.store.protocols import Catalog, EventLog, Suppressions, Users
from recloop.store.writer import StoreWriter

_CONSUMING = sorted(t.value for t in CONSUMING_EVENTS)
#: How many of a user's most recent distinct items the sources see.
HISTORY_LEN = MAX_HISTORY
#: How many recent engagements are searched for the current session's items.
SESSION_SCAN = 200


@dataclass(frozen=True, slots=True)
class RecommendationRequest:
    """What a client asked for."""

    user_id: str
    surface: str
    limit: int
    item_id: str | None = None
    category: str | None = None
    exclude_ids: frozenset[str] = frozenset()
    session_id: str | None = None
    device: str | None = None
    locale: str | None = None
    # The trace also names the items each stage recalled, removed or moved (debug=true).
    explain: bool = False


@dataclass(frozen=True, slots=True)
class Recommendations:
    """A served list and how it was made."""

    request_id: str
    items: tuple[ScoredItem, ...]
    model_version: str
    experiment: str | None
    variant: str
    fallback: bool
    trace: tuple[StageTrace, ...]
    latency_ms: float
    cold: bool = False  # a stage had nothing trained yet (a new app); not a failure


class Recommender:
    """Builds the request context, runs the surface's pipeline and logs the served list.

    Args:
        pipelines: one pipeline per surface name.
        requires_item: surfaces that need an anchor ``itemId``.
        events: read for the items a user has consumed (never served to them again).
        suppressions: read for the items a user suppressed.
        writer: where the served list is queued for the recommendation log.
        metrics: where requests and stage outcomes are counted.
        users: read for the attributes of users with fewer than ``cold_history`` items.
        models: the loaded retrieval models, whose version each response names.
        cache: recent lists served again to a repeat request (off unless it has a TTL).
        variants: the pipelines of experiment variants, by ``Assignment.pipeline`` name.
        assigner: assigns users to the experiments running on a surface.
        variant_models: the models of variant pipelines that pin a model version.
        request_ids: makes each request's id (random; a simulation passes a seeded one, since
            exploration draws are seeded by it).
        shadows: runs shadow pipelines on the requests they follow, after the response.
        catalog: read for the anchor ``itemId`` a request names (unknown: 404).
        tracker: counts served lists per surface and variant for online CTR and coverage.
    """

    def __init__(
        self,
        pipelines: Mapping[str, Pipeline],
        requires_item: frozenset[str],
        *,
        events: EventLog,
        suppressions: Suppressions,
        writer: StoreWriter,
        metrics: Metrics,
        users: Users | None = None,
        cold_history: int = 5,
        models: ModelIndex | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache: ResponseCache | None = None,
        variants: Mapping[str, Pipeline] | None = None,
        assigner: Assigner | None = None,
        variant_models: Mapping[str, ModelIndex] | None = None,
        request_ids: Callable[[], str] | None = None,
        shadows: ShadowRunner | None = None,
        catalog: Catalog | None = None,
        tracker: ServedTracker | None = None,
    ) -> None:
        self._pipelines = dict(pipelines)
        self._list_metrics = ListMetrics(metrics, tracker)
        self._catalog = catalog
        self._variants = dict(variants or {})
        self._assigner = assigner or Assigner([])
        self._variant_models = dict(variant_models or {})
        self._request_ids = request_ids or _random_id
        self._requires_item = requires_item
        self._events = events
        self._suppressions = suppressions
        self._writer = writer
        self._metrics = metrics
        self._clock = clock
        self._users = users
        self._cold_history = cold_history
        self._models = models
        self._shadows = shadows
        self.cache = cache if cache is not None else ResponseCache(ttl_s=0.0)

    @property
    def assigner(self) -> Assigner:
        """Who assigns users to experiments (a guard stops experiments through it)."""
        return self._assigner

    @property
    def pipelines(self) -> Mapping[str, Pipeline]:
        """Each surface's pipeline as configured (not an experiment variant's)."""
        return dict(self._pipelines)

    @property
    def surfaces(self) -> list[str]:
        """The surfaces this service serves."""
        return sorted(self._pipelines)

    def recommend(self, app_id: str, request: RecommendationRequest) -> Recommendations:
        """Serve one list.

        Raises:
            InvalidInput: the surface is unknown, or needs an ``itemId`` that is missing.
            NotFound: the request names an ``itemId`` the catalog does not hold.
        """
        watch = Stopwatch()
        pipeline = self._pipelines.get(request.surface)
        if pipeline is None:
            raise InvalidInput(
                "surface", f"unknown surface {request.surface!r}; known: {', '.join(self.surfaces)}"
            )
        if request.surface in self._requires_item and request.item_id is None:
            raise InvalidInput("itemId", f"required for surface {request.surface!r}")
        if (
            request.item_id is not None
            and self._catalog is not None
            and self._catalog.get_item(app_id, request.item_id) is None
        ):
            raise NotFound("itemId", f"no item {request.item_id!r}")
        assignment = self._assigner.assign(request.user_id, request.surface, self._clock())
        pipeline = self._variants.get(assignment.pipeline, pipeline)
        # An explained request shares the plain one's cached list (its trace then says
        # "cache": the list was not made again).
        key = (
            app_id,
            replace(request, explain=False) if request.explain else request,
            assignment.pipeline,
        )
        cached = self.cache.get(key, time.monotonic())
        if self.cache.enabled:
            self._metrics.response_cache.labels(
                app_id, request.surface, "miss" if cached is None else "hit"
            ).inc()
        if cached is not None:
            return self._serve_cached(app_id, request, cached, watch, assignment)
        engaged = self._events.engagement_history(app_id, request.user_id, _CONSUMING)
        history = tuple(dict.fromkeys(item_id for item_id, _ in engaged))[:HISTORY_LEN]
        session_items: tuple[str, ...] = ()
        if request.session_id is not None:
            session_items = tuple(
                dict.fromkeys(i for i, s in engaged[:SESSION_SCAN] if s == request.session_id)
            )
        attributes = None
        if len(history) < self._cold_history and self._users is not None:
            # Cold-start sources lean on what the user told us; an established user's
            # history says more, so the lookup is skipped for them.
            user = self._users.get_user(app_id, request.user_id)
            attributes = dict(user.attributes) if user is not None else {}
        excluded = set(request.exclude_ids)
        excluded.update(item_id for item_id, _ in engaged)
        excluded |= self._suppressions.item_ids(app_id, request.user_id)
        if request.item_id is not None:
            excluded.add(request.item_id)
        ctx = self._context(
            app_id,
            request,
            anchor_item_id=request.item_id,
            category=request.category,
            excluded_item_ids=frozenset(excluded),
            history=history,
            session_items=session_items,
            user_attributes=attributes,
        )
        teams = assignment.team_pipelines()
        if teams:
            served, model_version = self._interleave(ctx, request.limit, teams, request.explain)
        else:
            served = pipeline.run(ctx, request.limit, explain=request.explain)
            model_version = self._version(app_id, assignment.pipeline, served.model_version)
        latency_ms = watch.ms()
        result = Recommendations(
            request_id=ctx.request_id,
            items=served.items,
            model_version=model_version,
            experiment=assignment.experiment,
            variant=assignment.variant,
            fallback=served.fallback,
            trace=served.trace,
            latency_ms=latency_ms,
            cold=served.cold,
        )
        self._log(ctx, result)
        if self._shadows is not None:
            self._shadows.submit(ctx, request.limit, served.support)
        self.cache.put(
            key,
            (app_id, request.user_id),
            CachedList(result.items, model_version, served.fallback, time.monotonic(), served.cold),
        )
        return result

    def _version(self, app_id: str, pipeline: str, ranker_version: str) -> str:
        models = self._variant_models.get(pipeline, self._models)
        bundle = models.get(app_id) if models is not None else None
        if bundle is None:
            return ranker_version
        # The ranker and the retrieval models both shaped the list: name both.
        return f"{ranker_version}+retrieval:{bundle.version}"

    def _interleave(
        self, ctx: RequestContext, limit: int, teams: Mapping[str, str], explain: bool = False
    ) -> tuple[ServedSlate, str]:
        """Both teams' lists (team name -> pipeline name), team-drafted into one; each item
        logs its team and the probability the draft puts it where it is."""
        (team_a, name_a), (team_b, name_b) = teams.items()
        a = self._variants[name_a].run(ctx, limit, explain=explain)
        b = self._variants[name_b].run(ctx, limit, explain=explain)
        drafted = interleave_lists(a.items, b.items, (team_a, team_b), limit, ctx.request_id)
        model_version = (
            f"{team_a}:{self._version(ctx.app_id, name_a, a.model_version)} | "
            f"{team_b}:{self._version(ctx.app_id, name_b, b.model_version)}"
        )
        trace = tuple(
            replace(stage, stage=f"{stage.stage}[{team}]")
            for team, slate in ((team_a, a), (team_b, b))
            for stage in slate.trace
        )
        return (
            ServedSlate(
                drafted, model_version, a.fallback or b.fallback, trace, cold=a.cold or b.cold
            ),
            model_version,
        )

    def forget_users(self, app_id: str, user_ids: Iterable[str]) -> None:
        """Drop cached lists of users who just sent events: what they did may change them."""
        self.cache.forget_users(app_id, user_ids)

    def _context(self, app_id: str, request: RecommendationRequest, **read: Any) -> RequestContext:
        """A new request id and the request's own context; ``read`` adds what was looked up."""
        return RequestContext(
            app_id=app_id,
            request_id=self._request_ids(),
            surface=request.surface,
            user_id=request.user_id,
            now=self._clock(),
            session_id=request.session_id,
            device=request.device,
            locale=request.locale,
            **read,
        )

    def _serve_cached(
        self,
        app_id: str,
        request: RecommendationRequest,
        cached: CachedList,
        watch: Stopwatch,
        assignment: Assignment,
    ) -> Recommendations:
        ctx = self._context(app_id, request)
        trace = (StageTrace("cache", watch.ms(), "ok", "a repeat request within the TTL"),)
        result = Recommendations(
            request_id=ctx.request_id,
            items=cached.items,
            model_version=cached.model_version,
            experiment=assignment.experiment,
            variant=assignment.variant,
            fallback=cached.fallback,
            trace=trace,
            latency_ms=watch.ms(),
            cold=cached.cold,
        )
        # Served again is shown again: the log holds every list a user saw.
        self._log(ctx, result)
        return result

    def _log(self, ctx: RequestContext, result: Recommendations) -> None:
        self._writer.log_recommendation(
            RecommendationRecord(
                app_id=ctx.app_id,
                request_id=ctx.request_id,
                user_id=ctx.user_id,
                surface=ctx.surface,
                served_at=ctx.now,
                items=served_items(result.items),
                model_version=result.model_version,
                experiment=result.experiment,
                variant=result.variant,
                fallback=result.fallback,
                latency_ms=result.latency_ms,
                session_id=ctx.session_id,
                device=ctx.device,
            )
        )
        self._list_metrics.record(
            ctx.app_id,
            ctx.surface,
            result.variant,
            ctx.request_id,
            fallback=result.fallback,
            cold=result.cold,
            latency_ms=result.latency_ms,
            items=result.items,
            trace=result.trace,
        )


def _random_id() -> str:
    return uuid.uuid4().hex
