"""Shadow mode: candidate pipelines run on real requests after the served list has gone.

A shadow pipeline sees the same request context as the served one (the same user, history,
exclusions, clock and request id), runs on a worker thread of its own once the response is
built, and its list is written to the shadow log, never shown. The served request never
waits: when the worker falls behind by ``queue_size`` runs, new runs are skipped and counted.
Shadow runs do share the machine's cores with served requests; ``traffic`` bounds the cost.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from recloop.config import ComponentConfig, ShadowConfig, SurfaceConfig
from recloop.domain import RequestContext, ShadowRecord, served_items
from recloop.errors import ConfigError
from recloop.experiments.assignment import unit_interval
from recloop.explore.policies import Support
from recloop.monitoring.metrics import Metrics
from recloop.retrieval.bundle import ModelIndex
from recloop.serving.budget import Stopwatch
from recloop.serving.pipeline import Pipeline
from recloop.store.writer import StoreWriter

log = logging.getLogger(__name__)


def shadow_surface(surfaces: Mapping[str, SurfaceConfig], shadow: ShadowConfig) -> SurfaceConfig:
    """The surface configuration a shadow runs: its pipeline, overridden, never exploring.

    Raises:
        ConfigError: an override does not make a valid surface.
    """
    base = surfaces[shadow.pipeline or shadow.surface]
    updates: dict[str, object] = dict(shadow.overrides)
    updates["exploration"] = ComponentConfig(name="none").model_dump()
    try:
        return SurfaceConfig.model_validate(base.model_dump() | updates)
    except ValueError as error:
        raise ConfigError(f"shadows: {shadow.name}: {error}") from error


def shadow_pipeline_name(shadow: str) -> str:
    """The name a shadow's pipeline is built and traced under."""
    return f"shadow:{shadow}"


@dataclass(frozen=True, slots=True)
class Shadow:
    """A built shadow: which surface's requests it follows, how many, and its pipeline."""

    name: str
    surface: str
    traffic: float
    pipeline: Pipeline
    models: ModelIndex | None = None  # whose retrieval version the shadow record names

    def wants(self, request_id: str) -> bool:
        """Whether this request is in the shadow's share (a stable hash of the request id)."""
        return (
            self.traffic >= 1.0 or unit_interval(f"shadow:{self.name}", request_id) < self.traffic
        )


@dataclass(frozen=True, slots=True)
class _Run:
    shadow: Shadow
    ctx: RequestContext
    limit: int
    support: Callable[[], Support] | None  # the served policy's, for this request


class ShadowRunner:
    """Runs the shadows of served requests on one worker thread.

    Args:
        shadows: the built shadows.
        writer: where shadow lists are queued for the shadow log.
        metrics: where runs (ok, fallback, error, skipped) and their latency are counted.
        queue_size: runs that may wait; past that, new ones are skipped.
    """

    def __init__(
        self,
        shadows: Sequence[Shadow],
        writer: StoreWriter,
        metrics: Metrics,
        queue_size: int = 1000,
    ) -> None:
        self._by_surface: dict[str, list[Shadow]] = {}
        for shadow in shadows:
            self._by_surface.setdefault(shadow.surface, []).append(shadow)
        self._writer = writer
        self._metrics = metrics
        self._queue: queue.Queue[_Run | None] = queue.Queue(queue_size)
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    @property
    def shadows(self) -> list[Shadow]:
        """Every shadow this runner runs."""
        return [s for group in self._by_surface.values() for s in group]

    def start(self) -> None:
        """Start the worker thread (there is nothing to do without shadows)."""
        if self._by_surface and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="recloop-shadow", daemon=True)
            self._thread.start()

    def queued(self) -> int:
        """Shadow runs waiting for the worker (approximate)."""
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued runs, then stop the worker."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(
        self, ctx: RequestContext, limit: int, support: Callable[[], Support] | None = None
    ) -> None:
        """Queue a served request's shadow runs; never blocks. ``support`` computes the
        served policy's probability of every (item, position) for the request."""
        for shadow in self._by_surface.get(ctx.surface, ()):
            if not shadow.wants(ctx.request_id):
                continue
            if self._thread is None:
                self._metrics.shadow_runs.labels(shadow.name, "skipped").inc()
                continue
            with self._idle:
                self._pending += 1
            try:
                self._queue.put_nowait(_Run(shadow, ctx, limit, support))
            except queue.Full:
                self._done()
                self._metrics.shadow_runs.labels(shadow.name, "skipped").inc()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued run has finished (for tests and simulations)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def _work(self) -> None:
        while True:
            run = self._queue.get()
            if run is None:
                return
            try:
                self._run(run)
            except Exception:
                log.exception("shadow %s failed", run.shadow.name)
                self._metrics.shadow_runs.labels(run.shadow.name, "error").inc()
            finally:
                self._done()

    def _run(self, run: _Run) -> None:
        shadow, ctx = run.shadow, run.ctx
        watch = Stopwatch()
        served = shadow.pipeline.run(ctx, run.limit)
        latency_ms = watch.ms()
        version = served.model_version
        bundle = shadow.models.get(ctx.app_id) if shadow.models is not None else None
        if bundle is not None:
            version = f"{version}+retrieval:{bundle.version}"
        support = None
        if run.support is not None:
            # Off the request path: how likely the served policy was to show each shadow
            # item where the shadow puts it (0 marks a slot no estimate can learn about).
            served_support = run.support()
            support = tuple(
                served_support.get((item.item_id, position), 0.0)
                for position, item in enumerate(served.items)
            )
        self._writer.log_shadow(
            ShadowRecord(
                app_id=ctx.app_id,
                request_id=ctx.request_id,
                shadow=shadow.name,
                user_id=ctx.user_id,
                surface=ctx.surface,
                computed_at=ctx.now,
                items=served_items(served.items),
                model_version=version,
                fallback=served.fallback,
                latency_ms=latency_ms,
                support=support,
            )
        )
        outcome = "fallback" if served.fallback else "ok"
        self._metrics.shadow_runs.labels(shadow.name, outcome).inc()
        self._metrics.shadow_seconds.labels(shadow.name).observe(latency_ms / 1000.0)
