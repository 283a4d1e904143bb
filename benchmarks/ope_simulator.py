"""Off-policy evaluation against the simulator's ground truth.

The simulated world knows every list's expected clicks in closed form (``Behaviour.truth``),
so an off-policy estimate can be compared with the exact value of the target policy on the
same requests, with no sampling noise in the truth.

Logging. Each request draws a (non-bot) user with probability proportional to activity. A
noisy taste score (latent match + N(0, ``--noise``)) over the whole catalog stands in for
retrieval and ranking: the top ``k + pool`` items (10 + 20) are the candidates, in score order.
recloop's own ``EpsilonGreedy`` (``--epsilon``, pool 20) serves k = 10 of them from a ``Slate``
of ``ScoredItem`` with a ``RequestContext``: at each position, with probability epsilon, an item
drawn uniformly from the not-yet-used pool replaces the ranked item of that position (which is
then not shown at all). Every request gets a fresh ``Session`` (no fatigue, intent or seen
state), so the click probability of an item at a position depends only on the user, the item
and the position; clicks are drawn independently per position from
``Behaviour.truth(session, served).click_probability``, the same per-position marginal that
``Behaviour.respond`` samples for non-bot users (bots are left out: ``respond`` ignores the
truth for them).

Propensities. The logged propensity of an explored item is epsilon / (items left in the
pool), the probability given the earlier draws of the same list. Position-based IPS needs
the *marginal* probability of the item at the position. Under this epsilon-greedy a ranked
item can only be at its own rank (exploiting), with marginal 1 - epsilon, and by symmetry
every pool item is at position j with marginal epsilon / pool, whatever j; ranked items at
any other position have probability 0. The benchmark computes these marginals itself and
also runs position-based IPS on the logged propensities as a contrast (biased low by
1 - j * epsilon / pool at position j for pool items).

Targets (deterministic unless said): ``logger ranking`` (the logger's ranked top 10: the
on-policy greedy list, fully supported), ``epsilon-greedy 0.5`` (stochastic, the same
ranking, epsilon 0.5), ``pool promotion`` (the two least popular of the top 10 replaced in
place by the two most popular pool items when they are more popular: supported, large
weights), ``popularity re-rank`` (the candidates sorted by popularity: moves ranked items to
positions the logger never puts them at) and ``new retrieval`` (a second, less noisy taste
score over the whole catalog: also items outside the candidate set, which the logger never
shows). Popularity is each item's CTR estimated from a history of 200 random impressions.
The truth of a target is the mean over the requests of its list's expected clicks from
``Behaviour.truth`` (for the stochastic target: exact expectation over its randomisation,
from the per-item attraction that ``truth`` gives), reported per slot (CTR per impression =
expected clicks per list / 10).

Estimators (``recloop.evaluation.ope``), one row per (request, position), action = the
item's slot in the request's candidate table: position-based IPS (marginal propensities;
with equal rows per position it equals plain IPS on these rows), the same on the logged
propensities, clipped IPS (``--cap``), SNIPS, DM and DR with a ridge linear-probability model
per position on the item's popularity and logged noisy score (5-fold cross-fitted by
request). Bootstrap: 95% percentile over requests; DM refits its model on every resample
(``--model-resamples``), the others use ``--resamples``.

    .venv/bin/python benchmarks/ope_simulator.py [--quick] [--seeds 3] [--sizes 1000,5000,20000]
        [--epsilon 0.2] [--cap 20] [--resamples 500] [--model-resamples 50]

Writes benchmarks/results/ope_simulator.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.evaluation.ope import (
    BootstrapSpec,
    Estimate,
    LoggedBandit,
    clipped_ips,
    direct_method,
    doubly_robust,
    ips,
    position_based_ips,
    snips,
)
from recloop.evaluation.ope_models import FloatArray, IntArray
from recloop.explore.policies import EpsilonGreedy, EpsilonGreedyConfig
from recloop.simulate.behaviour import Behaviour, Session
from recloop.simulate.world import World, WorldConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ope_simulator.json"
START = datetime(2026, 11, 1, tzinfo=UTC)
K = 10  # served positions
POOL = 20  # exploration pool below the top K
N_CAND = K + POOL
N_ACTIONS = N_CAND + K  # candidate slots, then slots for a target's items outside the candidates
HISTORY_IMPRESSIONS = 200
TARGET_EPSILON = 0.5
TARGETS = (
    "logger ranking",
    "epsilon-greedy 0.5",
    "pool promotion",
    "popularity re-rank",
    "new retrieval",
)
ESTIMATORS = ("PB-IPS", "PB-IPS logged p0", "clipped IPS", "SNIPS", "DM", "DR")


# --------------------------------------------------------------------------- logging


@dataclass
class Logs:
    """R requests: the candidate table, the logged slates and every target's lists."""

    pop: FloatArray  # (R, N_ACTIONS) popularity feature of each action slot
    score: FloatArray  # (R, N_ACTIONS) the logger's noisy score of each action slot
    served: IntArray  # (R, K) action slot served at each position
    p0_logged: FloatArray  # (R, K) propensity EpsilonGreedy logged
    clicks: FloatArray  # (R, K)
    logger_truth: FloatArray  # (R,) expected clicks of the logging policy (exact)
    logged_p0_shortfall: FloatArray  # (R,) E[PB-IPS on logged p0] - truth, epsilon-greedy 0.5
    lists: dict[str, IntArray]  # deterministic targets: (R, K) action slots
    truth: dict[str, FloatArray]  # (R,) expected clicks per list of each target


