"""Experiment and shadow reports as terminal tables (the CLI and the demo print the same ones)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from recloop.analysis.interleaving_report import InterleavingReport
from recloop.analysis.report import ExperimentReport, VariantSummary
from recloop.analysis.shadow_report import ShadowReport, ShadowSide
from recloop.analysis.stats import ComparisonResult

_COLOURS = {"ship": "green", "don't ship": "red", "keep running": "yellow", "invalid": "red"}


def _window(first: datetime | None, last: datetime | None) -> str:
    if first is None or last is None:
        return "nothing served yet"
    return f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"


def render_report(report: ExperimentReport) -> RenderableType:
    """The variants' totals, each treatment against the control, and the decisions."""
    window = _window(report.first_served, report.last_served)
    parts: list[RenderableType] = [
        Text(
            f"experiment {report.experiment} on surface {report.surface}: {window}; "
            f"control {report.control}; primary metric {report.primary_metric}"
        )
    ]
    # Metrics as rows and variants as columns: it fits a terminal with any few variants.
    totals = Table(
        "", *(Column(v.variant, justify="right") for v in report.variants), title="variants"
    )
    rows: list[tuple[str, Callable[[VariantSummary], str]]] = [
        ("users", lambda v: f"{v.users:,}"),
        ("lists", lambda v: f"{v.requests:,}"),
        ("impressions", lambda v: f"{v.impressions:,}"),
        ("CTR", lambda v: f"{v.ctr:.4f}"),
        ("satisfied / impression", lambda v: f"{v.satisfaction:.4f}"),
        ("hides / impression", lambda v: f"{v.hide_rate:.4f}"),
        ("p50 / p99 ms", lambda v: f"{v.latency_p50_ms:.1f} / {v.latency_p99_ms:.1f}"),
        ("items served", lambda v: f"{v.distinct_items:,}"),
        ("fallback lists", lambda v: f"{v.fallback_share:.0%}"),
    ]
    for label, cell in rows:
        totals.add_row(label, *(cell(v) for v in report.variants))
    parts.append(totals)
    if report.srm is not None:
        verdict = "MISMATCH" if report.srm.mismatch else "ok"
        parts.append(
            Text(
                "sample ratio: users "
                + ", ".join(f"{name} {count:,}" for name, count in report.srm.observed.items())
                + f"; chi2 {report.srm.chi2:.2f}, p={report.srm.p_value:.3g} ({verdict})"
            )
        )
    for treatment in report.treatments:
        table = Table(
            "metric",
            Column("control", justify="right"),
            Column(treatment.variant, justify="right"),
            Column("change (95% CI)", justify="right"),
            Column("p", justify="right"),
            title=f"{treatment.variant} against {report.control}",
        )
        for name, result in treatment.metrics.items():
            table.add_row(name, *_cells(result))
        parts.append(table)
        if treatment.power is not None:
            parts.append(
                Text(
                    f"{report.primary_metric}: with {treatment.power.units_per_variant:,} users "
                    f"per variant, the smallest change detected with "
                    f"{treatment.power.power:.0%} power is {treatment.power.mde_relative:.1%}"
                )
            )
        for check in treatment.decision.guardrails:
            parts.append(Text(f"guardrail {check.status.value}: {check.reason}"))
        decision = treatment.decision.decision.value
        parts.append(
            Text.assemble(
                (f"decision for {treatment.variant}: ", "bold"),
                (decision, f"bold {_COLOURS.get(decision, '')}"),
                f" ({'; '.join(treatment.decision.reasons)})",
            )
        )
    parts.extend(Text(f"note: {note}") for note in report.notes)
    return Group(*parts)


def _cells(result: ComparisonResult) -> tuple[str, str, str, str]:
    digits = 1 if result.metric.startswith("latency") or result.metric == "coverage" else 4
    low, high = result.relative_ci
    return (
        f"{result.control_value:.{digits}f}",
        f"{result.treatment_value:.{digits}f}",
        f"{result.relative_diff:+.1%} [{low:+.1%}, {high:+.1%}]",
        f"{result.p_value:.3g}",
    )


