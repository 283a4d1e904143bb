"""Cost of the explore stage per request: LinUCB as serving runs it, against Thompson sampling.

One synthetic request as the pipeline hands it to the policy: a feature matrix of
``--candidates`` retrieved items (6 source-score columns, then ``FEATURE_NAMES``) and the
reranked slate of ``3 * k`` items (the pipeline gathers ``k * OVERFETCH`` before the rules).
Each policy explores it for ``--requests`` request ids, timed around the call the pipeline
makes (``explore_with_features`` for LinUCB, ``explore`` for the others), so LinUCB's time
includes looking up its rows in the matrix and computing the context. Median and p99 in
microseconds.

    .venv/bin/python benchmarks/linucb_explore.py [--requests 3000] [--k 10] [--draws 200]

It writes ``benchmarks/results/linucb_explore.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.explore.linucb import LinUCBParams, TrainedLinUCB
from recloop.explore.policies import EpsilonGreedy, EpsilonGreedyConfig, NoExplorationPolicy
from recloop.explore.thompson import InMemoryItemStats, ThompsonConfig, ThompsonSampling
from recloop.features.bandit_context import INPUT_FEATURES, ContextEvidence, context
from recloop.features.candidates import FeatureMatrix
from recloop.features.definitions import FEATURE_NAMES

OUT = Path(__file__).parent / "results" / "linucb_explore.json"
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def request(candidates: int, k: int, seed: int) -> tuple[FeatureMatrix, Slate]:
    """The ranked matrix of ``candidates`` items and the reranked slate of ``3 * k``."""
    rng = np.random.default_rng(seed)
    ids = [f"item-{n:06d}" for n in rng.choice(1_000_000, candidates, replace=False)]
    names = tuple(f"source_score:s{m}" for m in range(6)) + FEATURE_NAMES
    values = rng.random((candidates, len(names)))
    col = {name: i for i, name in enumerate(names)}
    values[:, col["item_ctr_30d"]] = rng.uniform(0.002, 0.2, candidates)
    values[:, col["item_engagement_7d"]] = rng.integers(0, 5000, candidates)
    values[:, col["item_age_hours"]] = rng.uniform(0, 5000, candidates)
    matrix = FeatureMatrix(tuple(ids), names, values)
    order = rng.permutation(candidates)[: 3 * k]
    slate = Slate(
        tuple(
            ScoredItem(ids[i], float(1.0 - n / 100), "s0", "because") for n, i in enumerate(order)
        )
    )
    return matrix, slate


def evidence(rows: int, seed: int) -> ContextEvidence:
    """Evidence of ``rows`` impressions with clicks that follow the category affinity."""
    rng = np.random.default_rng(seed)
    inputs = rng.random((rows, len(INPUT_FEATURES)))
    inputs[:, 0] *= 0.1
    inputs[:, 1] *= 1000
    inputs[:, 2] *= 2000
    x = context(inputs, positions=rng.integers(0, 20, rows))
    clicked = rng.random(rows) < 0.02 + 0.2 * x[:, 4]
    return ContextEvidence.fit(x, clicked.astype(float))


def time_policy(call: Callable[[RequestContext], Slate], requests: int) -> dict[str, float]:
    """Median and p99 (µs) of ``call`` over ``requests`` request ids, after a warm-up."""
    for m in range(50):
        call(RequestContext("app", f"warm{m}", "home", "u", NOW))
    timings = np.zeros(requests)
    for m in range(requests):
        ctx = RequestContext("app", f"r{m}", "home", "u", NOW)
        started = time.perf_counter_ns()
        call(ctx)
        timings[m] = (time.perf_counter_ns() - started) / 1_000
    return {
        "median_us": float(np.median(timings)),
        "p99_us": float(np.percentile(timings, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--candidates", type=int, default=400)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--pool", type=int, default=50)
    parser.add_argument("--draws", type=int, default=200, help="propensity_draws")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    matrix, slate = request(args.candidates, args.k, args.seed)
    k = args.k
    fitted = evidence(50_000, args.seed)
    params = LinUCBParams(pool=args.pool, propensity_draws=args.draws)
    trained = TrainedLinUCB(params, lambda app_id: fitted)
    untrained = TrainedLinUCB(params, lambda app_id: None)
    stats = InMemoryItemStats()
    rng = np.random.default_rng(args.seed)
    shown = rng.integers(0, 500, len(matrix.item_ids)).astype(float)
    stats.update("app", matrix.item_ids, np.floor(shown * 0.05).tolist(), shown.tolist())
    thompson = ThompsonSampling(
        ThompsonConfig(pool=args.pool, propensity_draws=args.draws, beta=20.0), stats
    )
    tail3 = TrainedLinUCB(
        LinUCBParams(pool=args.pool, propensity_draws=args.draws, explore_slots=3),
        lambda app_id: fitted,
    )
    cases: dict[str, Callable[[RequestContext], Slate]] = {
        "none": lambda ctx: NoExplorationPolicy().explore(slate, ctx, k),
        "epsilon-greedy 0.1": lambda ctx: EpsilonGreedy(EpsilonGreedyConfig()).explore(
            slate, ctx, k
        ),
        "thompson (all k)": lambda ctx: thompson.explore(slate, ctx, k),
        "linucb, no evidence yet (all k)": lambda ctx: untrained.explore_with_features(
            slate, ctx, k, matrix
        ),
        "linucb, trained (all k)": lambda ctx: trained.explore_with_features(slate, ctx, k, matrix),
        "linucb, trained (explore_slots 3)": lambda ctx: tail3.explore_with_features(
            slate, ctx, k, matrix
        ),
    }
    results: dict[str, Any] = {}
    print(
        f"{args.candidates} candidates in the matrix, slate of {len(slate.items)}, k={k}, "
        f"pool {args.pool}, {args.draws} propensity draws, {args.requests} requests"
    )
    print(f"{'policy':<36} {'median µs':>10} {'p99 µs':>10}")
    for name, call in cases.items():
        results[name] = time_policy(call, args.requests)
        print(f"{name:<36} {results[name]['median_us']:>10.0f} {results[name]['p99_us']:>10.0f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {"date": datetime.now(UTC).date().isoformat(), "args": vars(args), "results": results},
            indent=2,
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
