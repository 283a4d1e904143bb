"""Accepting a batch of raw events: validate each, store the good ones, list the rejected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recloop.domain import Event
from recloop.errors import StoreUnavailable
from recloop.ingest.validate import Rejection, validate_event
from recloop.store.writer import EventAck, StoreWriter

#: Batches up to this size are validated on the event loop.
INLINE_VALIDATION_MAX = 64


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome of one batch: stored, already stored, and refused (by index)."""

    accepted: int
    duplicates: int
    rejected: tuple[Rejection, ...]


class EventIngestor:
    """Validates events and hands the good ones to the writer, waiting until they are durable.

    Args:
        writer: the process's store writer (group commit).
        max_future_skew: how far ahead of the server a client's ``eventTs`` may be.
        ack_timeout_s: how long to wait for the commit before answering 503.
        on_stored: told the app and users of each durably stored batch.
    """

    def __init__(
        self,
        writer: StoreWriter,
        *,
        max_future_skew: timedelta,
        ack_timeout_s: float,
        on_stored: Callable[[str, set[str]], None] = lambda app_id, users: None,
    ) -> None:
        self._writer = writer
        self._max_future_skew = max_future_skew
        self._ack_timeout_s = ack_timeout_s
        self._on_stored = on_stored

    def validate(
        self, app_id: str, raw_events: Sequence[Any], now: datetime
    ) -> tuple[list[Event], list[Rejection]]:
        """Check every event alone: the ones to store, and the refused ones by index."""
        good: list[Event] = []
        rejected: list[Rejection] = []
        for index, raw in enumerate(raw_events):
            outcome = validate_event(
                raw, app_id=app_id, now=now, max_future_skew=self._max_future_skew, index=index
            )
            if isinstance(outcome, Rejection):
                rejected.append(outcome)
            else:
                good.append(outcome)
        return good, rejected

    def ingest(self, app_id: str, raw_events: Sequence[Any], now: datetime) -> IngestResult:
        """Validate and durably store a batch, blocking until the commit.

        Raises:
            StoreUnavailable: the store did not confirm; nothing may be assumed stored.
        """
        good, rejected = self.validate(app_id, raw_events, now)
        ack = self.store(app_id, good)
        return IngestResult(ack.accepted, ack.duplicates, tuple(rejected))

    def store(self, app_id: str, events: Sequence[Event]) -> EventAck:
        """Durably store events built by the service itself (already valid), blocking.

        Every event the service stores goes through here or ``store_async``, so that the
        users' cached lists are dropped once their events are durable.
        """
        if not events:
            return EventAck(0, 0)
        ack = self._writer.append_events(list(events), timeout=self._ack_timeout_s)
        self._on_stored(app_id, {e.user_id for e in events})
        return ack

    async def ingest_async(
        self, app_id: str, raw_events: Sequence[Any], now: datetime
    ) -> IngestResult:
        """``ingest`` for an event loop: waits for the commit without holding a thread.

        Small batches are validated on the loop (a few microseconds an event); larger ones
        in a worker thread, so a big batch never stalls other requests.
        """
        if len(raw_events) <= INLINE_VALIDATION_MAX:
            good, rejected = self.validate(app_id, raw_events, now)
        else:
            good, rejected = await asyncio.to_thread(self.validate, app_id, raw_events, now)
        ack = await self.store_async(app_id, good)
        return IngestResult(ack.accepted, ack.duplicates, tuple(rejected))

    async def store_async(self, app_id: str, events: Sequence[Event]) -> EventAck:
        """``store`` for an event loop: waits for the commit without holding a thread.

        Raises:
            StoreUnavailable: the store did not confirm; nothing may be assumed stored.
        """
        if not events:
            return EventAck(0, 0)
        done = asyncio.wrap_future(self._writer.submit_events(list(events)))
        try:
            ack = await asyncio.wait_for(done, self._ack_timeout_s)
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"events not confirmed within {self._ack_timeout_s:g} s"
            ) from exc
        self._on_stored(app_id, {e.user_id for e in events})
        return ack
