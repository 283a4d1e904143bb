"""How many users an A/B test and team-draft interleaving need to pick the better ranker.

The simulator's world (``recloop.simulate``) knows every user's true click probability for
every item. Two rankers order all items by a noisy copy of that truth, fixed per user and
item, with two noise levels: the less noisy one is better, and how much better is computed
exactly from the world's ground truth (expected clicks of each ranker's top k, averaged over
every user of the population).

Each replication draws ``n`` users from the population and the number of lists each sees
(1 + Poisson(sessions a day x days), so activity is heavy-tailed), then:

- **A/B**: users split in half; CTR (clicks / items served) per arm from per-user sums,
  compared by the delta-method z-test (``recloop.analysis.stats.ratio_ztest``);
- **interleaving**: every user sees team-draft interleavings of both rankers
  (``recloop.analysis.interleaving.team_draft``, seeded per user and list), clicks are
  credited per list, and the per-user sign test decides (``aggregate_counts``).

A decision is right when it is significant at alpha and names the truly better ranker. The
script prints, per number of users, how often each method decides right, the users each
needs for 80% and 95%, and their ratio; it writes ``benchmarks/results/interleaving_vs_ab.json``.

Clicks are drawn from the world's closed-form probabilities (``Behaviour.truth``: position
examination times the item's click probability, independent per position, which is how
``Behaviour.respond`` samples them); a check against ``respond`` itself is printed. Every
list a user sees is scored as a fresh session: the seen-before and category-fatigue
penalties of repeated lists are left out.

    .venv/bin/python benchmarks/interleaving_vs_ab.py [--quick] [--seed 7] [--replications 200]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from recloop.analysis.interleaving import aggregate_counts
from recloop.analysis.stats import ratio_ztest
from recloop.experiments.team_draft import Team, team_draft
from recloop.simulate.behaviour import Behaviour, Session
from recloop.simulate.world import World, WorldConfig

START = datetime(2026, 11, 22, tzinfo=UTC)
OUT = Path(__file__).parent / "results" / "interleaving_vs_ab.json"
TARGETS = (0.8, 0.95)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


class Population:
    """Every user's two top-k lists, their click probabilities, and precomputed interleavings."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        started = time.perf_counter()
        config = WorldConfig(seed=args.seed, initial_users=args.users, bot_share=0.0)
        self.world = World(config, START)
        self.behaviour = Behaviour(self.world)
        c = self.behaviour.config
        world = self.world
        self.item_ids = [item.item_id for item in world.items]
        vectors = world.item_matrix(self.item_ids)
        attractiveness = np.array([item.attractiveness for item in world.items])
        k = args.k
        self.k = k
        self.examination = (1.0 + np.arange(k)) ** -c.position_decay
        n = len(world.users)
        self.rate = np.array([u.sessions_per_day for u in world.users]) * args.days
        self.lists = {Team.A: np.zeros((n, k), int), Team.B: np.zeros((n, k), int)}
        self.item_p = np.zeros((n, len(self.item_ids)))
        noise = {Team.A: args.noise_a, Team.B: args.noise_b}
        streams = {
            Team.A: np.random.default_rng([args.seed, 10]),
            Team.B: np.random.default_rng([args.seed, 11]),
        }
        chunk = 2000
        for start in range(0, n, chunk):
            tastes = np.stack([u.taste for u in world.users[start : start + chunk]])
            # A fresh session's logit (no seen-before, fatigue or intent terms).
            logits = (
                c.click_bias
                + c.taste_weight * tastes @ vectors.T
                + c.attractiveness_weight * attractiveness
            )
            self.item_p[start : start + chunk] = _sigmoid(logits)
            for team in (Team.A, Team.B):
                scores = logits + noise[team] * streams[team].normal(size=logits.shape)
                top = np.argpartition(-scores, k, axis=1)[:, :k]
                order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
                self.lists[team][start : start + chunk] = np.take_along_axis(top, order, axis=1)
        rows = np.arange(n)[:, None]
        # Per user, per position: the world's click probability of each ranker's list.
        self.click = {
            team: self.examination * self.item_p[rows, self.lists[team]] for team in self.lists
        }
        self.true_clicks = {team: float(self.click[team].sum(axis=1).mean()) for team in self.click}
        self.better = max(self.true_clicks, key=self.true_clicks.__getitem__)
        self._interleave(args.patterns)
        self.seconds = time.perf_counter() - started
        console.print(
            f"population: {n} users, {len(self.item_ids)} items, k={k}; built in "
            f"{self.seconds:.1f} s (team draft: {self.interleave_seconds:.1f} s)"
        )

    def _interleave(self, patterns: int) -> None:
        """``patterns`` team-draft interleavings per user, each seeded by user and list."""
        started = time.perf_counter()
        n = len(self.world.users)
        self.tdi_items = np.zeros((n, patterns, self.k), int)
        self.tdi_team = np.zeros((n, patterns, self.k), np.int8)  # 0 shared, 1 A, 2 B
        code = {None: 0, Team.A: 1, Team.B: 2}
        index = {item_id: i for i, item_id in enumerate(self.item_ids)}
        for u, user in enumerate(self.world.users):
            a = [self.item_ids[i] for i in self.lists[Team.A][u]]
            b = [self.item_ids[i] for i in self.lists[Team.B][u]]
            for j in range(patterns):
                result = team_draft(a, b, self.k, seed=f"{user.user_id}:{j}")
                self.tdi_items[u, j] = [index[i] for i in result.items]
                self.tdi_team[u, j] = [code[t] for t in result.teams]
        rows = np.arange(n)[:, None, None]
        self.tdi_click = self.examination * self.item_p[rows, self.tdi_items]
        self.interleave_seconds = time.perf_counter() - started

    def check_truth(self, users: int) -> dict[str, float]:
        """Behaviour.truth agrees with the closed form; respond's clicks agree with both."""
        worst = 0.0
        observed = expected = 0.0
        rng = np.random.default_rng(0)
        for u in rng.choice(len(self.world.users), size=users, replace=False):
            user = self.world.users[int(u)]
            ids = [self.item_ids[i] for i in self.tdi_items[u, 0]]
            session = Session(f"check-{u}", user, START, rng=np.random.default_rng([9, int(u)]))
            truth = self.behaviour.truth(session, ids)
            worst = max(worst, float(np.abs(truth.click_probability - self.tdi_click[u, 0]).max()))
            for n in range(5):
                user.seen.clear()
                session = Session(f"check-{u}-{n}", user, START, rng=session.rng)
                response = self.behaviour.respond(
                    session, ids, request_id=f"r{u}-{n}", surface="home", now=START
                )
                observed += len(response.clicks)
                expected += truth.expected_clicks
            user.seen.clear()
        return {"max_abs_difference": worst, "observed_clicks": observed, "expected": expected}


