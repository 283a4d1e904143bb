"""Side by side in the simulator: the full pipeline against simpler ones, trained nightly.

The demo's world (1,500 items, 400 users to start, 7 days) runs in-process against the
service, with `recloop train` every simulated night. Two designs:

- ``paired`` (the default): the world runs once per arm with every user on that arm. The
  world draws its structure (items, users, drift, sessions) and each session's responses
  from separate seeded streams, so every arm faces the same users, items and sessions:
  differences are the recommenders', not who happened to land in which arm. The gain over
  the ``--baseline`` arm gets a 95% interval from a paired bootstrap over users.
- ``split``: one run, users split by a hash of their id between the arms (an A/B test).

Each arm is a surface:

- ``learned``: the default home surface (every source, the learned ranker with
  P(click) + 0.5 P(satisfied), the creator cap, epsilon-greedy exploration 0.1);
- ``click-only``: the same, ranked by P(click) alone;
- ``source-scores``: the same sources, ranked by their normalised scores (retrieval only);
- ``popular``: popularity alone;
- ``no-explore``: the default home without its epsilon-greedy exploration;
- ``satisfaction-W``: the default home with P(click) + W P(satisfied), W in
  ``SATISFACTION_WEIGHTS`` (for tuning the weight; not in the default ``--arms``).

Printed per arm: CTR (observed, and the world's expected CTR of the lists served), satisfied
clicks per impression, hides per impression, coverage, diversity and latency. Several seeds
give the spread.

    .venv/bin/python benchmarks/simulated_ab.py [--seeds 7,8] [--arms learned,popular]
        [--design paired|split] [--days 7] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from recloop.config import ComponentConfig, Settings, default_surfaces
from recloop.demo.run import DemoConfig, run_demo
from recloop.simulate.driver import SimulationResult
from recloop.simulate.world import WorldConfig

BOOTSTRAP = 2000
#: Other weights of the satisfaction head (with click 1) that arms can try.
SATISFACTION_WEIGHTS = (0.25, 0.5, 1.0)
# Per-user sums behind the paired gains: (metric, numerator, denominator).
PAIRED = (
    ("true_ctr", "expected_clicks", "impressions"),
    ("true_satisfaction", "expected_satisfied", "impressions"),
    ("ctr", "clicks", "impressions"),
    ("hide_rate", "hides", "impressions"),
)

METRICS = (
    ("ctr", "CTR"),
    ("true_ctr", "true CTR"),
    ("satisfaction", "satisfied/imp"),
    ("true_satisfaction", "true satisf."),
    ("hide_rate", "hides/imp"),
    ("coverage", "coverage"),
    ("diversity", "diversity"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
)


def arms() -> tuple[dict[str, str], dict[str, object]]:
    """Variant -> surface, and the surfaces the defaults lack."""
    home = default_surfaces()["home"]
    fallback = home.ranker.params.get("fallback_weights", {})
    tuned = {
        f"home-satisfaction-{w:g}": home.model_copy(
            update={
                "ranker": ComponentConfig(
                    name="learned",
                    params={
                        "weights": {"click": 1.0, "satisfaction": w},
                        "fallback_weights": fallback,
                    },
                )
            }
        )
        for w in SATISFACTION_WEIGHTS
    }
    surfaces = {
        **tuned,
        "home-no-explore": home.model_copy(update={"exploration": ComponentConfig(name="none")}),
        "home-click-only": home.model_copy(
            update={
                "ranker": ComponentConfig(
                    name="learned",
                    params={"weights": {"click": 1.0}, "fallback_weights": fallback},
                )
            }
        ),
        "home-source-scores": home.model_copy(
            update={
                "ranker": ComponentConfig(name="source-scores", params={"weights": fallback}),
                "online_features": False,
            }
        ),
    }
    variants = {
        **{f"satisfaction-{w:g}": f"home-satisfaction-{w:g}" for w in SATISFACTION_WEIGHTS},
        "learned": "home",
        "no-explore": "home-no-explore",
        "click-only": "home-click-only",
        "source-scores": "home-source-scores",
        "popular": "popular-only",
    }
    return variants, surfaces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="7", help="comma-separated world seeds")
    parser.add_argument("--arms", default="learned,click-only,source-scores,popular")
    parser.add_argument("--baseline", default="popular", help="the arm gains are measured against")
    parser.add_argument("--design", choices=("paired", "split"), default="paired")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2 days, a smaller world")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "simulated_ab.json"
    )
    args = parser.parse_args()
    all_variants, surfaces = arms()
    variants = {arm: all_variants[arm] for arm in args.arms.split(",")}
    runs: dict[int, dict[str, dict[str, float]]] = {}
    gains: dict[int, dict[str, dict[str, list[float]]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        world = (
            WorldConfig(seed=seed, initial_items=500, initial_users=200)
            if args.quick
            else WorldConfig(seed=seed)
        )
        days = 2 if args.quick else args.days
        started = time.perf_counter()
        if args.design == "split":
            result = _simulate(world, days, variants, surfaces)
            results = dict.fromkeys(variants, result)
        else:
            results = {}
            for arm, surface in variants.items():
                results[arm] = _simulate(world, days, {arm: surface}, surfaces)
                print(f"seed {seed} {arm}: {time.perf_counter() - started:.0f} s", flush=True)
        runs[seed] = {v: results[v].totals(v) for v in variants}
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
        _table(f"seed {seed} ({args.design})", runs[seed])
        if args.design == "paired" and args.baseline in variants:
            gains[seed] = _paired_gains(results, args.baseline, seed)
            _gain_table(f"seed {seed}: gain over {args.baseline}, paired by user", gains[seed])
    if len(runs) > 1:
        keys = ["requests", *(key for key, _ in METRICS)]
        mean = {
            v: {key: statistics.fmean(run[v][key] for run in runs.values()) for key in keys}
            for v in variants
        }
        _table(f"mean of {len(runs)} seeds", mean)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "design": args.design,
                "days": args.days,
                "variants": variants,
                "runs": runs,
                "gains": gains,
            },
            indent=2,
        )
    )
    print(f"written to {args.out}")


def _simulate(
    world: WorldConfig, days: int, variants: dict[str, str], surfaces: dict[str, Any]
) -> SimulationResult:
    config = DemoConfig(
        world=world, days=days, transport="inprocess", variants=variants, surfaces=surfaces
    )
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_demo(config, Settings(data_dir=Path(tmp)), Console(file=io.StringIO()))
    return outcome.result


def _paired_gains(
    results: dict[str, SimulationResult], baseline: str, seed: int
) -> dict[str, dict[str, list[float]]]:
    """Each arm's gain over the baseline, per metric: [gain, low, high] (95%, by user)."""
    base = results[baseline].per_user[baseline]
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list[float]]] = {}
    for arm, result in results.items():
        if arm == baseline:
            continue
        mine = result.per_user[arm]
        users = sorted(set(mine) & set(base))
        draws = rng.integers(0, len(users), size=(BOOTSTRAP, len(users)))
        out[arm] = {}
        for metric, num, den in PAIRED:
            a = np.array([[mine[u][num], mine[u][den]] for u in users])
            b = np.array([[base[u][num], base[u][den]] for u in users])
            gain = a[:, 0].sum() / a[:, 1].sum() - b[:, 0].sum() / b[:, 1].sum()
            boot = a[draws, 0].sum(1) / a[draws, 1].sum(1) - b[draws, 0].sum(1) / b[draws, 1].sum(1)
            low, high = np.percentile(boot, [2.5, 97.5])
            out[arm][metric] = [float(gain), float(low), float(high)]
        out[arm]["users"] = [float(len(users))] * 3
    return out


def _gain_table(title: str, gains: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{title}")
    print(f"{'arm':15s} " + " ".join(f"{metric:>30s}" for metric, _, _ in PAIRED))
    for arm, by_metric in gains.items():
        cells = (
            f"{g:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            for g, lo, hi in (by_metric[metric] for metric, _, _ in PAIRED)
        )
        print(f"{arm:15s} " + " ".join(f"{c:>30s}" for c in cells))


def _table(title: str, totals: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'arm':15s} {'requests':>9s} " + " ".join(f"{label:>13s}" for _, label in METRICS))
    for arm, t in totals.items():
        print(
            f"{arm:15s} {t['requests']:9,.0f} " + " ".join(f"{t[key]:13.4f}" for key, _ in METRICS)
        )


if __name__ == "__main__":
    main()
