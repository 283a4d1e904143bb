"""The scheduler's decision, driven by a fake clock and fake readings: cadences, each
trigger firing and not, no run while one runs, the backoff after failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recloop.config.drift import DriftSettings
from recloop.config.schedule import ScheduleSettings
from recloop.monitoring.schedule import (
    Decision,
    Drifted,
    History,
    Readings,
    SurfaceCtr,
    backoff,
    decide,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 8, 12, tzinfo=UTC)
DRIFT = DriftSettings(min_requests=50, p_value=0.01)


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def schedule(**given: Any) -> ScheduleSettings:
    return ScheduleSettings(enabled=True, **given)


def trained(hours: float, **given: Any) -> History:
    """A history whose last train run (and model) started ``hours`` ago."""
    given.setdefault("first_seen", ago(100))
    return History(last_started={"train": ago(hours)}, last_model=ago(hours), **given)


def run(history: History, readings: Readings | None = None, **settings: Any) -> Decision:
    return decide(NOW, schedule(**settings), DRIFT, history, readings or Readings())


# -- cadences ------------------------------------------------------------------------------


def test_a_new_app_trains_first_not_tunes() -> None:
    decision = run(History(first_seen=NOW))
    assert (decision.job, decision.trigger) == ("train", "cadence")
    assert decision.reason == "cadence: no train run or model version yet"


def test_train_is_due_once_its_cadence_has_passed_and_not_before() -> None:
    assert run(trained(23.5)).job is None
    decision = run(trained(24.5))
    assert (decision.job, decision.trigger) == ("train", "cadence")
    assert decision.reason == "cadence: last train run 24.5 h ago >= 24 h"


def test_a_model_trained_by_hand_counts_as_a_train_run() -> None:
    history = History(last_started={"train": ago(30)}, last_model=ago(2), first_seen=ago(30))
    assert run(history).job is None


def test_tune_is_due_a_week_after_the_first_record_and_resets_trains_clock() -> None:
    assert run(trained(1, first_seen=ago(160))).job is None
    decision = run(trained(1, first_seen=ago(170)))
    assert (decision.job, decision.trigger) == ("tune", "cadence")
    history = History(
        last_started={"train": ago(30), "tune": ago(3)}, last_model=ago(30), first_seen=ago(300)
    )
    assert run(history).job is None  # the tune run 3 h ago trained everything


def test_a_cadence_of_zero_never_falls_due() -> None:
    assert run(History(first_seen=ago(1000)), train_every_h=0, tune_every_h=0).job is None


# -- never two at once, backoff -----------------------------------------------------------


def test_nothing_starts_while_a_run_is_in_progress() -> None:
    readings = Readings(events=10**6, items=10**6)
    history = History(running=True, baseline_events=0, baseline_items=0)
    decision = run(history, readings, new_events=1, new_items=1)
    assert decision == Decision(None, "", "a run is in progress")


def test_backoff_doubles_with_each_failure_up_to_its_cap() -> None:
    settings = schedule(failure_backoff_h=1, max_backoff_h=6)
    assert [backoff(settings, n).total_seconds() / 3600 for n in range(6)] == [0, 1, 2, 4, 6, 6]


def test_after_failures_nothing_starts_until_the_backoff_has_passed() -> None:
    failing = trained(48, failures=2, last_failure=ago(1.5))
    decision = run(failing)
    assert decision.job is None
    assert decision.reason.startswith("backing off after 2 failed run(s) until ")
    recovered = trained(48, failures=2, last_failure=ago(2.5))
    assert run(recovered).job == "train"


# -- triggers ---------------------------------------------------------------------------


def drifted(psi: float, p_value: float = 1e-6, requests: float = 200) -> Readings:
    return Readings(
        drift=(Drifted("item_age_days", 0.05, 0.5), Drifted("session_length", psi, p_value)),
        sampled_requests=requests,
    )


def test_drift_over_the_threshold_starts_a_train_run_and_says_where() -> None:
    decision = run(trained(8), drifted(0.41))
    assert decision == Decision("train", "drift", "drift: PSI 0.41 on session_length > 0.25")


@pytest.mark.parametrize(
    ("readings", "settings"),
    [
        (drifted(0.2), {}),  # under the threshold
        (drifted(0.41, p_value=0.2), {}),  # the test does not reject
        (drifted(0.41, requests=10), {}),  # too few sampled requests
        (drifted(float("nan")), {}),
        (drifted(0.41), {"drift_psi": 0}),  # the trigger is off
        (drifted(0.41), {"drift_psi": 0.5}),  # a higher threshold
    ],
)
def test_drift_that_does_not_count_starts_nothing(
    readings: Readings, settings: dict[str, Any]
) -> None:
    assert run(trained(8), readings, **settings).job is None


def ctr(recent: float, trailing: float, items: float = 5000) -> Readings:
    return Readings(
        ctr=(
            SurfaceCtr("similar", 100, items, 100, items),
            SurfaceCtr("home", recent * items, items, trailing * items, items),
        )
    )


def test_a_ctr_fallen_below_its_band_starts_a_train_run() -> None:
    decision = run(trained(8), ctr(0.03, 0.05))
    assert (decision.job, decision.trigger) == ("train", "ctr")
    assert decision.reason == "ctr: home 0.0300 over the last 1 h < 0.8 x trailing 0.0500"


@pytest.mark.parametrize(
    ("readings", "settings"),
    [
        (ctr(0.045, 0.05), {}),  # a 10 % dip is within the band
        (ctr(0.03, 0.05, items=500), {}),  # too few impressions to read
        (ctr(0.03, 0.05), {"ctr_drop": 0}),
        (ctr(0.03, 0.05), {"ctr_drop": 0.5}),
        (ctr(0.0, 0.0), {}),  # nothing was ever clicked: no level to fall from
    ],
)
def test_a_ctr_within_its_band_starts_nothing(readings: Readings, settings: dict[str, Any]) -> None:
    assert run(trained(8), readings, **settings).job is None


def test_a_volume_of_new_events_or_items_starts_a_train_run() -> None:
    history = trained(8, baseline_events=1000, baseline_items=50)
    events = run(history, Readings(events=12_000, items=51), new_events=10_000, new_items=100)
    assert events == Decision("train", "events", "events: 11,000 new since the last run >= 10,000")
    items = run(history, Readings(events=1500, items=160), new_events=10_000, new_items=100)
    assert items == Decision("train", "items", "items: 110 new since the last run >= 100")


def test_volumes_below_their_thresholds_or_unset_start_nothing() -> None:
    history = trained(8, baseline_events=1000, baseline_items=50)
    assert (
        run(history, Readings(events=5000, items=60), new_events=10_000, new_items=100).job is None
    )
    assert run(history, Readings(events=10**6, items=10**6)).job is None  # both unset
    unknown = trained(8)  # no baseline read yet
    assert run(unknown, Readings(events=10**6), new_events=10).job is None


def test_triggers_wait_after_a_run_so_a_drift_a_retraining_does_not_fix_cannot_loop() -> None:
    decision = run(trained(2), drifted(0.9))
    assert decision == Decision(None, "", "triggers wait 6 h after a run")
    assert run(trained(2), drifted(0.9), min_interval_h=1).trigger == "drift"


def test_a_due_cadence_comes_before_a_trigger() -> None:
    decision = run(trained(30), drifted(0.9))
    assert (decision.job, decision.trigger) == ("train", "cadence")


def test_triggers_alone_with_no_cadence() -> None:
    history = History(first_seen=ago(1000))
    assert run(history, train_every_h=0, tune_every_h=0).job is None
    decision = run(history, drifted(0.5), train_every_h=0, tune_every_h=0)
    assert decision.trigger == "drift"
