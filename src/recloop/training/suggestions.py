"""``recloop train``'s suggestion step: the suggestion model of a snapshot, saved inside the
model version so that services load and swap it with the rest of the version.

It reads the cleaned events (bots and repeats already dropped, every event on the
server's timeline) and the snapshot's items, and hands them to ``suggest.build``; see
there, and docs/suggestions.md, for what the model holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recloop.config import SuggestionSettings
from recloop.domain import CONSUMING_EVENTS, EventType, ItemStatus
from recloop.suggest.build import CatalogText, LogEvent, build_model
from recloop.suggest.model import MODEL_DIR

_ENGAGING = pa.array(sorted(t.value for t in CONSUMING_EVENTS), pa.string())


@dataclass
class SuggestionsFit:
    """What the step built, or why it built nothing."""

    path: Path | None
    report: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


def log_events(events: pa.Table) -> list[LogEvent]:
    """The searches (with a query) and engagements (with an item) of an events table, in
    its order, as the builder reads them."""
    kind = events.column("event_type")
    searches = pc.and_(pc.equal(kind, EventType.SEARCH.value), pc.is_valid(events.column("query")))
    engaged = pc.and_(pc.is_in(kind, value_set=_ENGAGING), pc.is_valid(events.column("item_id")))
    picked = events.filter(pc.or_(searches, engaged))
    micros = picked.column("event_ts").cast(pa.int64()).to_pylist()
    is_search = pc.equal(picked.column("event_type"), EventType.SEARCH.value).to_pylist()
    return [
        LogEvent(user, ts / 1e6, session, query=query)
        if search
        else LogEvent(user, ts / 1e6, session, item_id=item)
        for user, session, ts, query, item, search in zip(
            picked.column("user_id").to_pylist(),
            picked.column("session_id").to_pylist(),
            micros,
            picked.column("query").to_pylist(),
            picked.column("item_id").to_pylist(),
            is_search,
            strict=True,
        )
    ]


def catalog_texts(items: pa.Table) -> list[CatalogText]:
    """The active items' titles, categories and tags."""
    active = items.filter(pc.equal(items.column("status"), ItemStatus.ACTIVE.value))
    return [
        CatalogText(item_id, title, category, tuple(tags or ()))
        for item_id, title, category, tags in zip(
            active.column("item_id").to_pylist(),
            active.column("title").to_pylist(),
            active.column("category").to_pylist(),
            active.column("tags").to_pylist(),
            strict=True,
        )
    ]


def train_suggestions(
    events: pa.Table,
    items: pa.Table,
    settings: SuggestionSettings,
    directory: Path,
    *,
    now: datetime,
    version: str,
) -> SuggestionsFit:
    """Build the suggestion model and save it as ``directory/suggestions``."""
    if not settings.enabled:
        return SuggestionsFit(None, skipped="disabled (suggestions.enabled)")
    model, report = build_model(
        log_events(events), catalog_texts(items), settings, now=now, version=version
    )
    path = directory / MODEL_DIR
    model.save(path)
    return SuggestionsFit(path, report.as_dict())
