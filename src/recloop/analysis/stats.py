"""Statistics of A/B experiments: the tests between variants and the sample-ratio check.

The randomisation unit is the user, so every metric arrives as one row per unit: a ratio
metric such as CTR (sum of clicks over sum of impressions) is a pair of per-unit sums, and
its variance comes from the delta method (Deng, Knoblich and Lu, 2018), because impressions
of one user are not independent. Everything here is pure: arrays and numbers in, frozen
result objects out, each with ``to_dict()`` for JSON. Power analysis lives in
``recloop.analysis.power``; guardrails and the ship decision in
``recloop.analysis.decision``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

IntArray = NDArray[np.int64]

DEFAULT_ALPHA: Final = 0.05
DEFAULT_POWER: Final = 0.8
# A mismatch this unlikely under the configured split means broken assignment or logging,
# not bad luck; the usual industry threshold (Fabijan et al., 2019).
SRM_P_THRESHOLD: Final = 0.001


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses, enums, tuples and numpy scalars made plain JSON types.

    Non-finite floats become ``None``: JSON has no NaN or infinity.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    return array


def _pair(numerators: ArrayLike, denominators: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    x = _vector(numerators, "numerators")
    y = _vector(denominators, "denominators")
    if x.shape != y.shape:
        raise ValueError("numerators and denominators must have one row per unit each")
    if len(x) < 2:
        raise ValueError("need at least two units")
    if y.mean() <= 0:
        raise ValueError("the denominators' mean must be positive")
    return x, y


def delta_method_ratio_variance(numerators: ArrayLike, denominators: ArrayLike) -> float:
    """Variance of the ratio of means ``mean(x) / mean(y)`` over units, by the delta method.

    With ``mx, my`` the means: ``Var ~ (var(x)/my^2 - 2 mx cov(x, y)/my^3 + mx^2 var(y)/my^4) / n``
    (sample moments).
    """
    x, y = _pair(numerators, denominators)
    n = len(x)
    mx, my = float(x.mean()), float(y.mean())
    cov = np.cov(x, y, ddof=1)
    var_x, var_y, cov_xy = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    variance = (var_x / my**2 - 2.0 * mx * cov_xy / my**3 + mx**2 * var_y / my**4) / n
    return max(variance, 0.0)


@dataclass(frozen=True, slots=True)
class RatioSummary:
    """A ratio metric over units: its value, the variance of that value, and per unit."""

    units: int
    numerator_sum: float
    denominator_sum: float
    value: float
    variance: float  # of ``value``, by the delta method

    @property
    def unit_variance(self) -> float:
        """The variance of one unit's linearised metric (what power analysis needs)."""
        return self.variance * self.units

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON types."""
        return dict(jsonable(self), unit_variance=jsonable(self.unit_variance))


def ratio_summary(numerators: ArrayLike, denominators: ArrayLike) -> RatioSummary:
    """Summarise a ratio metric from per-unit sums (e.g. clicks and impressions per user)."""
    x, y = _pair(numerators, denominators)
    return RatioSummary(
        units=len(x),
        numerator_sum=float(x.sum()),
        denominator_sum=float(y.sum()),
        value=float(x.sum() / y.sum()),
        variance=delta_method_ratio_variance(x, y),
    )


@dataclass(frozen=True, slots=True)
class ComparisonResult:
    """Treatment against control on one metric: the differences, their intervals, the test.

    ``absolute_diff`` is treatment - control; ``relative_diff`` is treatment / control - 1.
    ``degrees_of_freedom`` is ``None`` for z-tests.
    """

    metric: str
    test: str
    control_units: int
    treatment_units: int
    control_value: float
    treatment_value: float
    absolute_diff: float
    absolute_ci: tuple[float, float]
    relative_diff: float
    relative_ci: tuple[float, float]
    statistic: float
    p_value: float
    alpha: float
    degrees_of_freedom: float | None = None

    @property
    def significant(self) -> bool:
        """Whether the difference is significant at ``alpha`` (two-sided)."""
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON types, with ``significant``."""
        return dict(jsonable(self), significant=self.significant)


