"""Power analysis: the smallest effect an A/B design detects, and the units it needs.

Two-sided, equal arms, normal approximation:
``MDE = (z(1 - alpha/2) + z(power)) * sqrt(2 var / n)``, with ``var`` one unit's variance:
``p(1 - p)`` for a proportion, the delta method's linearised variance
(``RatioSummary.unit_variance``) for a ratio metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import stats

from recloop.analysis.stats import DEFAULT_ALPHA, DEFAULT_POWER, check_alpha, jsonable


@dataclass(frozen=True, slots=True)
class PowerResult:
    """The smallest effect a design detects, or the units it needs, two-sided, equal arms."""

    mean: float
    variance: float  # of one unit's metric
    units_per_variant: int
    alpha: float
    power: float
    mde_absolute: float
    mde_relative: float

    def to_dict(self) -> dict[str, Any]:
        """The analysis as JSON types."""
        result: dict[str, Any] = jsonable(self)
        return result


def units_per_variant(daily_units: float, days: float, share: float) -> int:
    """Units one variant collects: new units a day x days x its traffic share.

    ``daily_units`` counts distinct units entering per day: a returning user counts once.
    """
    if daily_units < 0 or days < 0 or not 0 < share <= 1:
        raise ValueError("daily_units and days must be non-negative, share in (0, 1]")
    return math.floor(daily_units * days * share)


def _unit_variance(mean: float, variance: float | None) -> float:
    if variance is None:
        if not 0 < mean < 1:
            raise ValueError("without a variance, mean is a rate and must lie in (0, 1)")
        return mean * (1.0 - mean)
    if variance <= 0:
        raise ValueError("variance must be positive")
    return variance


def _z_sum(alpha: float, power: float) -> float:
    check_alpha(alpha)
    if not 0 < power < 1:
        raise ValueError("power must lie in (0, 1)")
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def minimum_detectable_effect(
    mean: float,
    units: int,
    *,
    variance: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> PowerResult:
    """The smallest difference detected with ``power`` at ``alpha`` with ``units`` per arm.

    ``mean`` is the baseline; ``variance`` is one unit's (``RatioSummary.unit_variance`` for
    a ratio metric); without it ``mean`` is a proportion with variance ``mean * (1 - mean)``.
    """
    if units < 1:
        raise ValueError("units must be at least 1")
    var = _unit_variance(mean, variance)
    mde = _z_sum(alpha, power) * math.sqrt(2.0 * var / units)
    return PowerResult(
        mean=mean,
        variance=var,
        units_per_variant=units,
        alpha=alpha,
        power=power,
        mde_absolute=mde,
        mde_relative=mde / abs(mean) if mean != 0 else math.inf,
    )


def units_needed(
    mean: float,
    *,
    mde_relative: float | None = None,
    mde_absolute: float | None = None,
    variance: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> PowerResult:
    """Units per variant needed to detect an effect (give exactly one of the two MDEs)."""
    if (mde_relative is None) == (mde_absolute is None):
        raise ValueError("give exactly one of mde_relative and mde_absolute")
    effect = mde_absolute if mde_absolute is not None else abs(mean) * float(mde_relative or 0)
    if effect <= 0:
        raise ValueError("the effect must be positive")
    var = _unit_variance(mean, variance)
    units = math.ceil(2.0 * var * (_z_sum(alpha, power) / effect) ** 2)
    return PowerResult(
        mean=mean,
        variance=var,
        units_per_variant=units,
        alpha=alpha,
        power=power,
        mde_absolute=effect,
        mde_relative=effect / abs(mean) if mean != 0 else math.inf,
    )
