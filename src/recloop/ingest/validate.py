"""Event rules: turn one raw JSON event into an ``Event``, or say which field broke which rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from recloop.domain import Event, EventType
from recloop.errors import InvalidInput
from recloop.ingest.wire import EventIn, first_error
from recloop.suggest.normalize import validate_query
from recloop.suggest.pii import scrub


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one event of a batch was refused."""

    index: int
    field: str
    reason: str


def validate_event(
    raw: Any, *, app_id: str, now: datetime, max_future_skew: timedelta, index: int = 0
) -> Event | Rejection:
    """Check one raw event against every rule and stamp it for storage.

    Args:
        raw: the decoded JSON value the client sent for this event.
        app_id: the app the caller's key belongs to.
        now: the server's arrival time (UTC), stamped as ``server_ts``.
        max_future_skew: how far ahead of ``now`` a client clock may be.
        index: the event's position in its batch, for the rejection.

    Returns:
        The event ready to append, or the first rule it broke.
    """
    if not isinstance(raw, dict):
        return Rejection(index, "event", "must be a JSON object")
    try:
        event = EventIn.model_validate(raw)
    except ValidationError as exc:
        return Rejection(index, *first_error(exc))
    if event.item_id is None and event.event_type is not EventType.SEARCH:
        return Rejection(index, "itemId", f"required for eventType {event.event_type.value!r}")
    query: str | None = None
    if event.query is not None:
        try:
            validate_query(event.query)
        except InvalidInput as exc:
            return Rejection(index, exc.field, exc.rule)
        # Stored scrubbed: an e-mail or card number typed into a search box is never kept.
        query = scrub(event.query).text
    event_ts = now
    if event.event_ts is not None:
        event_ts = event.event_ts
        if event_ts.tzinfo is None:
            event_ts = event_ts.replace(tzinfo=UTC)
        try:
            event_ts = event_ts.astimezone(UTC)
        except (OverflowError, ValueError):
            return Rejection(index, "eventTs", "must be a time that exists in UTC")
        if event_ts > now + max_future_skew:
            return Rejection(
                index,
                "eventTs",
                f"must not be more than {max_future_skew.total_seconds():g} s "
                "ahead of the server clock",
            )
    return Event(
        app_id=app_id,
        event_id=event.event_id or uuid.uuid4().hex,
        user_id=event.user_id,
        event_type=event.event_type,
        event_ts=event_ts,
        server_ts=now,
        item_id=event.item_id,
        value=event.value,
        surface=event.surface,
        session_id=event.session_id,
        device=event.device,
        position=event.position,
        request_id=event.request_id,
        context=event.context,
        query=query,
    )
