"""Training sets: labelled impressions with point-in-time features, split by time.

Features are computed by replaying the snapshot's events in time order into the same state
the online path keeps (``features.definitions``): each impression's features are read just
before its serving time, after every earlier event and before any later one. Nothing from
after the impression can reach its features; the labels are the only thing that looks
forward, within the attribution window.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from recloop.config import CleaningConfig, LabelConfig
from recloop.data.cleaning import CleaningReport, clean_events
from recloop.data.labels import LabelReport, label_impressions
from recloop.data.snapshots import Snapshot
from recloop.data.splits import SplitBoundaries, SplitConfig, time_split
from recloop.features.definitions import (
    CLOCK_TOLERANCE_S,
    FEATURE_NAMES,
    SESSION_LENGTH,
    FeatureSet,
    ItemMeta,
    SessionEntry,
    joins_session,
    updates_for,
)
from recloop.features.state import Counters

#: Columns of the impression kept beside the features and labels.
KEY_COLUMNS = ("request_id", "user_id", "item_id", "surface", "served_at", "position", "propensity")


class TrainingSetConfig(BaseModel):
    """Everything that decides a training set, recorded with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    splits: SplitConfig = Field(default_factory=SplitConfig)


@dataclass(frozen=True)
class TrainingSet:
    """A built training set: its parts, where they are, and how they were made."""

    path: Path
    parts: dict[str, pa.Table]
    boundaries: SplitBoundaries
    cleaning: CleaningReport
    labels: LabelReport
    metadata: dict[str, Any]


def _metas(items: pa.Table) -> dict[str, ItemMeta]:
    return {
        row["item_id"]: ItemMeta(row["category"], row["creator_id"], row["created_at"])
        for row in items.select(["item_id", "category", "creator_id", "created_at"]).to_pylist()
    }


