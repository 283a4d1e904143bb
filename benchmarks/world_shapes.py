"""Put the simulated world's log shapes beside real datasets.

Three shapes that real logs have: item popularity is long-tailed, user activity is
heavy-tailed, and CTR falls with position. This prints the concentration of interactions
over items and users for MovieLens-100k, the Amazon/Yelp/LastFM sequences and a simulated
run, and CTR by position for the Open Bandit random-policy logs beside the simulation.

    .venv/bin/python benchmarks/world_shapes.py [--days 7] [--seed 7]

Reads ../shared/datasets (or RECLOOP_DATASETS); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from recloop.config import Settings
from recloop.demo.run import DemoConfig, run_demo
from recloop.evaluation.shapes import gini, top_share
from recloop.simulate.world import WorldConfig

DATASETS = Path(
    os.environ.get("RECLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


def _ml100k() -> tuple[Counter[str], Counter[str]]:
    items: Counter[str] = Counter()
    users: Counter[str] = Counter()
    with (DATASETS / "ml-100k" / "ml-100k.inter").open() as f:
        next(f)
        for line in f:
            user, item, *_ = line.split("\t")
            users[user] += 1
            items[item] += 1
    return items, users


def _sequences(path: Path) -> tuple[Counter[str], Counter[str]]:
    """Lines of `user item item ...` (the S3-Rec files) or `user item` pairs (Video.txt)."""
    items: Counter[str] = Counter()
    users: Counter[str] = Counter()
    with path.open() as f:
        for line in f:
            user, *seq = line.split()
            users[user] += len(seq)
            items.update(seq)
    return items, users


def _open_bandit() -> tuple[list[int], list[int]]:
    clicks, shown = [0, 0, 0], [0, 0, 0]
    for campaign in ("all", "men", "women"):
        with (
            DATASETS / "open-bandit-sample" / "random" / campaign / f"{campaign}.csv"
        ).open() as f:
            for row in csv.DictReader(f):
                position = int(row["position"]) - 1
                shown[position] += 1
                clicks[position] += int(row["click"])
    return clicks, shown


def _shape_row(name: str, items: Counter[str], users: Counter[str]) -> list[str]:
    i, u = list(items.values()), list(users.values())
    return [
        name, f"{len(i):,}", f"{len(u):,}", f"{sum(i):,}",
        f"{gini(i):.3f}", f"{top_share(i, 0.1):.3f}", f"{gini(u):.3f}", f"{top_share(u, 0.1):.3f}",
    ]  # fmt: skip


def _interval(clicks: int, shown: int) -> str:
    rate = clicks / shown if shown else 0.0
    half = 1.96 * math.sqrt(rate * (1 - rate) / shown) if shown else 0.0
    return f"{rate:.4f} ± {half:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rows = []
    if (DATASETS / "ml-100k").is_dir():
        rows.append(_shape_row("MovieLens-100k (ratings)", *_ml100k()))
    for name, path in (
        ("Amazon Beauty", DATASETS / "amazon-s3rec" / "Beauty.txt"),
        ("Yelp", DATASETS / "amazon-s3rec" / "Yelp.txt"),
        ("LastFM", DATASETS / "amazon-s3rec" / "LastFM.txt"),
        ("Amazon Video Games", DATASETS / "amazon-videogames" / "Video.txt"),
    ):
        if path.is_file():
            rows.append(_shape_row(name, *_sequences(path)))

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_demo(
            DemoConfig(world=WorldConfig(seed=args.seed), days=args.days, transport="inprocess"),
            Settings(data_dir=Path(tmp)),
            Console(file=io.StringIO()),
        )
    result = outcome.result
    sim_items = Counter(dict(result.clicks_per_item))
    rows.append(
        _shape_row(f"simulated, {args.days} days (clicks)", sim_items, result.events_per_user)
    )

    console = Console(width=140)
    from rich.table import Table

    table = Table(
        title="Concentration of interactions (zero-count entities are absent in every row)"
    )
    for column in (
        "log",
        "items",
        "users",
        "interactions",
        "item Gini",
        "top-10% items",
        "user Gini",
        "top-10% users",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)

    positions = Table(title="CTR by position (rate ± 95% normal interval)")
    positions.add_column("position", justify="right")
    positions.add_column("Open Bandit, random policy (3 campaigns)", justify="right")
    positions.add_column("simulated", justify="right")
    positions.add_column("simulated / position 1", justify="right")
    obd_clicks, obd_shown = (
        _open_bandit() if (DATASETS / "open-bandit-sample").is_dir() else ([], [])
    )
    top = result.clicks_by_position[0] / max(1, result.impressions_by_position[0])
    for p in range(len(result.clicks_by_position)):
        sim_rate = result.clicks_by_position[p] / max(1, result.impressions_by_position[p])
        positions.add_row(
            str(p + 1),
            _interval(obd_clicks[p], obd_shown[p]) if p < len(obd_shown) else "",
            _interval(result.clicks_by_position[p], result.impressions_by_position[p]),
            f"{sim_rate / top:.2f}" if top else "",
        )
    console.print(positions)
    console.print(
        f"simulation wall time {time.perf_counter() - started:.0f} s (in-process, seed {args.seed})"
    )


if __name__ == "__main__":
    main()
