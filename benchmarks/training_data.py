"""How long a training set takes to build, and what it holds.

1. A synthetic log of about 1M events (served lists of 10, impressions by position, clicks,
   views, likes, skips) is written to an embedded store, then snapshotted, cleaned,
   labelled, featurized point in time and split; each stage is timed.
2. MovieLens-100k: ratings become events, and each rating a training row labelled
   positive at 4 stars or more, with its features as they were just before it.

    .venv/bin/python benchmarks/training_data.py [--events 1000000] [--skip-movielens]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recloop.config import CleaningConfig, LabelConfig
from recloop.data.cleaning import clean_events
from recloop.data.labels import label_impressions
from recloop.data.snapshots import take_snapshot
from recloop.data.splits import SplitConfig, time_split
from recloop.data.training import point_in_time_features
from recloop.domain import Event, EventType, Item, RecommendationRecord, ServedItem
from recloop.store import open_store
from recloop.store.migrate import upgrade

DATASETS = Path(
    os.environ.get("RECLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


def _synthetic_log(store_url: str, target_events: int, seed: int) -> int:
    rng = random.Random(seed)
    store = open_store(store_url)
    upgrade(store.engine)
    end = datetime(2026, 6, 1, tzinfo=UTC)
    store.tenancy.create_app("default", "bench", end)
    n_items, n_users = 20_000, 20_000
    store.catalog.upsert_items(
        "default",
        [
            Item(
                f"i{n}",
                category=f"c{n % 30}",
                creator_id=f"k{n % 900}",
                created_at=end - timedelta(days=60),
            )
            for n in range(n_items)
        ],
        end,
    )
    weights = [1.0 / (1 + n) ** 0.8 for n in range(n_items)]
    written = 0
    events: list[Event] = []
    logs: list[RecommendationRecord] = []
    while written < target_events:
        user = f"u{int(rng.paretovariate(1.1)) % n_users}"
        served_at = end - timedelta(seconds=rng.uniform(0, 30 * 86_400))
        request_id = uuid.UUID(int=rng.getrandbits(128)).hex
        session = f"s{rng.getrandbits(40)}"
        items = rng.choices(range(n_items), weights=weights, k=10)
        logs.append(
            RecommendationRecord(
                "default", request_id, user, "home", served_at,
                tuple(ServedItem(f"i{i}", p, 1.0, "popular", 1.0) for p, i in enumerate(items)),
                "bench", None, "default", False, 1.0, session, "ios",
            )
        )  # fmt: skip
        for position, item in enumerate(items):
            if rng.random() > (1 + position) ** -0.8:
                continue
            at = served_at + timedelta(seconds=1 + position)
            kinds: list[tuple[EventType, float | None]] = [(EventType.IMPRESSION, None)]
            roll = rng.random()
            if roll < 0.06:
                kinds += [(EventType.CLICK, None), (EventType.VIEW, rng.uniform(2_000, 300_000))]
                if rng.random() < 0.2:
                    kinds.append((EventType.LIKE, None))
            elif roll < 0.2:
                kinds.append((EventType.SKIP, None))
            for kind, value in kinds:
                events.append(
                    Event("default", uuid.UUID(int=rng.getrandbits(128)).hex, user, kind, at, at,
                          item_id=f"i{item}", value=value, session_id=session, device="ios",
                          position=position, request_id=request_id)
                )  # fmt: skip
        if len(events) >= 20_000:
            store.events.append(events)
            store.rec_log.append(logs)
            written += len(events)
            events, logs = [], []
    if events:
        store.events.append(events)
        store.rec_log.append(logs)
        written += len(events)
    store.close()
    return written


@contextmanager
def _timed(label: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[label] = time.perf_counter() - started


def synthetic(target_events: int) -> None:
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        with _timed("write the log to the store", timings):
            written = _synthetic_log(url, target_events, seed=1)
        store = open_store(url)
        with _timed("snapshot (store -> Parquet)", timings):
            snapshot = take_snapshot(
                store, Path(tmp) / "snapshots", app_id="default", now=datetime.now(UTC)
            )
        store.close()
        started = time.perf_counter()
        with _timed("read snapshot", timings):
            raw = snapshot.table("events")
            impressions = snapshot.impressions()
        with _timed("clean", timings):
            events, cleaning = clean_events(raw, CleaningConfig())
        with _timed("label (attribution)", timings):
            labelled, labels = label_impressions(impressions, events, LabelConfig())
        with _timed("point-in-time features (replay)", timings):
            rows = point_in_time_features(labelled, events, snapshot.table("items"))
        with _timed("split", timings):
            parts, _ = time_split(rows, "served_at", SplitConfig())
        total = time.perf_counter() - started
    print(f"synthetic log: {written:,} events, {impressions.num_rows:,} served impressions")
    for stage, seconds in timings.items():
        print(f"  {stage:<34} {seconds:8.1f} s")
    print(f"  {'training set from the snapshot':<34} {total:8.1f} s")
    positives = int(pc.sum(rows.column("label")).as_py())
    negatives = rows.num_rows - positives
    clicks = int(pc.sum(rows.column("label_click")).as_py())
    removed = cleaning.as_dict()["rows_in"] - cleaning.as_dict()["rows_out"]
    print(
        f"  rows {rows.num_rows:,} (positives {positives:,}, negatives {negatives:,}); "
        f"click-labelled {clicks:,}; dropped: {labels.too_recent:,} too recent, "
        f"{labels.ambiguous:,} ambiguous; cleaning removed {removed:,} events"
    )
    print("  parts: " + ", ".join(f"{k} {v.num_rows:,}" for k, v in parts.items()))


def movielens() -> None:
    path = DATASETS / "ml-100k" / "ml-100k.inter"
    if not path.is_file():
        print(f"MovieLens-100k not found at {path}; skipped")
        return
    started = time.perf_counter()
    users, items, ratings, stamps = [], [], [], []
    with path.open() as f:
        next(f)
        for line in f:
            user, item, rating, ts = line.split("\t")
            users.append(user)
            items.append(item)
            ratings.append(float(rating))
            stamps.append(datetime.fromtimestamp(float(ts), UTC))
    # A rating is engagement: a view, and a like when it is 4 stars or more.
    events = pa.table(
        {
            "user_id": users + [u for u, r in zip(users, ratings, strict=True) if r >= 4],
            "item_id": items + [i for i, r in zip(items, ratings, strict=True) if r >= 4],
            "event_type": ["view"] * len(users) + ["like"] * sum(r >= 4 for r in ratings),
            "value": [None] * (len(users) + sum(r >= 4 for r in ratings)),
            "device": [None] * (len(users) + sum(r >= 4 for r in ratings)),
            "session_id": [None] * (len(users) + sum(r >= 4 for r in ratings)),
            "event_ts": stamps + [t for t, r in zip(stamps, ratings, strict=True) if r >= 4],
        }
    ).sort_by("event_ts")
    rows = pa.table(
        {
            "user_id": users,
            "item_id": items,
            "served_at": stamps,
            "session_id": pa.nulls(len(users), pa.string()),
            "device": pa.nulls(len(users), pa.string()),
            "surface": ["ratings"] * len(users),
            "label": [int(r >= 4) for r in ratings],
        }
    )
    catalog = pa.table(
        {
            "item_id": sorted(set(items)),
            "category": pa.nulls(len(set(items)), pa.string()),
            "creator_id": pa.nulls(len(set(items)), pa.string()),
            "created_at": pa.nulls(len(set(items)), pa.timestamp("us", tz="UTC")),
        }
    )
    featured = point_in_time_features(rows, events, catalog)
    parts, bounds = time_split(featured, "served_at", SplitConfig())
    seconds = time.perf_counter() - started
    positives = sum(featured.column("label").to_pylist())
    print(
        f"MovieLens-100k: {featured.num_rows:,} rows (positives {positives:,}, negatives "
        f"{featured.num_rows - positives:,}), built in {seconds:.1f} s; "
        + ", ".join(f"{k} {v.num_rows:,}" for k, v in parts.items())
    )
    print(f"  time boundaries: {bounds.as_dict()}")
    first = featured.slice(50_000, 1).to_pylist()[0]
    print(
        "  one row: " + ", ".join(f"{k}={v:.3g}" for k, v in first.items() if isinstance(v, float))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--skip-movielens", action="store_true")
    args = parser.parse_args()
    synthetic(args.events)
    if not args.skip_movielens:
        movielens()


if __name__ == "__main__":
    main()
