"""The simulation report: the decision first, then observed beside true CTR, the days with
a marker per model version, the sources that earned the clicks, latency per stage, the
fallback share, and the shapes of the simulated log.

Every figure is shown in one unit per kind (rates in %, times in ms); nothing is printed
as a Python value: a figure that was not measured reads "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recloop.analysis.decision import Decision, GuardrailCheck
from recloop.analysis.report import ExperimentReport, TreatmentReport
from recloop.analysis.stats import ComparisonResult, ratio_summary, ratio_ztest
from recloop.config import GuardrailConfig
from recloop.evaluation.charts import (
    Interval,
    Marker,
    bar_chart,
    format_value,
    interval_chart,
    line_chart,
    rank_chart,
    stacked_bar_chart,
)
from recloop.evaluation.report import Section, render_report
from recloop.evaluation.shapes import gini, rate_by_position, top_share
from recloop.simulate.driver import SimulationResult
from recloop.simulate.world import WorldConfig

#: z for a two-sided 95% interval.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class NightlyVersion:
    """A model version a night's ``recloop train`` wrote: after simulated day ``night``
    (1 = the first), so it serves from day ``night + 1``."""

    night: int
    version: str
    seconds: float
    summary: str  # what it trained, in words


@dataclass(frozen=True)
class StageTime:
    """How long one pipeline stage (or one candidate source) took, from the service's
    histograms: p50 and p99 in ms, None when nothing was timed."""

    name: str
    count: int
    p50_ms: float | None
    p99_ms: float | None
    # The histogram's first bucket bound: a quantile within it is only known to be below it.
    resolution_ms: float = 0.0


@dataclass
class ServiceFigures:
    """What the demo read back from the service for its report."""

    versions: list[NightlyVersion] = field(default_factory=list)
    # variant -> per simulated day -> credited source -> clicked (or served) items
    clicks_by_source: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    impressions_by_source: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    stages: list[StageTime] = field(default_factory=list)  # the whole run
    sources: list[StageTime] = field(default_factory=list)  # each candidate source's time
    stage_p99_by_day: dict[str, list[float]] = field(default_factory=dict)  # NaN: untimed


_METRIC_NAMES = {
    "ctr": ("CTR", "%"),
    "satisfaction": ("satisfied clicks per impression", "%"),
    "hide_rate": ("hides per impression", "%"),
    "latency_p99": ("p99 latency", "ms"),
    "coverage": ("distinct items served (same users)", ""),
}
_DECISION_WORDS = {
    Decision.SHIP: ("Ship {t}", "good"),
    Decision.DONT_SHIP: ("Don't ship {t}", "bad"),
    Decision.KEEP_RUNNING: ("Keep running: no decision on {t} yet", "wait"),
    Decision.INVALID: ("Invalid: the split of users between {c} and {t} cannot be trusted", "bad"),
}


def pct(value: float) -> str:
    """A fraction as a percent with three significant digits, "n/a" when not finite."""
    return format_value(value, "%")


def ms(value: float | None) -> str:
    """Milliseconds, "n/a" when not measured."""
    return "n/a" if value is None else format_value(value, "ms")


def _timing_table(section: Section, what: str, times: list[StageTime], caption: str) -> None:
    """A table of each stage's (or source's) p50 and p99, captioned."""
    rows = [[t.name, f"{t.count:,}", stage_ms(t, t.p50_ms), stage_ms(t, t.p99_ms)] for t in times]
    section.tables.append(([what, "timings", "p50", "p99"], rows))
    section.captions[len(section.tables) - 1] = caption


def stage_ms(time: StageTime, value: float | None) -> str:
    """A histogram's quantile in ms: "< 0.1 ms" when it fell in the first bucket."""
    if value is not None and time.resolution_ms > 0 and value <= time.resolution_ms:
        return f"< {format_value(time.resolution_ms, 'ms')}"
    return ms(value)


def signed_pct(value: float) -> str:
    """A relative change with its sign: "+14.1%", or a minus sign for a fall."""
    if not math.isfinite(value):
        return "n/a"
    return ("+" if value >= 0 else "\u2212") + f"{abs(value) * 100:.1f}%"


