"""Side by side in the simulator: the full pipeline against simpler ones, trained nightly.

The demo's world (1,500 items, 400 users to start, 7 days) runs in-process against the
service, with `recloop train` every simulated night. Users are split by a hash of their id
between the arms; each arm is a surface of the same service:

- ``learned``: the default home surface (every source, the learned ranker with
  P(click) + 2 P(satisfied), the creator cap);
- ``click-only``: the same, ranked by P(click) alone;
- ``source-scores``: the same sources, ranked by their normalised scores (retrieval only);
- ``popular``: popularity alone.

Printed per arm: CTR (observed, and the world's expected CTR of the lists served), satisfied
clicks per impression, hides per impression, coverage, diversity and latency. Several seeds
give the spread.

    .venv/bin/python benchmarks/simulated_ab.py [--seeds 7,8] [--days 7] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from recloop.config import ComponentConfig, Settings, default_surfaces
from recloop.simulate.demo import DemoConfig, run_demo
from recloop.simulate.world import WorldConfig

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
    surfaces = {
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
        "learned": "home",
        "click-only": "home-click-only",
        "source-scores": "home-source-scores",
        "popular": "popular-only",
    }
    return variants, surfaces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="7", help="comma-separated world seeds")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2 days, a smaller world")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "simulated_ab.json"
    )
    args = parser.parse_args()
    variants, surfaces = arms()
    runs: dict[int, dict[str, dict[str, float]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        world = (
            WorldConfig(seed=seed, initial_items=500, initial_users=200)
            if args.quick
            else WorldConfig(seed=seed)
        )
        config = DemoConfig(
            world=world,
            days=2 if args.quick else args.days,
            transport="inprocess",
            variants=variants,
            surfaces=surfaces,  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_demo(config, Settings(data_dir=Path(tmp)), Console(file=io.StringIO()))
        runs[seed] = {v: outcome.result.totals(v) for v in variants}
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
        _table(f"seed {seed}", runs[seed])
    if len(runs) > 1:
        keys = ["requests", *(key for key, _ in METRICS)]
        mean = {
            v: {key: statistics.fmean(run[v][key] for run in runs.values()) for key in keys}
            for v in variants
        }
        _table(f"mean of {len(runs)} seeds", mean)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(
        json.dumps({"days": args.days, "variants": variants, "runs": runs}, indent=2)
    )
    print(f"written to {args.out}")


def _table(title: str, totals: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'arm':15s} {'requests':>9s} " + " ".join(f"{label:>13s}" for _, label in METRICS))
    for arm, t in totals.items():
        print(
            f"{arm:15s} {t['requests']:9,.0f} " + " ".join(f"{t[key]:13.4f}" for key, _ in METRICS)
        )


if __name__ == "__main__":
    main()
