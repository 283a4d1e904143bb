"""Each call as a request to make, apart from how it is sent (sync or async)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

#: Events per request (the service's default limit is 1,000 a batch and 16 MiB a body).
BATCH = 500


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request, and whether sending it again is safe (it changes nothing twice)."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    idempotent: bool = True


def _id(value: str) -> str:
    return quote(value, safe="")


def event_batches(
    events: Iterable[Mapping[str, Any]], batch: int = BATCH
) -> list[list[dict[str, Any]]]:
    """The events with an ``eventId`` each (made here when absent, so that a retry is
    recognised as the same event), cut into batches."""
    out: list[list[dict[str, Any]]] = [[]]
    for event in events:
        sent = dict(event)
        sent.setdefault("eventId", uuid.uuid4().hex)
        if len(out[-1]) >= batch:
            out.append([])
        out[-1].append(sent)
    return [b for b in out if b]


def events(batch: list[dict[str, Any]]) -> Call:
    """``POST /api/events`` of one batch (safe to repeat: every event has its id)."""
    return Call("POST", "/api/events", body={"events": batch})


def recommend(
    user_id: str,
    surface: str,
    *,
    limit: int | None,
    item_id: str | None,
    category: str | None,
    exclude_ids: Iterable[str] | None,
    session_id: str | None,
    device: str | None,
    locale: str | None,
) -> Call:
    """``GET /api/recommendations``."""
    params: dict[str, Any] = {"userId": user_id, "surface": surface}
    for name, value in (
        ("limit", limit),
        ("itemId", item_id),
        ("category", category),
        ("sessionId", session_id),
        ("device", device),
        ("locale", locale),
    ):
        if value is not None:
            params[name] = value
    if exclude_ids:
        params["excludeIds"] = ",".join(exclude_ids)
    return Call("GET", "/api/recommendations", params)


def suggest(
    user_id: str,
    prefix: str,
    *,
    surface: str | None,
    item_id: str | None,
    limit: int | None,
    locale: str | None,
    session_id: str | None,
) -> Call:
    """``GET /api/suggestions``."""
    params: dict[str, Any] = {"userId": user_id, "prefix": prefix}
    for name, value in (
        ("surface", surface),
        ("itemId", item_id),
        ("limit", limit),
        ("locale", locale),
        ("sessionId", session_id),
    ):
        if value is not None:
            params[name] = value
    return Call("GET", "/api/suggestions", params)


def feedback(
    user_id: str, item_id: str, kind: str, request_id: str | None, surface: str | None
) -> Call:
    """``POST /api/recommendations/feedback`` (stored as a new event: not repeated on a
    lost connection, where it may have been stored)."""
    body: dict[str, Any] = {"userId": user_id, "itemId": item_id, "feedback": kind}
    if request_id is not None:
        body["requestId"] = request_id
    if surface is not None:
        body["surface"] = surface
    return Call("POST", "/api/recommendations/feedback", body=body, idempotent=False)


def put_item(item_id: str, fields: Mapping[str, Any]) -> Call:
    """``PUT /api/items/{itemId}``."""
    return Call("PUT", f"/api/items/{_id(item_id)}", body=dict(fields))


def put_items(items: list[dict[str, Any]]) -> Call:
    """``POST /api/items`` of up to 1,000 items."""
    return Call("POST", "/api/items", body={"items": items})


def item(method: str, item_id: str) -> Call:
    """``GET`` or ``DELETE /api/items/{itemId}``."""
    return Call(method, f"/api/items/{_id(item_id)}")


def put_user(user_id: str, attributes: Mapping[str, Any]) -> Call:
    """``PUT /api/users/{userId}``."""
    return Call("PUT", f"/api/users/{_id(user_id)}", body={"attributes": dict(attributes)})


def user(method: str, user_id: str) -> Call:
    """``GET`` or ``DELETE /api/users/{userId}``."""
    return Call(method, f"/api/users/{_id(user_id)}")