def signed_ms(value: float) -> str:
    """A change in milliseconds with its sign: "+28.6 ms"."""
    if not math.isfinite(value):
        return "n/a"
    return ("+" if value >= 0 else "\u2212") + format_value(abs(value), "ms")


def interval(low: float, high: float, show: str = "%") -> str:
    """An interval in brackets, each end signed (relative changes) or as a value."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    if show == "signed%":
        return f"[{signed_pct(low)}, {signed_pct(high)}]"
    return f"[{format_value(low, show)}, {format_value(high, show)}]"


def shape_figures(result: SimulationResult, catalog_size: int, users: int) -> dict[str, float]:
    """Concentration of clicks over items and of events over users, zero counts included."""
    item_counts = list(result.clicks_per_item.values())
    item_counts += [0] * max(0, catalog_size - len(item_counts))
    user_counts = list(result.events_per_user.values())
    user_counts += [0] * max(0, users - len(user_counts))
    return {
        "item_gini": gini(item_counts),
        "item_top10_share": top_share(item_counts, 0.1),
        "user_gini": gini(user_counts),
        "user_top10_share": top_share(user_counts, 0.1),
    }


def write_report(
    result: SimulationResult,
    path: Path,
    *,
    config: WorldConfig,
    transport: str,
    wall_s: float,
    logged_lists: int,
    what_ran: str,
    nights: Sequence[str] = (),
    experiment: ExperimentReport | None = None,
    guardrails: Sequence[GuardrailConfig] = (),
    service: ServiceFigures | None = None,
) -> None:
    """Write the HTML report to ``path``: ``what_ran`` describes the variants, ``nights``
    what each night trained (when ``service`` has no versions), ``experiment`` is the
    service's own analysis of the split (from its logs) with the ``guardrails`` it was
    configured with, and ``service`` what the demo read back from the service."""
    path.write_text(
        build_report(
            result,
            config=config,
            transport=transport,
            wall_s=wall_s,
            logged_lists=logged_lists,
            what_ran=what_ran,
            nights=nights,
            experiment=experiment,
            guardrails=guardrails,
            service=service,
        )
    )


def build_report(
    result: SimulationResult,
    *,
    config: WorldConfig,
    transport: str,
    wall_s: float,
    logged_lists: int,
    what_ran: str,
    nights: Sequence[str] = (),
    experiment: ExperimentReport | None = None,
    guardrails: Sequence[GuardrailConfig] = (),
    service: ServiceFigures | None = None,
) -> str:
    """The report as one HTML page (see ``write_report``)."""
    service = service or ServiceFigures()
    labels = [f"day {i + 1}" for i in range(len(result.days))]
    markers = version_markers(service.versions, len(labels))
    colours = {v: i for i, v in enumerate(result.variants)}
    sections = [
        decision_section(experiment, guardrails, result),
        ran_section(result, config, transport, wall_s, logged_lists, what_ran, nights, service),
        ctr_section(result, labels, markers, colours),
        daily_section(result, labels, markers, colours),
    ]
    if any(service.clicks_by_source.values()):
        sections.append(sources_section(service, result.variants, labels, markers))
    sections.append(latency_section(result, service, labels, markers, colours))
    if experiment is not None and experiment.treatments:
        sections.append(experiment_section(experiment))
    if result.search_per_day:
        sections.append(search_section(result, labels, markers))
    sections.append(shapes_section(result, config))
    subtitle = (
        f"{len(result.days)} simulated days, {result.days[0]:%Y-%m-%d} to "
        f"{result.days[-1]:%Y-%m-%d}; variants {', '.join(result.variants)}; "
        f"seed {config.seed}"
        if result.days
        else ""
    )
    return render_report("recloop demo report", sections, subtitle=subtitle, contents=True)


def version_markers(versions: Sequence[NightlyVersion], days: int) -> list[Marker]:
    """A marker between the day a version was trained after and the first day it served;
    a version of the last night never served in the run and has none."""
    return [
        Marker(v.night - 0.5, f"model {i + 1}")
        for i, v in enumerate(versions)
        if 0 < v.night < days
    ]


def decision_section(
    report: ExperimentReport | None,
    guardrails: Sequence[GuardrailConfig],
    result: SimulationResult,
) -> Section:
    """The decision and its reasons, the guardrails with both arms' figures, and what the
    world knows: the true change the observed one estimates."""
    if report is None:
        return Section(
            "Decision",
            verdict="No experiment ran",
            paragraphs=["One variant served every user, so there is nothing to decide."],
        )
    if not report.treatments:
        return Section(
            "Decision",
            verdict="No decision yet",
            tone="wait",
            paragraphs=[
                f"Experiment {report.experiment}: too few users in a variant to test.",
                *report.notes,
            ],
        )
    treatment = report.treatments[0]
    word, tone = _DECISION_WORDS[treatment.decision.decision]
    section = Section(
        "Decision",
        verdict=word.format(t=treatment.variant, c=report.control),
        tone=tone,
        paragraphs=[
            f"Experiment {report.experiment} on the {report.surface} surface: {treatment.variant} "
            f"against the control {report.control}, judged by the service's own analysis "
            f"of its logs (primary metric: {_METRIC_NAMES[report.primary_metric][0]}). Why:"
        ],
        bullets=list(treatment.decision.reasons),
    )
    section.tables.append(_headline_table(report, treatment))
    section.captions[0] = "The primary metric and the guardrails"
    section.tables.append(_guardrail_table(report, treatment, guardrails))
    section.captions[1] = "Guardrails: what each allows, and what was measured"
    truth = _true_change(result, report.control, treatment.variant)
    if truth is not None:
        section.footnotes.append(truth)
    for other in report.treatments[1:]:
        other_word, _ = _DECISION_WORDS[other.decision.decision]
        section.paragraphs.append(
            f"{other_word.format(t=other.variant, c=report.control)}: "
            + "; ".join(other.decision.reasons)
        )
    if report.srm is not None:
        section.footnotes.append(
            "Users per variant: "
            + ", ".join(f"{name} {count:,}" for name, count in report.srm.observed.items())
            + f"; sample-ratio check p = {report.srm.p_value:.3g} "
            + ("(a mismatch: the split is not as configured)" if report.srm.mismatch else "(ok)")
        )
    if treatment.power is not None:
        power = treatment.power
        section.footnotes.append(
            f"With {power.units_per_variant:,} users per variant, the smallest change in "
            f"{_METRIC_NAMES[report.primary_metric][0]} this test detects with "
            f"{power.power:.0%} power is {signed_pct(power.mde_relative)}."
        )
    section.footnotes.extend(report.notes)
    return section


def _headline_table(
    report: ExperimentReport, treatment: TreatmentReport
) -> tuple[list[str], list[list[str]]]:
    rows = []
    for name, result in treatment.metrics.items():
        label, unit = _METRIC_NAMES.get(name, (name, ""))
        rows.append(
            [
                label,
                format_value(result.control_value, unit),
                format_value(result.treatment_value, unit),
                _change(result, unit),
                _p(result.p_value),
            ]
        )
    return (["metric", report.control, treatment.variant, "change [95% interval]", "p"], rows)


def _change(result: ComparisonResult, unit: str) -> str:
    """The change as the metric reads best: relative for rates, in ms for latency."""
    if unit == "ms":
        low, high = result.absolute_ci
        return f"{signed_ms(result.absolute_diff)} [{signed_ms(low)}, {signed_ms(high)}]"
    return f"{signed_pct(result.relative_diff)} {interval(*result.relative_ci, show='signed%')}"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _guardrail_table(
    report: ExperimentReport,
    treatment: TreatmentReport,
    configs: Sequence[GuardrailConfig],
) -> tuple[list[str], list[list[str]]]:
    # The analysis checks the configured guardrails whose metric it measured, in order.
    matched = [c for c in configs if c.metric in treatment.metrics]
    rows = []
    for i, check in enumerate(treatment.decision.guardrails):
        config = (
            matched[i] if i < len(matched) and matched[i].metric == check.guardrail.metric else None
        )
        label, unit = _METRIC_NAMES.get(check.guardrail.metric, (check.guardrail.metric, ""))
        rows.append(
            [
                label,
                _rule(check, config, report.control, unit),
                _measured(check, config, report.control, treatment.variant, unit),
                check.status.value,
            ]
        )
    return (["guardrail", "allowed", "measured", "verdict"], rows)


def _rule(check: GuardrailCheck, config: GuardrailConfig | None, control: str, unit: str) -> str:
    up = check.guardrail.bad_direction.value == "up"
    word = "above" if up else "below"
    if config is not None and config.limit is not None:
        return f"{'at most' if up else 'at least'} {format_value(config.limit, unit)}"
    parts = []
    if check.guardrail.tolerance > 0:
        parts.append(f"{check.guardrail.tolerance:.0%}")
    if check.guardrail.allowance is not None:
        parts.append(format_value(check.guardrail.allowance, unit))
    if not parts:
        return f"not significantly {word} {control}"
    return f"up to {' or '.join(parts)} {word} {control}, whichever is more"


def _measured(
    check: GuardrailCheck,
    config: GuardrailConfig | None,
    control: str,
    treatment: str,
    unit: str,
) -> str:
    r = check.result
    values = (
        f"{treatment} {format_value(r.treatment_value, unit)}, "
        f"{control} {format_value(r.control_value, unit)}"
    )
    if config is not None and config.limit is not None:
        return values
    return f"{values}: {_change(r, unit)}"


def _true_change(result: SimulationResult, control: str, treatment: str) -> str | None:
    """What the world's ground truth says the change in CTR was, beside the estimate."""
    ctrl = result.per_user.get(control, {})
    treat = result.per_user.get(treatment, {})
    if len(ctrl) < 2 or len(treat) < 2:
        return None
    c, t = result.totals(control), result.totals(treatment)
    test = _ratio_test(ctrl, treat, "expected_clicks")
    observed = _ratio_test(ctrl, treat, "clicks")
    if test is None or observed is None:
        return None
    return (
        f"What the world knows: the true CTR of the lists served was {pct(t['true_ctr'])} for "
        f"{treatment} and {pct(c['true_ctr'])} for {control}, a true change of "
        f"{signed_pct(test.relative_diff)} {interval(*test.relative_ci, show='signed%')} "
        "(the interval: which users happened to be in each variant); the users' clicks "
        f"estimated {signed_pct(observed.relative_diff)} "
        f"{interval(*observed.relative_ci, show='signed%')}. These are the simulator's "
        "figures over people only (bots left out)."
    )


