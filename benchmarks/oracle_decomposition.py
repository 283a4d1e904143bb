"""Where the oracle's lift comes from: lists built from partial knowledge of a world's truth.

The world family's oracle ranks every published item by its true click probability in the
request's state. This benchmark runs one world against the service (``home`` trained each
night, or ``popular-only``) and, for every request served, judges lists built from less
knowledge, in the same state, by the world's own truth:

- ``oracle``: the true click logit (taste match, attractiveness, fatigue, session intent);
- ``category taste + appeal``: the user's taste known only through the mean vector of each
  category's items, each item's attractiveness known exactly;
- ``appeal only``: attractiveness and the state terms, no taste at all (one list for all);
- ``category taste only``: category-mean taste and the state terms, no attractiveness;
- ``service click rate``: what the service itself measured (clicks per impression over the
  last 7 days, smoothed by a Beta(1, 60) prior), greedily over every item, with the
  state terms from the world (what a perfect recently-shown rule would know);
- ``stated interests + appeal``: the user's stated interest categories first, then appeal.

    .venv/bin/python benchmarks/oracle_decomposition.py                 # tuning world 11, 3 days
    .venv/bin/python benchmarks/oracle_decomposition.py --seed 2 --days 4 --variant popular

Figures are expected clicks and satisfied clicks per impression over all days of the run
(day 1 included), beside the served lists' own.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from recloop.config import Settings
from recloop.demo.run import DemoConfig, run_demo
from recloop.features.item_stats import OnlineItemStats
from recloop.runtime.process import Runtime
from recloop.simulate.behaviour import Behaviour, Session
from recloop.simulate.family import WorldFamily

LIST_SIZE = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seed", type=int, default=11, help="a world of the family (tuning: < 10000)"
    )
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--variant", choices=("home", "popular"), default="home")
    args = parser.parse_args()
    spec = WorldFamily(days=args.days).draw(args.seed, clock_mode="synced")
    totals: dict[str, list[float]] = {}
    # The same sums per simulated day: the first day (and a night whose version was not
    # promoted) serves no trained model, so the later days are what learning reached.
    per_day: dict[str, dict[int, list[float]]] = {}

    def observer(runtime: Runtime, behaviour: Behaviour) -> Callable[[Session, str], None]:
        world = behaviour.world
        items = world.items
        stats = OnlineItemStats(runtime.online, clock=runtime.clock)

        def judge(session: Session, request_id: str) -> None:
            if session.user.is_bot:
                return
            now: datetime = runtime.clock()
            ids = [item.item_id for item in items]
            vectors = np.stack([item.vector for item in items])
            appeal = np.array([item.attractiveness for item in items])
            categories = [item.category for item in items]
            published = np.array([item.published_at <= now for item in items])
            means = {
                c: vectors[[k for k, ic in enumerate(categories) if ic == c]].mean(axis=0)
                for c in set(categories)
            }
            user, c = session.user, behaviour.config
            state = (
                -c.seen_penalty * np.log1p([user.seen.get(i, 0) for i in ids])
                - c.category_fatigue
                * np.array([session.shown_categories.get(x, 0) for x in categories])
                + c.intent_boost
                * np.array([min(2, session.clicked_categories.get(x, 0)) for x in categories])
            )
            taste = c.taste_weight * (vectors @ user.taste)
            category_taste = c.taste_weight * np.array([means[x] @ user.taste for x in categories])
            shown, clicked = stats.get("default", ids)
            rate = (clicked + 1.0) / (shown + 61.0)
            liked = np.array([x in user.favourite_categories for x in categories], dtype=float)
            policies = {
                "oracle": taste + c.attractiveness_weight * appeal + state,
                "category taste + appeal": category_taste
                + c.attractiveness_weight * appeal
                + state,
                "appeal only": c.attractiveness_weight * appeal + state,
                "category taste only": category_taste + state,
                "service click rate": np.log(rate / (1 - rate)) + state,
                "stated interests + appeal": 10 * liked + c.attractiveness_weight * appeal + state,
            }
            for name, score in policies.items():
                score = np.where(published, score, -np.inf)
                top = np.argsort(-score, kind="stable")[:LIST_SIZE]
                truth = behaviour.truth(session, [ids[k] for k in top])
                day = (session.started_at - world.start).days
                for row in (
                    totals.setdefault(name, [0.0, 0.0, 0.0]),
                    per_day.setdefault(name, {}).setdefault(day, [0.0, 0.0, 0.0]),
                ):
                    row[0] += truth.expected_clicks
                    row[1] += float(truth.satisfaction.sum())
                    row[2] += len(top)

        return judge

    config = DemoConfig(
        world=spec.world,
        behaviour=spec.behaviour,
        days=args.days,
        transport="inprocess",
        train_nightly=args.variant == "home",
        variants={args.variant: "home" if args.variant == "home" else "popular-only"},
        clients=spec.clients,
        service_clock=spec.service_clock,
        observer=observer,
    )
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_demo(config, Settings(data_dir=Path(tmp)), Console(file=io.StringIO()))
    days = outcome.result.per_day[args.variant]
    impressions = sum(d["impressions"] for d in days) or 1
    served = {
        key: sum(d[key] * d["impressions"] for d in days) / impressions
        for key in ("true_ctr", "true_satisfaction")
    }
    print(f"world {args.seed}: {spec.describe()}; {args.days} days; served {args.variant}")
    day_heads = "".join(f" {'day ' + str(d + 1):>7s}" for d in range(len(days)))
    print(f"{'list':28s} {'true CTR':>9s} {'true sat':>9s}   true CTR by day:{day_heads}")
    label = f"served {args.variant}"
    served_days = "".join(f" {d['true_ctr']:7.4f}" for d in days)
    print(
        f"{label:28s} {served['true_ctr']:9.4f} {served['true_satisfaction']:9.4f}"
        f"{'':18s}{served_days}"
    )
    figures = {}
    for name, (clicks, satisfied, shown) in totals.items():
        by_day = {d: c / n for d, (c, _, n) in sorted(per_day[name].items()) if n}
        figures[name] = {
            "true_ctr": clicks / shown,
            "true_satisfaction": satisfied / shown,
            "true_ctr_by_day": [by_day.get(d) for d in range(len(days))],
        }
        line = "".join(
            f" {by_day[d]:7.4f}" if d in by_day else f" {'-':>7s}" for d in range(len(days))
        )
        print(f"{name:28s} {clicks / shown:9.4f} {satisfied / shown:9.4f}{'':18s}{line}")
    print(
        json.dumps(
            {
                "benchmark": "oracle_decomposition",
                "seed": args.seed,
                "days": args.days,
                "variant": args.variant,
                "served": served,
                "served_true_ctr_by_day": [d["true_ctr"] for d in days],
                "lists": figures,
            }
        )
    )


if __name__ == "__main__":
    main()