def _popularity(
    world: World,
    behaviour: Behaviour,
    users: list[Any],
    weights: FloatArray,
    rng: np.random.Generator,
) -> FloatArray:
    """Each item's CTR at the top position estimated from a history of random impressions;
    the population CTR behind it comes from Behaviour.truth (activity-weighted over users)."""
    ids = [item.item_id for item in world.items]
    population = np.zeros(len(ids))
    for user, weight in zip(users, weights, strict=True):
        session = Session("history", user, START, rng=rng)
        truth = behaviour.truth(session, ids)
        population += weight * truth.click_probability / truth.examination
    clicks = rng.binomial(HISTORY_IMPRESSIONS, population)
    estimate: FloatArray = (clicks + 0.5) / (HISTORY_IMPRESSIONS + 1.0)
    return estimate


def simulate(seed: int, n_requests: int, epsilon: float, noise: float) -> Logs:
    """Serve n_requests with epsilon-greedy and compute every target's exact value."""
    world = World(WorldConfig(seed=seed), START)
    behaviour = Behaviour(world)
    rng = np.random.default_rng([seed, 99])
    users = [u for u in world.users if not u.is_bot]
    activity = np.array([u.sessions_per_day for u in users])
    activity /= activity.sum()
    ids = [item.item_id for item in world.items]
    vectors = world.item_matrix(ids)
    item_pop = _popularity(world, behaviour, users, activity, rng)
    logger = EpsilonGreedy(EpsilonGreedyConfig(epsilon=epsilon, pool=POOL))

    pop = np.zeros((n_requests, N_ACTIONS))
    score = np.zeros((n_requests, N_ACTIONS))
    served = np.zeros((n_requests, K), dtype=np.int64)
    p0_logged = np.zeros((n_requests, K))
    clicks = np.zeros((n_requests, K))
    logger_truth = np.zeros(n_requests)
    shortfall = np.zeros(n_requests)
    lists = {
        name: np.zeros((n_requests, K), dtype=np.int64) for name in TARGETS if name != TARGETS[1]
    }
    truth = {name: np.zeros(n_requests) for name in TARGETS}
    for r in range(n_requests):
        user = users[int(rng.choice(len(users), p=activity))]
        match = vectors @ user.taste
        noisy = match + rng.normal(0.0, noise, len(ids))
        cand = np.argsort(-noisy)[:N_CAND]
        cand_ids = [ids[i] for i in cand]
        slot_of = {item_id: a for a, item_id in enumerate(cand_ids)}
        request_id = f"sim{seed}-req{r:06d}"
        ctx = RequestContext(
            app_id="ope-sim", request_id=request_id, surface="home", user_id=user.user_id, now=START
        )
        slate = Slate(
            tuple(
                ScoredItem(i, float(noisy[c]), "sim", "ranked")
                for i, c in zip(cand_ids, cand, strict=True)
            )
        )
        shown = logger.explore(slate, ctx, K).items
        served[r] = [slot_of[s.item_id] for s in shown]
        p0_logged[r] = [s.propensity for s in shown]
        session = Session(request_id, user, START, rng=np.random.default_rng([seed, 7, r]))
        # Per-item attraction (click probability once examined) of every candidate, and the
        # examination of the K positions, both from the world's truth.
        cand_truth = behaviour.truth(session, cand_ids)
        attraction = cand_truth.click_probability / cand_truth.examination
        exam = cand_truth.examination[:K]
        served_truth = behaviour.truth(session, [s.item_id for s in shown])
        clicks[r] = rng.random(K) < served_truth.click_probability
        # The logger's exact value: ranked item j at j w.p. 1 - eps, each pool item w.p. eps/POOL.
        pool_mean = attraction[K:].mean()
        logger_truth[r] = float(exam @ ((1 - epsilon) * attraction[:K] + epsilon * pool_mean))
        truth[TARGETS[1]][r] = float(
            exam @ ((1 - TARGET_EPSILON) * attraction[:K] + TARGET_EPSILON * pool_mean)
        )
        # With the logged (conditional) propensity a pool item at j is weighted as if it
        # were always available: the estimate's expectation is short by 1 - j * eps / POOL.
        shortfall[r] = -float(exam @ (TARGET_EPSILON * pool_mean * np.arange(K) * epsilon / POOL))
        if r < 50:  # the factorisation exam(j) * attraction(item) that the line above uses
            assert np.allclose(served_truth.click_probability, exam * attraction[served[r]])

        cand_pop = item_pop[cand]
        greedy = np.arange(K)
        promoted = greedy.copy()
        weakest = np.argsort(cand_pop[:K])[:2]
        strongest = K + np.argsort(-cand_pop[K:])[:2]
        for w_pos, s_slot in zip(
            sorted(weakest, key=lambda j: cand_pop[j]), strongest, strict=True
        ):
            if cand_pop[s_slot] > cand_pop[w_pos]:
                promoted[w_pos] = s_slot
        by_pop = np.argsort(-cand_pop, kind="stable")[:K]
        fresh = match + rng.normal(0.0, noise / 2.0, len(ids))
        retrieved = np.argsort(-fresh)[:K]
        new_list = np.zeros(K, dtype=np.int64)
        extra = N_CAND
        pop[r, :N_CAND] = cand_pop
        score[r, :N_CAND] = noisy[cand]
        for j, item in enumerate(retrieved):
            if ids[item] in slot_of:
                new_list[j] = slot_of[ids[item]]
            else:
                new_list[j] = extra
                pop[r, extra] = item_pop[item]
                score[r, extra] = noisy[item]
                extra += 1
        for name, slots in (
            (TARGETS[0], greedy),
            (TARGETS[2], promoted),
            (TARGETS[3], by_pop),
            (TARGETS[4], new_list),
        ):
            lists[name][r] = slots
            items = [cand_ids[a] if a < N_CAND else ids[retrieved[j]] for j, a in enumerate(slots)]
            truth[name][r] = behaviour.truth(session, items).expected_clicks
    return Logs(pop, score, served, p0_logged, clicks, logger_truth, shortfall, lists, truth)