def _ratio_test(
    control: Mapping[str, Mapping[str, float]],
    treatment: Mapping[str, Mapping[str, float]],
    numerator: str,
) -> ComparisonResult | None:
    cu = [control[u] for u in sorted(control)]
    tu = [treatment[u] for u in sorted(treatment)]
    if not sum(u["impressions"] for u in cu) or not sum(u["impressions"] for u in tu):
        return None
    return ratio_ztest(
        [u[numerator] for u in cu],
        [u["impressions"] for u in cu],
        [u[numerator] for u in tu],
        [u["impressions"] for u in tu],
        metric=numerator,
    )


def _rate_interval(
    users: Mapping[str, Mapping[str, float]], numerator: str
) -> tuple[float, float, float]:
    """A ratio over users (clicks per impression, say) with its 95% delta-method interval."""
    rows = [users[u] for u in sorted(users) if users[u]["impressions"] > 0]
    if len(rows) < 2:
        return (math.nan, math.nan, math.nan)
    summary = ratio_summary([r[numerator] for r in rows], [r["impressions"] for r in rows])
    half = _Z95 * math.sqrt(max(0.0, summary.variance))
    return (summary.value, summary.value - half, summary.value + half)


def ran_section(
    result: SimulationResult,
    config: WorldConfig,
    transport: str,
    wall_s: float,
    logged_lists: int,
    what_ran: str,
    nights: Sequence[str],
    service: ServiceFigures,
) -> Section:
    """The variants, the traffic and each night's model version."""
    section = Section(
        "What ran",
        paragraphs=[
            what_ran,
            f"{result.events_sent:,} events sent over {transport} ({result.late_events:,} late, "
            f"{result.duplicate_events:,} sent twice"
            + (f", {result.late_uploads:,} sessions uploaded late" if result.late_uploads else "")
            + f"), {logged_lists:,} served lists logged, {result.bots:,} bot "
            + ("user" if result.bots == 1 else "users")
            + f". Seed {config.seed}; wall time {_duration(wall_s)}.",
        ],
    )
    if service.versions:
        days = len(result.days)
        section.tables.append(
            (
                ["marker", "model version", "trained after", "serves from", "took", "what it has"],
                [
                    [
                        f"model {i + 1}",
                        v.version,
                        f"day {v.night}",
                        f"day {v.night + 1}" if v.night < days else "after the run",
                        _duration(v.seconds),
                        v.summary,
                    ]
                    for i, v in enumerate(service.versions)
                ],
            )
        )
        section.captions[0] = "Model versions, one per night (the markers on the charts)"
    else:
        section.paragraphs.extend(nights)
    return section


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def ctr_section(
    result: SimulationResult,
    labels: list[str],
    markers: list[Marker],
    colours: Mapping[str, int],
) -> Section:
    """Observed CTR beside the world's true CTR, per variant with intervals, and per day."""
    section = Section(
        "Observed and true CTR",
        paragraphs=[
            "Observed CTR is what the simulated people clicked; true CTR the world's expected "
            "clicks for the lists actually served (its ground truth); oracle CTR that of the "
            "world's own best lists for the same requests, in the same states. Intervals are "
            "95%, over users (the unit each variant is assigned by); bots are left out of "
            "these figures.",
        ],
    )
    rows = []
    points: list[Interval] = []
    for variant in result.variants:
        users = result.per_user.get(variant, {})
        t = result.totals(variant)
        obs = _rate_interval(users, "clicks")
        true = _rate_interval(users, "expected_clicks")
        sat = _rate_interval(users, "satisfied")
        true_sat = _rate_interval(users, "expected_satisfied")
        rows.append(
            [
                variant,
                f"{len(users):,}",
                f"{t['impressions']:,.0f}",
                f"{pct(obs[0])} {interval(obs[1], obs[2])}",
                f"{pct(true[0])} {interval(true[1], true[2])}",
                pct(t["oracle_true_ctr"]),
                f"{pct(sat[0])} {interval(sat[1], sat[2])}",
                f"{pct(true_sat[0])} {interval(true_sat[1], true_sat[2])}",
            ]
        )
        colour = colours.get(variant, 0)
        points.append(Interval(f"{variant} observed", *obs, colour=colour))
        points.append(Interval(f"{variant} true", *true, colour=colour, hollow=True))
    section.tables.append(
        (
            [
                "variant",
                "users",
                "impressions",
                "observed CTR [95%]",
                "true CTR [95%]",
                "oracle true CTR",
                "satisfied / impression [95%]",
                "true satisfied [95%]",
            ],
            rows,
        )
    )
    series: dict[str, list[float]] = {}
    dashed = []
    line_colours: dict[str, int] = {}
    for variant in result.variants:
        series[f"{variant} observed"] = [d["ctr"] for d in result.per_day[variant]]
        series[f"{variant} true"] = [d["true_ctr"] for d in result.per_day[variant]]
        dashed.append(f"{variant} true")
        line_colours[f"{variant} observed"] = line_colours[f"{variant} true"] = colours[variant]
    sat_series = {
        f"{variant} {kind}": [d[key] for d in result.per_day[variant]]
        for variant in result.variants
        for kind, key in (("observed", "satisfaction"), ("true", "true_satisfaction"))
    }
    section.charts = [
        interval_chart(
            "CTR per variant: observed (filled) and true (open)",
            points,
            unit="%",
            x_label="clicks per served impression, 95% intervals over users",
        ),
        line_chart(
            "CTR per day: observed (solid) and true (dashed)",
            labels,
            series,
            unit="%",
            y_label="clicks per impression",
            x_label="simulated day",
            markers=markers,
            dashed=dashed,
            colours=line_colours,
        ),
        line_chart(
            "Satisfied clicks per impression: observed and true",
            labels,
            sat_series,
            unit="%",
            y_label="satisfied clicks per impression",
            x_label="simulated day",
            markers=markers,
            dashed=dashed,
            colours=line_colours,
        ),
    ]
    return section


