"""A/B statistics: the tests, SRM, power analysis, guardrails and the ship decision."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from recloop.analysis.decision import (
    Decision,
    Direction,
    Guardrail,
    GuardrailStatus,
    check_guardrail,
    decide,
)
from recloop.analysis.power import minimum_detectable_effect, units_needed, units_per_variant
from recloop.analysis.stats import (
    SRM_P_THRESHOLD,
    ComparisonResult,
    bootstrap_quantile_test,
    delta_method_ratio_variance,
    ratio_summary,
    ratio_ztest,
    sample_ratio_mismatch,
    two_proportion_ztest,
    welch_ttest,
)

pytestmark = pytest.mark.unit


def _users(rng: np.random.Generator, n: int, ctr: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Per-user clicks and impressions: heavy-tailed activity, per-user click rates."""
    impressions = 1 + rng.poisson(rng.lognormal(2.0, 1.0, size=n))
    rates = rng.beta(2.0, 2.0 / ctr - 2.0, size=n)
    return rng.binomial(impressions, rates).astype(float), impressions.astype(float)


def test_delta_method_variance_matches_a_large_sample_bootstrap() -> None:
    rng = np.random.default_rng(0)
    clicks, impressions = _users(rng, 3000)
    delta = delta_method_ratio_variance(clicks, impressions)
    idx = rng.integers(3000, size=(3000, 3000))
    boot = clicks[idx].sum(axis=1) / impressions[idx].sum(axis=1)
    assert delta == pytest.approx(float(boot.var(ddof=1)), rel=0.1)
    # Clustering by user matters: impressions treated as independent trials would
    # understate the variance.
    p = clicks.sum() / impressions.sum()
    assert delta > 1.5 * p * (1 - p) / impressions.sum()


def test_delta_method_variance_with_one_trial_per_unit_is_the_binomial_variance() -> None:
    x = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    assert delta_method_ratio_variance(x, np.ones(8)) == pytest.approx(x.var(ddof=1) / 8)


def test_ratio_summary_reports_unit_variance_for_power_analysis() -> None:
    rng = np.random.default_rng(1)
    clicks, impressions = _users(rng, 500)
    summary = ratio_summary(clicks, impressions)
    assert summary.value == pytest.approx(clicks.sum() / impressions.sum())
    assert summary.unit_variance == pytest.approx(summary.variance * 500)
    assert json.dumps(summary.to_dict(), allow_nan=False)


def test_ratio_ztest_false_positive_rate_is_near_alpha_on_aa_data() -> None:
    rng = np.random.default_rng(2)
    runs = 1500
    rejections = 0
    for _ in range(runs):
        c_clicks, c_imps = _users(rng, 400)
        t_clicks, t_imps = _users(rng, 400)
        rejections += ratio_ztest(c_clicks, c_imps, t_clicks, t_imps).significant
    # 0.05 +- about 3.5 standard errors of a rate over 1500 runs.
    assert rejections / runs == pytest.approx(0.05, abs=0.02)


def test_two_proportion_ztest_power_is_near_target_at_the_computed_mde() -> None:
    rng = np.random.default_rng(3)
    baseline, units = 0.1, 4000
    mde = minimum_detectable_effect(baseline, units, alpha=0.05, power=0.8).mde_absolute
    runs = 2000
    control = rng.binomial(units, baseline, size=runs)
    treatment = rng.binomial(units, baseline + mde, size=runs)
    hits = sum(
        two_proportion_ztest(int(c), units, int(t), units).significant
        for c, t in zip(control, treatment, strict=True)
    )
    assert hits / runs == pytest.approx(0.8, abs=0.03)


def test_ratio_ztest_power_is_near_target_at_the_mde_from_the_unit_variance() -> None:
    rng = np.random.default_rng(4)
    units = 1500
    pilot = ratio_summary(*_users(rng, 20000))
    power = minimum_detectable_effect(pilot.value, units, variance=pilot.unit_variance)
    lift = 1.0 + power.mde_relative
    runs, hits = 600, 0
    for _ in range(runs):
        c_clicks, c_imps = _users(rng, units)
        t_clicks, t_imps = _users(rng, units, ctr=0.05 * lift)
        hits += ratio_ztest(c_clicks, c_imps, t_clicks, t_imps).significant
    assert hits / runs == pytest.approx(0.8, abs=0.06)


