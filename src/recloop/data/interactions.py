"""A snapshot's cleaned events as retrieval training data: positives, items, shown negatives."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.domain import CONSUMING_EVENTS, ENGAGEMENT_WEIGHTS, ItemStatus
from recloop.retrieval.interactions import Interactions, ItemTable, TrainingData, item_text


def _epoch_seconds(column: pa.ChunkedArray) -> np.ndarray:
    micros = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(micros.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e6


def item_table(items: pa.Table) -> ItemTable:
    """Titles, texts, categories and creation times of a snapshot's active items."""
    rows = items.filter(pc.equal(items.column("status"), ItemStatus.ACTIVE.value)).to_pylist()
    created = [r["created_at"] for r in rows]
    return ItemTable(
        item_ids=tuple(r["item_id"] for r in rows),
        titles=tuple(r["title"] for r in rows),
        texts=tuple(item_text(r["title"], r["description"], r["tags"] or ()) for r in rows),
        categories=tuple(r["category"] for r in rows),
        created_ts=np.array(
            [c.timestamp() if isinstance(c, datetime) else np.nan for c in created],
            dtype=np.float64,
        ),
    )


def retrieval_data(
    events: pa.Table,
    items: pa.Table,
    users: pa.Table | None = None,
    impressions: pa.Table | None = None,
    *,
    weights: Mapping[str, float] | None = None,
) -> TrainingData:
    """Training data for retrieval models from cleaned events and the snapshot's tables.

    Positives are engagements (clicks, views, likes, shares, carts, purchases) weighted by
    ``weights`` (default ``ENGAGEMENT_WEIGHTS``); every active item is in the vocabulary, with
    or without engagement, so that content models index new items. Shown negatives are served
    items the user never engaged with.
    """
    consuming = [t.value for t in CONSUMING_EVENTS]
    positive = events.filter(
        pc.and_(
            pc.is_in(events.column("event_type"), pa.array(consuming)),
            pc.is_valid(events.column("item_id")),
        )
    )
    table = item_table(items)
    event_types = positive.column("event_type").to_pylist()
    if weights is None:
        weights = {str(t): w for t, w in ENGAGEMENT_WEIGHTS.items()}
    interactions = Interactions.from_records(
        positive.column("user_id").to_pylist(),
        positive.column("item_id").to_pylist(),
        _epoch_seconds(positive.column("event_ts")),
        weights=[weights.get(t, 1.0) for t in event_types],
        sessions=positive.column("session_id").to_pylist(),
        item_vocabulary=table.item_ids,
    )
    negatives = None
    if impressions is not None and impressions.num_rows and len(interactions):
        negatives = _shown_negatives(positive, impressions, interactions)
    attributes: dict[str, dict[str, object]] = {}
    if users is not None:
        for row in users.select(["user_id", "attributes"]).to_pylist():
            if row["attributes"]:
                attributes[row["user_id"]] = json.loads(row["attributes"])
    return TrainingData(interactions, table, negatives, attributes)


def _shown_negatives(
    positive: pa.Table, impressions: pa.Table, interactions: Interactions
) -> tuple[np.ndarray, np.ndarray]:
    con = duckdb.connect()
    try:
        con.register("pos", positive.select(["user_id", "item_id"]))
        con.register("imp", impressions.select(["user_id", "item_id"]))
        pairs = con.sql(
            """SELECT DISTINCT imp.user_id, imp.item_id FROM imp
            ANTI JOIN pos ON pos.user_id = imp.user_id AND pos.item_id = imp.item_id"""
        ).fetchall()
    finally:
        con.close()
    users: list[int] = []
    items: list[int] = []
    for user_id, item_id in pairs:
        u, i = interactions.user_index(user_id), interactions.item_index(item_id)
        if u is not None and i is not None:
            users.append(u)
            items.append(i)
    return np.array(users, dtype=np.int64), np.array(items, dtype=np.int64)