_DAILY = (
    ("hide_rate", "Hides and not-interested per impression", "%", "per impression"),
    ("fallback_share", "Fallback share: lists the fallback chain served", "%", "share of lists"),
    ("coverage", "Catalog coverage: share of items served that day", "%", "share of catalog"),
    ("new_item_share", "Impressions on items under 48 h old", "%", "share of impressions"),
    ("diversity", "Intra-list diversity (mean 1 \u2212 cosine)", "", "diversity"),
)


def daily_section(
    result: SimulationResult,
    labels: list[str],
    markers: list[Marker],
    colours: Mapping[str, int],
) -> Section:
    """The other per-day figures per variant, with the whole run's in a table."""
    section = Section(
        "Per day",
        paragraphs=[
            "The service assigns each user a variant by a hash of their id; a dashed vertical "
            "line marks the first day each nightly model version served (see What ran).",
        ],
        charts=[
            line_chart(
                title,
                labels,
                {v: [d[key] for d in result.per_day[v]] for v in result.variants},
                unit=unit,
                y_label=y_label,
                x_label="simulated day",
                markers=markers,
                colours=colours,
            )
            for key, title, unit, y_label in _DAILY
        ],
    )
    rows = []
    for v in result.variants:
        t = result.totals(v)
        rows.append(
            [
                v,
                f"{t['requests']:,.0f}",
                pct(t["hide_rate"]),
                pct(t["fallback_share"]),
                pct(t["coverage"]),
                pct(t["new_item_share"]),
                f"{t['diversity']:.2f}",
            ]
        )
    section.tables.append(
        (
            [
                "variant",
                "lists",
                "hides / impression",
                "fallback lists",
                "catalog coverage (daily mean)",
                "new-item impressions",
                "diversity",
            ],
            rows,
        )
    )
    return section


