"""The suggestion surface's cold state: a model built from the store, for apps that have no
trained one yet.

It is the trained model's builder (``suggest.build``) fed from the store instead of a
snapshot: the catalog's active items (catalog-derived queries) and the searches and
engagements received in the last ``cold_window_days`` (recent live queries, still held to
``min_users`` distinct users). The first request of an app builds it; afterwards
``refresh`` (every ``cold_refresh_s``) reads only the events that arrived since, and
re-reads an app's catalog only when the catalog changed, and builds nothing when neither
changed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from recloop.config import SuggestionSettings
from recloop.domain import CONSUMING_EVENTS, Event, EventType, ItemStatus
from recloop.store.protocols import Catalog, CatalogCursor, EventLog
from recloop.suggest.build import CatalogText, LogEvent, build_model
from recloop.suggest.model import SuggestionModel

_PAGE = 5000
COLD_VERSION = "cold"


@dataclass
class _AppState:
    events: deque[LogEvent]
    last_seq: int = 0
    items: list[CatalogText] = field(default_factory=list)
    catalog_stale: bool = True
    model: SuggestionModel | None = None


def log_event(event: Event) -> LogEvent | None:
    """A stored event as the builder reads it: a search with its query, or an engagement
    with an item; None for anything else."""
    ts = event.event_ts.timestamp()
    if event.event_type is EventType.SEARCH and event.query:
        return LogEvent(event.user_id, ts, event.session_id, query=event.query)
    if event.event_type in CONSUMING_EVENTS and event.item_id is not None:
        return LogEvent(event.user_id, ts, event.session_id, item_id=event.item_id)
    return None


class ColdSuggestions:
    """Per app, a suggestion model built from the store (see the module docstring)."""

    def __init__(
        self,
        events: EventLog,
        catalog: Catalog,
        settings: SuggestionSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._events = events
        self._catalog = catalog
        self._settings = settings
        self._clock = clock
        self._apps: dict[str, _AppState] = {}
        self._cursor: CatalogCursor | None = None
        self._lock = threading.Lock()

    def get(self, app_id: str) -> SuggestionModel:
        """The app's cold model, built now if this is its first request."""
        state = self._apps.get(app_id)
        if state is not None and state.model is not None:
            return state.model
        with self._lock:
            return self._rebuild(app_id)

    def peek(self, app_id: str) -> SuggestionModel | None:
        """The app's cold model if one was built, without building it."""
        state = self._apps.get(app_id)
        return None if state is None else state.model

    def refresh(self, skip: Collection[str] = ()) -> None:
        """Rebuild the models of the apps asked for so far, except ``skip`` (apps that
        serve a trained model now)."""
        with self._lock:
            self._follow_catalog()
            for app_id in list(self._apps):
                if app_id not in skip:
                    self._rebuild(app_id)

    def _follow_catalog(self) -> None:
        """Mark the apps whose catalog changed since the last look."""
        while True:
            changes = self._catalog.changes_since(self._cursor, _PAGE)
            for change in changes:
                state = self._apps.get(change.app_id)
                if state is not None:
                    state.catalog_stale = True
            if changes:
                self._cursor = changes[-1].cursor
            if len(changes) < _PAGE:
                return

    def _rebuild(self, app_id: str) -> SuggestionModel:
        settings = self._settings
        now = self._clock()
        state = self._apps.get(app_id)
        if state is None:
            state = self._apps[app_id] = _AppState(deque(maxlen=settings.cold_max_events))
            if self._cursor is None:
                # Start following the catalog from here: this first build reads it whole.
                self._follow_catalog()
        since = now - timedelta(days=settings.cold_window_days)
        read = 0
        while True:
            page = self._events.scan(state.last_seq, _PAGE, app_id=app_id, received_since=since)
            read += len(page)
            for seq, event in page:
                state.last_seq = seq
                logged = log_event(event)
                if logged is not None:
                    state.events.append(logged)
            if len(page) < _PAGE:
                break
        if state.model is not None and not read and not state.catalog_stale:
            return state.model  # nothing new: the build would be the same
        if state.catalog_stale:
            state.items = self._read_catalog(app_id)
            state.catalog_stale = False
        horizon = since.timestamp()
        while state.events and state.events[0].ts < horizon:
            state.events.popleft()
        model, _ = build_model(
            state.events, state.items, settings, now=now, version=COLD_VERSION, cold=True
        )
        state.model = model
        return model

    def _read_catalog(self, app_id: str) -> list[CatalogText]:
        items: list[CatalogText] = []
        after: str | None = None
        while len(items) < self._settings.cold_max_items:
            page = self._catalog.scan_items(app_id, after, _PAGE)
            items.extend(
                CatalogText(i.item_id, i.title, i.category, i.tags)
                for i in page
                if i.status is ItemStatus.ACTIVE
            )
            if len(page) < _PAGE:
                break
            after = page[-1].item_id
        return items[: self._settings.cold_max_items]
