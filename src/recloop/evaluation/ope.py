"""Off-policy evaluation: what a target policy would score, estimated from another policy's logs.

Every estimator takes a `LoggedBandit` (one row per logged decision: the reward, the logging
policy's probability p0 of the logged action and the target policy's probability pe of it) and
returns an `Estimate`: the value, a percentile bootstrap interval (over groups such as users or
requests when given, else rows), and `Diagnostics` of the importance weights w = pe / p0 with
human-readable warnings when the estimate should not be trusted (and notes, such as a logging
support that could not be checked, that do not make it untrustworthy). Estimators: IPS, clipped IPS,
SNIPS, the direct method (DM) and doubly robust (DR) with a cross-fitted reward model (see
`recloop.evaluation.ope_models`), and a position-based IPS for slates. See docs/off-policy.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recloop.evaluation.ope_data import LoggedBandit
from recloop.evaluation.ope_diagnostics import (
    MAX_CLIPPED_WEIGHT_SHARE,
    MAX_MEAN_WEIGHT_DEVIATION,
    MAX_SINGLE_WEIGHT_SHARE,
    MAX_SUPPORT_DEFICIT,
    MIN_ESS_SHARE,
    MIN_REWARDED_ROWS,
    SUPPORT_FROM_LOGGED_ACTIONS,
    SUPPORT_FROM_LOGGING_DISTRIBUTION,
    SUPPORT_UNKNOWN,
    WEIGHT_QUANTILES,
    Diagnostics,
    clipping_diagnostics,
    diagnose,
    support_basis,
    support_deficit,
)
from recloop.evaluation.ope_models import (
    ActionMeanModel,
    FloatArray,
    IntArray,
    RewardModel,
    cross_fit,
)

__all__ = [
    "DEFAULT_FOLDS",
    "MAX_CLIPPED_WEIGHT_SHARE",
    "MAX_MEAN_WEIGHT_DEVIATION",
    "MAX_SINGLE_WEIGHT_SHARE",
    "MAX_SUPPORT_DEFICIT",
    "MIN_ESS_SHARE",
    "MIN_REWARDED_ROWS",
    "SUPPORT_FROM_LOGGED_ACTIONS",
    "SUPPORT_FROM_LOGGING_DISTRIBUTION",
    "SUPPORT_UNKNOWN",
    "WEIGHT_QUANTILES",
    "BootstrapSpec",
    "Diagnostics",
    "Estimate",
    "LoggedBandit",
    "bootstrap_interval",
    "clipped_ips",
    "clipping_diagnostics",
    "diagnose",
    "direct_method",
    "doubly_robust",
    "ips",
    "position_based_ips",
    "snips",
    "support_basis",
    "support_deficit",
]

DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class BootstrapSpec:
    """Percentile bootstrap: `n_resamples` draws of the groups (else rows) with replacement,
    seeded; `n_resamples=0` skips the interval (NaN bounds)."""

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95


@dataclass(frozen=True)
class Estimate:
    """An estimator's value with its bootstrap interval, row count and diagnostics."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    diagnostics: Diagnostics

    @property
    def warnings(self) -> tuple[str, ...]:
        """The diagnostics' warnings; empty when nothing flagged the estimate."""
        return self.diagnostics.warnings

    @property
    def notes(self) -> tuple[str, ...]:
        """The diagnostics' informational notes (e.g. support unknown); no effect on trust."""
        return self.diagnostics.notes

    @property
    def trustworthy(self) -> bool:
        """True when no diagnostic raised a warning."""
        return not self.diagnostics.warnings


Statistic = Callable[[FloatArray], FloatArray]