def sources_section(
    service: ServiceFigures,
    variants: Sequence[str],
    labels: list[str],
    markers: list[Marker],
) -> Section:
    """The candidate source each clicked item was credited to, per variant and day."""
    section = Section(
        "Which sources earned the clicks",
        paragraphs=[
            "Each served item is credited to the candidate source that put it in the list "
            "(as the service logged it); a click counts for that source. From the service's "
            "served-list log joined to the click events, bots left out.",
        ],
    )
    for variant in variants:
        days = service.clicks_by_source.get(variant, [])
        shown = service.impressions_by_source.get(variant, [])
        clicks_total: dict[str, int] = {}
        shown_total: dict[str, int] = {}
        for day in days:
            for source, n in day.items():
                clicks_total[source] = clicks_total.get(source, 0) + n
        for day in shown:
            for source, n in day.items():
                shown_total[source] = shown_total.get(source, 0) + n
        if not shown_total:
            continue
        order = sorted(shown_total, key=lambda s: (-clicks_total.get(s, 0), -shown_total[s], s))
        all_clicks = sum(clicks_total.values())
        section.tables.append(
            (
                ["source", "impressions", "clicks", "CTR", "share of clicks"],
                [
                    [
                        source,
                        f"{shown_total[source]:,}",
                        f"{clicks_total.get(source, 0):,}",
                        pct(clicks_total.get(source, 0) / shown_total[source]),
                        pct(clicks_total.get(source, 0) / all_clicks) if all_clicks else "n/a",
                    ]
                    for source in order
                ],
            )
        )
        section.captions[len(section.tables) - 1] = f"{variant}: the whole run"
        if len(order) > 1 or len(labels) > 1:
            section.charts.append(
                stacked_bar_chart(
                    f"{variant}: clicks per day by credited source",
                    labels,
                    {s: [float(d.get(s, 0)) for d in days] for s in order},
                    y_label="clicks",
                    x_label="simulated day",
                    markers=markers,
                )
            )
    return section


