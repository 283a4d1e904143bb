"""The simulation report: per-day figures per variant, and the shapes of the simulated log."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recloop.analysis.report import ExperimentReport
from recloop.evaluation.charts import bar_chart, line_chart, rank_chart
from recloop.evaluation.report import Section, render_report
from recloop.evaluation.shapes import gini, rate_by_position, top_share
from recloop.simulate.driver import SimulationResult
from recloop.simulate.world import WorldConfig

_DAILY = (
    ("ctr", "CTR (clicks per served impression)"),
    ("satisfaction", "Satisfied clicks per impression"),
    ("hide_rate", "Hides and not-interested per impression"),
    ("coverage", "Catalog coverage (share of items served that day)"),
    ("diversity", "Intra-list diversity (mean 1 - cosine)"),
    ("new_item_share", "Share of impressions on items < 48 h old"),
    ("latency_p99_ms", "p99 latency of a list (ms, client side)"),
)


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
) -> None:
    """Write the HTML report to ``path``; ``what_ran`` describes the variants, and
    ``experiment`` is the service's own analysis of the split (from its logs)."""
    labels = [f"{day:%m-%d}" for day in result.days]
    daily = Section(
        "Per day and variant",
        paragraphs=[
            "The service assigns each user a variant by a hash of their id. 'True' figures "
            "are the world's expected values for the lists actually served (its ground "
            "truth), beside what the sampled users did; 'oracle' figures are those of the "
            "world's own best lists for the same requests, in the same states.",
        ],
        charts=[
            line_chart(
                title,
                labels,
                {v: [d[key] for d in result.per_day[v]] for v in result.variants},
                x_label="simulated day",
            )
            for key, title in _DAILY
        ],
    )
    header = [
        "variant",
        "requests",
        "CTR",
        "true CTR",
        "oracle CTR",
        "satisfied",
        "true satisf.",
        "oracle satisf.",
        "hides",
        "coverage",
        "diversity",
        "new items",
        "p50 ms",
        "p99 ms",
    ]
    rows = []
    for v in result.variants:
        t = result.totals(v)
        rows.append(
            [
                v,
                f"{t['requests']:,.0f}",
                f"{t['ctr']:.4f}",
                f"{t['true_ctr']:.4f}",
                f"{t['oracle_true_ctr']:.4f}",
                f"{t['satisfaction']:.4f}",
                f"{t['true_satisfaction']:.4f}",
                f"{t['oracle_true_satisfaction']:.4f}",
                f"{t['hide_rate']:.4f}",
                f"{t['coverage']:.3f}",
                f"{t['diversity']:.3f}",
                f"{t['new_item_share']:.3f}",
                f"{t['latency_p50_ms']:.1f}",
                f"{t['latency_p99_ms']:.1f}",
            ]
        )
    daily.tables.append((header, rows))
    catalog = config.initial_items + config.new_items_per_day * len(result.days)
    users = config.initial_users + config.new_users_per_day * len(result.days)
    shapes = shape_figures(result, catalog, users)
    ctr_by_position = rate_by_position(result.clicks_by_position, result.impressions_by_position)
    shape_section = Section(
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
                    [
                        "share of clicks on the top 10% of items",
                        f"{shapes['item_top10_share']:.3f}",
                    ],
                    ["Gini of events over users", f"{shapes['user_gini']:.3f}"],
                    [
                        "share of events from the top 10% of users",
                        f"{shapes['user_top10_share']:.3f}",
                    ],
                ]
                + [[f"CTR at position {p}", f"{r:.4f}"] for p, r in enumerate(ctr_by_position)],
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
                [str(p) for p in range(len(ctr_by_position))],
                ctr_by_position,
                x_label="position (0 = top)",
            ),
        ],
    )
    ran = Section(
        "What ran",
        paragraphs=[
            what_ran,
            f"{result.events_sent:,} events sent over {transport} ({result.late_events:,} late, "
            f"{result.duplicate_events:,} sent twice"
            + (f", {result.late_uploads:,} sessions uploaded late" if result.late_uploads else "")
            + f"), {logged_lists:,} served lists logged, "
            f"{result.bots} bot users. Seed {config.seed}; wall time {wall_s:.0f} s.",
            *nights,
        ],
    )
    sections = [ran, daily]
    if result.search_per_day:
        sections.append(search_section(result, labels))
    if experiment is not None:
        sections.append(experiment_section(experiment))
    sections.append(shape_section)
    path.write_text(render_report("recloop demo: simulated loop", sections))


def experiment_section(report: ExperimentReport) -> Section:
    """The experiment as ``recloop experiment report`` analyses it: tests over users."""
    section = Section(
        f"Experiment {report.experiment}, from the service's logs",
        paragraphs=[
            f"What `recloop experiment report {report.experiment}` computes from the served "
            "lists and the events that came back (bots included, unlike the figures above): "
            f"every variant against the control ({report.control}), ratio metrics over users "
            "with delta-method z-tests, p99 latency by bootstrap, the sample-ratio check, "
            "guardrails and a decision.",
        ],
    )
    for treatment in report.treatments:
        rows = [
            [
                name,
                f"{r.control_value:.4g}",
                f"{r.treatment_value:.4g}",
                f"{r.relative_diff:+.1%} [{r.relative_ci[0]:+.1%}, {r.relative_ci[1]:+.1%}]",
                f"{r.p_value:.3g}",
            ]
            for name, r in treatment.metrics.items()
        ]
        section.tables.append(
            (["metric", report.control, treatment.variant, "change (95% CI)", "p"], rows)
        )
        section.paragraphs.append(
            f"{treatment.variant}: {treatment.decision.decision.value} "
            f"({'; '.join(treatment.decision.reasons)})"
        )
    if report.srm is not None:
        section.paragraphs.append(
            f"Users per variant {dict(report.srm.observed)}: "
            f"sample-ratio p={report.srm.p_value:.3g}"
            + (" (mismatch)" if report.srm.mismatch else "")
        )
    return section


_SEARCH_DAILY = (
    ("suggestion_ctr", "Suggestion CTR (clicks per suggestion list)"),
    ("success_rate", "Search success (searches followed by engagement)"),
    ("keystrokes_saved", "Keystrokes saved (share of the submitted queries' characters)"),
)


def search_section(result: SimulationResult, labels: list[str]) -> Section:
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
                x_label="simulated day",
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
                f"{t['suggestion_ctr']:.4f}",
                f"{t['true_suggestion_ctr']:.4f}",
                f"{t['baseline_suggestion_ctr']:.4f}",
                f"{t['oracle_suggestion_ctr']:.4f}",
                f"{t['list_success']:.4f}",
                f"{t['baseline_list_success']:.4f}",
                f"{t['oracle_list_success']:.4f}",
                f"{t['saved_per_list']:.3f}",
                f"{t['baseline_saved_per_list']:.3f}",
                f"{t['empty_list_share']:.3f}",
                f"{t['latency_p99_ms']:.1f}",
            ]
        )
        per_search.append(
            [
                variant,
                f"{t['sessions']:,.0f}",
                f"{t['searches']:,.0f}",
                f"{t['success_rate']:.4f}",
                f"{t['true_success_rate']:.4f}",
                f"{t['suggestion_use']:.4f}",
                f"{t['keystrokes_saved']:.4f}",
                f"{t['reformulation_rate']:.4f}",
                f"{t['abandon_rate']:.4f}",
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
                "p99 ms",
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
