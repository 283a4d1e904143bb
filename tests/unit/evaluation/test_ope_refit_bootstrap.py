"""The DM/DR refit bootstrap keeps the copies of a resampled row (or group) in one cross-fitting
fold, so no row is predicted by a model that was fitted on a copy of itself."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.evaluation.ope import (
    BootstrapSpec,
    LoggedBandit,
    direct_method,
    doubly_robust,
)
from recloop.evaluation.ope_models import (
    ActionMeanModel,
    FloatArray,
    IntArray,
    RidgeRewardModel,
    cross_fit,
)

pytestmark = pytest.mark.unit


@dataclass
class _Memory:
    rewards: dict[int, float]
    leaks: list[int]
    held_out: list[set[int]]

    def predict(self, features: FloatArray | None, n_rows: int) -> FloatArray:
        assert features is not None
        ids = features[:, 0].astype(int).tolist()
        self.leaks.append(sum(i in self.rewards for i in ids))
        self.held_out.append(set(ids))
        # In sample: the memorised reward for every action; out of sample: nothing known (0).
        known = np.array([self.rewards.get(i, 0.0) for i in ids], dtype=np.float64)
        return np.repeat(known[:, None], N_ACTIONS, axis=1)


@dataclass
class MemorisingModel:
    """Remembers each training row's reward by its row id (feature 0): perfect in sample,
    worthless out of sample. Counts the predicted rows it was fitted on (`leaks`) and records
    the row ids of every prediction (`held_out`)."""

    leaks: list[int] = field(default_factory=list)
    held_out: list[set[int]] = field(default_factory=list)

    def fit(
        self, features: FloatArray | None, actions: IntArray, rewards: FloatArray, n_actions: int
    ) -> _Memory:
        assert features is not None
        ids = features[:, 0].astype(int).tolist()
        return _Memory(dict(zip(ids, rewards.tolist(), strict=True)), self.leaks, self.held_out)


N_ACTIONS = 3


def logs(n: int, seed: int, groups: object = None) -> LoggedBandit:
    rng = np.random.default_rng(seed)
    logging = np.full((n, N_ACTIONS), 1.0 / N_ACTIONS)
    target = np.tile([0.6, 0.3, 0.1], (n, 1))
    return LoggedBandit.from_distributions(
        (rng.random(n) < 0.5).astype(float),
        rng.integers(0, N_ACTIONS, size=n),
        logging,
        target,
        features=np.arange(n, dtype=np.float64)[:, None],  # the row id
        groups=groups,
    )


def test_dm_refit_bootstrap_without_groups_does_not_predict_rows_in_sample() -> None:
    data = logs(300, seed=0)
    model = MemorisingModel()
    estimate = direct_method(data, model, folds=5, bootstrap=BootstrapSpec(200, seed=1))
    # Out of fold the memoriser knows nothing: DM is exactly 0 ...
    assert estimate.value == 0.0
    # ... and so is every refit on a resample, unless copies of a row leak across folds
    # (they did: 56% of the resampled rows were predicted in sample, and the 95% interval was
    # [0.19, 0.32], nowhere near the point estimate).
    assert sum(model.leaks) == 0
    assert (estimate.ci_low, estimate.ci_high) == (0.0, 0.0)


def test_dr_refit_bootstrap_without_groups_does_not_predict_rows_in_sample() -> None:
    data = logs(300, seed=2)
    model = MemorisingModel()
    estimate = doubly_robust(
        data, model, folds=4, bootstrap=BootstrapSpec(100, seed=3), refit_bootstrap=True
    )
    assert sum(model.leaks) == 0
    # Out of fold q = 0, so DR is IPS, on the point estimate and on every resample.
    ips_value = float((data.weights * data.rewards).mean())
    assert estimate.value == pytest.approx(ips_value)
    assert estimate.ci_low < ips_value < estimate.ci_high


def test_groups_keep_their_copies_in_one_fold_as_before() -> None:
    data = logs(300, seed=4, groups=np.arange(300) // 3)
    model = MemorisingModel()
    estimate = direct_method(data, model, folds=5, bootstrap=BootstrapSpec(50, seed=5))
    assert sum(model.leaks) == 0
    assert (estimate.value, estimate.ci_low, estimate.ci_high) == (0.0, 0.0, 0.0)


def test_the_point_estimate_is_the_plain_cross_fit() -> None:
    data = logs(200, seed=6)
    assert data.actions is not None
    assert data.target_distribution is not None
    model = RidgeRewardModel(alpha=1.0)
    q = cross_fit(model, data.features, data.actions, data.rewards, N_ACTIONS, folds=5, seed=7)
    expected = float((data.target_distribution * q).sum(axis=1).mean())
    estimate = direct_method(data, model, folds=5, bootstrap=BootstrapSpec(20, seed=0), seed=7)
    assert estimate.value == pytest.approx(expected, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(min_value=12, max_value=80),
    st.integers(min_value=2, max_value=6),
    st.integers(min_value=0, max_value=2**31),
    st.booleans(),
)
def test_no_refit_ever_predicts_a_row_it_was_fitted_on(
    n: int, folds: int, seed: int, grouped: bool
) -> None:
    groups = np.arange(n) // 2 if grouped else None
    data = logs(n, seed % 1000, groups=groups)
    model = MemorisingModel()
    direct_method(data, model, folds=folds, bootstrap=BootstrapSpec(5, seed=seed), seed=seed)
    assert model.leaks  # the model was used
    assert sum(model.leaks) == 0


def test_a_resample_that_misses_the_top_groups_still_refits() -> None:
    # 5 groups and 5 folds: a resample often misses group 4, which left only 4 labels to split
    # into 5 folds ("5 folds need at least 5 groups"); the folds now span every original group.
    data = logs(50, seed=8, groups=np.arange(50) % 5)
    estimate = direct_method(data, folds=5, bootstrap=BootstrapSpec(50, seed=0))
    assert estimate.ci_low <= estimate.value <= estimate.ci_high


def test_cross_fit_keeps_a_label_in_its_fold_given_the_label_count() -> None:
    rng = np.random.default_rng(9)
    n = 40
    ids = np.arange(n, dtype=np.float64)[:, None]
    actions = rng.integers(0, N_ACTIONS, size=n)
    rewards = rng.random(n)
    groups = np.arange(n)

    def held_out(rows: IntArray, n_groups: int | None) -> list[set[int]]:
        spy = MemorisingModel()
        cross_fit(
            spy,
            ids[rows],
            actions[rows],
            rewards[rows],
            N_ACTIONS,
            folds=4,
            groups=groups[rows],
            seed=3,
            n_groups=n_groups,
        )
        assert sum(spy.leaks) == 0
        return spy.held_out

    full = held_out(np.arange(n), None)
    assert held_out(np.arange(n), n) == full
    kept = np.arange(30)  # the top labels are absent, as in a resample that missed them
    assert held_out(kept, n) == [fold & set(kept.tolist()) for fold in full]
    with pytest.raises(ValueError, match="n_groups"):
        cross_fit(ActionMeanModel(), None, actions, rewards, 2, folds=4, groups=groups, n_groups=3)
