"""Planning an experiment from the surface's own logs: what it could detect, and in how long.

The baseline is what the surface served over the last ``days`` days, whatever experiments
ran on it: its users (bot-like ones left out, as the report does), the primary metric over
them, and that metric's per-user variance (the delta method's, as the report uses). An
experiment of the same length giving a variant ``share`` of those users would have
``users x share`` of them per variant; the minimum detectable effect follows, and so do the
users a given effect needs. Reading the same length of history as the planned experiment
keeps the per-user variance honest: users who stay longer see more lists, and their ratio
varies less.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recloop.analysis.outcomes import ALL, VariantOutcomes, read_surface_outcomes
from recloop.analysis.power import minimum_detectable_effect, units_needed
from recloop.analysis.report import RATIO_METRICS, without_bots
from recloop.analysis.stats import DEFAULT_ALPHA, DEFAULT_POWER, jsonable, ratio_summary
from recloop.config import CleaningConfig
from recloop.store.protocols import EventLog, RecommendationLog


@dataclass(frozen=True, slots=True)
class ExperimentPlan:
    """What an experiment of ``days`` with ``share`` of the users per variant could detect."""

    surface: str
    metric: str
    since: datetime
    until: datetime
    days_of_history: float
    users: int
    bots_left_out: int
    baseline: float
    unit_variance: float
    share: float
    users_per_variant: int
    mde_relative: float
    effect: float | None
    users_needed: int | None
    alpha: float
    power: float

    def to_dict(self) -> dict[str, Any]:
        """As JSON types."""
        return jsonable(self)  # type: ignore[no-any-return]


def plan_experiment(
    rec_log: RecommendationLog,
    events: EventLog,
    app_id: str,
    surface: str,
    *,
    now: datetime,
    days: float,
    share: float,
    metric: str = "ctr",
    effect: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> ExperimentPlan:
    """The plan for an experiment on ``surface``, from its last ``days`` of logs.

    Raises:
        ValueError: the metric is unknown, ``share`` is outside (0, 1], or the window has
            too few users (fewer than two) or no impressions to measure a baseline from.
    """
    if metric not in ("ctr", "satisfaction"):
        raise ValueError(f"metric: must be ctr or satisfaction, not {metric!r}")
    if not 0 < share <= 1:
        raise ValueError("share: must be in (0, 1]")
    if days <= 0:
        raise ValueError("days: must be positive")
    since = now - timedelta(days=days)
    outcomes = read_surface_outcomes(rec_log, events, app_id, surface, since=since, until=now)
    served, bots = without_bots(outcomes.variants.get(ALL, VariantOutcomes()), CleaningConfig())
    if len(served.users) < 2:
        raise ValueError(
            f"surface {surface!r} served fewer than two users in the last {days:g} days: "
            "nothing to plan from"
        )
    num, den = RATIO_METRICS[metric]
    summary = ratio_summary(served.column(num), served.column(den))
    per_variant = max(1, math.floor(len(served.users) * share))
    variance = summary.unit_variance
    mde = (
        minimum_detectable_effect(
            summary.value, per_variant, variance=variance, alpha=alpha, power=power
        ).mde_relative
        if summary.value > 0 and variance > 0
        else math.inf
    )
    needed = None
    if effect is not None and summary.value > 0 and variance > 0:
        needed = units_needed(
            summary.value, mde_relative=effect, variance=variance, alpha=alpha, power=power
        ).units_per_variant
    first = outcomes.first_served or since
    return ExperimentPlan(
        surface=surface,
        metric=metric,
        since=since,
        until=now,
        days_of_history=(now - first).total_seconds() / 86_400,
        users=len(served.users),
        bots_left_out=bots,
        baseline=summary.value,
        unit_variance=variance,
        share=share,
        users_per_variant=per_variant,
        mde_relative=mde,
        effect=effect,
        users_needed=needed,
        alpha=alpha,
        power=power,
    )
