"""What the scheduler reads: the CTR windows from sampled counters, the served totals and the
drift from a service's /metrics, the run records it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recloop.config import Settings
from recloop.monitoring.drift import FeatureDrift
from recloop.monitoring.drift_monitor import DriftState
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.schedule import Drifted, History, SurfaceCtr, decide
from recloop.registry.runs import RunLog, RunRecord
from recloop.runtime.readings import CtrHistory, ScrapedReadings, ServiceReadings, served_totals

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 8, tzinfo=UTC)


def test_the_ctr_windows_are_differences_of_the_sampled_totals() -> None:
    history = CtrHistory(window_h=1, trailing_h=2)
    # Every half hour: 1000 impressions; 50 clicks an hour ago and before, 20 since.
    clicks = 0.0
    for step in range(9):
        now = T0 + timedelta(minutes=30 * step)
        history.add("a", now, {"home": (clicks, 1000.0 * step)})
        clicks += 25 if step < 6 else 10
    [home] = history.read("a", now)
    assert home == SurfaceCtr("home", 20, 2000, 100, 4000)
    assert history.read("other", now) == ()


def test_a_window_not_yet_covered_reads_what_was_sampled() -> None:
    history = CtrHistory(window_h=1, trailing_h=24)
    history.add("a", T0, {"home": (0.0, 0.0)})
    history.add("a", T0 + timedelta(minutes=10), {"home": (5.0, 100.0)})
    [home] = history.read("a", T0 + timedelta(minutes=10))
    assert (home.recent_clicks, home.recent_items, home.trailing_items) == (5.0, 100.0, 0.0)


def test_old_samples_are_dropped_past_both_windows() -> None:
    history = CtrHistory(window_h=1, trailing_h=1)
    for minutes in range(0, 600, 10):
        history.add("a", T0 + timedelta(minutes=minutes), {})
    assert len(history._samples["a"]) <= 14


def test_served_totals_sum_variants_of_one_app() -> None:
    metrics = Metrics()
    metrics.served_items.labels("a", "home", "control").inc(100)
    metrics.served_items.labels("a", "home", "treatment").inc(50)
    metrics.served_clicks.labels("a", "home", "treatment").inc(7)
    metrics.served_items.labels("b", "home", "control").inc(999)
    samples = [
        (s.name, s.labels, s.value)
        for counter in (metrics.served_items, metrics.served_clicks)
        for family in counter.collect()
        for s in family.samples
    ]
    assert served_totals(samples, "a") == {"home": (7.0, 150.0)}


METRICS = """\
# TYPE recloop_drift_feature_psi gauge
recloop_drift_feature_psi{app="a",feature="session_length",pid="1"} 0.1
recloop_drift_feature_psi{app="a",feature="session_length",pid="2"} 0.4
recloop_drift_feature_psi{app="b",feature="session_length",pid="1"} 0.9
# TYPE recloop_drift_feature_p_value gauge
recloop_drift_feature_p_value{app="a",feature="session_length",pid="1"} 0.2
recloop_drift_feature_p_value{app="a",feature="session_length",pid="2"} 0.001
# TYPE recloop_drift_score_psi gauge
recloop_drift_score_psi{app="a",pid="1"} 0.05
# TYPE recloop_drift_score_p_value gauge
recloop_drift_score_p_value{app="a",pid="1"} 0.5
# TYPE recloop_drift_sampled_requests gauge
recloop_drift_sampled_requests{app="a",pid="1"} 30
recloop_drift_sampled_requests{app="a",pid="2"} 40
# TYPE recloop_served_items counter
recloop_served_items_total{app="a",surface="home",variant="control"} 1000
# TYPE recloop_served_clicks counter
recloop_served_clicks_total{app="a",surface="home",variant="control"} 40
"""


def test_a_workers_readings_come_from_the_services_metrics(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    clock = iter([T0, T0 + timedelta(minutes=5)])
    readings = ScrapedReadings(settings, None, lambda: METRICS, lambda: next(clock))  # type: ignore[arg-type]
    first = readings("a")
    assert first.sampled_requests == 70
    assert first.drift == (Drifted("score", 0.05, 0.5), Drifted("session_length", 0.4, 0.001))
    assert first.events is None
    assert readings("a").ctr == (SurfaceCtr("home", 0.0, 0.0, 0.0, 0.0),)


def test_a_service_that_cannot_be_read_leaves_out_drift_and_ctr(tmp_path: Path) -> None:
    def down() -> str:
        raise OSError("connection refused")

    readings = ScrapedReadings(Settings(data_dir=tmp_path), None, down)  # type: ignore[arg-type]
    assert readings("a").drift == ()


def test_run_records_read_back_newest_first_and_prune_keeps_a_running_one(
    tmp_path: Path,
) -> None:
    runs = RunLog(tmp_path)
    running = RunRecord("20261201T000000Z-aaaaaa", "a", "train", "cadence", "why", T0)
    runs.write(running)
    for day in (2, 3, 4):
        started = T0 + timedelta(days=day)
        record = RunRecord(f"2026120{day}T000000Z-aaaaaa", "a", "train", "drift", "d", started)
        runs.write(record.ended(started + timedelta(minutes=1), "promoted", version=f"v{day}"))
    assert [r.version for r in runs.recent("a")] == ["v4", "v3", "v2", None]
    assert runs.recent("a", limit=1)[0].seconds == 60
    assert runs.prune("a", keep=1) == 2
    assert [r.run_id for r in runs.recent("a")] == [
        "20261204T000000Z-aaaaaa",
        "20261201T000000Z-aaaaaa",
    ]
    assert runs.get("a", running.run_id) == running
    assert runs.apps() == ["a"]


class _Drifting:
    """The drift monitor as the readings see it: one app's state."""

    def state(self, app_id: str) -> DriftState:
        return DriftState(
            app_id,
            "v1",
            120.0,
            (FeatureDrift("session_length", 0.41, 1e-5, 900), FeatureDrift("age", 0.01, 0.9, 900)),
            FeatureDrift("score", 0.3, 1e-4, 900),
            (),
            None,
        )


def test_the_services_readings_feed_the_decision(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, schedule={"enabled": True})
    metrics = Metrics()
    times = iter([T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)])
    readings = ServiceReadings(settings, None, _Drifting(), metrics, lambda: next(times))  # type: ignore[arg-type]
    readings("a")  # the first sample is the baseline: what was served before is not known
    metrics.served_items.labels("a", "home", "control").inc(3000)
    metrics.served_clicks.labels("a", "home", "control").inc(150)
    readings("a")
    metrics.served_items.labels("a", "home", "control").inc(3000)
    metrics.served_clicks.labels("a", "home", "control").inc(60)
    now = readings("a")
    assert now.sampled_requests == 120
    assert Drifted("score", 0.3, 1e-4) in now.drift
    assert now.ctr == (SurfaceCtr("home", 60, 3000, 150, 3000),)
    assert now.events is None  # no volume trigger: nothing counted
    decision = decide(
        T0 + timedelta(hours=2),
        settings.schedule,
        settings.serving.drift,
        History(last_started={"train": T0 - timedelta(hours=8)}, first_seen=T0),
        now,
    )
    assert decision.reason == "drift: PSI 0.41 on session_length > 0.25 (and 1 more)"
    no_drift = settings.schedule.model_copy(update={"drift_psi": 0.0})
    history = History(last_started={"train": T0 - timedelta(hours=8)}, first_seen=T0)
    fallen = decide(T0 + timedelta(hours=2), no_drift, settings.serving.drift, history, now)
    assert fallen.reason == "ctr: home 0.0200 over the last 1 h < 0.8 x trailing 0.0500"