# --------------------------------------------------------------------------- estimation


class SlotRewardModel:
    """Ridge linear-probability model per position on the action's [1, popularity, score].

    A `RewardModel` for `recloop.evaluation.ope`: the row features are (request, position)
    and the per-action features are looked up in the request's candidate table, so that q
    differs across actions of a row (the module's `RidgeRewardModel` only has row features
    plus a one-hot action)."""

    def __init__(self, pop: FloatArray, score: FloatArray, alpha: float = 1.0) -> None:
        self.pop, self.score, self.alpha = pop, score, alpha

    def _design(self, req: IntArray, pos: IntArray, act: IntArray) -> FloatArray:
        x = np.zeros((len(req), 3 * K))
        base = 3 * pos
        x[np.arange(len(req)), base] = 1.0
        x[np.arange(len(req)), base + 1] = self.pop[req, act]
        x[np.arange(len(req)), base + 2] = self.score[req, act]
        return x

    def fit(
        self, features: FloatArray | None, actions: IntArray, rewards: FloatArray, n_actions: int
    ) -> _SlotPredictor:
        assert features is not None
        req, pos = features[:, 0].astype(np.int64), features[:, 1].astype(np.int64)
        x = self._design(req, pos, actions)
        penalty = np.tile([0.0, self.alpha, self.alpha], K)
        coef = np.linalg.solve(x.T @ x + np.diag(penalty) + 1e-9 * np.eye(3 * K), x.T @ rewards)
        return _SlotPredictor(self, coef.reshape(K, 3))


