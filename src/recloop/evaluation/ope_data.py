"""The logged-data container of off-policy evaluation (see `recloop.evaluation.ope`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.evaluation.ope_models import FloatArray, IntArray

_PROBABILITY_TOLERANCE = 1e-6


def _float_array(values: object, name: str, ndim: int = 1) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


def _codes(values: object) -> IntArray:
    """Dense integer codes 0..G-1 for any labels (user ids, request ids, strings)."""
    return np.unique(np.asarray(values), return_inverse=True)[1].astype(np.int64).reshape(-1)


@dataclass(frozen=True)
class LoggedBandit:
    """Logged decisions, one row each, with what the target policy would have done.

    `rewards`, `logging_propensity` (p0 of the logged action, in (0, 1]) and
    `target_propensity` (pe of the logged action, in [0, 1]) are required. Optional:
    `actions` (logged action ids, needed by DM/DR), `positions` (slot in a slate, for
    `position_based_ips`), `groups` (cluster labels for the bootstrap and the folds),
    `features` (n, d) for the reward model, `target_distribution` (n, n_actions) pe of every
    action (needed by DM/DR and the support check), `logging_distribution` (n, n_actions) p0 of
    every action (its zeros define the logging support), and `reward_predictions`
    (n, n_actions) to use instead of cross-fitting a model. Arrays are converted and checked.
    """

    rewards: FloatArray
    logging_propensity: FloatArray
    target_propensity: FloatArray
    actions: IntArray | None = None
    positions: IntArray | None = None
    groups: IntArray | None = None
    features: FloatArray | None = None
    target_distribution: FloatArray | None = None
    logging_distribution: FloatArray | None = None
    reward_predictions: FloatArray | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("rewards", _float_array(self.rewards, "rewards"))
        put("logging_propensity", _float_array(self.logging_propensity, "logging_propensity"))
        put("target_propensity", _float_array(self.target_propensity, "target_propensity"))
        n = len(self.rewards)
        for name in ("logging_propensity", "target_propensity"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, rewards {n}")
        p0, pe = self.logging_propensity, self.target_propensity
        if np.any(p0 <= 0) or np.any(p0 > 1 + _PROBABILITY_TOLERANCE):
            raise ValueError("logging_propensity must be in (0, 1]: a logged action had p0 > 0")
        if np.any(pe < 0) or np.any(pe > 1 + _PROBABILITY_TOLERANCE):
            raise ValueError("target_propensity must be in [0, 1]")
        for name in ("actions", "positions"):
            value = getattr(self, name)
            if value is not None:
                array = np.asarray(value).astype(np.int64).reshape(-1)
                if len(array) != n or (n and array.min() < 0):
                    raise ValueError(f"{name} must be {n} non-negative integers")
                put(name, array)
        if self.groups is not None:
            if len(np.asarray(self.groups)) != n:
                raise ValueError(f"groups must have {n} rows")
            put("groups", _codes(self.groups))
        if self.features is not None:
            features = _float_array(self.features, "features", ndim=2)
            if len(features) != n:
                raise ValueError(f"features must have {n} rows")
            put("features", features)
        for name in ("target_distribution", "logging_distribution", "reward_predictions"):
            if getattr(self, name) is not None:
                matrix = _float_array(getattr(self, name), name, ndim=2)
                if len(matrix) != n:
                    raise ValueError(f"{name} must have {n} rows")
                put(name, matrix)
        self._check_distributions()

    def _check_distributions(self) -> None:
        matrices = [
            m
            for m in (self.target_distribution, self.logging_distribution, self.reward_predictions)
            if m is not None
        ]
        if len({m.shape[1] for m in matrices}) > 1:
            raise ValueError("the (n, n_actions) matrices disagree on n_actions")
        for name, logged in (
            ("target_distribution", self.target_propensity),
            ("logging_distribution", self.logging_propensity),
        ):
            matrix = getattr(self, name)
            if matrix is None:
                continue
            if np.any(matrix < 0) or np.any(
                np.abs(matrix.sum(axis=1) - 1) > _PROBABILITY_TOLERANCE * 100
            ):
                raise ValueError(f"{name} rows must be probability distributions")
            if self.actions is not None:
                if self.actions.max(initial=0) >= matrix.shape[1]:
                    raise ValueError(f"an action id is outside {name}'s columns")
                picked = matrix[np.arange(self.n), self.actions]
                if np.any(np.abs(picked - logged) > _PROBABILITY_TOLERANCE):
                    raise ValueError(f"{name} disagrees with the logged action's propensity")

    @classmethod
    def from_distributions(
        cls,
        rewards: object,
        actions: object,
        logging_distribution: object,
        target_distribution: object,
        **optional: object,
    ) -> LoggedBandit:
        """Build from full (n, n_actions) policies: p0 and pe are read at the logged actions."""
        act = np.asarray(actions).astype(np.int64)
        p0 = np.asarray(logging_distribution, dtype=np.float64)
        pe = np.asarray(target_distribution, dtype=np.float64)
        rows = np.arange(len(act))
        return cls(
            rewards=np.asarray(rewards, dtype=np.float64),
            logging_propensity=p0[rows, act],
            target_propensity=pe[rows, act],
            actions=act,
            target_distribution=pe,
            logging_distribution=p0,
            **optional,  # type: ignore[arg-type]
        )

    @property
    def n(self) -> int:
        """Number of logged rows."""
        return len(self.rewards)

    @property
    def weights(self) -> FloatArray:
        """Importance weights pe / p0 of the logged actions."""
        return self.target_propensity / self.logging_propensity
