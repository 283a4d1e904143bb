"""Importance-weight diagnostics of off-policy evaluation, with warning thresholds.

`diagnose` summarises the raw importance weights of a `LoggedBandit` and turns the thresholds
below into human-readable warnings (they make an `Estimate` untrustworthy). It also says how
the logging support was checked (`support_basis`) and records informational `notes` that do
not make an estimate untrustworthy, such as a support that could not be checked at all.
Estimators that cap the weights report what the cap removed with `clipping_diagnostics`; the
warning reads its `clipped_weight_share` from the estimator's extras.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recloop.evaluation.ope_data import LoggedBandit
from recloop.evaluation.ope_models import FloatArray, IntArray

# Warning thresholds (see docs/off-policy.md).
MIN_ESS_SHARE = 0.01  # effective sample size below 1% of the rows
MAX_MEAN_WEIGHT_DEVIATION = 0.10  # mean importance weight outside [0.9, 1.1]
MAX_SUPPORT_DEFICIT = 0.01  # more than 1% of target mass on actions the logger never takes
MIN_REWARDED_ROWS = 30  # fewer nonzero rewards on rows the target policy could take
MAX_SINGLE_WEIGHT_SHARE = 0.10  # one row carries more than 10% of the total weight
# A weight cap removes more than 10% of the total importance weight: the clipped estimate's mean
# weight is then more than 10% below the raw one, the same tolerance as MAX_MEAN_WEIGHT_DEVIATION.
MAX_CLIPPED_WEIGHT_SHARE = 0.10
WEIGHT_QUANTILES = (0.5, 0.9, 0.99)

# How the support deficit was measured (`Diagnostics.support_basis`).
SUPPORT_FROM_LOGGING_DISTRIBUTION = "logging_distribution"  # exact: the zeros of p0
SUPPORT_FROM_LOGGED_ACTIONS = "logged_actions"  # proxy: actions never seen in the logs
SUPPORT_UNKNOWN = "unknown"  # not measurable from the data given; support_deficit is None


@dataclass(frozen=True)
class Diagnostics:
    """Importance-weight health of the logged data for one target policy.

    `warnings` make an estimate untrustworthy; `notes` are informational (e.g. the support
    could not be checked). `support_basis` says how `support_deficit` was measured: from the
    logging distribution (exact), from the logged actions (a proxy) or not at all
    (SUPPORT_UNKNOWN, with `support_deficit` None and a note)."""

    weight_mean: float
    weight_max: float
    weight_quantiles: tuple[tuple[float, float], ...]
    ess: float
    ess_share: float
    support_deficit: float | None
    rewarded_rows: int
    warnings: tuple[str, ...]
    extra: dict[str, float] = field(default_factory=dict)
    support_basis: str = SUPPORT_UNKNOWN
    notes: tuple[str, ...] = ()


def support_basis(data: LoggedBandit) -> str:
    """How `support_deficit` can be measured on `data`: SUPPORT_FROM_LOGGING_DISTRIBUTION,
    SUPPORT_FROM_LOGGED_ACTIONS (a proxy) or SUPPORT_UNKNOWN. The logged rows alone never
    reveal a deficit: every row has p0 > 0, and the target's mass where p0 = 0 leaves no row."""
    if data.target_distribution is None:
        return SUPPORT_UNKNOWN
    if data.logging_distribution is not None:
        return SUPPORT_FROM_LOGGING_DISTRIBUTION
    if data.actions is not None:
        return SUPPORT_FROM_LOGGED_ACTIONS
    return SUPPORT_UNKNOWN


def support_deficit(data: LoggedBandit) -> float | None:
    """Mean target probability mass on actions outside the logging support: the logging
    distribution's zeros when given, else the actions never seen in the logs. None without a
    target distribution (or without both the logging distribution and the actions): the
    support is then unknown, see `support_basis`."""
    target = data.target_distribution
    basis = support_basis(data)
    if target is None or basis == SUPPORT_UNKNOWN:
        return None
    if data.logging_distribution is not None:
        unsupported = data.logging_distribution <= 0
    else:
        assert data.actions is not None
        seen = np.zeros(target.shape[1], dtype=bool)
        seen[data.actions] = True
        unsupported = np.broadcast_to(~seen, target.shape)
    return float(np.where(unsupported, target, 0.0).sum(axis=1).mean())


def _support_note(basis: str, data: LoggedBandit) -> str | None:
    if basis == SUPPORT_FROM_LOGGED_ACTIONS:
        return (
            "support checked against the actions seen in the logs (no logging_distribution):"
            " a proxy, not the logging support; an action the logger takes but never drew here"
            " counts as unsupported, one it takes only in other contexts as supported"
        )
    if basis == SUPPORT_UNKNOWN:
        missing = (
            "target_distribution"
            if data.target_distribution is None
            else "logging_distribution and actions"
        )
        return (
            f"support unknown (no {missing}): the target's mass on actions the logging policy"
            " never takes cannot be measured from the logged rows, which all have p0 > 0;"
            " IPS-type estimates miss that mass, and only a mean weight below 1 hints at it"
        )
    return None


