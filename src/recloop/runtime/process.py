"""The composition root: everything one process runs, wired from settings.

The store, the writer, the ingestor, the popularity refresher, the feature materializer,
the model loader, the pipelines, the shadows, the experiment guard and the suggester are
built here, and only here; the HTTP app, the CLI and the demo start a ``Runtime`` and use its parts.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from recloop.analysis.guard import ExperimentGuard, StoppedExperiments
from recloop.analysis.rollout import RampRecord
from recloop.config import Settings, SurfaceConfig
from recloop.data.purge import run_purge
from recloop.data.retention import run_gc
from recloop.errors import ConfigError, StoreUnavailable
from recloop.experiments.assignment import Assigner, pinned_versions, variant_surfaces
from recloop.features.item_stats import OnlineItemStats
from recloop.features.online import FeatureMaterializer, OnlineFeatures
from recloop.ingest.accept import EventIngestor
from recloop.monitoring.drift_monitor import DriftMonitor
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.served import ServedTracker
from recloop.online import MemoryOnlineStore, open_online_store
from recloop.online.protocols import OnlineStore
from recloop.ranking.learned import RankerModels
from recloop.registry.artifacts import ModelRegistry
from recloop.registry.runs import RunLog
from recloop.retrieval.bundle import ModelIndex
from recloop.retrieval.popularity import PopularityConfig, PopularityIndex
from recloop.runtime.leadership import Leadership, SoleProcess, scheduler_lease
from recloop.runtime.monitors import CountedFeatures, ModelStatus, event_observer, service_gauges
from recloop.runtime.readings import ServiceReadings, store_counts
from recloop.runtime.scheduler import Scheduler
from recloop.serving.components import Resources
from recloop.serving.deletions import DeletionFollower
from recloop.serving.drift_sampling import HeadItems
from recloop.serving.model_loader import ModelLoader
from recloop.serving.pipeline import Pipeline
from recloop.serving.recommender import Recommender
from recloop.serving.refresh import PeriodicTask, PopularityRefresher
from recloop.serving.response_cache import ResponseCache
from recloop.serving.shadow import Shadow, ShadowRunner, shadow_pipeline_name, shadow_surface
from recloop.serving.suggest_cold import ColdSuggestions
from recloop.serving.suggest_live import LiveSearches
from recloop.serving.suggester import Suggester
from recloop.serving.surfaces import build_pipeline, build_pipelines
from recloop.store import Store
from recloop.store.bootstrap import prepare_store
from recloop.store.writer import StoreWriter
from recloop.suggest.blocklist import SafetyFilters
from recloop.suggest.model import SuggestionModels
from recloop.suggest.safety import SafetyPolicy

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The running parts of a recloop process."""

    settings: Settings
    store: Store
    writer: StoreWriter
    refresher: PopularityRefresher
    recommender: Recommender
    ingestor: EventIngestor
    metrics: Metrics
    executor: ThreadPoolExecutor
    request_executor: ThreadPoolExecutor
    online: OnlineStore
    materializer: PeriodicTask
    model_loader: ModelLoader
    model_task: PeriodicTask
    features: FeatureMaterializer  # what ``materializer`` steps; a driver may step it itself
    experiment_guard: ExperimentGuard | None = None  # stops experiments whose guardrail trips
    guard_task: PeriodicTask | None = None
    shadows: ShadowRunner | None = None  # runs shadow pipelines after served requests
    # The server's clock: what requests are served at and events are received at. One
    # clock for both, or labels would compare two (a simulation passes its own).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    suggester: Suggester | None = None  # the query-suggestion surface
    suggest_tasks: tuple[PeriodicTask, ...] = ()  # its cold state, blocklists and live overlay
    # Whether this process runs the work that runs once (one of several workers may not).
    leadership: Leadership = field(default_factory=SoleProcess)
    # Applies user deletions to what this process holds; stepped by ``deletions_task``.
    deletions: DeletionFollower | None = None
    deletions_task: PeriodicTask | None = None
    # Runs the purge of deleted users' files, in the leading process only.
    purge_task: PeriodicTask | None = None
    # Runs `recloop gc --delete` every retention.interval_h, in the leading process only.
    retention_task: PeriodicTask | None = None
    # What drift the service sees (the gauges, and whatever decides to retrain, read it).
    drift: DriftMonitor = field(default_factory=DriftMonitor)
    # Starts scheduled and triggered trainings ([schedule]), in one process per deployment.
    scheduler: Scheduler | None = None

    def catalog_changed(self) -> None:
        """Fold catalog writes this process has just committed into its in-memory views
        (newest, fresh, popular by category) now, not at the next timed refresh: the next
        request here can serve a new item. Other processes see it at their next refresh
        (``serving.popularity_refresh_s``). A failure is counted, never raised: the write
        itself is committed."""
        try:
            self.refresher.refresh()
        except Exception:
            log.exception("could not refresh the catalog views after a catalog write")
            self.metrics.refresh_errors.inc()

    def close(self) -> None:
        """Stop background work, write what is queued, close the store."""
        self.refresher.stop()
        self.materializer.stop()
        self.model_task.stop()
        if self.guard_task is not None:
            self.guard_task.stop()
        if self.shadows is not None:
            self.shadows.close()
        for task in self.suggest_tasks:
            task.stop()
        for optional in (self.deletions_task, self.purge_task, self.retention_task):
            if optional is not None:
                optional.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler.leadership.close()
        self.writer.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.request_executor.shutdown(wait=False, cancel_futures=True)
        self.store.close()
        self.online.close()
        self.leadership.close()


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def start_runtime(
    settings: Settings,
    store: Store | None = None,
    clock: Callable[[], datetime] = _wall_clock,
    request_ids: Callable[[], str] | None = None,
    leadership: Leadership | None = None,
) -> Runtime:
    """Wire and start every part; configuration errors are raised here, not per request.

    Args:
        settings: the configuration.
        store: an opened store; opened (and migrated when embedded) from settings if None.
        clock: what the models and requests take as "now" (a simulation passes its own).
        request_ids: makes request ids (random by default; a simulation passes a seeded one).
        leadership: whether this process runs what must run once when several serve (the
            experiment guard; the materializer of a shared online store); alone by default.
    """
    leadership = leadership or SoleProcess()
    # Elected at start-up, not at the first task that asks: the lock file names the leader.
    leadership.leads()
    # Requests do many small matrix products on several threads at once: a multithreaded
    # BLAS adds worker threads that spin after each one, about 12 ms of CPU a request on
    # 2 cores (benchmarks/serving_latency.py).
    threadpool_limits(settings.serving.blas_threads, "blas")
    # Checked before anything starts: a bad safety table must not leave threads behind.
    safety_policy = suggestion_policy(settings)
    store = store or prepare_store(settings, serving=True)
    metrics = Metrics()
    index = PopularityIndex()
    drift = DriftMonitor(settings.serving.drift)
    tracker = ServedTracker(metrics, on_served=HeadItems(index, drift).served)
    writer = StoreWriter(
        store.events,
        store.rec_log,
        max_rows=settings.ingest.writer_max_rows,
        shadow_log=store.shadow_log,
    )
    metrics.watch(
        lambda: {
            "recloop_reclog_written": writer.stats.logs_written,
            "recloop_reclog_dropped": writer.stats.logs_dropped,
            "recloop_event_commits": writer.stats.event_commits,
            "recloop_shadowlog_written": writer.stats.shadows_written,
            "recloop_shadowlog_dropped": writer.stats.shadows_dropped,
        }
    )
    refresher = PopularityRefresher(
        store.events,
        store.catalog,
        index,
        config=PopularityConfig(half_life_hours=settings.serving.trending_half_life_h),
        interval_s=settings.serving.popularity_refresh_s,
        rebuild_s=settings.serving.popularity_rebuild_s,
        on_error=metrics.refresh_errors.inc,
        clock=clock,
    )
    executor = ThreadPoolExecutor(settings.serving.source_threads, thread_name_prefix="recloop-src")
    online = open_online_store(settings.online_url, timeout_s=settings.online_timeout_s)
    # Experiment variants and shadows are surfaces too, built at start-up like the
    # configured ones.
    variants = variant_surfaces(settings.surfaces, settings.experiments)
    shadow_configs = {
        shadow_pipeline_name(s.name): shadow_surface(settings.surfaces, s) for s in settings.shadows
    }
    # Bandits read the same per-item counters the online features do.
    uses_features = any(
        s.online_features or s.exploration.name == "thompson"
        for s in (*settings.surfaces.values(), *variants.values(), *shadow_configs.values())
    )
    models = ModelIndex()
    rankers = RankerModels()
    # Variants that pin a model version read it from their own index, kept loaded beside
    # the promoted version.
    pinned_by_pipeline = pinned_versions(settings.experiments) | {
        shadow_pipeline_name(s.name): s.model_version
        for s in settings.shadows
        if s.model_version is not None
    }
    pinned = {v: (ModelIndex(), RankerModels()) for v in sorted(set(pinned_by_pipeline.values()))}
    suggestion_models = SuggestionModels()
    deletions = DeletionFollower(
        store.audit, online, [models, *(index for index, _ in pinned.values())]
    )
    registry = ModelRegistry(settings.resolved_model_dir())
    model_loader = ModelLoader(
        registry,
        models,
        store.catalog,
        on_error=metrics.model_load_errors.inc,
        rankers=rankers,
        pinned=pinned,
        suggestions=suggestion_models,
        forgotten=deletions.forgotten,
        drift=drift,
    )
    resources = Resources(
        index,
        store.catalog,
        CountedFeatures(
            OnlineFeatures(online, item_ttl_s=settings.serving.item_features_ttl_s), metrics
        )
        if uses_features
        else None,
        models,
        store.rec_log,
        rankers,
        OnlineItemStats(online, clock=clock),
        drift,
    )
    pipelines = build_pipelines(settings.surfaces, resources, settings.serving.budget, executor)

    def pipeline_of(name: str, config: SurfaceConfig) -> Pipeline:
        # A pipeline that pins a model version reads it from its own index.
        own = resources
        if name in pinned_by_pipeline:
            # Its version is not the served one: the drift reference does not describe it.
            models, rankers = pinned[pinned_by_pipeline[name]]
            own = replace(resources, models=models, rankers=rankers, drift=None)
        elif name in shadow_configs:
            own = replace(resources, drift=None)  # a shadow's lists are not served
        return build_pipeline(name, config, own, settings.serving.budget, executor)

    variant_pipelines = {name: pipeline_of(name, config) for name, config in variants.items()}
    shadows = ShadowRunner(
        [
            Shadow(
                s.name,
                s.surface,
                s.traffic,
                pipeline_of(
                    shadow_pipeline_name(s.name), shadow_configs[shadow_pipeline_name(s.name)]
                ),
                pinned[s.model_version][0] if s.model_version is not None else models,
            )
            for s in settings.shadows
        ],
        writer,
        metrics,
        settings.shadow_queue,
    )
    # Feature state is kept only when a surface reads it: folding every event in costs CPU.
    folder = FeatureMaterializer(store.events, store.catalog, online)
    # Each process folds the log into its own memory; a shared store is folded by one.
    shared_online = not isinstance(online, MemoryOnlineStore)

    def materialize() -> None:
        if not shared_online or leadership.leads():
            folder.step()

    materializer = PeriodicTask(
        "materialize",
        materialize,
        settings.serving.popularity_refresh_s,
        on_error=metrics.materialize_errors.inc,
    )
    assigner = Assigner(settings.experiments, settings.experiment_holdout)
    recommender = Recommender(
        pipelines,
        frozenset(name for name, s in settings.surfaces.items() if s.requires_item),
        events=store.events,
        suppressions=store.suppressions,
        writer=writer,
        metrics=metrics,
        users=store.users,
        cold_history=settings.serving.cold_history,
        models=models,
        clock=clock,
        cache=ResponseCache(settings.serving.response_cache_ttl_s),
        variants=variant_pipelines,
        variant_models={name: pinned[v][0] for name, v in pinned_by_pipeline.items()},
        request_ids=request_ids,
        assigner=assigner,
        shadows=shadows,
        catalog=store.catalog,
        tracker=tracker,
    )
    ingestor = EventIngestor(
        writer,
        max_future_skew=timedelta(seconds=settings.ingest.max_future_skew_s),
        ack_timeout_s=settings.ingest.ack_timeout_s,
        on_stored=recommender.forget_users,
        events=store.events,
        on_accepted=event_observer(metrics, tracker),
    )
    metrics.watch_gauges(service_gauges(writer, shadows, index, tracker))
    metrics.watch_gauges(drift.gauges)
    model_status = ModelStatus(
        registry,
        lambda: dict(models.apps()),
        metrics,
        RunLog(settings.resolved_model_dir()),
    )

    def check_models() -> None:
        model_loader.step()
        model_status.refresh()

    writer.start()
    shadows.start()
    refresher.start()
    # Load the promoted models before the first request; afterwards, check in the background.
    check_models()
    model_task = PeriodicTask(
        "models",
        check_models,
        settings.serving.model_refresh_s,
        on_error=metrics.model_load_errors.inc,
    )
    model_task.start()
    if uses_features:
        # Features read before the log is folded in would all be zero: fold it first. An
        # online store that does not answer must not keep the service down: requests fall
        # back to default features, and the materializer retries.
        try:
            materialize()
        except StoreUnavailable:
            log.exception("could not fold the event log into the online store at start-up")
            metrics.materialize_errors.inc()
        materializer.start()
    request_executor = ThreadPoolExecutor(
        settings.serving.request_threads, thread_name_prefix="recloop-request"
    )
    deletions.on_users = recommender.forget_users
    deletions.step()  # users deleted before this process started are forgotten before it serves
    deletions_task = PeriodicTask(
        "deletions",
        deletions.step,
        settings.serving.popularity_refresh_s,
        on_error=metrics.refresh_errors.inc,
    )
    deletions_task.start()
    purge_task = _purge_task(settings, store, leadership, metrics)
    retention_task = _retention_task(settings, store, leadership, metrics)
    guard, guard_task = _guard(settings, store, assigner, metrics, clock, leadership)
    scheduler = _scheduler(settings, store, drift, metrics, clock)
    suggester, suggest_tasks = _suggester(
        settings,
        safety_policy,
        store,
        writer,
        metrics,
        assigner,
        suggestion_models,
        clock,
        request_ids,
    )
    return Runtime(
        settings,
        store,
        writer,
        refresher,
        recommender,
        ingestor,
        metrics,
        executor,
        request_executor,
        online,
        materializer,
        model_loader,
        model_task,
        folder,
        guard,
        guard_task,
        shadows,
        clock,
        suggester,
        suggest_tasks,
        leadership,
        deletions,
        deletions_task,
        purge_task,
        retention_task,
        drift,
        scheduler,
    )