def latency_section(
    result: SimulationResult,
    service: ServiceFigures,
    labels: list[str],
    markers: list[Marker],
    colours: Mapping[str, int],
) -> Section:
    """A list's latency per variant and day (client side), and each stage's (service side)."""
    series: dict[str, list[float]] = {}
    dashed = []
    line_colours: dict[str, int] = {}
    for v in result.variants:
        series[f"{v} p99"] = [d["latency_p99_ms"] for d in result.per_day[v]]
        series[f"{v} p50"] = [d["latency_p50_ms"] for d in result.per_day[v]]
        dashed.append(f"{v} p50")
        line_colours[f"{v} p99"] = line_colours[f"{v} p50"] = colours[v]
    section = Section(
        "Latency",
        paragraphs=[
            "A list's latency as the simulated client measured it (the request's whole round "
            "trip), per variant. Below it, each stage's own time inside the service, from its "
            "histograms (quantiles interpolated within the histogram's buckets; a retrieve "
            "or filter timing is one source or one rule, and sources run side by side).",
        ],
        charts=[
            line_chart(
                "A list's latency per day: p99 (solid) and p50 (dashed)",
                labels,
                series,
                unit="ms",
                y_label="ms",
                x_label="simulated day",
                markers=markers,
                dashed=dashed,
                colours=line_colours,
            )
        ],
    )
    section.tables.append(
        (
            ["variant", "lists", "p50 (daily mean)", "p99 (daily mean)"],
            [
                [
                    v,
                    f"{result.totals(v)['requests']:,.0f}",
                    ms(result.totals(v)["latency_p50_ms"]),
                    ms(result.totals(v)["latency_p99_ms"]),
                ]
                for v in result.variants
            ],
        )
    )
    section.captions[0] = "A list, client side"
    if service.stages:
        _timing_table(section, "stage", service.stages, "Each stage, service side, both variants")
    if service.sources:
        _timing_table(section, "source", service.sources, "Each candidate source, service side")
    if service.stage_p99_by_day:
        section.charts.append(
            line_chart(
                "p99 of each stage per day (service side)",
                labels,
                service.stage_p99_by_day,
                unit="ms",
                y_label="ms",
                x_label="simulated day",
                markers=markers,
            )
        )
    return section