def _ab(pop: Population, users: np.ndarray, lists: np.ndarray, rng: np.random.Generator) -> bool:
    # Users come in random order, so the first half against the second is a random split.
    half = len(users) // 2
    sums = {}
    for team, arm in ((Team.A, slice(None, half)), (Team.B, slice(half, None))):
        shown = lists[arm]
        clicks = rng.binomial(shown[:, None], pop.click[team][users[arm]]).sum(axis=1)
        sums[team] = (clicks, shown * pop.k)
    result = ratio_ztest(*sums[Team.B], *sums[Team.A])  # treatment A against control B
    if not result.significant:
        return False
    return (result.absolute_diff > 0) == (pop.better is Team.A)


def _interleaving(
    pop: Population, users: np.ndarray, lists: np.ndarray, rng: np.random.Generator
) -> tuple[bool, bool, float]:
    owner = np.repeat(np.arange(len(users)), lists)
    pattern = rng.integers(pop.tdi_team.shape[1], size=len(owner))
    who = users[owner]
    clicked = rng.random((len(owner), pop.k)) < pop.tdi_click[who, pattern]
    teams = pop.tdi_team[who, pattern]
    a = (clicked & (teams == 1)).sum(axis=1)
    b = (clicked & (teams == 2)).sum(axis=1)
    tie = (a == b) & clicked.any(axis=1)
    size = len(users)
    result = aggregate_counts(
        np.bincount(owner, weights=a > b, minlength=size).astype(int),
        np.bincount(owner, weights=b > a, minlength=size).astype(int),
        np.bincount(owner, weights=tie, minlength=size).astype(int),
        impressions=len(owner),
    )
    low, high = result.delta_ci
    by_delta = (low > 0 and pop.better is Team.A) or (high < 0 and pop.better is Team.B)
    return result.winner is pop.better, by_delta, result.delta


