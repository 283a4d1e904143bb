"""Off-policy evaluation against a real on-policy answer: the Open Bandit Dataset sample.

ZOZOTOWN ran two policies side by side on the same three-slot fashion carousel over the same
week: a uniform random policy and Bernoulli Thompson sampling (BTS). From the random policy's
logs we estimate the CTR the BTS policy would get, and compare with the CTR the BTS policy
actually got in its own logs (the on-policy value), per campaign (all, men, women).

Where the target probabilities come from. OPE needs pe(item | position) of BTS for every row
of the random logs. BTS in OBD is context-free (it ignores the user), so its policy at a given
time is one distribution over items per position; it changes as the posterior is updated.
``--target frequency`` (the default) takes, per time block, the share of the BTS rows at
position k that show item i: each BTS row at position k is one draw from BTS's distribution
at that moment, so the share is an unbiased estimate of the block's average distribution,
and it sums to 1 over items. ``--target propensity`` instead averages the BTS logs'
propensity_score per (block, item, position) and normalises over items: the propensity is
exact for the row's moment, but an item's rows are logged mostly when its probability is high
(size-biased), so before normalising the averages sum to 1.7-3.7 per position over the week
in this sample; it is shown as a contrast and is biased unless the blocks are short enough for
the policy to be constant in each, and 10,000 rows are too few for that (in hourly blocks the
items BTS showed carry a median of only 63-78% of the mass). ``--blocks`` splits the week
into equal time blocks (1: the week's average policy, which the on-policy CTR averages over).

Estimators (recloop.evaluation.ope): the context is the position, the action the item, the
logging propensity the random policy's 1/n_items. IPS, clipped IPS (``--cap``), SNIPS, DM
and DR (reward model: ridge linear-probability model on one-hot item + one-hot position,
5-fold cross-fitted), position-based IPS (per-position means averaged: the estimate per slot
of a full slate) and, as a contrast, position-blind IPS (each item weighted by its share over
all positions, as if position did not matter).

Intervals. Each estimate gets the module's 95% percentile bootstrap over the random logs
(rows clustered by timestamp), holding the target fixed. The on-policy CTR gets a bootstrap
over the BTS rows. DM's bootstrap refits the reward model on every resample; DR's holds the
out-of-fold predictions fixed. The relative error (estimate - on-policy) / on-policy gets a
joint bootstrap that resamples both logs, re-estimating the target from the resampled BTS
rows and refitting the reward model, so it includes every source of noise.

    .venv/bin/python benchmarks/ope_open_bandit.py [PATH] [--campaigns all,men,women]
        [--target frequency|propensity] [--blocks 1] [--cap 10] [--resamples 1000]
        [--joint-resamples 200] [--seed 0]

Writes benchmarks/results/ope_open_bandit.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from recloop.evaluation.ope import (
    BootstrapSpec,
    Estimate,
    LoggedBandit,
    bootstrap_interval,
    clipped_ips,
    direct_method,
    doubly_robust,
    ips,
    position_based_ips,
    snips,
)
from recloop.evaluation.ope_models import RidgeRewardModel

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = ROOT / ".." / "shared" / "datasets" / "open-bandit-sample"
RESULTS = ROOT / "benchmarks" / "results" / "ope_open_bandit.json"
POSITIONS = 3
FOLDS = 5
COLUMNS = ["timestamp", "item_id", "position", "click", "propensity_score"]
ESTIMATORS = ("IPS", "clipped IPS", "SNIPS", "DM", "DR", "PB-IPS", "IPS pos-blind")


@dataclass(frozen=True)
class Log:
    time: np.ndarray  # int64 ns
    item: np.ndarray
    position: np.ndarray  # 0-based
    click: np.ndarray
    propensity: np.ndarray


def read_log(path: Path) -> Log:
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=COLUMNS))
    return Log(
        time=np.asarray(table.column("timestamp").cast("int64")),
        item=np.asarray(table.column("item_id")).astype(np.int64),
        position=np.asarray(table.column("position")).astype(np.int64) - 1,
        click=np.asarray(table.column("click")).astype(np.float64),
        propensity=np.asarray(table.column("propensity_score")).astype(np.float64),
    )


def block_of(times: np.ndarray, start: int, end: int, blocks: int) -> np.ndarray:
    return np.minimum(((times - start) * blocks) // (end - start + 1), blocks - 1)


def target_table(
    bts: Log, rows: np.ndarray, block: np.ndarray, n_items: int, blocks: int, method: str
) -> np.ndarray:
    """pe[block, position, item] estimated from the BTS rows `rows` (indices, may repeat)."""
    cell = (block[rows] * POSITIONS + bts.position[rows]) * n_items + bts.item[rows]
    size = blocks * POSITIONS * n_items
    if method == "frequency":
        mass = np.bincount(cell, minlength=size).astype(np.float64)
    else:  # mean logged propensity per cell
        counts = np.bincount(cell, minlength=size)
        sums = np.bincount(cell, weights=bts.propensity[rows], minlength=size)
        mass = np.divide(sums, counts, out=np.zeros(size), where=counts > 0)
    mass = mass.reshape(blocks, POSITIONS, n_items)
    pooled = mass.sum(axis=0)
    pooled /= pooled.sum(axis=1, keepdims=True)
    totals = mass.sum(axis=2, keepdims=True)
    table = np.divide(mass, totals, out=np.zeros_like(mass), where=totals > 0)
    empty = totals[:, :, 0] == 0  # a (block, position) without BTS rows: the week's policy
    table[empty] = np.broadcast_to(pooled, table.shape)[empty]
    return table


def logged(random: Log, rows: np.ndarray, context_table: np.ndarray, **extra: Any) -> LoggedBandit:
    """The random rows `rows` as a LoggedBandit for the per-row target distributions."""
    n_items = context_table.shape[1]
    target = context_table[rows]
    item = random.item[rows]
    return LoggedBandit(
        rewards=random.click[rows],
        logging_propensity=random.propensity[rows],
        target_propensity=target[np.arange(len(rows)), item],
        actions=item,
        positions=random.position[rows],
        groups=random.time[rows],
        features=np.eye(POSITIONS)[random.position[rows]],
        target_distribution=target,
        logging_distribution=np.full((len(rows), n_items), 1.0 / n_items),
        **extra,
    )


def estimate_all(
    data: LoggedBandit, blind: LoggedBandit, cap: float, spec: BootstrapSpec, seed: int
) -> dict[str, Estimate]:
    model = RidgeRewardModel(alpha=1.0)
    return {
        "IPS": ips(data, spec),
        "clipped IPS": clipped_ips(data, cap, spec),
        "SNIPS": snips(data, spec),
        "DM": direct_method(data, model, folds=FOLDS, bootstrap=spec, seed=seed),
        "DR": doubly_robust(data, model, folds=FOLDS, bootstrap=spec, seed=seed),
        "PB-IPS": position_based_ips(data, bootstrap=spec),
        "IPS pos-blind": ips(blind, spec),
    }


def campaign(path: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    random = read_log(path / "random" / name / f"{name}.csv")
    bts = read_log(path / "bts" / name / f"{name}.csv")
    n_items = sum(1 for _ in (path / "random" / name / "item_context.csv").open()) - 1
    start = int(min(random.time.min(), bts.time.min()))
    end = int(max(random.time.max(), bts.time.max()))
    bts_block = block_of(bts.time, start, end, args.blocks)
    random_block = block_of(random.time, start, end, args.blocks)
    context = random_block * POSITIONS + random.position

    def contexts(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = table.reshape(-1, n_items)
        blind = table.mean(axis=1).repeat(POSITIONS, axis=0)  # each item's share over slots
        return flat, blind

    all_bts = np.arange(len(bts.click))
    all_random = np.arange(len(random.click))
    flat, blind_flat = contexts(
        target_table(bts, all_bts, bts_block, n_items, args.blocks, args.target)
    )
    data = logged(random, all_random, flat[context])
    blind = LoggedBandit(
        rewards=data.rewards,
        logging_propensity=data.logging_propensity,
        target_propensity=blind_flat[context][all_random, random.item],
        groups=random.time,
    )
    spec = BootstrapSpec(n_resamples=args.resamples, seed=args.seed)
    estimates = estimate_all(data, blind, args.cap, spec, args.seed)

    on_policy = float(bts.click.mean())
    bts_groups = np.unique(bts.time, return_inverse=True)[1].reshape(-1)
    on_low, on_high = bootstrap_interval(
        np.stack([bts.click, np.ones(len(bts.click))], axis=1),
        lambda t: t[:, 0] / t[:, 1],
        bts_groups,
        spec,
    )

    # Joint bootstrap of the relative error: both logs resampled, the target re-estimated.
    rng = np.random.default_rng(args.seed + 1)
    no_ci = BootstrapSpec(n_resamples=0)
    errors: dict[str, list[float]] = {k: [] for k in ESTIMATORS}
    for _ in range(args.joint_resamples):
        b_rows = rng.integers(0, len(bts.click), len(bts.click))
        r_rows = rng.integers(0, len(random.click), len(random.click))
        table = target_table(bts, b_rows, bts_block, n_items, args.blocks, args.target)
        flat_b, blind_b = contexts(table)
        data_b = logged(random, r_rows, flat_b[context])
        blind_data_b = LoggedBandit(
            rewards=data_b.rewards,
            logging_propensity=data_b.logging_propensity,
            target_propensity=blind_b[context][r_rows, random.item[r_rows]],
        )
        truth_b = float(bts.click[b_rows].mean())
        for key, est in estimate_all(data_b, blind_data_b, args.cap, no_ci, args.seed).items():
            errors[key].append((est.value - truth_b) / truth_b)

    rows = {}
    for key, est in estimates.items():
        d = est.diagnostics
        err_low, err_high = np.quantile(errors[key], [0.025, 0.975])
        rows[key] = {
            "value": est.value,
            "ci": [est.ci_low, est.ci_high],
            "relative_error": (est.value - on_policy) / on_policy,
            "relative_error_ci": [float(err_low), float(err_high)],
            "on_policy_in_ci": bool(est.ci_low <= on_policy <= est.ci_high),
            "ess_share": d.ess_share,
            "weight_mean": d.weight_mean,
            "weight_max": d.weight_max,
            "weight_quantiles": dict(d.weight_quantiles),
            "support_deficit": d.support_deficit,
            "rewarded_rows": d.rewarded_rows,
            "warnings": list(d.warnings),
            "extra": d.extra,
        }
    return {
        "campaign": name,
        "random_rows": len(random.click),
        "random_clicks": int(random.click.sum()),
        "random_ctr": float(random.click.mean()),
        "bts_rows": len(bts.click),
        "bts_clicks": int(bts.click.sum()),
        "on_policy_ctr": on_policy,
        "on_policy_ci": [on_low, on_high],
        "n_items": n_items,
        "estimators": rows,
    }


def print_campaign(console: Console, result: dict[str, Any]) -> None:
    on_low, on_high = result["on_policy_ci"]
    table = Table(
        title=(
            f"{result['campaign']}: BTS on-policy CTR {result['on_policy_ctr']:.4f} "
            f"[{on_low:.4f}, {on_high:.4f}] ({result['bts_clicks']} clicks); random logs "
            f"{result['random_rows']} rows, {result['random_clicks']} clicks, "
            f"CTR {result['random_ctr']:.4f}"
        )
    )
    for column in ("estimator", "estimate", "95% CI", "rel. error [95% CI]", "on-policy in CI"):
        table.add_column(column)
    for column in ("ESS share", "max w", "mean w", "warnings"):
        table.add_column(column)
    for key, row in result["estimators"].items():
        low, high = row["ci"]
        e_low, e_high = row["relative_error_ci"]
        table.add_row(
            key,
            f"{row['value']:.4f}",
            f"[{low:.4f}, {high:.4f}]",
            f"{row['relative_error']:+.0%} [{e_low:+.0%}, {e_high:+.0%}]",
            "yes" if row["on_policy_in_ci"] else "NO",
            f"{row['ess_share']:.1%}",
            f"{row['weight_max']:.1f}",
            f"{row['weight_mean']:.3f}",
            "; ".join(w.split(":")[0] for w in row["warnings"]) or "-",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--campaigns", default="all,men,women")
    parser.add_argument("--target", choices=("frequency", "propensity"), default="frequency")
    parser.add_argument("--blocks", type=int, default=1, help="equal time blocks in the week")
    parser.add_argument("--cap", type=float, default=10.0, help="weight cap of clipped IPS")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--joint-resamples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    path = args.path.resolve()
    console = Console(width=200)
    started = time.perf_counter()
    results = []
    # One BLAS thread: the reward model's small products are ~15x slower with threads
    # competing for 2 busy cores.
    with threadpool_limits(limits=1):
        for name in args.campaigns.split(","):
            result = campaign(path, name, args)
            print_campaign(console, result)
            results.append(result)
    elapsed = time.perf_counter() - started
    console.print(f"{elapsed:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.out.write_text(
        json.dumps({"settings": settings, "seconds": elapsed, "campaigns": results}, indent=2)
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