def test_two_proportion_z_squared_is_the_uncorrected_chi_square() -> None:
    result = two_proportion_ztest(120, 1000, 150, 1000)
    chi2 = stats.chi2_contingency([[120, 880], [150, 850]], correction=False)
    assert result.statistic**2 == pytest.approx(chi2.statistic)
    assert result.p_value == pytest.approx(chi2.pvalue)
    assert result.absolute_diff == pytest.approx(0.03)
    assert result.relative_diff == pytest.approx(0.25)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(-10_000, 10_000).map(lambda v: v / 10), min_size=2, max_size=40),
    st.lists(st.integers(-10_000, 10_000).map(lambda v: v / 10), min_size=2, max_size=40),
    st.floats(0.01, 0.2),
)
def test_welch_matches_scipy_ttest_ind_with_unequal_variances(
    control: list[float], treatment: list[float], alpha: float
) -> None:
    if len(set(control)) < 2 or len(set(treatment)) < 2:
        return  # scipy warns of precision loss on a constant arm (and gives NaN on two)
    expected = stats.ttest_ind(treatment, control, equal_var=False)
    result = welch_ttest(control, treatment, alpha=alpha)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-6, abs=1e-9)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)
    assert result.degrees_of_freedom == pytest.approx(expected.df, rel=1e-6)
    ci = expected.confidence_interval(1 - alpha)
    assert result.absolute_ci == pytest.approx((ci.low, ci.high), rel=1e-6, abs=1e-9)


def test_welch_on_constant_arms_is_certain_about_a_difference() -> None:
    assert welch_ttest([1.0, 1.0], [2.0, 2.0]).p_value == 0.0
    assert welch_ttest([1.0, 1.0], [1.0, 1.0]).p_value == 1.0


def test_srm_flags_a_52_48_split_on_100k_units() -> None:
    result = sample_ratio_mismatch({"a": 52_000, "b": 48_000}, {"a": 0.5, "b": 0.5})
    assert result.mismatch
    assert result.p_value < SRM_P_THRESHOLD


def test_srm_passes_an_exact_50_50_split_and_an_exact_90_10_split() -> None:
    assert not sample_ratio_mismatch({"a": 50_000, "b": 50_000}, {"a": 1, "b": 1}).mismatch
    result = sample_ratio_mismatch({"a": 90_000, "b": 10_000}, {"a": 0.9, "b": 0.1})
    assert not result.mismatch
    assert result.p_value == pytest.approx(1.0)
    assert json.loads(json.dumps(result.to_dict()))["mismatch"] is False


def test_srm_rejects_variants_that_do_not_match_the_shares() -> None:
    with pytest.raises(ValueError, match="same"):
        sample_ratio_mismatch({"a": 1, "c": 1}, {"a": 0.5, "b": 0.5})


def test_units_per_variant_is_daily_traffic_times_days_times_share() -> None:
    assert units_per_variant(10_000, 14, 0.5) == 70_000


@given(
    st.floats(0.01, 0.5),
    st.integers(100, 10_000_000),
    st.floats(0.01, 0.1),
    st.floats(0.5, 0.99),
)
def test_units_needed_inverts_the_minimum_detectable_effect(
    rate: float, units: int, alpha: float, power: float
) -> None:
    mde = minimum_detectable_effect(rate, units, alpha=alpha, power=power)
    needed = units_needed(rate, mde_relative=mde.mde_relative, alpha=alpha, power=power)
    assert needed.units_per_variant == pytest.approx(units, rel=1e-6, abs=1)
    assert mde.mde_absolute == pytest.approx(mde.mde_relative * rate)


def test_mde_shrinks_with_the_square_root_of_the_units() -> None:
    small = minimum_detectable_effect(0.05, 10_000)
    large = minimum_detectable_effect(0.05, 40_000)
    assert small.mde_absolute == pytest.approx(2 * large.mde_absolute)
    # The textbook figure: 80% power at 5% two-sided is 2.8 standard errors.
    assert small.mde_absolute == pytest.approx(
        2.8016 * math.sqrt(2 * 0.05 * 0.95 / 10_000), rel=1e-4
    )


def test_power_analysis_rejects_a_rate_outside_zero_one_without_a_variance() -> None:
    with pytest.raises(ValueError, match="rate"):
        minimum_detectable_effect(3.0, 1000)
    assert minimum_detectable_effect(3.0, 1000, variance=4.0).mde_absolute > 0


def test_bootstrap_quantile_test_detects_a_twenty_percent_rise_in_p99() -> None:
    rng = np.random.default_rng(5)
    control = rng.lognormal(3.0, 0.5, size=3000)
    treatment = 1.2 * rng.lognormal(3.0, 0.5, size=3000)
    result = bootstrap_quantile_test(
        control, treatment, quantile=0.99, rng=rng, resamples=400, metric="latency_p99"
    )
    assert result.significant
    assert result.relative_ci[0] < 0.2 < result.relative_ci[1]