class _SlotPredictor:
    def __init__(self, model: SlotRewardModel, coef: FloatArray) -> None:
        self.model, self.coef = model, coef

    def predict(self, features: FloatArray | None, n_rows: int) -> FloatArray:
        assert features is not None
        req, pos = features[:, 0].astype(np.int64), features[:, 1].astype(np.int64)
        c = self.coef[pos]
        q = c[:, :1] + c[:, 1:2] * self.model.pop[req] + c[:, 2:3] * self.model.score[req]
        out: FloatArray = np.clip(q, 0.0, 1.0)
        return out


def _distributions(
    logs: Logs, n: int, epsilon: float, target: str
) -> tuple[FloatArray, FloatArray]:
    """Per (request, position) row: the logging marginal and the target's distribution."""
    rows = n * K
    pos = np.tile(np.arange(K), n)
    logging = np.zeros((rows, N_ACTIONS))
    logging[np.arange(rows), pos] = 1.0 - epsilon
    logging[:, K:N_CAND] = epsilon / POOL
    if target == TARGETS[1]:
        dist = np.zeros((rows, N_ACTIONS))
        dist[np.arange(rows), pos] = 1.0 - TARGET_EPSILON
        dist[:, K:N_CAND] = TARGET_EPSILON / POOL
    else:
        dist = np.zeros((rows, N_ACTIONS))
        dist[np.arange(rows), logs.lists[target][:n].ravel()] = 1.0
    return logging, dist


