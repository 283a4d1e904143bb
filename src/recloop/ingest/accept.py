"""Accepting a batch of raw events: validate each, store the good ones, list the rejected."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recloop.domain import Event
from recloop.errors import RecloopError, StoreUnavailable
from recloop.ingest.validate import Rejection, validate_event
from recloop.store.protocols import EventLog
from recloop.store.writer import EventAck, StoreWriter

log = logging.getLogger(__name__)

#: Batches up to this size are validated on the event loop.
INLINE_VALIDATION_MAX = 64


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome of one batch: stored, already stored (the same event sent again), sent
    again with a different payload under a stored id (by index), and refused (by index)."""

    accepted: int
    duplicates: int
    rejected: tuple[Rejection, ...]
    conflicts: tuple[Rejection, ...] = ()


#: What a retry of an event must repeat: every field the client gave (``eventTs`` only when
#: the client stamped both; the ids and the arrival are the server's).
_COMPARED = tuple(
    f.name
    for f in dataclasses.fields(Event)
    if f.name not in {"app_id", "event_id", "event_ts", "server_ts"}
)


_CAMEL = {
    "user_id": "userId",
    "item_id": "itemId",
    "event_type": "eventType",
    "session_id": "sessionId",
    "request_id": "requestId",
    "event_ts": "eventTs",
}


def differences(sent: Event, stored: Event) -> list[str]:
    """The client-given fields in which an event sent again differs from the stored one."""
    out = [name for name in _COMPARED if getattr(sent, name) != getattr(stored, name)]
    stamped = sent.event_ts != sent.server_ts and stored.event_ts != stored.server_ts
    if stamped and sent.event_ts != stored.event_ts:
        out.append("event_ts")
    return out


class EventIngestor:
    """Validates events and hands the good ones to the writer, waiting until they are durable.

    Args:
        writer: the process's store writer (group commit).
        max_future_skew: how far ahead of the server a client's ``eventTs`` may be.
        ack_timeout_s: how long to wait for the commit before answering 503.
        on_stored: told the app and users of each durably stored batch.
        events: read for the stored event when an id is sent again (conflicts).
        on_accepted: told the app and the newly stored events (not the duplicates) of each
            durably stored batch; for metrics, so it must be quick and must not raise.
    """

    def __init__(
        self,
        writer: StoreWriter,
        *,
        max_future_skew: timedelta,
        ack_timeout_s: float,
        on_stored: Callable[[str, set[str]], None] = lambda app_id, users: None,
        events: EventLog | None = None,
        on_accepted: Callable[[str, Sequence[Event]], None] | None = None,
    ) -> None:
        self._events = events
        self._on_accepted = on_accepted
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
        try:
            conflicts = self._conflicts(app_id, good, ack)
        except RecloopError:
            log.warning("could not compare repeated event ids with the stored events")
            conflicts = {}
        return self._result(app_id, raw_events, good, rejected, ack, conflicts)

    def store(self, app_id: str, events: Sequence[Event]) -> EventAck:
        """Durably store events built by the service itself (already valid), blocking.

        Every event the service stores goes through here or ``store_async``, so that the
        users' cached lists are dropped once their events are durable.
        """
        if not events:
            return EventAck(0, 0)
        ack = self._writer.append_events(list(events), timeout=self._ack_timeout_s)
        self._on_stored(app_id, {e.user_id for e in events})
        self._accepted(app_id, events, ack)
        return ack

    def _accepted(self, app_id: str, events: Sequence[Event], ack: EventAck) -> None:
        if self._on_accepted is None:
            return
        repeated = set(ack.duplicate_positions)
        fresh = [e for i, e in enumerate(events) if i not in repeated] if repeated else events
        try:
            self._on_accepted(app_id, fresh)
        except Exception:
            # Counting is not worth an event: they are stored, and the answer says so.
            log.exception("could not count stored events")

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
        conflicts: dict[int, list[str]] = {}
        if ack.duplicate_positions:
            try:
                conflicts = await asyncio.wait_for(
                    asyncio.to_thread(self._conflicts, app_id, good, ack), self._ack_timeout_s
                )
            except (TimeoutError, RecloopError):
                # The events are stored; repeats not compared are answered as duplicates.
                log.warning("could not compare repeated event ids with the stored events")
        return self._result(app_id, raw_events, good, rejected, ack, conflicts)

    def _conflicts(self, app_id: str, good: Sequence[Event], ack: EventAck) -> dict[int, list[str]]:
        """Positions in ``good`` of repeated ids whose payload differs from the stored
        event's, with the differing fields."""
        if not ack.duplicate_positions or self._events is None:
            return {}
        repeated = {p: good[p] for p in ack.duplicate_positions}
        stored = self._events.get_events(app_id, {e.event_id for e in repeated.values()})
        out: dict[int, list[str]] = {}
        for position, event in repeated.items():
            kept = stored.get(event.event_id)
            if kept is not None and (fields := differences(event, kept)):
                out[position] = fields
        return out

    @staticmethod
    def _result(
        app_id: str,
        raw_events: Sequence[Any],
        good: Sequence[Event],
        rejected: list[Rejection],
        ack: EventAck,
        conflicts: dict[int, list[str]],
    ) -> IngestResult:
        # Positions in ``good`` back to indexes in the request.
        refused = {r.index for r in rejected}
        indexes = [i for i in range(len(raw_events)) if i not in refused]
        found = tuple(
            Rejection(
                indexes[position],
                "eventId",
                "already stored with a different "
                + ", ".join(_CAMEL.get(f, f) for f in fields)
                + "; the stored event is kept",
            )
            for position, fields in sorted(conflicts.items())
        )
        return IngestResult(ack.accepted, ack.duplicates - len(found), tuple(rejected), found)

    async def store_async(self, app_id: str, events: Sequence[Event]) -> EventAck:
        """``store`` for an event loop: waits for the commit without holding a thread.

        Raises:
            StoreUnavailable: the store did not confirm; nothing may be assumed stored.
        """
        if not events:
            return EventAck(0, 0)
        done = asyncio.wrap_future(self._writer.submit_events(list(events)))
        try:
            # Shielded: giving up must not cancel the submission under the writer, which
            # commits it anyway (the client retries with the same ids).
            ack = await asyncio.wait_for(asyncio.shield(done), self._ack_timeout_s)
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"events not confirmed within {self._ack_timeout_s:g} s"
            ) from exc
        self._on_stored(app_id, {e.user_id for e in events})
        self._accepted(app_id, events, ack)
        return ack
