"""Variants of the ``home`` surface side by side on worlds of the family (tuning seeds).

Each variant runs the same world in process with every user on it and ``recloop train``
each night, so all variants face the same users, items and sessions (paired); the figures
are the world's true CTR and satisfaction per impression after the first night. This is
how changes to ``home``'s defaults are chosen: on tuning seeds (below 10,000), never on the
held-out worlds ``world_family.py`` reports.

Variants are names; each applies one change to today's default ``home``:

- ``home``: the default;
- ``no-click-rate``: without the ``click-rate`` source;
- ``no-recently-shown``: without the ``recently-shown`` rule;
- ``click-rate-weight:W``: the blend weighs ``click-rate`` by W;
- ``explore:EPSILON:POOL``: epsilon-greedy exploration with this epsilon and pool;
- ``thompson:POOL``: Thompson sampling over the ranker's first POOL items, prior Beta(1, 20);
- ``only:A+B``: only these sources (quotas as in ``home``), the rest of ``home`` unchanged;
- ``blend``: the sources' blended scores (``source-scores``) instead of the learned ranker;
- ``no-explore``: no exploration;
- ``catcap:N``: at most N items of a category in every 10 (a ``cap`` rule after the others);
- ``mmr:LAMBDA``: maximal marginal relevance over the first 50, after the other rules;
- ``gate:MEASURE``: training's ranker gate judges on MEASURE (``train.ranker.gate_measure``).

Changes join with ``&``: ``only:click-rate&blend`` ranks the click-rate source's candidates
by its own score.

    .venv/bin/python benchmarks/home_variants.py --seeds 1,2,3 --days 4 \\
        --variants home,no-click-rate,no-recently-shown
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from recloop.config import Settings, TrainSettings
from recloop.config.surfaces import ComponentConfig, SurfaceConfig, default_surfaces
from recloop.demo.run import DemoConfig, run_demo
from recloop.simulate.family import WorldFamily, is_held_out


def variant_surface(name: str) -> SurfaceConfig:
    """Today's default ``home`` with the changes ``name`` names (joined by ``&``)."""
    home = default_surfaces()["home"]
    for change in name.split("&"):
        home = _changed(home, change)
    return home


def _changed(home: SurfaceConfig, name: str) -> SurfaceConfig:
    kind, _, arg = name.partition(":")
    if kind == "home":
        return home
    if kind == "no-click-rate":
        return home.model_copy(
            update={"sources": [s for s in home.sources if s.name != "click-rate"]}
        )
    if kind == "no-recently-shown":
        return home.model_copy(
            update={"rules": [r for r in home.rules if r.name != "recently-shown"]}
        )
    if kind == "click-rate-weight":
        params = dict(home.ranker.params)
        params["fallback_weights"] = {
            **params.get("fallback_weights", {}),
            "click-rate": float(arg),
        }
        return home.model_copy(update={"ranker": home.ranker.model_copy(update={"params": params})})
    if kind == "explore":
        epsilon, pool = arg.split(":")
        policy = ComponentConfig(
            name="epsilon-greedy", params={"epsilon": float(epsilon), "pool": int(pool)}
        )
        return home.model_copy(update={"exploration": policy})
    if kind == "thompson":
        policy = ComponentConfig(
            name="thompson",
            params={"alpha": 1.0, "beta": 20.0, "pool": int(arg), "propensity_draws": 50},
        )
        return home.model_copy(update={"exploration": policy})
    if kind == "only":
        keep = set(arg.split("+"))
        return home.model_copy(update={"sources": [s for s in home.sources if s.name in keep]})
    if kind == "blend":
        return home.model_copy(update={"ranker": ComponentConfig(name="source-scores")})
    if kind == "gate":
        return home  # a training setting: see ``train_settings``
    if kind == "catcap":
        cap = ComponentConfig(name="cap", params={"attribute": "category", "max_items": int(arg)})
        return home.model_copy(update={"rules": [*home.rules, cap]})
    if kind == "mmr":
        mmr = ComponentConfig(name="mmr", params={"lambda": float(arg)})
        return home.model_copy(update={"rules": [*home.rules, mmr]})
    if kind == "no-explore":
        return home.model_copy(update={"exploration": ComponentConfig(name="none")})
    raise SystemExit(f"unknown variant {name!r}; see the module docstring")


def train_settings(name: str) -> TrainSettings:
    """The training settings of variant ``name``: the defaults, or the gate's measure."""
    train = TrainSettings()
    for change in name.split("&"):
        kind, _, arg = change.partition(":")
        if kind == "gate":
            ranker = train.ranker.model_copy(update={"gate_measure": arg})
            train = train.model_copy(update={"ranker": ranker})
    return train


def run(seed: int, days: int, name: str) -> dict[str, Any]:
    """One world, one variant: true CTR and satisfaction after the first night."""
    spec = WorldFamily(days=days).draw(seed)
    surface = "home-variant"
    started = time.perf_counter()
    config = DemoConfig(
        world=spec.world,
        behaviour=spec.behaviour,
        days=days,
        transport="inprocess",
        variants={name: surface},
        surfaces={surface: variant_surface(name)},
        clients=spec.clients,
        service_clock=spec.service_clock,
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), train=train_settings(name))
        outcome = run_demo(config, settings, Console(file=io.StringIO()))
    later = outcome.result.per_day[name][1:] or outcome.result.per_day[name]
    impressions = sum(d["impressions"] for d in later) or 1
    return {
        "seed": seed,
        "variant": name,
        **{
            key: sum(d[key] * d["impressions"] for d in later) / impressions
            for key in ("true_ctr", "true_satisfaction", "oracle_true_ctr")
        },
        "serves": [(t.ranker.report.get("gate") or {}).get("serve") for t in outcome.trainings],
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3", help="tuning seeds, comma-separated")
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--variants", default="home,no-click-rate,no-recently-shown")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if any(is_held_out(s) for s in seeds):
        raise SystemExit("held-out seeds are for world_family.py's report, not for choosing")
    rows = []
    for seed in seeds:
        print(f"world {seed}: {WorldFamily(days=args.days).draw(seed).describe()}", flush=True)
        for name in args.variants.split(","):
            row = run(seed, args.days, name)
            rows.append(row)
            print(
                f"  {name:28s} true CTR {row['true_ctr']:.4f}  true sat "
                f"{row['true_satisfaction']:.4f}  oracle {row['oracle_true_ctr']:.4f}  "
                f"gate {row['serves']}  {row['wall_s']:.0f} s",
                flush=True,
            )
    print(json.dumps({"benchmark": "home_variants", "days": args.days, "rows": rows}))


if __name__ == "__main__":
    main()