def _epoch_seconds(column: pa.ChunkedArray) -> np.ndarray:
    micros = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(micros.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e6


def _events(events: pa.Table) -> Iterator[dict[str, Any]]:
    """Events in the order they count for the features, each with its ``feature_ts``.

    The time is the one the online path folds an event in at (``feature_time`` of the
    client's stamp and the arrival), so both paths see the same history at the same time.
    """
    names = events.column_names
    stamped = _epoch_seconds(events.column("client_ts" if "client_ts" in names else "event_ts"))
    arrived = _epoch_seconds(events.column("server_ts")) if "server_ts" in names else stamped
    when = np.where(np.abs(arrived - stamped) <= CLOCK_TOLERANCE_S, stamped, arrived)
    order = np.argsort(when, kind="stable")
    columns = ["user_id", "item_id", "event_type", "value", "device", "session_id"]
    table = events.select(columns).take(order).append_column("feature_ts", pa.array(when[order]))
    for batch in table.to_batches(max_chunksize=50_000):
        yield from batch.to_pylist()


def point_in_time_features(
    impressions: pa.Table,
    events: pa.Table,
    items: pa.Table,
    *,
    on_progress: Callable[[int], None] = lambda n: None,
) -> pa.Table:
    """Each impression with ``FEATURE_NAMES`` as they were just before it was served.

    Args:
        impressions: labelled impressions, any order.
        events: cleaned events (any order: they are replayed by their feature time).
        items: the catalog (category, creator, created time).
        on_progress: called with the number of impressions done since the last call.
    """
    metas = _metas(items)
    features = FeatureSet()
    users: dict[str, Counters] = {}
    items_state: dict[str, Counters] = {}
    sessions: dict[str, list[SessionEntry]] = {}
    order = sorted(
        range(impressions.num_rows),
        key=impressions.column("served_at").to_pylist().__getitem__,
    )
    rows = impressions.select(
        ["user_id", "item_id", "served_at", "session_id", "device", "surface"]
    ).to_pylist()
    stream = _events(events)
    pending = next(stream, None)
    values: list[list[float]] = [[] for _ in range(impressions.num_rows)]
    done = 0
    last_key: tuple[Any, ...] | None = None
    user_part: dict[str, float] = {}
    context_part: dict[str, float] = {}
    # An item's part depends on its counters and the moment alone: candidate lists recalled
    # at one cut-off share the moment, and each item's part is computed once for all.
    item_parts: dict[str, dict[str, float]] = {}
    parts_at: float | None = None
    for index in order:
        row = rows[index]
        served = row["served_at"].timestamp()
        # Fold in every event strictly before this impression, and nothing after it.
        while pending is not None and pending["feature_ts"] < served:
            _apply(pending, metas, users, items_state, sessions)
            pending = next(stream, None)
            parts_at = None
        if served != parts_at:
            item_parts.clear()
            parts_at = served
        user = users.get(row["user_id"]) or Counters()
        item = items_state.get(row["item_id"]) or Counters()
        meta = metas.get(row["item_id"])
        session = sessions.get(row["session_id"], []) if row["session_id"] else []
        # The items of one served list share the user, the moment and the context.
        key = (row["user_id"], served, row["device"], row["surface"])
        if key != last_key:
            last_key = key
            user_part = features.user_part(user, served)
            context_part = FeatureSet.context_part(served, row["device"], row["surface"])
        item_part = item_parts.get(row["item_id"])
        if item_part is None:
            item_part = item_parts[row["item_id"]] = features.item_part(item, meta, served)
        values[index] = features.row(
            features.named(
                user_part=user_part,
                item_part=item_part,
                context_part=context_part,
                user=user,
                item_id=row["item_id"],
                meta=meta,
                session=session,
                now=served,
            )
        )
        done += 1
        if done % 10_000 == 0:
            on_progress(10_000)
    on_progress(done % 10_000)
    columns = {
        name: pa.array([v[i] for v in values], pa.float64()) for i, name in enumerate(FEATURE_NAMES)
    }
    table = impressions
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


def _apply(
    event: dict[str, Any],
    metas: dict[str, ItemMeta],
    users: dict[str, Counters],
    items: dict[str, Counters],
    sessions: dict[str, list[SessionEntry]],
) -> None:
    item_id = event["item_id"]
    meta = metas.get(item_id) if item_id else None
    ts = float(event["feature_ts"])
    for update in updates_for(
        event["user_id"], item_id, event["event_type"], event["value"], event["device"], ts, meta
    ):
        table = users if update.entity == "u" else items
        counters = table.get(update.entity_id)
        if counters is None:
            counters = table[update.entity_id] = Counters()
        counters.add(update.counter, update.ts, update.amount, hourly=update.hourly)
    if event["session_id"] and item_id and joins_session(event["event_type"]):
        entries = sessions.setdefault(event["session_id"], [])
        entries.append(SessionEntry(item_id, meta.category if meta else None))
        del entries[:-SESSION_LENGTH]


#: The surface the suggestion API logs its lists under, alone or before ``:`` and a kind.
SUGGESTION_SURFACE = "suggest"


def item_impressions(impressions: pa.Table) -> pa.Table:
    """The impressions of catalog items: suggestion lists (surface ``suggest`` or
    ``suggest:*``) are left out, since their "items" are queries, with none of an item's
    features; they train the suggestion model, not the ranker or retrieval."""
    if impressions.num_rows == 0 or "surface" not in impressions.column_names:
        return impressions
    surface = impressions.column("surface")
    suggestion = pc.or_(
        pc.equal(surface, SUGGESTION_SURFACE),
        pc.starts_with(surface, SUGGESTION_SURFACE + ":"),
    )
    return impressions.filter(pc.invert(pc.fill_null(suggestion, False)))


def without_users(impressions: pa.Table, users: set[str]) -> pa.Table:
    """Impressions of everyone but ``users``: a bot's events are gone after cleaning, and
    its impressions would otherwise all look like exposure negatives."""
    if not users:
        return impressions
    keep = pc.invert(pc.is_in(impressions.column("user_id"), value_set=pa.array(sorted(users))))
    return impressions.filter(keep)


class NoTrainingRows(ValueError):
    """The snapshot has no impression to learn from; the message says why and what to do."""


def why_no_rows(served: int, bots_removed: int, labels: LabelReport) -> str:
    """What to tell a user whose snapshot labelled no impression at all."""
    if served == 0:
        return "the snapshot holds no served lists (no impressions to label)"
    if labels.impressions == 0:
        return f"all {served:,} impressions were of users cleaned out as bots ({bots_removed:,})"
    return (
        f"{labels.impressions:,} impressions, all younger than the label delay of "
        f"{labels.label_delay_s:g} s on the server's clock, and none followed by "
        f"{labels.label_delay_s:g} s of the user's own activity: wait, or lower "
        "train.labels.label_delay_s"
    )


def build_training_set(
    snapshot: Snapshot,
    root: Path,
    config: TrainingSetConfig | None = None,
    *,
    on_progress: Callable[[int], None] = lambda n: None,
) -> TrainingSet:
    """Clean, label, featurize and split a snapshot; write the parts as Parquet under ``root``.

    The directory is named after the snapshot and a hash of the config, and its
    ``metadata.json`` records both, the split boundaries and every count.

    Raises:
        NoTrainingRows: no impression could be labelled; the message says why.
    """
    config = config or TrainingSetConfig()
    events, cleaning = clean_events(snapshot.table("events"), config.cleaning)
    served = item_impressions(snapshot.impressions())
    impressions = without_users(served, {b.user_id for b in cleaning.bot_users})
    labelled, labels = label_impressions(impressions, events, config.labels)
    if labelled.num_rows == 0:
        raise NoTrainingRows(
            why_no_rows(served.num_rows, served.num_rows - impressions.num_rows, labels)
        )
    rows = point_in_time_features(
        labelled, events, snapshot.table("items"), on_progress=on_progress
    )
    parts, boundaries = time_split(rows, "served_at", config.splits)
    config_hash = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:8]
    path = root / f"{snapshot.version}-{config_hash}"
    path.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        pq.write_table(part, path / f"{name}.parquet")
    metadata: dict[str, Any] = {
        "snapshot": snapshot.version,
        "config": json.loads(config.model_dump_json()),
        "features": list(FEATURE_NAMES),
        "boundaries": boundaries.as_dict(),
        "rows": {name: part.num_rows for name, part in parts.items()},
        "positives": {
            name: int(pc.sum(part.column("label")).as_py() or 0) for name, part in parts.items()
        },
        "unlabelled": {name: part.column("label").null_count for name, part in parts.items()},
        "clicks": {
            name: int(pc.sum(part.column("label_click")).as_py() or 0)
            for name, part in parts.items()
        },
        "cleaning": cleaning.as_dict(),
        "labels": dict(labels.as_dict()),
        "built_at": datetime.now().astimezone().isoformat(),
    }
    (path / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
    return TrainingSet(path, parts, boundaries, cleaning, labels, metadata)
