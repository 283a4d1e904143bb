"""Regret of exploration policies in a repeated recommendation game on the simulator.

Each round a user of the simulated world (``WorldConfig(seed)``, no bots) arrives, drawn in
proportion to their activity (``sessions_per_day``). Retrieval is stood in for by a noisy
taste score, ``taste . item + noise * N(0, 1)``, fixed per user and item: its top
``--candidates`` items, in that order, are the slate the policy receives. The policy serves
``k`` of them; the world's truth (``Behaviour.truth`` on a fresh session: no seen-before or
fatigue terms) gives each position's click probability, and the round's reward is the
list's expected clicks. Clicks are drawn as ``Behaviour.respond`` draws them (a position is
examined with its examination probability, an examined one clicked with the item's click
probability), from random numbers shared by all policies; the policy learns from the
examined positions (an impression each) and their clicks.

Regret is cumulative against the oracle: the ``k`` candidates with the highest true click
probability for this user, in that order (optimal under the position-based model). The
clock times each policy's whole explore stage per request (re-ranking and feature rows
included), median in microseconds.

Policies:

- ``greedy``: the stand-in ranker's top k (no exploration, no learning);
- ``eps-greedy``: ``recloop.explore.policies.EpsilonGreedy`` over that ranker (explores, but
  nothing here learns from what it finds);
- ``greedy-ctr``: the candidates re-ranked by each item's posterior mean click rate per
  impression, under the ``--prior`` Beta prior (learns, never explores on purpose);
- ``eps-greedy-ctr``: ``EpsilonGreedy`` over the ``greedy-ctr`` order;
- ``thompson``: ``ThompsonSampling`` over all k slots with the ``--prior`` (default
  Beta(1, 7): mean 0.125, about the candidates' mean click rate per examination);
  ``thompson-tail3``: only the last 3 slots; ``thompson-flat``: all slots, the config's
  default Beta(1, 1) prior;
- ``linucb``: ``LinUCB`` on observable features (no true taste): the ranker's score, the
  item's category one-hot times "category is one of the user's stated interests", a
  clickbait-looking title, and the item's smoothed click rate so far.

    .venv/bin/python benchmarks/bandit_regret.py [--rounds 20000] [--seeds 7,8] [--quick]

It writes ``benchmarks/results/bandit_regret.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rich.console import Console
from rich.table import Table

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.explore.linucb import LinUCB, LinUCBConfig
from recloop.explore.policies import EpsilonGreedy, EpsilonGreedyConfig, NoExplorationPolicy
from recloop.explore.thompson import InMemoryItemStats, ThompsonConfig, ThompsonSampling
from recloop.simulate.behaviour import Behaviour, Session
from recloop.simulate.world import CATEGORIES, World, WorldConfig

START = datetime(2026, 11, 22, tzinfo=UTC)
OUT = Path(__file__).parent / "results" / "bandit_regret.json"
APP = "bench"


class Policy(Protocol):
    name: str

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate: ...


class ByPosteriorMean:
    """Re-ranks the slate by each item's posterior mean click rate, then hands it on."""

    def __init__(
        self, name: str, inner: Policy, stats: InMemoryItemStats, prior: tuple[float, float]
    ) -> None:
        self.name = name
        self.inner = inner
        self.stats = stats
        self.prior = prior

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate:
        impressions, clicks = self.stats.get(ctx.app_id, slate.item_ids())
        alpha, beta = self.prior
        mean = (alpha + clicks) / (alpha + beta + impressions)
        order = np.argsort(-mean, kind="stable")
        return self.inner.explore(Slate(tuple(slate.items[int(i)] for i in order)), ctx, k)


class GameFeatures:
    """LinUCB's feature rows from what serving could know: no hidden taste or appeal."""

    dim = 2 + len(CATEGORIES) + 2

    def __init__(self, world: World, stats: InMemoryItemStats) -> None:
        self.stats = stats
        self.category = {item.item_id: CATEGORIES.index(item.category) for item in world.items}
        self.bait = {item.item_id: float(":" in item.title) for item in world.items}
        self.interests = {
            user.user_id: np.isin(CATEGORIES, user.favourite_categories).astype(float)
            for user in world.users
        }
        self.eye = np.eye(len(CATEGORIES))

    def features(self, items: Sequence[ScoredItem], ctx: RequestContext) -> np.ndarray:
        ids = [item.item_id for item in items]
        category = np.array([self.category[i] for i in ids])
        impressions, clicks = self.stats.get(ctx.app_id, ids)
        return np.column_stack(
            [
                np.ones(len(ids)),
                np.array([item.score for item in items]),
                self.eye[category] * self.interests[ctx.user_id][category][:, None],
                np.array([self.bait[i] for i in ids]),
                (clicks + 0.1) / (impressions + 1.0),  # shrunk towards a 10% click rate
            ]
        )