def clipping_diagnostics(
    weights: FloatArray, cap: float, positions: IntArray | None = None
) -> dict[str, float]:
    """What a weight cap removes, for an estimator's extras: `cap`, `clipped_share` (share of
    rows with w > cap) and `clipped_weight_share` (share of the total importance weight cut
    off, sum(max(w - cap, 0)) / sum(w); 0 when the weights sum to 0). With `positions` (for
    position-based IPS, which averages per-position means) the weight share is of the mean
    per-position weights, and each position's own share is added as
    `clipped_weight_share_position_k`. `diagnose` warns past MAX_CLIPPED_WEIGHT_SHARE."""
    n = len(weights)
    excess = np.maximum(weights - cap, 0.0) if cap < np.inf else np.zeros(n)
    out = {"cap": float(cap), "clipped_share": float(np.mean(excess > 0)) if n else 0.0}
    if positions is None:
        total, removed = float(weights.sum()), float(excess.sum())
    else:
        slots, slot = np.unique(positions, return_inverse=True)
        counts = np.bincount(slot, minlength=len(slots)).astype(np.float64)
        slot_total = np.bincount(slot, weights=weights, minlength=len(slots))
        slot_removed = np.bincount(slot, weights=excess, minlength=len(slots))
        for k, t, r in zip(slots, slot_total, slot_removed, strict=True):
            out[f"clipped_weight_share_position_{int(k)}"] = float(r / t) if t > 0 else 0.0
        total = float((slot_total / counts).sum()) if len(slots) else 0.0
        removed = float((slot_removed / counts).sum()) if len(slots) else 0.0
    out["clipped_weight_share"] = removed / total if total > 0 else 0.0
    return out


def diagnose(data: LoggedBandit, extra: dict[str, float] | None = None) -> Diagnostics:
    """Weight statistics, effective sample size and support, with warnings past the module's
    thresholds (MIN_ESS_SHARE, MAX_MEAN_WEIGHT_DEVIATION, MAX_SUPPORT_DEFICIT,
    MIN_REWARDED_ROWS, MAX_SINGLE_WEIGHT_SHARE, and MAX_CLIPPED_WEIGHT_SHARE on
    `extra["clipped_weight_share"]` when an estimator capped the weights, see
    `clipping_diagnostics`). A support that cannot be checked is a note, not a warning."""
    w = data.weights
    n = data.n
    total = float(w.sum())
    squares = float(np.square(w).sum())
    ess = total * total / squares if squares > 0 else 0.0
    ess_share = ess / n if n else 0.0
    mean = total / n if n else float("nan")
    w_max = float(w.max()) if n else float("nan")
    quantiles = tuple(
        (q, float(np.quantile(w, q)) if n else float("nan")) for q in WEIGHT_QUANTILES
    )
    deficit = support_deficit(data)
    basis = support_basis(data)
    extra = dict(extra or {})
    rewarded = int(np.count_nonzero((data.rewards != 0) & (w > 0)))
    warnings: list[str] = []
    if n == 0:
        warnings.append("no logged rows")
    if n and ess_share < MIN_ESS_SHARE:
        warnings.append(
            f"effective sample size {ess:.1f} is {ess_share:.2%} of {n} rows "
            f"(< {MIN_ESS_SHARE:.0%}): a few rows carry the estimate"
        )
    if n and abs(mean - 1.0) > MAX_MEAN_WEIGHT_DEVIATION:
        warnings.append(
            f"mean importance weight {mean:.3f} is not within {MAX_MEAN_WEIGHT_DEVIATION:.0%}"
            " of 1: propensities are wrong, the support is incomplete or the sample is too small"
        )
    if total > 0 and w_max / total > MAX_SINGLE_WEIGHT_SHARE:
        warnings.append(
            f"one row carries {w_max / total:.1%} of the total weight "
            f"(> {MAX_SINGLE_WEIGHT_SHARE:.0%})"
        )
    if deficit is not None and deficit > MAX_SUPPORT_DEFICIT:
        warnings.append(
            f"the target policy puts {deficit:.1%} of its mass on actions the logging policy "
            f"never takes (> {MAX_SUPPORT_DEFICIT:.0%}): IPS cannot see them and is biased"
        )
    removed = extra.get("clipped_weight_share", 0.0)
    if removed > MAX_CLIPPED_WEIGHT_SHARE:
        warnings.append(
            f"the weight cap {extra.get('cap', float('nan')):g} removes {removed:.1%} of the"
            f" total importance weight (> {MAX_CLIPPED_WEIGHT_SHARE:.0%}; "
            f"{extra.get('clipped_share', float('nan')):.1%} of rows clipped): for nonnegative"
            " rewards the estimate is biased down by about that share, more when the clipped"
            " rows' rewards are above average"
        )
    if rewarded < MIN_REWARDED_ROWS:
        warnings.append(
            f"only {rewarded} nonzero rewards on rows the target policy could take "
            f"(< {MIN_REWARDED_ROWS})"
        )
    return Diagnostics(
        weight_mean=mean,
        weight_max=w_max,
        weight_quantiles=quantiles,
        ess=ess,
        ess_share=ess_share,
        support_deficit=deficit,
        rewarded_rows=rewarded,
        warnings=tuple(warnings),
        extra=extra,
        support_basis=basis,
        notes=tuple(note for note in (_support_note(basis, data),) if note is not None),
    )
