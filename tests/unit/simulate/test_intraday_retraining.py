"""The per-day figures of drift-triggered retraining in a demo run (recloop.demo.retraining)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recloop.demo.retraining import Check, Retraining, per_day
from recloop.monitoring.schedule import Decision, Drifted

START = datetime(2026, 1, 1, tzinfo=UTC)
NOTHING = Decision(None, "", "nothing due")
TRAIN = Decision("train", "drift", "drift: PSI 0.40 on score > 0.25")


def _check(hours: float, psi: float, requests: float, decision: Decision = NOTHING) -> Check:
    at = START + timedelta(hours=hours)
    return Check(at, (at - START).days, requests, Drifted("score", psi, 0.0), decision)


def test_a_day_reads_the_largest_psi_of_a_large_enough_sample() -> None:
    checks = [
        _check(2, 0.9, requests=10),  # too small a sample: ignored
        _check(4, 0.3, requests=60),
        _check(6, 0.2, requests=80),
    ]
    (day,) = per_day(1, checks, [], min_requests=50)
    assert day.checks == 3
    assert day.max_psi == 0.3
    assert day.max_psi_feature == "score"
    assert day.first_trigger_at is None


def test_a_day_without_a_counted_sample_has_no_psi() -> None:
    days = per_day(2, [_check(3, 0.9, requests=10)], [], min_requests=50)
    assert [d.max_psi for d in days] == [None, None]
    assert [d.checks for d in days] == [1, 0]


def test_triggers_and_versions_fall_on_their_days() -> None:
    checks = [
        _check(26, 0.1, requests=100),
        _check(28, 0.5, requests=100, decision=TRAIN),
        _check(30, 0.6, requests=100, decision=TRAIN),
    ]
    nightly = Retraining(START + timedelta(hours=23.9), 0, "nightly", "night", "v1", True)
    triggered = Retraining(
        START + timedelta(hours=28), 1, "drift", TRAIN.reason, "v2", False, ("no_regression",)
    )
    days = per_day(3, checks, [nightly, triggered], min_requests=50)
    assert days[0].retrainings == (nightly,)
    assert days[1].retrainings == (triggered,)
    assert days[1].first_trigger_at == START + timedelta(hours=28)
    assert days[1].max_psi == 0.6
    assert days[2].retrainings == ()
    assert days[2].checks == 0