@dataclasses.dataclass
class Game:
    """One world's users, their candidate slates, and every round's shared randomness."""

    world: World
    behaviour: Behaviour
    slates: list[Slate]
    oracle_lists: list[list[str]]
    arrivals: np.ndarray  # user index per round
    uniforms: np.ndarray  # (rounds, 2, k): examination and click draws
    k: int


def build_game(seed: int, rounds: int, candidates: int, noise: float, k: int) -> Game:
    world = World(WorldConfig(seed=seed, bot_share=0.0), START)
    behaviour = Behaviour(world)
    c = behaviour.config
    item_ids = [item.item_id for item in world.items]
    vectors = world.item_matrix(item_ids)
    attractiveness = np.array([item.attractiveness for item in world.items])
    tastes = np.stack([user.taste for user in world.users])
    match = tastes @ vectors.T
    rng = np.random.default_rng([seed, 40])
    score = match + noise * rng.normal(size=match.shape)
    p = 1.0 / (
        1.0
        + np.exp(
            -(c.click_bias + c.taste_weight * match + c.attractiveness_weight * attractiveness)
        )
    )
    slates: list[Slate] = []
    oracle_lists: list[list[str]] = []
    for u in range(len(world.users)):
        top = np.argpartition(-score[u], candidates)[:candidates]
        top = top[np.argsort(-score[u, top])]
        slates.append(
            Slate(
                tuple(ScoredItem(item_ids[i], float(score[u, i]), "standin", "taste") for i in top)
            )
        )
        best = top[np.argsort(-p[u, top], kind="stable")[:k]]
        oracle_lists.append([item_ids[i] for i in best])
    activity = np.array([user.sessions_per_day for user in world.users])
    arrivals = rng.choice(len(world.users), size=rounds, p=activity / activity.sum())
    uniforms = rng.random((rounds, 2, k))
    return Game(world, behaviour, slates, oracle_lists, arrivals, uniforms, k)


POLICIES = (
    "oracle",
    "greedy",
    "eps-greedy",
    "greedy-ctr",
    "eps-greedy-ctr",
    "thompson",
    "thompson-tail3",
    "thompson-flat",
    "linucb",
)


def make_policy(
    game: Game, name: str, prior: tuple[float, float]
) -> tuple[Policy, InMemoryItemStats, LinUCB | None]:
    """A fresh policy, the counts it reads and learns into, and its LinUCB model if any."""
    eps = EpsilonGreedyConfig(epsilon=0.1, pool=50)
    stats = InMemoryItemStats()
    a, b = prior
    linucb: LinUCB | None = None
    policy: Policy
    if name in ("oracle", "greedy"):
        policy = NoExplorationPolicy()
    elif name == "eps-greedy":
        policy = EpsilonGreedy(eps)
    elif name == "greedy-ctr":
        policy = ByPosteriorMean(name, NoExplorationPolicy(), stats, prior)
    elif name == "eps-greedy-ctr":
        policy = ByPosteriorMean(name, EpsilonGreedy(eps), stats, prior)
    elif name == "thompson":
        policy = ThompsonSampling(ThompsonConfig(alpha=a, beta=b, pool=100), stats)
    elif name == "thompson-tail3":
        config = ThompsonConfig(alpha=a, beta=b, pool=100, explore_slots=3)
        policy = ThompsonSampling(config, stats)
    elif name == "thompson-flat":  # the config's default Beta(1, 1) prior
        policy = ThompsonSampling(ThompsonConfig(pool=100), stats)
    else:
        features = GameFeatures(game.world, stats)
        linucb = LinUCB(
            LinUCBConfig(dim=features.dim, alpha=0.3, temperature=0.02, pool=100), features
        )
        policy = linucb
    return policy, stats, linucb


def play(
    game: Game,
    name: str,
    policy: Policy,
    stats: InMemoryItemStats,
    linucb: LinUCB | None,
    seed: int,
) -> dict[str, Any]:
    """Every round of the game for one policy: expected clicks per round, explore timings."""
    world, behaviour, k = game.world, game.behaviour, game.k
    rounds = len(game.arrivals)
    reward = np.zeros(rounds)
    best = np.zeros(rounds)
    clicks_drawn = 0
    timings = np.zeros(rounds)
    for t, u in enumerate(game.arrivals.tolist()):
        user = world.users[u]
        slate = game.slates[u]
        ctx = RequestContext(
            app_id=APP, request_id=f"s{seed}-r{t}", surface="home", user_id=user.user_id, now=START
        )
        started = time.perf_counter_ns()
        if name == "oracle":
            ids = game.oracle_lists[u]
        else:
            served = policy.explore(slate, ctx, k)
            ids = served.item_ids()
        timings[t] = (time.perf_counter_ns() - started) / 1_000
        session = Session(f"s{seed}-{t}", user, START)
        truth = behaviour.truth(session, ids)
        oracle = behaviour.truth(session, game.oracle_lists[u])
        reward[t] = truth.expected_clicks
        best[t] = oracle.expected_clicks
        draws = game.uniforms[t, :, : len(ids)]
        examined = draws[0] < truth.examination
        clicked = examined & (draws[1] < truth.click_probability / truth.examination)
        clicks_drawn += int(clicked.sum())
        if name == "oracle":
            continue
        shown = [ids[j] for j in np.flatnonzero(examined)]
        if linucb is not None:  # features before the counts move, as served
            rows = linucb.features.features(
                [served.items[j] for j in np.flatnonzero(examined)], ctx
            )
            linucb.update(rows, clicked[examined].astype(float))
        stats.update(APP, shown, clicked[examined].astype(float).tolist())
    return {"reward": reward, "best": best, "clicks": clicks_drawn, "timings": timings}


