"""Prometheus metrics of one process, on a registry of its own (so apps in tests don't clash).

When several server processes serve one deployment (``recloop serve --workers``), the
environment names a folder in ``PROMETHEUS_MULTIPROC_DIR`` before any of them starts: each
process then writes its values there, and a scrape of any one of them sums them all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

#: Set (to a folder) when several processes share the metrics; read by prometheus_client.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: A stage or a source takes from microseconds (a filter) to its timeout (tens of ms).
_STAGE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Server time minus event time: a live client's events arrive within seconds, a mobile
#: client's offline queue within hours, a backfill days late.
_LAG_BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0)

#: A gauge read at scrape time: (name, help, labels, value).
GaugeSample = tuple[str, str, dict[str, str], float]


class _CallbackCounters(Collector):
    def __init__(self, read: Callable[[], dict[str, float]], pid: str | None = None) -> None:
        self._read = read
        self._pid = pid

    def collect(self) -> Iterator[Metric]:
        # Another component's own counts are this process's only: with several processes
        # each scrape labels them with the answering process (sum them over ``pid``).
        labels = ["pid"] if self._pid is not None else []
        for name, value in self._read().items():
            family = CounterMetricFamily(name, f"{name} (from the store writer)", labels=labels)
            family.add_metric([self._pid] if self._pid is not None else [], value)
            yield family


class _CallbackGauges(Collector):
    def __init__(self, read: Callable[[], Iterable[GaugeSample]], pid: str | None = None) -> None:
        self._read = read
        self._pid = pid

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        order: dict[str, list[str]] = {}
        for name, text, labels, value in self._read():
            if self._pid is not None:
                labels = {**labels, "pid": self._pid}
            if name not in families:
                order[name] = sorted(labels)
                families[name] = GaugeMetricFamily(name, text, labels=order[name])
            families[name].add_metric([labels[k] for k in order[name]], value)
        yield from families.values()


class Metrics:
    """Every metric recloop exports, registered on one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self._callbacks = CollectorRegistry()
        self.events = Counter(
            "recloop_events",
            "Events received, by app and outcome (accepted, duplicate, conflict, rejected).",
            ["app", "outcome"],
            registry=self.registry,
        )
        self.recommendations = Counter(
            "recloop_recommendations",
            "Recommendation requests served, by app, surface and whether a fallback was used.",
            ["app", "surface", "fallback"],
            registry=self.registry,
        )
        self.cold_recommendations = Counter(
            "recloop_recommendations_cold",
            "Recommendation requests served in the pipeline's cold state (nothing trained yet "
            "for a stage, e.g. no ranker on a new app), by app and surface; not fallbacks.",
            ["app", "surface"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "recloop_recommendation_seconds",
            "Time to build one recommendation list, by app and surface.",
            ["app", "surface"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_outcomes = Counter(
            "recloop_stage_outcomes",
            "Pipeline stage results (ok, timeout, error, fallback, empty, cold), by app and stage.",
            ["app", "stage", "outcome"],
            registry=self.registry,
        )
        self.materialize_errors = Counter(
            "recloop_materialize_errors",
            "Failed steps of the online feature materializer (the online store was down).",
            registry=self.registry,
        )
        self.refresh_errors = Counter(
            "recloop_refresh_errors",
            "Failed refreshes of in-memory models from the store.",
            registry=self.registry,
        )
        self.model_load_errors = Counter(
            "recloop_model_load_errors",
            "Failed loads of a promoted model version, or of new items into loaded models.",
            registry=self.registry,
        )

        self.experiments_stopped = Counter(
            "recloop_experiments_stopped",
            "Experiments stopped because a guardrail tripped (automatic rollbacks).",
            registry=self.registry,
        )
        self.experiment_check_errors = Counter(
            "recloop_experiment_check_errors",
            "Failed checks of guarded experiments (the log could not be read).",
            registry=self.registry,
        )
        self.shadow_runs = Counter(
            "recloop_shadow_runs",
            "Shadow pipeline runs by outcome: ok, fallback, error, or skipped (queue full).",
            ["shadow", "outcome"],
            registry=self.registry,
        )
        self.shadow_seconds = Histogram(
            "recloop_shadow_seconds",
            "Time a shadow pipeline took to build its list.",
            ["shadow"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ramp_stage = Gauge(
            "recloop_experiment_ramp_stage",
            "The stage a staged canary serves at (0 is the first).",
            ["experiment"],
            registry=self.registry,
            # Every process follows the same record: any one's value is the stage.
            multiprocess_mode="max",
        )
        self.ramp_moves = Counter(
            "recloop_experiment_ramp_moves",
            "Stages a staged canary passed (a move up, or the ramp's completion).",
            ["experiment"],
            registry=self.registry,
        )

        # Per stage and per source, beside the request's total: which part of the pipeline
        # spends the latency budget. Stage and source names come from configuration (and
        # a rank stage is named without its model version), so the label sets are bounded.
        self.stage_seconds = Histogram(
            "recloop_stage_seconds",
            "Time one pipeline stage took (retrieve, filter, features, rank, gate, rerank, "
            "explore, fallback, cache), by app and stage.",
            ["app", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.source_seconds = Histogram(
            "recloop_source_seconds",
            "Time one candidate source took to answer (or to be given up on), by app and source.",
            ["app", "source"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.fallback_causes = Counter(
            "recloop_fallback_causes",
            "Degraded stages of served lists, by app, surface and cause (<stage>_<outcome>: "
            "retrieve_timeout, retrieve_error, retrieve_fallback (a source not loaded), "
            "features_fallback, rank_fallback, rank_error, rerank_error, explore_fallback, "
            "fallback_served (the fallback chain served), fallback_error).",
            ["app", "surface", "cause"],
            registry=self.registry,
        )
        self.source_timeouts = Counter(
            "recloop_source_timeouts",
            "Candidate sources given up on past their timeout, by app and source.",
            ["app", "source"],
            registry=self.registry,
        )
        self.response_cache = Counter(
            "recloop_response_cache",
            "Lookups of the response cache (when serving.response_cache_ttl_s > 0), by app, "
            "surface and result (hit, miss).",
            ["app", "surface", "result"],
            registry=self.registry,
        )
        self.served_lists = Counter(
            "recloop_served_lists",
            "Recommendation lists served, by app, surface and experiment variant.",
            ["app", "surface", "variant"],
            registry=self.registry,
        )
        self.served_items = Counter(
            "recloop_served_items",
            "Items served (impressions of served lists), by app, surface and variant.",
            ["app", "surface", "variant"],
            registry=self.registry,
        )
        self.served_clicks = Counter(
            "recloop_served_clicks",
            "Click events joined by requestId to a list this process served (one per item "
            "of a list), by app, surface and variant: online CTR is its rate over "
            "recloop_served_items'.",
            ["app", "surface", "variant"],
            registry=self.registry,
        )
        self.unjoined_clicks = Counter(
            "recloop_unjoined_clicks",
            "Click events with a requestId this process has not served recently (served by "
            "another process, or too long ago), by app.",
            ["app"],
            registry=self.registry,
        )
        self.event_lag = Histogram(
            "recloop_event_lag_seconds",
            "Server time minus event time of newly stored events, by app.",
            ["app"],
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.feature_rows = Counter(
            "recloop_feature_rows",
            "Candidate rows whose online features were read, by app.",
            ["app"],
            registry=self.registry,
        )
        self.feature_missing = Counter(
            "recloop_feature_missing",
            "Candidate rows whose value of an online feature was missing or not finite (a "
            "feature no part of the reader filled: a schema violation), by app and feature; "
            "its rate over recloop_feature_rows' is the missing rate.",
            ["app", "feature"],
            registry=self.registry,
        )
        self.model_created = Gauge(
            "recloop_model_created_timestamp_seconds",
            "When the model version this process serves was trained (its manifest's "
            "created_at), by app; the model's age is time() minus it.",
            ["app"],
            registry=self.registry,
            multiprocess_mode="min",
        )
        self.training_last = Gauge(
            "recloop_training_last_timestamp_seconds",
            "When the newest model version in the registry was trained, by app.",
            ["app"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.training_outcome = Gauge(
            "recloop_training_last_outcome",
            "1 for the outcome of the newest model version in the registry (promoted: it is "
            "the promoted version; not_promoted: a newer version than the promoted one was "
            "kept back), 0 for the other, by app and outcome.",
            ["app", "outcome"],
            registry=self.registry,
            multiprocess_mode="max",
        )

        self.training_runs = Counter(
            "recloop_training_runs",
            "Scheduled training runs ended, by app, job (train, tune), trigger (cadence, "
            "drift, ctr, events, items) and outcome (promoted, blocked, failed, abandoned).",
            ["app", "job", "trigger", "outcome"],
            registry=self.registry,
        )
        self.training_run_last = Gauge(
            "recloop_training_run_last_timestamp_seconds",
            "When the last scheduled training run ended, by app and outcome.",
            ["app", "outcome"],
            registry=self.registry,
            multiprocess_mode="max",
        )

    def watch(self, read: Callable[[], dict[str, float]]) -> None:
        """Export counters that another component keeps (read at scrape time)."""
        if self._multiprocess:
            self._callbacks.register(_CallbackCounters(read, str(os.getpid())))
        else:
            self.registry.register(_CallbackCounters(read))

    def watch_gauges(self, read: Callable[[], Iterable[GaugeSample]]) -> None:
        """Export gauges read at scrape time from another component (queue depths, coverage):
        nothing on the request path. With several processes each is labelled ``pid``."""
        if self._multiprocess:
            self._callbacks.register(_CallbackGauges(read, str(os.getpid())))
        else:
            self.registry.register(_CallbackGauges(read))

    def render_for(self, app_id: str) -> bytes:
        """``render`` as one app's admin may see it: every sample labelled with another app
        is left out (the service's own metrics, which have no app, are kept)."""
        own = f'app="{escape_label(app_id)}"'.encode()
        lines = []
        for line in self.render().splitlines(keepends=True):
            if not line.startswith(b"#"):
                found = _APP_LABEL.search(line)
                if found is not None and found.group(0)[1:] != own:
                    continue
            lines.append(line)
        return b"".join(lines)

    def render(self) -> bytes:
        """The text exposition format: every process's values summed when several serve."""
        if not self._multiprocess:
            return generate_latest(self.registry)
        shared = CollectorRegistry()
        MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        return generate_latest(shared) + generate_latest(self._callbacks)


_APP_LABEL = re.compile(rb'[{,]app="((?:[^"\\]|\\.)*)"')


def escape_label(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