def render_shadow_report(report: ShadowReport) -> RenderableType:
    """The shadow's lists against the served ones, and its estimated CTR."""
    if report.served is None or report.shadowed is None:
        parts: list[RenderableType] = [Text(f"shadow {report.shadow}: no shadowed requests yet")]
        parts.extend(Text(f"note: {note}") for note in report.notes)
        return Group(*parts)
    served, shadowed = report.served, report.shadowed
    parts = [
        Text(
            f"shadow {report.shadow}: {report.requests:,} requests, "
            f"{report.first:%Y-%m-%d %H:%M} to {report.last:%Y-%m-%d %H:%M}; "
            f"model {', '.join(report.model_versions)}"
        )
    ]
    sides = Table("", Column("served", justify="right"), Column("shadow", justify="right"))
    rows: list[tuple[str, Callable[[ShadowSide], str]]] = [
        ("p50 / p99 ms", lambda s: f"{s.latency_p50_ms:.1f} / {s.latency_p99_ms:.1f}"),
        ("fallback lists", lambda s: f"{s.fallback_share:.0%}"),
        ("items listed", lambda s: f"{s.distinct_items:,}"),
        ("mean list length", lambda s: f"{s.mean_length:.1f}"),
    ]
    for label, cell in rows:
        sides.add_row(label, cell(served), cell(shadowed))
    low, high = report.served_ctr_ci
    sides.add_row("CTR per slot", f"{report.served_ctr:.4f} [{low:.4f}, {high:.4f}]", _ctr(report))
    if report.supported_ctr is not None:
        on = report.supported_ctr
        sides.add_row(
            "on supported slots", "", f"{on.value:.4f} [{on.ci_low:.4f}, {on.ci_high:.4f}]"
        )
    parts.append(sides)
    parts.append(
        Text(
            f"agreement: {report.overlap:.0%} of served items also in the shadow's list, "
            f"same first item {report.same_first:.0%}, same item in a slot "
            f"{report.same_slot:.0%}; shadow slots without support {report.unsupported_share:.0%}"
            f" (support stated for {report.support_known:.0%} of lists)"
        )
    )
    parts.extend(Text(f"warning: {w}", style="yellow") for w in report.warnings)
    parts.extend(Text(f"note: {note}") for note in report.notes)
    return Group(*parts)


def _ctr(report: ShadowReport) -> str:
    estimate = report.shadow_ctr
    if estimate is None:
        return "-"
    return f"{estimate.value:.4f} [{estimate.ci_low:.4f}, {estimate.ci_high:.4f}] (IPS)"


def render_interleaving_report(report: InterleavingReport) -> RenderableType:
    """The teams' slots and clicks, the preference and its test."""
    window = _window(report.first_served, report.last_served)
    parts: list[RenderableType] = [
        Text(
            f"interleaving experiment {report.experiment} on surface {report.surface}: "
            f"{window}; {report.lists:,} lists; A = {report.team_a}, B = {report.team_b}"
        )
    ]
    table = Table("", Column("items shown", justify="right"), Column("clicks", justify="right"))
    for team in (report.team_a, report.team_b, "shared"):
        table.add_row(team, f"{report.slots.get(team, 0):,}", f"{report.clicks.get(team, 0):,}")
    parts.append(table)
    result = report.result
    if result is not None:
        low, high = result.delta_ci
        parts.append(
            Text(
                f"lists won: A {result.wins_a:,}, B {result.wins_b:,}, tied {result.ties:,}; "
                f"delta_AB {result.delta:+.4f} [{low:+.4f}, {high:+.4f}]; users preferring "
                f"A {result.users_prefer_a:,}, B {result.users_prefer_b:,} "
                f"(sign test p={result.p_value:.3g})"
            )
        )
        verdict = (
            f"{report.winner} is preferred"
            if report.winner is not None
            else "no significant preference yet"
        )
        parts.append(Text.assemble(("decision: ", "bold"), (verdict, "bold")))
    parts.extend(Text(f"note: {note}") for note in report.notes)
    return Group(*parts)