def experiment_section(report: ExperimentReport) -> Section:
    """The experiment as ``recloop experiment report`` analyses it: tests over users."""
    section = Section(
        f"Experiment {report.experiment}, from the service's logs",
        paragraphs=[
            f"What recloop experiment report {report.experiment} computes from the served "
            "lists and the events that came back (bots left out by the training data's rule): "
            f"every variant against the control ({report.control}), ratio metrics over users "
            "with delta-method z-tests, p99 latency by bootstrap, distinct items by "
            "subsampling, the sample-ratio check, guardrails and a decision. The first "
            "treatment's tests are in the decision at the top; here, each variant's totals.",
        ],
    )
    section.tables.append(
        (
            ["variant", "users", "lists", "impressions", "CTR", "p50", "p99", "fallback lists"],
            [
                [
                    v.variant,
                    f"{v.users:,}",
                    f"{v.requests:,}",
                    f"{v.impressions:,}",
                    pct(v.ctr),
                    ms(v.latency_p50_ms),
                    ms(v.latency_p99_ms),
                    pct(v.fallback_share),
                ]
                for v in report.variants
            ],
        )
    )
    # The first treatment's tests are in the decision at the top.
    for treatment in report.treatments[1:]:
        section.tables.append(_headline_table(report, treatment))
        word, _ = _DECISION_WORDS[treatment.decision.decision]
        section.captions[len(section.tables) - 1] = (
            f"{treatment.variant} against {report.control}: "
            + word.format(t=treatment.variant, c=report.control).lower()
        )
    return section


_SEARCH_DAILY = (
    ("suggestion_ctr", "Suggestion CTR (clicks per suggestion list)"),
    ("success_rate", "Search success (searches followed by engagement)"),
    ("keystrokes_saved", "Keystrokes saved (share of the submitted queries' characters)"),
)


