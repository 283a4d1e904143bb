"""An experiment's report: every variant against the control, with a ship decision.

Per variant: users, lists, impressions, CTR, satisfied clicks and hides per impression,
latency and the distinct items served. Against the control, for each treatment:
- CTR, satisfaction and hide rate as ratio metrics over users (delta-method z-tests);
- p99 latency by a bootstrap over requests;
- coverage: distinct items served to equally many users of each arm, by a bootstrap;
- the sample-ratio-mismatch check of users per variant against the configured shares;
- the minimum detectable effect of the primary metric with the users seen so far;
- the guardrails and the decision that combines them (``decision.decide``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from recloop.analysis.decision import (
    Direction,
    Guardrail,
    GuardrailCheck,
    GuardrailStatus,
    ShipDecision,
    check_guardrail,
    decide,
)
from recloop.analysis.outcomes import ExperimentOutcomes, VariantOutcomes
from recloop.analysis.power import PowerResult, minimum_detectable_effect
from recloop.analysis.stats import (
    DEFAULT_ALPHA,
    ComparisonResult,
    SRMResult,
    bootstrap_quantile_test,
    coverage_test,
    jsonable,
    ratio_summary,
    ratio_ztest,
    sample_ratio_mismatch,
)
from recloop.config import CleaningConfig, ExperimentConfig, GuardrailConfig

#: Ratio metrics: name -> (numerator, denominator) of the per-user sums.
RATIO_METRICS = {
    "ctr": ("clicks", "impressions"),
    "satisfaction": ("satisfied", "impressions"),
    "hide_rate": ("hides", "impressions"),
}
LATENCY_RESAMPLES = 1000
COVERAGE_RESAMPLES = 500


@dataclass(frozen=True, slots=True)
class VariantSummary:
    """One variant's totals over the window."""

    variant: str
    users: int
    requests: int
    impressions: int
    ctr: float
    satisfaction: float
    hide_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    distinct_items: int
    fallback_share: float