def _result(
    metric: str, relative: float, ci: tuple[float, float], p: float, alpha: float = 0.05
) -> ComparisonResult:
    return ComparisonResult(
        metric=metric,
        test="test",
        control_units=1000,
        treatment_units=1000,
        control_value=1.0,
        treatment_value=1.0 + relative,
        absolute_diff=relative,
        absolute_ci=ci,
        relative_diff=relative,
        relative_ci=ci,
        statistic=0.0,
        p_value=p,
        alpha=alpha,
    )


WIN = _result("ctr", 0.04, (0.01, 0.07), 0.01)
BALANCED = sample_ratio_mismatch({"a": 5000, "b": 5000}, {"a": 0.5, "b": 0.5})
LATENCY = Guardrail("latency_p99", Direction.UP, tolerance=0.10)
HIDES = Guardrail("hide_rate", Direction.UP)
COVERAGE = Guardrail("coverage", Direction.DOWN, tolerance=0.05)


def test_significant_win_with_passing_guardrails_ships() -> None:
    checks = [
        check_guardrail(LATENCY, _result("latency_p99", 0.03, (0.01, 0.05), 0.001)),
        check_guardrail(HIDES, _result("hide_rate", 0.01, (-0.02, 0.04), 0.5)),
    ]
    decision = decide(WIN, srm=BALANCED, guardrails=checks)
    assert decision.decision is Decision.SHIP
    assert [c.status for c in checks] == [GuardrailStatus.PASS, GuardrailStatus.PASS]
    json.dumps(decision.to_dict(), allow_nan=False)


def test_tripped_guardrail_blocks_a_ship() -> None:
    latency = check_guardrail(LATENCY, _result("latency_p99", 0.15, (0.12, 0.18), 1e-6))
    hides = check_guardrail(HIDES, _result("hide_rate", 0.05, (0.01, 0.09), 0.01))
    coverage = check_guardrail(COVERAGE, _result("coverage", -0.08, (-0.1, -0.06), 1e-4))
    for check in (latency, hides, coverage):
        assert check.status is GuardrailStatus.TRIPPED
        decision = decide(WIN, srm=BALANCED, guardrails=[check])
        assert decision.decision is Decision.DONT_SHIP
        assert any("guardrail tripped" in r for r in decision.reasons)


def test_rise_past_tolerance_without_significance_keeps_a_win_running() -> None:
    check = check_guardrail(LATENCY, _result("latency_p99", 0.12, (-0.02, 0.26), 0.2))
    assert check.status is GuardrailStatus.INCONCLUSIVE
    assert decide(WIN, guardrails=[check]).decision is Decision.KEEP_RUNNING


def test_non_inferiority_guardrail_needs_the_interval_inside_the_tolerance() -> None:
    strict = Guardrail("latency_p99", Direction.UP, 0.10, require_non_inferiority=True)
    wide = _result("latency_p99", 0.02, (-0.1, 0.14), 0.7)
    narrow = _result("latency_p99", 0.02, (-0.01, 0.05), 0.2)
    assert check_guardrail(strict, wide).status is GuardrailStatus.INCONCLUSIVE
    assert check_guardrail(strict, narrow).status is GuardrailStatus.PASS
    assert check_guardrail(LATENCY, wide).status is GuardrailStatus.PASS


def test_guardrail_on_another_metric_is_rejected() -> None:
    with pytest.raises(ValueError, match="hide_rate"):
        check_guardrail(HIDES, WIN)


def test_sample_ratio_mismatch_makes_the_experiment_invalid_whatever_the_primary() -> None:
    srm = sample_ratio_mismatch({"a": 52_000, "b": 48_000}, {"a": 0.5, "b": 0.5})
    decision = decide(WIN, srm=srm)
    assert decision.decision is Decision.INVALID
    assert "sample-ratio mismatch" in decision.reasons[0]


def test_significant_loss_does_not_ship() -> None:
    loss = _result("ctr", -0.03, (-0.05, -0.01), 0.002)
    assert decide(loss, srm=BALANCED).decision is Decision.DONT_SHIP


def test_significant_drop_ships_when_down_is_good() -> None:
    faster = _result("latency", -0.03, (-0.05, -0.01), 0.002)
    assert decide(faster, good_direction=Direction.DOWN).decision is Decision.SHIP


def test_flat_result_that_rules_out_the_smallest_worthwhile_gain_does_not_ship() -> None:
    flat = _result("ctr", 0.001, (-0.004, 0.006), 0.7)
    assert decide(flat, min_relative_effect=0.01).decision is Decision.DONT_SHIP


def test_underpowered_result_keeps_running() -> None:
    wide = _result("ctr", 0.02, (-0.03, 0.07), 0.4)
    decision = decide(wide, srm=BALANCED, min_relative_effect=0.01)
    assert decision.decision is Decision.KEEP_RUNNING
    assert "inconclusive" in decision.reasons[0]
