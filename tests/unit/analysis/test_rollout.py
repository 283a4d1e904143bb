"""Staged canaries: ramp configuration, assignment by stage, the stage record and the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from recloop.analysis.outcomes import ExperimentOutcomes, VariantOutcomes
from recloop.analysis.report import experiment_report
from recloop.analysis.rollout import (
    RampAction,
    RampRecord,
    RampState,
    StageChange,
    judge_stage,
    stage_window,
)
from recloop.config import ExperimentConfig
from recloop.experiments.assignment import Assigner

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
USERS = [f"u{n}" for n in range(20_000)]


def _ramped(**fields: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "name": "canary",
        "surface": "home",
        "variants": [{"name": "stable"}, {"name": "next", "model_version": "v2"}],
        "ramp": [0.05, 0.25, 0.5],
        "stage_hours": 2,
        "stage_min_users": 500,
        "guardrails": [{"metric": "hide_rate", "bad_direction": "up"}],
    }
    return ExperimentConfig.model_validate(data | fields)


def test_a_ramp_sets_the_canarys_share_stage_by_stage() -> None:
    config = _ramped()
    assert config.shares(0) == {"stable": 0.95, "next": 0.05}
    assert config.shares(2) == {"stable": 0.5, "next": 0.5}
    assert config.shares(9) == config.shares(2)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ramp": [0.5, 0.25]}, "stages must increase"),
        ({"ramp": [0.0, 0.5]}, "(0, 1]"),
        ({"ramp": [0.5, 1.5]}, "(0, 1]"),
        (
            {"variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]},
            "leave share out",
        ),
        (
            {"variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
            "two variants",
        ),
        ({"ramp": [], "variants": [{"name": "a"}, {"name": "b"}]}, "needs a share"),
    ],
)
def test_a_bad_ramp_is_refused_with_the_rule(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _ramped(**fields)


def test_the_canary_grows_by_stage_and_keeps_every_user_it_had() -> None:
    assigner = Assigner([_ramped()])
    canary_by_stage = []
    for stage in range(3):
        assigner.set_stage("canary", stage)
        canary_by_stage.append(
            {u for u in USERS if assigner.assign(u, "home", NOW).variant == "next"}
        )
    for stage, share in enumerate([0.05, 0.25, 0.5]):
        assert len(canary_by_stage[stage]) / len(USERS) == pytest.approx(share, abs=0.012)
    assert canary_by_stage[0] <= canary_by_stage[1] <= canary_by_stage[2]


def test_the_record_begins_once_and_moves_only_from_the_stage_it_is_at(tmp_path: Path) -> None:
    record = RampRecord(tmp_path / "ramps.json")
    first = record.begin("canary", NOW)
    again = record.begin("canary", NOW + timedelta(hours=5))
    assert (first.stage, first.since) == (again.stage, again.since) == (0, NOW)

    moved = record.move("canary", 0, 1, NOW + timedelta(hours=3), "stage 1 passed")
    assert moved is not None
    assert (moved.stage, moved.since) == (1, NOW + timedelta(hours=3))
    # A second replica judging the stale stage 0 moves nothing.
    assert record.move("canary", 0, 1, NOW + timedelta(hours=4), "late") is None
    done = record.move("canary", 1, 1, NOW + timedelta(hours=6), "passed", complete=True)
    assert done is not None
    assert done.complete
    assert done.since == NOW + timedelta(hours=3)
    assert record.move("canary", 1, 2, NOW + timedelta(hours=7), "after the end") is None
    assert [c.reason for c in record.read()["canary"].history] == [
        "ramp started",
        "stage 1 passed",
        "passed",
    ]


def test_an_unreadable_record_says_which_file(tmp_path: Path) -> None:
    path = tmp_path / "ramps.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"ramps\.json"):
        RampRecord(path).read()


def _variant(users: int, hide_rate: float, rng: np.random.Generator) -> VariantOutcomes:
    outcomes = VariantOutcomes()
    for n in range(users):
        unit = outcomes.unit(f"u{n}")
        unit["requests"] = 2
        unit["impressions"] = 20
        unit["clicks"] = float(rng.binomial(20, 0.05))
        unit["hides"] = float(rng.binomial(20, hide_rate))
        outcomes.latencies_ms.append(10.0)
    return outcomes


def _verdict(
    stable: int, canary: int, *, hides: float = 0.01, hours: float = 3, stage: int = 0
) -> tuple[RampAction, str]:
    config = _ramped()
    rng = np.random.default_rng(3)
    outcomes = ExperimentOutcomes(
        "canary",
        {"stable": _variant(stable, 0.01, rng), "next": _variant(canary, hides, rng)},
        NOW,
        NOW,
        0,
    )
    report = experiment_report(config, outcomes, shares=config.shares(stage))
    state = RampState("canary", stage, NOW, False, (StageChange(stage, NOW, "begun"),))
    verdict = judge_stage(config, state, report, NOW + timedelta(hours=hours), min_users=100)
    return verdict.action, verdict.reason


def test_a_stage_that_ran_its_time_with_enough_users_moves_on() -> None:
    action, reason = _verdict(9500, 500)
    assert action is RampAction.ADVANCE
    assert reason.startswith("stage 1/3 (5% canary) passed")


def test_a_stage_holds_until_its_time_is_up_and_its_users_are_in() -> None:
    assert _verdict(9500, 500, hours=1) == (
        RampAction.HOLD,
        "stage 1/3 (5% canary): 1.0 h of 2.0 h run",
    )
    action, reason = _verdict(4750, 250)
    assert action is RampAction.HOLD
    assert "waiting for 500 users per variant (next 250)" in reason


def test_more_hides_on_the_canary_roll_it_back_at_any_stage() -> None:
    action, reason = _verdict(9500, 500, hides=0.05, hours=0.5)
    assert action is RampAction.ROLLBACK
    assert reason.startswith("stage 1/3 (5% canary): ")
    assert "hide_rate" in reason


def test_too_few_users_to_judge_never_roll_back() -> None:
    action, _ = _verdict(1900, 60, hides=0.2, hours=0.5)
    assert action is RampAction.HOLD


def test_a_split_far_from_the_stages_shares_holds_the_ramp() -> None:
    action, reason = _verdict(5000, 5000)  # stage 0 expects 95 / 5
    assert action is RampAction.HOLD
    assert "sample ratio mismatch" in reason


def test_the_last_stage_passing_completes_the_ramp() -> None:
    action, reason = _verdict(5000, 5000, stage=2)
    assert action is RampAction.COMPLETE
    assert reason.startswith("stage 3/3 (50% canary) passed")


def test_a_full_canary_completes_at_once() -> None:
    config = _ramped(ramp=[0.5, 1.0])
    rng = np.random.default_rng(0)
    outcomes = ExperimentOutcomes("canary", {"next": _variant(50, 0.01, rng)}, NOW, NOW, 0)
    report = experiment_report(config, outcomes, shares=config.shares(1))
    assert report.srm is None  # no control share to check against
    state = RampState("canary", 1, NOW, False, ())
    assert judge_stage(config, state, report, NOW).action is RampAction.COMPLETE


def test_a_ramped_report_reads_only_its_current_stage() -> None:
    config = _ramped(start=NOW - timedelta(days=2))
    state = RampState("canary", 1, NOW, False, ())
    since, until, shares, note = stage_window(config, state)
    assert (since, until) == (NOW, None)
    assert shares == {"stable": 0.75, "next": 0.25}
    assert note is not None
    assert "stage 2 of 3 (25% canary)" in note
    plain = _ramped(ramp=[], variants=[{"name": "a", "share": 0.3}, {"name": "b", "share": 0.7}])
    assert stage_window(plain, None) == (None, None, {"a": 0.3, "b": 0.7}, None)
