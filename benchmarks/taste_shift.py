"""Drift-triggered retraining against an abrupt taste shift, in the simulator.

One world (every user on ``home``, in process) whose users' tastes shift at the start of day
``--shift-day``. Every ``--check-h`` simulated hours the service scheduler's ``decide`` runs
on the running service's own readings (its drift monitor, its served and clicked counters),
with ``[schedule]`` set to the drift trigger (``drift_psi``, default 0.25) and the demo's
nightly ``recloop train`` as the cadence; when it says train, ``recloop train`` runs then and
there and the service loads the new version if its gates pass. Counterfactuals on the same
seed: nightly training only (drift is still read, never acted on), and no shift at all.

    .venv/bin/python benchmarks/taste_shift.py                       # seed 1, 6 days, shift on 4
    .venv/bin/python benchmarks/taste_shift.py --runs drift --chart /tmp/taste_shift.svg

Printed per run and day: the served lists' true CTR (the world's expected clicks per
impression), the largest drift PSI a check read (sample large enough to count), the first
check that decided to retrain, and each version made (nightly or triggered) with its
promotion verdict. A JSON line at the end holds the same figures.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from recloop.config import Settings
from recloop.config.schedule import ScheduleSettings
from recloop.demo.retraining import DaySummary, IntradayScheduler, per_day
from recloop.demo.run import DemoConfig, run_demo
from recloop.evaluation.charts import line_chart
from recloop.simulate.world import WorldConfig

RUNS = ("drift", "nightly", "no-shift")


def run_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One world's run: ``drift`` (the drift trigger on), ``nightly`` or ``no-shift``."""
    world = WorldConfig(
        seed=args.seed,
        initial_users=args.users,
        initial_items=args.items,
        taste_shift_day=None if kind == "no-shift" else args.shift_day,
    )
    schedule = ScheduleSettings(
        enabled=True,
        # The demo's nightly `recloop train` is the cadence; between nights only triggers.
        train_every_h=0,
        tune_every_h=0,
        drift_psi=args.drift_psi if kind == "drift" else 0.0,
        ctr_drop=args.ctr_drop if kind == "drift" else 0.0,
    )
    scheduler = IntradayScheduler(schedule, every=timedelta(hours=args.check_h))
    config = DemoConfig(
        world=world,
        days=args.days,
        transport="inprocess",
        variants={"home": "home"},
        observer=scheduler.observer,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        outcome = run_demo(config, settings, Console(file=io.StringIO()), Path(tmp) / "demo")
        scheduler.finish(args.days)
        min_requests = settings.serving.drift.min_requests
    days = per_day(args.days, scheduler.checks, scheduler.retrainings, min_requests)
    ctr = [d["true_ctr"] for d in outcome.result.per_day["home"]]
    return {
        "run": kind,
        "wall_s": time.perf_counter() - started,
        "true_ctr": ctr,
        "days": days,
        "checks": scheduler.checks,
    }


def print_run(run: dict[str, Any], shift_day: int) -> None:
    """The run's per-day table and its versions."""
    print(f"\n== {run['run']} ({run['wall_s']:.0f} s)", flush=True)
    print(f"{'day':>4s} {'true CTR':>9s} {'max PSI':>8s}  {'feature':22s} {'first trigger':14s}")
    for day, ctr in zip(run["days"], run["true_ctr"], strict=True):
        mark = " <- shift" if run["run"] != "no-shift" and day.day + 1 == shift_day else ""
        psi = f"{day.max_psi:8.2f}" if day.max_psi is not None else f"{'-':>8s}"
        fired = day.first_trigger_at.strftime("%H:%M") if day.first_trigger_at else "-"
        print(f"{day.day + 1:4d} {ctr:9.4f} {psi}  {day.max_psi_feature:22s} {fired:14s}{mark}")
        for r in day.retrainings:
            verdict = "promoted" if r.promoted else f"blocked by {', '.join(r.blocked_by) or '?'}"
            if r.version is None:
                verdict = "no version"
            print(
                f"{'':14s}{r.at:%H:%M} {r.trigger:8s} {r.version or '-'} {verdict}"
                f"{f' ({r.seconds:.0f} s)' if r.trigger != 'nightly' else ''}: {r.reason}",
                flush=True,
            )


def summary(day: DaySummary) -> dict[str, Any]:
    """A day in JSON."""
    return {
        "day": day.day + 1,
        "max_psi": day.max_psi,
        "max_psi_feature": day.max_psi_feature,
        "first_trigger_at": day.first_trigger_at.isoformat() if day.first_trigger_at else None,
        "versions": [
            {
                "at": r.at.isoformat(),
                "trigger": r.trigger,
                "reason": r.reason,
                "version": r.version,
                "promoted": r.promoted,
                "blocked_by": list(r.blocked_by),
            }
            for r in day.retrainings
        ],
    }


def chart(runs: list[dict[str, Any]], path: Path) -> None:
    """True CTR per day of each run, and the drift run's max PSI, as one SVG file each."""
    labels = [f"day {d + 1}" for d in range(len(runs[0]["true_ctr"]))]
    svg = line_chart(
        "True CTR of served lists per day",
        labels,
        {r["run"]: r["true_ctr"] for r in runs},
        y_label="true CTR",
    )
    psi = line_chart(
        "Largest drift PSI read per day (versions: see the table)",
        labels,
        {
            r["run"]: [d.max_psi if d.max_psi is not None else math.nan for d in r["days"]]
            for r in runs
        },
        y_label="PSI",
    )
    path.write_text(svg)
    path.with_name(path.stem + "-psi" + path.suffix).write_text(psi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--shift-day", type=int, default=4)
    parser.add_argument("--users", type=int, default=300, help="initial users")
    parser.add_argument("--items", type=int, default=1200, help="initial items")
    parser.add_argument("--check-h", type=float, default=2.0, help="simulated hours a check")
    parser.add_argument("--drift-psi", type=float, default=0.25, help="[schedule] drift_psi")
    parser.add_argument("--ctr-drop", type=float, default=0.0, help="[schedule] ctr_drop")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"of {', '.join(RUNS)}")
    parser.add_argument("--chart", type=Path, default=None, help="write SVG charts here")
    args = parser.parse_args()
    print(
        f"seed {args.seed}, {args.days} days, {args.users} users and {args.items} items to "
        f"start, shift on day {args.shift_day}, checks every {args.check_h:g} h, "
        f"drift_psi {args.drift_psi:g}, ctr_drop {args.ctr_drop:g}",
        flush=True,
    )
    runs = []
    for kind in args.runs.split(","):
        runs.append(run_one(kind, args))
        print_run(runs[-1], args.shift_day)
    if args.chart is not None:
        chart(runs, args.chart)
        print(f"\ncharts: {args.chart}")
    print(
        json.dumps(
            {
                "benchmark": "taste_shift",
                "args": {k: str(v) for k, v in vars(args).items()},
                "runs": [
                    {
                        "run": r["run"],
                        "wall_s": r["wall_s"],
                        "true_ctr": r["true_ctr"],
                        "days": [summary(d) for d in r["days"]],
                    }
                    for r in runs
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