def _needed(grid: list[int], rates: list[float], target: float) -> float | None:
    """Users at which the rate first reaches the target, interpolated in log users."""
    for i, rate in enumerate(rates):
        if rate >= target:
            if i == 0:
                return float(grid[0])
            lo, hi = rates[i - 1], rate
            frac = (target - lo) / (hi - lo)
            return float(math.exp(math.log(grid[i - 1]) + frac * math.log(grid[i] / grid[i - 1])))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=20_000, help="population size")
    parser.add_argument("--k", type=int, default=10, help="list length")
    parser.add_argument("--days", type=float, default=3.0, help="experiment length")
    parser.add_argument("--noise-a", type=float, default=1.0, help="ranker A's score noise")
    parser.add_argument("--noise-b", type=float, default=1.05, help="ranker B's score noise")
    parser.add_argument("--patterns", type=int, default=16, help="interleavings per user")
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--grid", default="200,400,800,1600,3200,6400,12800,25600,51200")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="small population, 60 reps")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.users, args.replications, args.patterns = 4000, 60, 8
    console = Console()
    started = time.perf_counter()
    pop = Population(args, console)
    check = pop.check_truth(300)
    console.print(
        "truth check: Behaviour.truth vs closed form, max |diff| "
        f"{check['max_abs_difference']:.1e}; Behaviour.respond clicks "
        f"{check['observed_clicks']:.0f} vs expected "
        f"{check['expected']:.0f} (300 users x 5 lists)"
    )
    gap = pop.true_clicks[Team.A] / pop.true_clicks[Team.B] - 1.0
    console.print(
        f"true expected clicks per list of {pop.k}: A (noise {args.noise_a}) "
        f"{pop.true_clicks[Team.A]:.4f}, B (noise {args.noise_b}) {pop.true_clicks[Team.B]:.4f}; "
        f"A - B {gap:+.2%} relative; better: {pop.better.value}"
    )
    grid = [int(g) for g in args.grid.split(",")]
    rows: list[dict[str, Any]] = []
    for n in grid:
        t0 = time.perf_counter()
        right = {"ab": 0, "interleaving": 0, "interleaving_z": 0}
        deltas = []
        for r in range(args.replications):
            rng = np.random.default_rng([args.seed, 100, n, r])
            users = rng.integers(len(pop.world.users), size=n)
            lists = 1 + rng.poisson(pop.rate[users])
            right["ab"] += _ab(pop, users, lists, rng)
            by_sign, by_delta, delta = _interleaving(pop, users, lists, rng)
            right["interleaving"] += by_sign
            right["interleaving_z"] += by_delta
            deltas.append(delta)
        rows.append(
            {
                "users": n,
                "ab_right": right["ab"] / args.replications,
                "interleaving_right": right["interleaving"] / args.replications,
                "interleaving_z_right": right["interleaving_z"] / args.replications,
                "mean_delta": float(np.nanmean(deltas)),
                "seconds": time.perf_counter() - t0,
            }
        )
    table = Table(
        title=f"P(right decision) at alpha {args.alpha}, {args.replications} replications"
    )
    columns = (
        "users",
        "A/B (delta-method z)",
        "interleaving (sign test)",
        "interleaving (delta_AB z)",
        "mean delta_AB",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['users']:,}",
            f"{row['ab_right']:.3f}",
            f"{row['interleaving_right']:.3f}",
            f"{row['interleaving_z_right']:.3f}",
            f"{row['mean_delta']:+.4f}",
        )
    console.print(table)
    needed: dict[str, dict[str, float | None]] = {}
    for target in TARGETS:
        ab = _needed(grid, [r["ab_right"] for r in rows], target)
        tdi = _needed(grid, [r["interleaving_right"] for r in rows], target)
        tdi_z = _needed(grid, [r["interleaving_z_right"] for r in rows], target)
        ratio = ab / tdi if ab is not None and tdi is not None else None
        ratio_z = ab / tdi_z if ab is not None and tdi_z is not None else None
        needed[f"{target:.2f}"] = {
            "ab": ab,
            "interleaving": tdi,
            "ratio": ratio,
            "interleaving_delta_z": tdi_z,
            "ratio_delta_z": ratio_z,
        }

        def show(v: float | None) -> str:
            return f"{v:,.0f}" if v is not None else f"> {grid[-1]:,}"

        def times(v: float | None) -> str:
            return f"{v:.1f}x" if v is not None else "n/a"

        console.print(
            f"users for {target:.0%} right: A/B {show(ab)}; interleaving, sign test "
            f"{show(tdi)} (A/B needs {times(ratio)}), delta_AB z {show(tdi_z)} "
            f"({times(ratio_z)})"
        )
    elapsed = time.perf_counter() - started
    console.print(f"total {elapsed:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": START.date().isoformat(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "true_expected_clicks": {t.value: v for t, v in pop.true_clicks.items()},
        "relative_gap_a_minus_b": gap,
        "better": pop.better.value,
        "truth_check": check,
        "rows": rows,
        "users_needed": needed,
        "seconds": elapsed,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
