"""The learned ``home`` against popularity and the world's own best list, over a family of worlds.

Each world is drawn from ``recloop.simulate.family.WorldFamily`` by its seed: the number of
categories, how peaked tastes are, position bias, fatigue, clickbait, client clocks and the
service's clock all vary (``docs/simulator.md`` lists the ranges). Each world runs twice
in-process against the real service, paired: once with every user on ``home`` (every source
and the learned ranker, `recloop train` each simulated night with the service's clock as
``now``), once with every user on ``popular-only``. Both runs face the same users, items and
sessions. In the popular run, the world also judges its own best lists for every request, in
the state the served list met: the list with the most expected clicks (the CTR oracle) and
the one with the most expected satisfied clicks (the satisfaction oracle).

Figures are the world's truth (expected clicks and satisfied clicks per impression of the
lists served), over the days after the first night's training (day 1 has no trained model).

Seeds: held-out worlds are seeds from 10,000 on (``HELD_OUT_SEEDS``: 10,001-10,010), which
also draw from wider ranges and clock modes tuning worlds never have (months behind, replayed
20-200x faster, mixed); tuning worlds are seeds below it. Tune on tuning seeds only; the
held-out table is the report.

Targets (issue 15): on 10 held-out worlds, home beats popularity on true CTR and on true
satisfaction in all 10, and the median world captures at least half of the oracle's lift
over popularity: home/popular - 1 >= 1/2 (oracle/popular - 1).

    .venv/bin/python benchmarks/world_family.py                  # 10 held-out worlds, 5 days
    .venv/bin/python benchmarks/world_family.py --quick          # 2 small tuning worlds, 3 days
    .venv/bin/python benchmarks/world_family.py --split tuning --worlds 3
    .venv/bin/python benchmarks/world_family.py --seeds 10003 --days 7
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from recloop.config import Settings
from recloop.demo.run import DemoConfig, run_demo
from recloop.simulate.driver import SimulationResult
from recloop.simulate.family import HELD_OUT_SEEDS, TUNING_SEEDS, WorldFamily, WorldSpec

RESULTS = Path(__file__).parent / "results"
METRICS = (
    ("true_ctr", "oracle_true_ctr", "CTR"),
    ("true_satisfaction", "oracle_true_satisfaction", "satisfaction"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--split",
        choices=("held-out", "tuning"),
        default=None,
        help="which seeds (default: held-out; tuning with --quick)",
    )
    parser.add_argument("--worlds", type=int, default=None, help="how many worlds of the split")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (overrides --split)")
    parser.add_argument("--days", type=int, default=None, help="simulated days (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="2 small tuning worlds, 3 days (a few minutes)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "world_family.json")
    args = parser.parse_args()
    days = args.days or (3 if args.quick else 5)
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
    else:
        split = args.split or ("tuning" if args.quick else "held-out")
        pool = HELD_OUT_SEEDS if split == "held-out" else TUNING_SEEDS
        seeds = list(pool[: args.worlds or (2 if args.quick else len(pool))])
    family = (
        WorldFamily(
            days=days,
            initial_items=400,
            initial_users=150,
            new_items_per_day=20,
            new_users_per_day=10,
        )
        if args.quick
        else WorldFamily(days=days)
    )
    # Wide enough for the table when the output goes to a file or a pipe.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for seed in seeds:
        spec = family.draw(seed)
        console.print(
            f"world {seed} ({'held out' if spec.held_out else 'tuning'}): {spec.describe()}",
            soft_wrap=True,
        )
        row = _world(spec, days)
        rows.append(row)
        console.print(
            f"  home {row['home']['true_ctr']:.4f} / popular {row['popular']['true_ctr']:.4f} / "
            f"oracle {row['oracle']['true_ctr']:.4f} true CTR; ranker trained "
            f"{row['ranker_trained']}/{row['nights']} nights; {row['wall_s']:.0f} s",
            soft_wrap=True,
        )
    summary = _summary(rows)
    _print(console, rows, summary, days)
    document = {"days": days, "quick": args.quick, "seeds": seeds, **summary, "per_world": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2))
    console.print(f"written to {args.out}; {time.perf_counter() - started:.0f} s in all")
    print(json.dumps({"benchmark": "world_family", "days": days, "seeds": seeds, **summary}))


def _world(spec: WorldSpec, days: int) -> dict[str, Any]:
    """Run one world paired: home (trained nightly) and popular-only."""
    started = time.perf_counter()
    home, trainings = _run(spec, days, {"home": "home"}, train=True)
    popular, _ = _run(spec, days, {"popular": "popular-only"}, train=False)
    h = _after_first_night(home, "home")
    p = _after_first_night(popular, "popular")
    row: dict[str, Any] = {
        "seed": spec.seed,
        "held_out": spec.held_out,
        "clock_mode": spec.clock_mode,
        "shape": spec.describe(),
        "home": {k: h[k] for k in ("true_ctr", "true_satisfaction", "fallback_share")},
        "popular": {k: p[k] for k in ("true_ctr", "true_satisfaction")},
        # The oracle judged on the popular run's requests, in the states they met.
        "oracle": {
            "true_ctr": p["oracle_true_ctr"],
            "true_satisfaction": p["oracle_true_satisfaction"],
        },
        "oracle_in_home_run": {
            "true_ctr": h["oracle_true_ctr"],
            "true_satisfaction": h["oracle_true_satisfaction"],
        },
        "nights": len(trainings),
        "ranker_trained": sum(1 for t in trainings if t.ranker.model is not None),
        "ranker_skipped": [t.ranker.skipped for t in trainings if t.ranker.model is None],
        "wall_s": time.perf_counter() - started,
    }
    for key, _, name in METRICS:
        learned = row["home"][key] / row["popular"][key]
        oracle = row["oracle"][key] / row["popular"][key]
        row[f"{name}_home_ratio"] = learned
        row[f"{name}_oracle_ratio"] = oracle
        row[f"{name}_capture"] = (learned - 1) / (oracle - 1) if oracle > 1 else float("nan")
        row[f"{name}_half"] = learned - 1 >= 0.5 * (oracle - 1)
    return row


def _run(
    spec: WorldSpec, days: int, variants: dict[str, str], *, train: bool
) -> tuple[SimulationResult, tuple[Any, ...]]:
    config = DemoConfig(
        world=spec.world,
        behaviour=spec.behaviour,
        days=days,
        transport="inprocess",
        train_nightly=train,
        variants=variants,
        clients=spec.clients,
        service_clock=spec.service_clock,
    )
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_demo(config, Settings(data_dir=Path(tmp)), Console(file=io.StringIO()))
    return outcome.result, outcome.trainings


def _after_first_night(result: SimulationResult, variant: str) -> dict[str, float]:
    """Impression-weighted figures over days 2..N."""
    days = result.per_day[variant][1:] or result.per_day[variant]
    impressions = sum(d["impressions"] for d in days) or 1
    keys = ("true_ctr", "true_satisfaction", "oracle_true_ctr", "oracle_true_satisfaction")
    out = {k: sum(d[k] * d["impressions"] for d in days) / impressions for k in keys}
    out["fallback_share"] = statistics.fmean(d["fallback_share"] for d in days)
    return out


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures against the issue's targets."""
    out: dict[str, Any] = {"worlds": len(rows)}
    for _, _, name in METRICS:
        wins = sum(1 for r in rows if r[f"{name}_home_ratio"] > 1)
        captures = [r[f"{name}_capture"] for r in rows]
        median = statistics.median(captures) if captures else float("nan")
        out[f"{name}_wins"] = wins
        out[f"{name}_median_capture"] = median
        out[f"{name}_median_home_ratio"] = statistics.median(r[f"{name}_home_ratio"] for r in rows)
        out[f"{name}_median_oracle_ratio"] = statistics.median(
            r[f"{name}_oracle_ratio"] for r in rows
        )
    out["targets_met"] = all(
        out[f"{name}_wins"] == len(rows) and out[f"{name}_median_capture"] >= 0.5
        for _, _, name in METRICS
    )
    return out