def bootstrap_interval(
    columns: FloatArray,
    statistic: Statistic,
    groups: IntArray | None = None,
    spec: BootstrapSpec | None = None,
) -> tuple[float, float]:
    """Percentile interval of `statistic` over resamples. `columns` (n, m) are per-row sums
    (e.g. w*r and 1); they are added up per group, groups are drawn with replacement, and
    `statistic` maps the resampled column totals (B, m) to B values."""
    spec = spec or BootstrapSpec()
    if spec.n_resamples <= 0 or len(columns) == 0:
        return float("nan"), float("nan")
    if groups is None:
        sums = columns
    else:
        n_groups = int(groups.max()) + 1
        sums = np.stack(
            [np.bincount(groups, weights=c, minlength=n_groups) for c in columns.T], axis=1
        )
    n_units = len(sums)
    rng = np.random.default_rng(spec.seed)
    chunk = max(1, min(spec.n_resamples, 2_000_000 // n_units))
    values: list[FloatArray] = []
    for start in range(0, spec.n_resamples, chunk):
        b = min(chunk, spec.n_resamples - start)
        draws = rng.integers(0, n_units, size=(b, n_units))
        offsets = (np.arange(b)[:, None] * n_units + draws).ravel()
        counts = np.bincount(offsets, minlength=b * n_units).reshape(b, n_units)
        with np.errstate(divide="ignore", invalid="ignore"):
            values.append(statistic(counts @ sums))
    replicates = np.concatenate(values)
    tail = (1.0 - spec.level) / 2.0
    if np.all(np.isnan(replicates)):
        return float("nan"), float("nan")
    low, high = np.nanquantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def _ratio(totals: FloatArray) -> FloatArray:
    return totals[:, 0] / totals[:, 1]


def _estimate(
    name: str,
    data: LoggedBandit,
    columns: FloatArray,
    statistic: Statistic,
    bootstrap: BootstrapSpec | None,
    extra: dict[str, float] | None = None,
) -> Estimate:
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statistic(columns.sum(axis=0)[None, :])[0])
    low, high = bootstrap_interval(columns, statistic, data.groups, bootstrap)
    return Estimate(name, value, low, high, data.n, diagnose(data, extra))


def ips(data: LoggedBandit, bootstrap: BootstrapSpec | None = None) -> Estimate:
    """Inverse propensity scoring: mean of w * r. Unbiased when p0 > 0 wherever pe > 0."""
    columns = np.stack([data.weights * data.rewards, np.ones(data.n)], axis=1)
    return _estimate("IPS", data, columns, _ratio, bootstrap)


def clipped_ips(data: LoggedBandit, cap: float, bootstrap: BootstrapSpec | None = None) -> Estimate:
    """IPS with each weight capped at `cap`: less variance, biased toward zero for nonnegative
    rewards; `cap=inf` is IPS. Diagnostics are of the raw weights, plus what the cap removed
    (`clipping_diagnostics`: `clipped_share` of rows, `clipped_weight_share` of the total
    weight), with a warning when the cap removes more than MAX_CLIPPED_WEIGHT_SHARE."""
    if not cap > 0:
        raise ValueError("cap must be > 0")
    w = data.weights
    clipped = np.minimum(w, cap)
    columns = np.stack([clipped * data.rewards, np.ones(data.n)], axis=1)
    extra = clipping_diagnostics(w, cap)
    return _estimate("clipped IPS", data, columns, _ratio, bootstrap, extra)


def snips(data: LoggedBandit, bootstrap: BootstrapSpec | None = None) -> Estimate:
    """Self-normalised IPS: sum(w * r) / sum(w). Slightly biased, consistent, lower variance;
    insensitive to a wrong scale of the weights (and so blind to a support deficit)."""
    w = data.weights
    columns = np.stack([w * data.rewards, w], axis=1)
    return _estimate("SNIPS", data, columns, _ratio, bootstrap)


def _fitted(data: LoggedBandit, model: RewardModel | None) -> bool:
    """Whether DM/DR fit a model (else they use data.reward_predictions); checks inputs."""
    if data.target_distribution is None:
        raise ValueError("DM and DR need target_distribution (n, n_actions)")
    if data.reward_predictions is not None:
        return False
    if data.actions is None:
        raise ValueError("DM and DR need the logged actions to fit a reward model")
    return True


RowTerms = Callable[[IntArray, FloatArray], FloatArray]


def _model_estimate(
    name: str,
    data: LoggedBandit,
    model: RewardModel | None,
    folds: int,
    bootstrap: BootstrapSpec | None,
    seed: int,
    refit_bootstrap: bool,
    row_terms: RowTerms,
) -> Estimate:
    """Value = mean of row_terms(rows, q[rows]); the bootstrap either holds q fixed or refits
    (cross-fits) the model on every resample of the groups. The folds always split the
    original units (the groups, else the original rows), so the copies of a unit that a
    resample draws more than once stay in one fold: no row is predicted by a model fitted on
    a copy of itself. Each unit keeps the fold it has on the full data in every resample."""
    fits = _fitted(data, model)
    assert data.target_distribution is not None
    n_actions = data.target_distribution.shape[1]
    model = model or ActionMeanModel()
    all_rows = np.arange(data.n)
    units = all_rows if data.groups is None else data.groups  # the resampled units
    n_units = int(units.max()) + 1 if data.n else 0

    def predictions(rows: IntArray) -> FloatArray:
        assert data.actions is not None
        return cross_fit(
            model,
            None if data.features is None else data.features[rows],
            data.actions[rows],
            data.rewards[rows],
            n_actions,
            folds=folds,
            groups=units[rows],
            seed=seed,
            n_groups=n_units,
        )

    q = predictions(all_rows) if fits else data.reward_predictions
    assert q is not None
    terms = row_terms(all_rows, q)
    extra = {"folds": float(folds), "refit_bootstrap": float(fits and refit_bootstrap)}
    if not (fits and refit_bootstrap):
        columns = np.stack([terms, np.ones(data.n)], axis=1)
        return _estimate(name, data, columns, _ratio, bootstrap, extra)
    spec = bootstrap or BootstrapSpec()
    low = high = float("nan")
    if spec.n_resamples > 0 and data.n:
        rng = np.random.default_rng(spec.seed)
        replicates = np.empty(spec.n_resamples)
        for b in range(spec.n_resamples):
            picks = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
            rows = np.repeat(all_rows, picks[units])
            replicates[b] = row_terms(rows, predictions(rows)).mean()
        tail = (1.0 - spec.level) / 2.0
        low, high = (float(v) for v in np.quantile(replicates, [tail, 1.0 - tail]))
    value = float(terms.mean()) if data.n else float("nan")
    return Estimate(name, value, low, high, data.n, diagnose(data, extra))


def direct_method(
    data: LoggedBandit,
    model: RewardModel | None = None,
    folds: int = DEFAULT_FOLDS,
    bootstrap: BootstrapSpec | None = None,
    seed: int = 0,
    refit_bootstrap: bool = True,
) -> Estimate:
    """DM: mean over rows of sum_a pe(a|x) q(x, a), with q cross-fitted over `folds` folds
    (default model `ActionMeanModel`; `data.reward_predictions` instead when given). Biased as
    far as q is wrong. The bootstrap refits q on every resample (`refit_bootstrap`), as DM's
    variance is mostly the model's; with given predictions it holds q fixed and understates."""
    target = data.target_distribution

    def terms(rows: IntArray, q: FloatArray) -> FloatArray:
        assert target is not None
        dm: FloatArray = (target[rows] * q).sum(axis=1)
        return dm

    return _model_estimate("DM", data, model, folds, bootstrap, seed, refit_bootstrap, terms)


def doubly_robust(
    data: LoggedBandit,
    model: RewardModel | None = None,
    folds: int = DEFAULT_FOLDS,
    bootstrap: BootstrapSpec | None = None,
    seed: int = 0,
    refit_bootstrap: bool = False,
) -> Estimate:
    """DR: DM plus the IPS-weighted residual of the logged action, mean of
    sum_a pe(a|x) q(x, a) + w (r - q(x, a_logged)). Unbiased when the propensities are right
    (whatever q), low-variance when q is good. q is cross-fitted as in `direct_method`; the
    bootstrap holds the out-of-fold q fixed unless `refit_bootstrap`."""
    if data.actions is None:
        raise ValueError("DR needs the logged actions")
    target, actions, weights = data.target_distribution, data.actions, data.weights

    def terms(rows: IntArray, q: FloatArray) -> FloatArray:
        assert target is not None
        dm = (target[rows] * q).sum(axis=1)
        residual = data.rewards[rows] - q[np.arange(len(rows)), actions[rows]]
        dr: FloatArray = dm + weights[rows] * residual
        return dr

    return _model_estimate("DR", data, model, folds, bootstrap, seed, refit_bootstrap, terms)


def position_based_ips(
    data: LoggedBandit,
    cap: float = float("inf"),
    per_slate: bool = False,
    bootstrap: BootstrapSpec | None = None,
) -> Estimate:
    """Position-based (independent-item) IPS for slates: each row is one (item, position) of a
    slate, weighted by pe(item at that position) / p0(item at that position), the policies'
    marginal probabilities, optionally capped at `cap`. The per-position means are averaged
    (expected reward per slot, each slate filling every position) or summed with
    `per_slate=True` (expected reward per slate). Assumes the reward of the item at a position
    depends only on the context, that item and that position, not on the rest of the slate;
    under it the estimate is unbiased, otherwise it is not. Set `groups` to the slate (or
    user) so that the bootstrap resamples whole slates. With a finite `cap` the extras report
    what it removed (`clipping_diagnostics`, per position too) and warn as `clipped_ips`."""
    if data.positions is None:
        raise ValueError("position_based_ips needs positions")
    if not cap > 0:
        raise ValueError("cap must be > 0")
    slots, slot = np.unique(data.positions, return_inverse=True)
    w = np.minimum(data.weights, cap)
    columns = np.zeros((data.n, 2 * len(slots)))
    rows = np.arange(data.n)
    columns[rows, 2 * slot] = w * data.rewards
    columns[rows, 2 * slot + 1] = 1.0

    def statistic(totals: FloatArray) -> FloatArray:
        per_position = totals[:, 0::2] / totals[:, 1::2]
        reduced: FloatArray = per_position.sum(axis=1) if per_slate else per_position.mean(axis=1)
        return reduced

    with np.errstate(divide="ignore", invalid="ignore"):
        totals = columns.sum(axis=0)
        per_position = totals[0::2] / totals[1::2]
    extra = {f"value_position_{int(k)}": float(v) for k, v in zip(slots, per_position, strict=True)}
    for k in slots:
        wk = data.weights[data.positions == k]
        squares = float(np.square(wk).sum())
        share = float(wk.sum()) ** 2 / squares / len(wk) if squares > 0 else 0.0
        extra[f"ess_share_position_{int(k)}"] = share
    if cap < np.inf:
        extra.update(clipping_diagnostics(data.weights, cap, data.positions))
    name = "position-based IPS" + (" (per slate)" if per_slate else "")
    return _estimate(name, data, columns, statistic, bootstrap, extra)