def check_alpha(alpha: float) -> None:
    """Raise ``ValueError`` unless ``alpha`` lies in (0, 1)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")


def _relative(
    control: float, treatment: float, var_control: float, var_treatment: float, crit: float
) -> tuple[float, tuple[float, float]]:
    # Delta method on treatment/control - 1 with independent arms.
    if control == 0:
        return math.nan, (math.nan, math.nan)
    try:
        relative = treatment / control - 1.0
        se = math.sqrt(var_treatment / control**2 + treatment**2 * var_control / control**4)
    except (ZeroDivisionError, OverflowError):  # a control mean too close to zero
        return math.nan, (math.nan, math.nan)
    return relative, (relative - crit * se, relative + crit * se)


def _z_p_value(diff: float, se: float) -> tuple[float, float]:
    if se > 0:
        z = diff / se
        return z, float(2.0 * stats.norm.sf(abs(z)))
    # No spread at all: any difference is certain, none is no evidence.
    return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)


def ratio_ztest(
    control_numerators: ArrayLike,
    control_denominators: ArrayLike,
    treatment_numerators: ArrayLike,
    treatment_denominators: ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "ratio",
) -> ComparisonResult:
    """Two-sample z-test of a ratio metric (e.g. CTR) from per-unit sums, delta-method variance."""
    check_alpha(alpha)
    control = ratio_summary(control_numerators, control_denominators)
    treatment = ratio_summary(treatment_numerators, treatment_denominators)
    crit = float(stats.norm.ppf(1.0 - alpha / 2.0))
    diff = treatment.value - control.value
    se = math.sqrt(control.variance + treatment.variance)
    z, p = _z_p_value(diff, se)
    relative, relative_ci = _relative(
        control.value, treatment.value, control.variance, treatment.variance, crit
    )
    return ComparisonResult(
        metric=metric,
        test="delta-method z",
        control_units=control.units,
        treatment_units=treatment.units,
        control_value=control.value,
        treatment_value=treatment.value,
        absolute_diff=diff,
        absolute_ci=(diff - crit * se, diff + crit * se),
        relative_diff=relative,
        relative_ci=relative_ci,
        statistic=z,
        p_value=p,
        alpha=alpha,
    )


def two_proportion_ztest(
    control_successes: int,
    control_units: int,
    treatment_successes: int,
    treatment_units: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "proportion",
) -> ComparisonResult:
    """Two-proportion z-test of a per-unit binary metric (e.g. converted or not).

    The test uses the pooled variance (the null's); the intervals the unpooled one.
    """
    check_alpha(alpha)
    if control_units < 1 or treatment_units < 1:
        raise ValueError("both arms need units")
    if not (
        0 <= control_successes <= control_units and 0 <= treatment_successes <= treatment_units
    ):
        raise ValueError("successes must lie between 0 and the units")
    p_c = control_successes / control_units
    p_t = treatment_successes / treatment_units
    pooled = (control_successes + treatment_successes) / (control_units + treatment_units)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / control_units + 1 / treatment_units))
    diff = p_t - p_c
    z, p = _z_p_value(diff, se_pooled)
    var_c, var_t = p_c * (1 - p_c) / control_units, p_t * (1 - p_t) / treatment_units
    crit = float(stats.norm.ppf(1.0 - alpha / 2.0))
    se = math.sqrt(var_c + var_t)
    relative, relative_ci = _relative(p_c, p_t, var_c, var_t, crit)
    return ComparisonResult(
        metric=metric,
        test="two-proportion z",
        control_units=control_units,
        treatment_units=treatment_units,
        control_value=p_c,
        treatment_value=p_t,
        absolute_diff=diff,
        absolute_ci=(diff - crit * se, diff + crit * se),
        relative_diff=relative,
        relative_ci=relative_ci,
        statistic=z,
        p_value=p,
        alpha=alpha,
    )


def welch_ttest(
    control: ArrayLike,
    treatment: ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "mean",
) -> ComparisonResult:
    """Welch's t-test of a continuous per-unit metric, Welch-Satterthwaite degrees of freedom."""
    check_alpha(alpha)
    c = _vector(control, "control")
    t = _vector(treatment, "treatment")
    if len(c) < 2 or len(t) < 2:
        raise ValueError("each arm needs at least two units")
    mean_c, mean_t = float(c.mean()), float(t.mean())
    var_c, var_t = float(c.var(ddof=1)) / len(c), float(t.var(ddof=1)) / len(t)
    se = math.sqrt(var_c + var_t)
    diff = mean_t - mean_c
    if se > 0:
        df = (var_c + var_t) ** 2 / (var_c**2 / (len(c) - 1) + var_t**2 / (len(t) - 1))
        statistic = diff / se
        p = float(2.0 * stats.t.sf(abs(statistic), df))
        crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    else:
        df = float(len(c) + len(t) - 2)
        statistic, p = _z_p_value(diff, se)
        crit = 0.0
    relative, relative_ci = _relative(mean_c, mean_t, var_c, var_t, crit)
    return ComparisonResult(
        metric=metric,
        test="welch t",
        control_units=len(c),
        treatment_units=len(t),
        control_value=mean_c,
        treatment_value=mean_t,
        absolute_diff=diff,
        absolute_ci=(diff - crit * se, diff + crit * se),
        relative_diff=relative,
        relative_ci=relative_ci,
        statistic=statistic,
        p_value=p,
        alpha=alpha,
        degrees_of_freedom=df,
    )


def bootstrap_quantile_test(
    control: ArrayLike,
    treatment: ArrayLike,
    *,
    quantile: float = 0.99,
    alpha: float = DEFAULT_ALPHA,
    resamples: int = 2000,
    rng: np.random.Generator,
    metric: str = "p99",
) -> ComparisonResult:
    """A quantile (e.g. latency p99) compared by a percentile bootstrap of each arm.

    Rows must be independent (one per unit, e.g. each user's own p99). The p-value is twice
    the smaller bootstrap tail of the difference beyond zero.
    """
    check_alpha(alpha)
    c = _vector(control, "control")
    t = _vector(treatment, "treatment")
    if len(c) < 2 or len(t) < 2:
        raise ValueError("each arm needs at least two units")
    q_c, q_t = float(np.quantile(c, quantile)), float(np.quantile(t, quantile))
    boot_c = np.empty(resamples)
    boot_t = np.empty(resamples)
    # Chunks bound the memory of resamples x units.
    chunk = max(1, 4_000_000 // max(len(c), len(t)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        boot_c[start : start + size] = np.quantile(
            c[rng.integers(len(c), size=(size, len(c)))], quantile, axis=1
        )
        boot_t[start : start + size] = np.quantile(
            t[rng.integers(len(t), size=(size, len(t)))], quantile, axis=1
        )
    diffs = boot_t - boot_c
    tails = (float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0)))
    p = min(1.0, 2.0 * min(tails))
    lo, hi = alpha / 2.0, 1.0 - alpha / 2.0
    abs_ci = tuple(float(v) for v in np.quantile(diffs, (lo, hi)))
    if q_c != 0 and np.all(boot_c != 0):
        relatives = boot_t / boot_c - 1.0
        rel_ci = tuple(float(v) for v in np.quantile(relatives, (lo, hi)))
        relative = q_t / q_c - 1.0
    else:
        rel_ci, relative = (math.nan, math.nan), math.nan
    sd = float(diffs.std(ddof=1))
    return ComparisonResult(
        metric=metric,
        test=f"bootstrap quantile {quantile:g}",
        control_units=len(c),
        treatment_units=len(t),
        control_value=q_c,
        treatment_value=q_t,
        absolute_diff=q_t - q_c,
        absolute_ci=(abs_ci[0], abs_ci[1]),
        relative_diff=relative,
        relative_ci=(rel_ci[0], rel_ci[1]),
        statistic=(q_t - q_c) / sd if sd > 0 else 0.0,
        p_value=p,
        alpha=alpha,
    )


