"""Importance-weight diagnostics of off-policy evaluation, with warning thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recloop.evaluation.ope_data import LoggedBandit

# Warning thresholds (see docs/off-policy.md).
MIN_ESS_SHARE = 0.01  # effective sample size below 1% of the rows
MAX_MEAN_WEIGHT_DEVIATION = 0.10  # mean importance weight outside [0.9, 1.1]
MAX_SUPPORT_DEFICIT = 0.01  # more than 1% of target mass on actions the logger never takes
MIN_REWARDED_ROWS = 30  # fewer nonzero rewards on rows the target policy could take
MAX_SINGLE_WEIGHT_SHARE = 0.10  # one row carries more than 10% of the total weight
WEIGHT_QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Diagnostics:
    """Importance-weight health of the logged data for one target policy."""

    weight_mean: float
    weight_max: float
    weight_quantiles: tuple[tuple[float, float], ...]
    ess: float
    ess_share: float
    support_deficit: float | None
    rewarded_rows: int
    warnings: tuple[str, ...]
    extra: dict[str, float] = field(default_factory=dict)


def support_deficit(data: LoggedBandit) -> float | None:
    """Mean target probability mass on actions outside the logging support: the logging
    distribution's zeros when given, else the actions never seen in the logs. None without a
    target distribution."""
    target = data.target_distribution
    if target is None:
        return None
    if data.logging_distribution is not None:
        unsupported = data.logging_distribution <= 0
    elif data.actions is not None:
        seen = np.zeros(target.shape[1], dtype=bool)
        seen[data.actions] = True
        unsupported = np.broadcast_to(~seen, target.shape)
    else:
        return None
    return float(np.where(unsupported, target, 0.0).sum(axis=1).mean())


def diagnose(data: LoggedBandit, extra: dict[str, float] | None = None) -> Diagnostics:
    """Weight statistics, effective sample size and support, with warnings past the module's
    thresholds (MIN_ESS_SHARE, MAX_MEAN_WEIGHT_DEVIATION, MAX_SUPPORT_DEFICIT,
    MIN_REWARDED_ROWS, MAX_SINGLE_WEIGHT_SHARE)."""
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
        extra=dict(extra or {}),
    )