def summarise(result: dict[str, Any], horizons: list[int], k: int) -> dict[str, Any]:
    regret = np.cumsum(result["best"] - result["reward"])
    tail = max(1, len(result["reward"]) // 5)
    return {
        "regret": {str(h): float(regret[h - 1]) for h in horizons},
        "ctr": float(result["reward"].mean() / k),
        "ctr_last_fifth": float(result["reward"][-tail:].mean() / k),
        "oracle_ctr": float(result["best"].mean() / k),
        "clicks_drawn": result["clicks"],
        "explore_us_median": float(np.median(result["timings"])),
        "explore_us_p99": float(np.percentile(result["timings"], 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--seeds", default="7,8")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--noise", type=float, default=0.25, help="the stand-in ranker's noise")
    parser.add_argument(
        "--prior", default="1,7", help="Beta prior of the click rate per impression"
    )
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--quick", action="store_true", help="2,000 rounds, the first seed")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seeds = 2_000, args.seeds.split(",")[0]
    console = Console(width=130)
    seeds = [int(s) for s in args.seeds.split(",")]
    horizons = [h for h in (1_000, 5_000, 20_000, 50_000) if h < args.rounds] + [args.rounds]
    alpha, beta = (float(x) for x in args.prior.split(","))
    prior = (alpha, beta)
    names = [n for n in args.policies.split(",") if n]
    unknown = set(names) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies: {sorted(unknown)}")
    started_all = time.perf_counter()
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for seed in seeds:
        started = time.perf_counter()
        game = build_game(seed, args.rounds, args.candidates, args.noise, args.k)
        console.print(
            f"seed {seed}: {len(game.world.users)} users, {len(game.world.items)} items, "
            f"{args.candidates} candidates, k={args.k}; built in "
            f"{time.perf_counter() - started:.1f} s"
        )
        for name in names:
            started = time.perf_counter()
            policy, stats, linucb = make_policy(game, name, prior)
            result = play(game, name, policy, stats, linucb, seed)
            summary = summarise(result, horizons, args.k)
            summary["seconds"] = time.perf_counter() - started
            per_seed[name].append(summary)
            console.print(
                f"  {name:<15} regret@{args.rounds:,} {summary['regret'][str(args.rounds)]:9.1f}"
                f"  ctr {summary['ctr']:.4f}  {summary['seconds']:.1f} s"
            )
    table = Table(
        title=f"Cumulative regret in expected clicks (mean of seeds {args.seeds}), k={args.k}"
    )
    table.add_column("policy")
    for h in horizons:
        table.add_column(f"regret@{h:,}", justify="right")
    table.add_column("CTR", justify="right")
    table.add_column("CTR last 20%", justify="right")
    table.add_column("explore µs (median)", justify="right")
    aggregate: dict[str, Any] = {}
    for name in names:
        runs = per_seed[name]
        mean = {
            "regret": {
                str(h): float(np.mean([r["regret"][str(h)] for r in runs])) for h in horizons
            },
            "regret_sd": {
                str(h): float(np.std([r["regret"][str(h)] for r in runs])) for h in horizons
            },
            "ctr": float(np.mean([r["ctr"] for r in runs])),
            "ctr_last_fifth": float(np.mean([r["ctr_last_fifth"] for r in runs])),
            "explore_us_median": float(np.median([r["explore_us_median"] for r in runs])),
        }
        aggregate[name] = mean
        table.add_row(
            name,
            *(f"{mean['regret'][str(h)]:,.1f}" for h in horizons),
            f"{mean['ctr']:.4f}",
            f"{mean['ctr_last_fifth']:.4f}",
            "-" if name == "oracle" else f"{mean['explore_us_median']:,.0f}",
        )
    console.print(table)
    elapsed = time.perf_counter() - started_all
    console.print(f"total {elapsed:.0f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).date().isoformat(),
                "args": vars(args),
                "horizons": horizons,
                "policies": aggregate,
                "per_seed": {
                    name: dict(zip(map(str, seeds), runs, strict=True))
                    for name, runs in per_seed.items()
                },
                "seconds": elapsed,
            },
            indent=2,
        )
    )
    console.print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
