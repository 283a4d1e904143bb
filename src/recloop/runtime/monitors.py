"""What the service measures beside its requests: feature missing rates, the served model's
age and the last training's outcome, queue depths and catalog coverage.

Each is either counted where the work already happens (a feature matrix is scanned once,
vectorised) or read at scrape time, never per request on its own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

import numpy as np

from recloop.domain import Event
from recloop.features.candidates import FeatureMatrix, FeatureReader
from recloop.monitoring.metrics import GaugeSample, Metrics
from recloop.monitoring.served import ServedTracker
from recloop.registry.artifacts import ModelRegistry
from recloop.registry.runs import RunLog, RunRecord
from recloop.retrieval.popularity import PopularityIndex
from recloop.serving.shadow import ShadowRunner
from recloop.store.writer import StoreWriter

log = logging.getLogger(__name__)

#: Run records read per app at each model check for the last run's gauges.
RUNS_READ = 50


class CountedFeatures:
    """A feature reader that counts, per feature, the candidate rows whose value is missing
    or not finite (``recloop_feature_missing_total``) beside the rows read."""

    def __init__(self, reader: FeatureReader, metrics: Metrics) -> None:
        self._reader = reader
        self._metrics = metrics
        self._seen: set[str] = set()

    def matrix(
        self,
        app_id: str,
        user_id: str,
        item_ids: Sequence[str],
        *,
        session_id: str | None,
        device: str | None,
        surface: str | None,
        now: datetime,
    ) -> FeatureMatrix:
        """The reader's matrix, counted."""
        matrix = self._reader.matrix(
            app_id,
            user_id,
            item_ids,
            session_id=session_id,
            device=device,
            surface=surface,
            now=now,
        )
        values = np.asarray(matrix.values)
        if values.size:
            if app_id not in self._seen:
                # Every feature's series from the first request on, at 0: a rate over it
                # then sees the first violation too (a series born at 1 has no increase).
                self._seen.add(app_id)
                for name in matrix.names:
                    self._metrics.feature_missing.labels(app_id, name)
            self._metrics.feature_rows.labels(app_id).inc(values.shape[0])
            if math.isfinite(float(values.sum())):
                return matrix  # the common case, in one pass: nothing is missing
            missing = np.count_nonzero(~np.isfinite(values), axis=0)
            for column in np.flatnonzero(missing):
                self._metrics.feature_missing.labels(app_id, matrix.names[column]).inc(
                    int(missing[column])
                )
        return matrix


class ModelStatus:
    """Sets the served model's creation time and the newest version's outcome from the
    registry's manifests, and when the last training runs of each outcome ended from the run
    records (whoever ran them: a service or ``recloop worker``); refreshed after each model
    check (``serving.model_refresh_s``).

    Args:
        registry: the model versions and the promoted pointer.
        served: each app's served version (None: none loaded).
        metrics: where the gauges live.
        runs: the scheduled training runs' records (None: not read).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        served: Callable[[], dict[str, str | None]],
        metrics: Metrics,
        runs: RunLog | None = None,
    ) -> None:
        self._registry = registry
        self._served = served
        self._metrics = metrics
        self._runs = runs
        self._created: dict[tuple[str, str], float] = {}

    def _created_at(self, app_id: str, version: str) -> float | None:
        key = (app_id, version)
        if key not in self._created:
            try:
                manifest = self._registry.manifest(app_id, version)
            except (OSError, ValueError, KeyError):
                return None  # gone (gc) or damaged: the loader reports it
            self._created[key] = manifest.created_at.timestamp()
        return self._created[key]

    def refresh(self) -> None:
        """Read the registry again; never raises (a gauge is not worth a model check)."""
        try:
            self._refresh()
        except Exception:
            log.exception("could not read the model registry for its metrics")

    def _refresh(self) -> None:
        served = self._served()
        for app_id in sorted(set(self._registry.apps()) | set(served)):
            version = served.get(app_id)
            created = self._created_at(app_id, version) if version is not None else None
            if created is not None:
                self._metrics.model_created.labels(app_id).set(created)
            versions = self._registry.versions(app_id)
            if not versions:
                continue
            newest = versions[-1]
            trained = self._created_at(app_id, newest)
            if trained is not None:
                self._metrics.training_last.labels(app_id).set(trained)
            promoted = self._registry.current(app_id) == newest
            self._metrics.training_outcome.labels(app_id, "promoted").set(float(promoted))
            self._metrics.training_outcome.labels(app_id, "not_promoted").set(float(not promoted))
        if self._runs is not None:
            for app_id in self._runs.apps():
                self._run_times(app_id, self._runs.recent(app_id, RUNS_READ))

    def _run_times(self, app_id: str, records: Sequence[RunRecord]) -> None:
        """The newest end of each outcome among ``records`` (newest first)."""
        seen: set[str] = set()
        for record in records:
            if record.ended_at is None or record.outcome in seen:
                continue
            seen.add(record.outcome)
            gauge = self._metrics.training_run_last.labels(app_id, record.outcome)
            gauge.set(record.ended_at.timestamp())


def service_gauges(
    writer: StoreWriter,
    shadows: ShadowRunner,
    popularity: PopularityIndex,
    tracker: ServedTracker,
) -> Callable[[], Iterator[GaugeSample]]:
    """Scrape-time gauges: queue depths, each app's active catalog and served coverage."""

    def active(app_id: str) -> int | None:
        snapshot = popularity.get(app_id)
        return snapshot.active_items if snapshot is not None else None

    def read() -> Iterator[GaugeSample]:
        yield (
            "recloop_queue_depth",
            "Work waiting in a queue, by queue: writer (events to commit and served lists to "
            "log), shadow (shadow runs).",
            {"queue": "writer"},
            float(writer.queued()),
        )
        yield ("recloop_queue_depth", "", {"queue": "shadow"}, float(shadows.queued()))
        for app_id in popularity.apps():
            count = active(app_id)
            if count is not None:
                yield (
                    "recloop_catalog_active_items",
                    "Active items in the app's catalog (as of the last popularity refresh).",
                    {"app": app_id},
                    float(count),
                )
        yield from tracker.coverage(active)

    return read


def event_observer(
    metrics: Metrics, tracker: ServedTracker
) -> Callable[[str, Sequence[Event]], None]:
    """What the ingestor calls with newly stored events: their lag (server time minus event
    time; an event stamped ahead of the server counts 0) and the clicks' join."""

    def observe(app_id: str, events: Sequence[Event]) -> None:
        lag = metrics.event_lag.labels(app_id)
        for event in events:
            lag.observe(max(0.0, (event.server_ts - event.event_ts).total_seconds()))
        tracker.events(app_id, events)

    return observe