@dataclass(frozen=True, slots=True)
class TreatmentReport:
    """One treatment against the control: every metric, the power, the decision."""

    variant: str
    metrics: dict[str, ComparisonResult]
    power: PowerResult | None
    decision: ShipDecision

    def to_dict(self) -> dict[str, Any]:
        """As JSON types."""
        return {
            "variant": self.variant,
            "metrics": {name: r.to_dict() for name, r in self.metrics.items()},
            "power": jsonable(self.power),
            "decision": self.decision.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """Everything ``recloop experiment report`` prints and the admin route returns."""

    experiment: str
    surface: str
    control: str
    primary_metric: str
    first_served: datetime | None
    last_served: datetime | None
    variants: tuple[VariantSummary, ...]
    srm: SRMResult | None
    treatments: tuple[TreatmentReport, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """As JSON types."""
        return {
            "experiment": self.experiment,
            "surface": self.surface,
            "control": self.control,
            "primaryMetric": self.primary_metric,
            "firstServed": self.first_served.isoformat() if self.first_served else None,
            "lastServed": self.last_served.isoformat() if self.last_served else None,
            "variants": [jsonable(v) for v in self.variants],
            "srm": self.srm.to_dict() if self.srm is not None else None,
            "treatments": [t.to_dict() for t in self.treatments],
            "notes": list(self.notes),
        }


def experiment_report(
    config: ExperimentConfig,
    outcomes: ExperimentOutcomes,
    *,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    cleaning: CleaningConfig | None = None,
    shares: Mapping[str, float] | None = None,
    window_note: str | None = None,
) -> ExperimentReport:
    """Analyse an experiment's outcomes as configured (control, metric, guardrails).

    Users who click like bots (the training data's rule: at least ``bot_min_clicks`` clicks
    at a click-through rate above ``bot_max_ctr``) are left out: one of them outweighs
    hundreds of people in a ratio metric. ``shares`` are the variants' expected shares of
    users (a ramped experiment's current stage; the configured ones by default), and
    ``window_note`` says which lists were read, when not all of them.
    """
    names = [v.name for v in config.variants]
    notes: list[str] = [window_note] if window_note else []
    found = {}
    bots = 0
    for name in names:
        found[name], dropped = without_bots(
            outcomes.variants.get(name, VariantOutcomes()), cleaning or CleaningConfig()
        )
        bots += dropped
    if bots:
        notes.append(f"{bots} users left out as bots (they click nearly everything served)")
    unknown = sorted(set(outcomes.variants) - set(names))
    if unknown:
        notes.append(f"lists logged under variants no longer configured: {', '.join(unknown)}")
    if outcomes.unattributed_events:
        notes.append(
            f"{outcomes.unattributed_events:,} events had no requestId (found outside "
            "recommendations) and count for no list"
        )
    summaries = tuple(_summary(name, found[name]) for name in names)
    users = {name: len(found[name].users) for name in names}
    srm = None
    expected = dict(shares) if shares is not None else config.shares()
    if sum(users.values()) > 0 and all(share > 0 for share in expected.values()):
        srm = sample_ratio_mismatch(users, expected)
    control = found[config.control]
    treatments: list[TreatmentReport] = []
    rng = np.random.default_rng(seed)
    for name in names[1:]:
        if len(control.users) < 2 or len(found[name].users) < 2:
            notes.append(f"{name}: fewer than two users in it or in the control; no test yet")
            continue
        treatments.append(_treatment(config, control, name, found[name], srm, alpha, rng))
    return ExperimentReport(
        experiment=config.name,
        surface=config.surface,
        control=config.control,
        primary_metric=config.primary_metric,
        first_served=outcomes.first_served,
        last_served=outcomes.last_served,
        variants=summaries,
        srm=srm,
        treatments=tuple(treatments),
        notes=tuple(notes),
    )


def _treatment(
    config: ExperimentConfig,
    control: VariantOutcomes,
    name: str,
    treatment: VariantOutcomes,
    srm: SRMResult | None,
    alpha: float,
    rng: np.random.Generator,
) -> TreatmentReport:
    metrics: dict[str, ComparisonResult] = {}
    for metric, (num, den) in RATIO_METRICS.items():
        metrics[metric] = ratio_ztest(
            control.column(num),
            control.column(den),
            treatment.column(num),
            treatment.column(den),
            alpha=alpha,
            metric=metric,
        )
    if len(control.latencies_ms) >= 2 and len(treatment.latencies_ms) >= 2:
        # Requests as rows: a user's requests are close to independent in their latency.
        metrics["latency_p99"] = bootstrap_quantile_test(
            control.latencies_ms,
            treatment.latencies_ms,
            quantile=0.99,
            alpha=alpha,
            resamples=LATENCY_RESAMPLES,
            rng=rng,
            metric="latency_p99",
        )
    coverage_c = [control.user_items[u] for u in sorted(control.user_items)]
    coverage_t = [treatment.user_items[u] for u in sorted(treatment.user_items)]
    if len(coverage_c) >= 2 and len(coverage_t) >= 2:
        metrics["coverage"] = coverage_test(
            coverage_c, coverage_t, alpha=alpha, resamples=COVERAGE_RESAMPLES, rng=rng
        )
    num, den = RATIO_METRICS[config.primary_metric]
    baseline = ratio_summary(control.column(num), control.column(den))
    power = None
    if baseline.value > 0 and baseline.unit_variance > 0:
        power = minimum_detectable_effect(
            baseline.value,
            min(len(control.users), len(treatment.users)),
            variance=baseline.unit_variance,
            alpha=alpha,
        )
    checks = [_check(g, metrics[g.metric]) for g in config.guardrails if g.metric in metrics]
    decision = decide(
        metrics[config.primary_metric],
        srm=srm,
        guardrails=checks,
        good_direction=Direction.UP,
        min_relative_effect=config.min_relative_effect,
    )
    return TreatmentReport(name, metrics, power, decision)


def _check(config: GuardrailConfig, result: ComparisonResult) -> GuardrailCheck:
    guardrail = Guardrail(
        config.metric,
        Direction(config.bad_direction),
        config.tolerance,
        allowance=config.allowance,
    )
    if config.limit is None:
        return check_guardrail(guardrail, result)
    value = result.treatment_value
    bad = value > config.limit if config.bad_direction == "up" else value < config.limit
    side = "above" if config.bad_direction == "up" else "below"
    return GuardrailCheck(
        guardrail,
        result,
        GuardrailStatus.TRIPPED if bad else GuardrailStatus.PASS,
        f"{config.metric} {value:.4g}: {'' if bad else 'not '}{side} the limit {config.limit:g}",
    )


def without_bots(outcomes: VariantOutcomes, rules: CleaningConfig) -> tuple[VariantOutcomes, int]:
    """The outcomes without users who click like bots, and how many were left out."""
    bots = {
        user
        for user, unit in outcomes.users.items()
        if unit["clicks"] >= rules.bot_min_clicks
        and unit["clicks"] > rules.bot_max_ctr * unit["impressions"]
    }
    if not bots:
        return outcomes, 0
    users = {u: unit for u, unit in outcomes.users.items() if u not in bots}
    kept = VariantOutcomes(
        users=users,
        latencies_ms=outcomes.latencies_ms,
        served_items=outcomes.served_items,
        # The bots' lists leave the share's numerator with its denominator.
        fallbacks=int(sum(unit["fallbacks"] for unit in users.values())),
        user_items={u: items for u, items in outcomes.user_items.items() if u not in bots},
    )
    return kept, len(bots)


def _summary(name: str, outcomes: VariantOutcomes) -> VariantSummary:
    totals = {
        figure: sum(u[figure] for u in outcomes.users.values())
        for figure in ("requests", "impressions", "clicks", "satisfied", "hides")
    }
    impressions = max(1.0, totals["impressions"])
    latencies = sorted(outcomes.latencies_ms)
    return VariantSummary(
        variant=name,
        users=len(outcomes.users),
        requests=int(totals["requests"]),
        impressions=int(totals["impressions"]),
        ctr=totals["clicks"] / impressions,
        satisfaction=totals["satisfied"] / impressions,
        hide_rate=totals["hides"] / impressions,
        latency_p50_ms=statistics.median(latencies) if latencies else 0.0,
        latency_p99_ms=float(np.quantile(latencies, 0.99)) if latencies else 0.0,
        distinct_items=len(outcomes.served_items),
        fallback_share=outcomes.fallbacks / max(1, totals["requests"]),
    )
