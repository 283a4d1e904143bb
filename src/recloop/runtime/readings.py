"""What the scheduler reads before it decides: drift, online CTR, event and item counts.

Nothing here scans the log. In the service, drift is the process's drift monitor and CTR its
served and clicked counters (``recloop_served_items_total``, ``recloop_served_clicks_total``),
sampled at every check so that a recent window can be compared with the trailing one
before it. A separate ``recloop worker`` reads the same from a service's ``/metrics``. The
event and item counts, asked only when a volume trigger is set, are one counted query each.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from recloop.config import Settings
from recloop.monitoring.drift import SCORE
from recloop.monitoring.drift_monitor import DriftMonitor
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.schedule import Drifted, Readings, SurfaceCtr
from recloop.store import Store

log = logging.getLogger(__name__)

#: (clicks, items) served so far, per surface.
Totals = dict[str, tuple[float, float]]


class CtrHistory:
    """Each app's cumulative served clicks and items per surface, sampled at each check and
    kept for the CTR trigger's two windows."""

    def __init__(self, window_h: float, trailing_h: float) -> None:
        self._window = timedelta(hours=window_h)
        self._span = timedelta(hours=window_h + trailing_h)
        self._samples: dict[str, deque[tuple[datetime, Totals]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def add(self, app_id: str, now: datetime, totals: Totals) -> None:
        """Remember the totals at ``now`` (kept one sample past the trailing window)."""
        with self._lock:
            samples = self._samples[app_id]
            samples.append((now, dict(totals)))
            while len(samples) > 2 and samples[1][0] <= now - self._span:
                samples.popleft()

    def read(self, app_id: str, now: datetime) -> tuple[SurfaceCtr, ...]:
        """Each surface's clicks and items over the recent window and the trailing one (a
        window not yet covered by samples reads what was sampled of it)."""
        with self._lock:
            samples = list(self._samples.get(app_id, ()))
        if len(samples) < 2:
            return ()
        times = [t for t, _ in samples]

        def at(when: datetime) -> Totals:
            # The last sample at or before ``when``, else the oldest.
            i = max(0, bisect.bisect_right(times, when) - 1)
            return samples[i][1]

        latest = samples[-1][1]
        split = at(now - self._window)
        start = at(now - self._span)
        out = []
        for surface in sorted(latest):
            clicks, items = latest[surface]
            mid_clicks, mid_items = split.get(surface, (0.0, 0.0))
            old_clicks, old_items = start.get(surface, (0.0, 0.0))
            out.append(
                SurfaceCtr(
                    surface,
                    clicks - mid_clicks,
                    items - mid_items,
                    mid_clicks - old_clicks,
                    mid_items - old_items,
                )
            )
        return tuple(out)


def served_totals(samples: Iterable[tuple[str, dict[str, str], float]], app_id: str) -> Totals:
    """Clicks and items served per surface of ``app_id`` (summed over variants and
    processes) from ``(name, labels, value)`` samples of the served counters."""
    clicks: dict[str, float] = defaultdict(float)
    items: dict[str, float] = defaultdict(float)
    for name, labels, value in samples:
        if labels.get("app") != app_id or "surface" not in labels:
            continue
        if name == "recloop_served_items_total":
            items[labels["surface"]] += value
        elif name == "recloop_served_clicks_total":
            clicks[labels["surface"]] += value
    return {s: (clicks.get(s, 0.0), items[s]) for s in items}


def store_counts(store: Store) -> Callable[[str], tuple[int, int]]:
    """The app's events and items in the store now (what a run's record says it read)."""

    def counts(app_id: str) -> tuple[int, int]:
        return store.events.count(app_id), store.catalog.count_items(app_id)

    return counts


class _Counts:
    """The event and item counts, asked only when a volume trigger needs them."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._schedule = settings.schedule
        self._store = store

    def read(self, app_id: str) -> tuple[int | None, int | None]:
        events = self._store.events.count(app_id) if self._schedule.new_events > 0 else None
        items = self._store.catalog.count_items(app_id) if self._schedule.new_items > 0 else None
        return events, items


class ServiceReadings:
    """Readings from this process's own monitors (the scheduler in ``recloop serve``)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        drift: DriftMonitor,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        schedule = settings.schedule
        self._drift = drift
        self._metrics = metrics
        self._clock = clock
        self._counts = _Counts(settings, store)
        self._ctr = CtrHistory(schedule.ctr_window_h, schedule.ctr_trailing_h)

    def __call__(self, app_id: str) -> Readings:
        """What the monitors say about ``app_id`` now."""
        now = self._clock()
        samples = [
            (s.name, s.labels, s.value)
            for counter in (self._metrics.served_items, self._metrics.served_clicks)
            for family in counter.collect()
            for s in family.samples
        ]
        self._ctr.add(app_id, now, served_totals(samples, app_id))
        state = self._drift.state(app_id)
        drift = tuple(Drifted(f.name, f.psi, f.p_value) for f in state.features)
        if state.score is not None:
            drift += (Drifted(SCORE, state.score.psi, state.score.p_value),)
        events, items = self._counts.read(app_id)
        return Readings(drift, state.requests, self._ctr.read(app_id, now), events, items)


class ScrapedReadings:
    """Readings from a running service's ``/metrics`` (the scheduler in ``recloop worker``).

    Args:
        fetch: returns the exposition text (raises OSError when the service cannot be read:
            the triggers that need it are then skipped for this check); None: no service to
            read, only the event and item counts.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        fetch: Callable[[], str] | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        schedule = settings.schedule
        self._fetch = fetch
        self._clock = clock
        self._counts = _Counts(settings, store)
        self._ctr = CtrHistory(schedule.ctr_window_h, schedule.ctr_trailing_h)

    def __call__(self, app_id: str) -> Readings:
        """What the service's metrics say about ``app_id`` now."""
        from prometheus_client.parser import text_string_to_metric_families

        now = self._clock()
        events, items = self._counts.read(app_id)
        if self._fetch is None:
            return Readings(events=events, items=items)
        try:
            text = self._fetch()
        except OSError as exc:
            log.warning("no drift or CTR readings this check: %s", exc)
            return Readings(events=events, items=items)
        samples = [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            if family.name.startswith(("recloop_drift_", "recloop_served_"))
            for s in family.samples
        ]
        self._ctr.add(app_id, now, served_totals(samples, app_id))
        return Readings(
            *_scraped_drift(samples, app_id), self._ctr.read(app_id, now), events, items
        )


def _scraped_drift(
    samples: list[tuple[str, dict[str, str], float]], app_id: str
) -> tuple[tuple[Drifted, ...], float]:
    """Drift per feature from scraped gauges; with several processes (``pid`` labels) the
    highest PSI, the lowest p-value and the summed sample, as ``recloop monitor`` reads them."""
    psi: dict[str, float] = {}
    p_value: dict[str, float] = {}
    requests = 0.0
    for name, labels, value in samples:
        if labels.get("app") != app_id:
            continue
        feature = labels.get("feature", SCORE)
        if name == "recloop_drift_sampled_requests":
            requests += value
        elif name in ("recloop_drift_feature_psi", "recloop_drift_score_psi"):
            psi[feature] = max(psi.get(feature, -math.inf), value)
        elif name in ("recloop_drift_feature_p_value", "recloop_drift_score_p_value"):
            p_value[feature] = min(p_value.get(feature, math.inf), value)
    drift = tuple(Drifted(f, psi[f], p_value.get(f, math.nan)) for f in sorted(psi))
    return drift, requests
