"""The metrics of one served list: request counts and latency, each stage's and source's
time and outcome, fallback causes, and the online CTR and coverage counts.

A served list touches about thirty metric series; ``labels()`` costs about a microsecond
a call, so each series' child is looked up once and kept (the label sets are bounded:
apps, surfaces, variants, stages, sources and outcomes all come from configuration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recloop.domain import ScoredItem
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.served import ServedTracker
from recloop.serving.budget import StageTrace

#: Stages whose name after the colon is detail: a filter's rule, the ranker's version (a new
#: one every training); the others (a source, a gate, a rerank rule, a policy) come from
#: configuration.
_BARE = frozenset({"filter", "rank"})
#: Stages named after a candidate source.
_SOURCE_STAGES = frozenset({"retrieve", "fallback"})
_CAUSES = {("fallback", "fallback"): "fallback_served"}


@dataclass(frozen=True, slots=True)
class _Stage:
    outcome: Any
    seconds: Any
    source: Any = None
    timeout: Any = None
    cause: Any = None


@dataclass(frozen=True, slots=True)
class _Request:
    count: Any
    seconds: Any
    cold: Any


class ListMetrics:
    """Records served lists in ``metrics`` (and in ``tracker``, for CTR and coverage)."""

    def __init__(self, metrics: Metrics, tracker: ServedTracker | None = None) -> None:
        self._metrics = metrics
        self._tracker = tracker
        self._stages: dict[tuple[str, str, str, str], _Stage] = {}
        self._requests: dict[tuple[str, str, bool], _Request] = {}

    def record(
        self,
        app_id: str,
        surface: str,
        variant: str,
        request_id: str,
        *,
        fallback: bool,
        cold: bool,
        latency_ms: float,
        items: Sequence[ScoredItem],
        trace: Sequence[StageTrace],
    ) -> None:
        """Count one served list."""
        request = self._requests.get((app_id, surface, fallback))
        if request is None:
            request = self._request(app_id, surface, fallback)
        request.count.inc()
        request.seconds.observe(latency_ms / 1000.0)
        if cold:
            request.cold.inc()
        if self._tracker is not None:
            self._tracker.served(app_id, surface, variant, request_id, [i.item_id for i in items])
        for stage in trace:
            key = (app_id, surface, stage.stage, stage.outcome)
            children = self._stages.get(key)
            if children is None:
                children = self._stage(*key)
            seconds = stage.elapsed_ms / 1000.0
            children.outcome.inc()
            children.seconds.observe(seconds)
            if children.source is not None:
                children.source.observe(seconds)
            if children.timeout is not None:
                children.timeout.inc()
            if children.cause is not None:
                children.cause.inc()

    def _request(self, app_id: str, surface: str, fallback: bool) -> _Request:
        metrics = self._metrics
        request = _Request(
            metrics.recommendations.labels(app_id, surface, str(fallback).lower()),
            metrics.request_seconds.labels(app_id, surface),
            metrics.cold_recommendations.labels(app_id, surface),
        )
        self._requests[(app_id, surface, fallback)] = request
        return request

    def _stage(self, app_id: str, surface: str, stage: str, outcome: str) -> _Stage:
        metrics = self._metrics
        # An interleaved team's name (``rank:v1[a]``) is detail too.
        name = stage.split("[", 1)[0]
        kind, _, part = name.partition(":")
        source = kind in _SOURCE_STAGES and bool(part)
        degraded = outcome in ("timeout", "error", "fallback")
        children = _Stage(
            metrics.stage_outcomes.labels(app_id, kind if kind in _BARE else name, outcome),
            metrics.stage_seconds.labels(app_id, kind),
            metrics.source_seconds.labels(app_id, part) if source else None,
            metrics.source_timeouts.labels(app_id, part)
            if source and outcome == "timeout"
            else None,
            metrics.fallback_causes.labels(
                app_id, surface, _CAUSES.get((kind, outcome), f"{kind}_{outcome}")
            )
            if degraded
            else None,
        )
        self._stages[(app_id, surface, stage, outcome)] = children
        return children
