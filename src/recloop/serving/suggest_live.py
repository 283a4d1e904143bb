"""Follows the event log into each app's live suggestion overlay (``suggest.live``).

Like the popularity refresher, it reads new events by ``seq`` from the store, not from this
process's ingestor, so a replica counts the searches that another replica took; and it
publishes one immutable ``LiveQueries`` per app, swapped in whole, that requests read
without a lock. ``step`` runs every ``live_refresh_s``.

Each app's overlay counts from the cut-off of the model it serves (``cutoff(app)``: the
trained model's ``built_at``, else the cold model's). When that changes (a new version is
swapped in, a rollback, the cold model rebuilt) the overlay starts again from the new
cut-off: the last ``live_max_events`` searches of the app are kept for this and counted
again, with the outcomes they had. The first read goes back to the oldest cut-off of the
apps' trained models, at most ``cold_window_days``; a model published later with an older
cut-off than that misses the searches between the two until it is replaced.

As with popularity's incremental read, an event that commits out of ``seq`` order on
PostgreSQL can be missed until the next swap; training counts it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from recloop.config import SuggestionSettings
from recloop.domain import CONSUMING_EVENTS, Event, EventType
from recloop.store.protocols import EventLog
from recloop.suggest.live import LiveFold, LiveQueries, LiveSearch

_PAGE = 20_000


@dataclass
class _AppState:
    fold: LiveFold
    kept: deque[LiveSearch]  # the latest searches, to count again from a new cut-off


class LiveSearches:
    """Each app's live overlay, following the event log (see the module docstring).

    Args:
        events: the event log to follow.
        settings: the ``[suggestions]`` section.
        cutoff: the data cut-off of the model an app serves now (None: no model yet).
        start: events received before this are not read.
    """

    def __init__(
        self,
        events: EventLog,
        settings: SuggestionSettings,
        cutoff: Callable[[str], datetime | None],
        *,
        start: datetime,
    ) -> None:
        self._events = events
        self._settings = settings
        self._cutoff = cutoff
        self._start = start
        self._last_seq = 0
        self._apps: dict[str, _AppState] = {}
        self._published: dict[str, LiveQueries] = {}
        self._lock = threading.Lock()

    def get(self, app_id: str) -> LiveQueries | None:
        """The app's overlay, or None before its first search was read."""
        return self._published.get(app_id)

    def step(self) -> int:
        """Fold in the events stored since the last step, start an app's overlay again when
        its model's cut-off changed, and publish what changed; returns the events read.
        Safe to call from any thread."""
        with self._lock:
            changed: set[str] = set()
            read = 0
            while True:
                page = self._events.scan(self._last_seq, _PAGE, received_since=self._start)
                for seq, event in page:
                    self._last_seq = seq
                    if self._fold(event):
                        changed.add(event.app_id)
                read += len(page)
                if len(page) < _PAGE:
                    break
            for app_id, state in self._apps.items():
                since = self._cutoff(app_id)
                if since != state.fold.since:
                    state.fold = self._refold(state.kept, since)
                    changed.add(app_id)
            if changed:
                published = dict(self._published)
                for app_id in changed:
                    published[app_id] = self._apps[app_id].fold.snapshot()
                # One reference swap: a request sees the old overlays or the new ones.
                self._published = published
            return read

    def _fold(self, event: Event) -> bool:
        """Count one event; whether the app's overlay changed."""
        if event.event_type is EventType.SEARCH:
            if not event.query:
                return False
            received = event.server_ts.timestamp()
            search = LiveSearch(
                event.user_id,
                event.session_id,
                event.query,
                min(event.event_ts.timestamp(), received),
                received,
            )
            if not search.key:
                return False  # a tagged query: never counted, not worth keeping
            state = self._apps.get(event.app_id)
            if state is None:
                state = self._apps[event.app_id] = _AppState(
                    LiveFold(self._settings, self._cutoff(event.app_id)),
                    deque(maxlen=self._settings.live_max_events),
                )
            state.kept.append(search)
            since = state.fold.since
            # Received before the cut-off: the model counted it already.
            return (since is None or received >= since.timestamp()) and state.fold.add(search)
        if event.event_type in CONSUMING_EVENTS and event.item_id is not None:
            state = self._apps.get(event.app_id)
            ts = min(event.event_ts, event.server_ts).timestamp()
            return state is not None and state.fold.engage(event.user_id, event.session_id, ts)
        return False

    def _refold(self, kept: deque[LiveSearch], since: datetime | None) -> LiveFold:
        """A new overlay of the kept searches received at or after ``since``."""
        fold = LiveFold(self._settings, since)
        horizon = since.timestamp() if since is not None else None
        for search in kept:
            if horizon is None or search.received >= horizon:
                fold.add(search)
        return fold
