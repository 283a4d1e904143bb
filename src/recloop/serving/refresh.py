"""Keeps in-memory models current: follows the event log and the catalog in the background.

Reads are incremental (events by ``seq``, the catalog by change cursor). A full rebuild
runs periodically as well, which repairs anything an incremental read can miss: events
that committed out of ``seq`` order on PostgreSQL, or items deleted from the catalog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from recloop.domain import EventRecord
from recloop.retrieval.popularity import PopularityConfig, PopularityIndex, PopularityModel
from recloop.store.protocols import Catalog, CatalogCursor, EventLog

log = logging.getLogger(__name__)

_PAGE = 50_000


class PopularityRefresher:
    """Folds new events and catalog changes into one ``PopularityModel`` per app.

    Args:
        events: the event log to follow.
        catalog: the catalog to follow.
        index: where snapshots are published for the sources.
        config: how events count.
        interval_s: seconds between incremental refreshes.
        rebuild_s: seconds between full rebuilds.
        on_error: called when a refresh fails (the previous snapshot keeps serving).
    """

    def __init__(
        self,
        events: EventLog,
        catalog: Catalog,
        index: PopularityIndex,
        *,
        config: PopularityConfig,
        interval_s: float,
        rebuild_s: float,
        on_error: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._events = events
        self._catalog = catalog
        self._index = index
        self._config = config
        self._rebuild_s = rebuild_s
        self._clock = clock
        self._lock = threading.Lock()
        self._task = PeriodicTask("refresh", self.refresh, interval_s, on_error)
        self._reset()

    def _reset(self) -> None:
        self._models: dict[str, PopularityModel] = {}
        self._last_seq = 0
        self._cursor: CatalogCursor | None = None
        self._built_at = time.monotonic()

    def _model(self, app_id: str) -> PopularityModel:
        model = self._models.get(app_id)
        if model is None:
            model = self._models[app_id] = PopularityModel(self._config)
        return model

    def refresh(self) -> None:
        """Read what is new and publish changed snapshots; safe to call from any thread."""
        with self._lock:
            if time.monotonic() - self._built_at > self._rebuild_s:
                self._reset()
            while True:
                changes = self._catalog.changes_since(self._cursor, _PAGE)
                for change in changes:
                    self._model(change.app_id).apply_catalog([change])
                if changes:
                    self._cursor = changes[-1].cursor
                if len(changes) < _PAGE:
                    break
            while True:
                batch = self._events.read_since(self._last_seq, _PAGE)
                by_app: dict[str, list[EventRecord]] = {}
                for event in batch:
                    by_app.setdefault(event.app_id, []).append(event)
                for app_id, app_events in by_app.items():
                    self._model(app_id).update(app_events)
                if batch:
                    self._last_seq = batch[-1].seq
                if len(batch) < _PAGE:
                    break
            now = self._clock()
            for app_id, model in self._models.items():
                if model.is_dirty() or self._index.get(app_id) is None:
                    self._index.publish(app_id, model.snapshot(now))

    def start(self) -> None:
        """Refresh once now, then every ``interval_s`` in a background thread.

        A failed refresh is logged and counted; the previous snapshot keeps serving.
        """
        self.refresh()
        self._task.start()

    def stop(self) -> None:
        """Stop the background thread."""
        self._task.stop()


class PeriodicTask:
    """Runs ``step`` every ``interval_s`` in a background thread; failures are counted."""

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        interval_s: float,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self._name = name
        self._step = step
        self._interval_s = interval_s
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (the first step runs after one interval)."""
        self._thread = threading.Thread(target=self._run, name=f"recloop-{self._name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._step()
            except Exception:
                log.exception("%s failed; will try again", self._name)
                self._on_error()
