"""Off-policy estimators: exact identities, unbiasedness on a simulated contextual bandit with
known truth, bootstrap coverage, and the diagnostics' warnings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.evaluation.ope import (
    MAX_SUPPORT_DEFICIT,
    BootstrapSpec,
    LoggedBandit,
    bootstrap_interval,
    clipped_ips,
    diagnose,
    direct_method,
    doubly_robust,
    ips,
    position_based_ips,
    snips,
)
from recloop.evaluation.ope_models import (
    ActionMeanModel,
    RidgeRewardModel,
    ZeroModel,
    cross_fit,
)

pytestmark = pytest.mark.unit

NO_CI = BootstrapSpec(n_resamples=0)
probability = st.floats(min_value=0.01, max_value=1.0)
reward = st.floats(min_value=-5.0, max_value=5.0)


@given(st.lists(st.tuples(reward, probability), min_size=1, max_size=60))
def test_ips_equals_the_mean_reward_when_the_target_is_the_logging_policy(
    rows: list[tuple[float, float]],
) -> None:
    rewards = np.array([r for r, _ in rows])
    p = np.array([p for _, p in rows])
    data = LoggedBandit(rewards=rewards, logging_propensity=p, target_propensity=p)
    assert ips(data, NO_CI).value == pytest.approx(rewards.mean(), abs=1e-9)
    assert snips(data, NO_CI).value == pytest.approx(rewards.mean(), abs=1e-9)


@given(
    st.lists(
        st.tuples(reward, reward, st.floats(0.01, 0.5), st.floats(0.0, 1.0)),
        min_size=1,
        max_size=40,
    )
)
def test_snips_equals_ips_when_the_weights_average_exactly_one(
    pairs: list[tuple[float, float, float, float]],
) -> None:
    # Rows come in pairs with weights u and 2 - u, so the weights' mean is exactly 1.
    rewards, p0, pe = [], [], []
    for r1, r2, p, u in pairs:
        rewards += [r1, r2]
        p0 += [p, p]
        pe += [p * u, p * (2.0 - u)]
    data = LoggedBandit(rewards=rewards, logging_propensity=p0, target_propensity=pe)
    assert data.weights.mean() == pytest.approx(1.0)
    assert snips(data, NO_CI).value == pytest.approx(ips(data, NO_CI).value, abs=1e-9)


@given(st.lists(st.tuples(reward, probability, probability), min_size=1, max_size=60))
def test_clipped_ips_with_a_cap_at_or_above_every_weight_is_ips(
    rows: list[tuple[float, float, float]],
) -> None:
    data = LoggedBandit(
        rewards=[r for r, _, _ in rows],
        logging_propensity=[p for _, p, _ in rows],
        target_propensity=[q for _, _, q in rows],
    )
    expected = ips(data, NO_CI).value
    assert clipped_ips(data, float("inf"), NO_CI).value == expected
    assert clipped_ips(data, float(data.weights.max()), NO_CI).value == pytest.approx(expected)
    assert clipped_ips(data, float("inf"), NO_CI).diagnostics.extra["clipped_share"] == 0.0


@settings(max_examples=50)
@given(st.integers(1, 300), st.floats(0.05, 20.0))
def test_ess_equals_n_for_uniform_weights(n: int, weight: float) -> None:
    p0 = np.full(n, 0.05)
    data = LoggedBandit(
        rewards=np.zeros(n), logging_propensity=p0, target_propensity=np.minimum(p0 * weight, 1)
    )
    diagnostics = diagnose(data)
    assert diagnostics.ess == pytest.approx(n)
    assert diagnostics.ess_share == pytest.approx(1.0)


# A contextual bandit with known reward probabilities.


@dataclass(frozen=True)
class Bandit:
    q: np.ndarray  # (contexts, actions) click probabilities
    logging: np.ndarray  # (contexts, actions)
    target: np.ndarray  # (contexts, actions)

    @property
    def truth(self) -> float:
        return float((self.target * self.q).sum(axis=1).mean())  # contexts are uniform

    def draw(self, n: int, rng: np.random.Generator) -> LoggedBandit:
        contexts = rng.integers(0, self.q.shape[0], size=n)
        cumulative = self.logging[contexts].cumsum(axis=1)
        actions = (rng.random(n)[:, None] > cumulative).sum(axis=1)
        actions = np.minimum(actions, self.q.shape[1] - 1)
        rewards = (rng.random(n) < self.q[contexts, actions]).astype(float)
        return LoggedBandit.from_distributions(
            rewards,
            actions,
            self.logging[contexts],
            self.target[contexts],
            features=np.eye(self.q.shape[0])[contexts],
            reward_predictions=None,
        )


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_bandit(
    seed: int = 3, contexts: int = 5, actions: int = 4, q_range: tuple[float, float] = (0.05, 0.6)
) -> Bandit:
    rng = np.random.default_rng(seed)
    q = rng.uniform(*q_range, size=(contexts, actions))
    logging = 0.8 * softmax(rng.normal(size=(contexts, actions))) + 0.2 / actions
    target = softmax(4.0 * q + rng.normal(scale=0.5, size=(contexts, actions)))
    return Bandit(q, logging, target)


def test_ips_and_dr_are_unbiased_and_snips_and_dm_close_on_a_simulated_bandit() -> None:
    bandit = make_bandit()
    rng = np.random.default_rng(11)
    model = RidgeRewardModel(alpha=0.1, interactions=True)
    values: dict[str, list[float]] = {"IPS": [], "SNIPS": [], "DM": [], "DR": []}
    for _ in range(300):
        data = bandit.draw(1000, rng)
        values["IPS"].append(ips(data, NO_CI).value)
        values["SNIPS"].append(snips(data, NO_CI).value)
        values["DM"].append(direct_method(data, model, folds=2, bootstrap=NO_CI).value)
        values["DR"].append(doubly_robust(data, model, folds=2, bootstrap=NO_CI).value)
    truth = bandit.truth
    for name in ("IPS", "DR"):
        v = np.array(values[name])
        standard_error = v.std(ddof=1) / np.sqrt(len(v))
        assert abs(v.mean() - truth) < 4 * standard_error, name
        assert abs(v.mean() - truth) < 0.005, name
    for name in ("SNIPS", "DM"):
        assert abs(np.mean(values[name]) - truth) < 0.01, name
    # The reward model is good here (cell means of 5 x 4 cells), so DR has less variance.
    assert np.var(values["DR"]) < np.var(values["IPS"])


def test_dr_with_the_true_reward_function_has_lower_variance_than_ips() -> None:
    # Rewards are mostly predictable (click rates 0.7-0.95), so the residuals are small.
    bandit = make_bandit(seed=5, q_range=(0.7, 0.95))
    rng = np.random.default_rng(2)
    ips_values, dr_values = [], []
    for _ in range(200):
        data = bandit.draw(500, rng)
        assert data.features is not None
        oracle = data.features @ bandit.q  # q(x, a) for every row and action
        with_oracle = LoggedBandit(**{**data.__dict__, "reward_predictions": oracle})
        ips_values.append(ips(with_oracle, NO_CI).value)
        dr_values.append(doubly_robust(with_oracle, bootstrap=NO_CI).value)
    assert abs(np.mean(dr_values) - bandit.truth) < 0.005
    assert np.var(dr_values) < 0.5 * np.var(ips_values)


def test_the_95_percent_bootstrap_interval_covers_the_truth_in_most_replications() -> None:
    bandit = make_bandit(seed=7)
    rng = np.random.default_rng(5)
    covered = 0
    for replication in range(100):
        data = bandit.draw(500, rng)
        estimate = ips(data, BootstrapSpec(n_resamples=300, seed=replication))
        assert estimate.ci_low <= estimate.value <= estimate.ci_high
        covered += estimate.ci_low <= bandit.truth <= estimate.ci_high
    assert covered >= 85


def test_dr_with_a_zero_reward_model_is_ips_and_dm_with_it_is_zero() -> None:
    data = make_bandit().draw(400, np.random.default_rng(0))
    assert doubly_robust(data, ZeroModel(), bootstrap=NO_CI).value == pytest.approx(
        ips(data, NO_CI).value
    )
    assert direct_method(data, ZeroModel(), bootstrap=NO_CI).value == 0.0


def test_dr_equals_dm_when_the_reward_model_has_no_residual() -> None:
    rng = np.random.default_rng(1)
    n, actions = 300, 5
    reward_of_action = rng.uniform(0, 1, size=actions)  # deterministic rewards
    logging = np.full((n, actions), 1.0 / actions)
    target = softmax(rng.normal(size=(n, actions)))
    chosen = rng.integers(0, actions, size=n)
    data = LoggedBandit.from_distributions(
        reward_of_action[chosen],
        chosen,
        logging,
        target,
        reward_predictions=np.tile(reward_of_action, (n, 1)),
    )
    dm = direct_method(data, bootstrap=NO_CI).value
    assert doubly_robust(data, bootstrap=NO_CI).value == pytest.approx(dm)
    assert dm == pytest.approx(float((target @ reward_of_action).mean()))
    # A per-action mean model learns the same function out of fold: still no residual.
    assert doubly_robust(data, ActionMeanModel(prior_strength=0.0), bootstrap=NO_CI).value == (
        pytest.approx(
            direct_method(data, ActionMeanModel(prior_strength=0.0), bootstrap=NO_CI).value
        )
    )


def test_cross_fitting_predicts_each_row_without_its_own_reward() -> None:
    actions = np.array([0, 0, 0, 1, 1, 1])
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    # Leave-one-out: the prediction for a row is the mean of the other rows with its action.
    q = cross_fit(ActionMeanModel(prior_strength=0.0), None, actions, rewards, 2, folds=6)
    loo = [(rewards[actions == a].sum() - r) / 2 for a, r in zip(actions, rewards, strict=True)]
    assert q[np.arange(6), actions] == pytest.approx(loo)


def test_bootstrap_over_singleton_groups_is_the_row_bootstrap() -> None:
    data = make_bandit().draw(300, np.random.default_rng(4))
    grouped = LoggedBandit(**{**data.__dict__, "groups": np.arange(300) + 1000})
    spec = BootstrapSpec(n_resamples=200, seed=9)
    a, b = ips(data, spec), ips(grouped, spec)
    assert (a.ci_low, a.ci_high) == pytest.approx((b.ci_low, b.ci_high))


def test_group_bootstrap_widens_the_interval_when_rows_within_groups_are_correlated() -> None:
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(50), 20)
    rewards = np.repeat(rng.random(50) < 0.3, 20).astype(float)  # a user clicks all or nothing
    columns = np.stack([rewards, np.ones(len(rewards))], axis=1)

    def mean(totals: np.ndarray) -> np.ndarray:
        return totals[:, 0] / totals[:, 1]

    spec = BootstrapSpec(n_resamples=500, seed=0)
    row_low, row_high = bootstrap_interval(columns, mean, None, spec)
    group_low, group_high = bootstrap_interval(columns, mean, groups, spec)
    assert group_high - group_low > 3 * (row_high - row_low)


def test_a_target_on_an_action_the_logger_never_takes_gets_a_support_warning() -> None:
    rng = np.random.default_rng(0)
    n = 500
    logging = np.tile([0.5, 0.5, 0.0], (n, 1))  # action 2 is never logged
    target = np.tile([0.0, 0.0, 1.0], (n, 1))  # deterministic on action 2
    chosen = rng.integers(0, 2, size=n)
    data = LoggedBandit.from_distributions(rng.random(n) < 0.5, chosen, logging, target)
    diagnostics = ips(data, NO_CI).diagnostics
    assert diagnostics.support_deficit == pytest.approx(1.0)
    assert diagnostics.support_deficit > MAX_SUPPORT_DEFICIT
    assert any("never takes" in w for w in diagnostics.warnings)
    assert not ips(data, NO_CI).trustworthy
    # Without the logging distribution, the support is the actions seen in the logs.
    seen_only = LoggedBandit(**{**data.__dict__, "logging_distribution": None})
    assert diagnose(seen_only).support_deficit == pytest.approx(1.0)


def test_a_well_matched_target_gets_no_warning() -> None:
    data = make_bandit().draw(2000, np.random.default_rng(0))
    estimate = snips(data, NO_CI)
    assert estimate.warnings == ()
    assert estimate.diagnostics.weight_mean == pytest.approx(1.0, abs=0.1)
    assert estimate.diagnostics.support_deficit == 0.0


def test_extreme_weights_and_few_rewards_raise_warnings() -> None:
    n = 1000
    p0 = np.full(n, 0.5)
    pe = np.full(n, 0.0001)
    pe[0] = 1.0  # one row holds nearly all the weight
    rewards = np.zeros(n)
    rewards[:3] = 1.0
    diagnostics = diagnose(
        LoggedBandit(rewards=rewards, logging_propensity=p0, target_propensity=pe)
    )
    text = " ".join(diagnostics.warnings)
    assert diagnostics.ess_share < 0.01
    assert "effective sample size" in text
    assert "mean importance weight" in text
    assert "of the total weight" in text
    assert "nonzero rewards" in text
    assert diagnostics.weight_max == pytest.approx(2.0)


def test_invalid_logs_are_rejected() -> None:
    with pytest.raises(ValueError, match="logging_propensity"):
        LoggedBandit(rewards=[1.0], logging_propensity=[0.0], target_propensity=[0.5])
    with pytest.raises(ValueError, match="rows"):
        LoggedBandit(rewards=[1.0, 0.0], logging_propensity=[0.5], target_propensity=[0.5])
    with pytest.raises(ValueError, match="disagrees"):
        LoggedBandit(
            rewards=[1.0],
            logging_propensity=[0.5],
            target_propensity=[0.5],
            actions=[0],
            target_distribution=[[0.2, 0.8]],
        )
    data = LoggedBandit(rewards=[1.0], logging_propensity=[0.5], target_propensity=[0.5])
    with pytest.raises(ValueError, match="target_distribution"):
        direct_method(data)
    with pytest.raises(ValueError, match="positions"):
        position_based_ips(data)


def simulate_slates(n: int, rng: np.random.Generator) -> tuple[LoggedBandit, LoggedBandit, float]:
    """Uniform random slates of 3 out of 6 items; clicks = attractiveness x position bias
    (independent across slots); the target shows items by fixed per-position marginals."""
    items, slots = 6, 3
    attractiveness = np.linspace(0.1, 0.6, items)
    bias = np.array([1.0, 0.6, 0.3])
    target = np.zeros((slots, items))  # the target puts its best items on top
    target[0, [5, 4]] = [0.8, 0.2]
    target[1, [4, 3]] = [0.7, 0.3]
    target[2, [3, 0]] = [0.5, 0.5]
    truth = float((target * attractiveness[None, :] * bias[:, None]).sum(axis=1).mean())
    slates = np.argsort(rng.random((n, items)), axis=1)[:, :slots]
    item = slates.ravel()
    position = np.tile(np.arange(slots), n)
    clicks = (rng.random(n * slots) < attractiveness[item] * bias[position]).astype(float)
    p0 = np.full(n * slots, 1.0 / items)  # a uniform item's marginal at any slot
    slate_id = np.repeat(np.arange(n), slots)
    aware = LoggedBandit(
        rewards=clicks,
        logging_propensity=p0,
        target_propensity=target[position, item],
        positions=position,
        groups=slate_id,
    )
    blind = LoggedBandit(  # the same logs, weighted by the item's share over all slots
        rewards=clicks,
        logging_propensity=p0,
        target_propensity=target.mean(axis=0)[item],
        positions=position,
        groups=slate_id,
    )
    return aware, blind, truth


def test_position_based_ips_is_unbiased_on_independent_slots_where_position_blind_ips_is_not() -> (
    None
):
    rng = np.random.default_rng(6)
    aware_values, blind_values = [], []
    truth = 0.0
    for _ in range(200):
        aware, blind, truth = simulate_slates(600, rng)
        aware_values.append(position_based_ips(aware, bootstrap=NO_CI).value)
        blind_values.append(ips(blind, NO_CI).value)
    standard_error = np.std(aware_values, ddof=1) / np.sqrt(200)
    assert abs(np.mean(aware_values) - truth) < 4 * standard_error
    assert abs(np.mean(blind_values) - truth) > 0.02  # it misses the position effect


def test_position_based_ips_per_slate_sums_the_per_position_values() -> None:
    aware, _, _ = simulate_slates(300, np.random.default_rng(1))
    mean = position_based_ips(aware, bootstrap=NO_CI)
    per_slate = position_based_ips(aware, per_slate=True, bootstrap=BootstrapSpec(200, seed=1))
    positions = [mean.diagnostics.extra[f"value_position_{k}"] for k in range(3)]
    assert mean.value == pytest.approx(np.mean(positions))
    assert per_slate.value == pytest.approx(np.sum(positions))
    assert per_slate.ci_low < per_slate.value < per_slate.ci_high
    # With one position the position-based estimator is IPS.
    one = LoggedBandit(**{**aware.__dict__, "positions": np.zeros(aware.n, dtype=np.int64)})
    assert position_based_ips(one, bootstrap=NO_CI).value == pytest.approx(ips(one, NO_CI).value)


def test_the_bootstrap_is_deterministic_for_a_seed() -> None:
    data = make_bandit().draw(300, np.random.default_rng(2))
    spec = BootstrapSpec(n_resamples=100, seed=3)
    first, second = doubly_robust(data, bootstrap=spec), doubly_robust(data, bootstrap=spec)
    assert (first.value, first.ci_low, first.ci_high) == (
        second.value,
        second.ci_low,
        second.ci_high,
    )
    assert np.isnan(ips(data, NO_CI).ci_low)


def test_dm_bootstrap_refits_the_model_so_its_interval_is_not_degenerate() -> None:
    # The per-action mean model ignores the context; with uniform contexts DM's rows barely
    # differ, so holding q fixed gives an interval of almost no width, refitting a real one.
    data = make_bandit().draw(400, np.random.default_rng(3))
    spec = BootstrapSpec(n_resamples=100, seed=0)
    refit = direct_method(data, bootstrap=spec)
    fixed = direct_method(data, bootstrap=spec, refit_bootstrap=False)
    assert refit.value == pytest.approx(fixed.value)
    assert refit.ci_low < refit.value < refit.ci_high
    assert refit.ci_high - refit.ci_low > 1.5 * (fixed.ci_high - fixed.ci_low)
    assert refit.diagnostics.extra["refit_bootstrap"] == 1.0