def evaluate(
    logs: Logs, n: int, target: str, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """Every estimator on the first n requests for one target, against the truth."""
    rows = np.arange(n * K)
    actions = logs.served[:n].ravel()
    rewards = logs.clicks[:n].ravel()
    groups = rows // K
    positions = rows % K
    logging, dist = _distributions(logs, n, args.epsilon, target)
    features = np.stack([groups, positions], axis=1).astype(np.float64)
    data = LoggedBandit.from_distributions(
        rewards, actions, logging, dist, positions=positions, groups=groups, features=features
    )
    logged = LoggedBandit(
        rewards=rewards,
        logging_propensity=logs.p0_logged[:n].ravel(),
        target_propensity=data.target_propensity,
        actions=actions,
        positions=positions,
        groups=groups,
    )
    spec = BootstrapSpec(n_resamples=args.resamples, seed=seed)
    model_spec = BootstrapSpec(n_resamples=args.model_resamples, seed=seed)
    model = SlotRewardModel(logs.pop[:n], logs.score[:n])
    estimates: dict[str, Estimate] = {
        "PB-IPS": position_based_ips(data, bootstrap=spec),
        "PB-IPS logged p0": position_based_ips(logged, bootstrap=spec),
        "clipped IPS": clipped_ips(data, args.cap, bootstrap=spec),
        "SNIPS": snips(data, bootstrap=spec),
        "DM": direct_method(data, model=model, bootstrap=model_spec, seed=seed),
        "DR": doubly_robust(data, model=model, bootstrap=spec, seed=seed),
    }
    # With every position filled in every request, the position-based value is plain IPS.
    plain = ips(data, BootstrapSpec(n_resamples=0)).value
    assert abs(plain - estimates["PB-IPS"].value) < 1e-12
    truth = float(logs.truth[target][:n].mean()) / K
    unsupported = np.where(logging <= 0, dist, 0.0)
    out: dict[str, Any] = {
        "target": target,
        "requests": n,
        "truth": truth,
        "support_deficit": float(unsupported.sum(axis=1).mean()),
        "deficit_moved_ranked": float(unsupported[:, :K].sum(axis=1).mean()),
        "deficit_outside_candidates": float(unsupported[:, N_CAND:].sum(axis=1).mean()),
        "estimates": {},
    }
    for name, est in estimates.items():
        out["estimates"][name] = {
            "value": est.value,
            "ci": [est.ci_low, est.ci_high],
            "rel_error": est.value / truth - 1.0,
            "covers": bool(est.ci_low <= truth <= est.ci_high),
            "ess_share": est.diagnostics.ess_share,
            "weight_mean": est.diagnostics.weight_mean,
            "weight_max": est.diagnostics.weight_max,
            "support_deficit": est.diagnostics.support_deficit,
            "warnings": list(est.warnings),
        }
    return out


# --------------------------------------------------------------------------- reporting


def _short(warnings: list[str]) -> str:
    keys = (
        ("effective sample size", "ESS"),
        ("mean importance weight", "mean w"),
        ("one row carries", "max w share"),
        ("never takes", "support"),
        ("nonzero rewards", "few clicks"),
        ("weight cap", "clipping"),
    )
    tags = [tag for key, tag in keys if any(key in w for w in warnings)]
    return ", ".join(tags) if tags else "none"


def print_seed(console: Console, seed: int, logs: Logs, results: list[dict[str, Any]]) -> None:
    table = Table(title=f"seed {seed}: per-slot CTR, estimate vs truth", show_lines=False)
    for col in (
        "target",
        "requests",
        "truth",
        "estimator",
        "estimate [95% CI]",
        "rel. err",
        "covers",
        "ESS share",
        "deficit",
        "warnings",
    ):
        table.add_column(col, justify="right" if col in ("rel. err", "ESS share") else "left")
    for res in results:
        first = True
        for name in ESTIMATORS:
            e = res["estimates"][name]
            table.add_row(
                res["target"] if first else "",
                f"{res['requests']:,}" if first else "",
                f"{res['truth']:.4f}" if first else "",
                name,
                f"{e['value']:.4f} [{e['ci'][0]:.4f}, {e['ci'][1]:.4f}]",
                f"{e['rel_error']:+.1%}",
                "yes" if e["covers"] else "NO",
                f"{e['ess_share']:.1%}",
                f"{e['support_deficit']:.1%}" if e["support_deficit"] is not None else "-",
                _short(e["warnings"]),
            )
            first = False
        table.add_section()
    console.print(table)


def print_support(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title=f"support of each target ({results[0]['requests']:,} requests)")
    for col in (
        "target",
        "deficit",
        "ranked item moved",
        "outside candidates",
        "support warning",
        "mean w",
        "ESS share",
        "all warnings",
    ):
        table.add_column(col)
    for res in results:
        e = res["estimates"]["PB-IPS"]
        table.add_row(
            res["target"],
            f"{res['support_deficit']:.1%}",
            f"{res['deficit_moved_ranked']:.1%}",
            f"{res['deficit_outside_candidates']:.1%}",
            "yes" if any("never takes" in w for w in e["warnings"]) else "no",
            f"{e['weight_mean']:.3f}",
            f"{e['ess_share']:.1%}",
            _short(e["warnings"]),
        )
    console.print(table)


def summarise(all_results: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for group, targets in (("supported", TARGETS[:3]), ("support missing", TARGETS[3:])):
        for n in sizes:
            for name in ESTIMATORS:
                cells = [
                    r["estimates"][name]
                    for r in all_results
                    if r["target"] in targets and r["requests"] == n
                ]
                if not cells:
                    continue
                rows.append(
                    {
                        "targets": group,
                        "requests": n,
                        "estimator": name,
                        "cases": len(cells),
                        "mean_abs_rel_error": float(np.mean([abs(c["rel_error"]) for c in cells])),
                        "mean_rel_error": float(np.mean([c["rel_error"] for c in cells])),
                        "coverage": float(np.mean([c["covers"] for c in cells])),
                        "warned": float(np.mean([bool(c["warnings"]) for c in cells])),
                    }
                )
    return rows


def print_summary(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="over seeds and targets: mean |rel. error|, mean rel. error, CI coverage")
    for col in (
        "targets",
        "requests",
        "estimator",
        "cases",
        "mean |rel err|",
        "mean rel err",
        "coverage",
        "warned",
    ):
        table.add_column(col)
    last = None
    for row in rows:
        key = (row["targets"], row["requests"])
        if last is not None and key != last:
            table.add_section()
        table.add_row(
            row["targets"] if key != last else "",
            f"{row['requests']:,}" if key != last else "",
            row["estimator"],
            str(row["cases"]),
            f"{row['mean_abs_rel_error']:.1%}",
            f"{row['mean_rel_error']:+.1%}",
            f"{row['coverage']:.0%}",
            f"{row['warned']:.0%}",
        )
        last = key
    console.print(table)


def print_targets(console: Console, results: list[dict[str, Any]], sizes: list[int]) -> None:
    seeds = len({r["seed"] for r in results})
    table = Table(
        title=f"per target over {seeds} seed(s): mean |rel. error|, mean rel. error, covered"
    )
    table.add_column("target")
    table.add_column("estimator")
    for n in sizes:
        table.add_column(f"{n:,} requests")
    for target in TARGETS:
        for name in ESTIMATORS:
            cells = []
            for n in sizes:
                c = [
                    r["estimates"][name]
                    for r in results
                    if r["target"] == target and r["requests"] == n
                ]
                errors = [x["rel_error"] for x in c]
                covered = sum(x["covers"] for x in c)
                cells.append(
                    f"{np.mean(np.abs(errors)):.1%}  {np.mean(errors):+.1%}  {covered}/{len(c)}"
                )
            table.add_row(target if name == ESTIMATORS[0] else "", name, *cells)
        table.add_section()
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1k and 5k requests")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=11)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--epsilon", type=float, default=0.2)
    parser.add_argument("--noise", type=float, default=0.2, help="sd of the logger's score noise")
    parser.add_argument("--cap", type=float, default=20.0, help="weight cap of clipped IPS")
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--model-resamples", type=int, default=50, help="DM refit resamples")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.sizes = 1, "1000,5000"
        args.resamples, args.model_resamples = 300, 40
    sizes = sorted(int(s) for s in args.sizes.split(","))
    console = Console(width=200)
    started = time.perf_counter()
    all_results: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    with threadpool_limits(limits=1):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            t0 = time.perf_counter()
            logs = simulate(seed, sizes[-1], args.epsilon, args.noise)
            t_sim = time.perf_counter() - t0
            pool_at = logs.served >= K
            # Logged vs marginal propensity of explored items: E[marginal / logged] at
            # position j is E[(POOL - explorations before j) / POOL] = 1 - j * eps / POOL.
            ratio = np.where(pool_at, (args.epsilon / POOL) / logs.p0_logged, np.nan)
            ratio_by_position = np.nanmean(ratio, axis=0)
            check = {
                "seed": seed,
                "simulate_seconds": t_sim,
                "logged_ctr": float(logs.clicks.mean()),
                "logger_truth_ctr": float(logs.logger_truth.mean()) / K,
                "pool_share_by_position": pool_at.mean(axis=0).tolist(),
                "pool_share_expected": args.epsilon,
                "marginal_over_logged_p0_by_position": ratio_by_position.tolist(),
                "marginal_over_logged_p0_expected": [1 - j * args.epsilon / POOL for j in range(K)],
                "logged_p0_expected_rel_bias_eps_target": float(
                    logs.logged_p0_shortfall.mean() / logs.truth[TARGETS[1]].mean()
                ),
            }
            checks.append(check)
            console.print(
                f"seed {seed}: simulated {sizes[-1]:,} requests in {t_sim:.0f} s; logged CTR "
                f"{check['logged_ctr']:.4f} vs logger truth {check['logger_truth_ctr']:.4f}; "
                f"share of pool items by position {np.round(pool_at.mean(axis=0), 3).tolist()} "
                f"(marginal {args.epsilon:g}); explored items' marginal / logged propensity by "
                f"position {np.round(ratio_by_position, 3).tolist()} (expected 1 - j*eps/pool: "
                f"{[round(1 - j * args.epsilon / POOL, 3) for j in range(K)]}); so PB-IPS on the "
                f"logged propensities is biased by "
                f"{check['logged_p0_expected_rel_bias_eps_target']:+.2%} (exact expectation) for "
                f"{TARGETS[1]}"
            )
            results = []
            for n in sizes:
                for target in TARGETS:
                    res = evaluate(logs, n, target, args, seed)
                    res["seed"] = seed
                    results.append(res)
            print_seed(console, seed, logs, results)
            print_support(console, [r for r in results if r["requests"] == sizes[-1]])
            all_results.extend(results)
    summary = summarise(all_results, sizes)
    print_targets(console, all_results, sizes)
    print_summary(console, summary)
    elapsed = time.perf_counter() - started
    console.print(f"total {elapsed:.0f} s")
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": settings,
                "seconds": elapsed,
                "checks": checks,
                "results": all_results,
                "summary": summary,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