def _print(
    console: Console, rows: list[dict[str, Any]], summary: dict[str, Any], days: int
) -> None:
    table = Table(
        title=f"true CTR and true satisfaction per impression, days 2-{days} "
        "(home / popular / oracle; ratios over popular; half: home captures >= 1/2 of the "
        "oracle's lift)",
        title_justify="left",
    )
    for column in (
        "seed", "clock", "home CTR", "pop CTR", "orc CTR", "home/pop", "orc/pop", "half",
        "home sat", "pop sat", "orc sat", "home/pop", "orc/pop", "half", "ranker",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("seed", "clock") else "right")
    for r in rows:
        table.add_row(
            f"{r['seed']}{'' if r['held_out'] else ' (tuning)'}",
            r["clock_mode"],
            f"{r['home']['true_ctr']:.4f}",
            f"{r['popular']['true_ctr']:.4f}",
            f"{r['oracle']['true_ctr']:.4f}",
            f"{r['CTR_home_ratio']:.3f}",
            f"{r['CTR_oracle_ratio']:.3f}",
            "yes" if r["CTR_half"] else "no",
            f"{r['home']['true_satisfaction']:.4f}",
            f"{r['popular']['true_satisfaction']:.4f}",
            f"{r['oracle']['true_satisfaction']:.4f}",
            f"{r['satisfaction_home_ratio']:.3f}",
            f"{r['satisfaction_oracle_ratio']:.3f}",
            "yes" if r["satisfaction_half"] else "no",
            f"{r['ranker_trained']}/{r['nights']}",
        )
    console.print(table)
    n = summary["worlds"]
    for _, _, name in METRICS:
        console.print(
            f"{name}: home beats popular in {summary[f'{name}_wins']}/{n} worlds (target {n}/{n}); "
            f"median capture of the oracle's lift {summary[f'{name}_median_capture']:.2f} "
            f"(target >= 0.50); median home/popular {summary[f'{name}_median_home_ratio']:.3f}, "
            f"oracle/popular {summary[f'{name}_median_oracle_ratio']:.3f}",
            soft_wrap=True,
        )
    console.print(f"targets met: {'yes' if summary['targets_met'] else 'no'}")


if __name__ == "__main__":
    main()
