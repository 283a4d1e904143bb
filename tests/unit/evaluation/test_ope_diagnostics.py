"""Off-policy diagnostics: the warning when a weight cap dominates the estimate (clipped IPS and
position-based IPS), and an explicit "support unknown" when the support cannot be checked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.evaluation.ope import (
    MAX_CLIPPED_WEIGHT_SHARE,
    SUPPORT_FROM_LOGGED_ACTIONS,
    SUPPORT_FROM_LOGGING_DISTRIBUTION,
    SUPPORT_UNKNOWN,
    BootstrapSpec,
    LoggedBandit,
    clipped_ips,
    clipping_diagnostics,
    diagnose,
    ips,
    position_based_ips,
    snips,
    support_deficit,
)

pytestmark = pytest.mark.unit

NO_CI = BootstrapSpec(n_resamples=0)
CLIP_WARNING = "weight cap"
probability = st.floats(min_value=0.01, max_value=1.0)


def rare_action_log(n: int = 20_000, seed: int = 0) -> tuple[LoggedBandit, float]:
    """A logger that takes action 1 with probability 0.05 and a target that takes it half the
    time (w = 10 there, 0.526 on action 0), click rate 0.3 on both: IPS is healthy (ESS share
    about 19%), and a cap of 2 cuts 40% of the weight off."""
    rng = np.random.default_rng(seed)
    logging = np.tile([0.95, 0.05], (n, 1))
    target = np.tile([0.5, 0.5], (n, 1))
    actions = (rng.random(n) < 0.05).astype(np.int64)
    rewards = (rng.random(n) < 0.3).astype(float)
    return LoggedBandit.from_distributions(rewards, actions, logging, target), 0.3


def test_a_cap_that_cuts_off_most_of_the_weight_raises_a_warning() -> None:
    data, truth = rare_action_log()
    raw = ips(data, NO_CI)
    assert raw.warnings == ()  # the weights themselves are healthy
    assert raw.value == pytest.approx(truth, rel=0.15)
    clipped = clipped_ips(data, 2.0, NO_CI)
    extra = clipped.diagnostics.extra
    # Rows of action 1 (about 5%) are clipped from 10 to 2: 0.05 * 8 of a mean weight of 1.
    assert extra["clipped_share"] == pytest.approx(np.mean(data.weights > 2))
    assert extra["clipped_weight_share"] == pytest.approx(0.4, abs=0.05)
    assert clipped.value < 0.7 * truth  # heavily biased down ...
    assert [w for w in clipped.warnings if CLIP_WARNING in w]  # ... and now it says so
    assert not clipped.trustworthy
    # A cap that removes little does not warn.
    gentle = clipped_ips(data, 9.5, NO_CI)  # removes about 0.05 * 0.5 = 2.5%
    assert gentle.diagnostics.extra["clipped_weight_share"] < MAX_CLIPPED_WEIGHT_SHARE
    assert gentle.warnings == ()


@settings(max_examples=200)
@given(
    st.lists(st.tuples(probability, probability), min_size=1, max_size=60),
    st.floats(min_value=0.05, max_value=30.0),
    st.floats(min_value=0.1, max_value=5.0),
)
def test_the_clipped_weight_share_is_the_relative_gap_to_ips_for_a_constant_reward(
    rows: list[tuple[float, float]], cap: float, reward: float
) -> None:
    data = LoggedBandit(
        rewards=np.full(len(rows), reward),
        logging_propensity=np.array([p for p, _ in rows]),
        target_propensity=np.array([q for _, q in rows]),
    )
    estimate = clipped_ips(data, cap, NO_CI)
    share = estimate.diagnostics.extra["clipped_weight_share"]
    assert 0.0 <= share <= 1.0
    assert estimate.diagnostics.extra["clipped_share"] == pytest.approx(np.mean(data.weights > cap))
    full = ips(data, NO_CI).value
    if full > 0:
        # With a constant reward the estimate loses exactly the removed share of the weight.
        assert (full - estimate.value) / full == pytest.approx(share, abs=1e-9)
    assert (share == 0.0) == bool(np.all(data.weights <= cap))
    warned = any(CLIP_WARNING in w for w in estimate.warnings)
    assert warned == (share > MAX_CLIPPED_WEIGHT_SHARE)


def slates(n: int, seed: int) -> LoggedBandit:
    """Uniform slates of 3 of 6 items; the target puts a rarely logged item on top."""
    rng = np.random.default_rng(seed)
    items, slots = 6, 3
    target = np.full((slots, items), 1.0 / items)
    target[0] = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]  # w = 6 on item 5 at the top, 0 elsewhere
    chosen = np.argsort(rng.random((n, items)), axis=1)[:, :slots]
    item, position = chosen.ravel(), np.tile(np.arange(slots), n)
    return LoggedBandit(
        rewards=(rng.random(n * slots) < 0.2).astype(float),
        logging_propensity=np.full(n * slots, 1.0 / items),
        target_propensity=target[position, item],
        positions=position,
        groups=np.repeat(np.arange(n), slots),
    )


def test_position_based_ips_with_a_finite_cap_reports_and_warns_about_clipping() -> None:
    data = slates(3000, seed=1)
    uncapped = position_based_ips(data, bootstrap=NO_CI)
    assert "clipped_weight_share" not in uncapped.diagnostics.extra  # as before: no cap, no keys
    capped = position_based_ips(data, cap=2.0, bootstrap=NO_CI)
    extra = capped.diagnostics.extra
    # Only position 0 has weights above 2 (6 -> 2 removes 2/3 of its weight); positions 1 and
    # 2 keep theirs (w = 1), so the mean over positions loses 2/3 of position 0's mean weight
    # out of the sum of the three (about 2/9).
    assert extra["clipped_weight_share_position_0"] == pytest.approx(2 / 3)
    assert extra["clipped_weight_share_position_1"] == 0.0
    assert data.positions is not None
    means = [data.weights[data.positions == k].mean() for k in range(3)]
    assert extra["clipped_weight_share"] == pytest.approx(2 / 3 * means[0] / sum(means))
    assert extra["clipped_weight_share"] == pytest.approx(2 / 9, abs=0.02)
    assert extra["cap"] == 2.0
    assert [w for w in capped.warnings if CLIP_WARNING in w]
    assert capped.value < uncapped.value
    mild = position_based_ips(data, cap=5.9, bootstrap=NO_CI)  # removes under 1%
    assert not [w for w in mild.warnings if CLIP_WARNING in w]
    with pytest.raises(ValueError, match="cap"):
        position_based_ips(data, cap=0.0)


@settings(max_examples=50)
@given(st.lists(st.tuples(probability, probability), min_size=1, max_size=40), st.floats(0.1, 20))
def test_position_based_clipping_with_one_position_matches_clipped_ips(
    rows: list[tuple[float, float]], cap: float
) -> None:
    data = LoggedBandit(
        rewards=np.ones(len(rows)),
        logging_propensity=np.array([p for p, _ in rows]),
        target_propensity=np.array([q for _, q in rows]),
        positions=np.zeros(len(rows), dtype=np.int64),
    )
    pb = position_based_ips(data, cap=cap, bootstrap=NO_CI).diagnostics.extra
    flat = clipped_ips(data, cap, NO_CI).diagnostics.extra
    for key in ("cap", "clipped_share", "clipped_weight_share"):
        assert pb[key] == pytest.approx(flat[key])


def test_clipping_diagnostics_of_no_weight_is_zero() -> None:
    out = clipping_diagnostics(np.zeros(4), 1.0)
    assert out == {"cap": 1.0, "clipped_share": 0.0, "clipped_weight_share": 0.0}
    assert clipping_diagnostics(np.array([]), 1.0)["clipped_weight_share"] == 0.0


# Support.


def test_without_distributions_the_support_is_reported_unknown_not_silently_missing() -> None:
    data, _ = rare_action_log()
    bare = LoggedBandit(
        rewards=data.rewards,
        logging_propensity=data.logging_propensity,
        target_propensity=data.target_propensity,
    )
    diagnostics = ips(bare, NO_CI).diagnostics
    assert diagnostics.support_deficit is None  # no number is invented
    assert diagnostics.support_basis == SUPPORT_UNKNOWN
    assert any("support unknown" in note for note in diagnostics.notes)
    assert ips(bare, NO_CI).notes == diagnostics.notes
    # A note, not a warning: healthy weights stay trustworthy.
    assert ips(bare, NO_CI).trustworthy
    full = ips(data, NO_CI).diagnostics
    assert full.support_basis == SUPPORT_FROM_LOGGING_DISTRIBUTION
    assert full.support_deficit == 0.0
    assert full.notes == ()


def test_the_seen_actions_proxy_is_labelled_as_a_proxy() -> None:
    data, _ = rare_action_log()
    proxy = LoggedBandit(**{**data.__dict__, "logging_distribution": None})
    diagnostics = snips(proxy, NO_CI).diagnostics
    assert diagnostics.support_basis == SUPPORT_FROM_LOGGED_ACTIONS
    assert diagnostics.support_deficit == 0.0  # both actions were seen
    assert any("proxy" in note for note in diagnostics.notes)
    # The target distribution alone (no actions, no logging distribution) cannot be checked.
    blind = LoggedBandit(**{**proxy.__dict__, "actions": None})
    assert support_deficit(blind) is None
    assert diagnose(blind).support_basis == SUPPORT_UNKNOWN


def test_a_real_deficit_without_distributions_gets_no_invented_number() -> None:
    # The target puts 60% of its mass on an action the logger never takes: those rows can
    # never appear in the logs (p0 > 0 on every logged row). Only the mean weight hints at it.
    rng = np.random.default_rng(4)
    n = 4000
    actions = rng.integers(0, 2, size=n)
    data = LoggedBandit(
        rewards=(rng.random(n) < 0.5).astype(float),
        logging_propensity=np.full(n, 0.5),
        target_propensity=np.full(n, 0.2),  # 0.2 on each logged action, 0.6 elsewhere
        actions=actions,
    )
    diagnostics = ips(data, NO_CI).diagnostics
    assert diagnostics.support_deficit is None
    assert diagnostics.support_basis == SUPPORT_UNKNOWN
    assert not any("never takes" in w for w in diagnostics.warnings)
    assert any("mean importance weight" in w for w in diagnostics.warnings)
    assert diagnostics.weight_mean == pytest.approx(0.4)


@settings(max_examples=50)
@given(st.lists(st.tuples(probability, probability), min_size=1, max_size=30))
def test_propensities_alone_always_give_an_unknown_support(
    rows: list[tuple[float, float]],
) -> None:
    data = LoggedBandit(
        rewards=np.zeros(len(rows)),
        logging_propensity=np.array([p for p, _ in rows]),
        target_propensity=np.array([q for _, q in rows]),
    )
    diagnostics = diagnose(data)
    assert diagnostics.support_deficit is None
    assert diagnostics.support_basis == SUPPORT_UNKNOWN
    assert len([note for note in diagnostics.notes if "support unknown" in note]) == 1