def search_section(result: SimulationResult, labels: list[str], markers: list[Marker]) -> Section:
    """The search box: the served suggestion lists against most-popular-completion and the
    world's best lists, in the same typing states, per suggestion variant."""
    section = Section(
        "Search box: query suggestions",
        paragraphs=[
            "Users search between their item sessions: they type an intended query a "
            "keystroke at a time, the client asks for suggestions as they type, and they "
            "click one or submit what they typed (docs/simulator.md, 'Search'). Per "
            "suggestion list: observed and true CTR, and the expected success of the "
            "search if it ends with that list or by typing the rest; the same for "
            "most-popular-completion (MPC: the queries submitted so far that start with what "
            "was typed) and for the world's best lists (which know the intent), in the "
            "state each served list met. Per search: observed and true success, the share "
            "that came from a suggestion, and the keystrokes saved.",
        ],
        charts=[
            line_chart(
                title,
                labels,
                {v: [d[key] for d in days] for v, days in result.search_per_day.items()},
                unit="%",
                x_label="simulated day",
                markers=markers,
            )
            for key, title in _SEARCH_DAILY
        ],
    )
    per_list = []
    per_search = []
    for variant in result.search_per_day:
        t = result.search_totals(variant)
        per_list.append(
            [
                variant,
                f"{t['lists']:,.0f}",
                pct(t["suggestion_ctr"]),
                pct(t["true_suggestion_ctr"]),
                pct(t["baseline_suggestion_ctr"]),
                pct(t["oracle_suggestion_ctr"]),
                pct(t["list_success"]),
                pct(t["baseline_list_success"]),
                pct(t["oracle_list_success"]),
                pct(t["saved_per_list"]),
                pct(t["baseline_saved_per_list"]),
                pct(t["empty_list_share"]),
                ms(t["latency_p99_ms"]),
            ]
        )
        per_search.append(
            [
                variant,
                f"{t['sessions']:,.0f}",
                f"{t['searches']:,.0f}",
                pct(t["success_rate"]),
                pct(t["true_success_rate"]),
                pct(t["suggestion_use"]),
                pct(t["keystrokes_saved"]),
                pct(t["reformulation_rate"]),
                pct(t["abandon_rate"]),
            ]
        )
    section.tables.append(
        (
            [
                "variant",
                "lists",
                "CTR",
                "true CTR",
                "MPC true CTR",
                "oracle true CTR",
                "success",
                "MPC success",
                "oracle success",
                "chars saved",
                "MPC chars saved",
                "empty lists",
                "p99",
            ],
            per_list,
        )
    )
    section.tables.append(
        (
            [
                "variant",
                "sessions",
                "searches",
                "success",
                "true success",
                "from a suggestion",
                "keystrokes saved",
                "reformulated",
                "abandoned",
            ],
            per_search,
        )
    )
    return section


def shapes_section(result: SimulationResult, config: WorldConfig) -> Section:
    """How long-tailed the simulated log is, and how CTR falls with position."""
    catalog = config.initial_items + config.new_items_per_day * len(result.days)
    users = config.initial_users + config.new_users_per_day * len(result.days)
    shapes = shape_figures(result, catalog, users)
    ctr_by_position = rate_by_position(result.clicks_by_position, result.impressions_by_position)
    return Section(
        "Shapes of the simulated log",
        paragraphs=[
            "Real logs are long-tailed in item popularity and in user activity, and their CTR "
            "falls with position. benchmarks/world_shapes.py puts these figures beside "
            "MovieLens-100k, the Amazon sets and the Open Bandit sample.",
        ],
        tables=[
            (
                ["figure", "value"],
                [
                    ["Gini of clicks over items", f"{shapes['item_gini']:.3f}"],
                    ["share of clicks on the top 10% of items", pct(shapes["item_top10_share"])],
                    ["Gini of events over users", f"{shapes['user_gini']:.3f}"],
                    ["share of events from the top 10% of users", pct(shapes["user_top10_share"])],
                ]
                + [[f"CTR at position {p + 1}", pct(r)] for p, r in enumerate(ctr_by_position)],
            )
        ],
        charts=[
            rank_chart(
                "Item popularity (clicks by item rank)",
                {"simulated": list(result.clicks_per_item.values())},
                y_label="clicks",
            ),
            rank_chart(
                "User activity (events by user rank)",
                {"simulated": list(result.events_per_user.values())},
                y_label="events",
            ),
            bar_chart(
                "CTR by position",
                [str(p + 1) for p in range(len(ctr_by_position))],
                ctr_by_position,
                unit="%",
                y_label="clicks per impression",
                x_label="position (1 = top)",
            ),
        ],
    )