def suggestion_policy(settings: Settings) -> SafetyPolicy:
    """``[suggestions.safety]`` validated into the suggestion surface's safety policy.

    Raises:
        ConfigError: naming each key of the table that is wrong, and why.
    """
    try:
        return SafetyPolicy.model_validate(settings.suggestions.safety)
    except ValidationError as exc:
        problems = "; ".join(
            "suggestions.safety." + ".".join(str(p) for p in error["loc"]) + f": {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(problems) from exc


def suggestions_path(settings: Settings) -> Path:
    """Where the apps' suggestion blocklists are kept: beside the model versions."""
    return settings.resolved_model_dir() / "suggestions"


def _suggester(
    settings: Settings,
    policy: SafetyPolicy,
    store: Store,
    writer: StoreWriter,
    metrics: Metrics,
    assigner: Assigner,
    models: SuggestionModels,
    clock: Callable[[], datetime],
    request_ids: Callable[[], str] | None,
) -> tuple[Suggester, tuple[PeriodicTask, ...]]:
    """The suggestion surface, with the tasks that keep its cold models, blocklists and live
    overlay current."""
    config = settings.suggestions
    safety = SafetyFilters(policy, suggestions_path(settings), on_error=metrics.refresh_errors.inc)
    try:
        safety.refresh()
    except Exception:
        # An unreadable folder must not keep the service down; the refresh retries it.
        log.exception("could not read the suggestion blocklists at start-up")
        metrics.refresh_errors.inc()
    cold = ColdSuggestions(store.events, store.catalog, config, clock)
    live = _live_searches(settings, store, models, cold, clock) if config.live else None
    suggester = Suggester(
        config,
        models=models,
        cold=cold,
        safety=safety,
        events=store.events,
        catalog=store.catalog,
        writer=writer,
        metrics=metrics,
        assigner=assigner,
        clock=clock,
        request_ids=request_ids,
        live=live,
    )
    tasks: tuple[PeriodicTask, ...] = (
        PeriodicTask(
            "suggest-cold",
            lambda: cold.refresh(skip=models.apps()),
            config.cold_refresh_s,
            on_error=metrics.refresh_errors.inc,
        ),
        PeriodicTask(
            "suggest-blocklists",
            safety.refresh,
            config.blocklist_refresh_s,
            on_error=metrics.refresh_errors.inc,
        ),
    )
    if live is not None:
        tasks += (
            PeriodicTask(
                "suggest-live",
                live.step,
                config.live_refresh_s,
                on_error=metrics.refresh_errors.inc,
            ),
        )
    for task in tasks:
        task.start()
    return suggester, tasks


def _live_searches(
    settings: Settings,
    store: Store,
    models: SuggestionModels,
    cold: ColdSuggestions,
    clock: Callable[[], datetime],
) -> LiveSearches:
    """The live overlay of each app's searches since its model's cut-off: the trained
    model's, else the cold one's. It reads back to the oldest trained model's cut-off (at
    most ``cold_window_days``); the cold models, built later, read the store themselves."""
    config = settings.suggestions

    def cutoff(app_id: str) -> datetime | None:
        model = models.get(app_id) or cold.peek(app_id)
        return None if model is None else model.built_at

    now = clock()
    trained = [m.built_at for m in (models.get(a) for a in models.apps()) if m is not None]
    start = max(min(trained, default=now), now - timedelta(days=config.cold_window_days))
    return LiveSearches(store.events, config, cutoff, start=start)


def _purge_task(
    settings: Settings, store: Store, leadership: Leadership, metrics: Metrics
) -> PeriodicTask | None:
    """Every ``serving.purge_interval_h``, the leading process removes deleted users from
    the files under the data directory and the model versions (``recloop purge``)."""
    if settings.serving.purge_interval_h <= 0:
        return None
    registry = ModelRegistry(settings.resolved_model_dir())

    def step() -> None:
        report = run_purge(store.audit, settings.data_dir, registry, "scheduler", datetime.now(UTC))
        if report.rows_removed or report.models_rewritten:
            log.info(
                "purge: %d rows from %d files, %d models rewritten",
                report.rows_removed,
                len(report.files_rewritten),
                len(report.models_rewritten),
            )

    return _leader_task("purge", step, settings.serving.purge_interval_h, leadership, metrics)


def _retention_task(
    settings: Settings, store: Store, leadership: Leadership, metrics: Metrics
) -> PeriodicTask | None:
    """Every ``retention.interval_h``, the leading process removes the snapshots, training
    sets and model versions retention does not keep (``recloop gc --delete``)."""
    if settings.retention.interval_h <= 0:
        return None
    registry = ModelRegistry(settings.resolved_model_dir())

    def step() -> None:
        report = run_gc(
            settings, registry, audit=store.audit, actor="scheduler", now=datetime.now(UTC)
        )
        if report.removed:
            log.info(
                "gc: removed %d (%d bytes): %s",
                len(report.removed),
                report.bytes_freed,
                ", ".join(f"{e.kind} {e.label}" for e in report.removed),
            )

    return _leader_task("retention", step, settings.retention.interval_h, leadership, metrics)


def _scheduler(
    settings: Settings,
    store: Store,
    drift: DriftMonitor,
    metrics: Metrics,
    clock: Callable[[], datetime],
) -> Scheduler | None:
    """The training scheduler, when ``[schedule]`` runs it in the service (started). It
    competes for a lease of its own: of every process of every replica, one runs it."""
    if not (settings.schedule.enabled and settings.schedule.in_service):
        return None
    scheduler = Scheduler(
        settings,
        scheduler_lease(settings),
        ServiceReadings(settings, store, drift, metrics, clock),
        metrics,
        clock,
        counts=store_counts(store),
    )
    scheduler.start()
    return scheduler


def _leader_task(
    name: str,
    step: Callable[[], None],
    interval_h: float,
    leadership: Leadership,
    metrics: Metrics,
) -> PeriodicTask:
    """Run ``step`` every ``interval_h`` hours in the leading process only (started)."""

    def if_leading() -> None:
        if leadership.leads():
            step()

    task = PeriodicTask(name, if_leading, interval_h * 3600.0, on_error=metrics.refresh_errors.inc)
    task.start()
    return task


def _guard(
    settings: Settings,
    store: Store,
    assigner: Assigner,
    metrics: Metrics,
    clock: Callable[[], datetime],
    leadership: Leadership,
) -> tuple[ExperimentGuard | None, PeriodicTask | None]:
    """Stops recorded before start-up apply at once; guarded experiments are then checked,
    by the leader only: the others follow its record."""
    if not settings.experiments:
        return None, None

    def stopped(name: str) -> None:
        if name not in assigner.stopped:
            assigner.stop(name)
            metrics.experiments_stopped.inc()

    def staged(name: str, stage: int) -> None:
        assigner.set_stage(name, stage)
        metrics.ramp_stage.labels(name).set(stage)

    guard = ExperimentGuard(
        settings.experiments,
        store.rec_log,
        store.events,
        StoppedExperiments(stopped_experiments_path(settings)),
        stopped,
        clock=clock,
        ramps=RampRecord(ramps_path(settings)),
        on_stage=staged,
        on_advanced=lambda name: metrics.ramp_moves.labels(name).inc(),
    )

    def check() -> None:
        if leadership.leads():
            guard.step()
        else:
            guard.follow()

    try:
        check()
    except Exception:
        # A record that cannot be read must not keep the service down: experiments run as
        # configured, and the failure is counted (and retried every check).
        log.exception("could not apply the stopped experiments at start-up")
        metrics.experiment_check_errors.inc()
    task = PeriodicTask(
        "experiments",
        check,
        settings.experiment_check_s,
        on_error=metrics.experiment_check_errors.inc,
    )
    task.start()
    return guard, task


def stopped_experiments_path(settings: Settings) -> Path:
    """Where stopped experiments are recorded: beside the model versions every replica reads."""
    return settings.resolved_model_dir() / "experiments" / "stopped.json"


def ramps_path(settings: Settings) -> Path:
    """Where the stages of staged canaries are recorded, beside the stopped experiments."""
    return settings.resolved_model_dir() / "experiments" / "ramps.json"


def freeze_heap() -> None:
    """Exempt everything allocated so far from garbage collection scans.

    For a long-running server, after start-up: what is loaded by then lives as long as the
    process, and a full collection re-scanning it stalls every request for tens of
    milliseconds, most of a p99 budget. Not for code that starts many runtimes (tests): a
    frozen object is never collected, even when it later becomes garbage.
    """
    gc.collect()
    gc.freeze()
