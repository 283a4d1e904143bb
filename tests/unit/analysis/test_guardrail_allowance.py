"""Guardrails with an allowance: a change within so much of the control, in the metric's own
units, is tolerated whatever its relative size; only a change past both trips."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from recloop.analysis.decision import Direction, Guardrail, GuardrailStatus, check_guardrail
from recloop.analysis.stats import ComparisonResult
from recloop.config import GuardrailConfig

pytestmark = pytest.mark.unit


def _p99(
    control: float,
    treatment: float,
    ci: tuple[float, float],
    p: float,
    metric: str = "latency_p99",
) -> ComparisonResult:
    relative = treatment / control - 1 if control else math.nan
    rel_ci = (ci[0] / control, ci[1] / control) if control else (math.nan, math.nan)
    return ComparisonResult(
        metric=metric,
        test="bootstrap quantile 0.99",
        control_units=2000,
        treatment_units=2000,
        control_value=control,
        treatment_value=treatment,
        absolute_diff=treatment - control,
        absolute_ci=ci,
        relative_diff=relative,
        relative_ci=rel_ci,
        statistic=3.0,
        p_value=p,
        alpha=0.05,
    )


LATENCY = Guardrail("latency_p99", Direction.UP, 1.0, allowance=100.0)


def test_a_loaded_machine_slowing_both_arms_passes() -> None:
    # Both arms at 150-174 ms: significantly slower, by 24 ms, well within 100 ms.
    result = _p99(150.0, 174.0, (10.0, 40.0), 0.001)
    check = check_guardrail(LATENCY, result)
    assert check.status is GuardrailStatus.PASS
    assert "174 against 150" in check.reason
    # The same figures under a plain 10% relative rule trip: what the allowance is for.
    plain = check_guardrail(Guardrail("latency_p99", Direction.UP, 0.10), result)
    assert plain.status is GuardrailStatus.TRIPPED


def test_a_treatment_slower_past_both_the_allowance_and_the_tolerance_trips() -> None:
    check = check_guardrail(LATENCY, _p99(60.0, 300.0, (200.0, 280.0), 0.0001))
    assert check.status is GuardrailStatus.TRIPPED
    assert "past what is tolerated (100 or 100% over the control)" in check.reason


def test_whichever_is_more_past_the_allowance_but_within_the_tolerance_passes() -> None:
    # +150 ms over a 400 ms control is +37.5%: within "double it".
    check = check_guardrail(LATENCY, _p99(400.0, 550.0, (120.0, 180.0), 0.0001))
    assert check.status is GuardrailStatus.PASS


def test_past_both_without_significance_is_inconclusive() -> None:
    check = check_guardrail(LATENCY, _p99(60.0, 300.0, (-20.0, 400.0), 0.2))
    assert check.status is GuardrailStatus.INCONCLUSIVE


def test_a_control_at_zero_is_judged_by_the_allowance_alone() -> None:
    guardrail = Guardrail("latency_p99", Direction.UP, 0.0, allowance=100.0)
    assert (
        check_guardrail(guardrail, _p99(0.0, 150.0, (120.0, 180.0), 0.001)).status
        is GuardrailStatus.TRIPPED
    )
    assert (
        check_guardrail(guardrail, _p99(0.0, 50.0, (20.0, 80.0), 0.001)).status
        is GuardrailStatus.PASS
    )


def test_a_bad_direction_down_counts_falls() -> None:
    guardrail = Guardrail("coverage", Direction.DOWN, 0.0, allowance=10.0)
    fell_a_little = _p99(100.0, 95.0, (-8.0, -2.0), 0.001, metric="coverage")
    fell_a_lot = _p99(100.0, 70.0, (-40.0, -20.0), 0.001, metric="coverage")
    assert check_guardrail(guardrail, fell_a_little).status is GuardrailStatus.PASS
    assert check_guardrail(guardrail, fell_a_lot).status is GuardrailStatus.TRIPPED


def test_non_inferiority_needs_the_interval_within_the_allowance() -> None:
    guardrail = Guardrail(
        "latency_p99", Direction.UP, 0.0, require_non_inferiority=True, allowance=100.0
    )
    wide = _p99(60.0, 80.0, (-50.0, 160.0), 0.5)
    narrow = _p99(60.0, 80.0, (5.0, 40.0), 0.01)
    assert check_guardrail(guardrail, wide).status is GuardrailStatus.INCONCLUSIVE
    assert check_guardrail(guardrail, narrow).status is GuardrailStatus.PASS


def test_a_negative_allowance_is_refused() -> None:
    with pytest.raises(ValueError, match="allowance"):
        Guardrail("latency_p99", Direction.UP, allowance=-1.0)
    with pytest.raises(ValidationError, match="allowance"):
        GuardrailConfig(metric="latency_p99", bad_direction="up", allowance=-1.0)
