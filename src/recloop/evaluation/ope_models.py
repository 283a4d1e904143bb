"""Reward models for the direct method and doubly robust estimators, and their cross-fitting.

A reward model is fitted on logged rows (features, logged action, reward) and predicts the
expected reward of every action for new rows: a matrix of shape (rows, actions). Two
numpy-only defaults: the per-action mean reward shrunk toward the overall mean, and a ridge
(linear-probability) regression on the row's features plus the action.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_SMALL_DESIGN = 100_000  # design matrices smaller than this are multiplied without BLAS


class RewardPredictor(Protocol):
    """A fitted reward model."""

    def predict(self, features: FloatArray | None, n_rows: int) -> FloatArray:
        """Expected reward of every action for each row: shape (n_rows, n_actions)."""
        ...


class RewardModel(Protocol):
    """Fits a reward predictor on logged rows; the plug-in point of DM and DR."""

    def fit(
        self,
        features: FloatArray | None,
        actions: IntArray,
        rewards: FloatArray,
        n_actions: int,
    ) -> RewardPredictor:
        """Fit on the logged (features, action, reward) rows; return a predictor."""
        ...


class _ConstantRows:
    """Predicts the same reward vector for every row."""

    def __init__(self, values: FloatArray) -> None:
        self._values = values

    def predict(self, features: FloatArray | None, n_rows: int) -> FloatArray:
        return np.broadcast_to(self._values, (n_rows, len(self._values))).copy()


class ActionMeanModel:
    """Per-action mean reward, shrunk toward the overall mean by `prior_strength`
    pseudo-rows (actions never logged get the overall mean). Ignores features."""

    def __init__(self, prior_strength: float = 1.0) -> None:
        if prior_strength < 0:
            raise ValueError("prior_strength must be >= 0")
        self.prior_strength = prior_strength

    def fit(
        self,
        features: FloatArray | None,
        actions: IntArray,
        rewards: FloatArray,
        n_actions: int,
    ) -> RewardPredictor:
        """Per-action shrunk means."""
        overall = float(rewards.mean()) if len(rewards) else 0.0
        sums = np.bincount(actions, weights=rewards, minlength=n_actions)
        counts = np.bincount(actions, minlength=n_actions).astype(np.float64)
        denominator = counts + self.prior_strength
        safe = np.where(denominator > 0, denominator, 1.0)
        means = np.where(
            denominator > 0, (sums + self.prior_strength * overall) / safe, overall
        ).astype(np.float64)
        return _ConstantRows(means)


class ZeroModel:
    """Predicts 0 for everything: DR with it is IPS, DM with it is 0 (a reference point)."""

    def fit(
        self,
        features: FloatArray | None,
        actions: IntArray,
        rewards: FloatArray,
        n_actions: int,
    ) -> RewardPredictor:
        """Nothing to fit."""
        return _ConstantRows(np.zeros(n_actions, dtype=np.float64))


class _RidgePredictor:
    def __init__(
        self,
        intercept: float,
        feature_coef: FloatArray,
        action_coef: FloatArray,
        interaction_coef: FloatArray | None,
        low: float,
        high: float,
    ) -> None:
        self._intercept = intercept
        self._feature_coef = feature_coef
        self._action_coef = action_coef
        self._interaction_coef = interaction_coef
        self._low = low
        self._high = high

    def predict(self, features: FloatArray | None, n_rows: int) -> FloatArray:
        out = np.full((n_rows, len(self._action_coef)), self._intercept, dtype=np.float64)
        out += self._action_coef[None, :]
        if features is not None and len(self._feature_coef):
            out += (features @ self._feature_coef)[:, None]
            if self._interaction_coef is not None:
                out += features @ self._interaction_coef
        return np.clip(out, self._low, self._high)


class RidgeRewardModel:
    """Ridge regression of the reward on [features, one-hot(action)] (and their products with
    `interactions=True`); predictions are clipped to the observed reward range. For 0/1
    rewards it is a linear-probability model. The intercept is not penalised."""

    def __init__(self, alpha: float = 1.0, interactions: bool = False) -> None:
        if alpha <= 0:
            raise ValueError("alpha must be > 0")
        self.alpha = alpha
        self.interactions = interactions

    def fit(
        self,
        features: FloatArray | None,
        actions: IntArray,
        rewards: FloatArray,
        n_actions: int,
    ) -> RewardPredictor:
        """Solve the penalised normal equations."""
        n = len(rewards)
        x = np.zeros((n, 0)) if features is None else np.asarray(features, dtype=np.float64)
        d = x.shape[1]
        onehot = np.zeros((n, n_actions))
        onehot[np.arange(n), actions] = 1.0
        blocks = [np.ones((n, 1)), x, onehot]
        if self.interactions and d:
            blocks.append((x[:, :, None] * onehot[:, None, :]).reshape(n, d * n_actions))
        design = np.hstack(blocks)
        penalty = np.full(design.shape[1], self.alpha)
        penalty[0] = 0.0
        if design.size < _SMALL_DESIGN:
            # einsum, not BLAS: small products are far slower with BLAS threads on busy cores.
            gram = np.einsum("ij,ik->jk", design, design)
            moment = np.einsum("ij,i->j", design, rewards)
        else:
            gram, moment = design.T @ design, design.T @ rewards
        coef = np.linalg.lstsq(gram + np.diag(penalty), moment, rcond=None)[0]
        interaction = None
        if self.interactions and d:
            interaction = coef[1 + d + n_actions :].reshape(d, n_actions)
        low, high = (float(rewards.min()), float(rewards.max())) if n else (0.0, 0.0)
        return _RidgePredictor(
            float(coef[0]), coef[1 : 1 + d], coef[1 + d : 1 + d + n_actions], interaction, low, high
        )


def cross_fit(
    model: RewardModel,
    features: FloatArray | None,
    actions: IntArray,
    rewards: FloatArray,
    n_actions: int,
    *,
    folds: int,
    groups: IntArray | None = None,
    seed: int = 0,
    n_groups: int | None = None,
) -> FloatArray:
    """Out-of-fold reward predictions, shape (rows, actions): each row is predicted by a model
    fitted without its fold. Folds split groups (e.g. users) when given, else rows; `folds=1`
    fits and predicts in sample (no cross-fitting). Without groups every row is its own unit,
    so rows that are copies of one another (a bootstrap resample drawn with replacement) can
    land in different folds and be predicted in sample: pass the original row index (or group)
    of each copy as `groups` to keep the copies in one fold, as the DM/DR bootstrap does.
    `n_groups` (default: the largest label + 1) is the number of labels the folds are drawn
    over; give the full count when some labels are absent (a resample), so that every label
    keeps the fold it has on the full data and a resample missing the top labels still has
    enough of them to split."""
    n = len(rewards)
    if folds < 1:
        raise ValueError("folds must be >= 1")
    if folds == 1:
        return model.fit(features, actions, rewards, n_actions).predict(features, n)
    units = np.arange(n) if groups is None else groups
    n_units = int(units.max()) + 1 if n else 0
    if n_groups is not None:
        if n_groups < n_units:
            raise ValueError(f"n_groups {n_groups} is below the largest label + 1 ({n_units})")
        n_units = n_groups
    if n_units < folds:
        raise ValueError(f"{folds} folds need at least {folds} groups, got {n_units}")
    rng = np.random.default_rng(seed)
    fold_of_unit = rng.permutation(n_units) % folds
    fold = fold_of_unit[units]
    out = np.empty((n, n_actions), dtype=np.float64)
    for k in range(folds):
        test = fold == k
        train = ~test
        fitted = model.fit(
            None if features is None else features[train], actions[train], rewards[train], n_actions
        )
        out[test] = fitted.predict(None if features is None else features[test], int(test.sum()))
    return out
