"""Feature missing counts, the served model's age and training outcome, event lag."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from recloop.domain import Event, EventType
from recloop.features.candidates import FeatureMatrix
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.served import ServedTracker
from recloop.registry.artifacts import ModelRegistry, VersionManifest
from recloop.runtime.monitors import CountedFeatures, ModelStatus, event_observer

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Reader:
    def __init__(self, values: np.ndarray) -> None:
        self.values = values

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
        return FeatureMatrix(tuple(item_ids), ("f_ok", "f_nan", "f_inf"), self.values)


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_missing_and_non_finite_feature_values_are_counted_per_feature() -> None:
    metrics = Metrics()
    values = np.array([[1.0, np.nan, 2.0], [0.0, np.nan, np.inf], [3.0, 4.0, 5.0]])
    reader = CountedFeatures(Reader(values), metrics)

    for _ in range(2):
        matrix = reader.matrix(
            "a", "u", ["i1", "i2", "i3"], session_id=None, device=None, surface=None, now=NOW
        )

    assert matrix.values is values  # passed through untouched
    assert _sample(metrics, "recloop_feature_rows_total", app="a") == 6
    assert _sample(metrics, "recloop_feature_missing_total", app="a", feature="f_nan") == 4
    assert _sample(metrics, "recloop_feature_missing_total", app="a", feature="f_inf") == 2
    # A feature never missing has its series at 0, so a rate over it sees a first miss.
    assert _sample(metrics, "recloop_feature_missing_total", app="a", feature="f_ok") == 0


def _version(registry: ModelRegistry, version: str, created: datetime) -> None:
    with registry.writing("a", version) as directory:
        registry.write_manifest(directory, VersionManifest(version, "a", created, None, ()))


def test_model_age_and_the_newest_versions_outcome_come_from_the_manifests(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path)
    metrics = Metrics()
    served: dict[str, str | None] = {"a": "v1"}
    status = ModelStatus(registry, lambda: served, metrics)
    _version(registry, "v1", NOW - timedelta(days=3))
    registry.promote("a", "v1")

    status.refresh()

    created = (NOW - timedelta(days=3)).timestamp()
    assert _sample(metrics, "recloop_model_created_timestamp_seconds", app="a") == created
    assert _sample(metrics, "recloop_training_last_timestamp_seconds", app="a") == created
    assert _sample(metrics, "recloop_training_last_outcome", app="a", outcome="promoted") == 1
    assert _sample(metrics, "recloop_training_last_outcome", app="a", outcome="not_promoted") == 0

    _version(registry, "v2", NOW)  # trained, not promoted (a gate kept it back)
    status.refresh()

    assert _sample(metrics, "recloop_model_created_timestamp_seconds", app="a") == created
    assert _sample(metrics, "recloop_training_last_timestamp_seconds", app="a") == NOW.timestamp()
    assert _sample(metrics, "recloop_training_last_outcome", app="a", outcome="promoted") == 0
    assert _sample(metrics, "recloop_training_last_outcome", app="a", outcome="not_promoted") == 1

    registry.promote("a", "v2")
    served["a"] = "v2"
    status.refresh()

    assert _sample(metrics, "recloop_model_created_timestamp_seconds", app="a") == NOW.timestamp()
    assert _sample(metrics, "recloop_training_last_outcome", app="a", outcome="promoted") == 1


def test_a_registry_that_cannot_be_read_leaves_the_gauges_alone(tmp_path: Path) -> None:
    metrics = Metrics()

    def broken() -> dict[str, str | None]:
        raise OSError("gone")

    ModelStatus(ModelRegistry(tmp_path), broken, metrics).refresh()  # does not raise

    assert _sample(metrics, "recloop_model_created_timestamp_seconds", app="a") is None


def test_event_lag_is_server_time_minus_event_time() -> None:
    metrics = Metrics()
    observe = event_observer(metrics, ServedTracker(metrics))

    def event(lag: timedelta) -> Event:
        return Event("a", "e", "u", EventType.VIEW, NOW - lag, NOW, item_id="i1")

    observe("a", [event(timedelta(0)), event(timedelta(minutes=10)), event(-timedelta(seconds=9))])

    assert _sample(metrics, "recloop_event_lag_seconds_count", app="a") == 3
    assert _sample(metrics, "recloop_event_lag_seconds_bucket", app="a", le="1.0") == 2
    assert _sample(metrics, "recloop_event_lag_seconds_bucket", app="a", le="300.0") == 2
    assert _sample(metrics, "recloop_event_lag_seconds_bucket", app="a", le="900.0") == 3
    assert _sample(metrics, "recloop_event_lag_seconds_sum", app="a") == 600