# -- sample-ratio mismatch --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SRMResult:
    """Chi-square goodness of fit of units per variant against the configured shares."""

    observed: Mapping[str, int]
    expected: Mapping[str, float]
    chi2: float
    degrees_of_freedom: int
    p_value: float
    threshold: float

    @property
    def mismatch(self) -> bool:
        """True when the split is too unlikely under the configured shares to trust."""
        return self.p_value < self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON types, with ``mismatch``."""
        return dict(jsonable(self), mismatch=self.mismatch)


def sample_ratio_mismatch(
    observed: Mapping[str, int],
    shares: Mapping[str, float],
    *,
    threshold: float = SRM_P_THRESHOLD,
) -> SRMResult:
    """Check observed units per variant against traffic shares (normalised to sum to one)."""
    if set(observed) != set(shares) or len(shares) < 2:
        raise ValueError("observed and shares must name the same two or more variants")
    if any(s <= 0 for s in shares.values()) or any(n < 0 for n in observed.values()):
        raise ValueError("shares must be positive and counts non-negative")
    names = sorted(shares)
    counts = np.array([observed[v] for v in names], dtype=np.float64)
    weights = np.array([shares[v] for v in names], dtype=np.float64)
    total = counts.sum()
    if total == 0:
        raise ValueError("no units observed")
    expected = total * weights / weights.sum()
    chi2, p = stats.chisquare(counts, expected)
    return SRMResult(
        observed={v: int(observed[v]) for v in names},
        expected={v: float(e) for v, e in zip(names, expected, strict=True)},
        chi2=float(chi2),
        degrees_of_freedom=len(names) - 1,
        p_value=float(p),
        threshold=threshold,
    )


def coverage_test(
    control: Sequence[Collection[str]],
    treatment: Sequence[Collection[str]],
    *,
    alpha: float = DEFAULT_ALPHA,
    resamples: int = 500,
    rng: np.random.Generator,
    metric: str = "coverage",
) -> ComparisonResult:
    """Distinct items served to the same number of users in each arm, by subsampling.

    Each row is one user's set of items served. Distinct items grow with the users counted,
    so arms of unequal size are compared at ``m``, half the smaller arm's users: each
    resample draws ``m`` distinct users from each arm (without replacement: a user drawn
    twice adds no items, which would bias the smaller arm down) and counts the items they
    were served. Half-samples of the smaller arm spread like its full sample would; the
    larger arm's subsamples spread more, so the interval is conservative. The values are
    the resamples' means, the intervals their percentiles, and the p-value twice the
    smaller tail of the difference beyond zero.
    """
    check_alpha(alpha)
    if len(control) < 2 or len(treatment) < 2:
        raise ValueError("each arm needs at least two units")
    n = max(1, min(len(control), len(treatment)) // 2)
    codes: dict[str, int] = {}
    arms = [_item_rows(control, codes), _item_rows(treatment, codes)]
    draws = np.empty((2, resamples))
    for a, (starts, lengths, items) in enumerate(arms):
        for r in range(resamples):
            users = rng.choice(len(lengths), size=n, replace=False)
            take = lengths[users]
            offsets = np.repeat(starts[users] - np.cumsum(take) + take, take)
            served = items[offsets + np.arange(int(take.sum()))]
            draws[a, r] = np.count_nonzero(np.bincount(served, minlength=len(codes)))
    c, t = draws
    diffs = t - c
    lo, hi = alpha / 2.0, 1.0 - alpha / 2.0
    abs_ci = np.quantile(diffs, (lo, hi))
    rel = t / np.where(c > 0, c, np.nan) - 1.0
    rel_ci = np.nanquantile(rel, (lo, hi)) if np.any(np.isfinite(rel)) else (math.nan, math.nan)
    c_mean, t_mean = float(c.mean()), float(t.mean())
    sd = float(diffs.std(ddof=1))
    p = min(1.0, 2.0 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return ComparisonResult(
        metric=metric,
        test=f"distinct items at {n} users, subsampled",
        control_units=len(control),
        treatment_units=len(treatment),
        control_value=c_mean,
        treatment_value=t_mean,
        absolute_diff=t_mean - c_mean,
        absolute_ci=(float(abs_ci[0]), float(abs_ci[1])),
        relative_diff=t_mean / c_mean - 1.0 if c_mean > 0 else math.nan,
        relative_ci=(float(rel_ci[0]), float(rel_ci[1])),
        statistic=(t_mean - c_mean) / sd if sd > 0 else 0.0,
        p_value=p,
        alpha=alpha,
    )


def _item_rows(
    rows: Sequence[Collection[str]], codes: dict[str, int]
) -> tuple[IntArray, IntArray, IntArray]:
    """Users' item sets as (start, length) into one array of item codes."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    items = np.fromiter(
        (codes.setdefault(i, len(codes)) for r in rows for i in r),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    return starts, lengths, items
