"""The clients: the same calls, sent with httpx synchronously (``Client``) or on an event
loop (``AsyncClient``); retries, back-off and errors are shared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from recloop.client import requests as calls
from recloop.client.errors import (
    Conflict,
    InvalidRequest,
    Unavailable,
    error_for,
    retry_after_seconds,
)
from recloop.client.models import EventsResult, Recommendations, Suggestions
from recloop.client.requests import Call

#: The longest wait between two tries, whatever ``Retry-After`` asks.
MAX_WAIT_S = 10.0


def _wait_before_retry(
    call: Call, attempt: int, retries: int, backoff_s: float, status: int | None,
    retry_after: str | None,
) -> float | None:  # fmt: skip
    """Seconds to wait before trying ``call`` again, or None to stop: a lost connection or
    a 503 are tried again when the call is safe to repeat, a 429 always, each up to
    ``retries`` times with exponential back-off (or the ``Retry-After`` asked, if longer)."""
    if attempt >= retries:
        return None
    backoff = backoff_s * 2.0**attempt
    if status is None or status == 503:
        if not call.idempotent:
            return None
        asked = retry_after_seconds(retry_after, 0.0) if status == 503 else 0.0
        return min(MAX_WAIT_S, max(backoff, asked))
    if status == 429:
        return min(MAX_WAIT_S, max(backoff, retry_after_seconds(retry_after)))
    return None


def _result(response: httpx.Response) -> Any:
    """The JSON body of a success (None when empty), or the error the status stands for."""
    body: Any = None
    if response.content:
        try:
            body = response.json()
        except ValueError:
            body = response.text
    if response.status_code >= 400:
        raise error_for(response.status_code, body, response.headers.get("retry-after"))
    return body


def _batch_answer(exc: InvalidRequest | Conflict) -> dict[str, Any]:
    """The per-event answer a 409 or 422 to a batch of events carries, or the error again
    when it carries none (the body itself was refused)."""
    if isinstance(exc.body, dict) and "accepted" in exc.body:
        return exc.body
    raise exc


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": "recloop-client"}


class Client:
    """A recloop service, called synchronously.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: a key with the scopes the calls need (ingest, serve, admin).
        timeout_s: per request.
        retries: tries after the first, for lost connections, 503 and 429.
        backoff_s: the first wait between tries; doubled each time.
        transport: an httpx transport (tests, proxies); the default connects over TCP.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )
        self._retries = retries
        self._backoff_s = backoff_s

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params or None, json=call.body
                )
            except httpx.TransportError as exc:
                wait = _wait_before_retry(call, attempt, self._retries, self._backoff_s, None, None)
                if wait is None:
                    raise Unavailable(0, f"no answer: {exc}", []) from exc
            else:
                status, asked = response.status_code, response.headers.get("retry-after")
                wait = _wait_before_retry(
                    call, attempt, self._retries, self._backoff_s, status, asked
                )
                if status < 400 or wait is None:
                    return _result(response)
            time.sleep(wait)
            attempt += 1

    def send_events(self, events: Iterable[Mapping[str, Any]]) -> EventsResult:
        """Send events in batches; each gets an ``eventId`` here if it has none, so retries
        store nothing twice. Refused events are listed by their index in ``events``."""
        result = EventsResult()
        offset = 0
        for batch in calls.event_batches(events):
            result.event_ids.extend(e["eventId"] for e in batch)
            try:
                result.add(self._send(calls.events(batch)), offset)
            except (InvalidRequest, Conflict) as exc:
                result.add(_batch_answer(exc), offset)  # nothing of the batch was new
            offset += len(batch)
        return result

    def recommend(
        self,
        user_id: str,
        surface: str = "home",
        *,
        limit: int | None = None,
        item_id: str | None = None,
        category: str | None = None,
        exclude_ids: Iterable[str] | None = None,
        session_id: str | None = None,
        device: str | None = None,
        locale: str | None = None,
    ) -> Recommendations:
        """A list for the user on ``surface`` (``similar`` needs ``item_id``)."""
        call = calls.recommend(
            user_id, surface, limit=limit, item_id=item_id, category=category,
            exclude_ids=exclude_ids, session_id=session_id, device=device, locale=locale,
        )  # fmt: skip
        return Recommendations.from_json(self._send(call))

    def suggest(
        self,
        user_id: str,
        prefix: str = "",
        *,
        surface: str | None = None,
        item_id: str | None = None,
        limit: int | None = None,
        locale: str | None = None,
        session_id: str | None = None,
    ) -> Suggestions:
        """Suggested queries for what the user typed (``""``: before typing)."""
        call = calls.suggest(
            user_id, prefix, surface=surface, item_id=item_id, limit=limit, locale=locale,
            session_id=session_id,
        )  # fmt: skip
        return Suggestions.from_json(self._send(call))

    def feedback(
        self,
        user_id: str,
        item_id: str,
        feedback: str,
        *,
        request_id: str | None = None,
        surface: str | None = None,
    ) -> dict[str, Any]:
        """``not_interested``, ``hide`` or ``report``: never served to the user again."""
        answer: dict[str, Any] = self._send(
            calls.feedback(user_id, item_id, feedback, request_id, surface)
        )
        return answer

    def put_item(self, item_id: str, **fields: Any) -> dict[str, Any]:
        """Insert or replace an item (camelCase fields: title, category, tags, ...)."""
        stored: dict[str, Any] = self._send(calls.put_item(item_id, fields))
        return stored

    def put_items(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Insert or replace items (each with its ``itemId``), 1,000 a request; the refused
        ones, by index."""
        rows = [dict(i) for i in items]
        refused: list[dict[str, Any]] = []
        for start in range(0, len(rows), 1000):
            answer = self._send(calls.put_items(rows[start : start + 1000]))
            refused += [{**r, "index": r["index"] + start} for r in answer["rejected"]]
        return refused

    def get_item(self, item_id: str) -> dict[str, Any]:
        """One item (NotFound when there is none)."""
        found: dict[str, Any] = self._send(calls.item("GET", item_id))
        return found

    def delete_item(self, item_id: str) -> None:
        """Delete an item; it is never served again."""
        self._send(calls.item("DELETE", item_id))

    def put_user(self, user_id: str, **attributes: Any) -> dict[str, Any]:
        """Insert or replace a user's attributes."""
        stored: dict[str, Any] = self._send(calls.put_user(user_id, attributes))
        return stored

    def get_user(self, user_id: str) -> dict[str, Any]:
        """One user (NotFound when there is none)."""
        found: dict[str, Any] = self._send(calls.user("GET", user_id))
        return found

    def delete_user(self, user_id: str) -> None:
        """Delete everything stored about a user."""
        self._send(calls.user("DELETE", user_id))


class AsyncClient:
    """A recloop service, called on an event loop; the same calls as ``Client``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )
        self._retries = retries
        self._backoff_s = backoff_s

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params or None, json=call.body
                )
            except httpx.TransportError as exc:
                wait = _wait_before_retry(call, attempt, self._retries, self._backoff_s, None, None)
                if wait is None:
                    raise Unavailable(0, f"no answer: {exc}", []) from exc
            else:
                status, asked = response.status_code, response.headers.get("retry-after")
                wait = _wait_before_retry(
                    call, attempt, self._retries, self._backoff_s, status, asked
                )
                if status < 400 or wait is None:
                    return _result(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> EventsResult:
        """``Client.send_events``."""
        result = EventsResult()
        offset = 0
        for batch in calls.event_batches(events):
            result.event_ids.extend(e["eventId"] for e in batch)
            try:
                result.add(await self._send(calls.events(batch)), offset)
            except (InvalidRequest, Conflict) as exc:
                result.add(_batch_answer(exc), offset)
            offset += len(batch)
        return result

    async def recommend(
        self,
        user_id: str,
        surface: str = "home",
        *,
        limit: int | None = None,
        item_id: str | None = None,
        category: str | None = None,
        exclude_ids: Iterable[str] | None = None,
        session_id: str | None = None,
        device: str | None = None,
        locale: str | None = None,
    ) -> Recommendations:
        """``Client.recommend``."""
        call = calls.recommend(
            user_id, surface, limit=limit, item_id=item_id, category=category,
            exclude_ids=exclude_ids, session_id=session_id, device=device, locale=locale,
        )  # fmt: skip
        return Recommendations.from_json(await self._send(call))

    async def suggest(
        self,
        user_id: str,
        prefix: str = "",
        *,
        surface: str | None = None,
        item_id: str | None = None,
        limit: int | None = None,
        locale: str | None = None,
        session_id: str | None = None,
    ) -> Suggestions:
        """``Client.suggest``."""
        call = calls.suggest(
            user_id, prefix, surface=surface, item_id=item_id, limit=limit, locale=locale,
            session_id=session_id,
        )  # fmt: skip
        return Suggestions.from_json(await self._send(call))

    async def feedback(
        self,
        user_id: str,
        item_id: str,
        feedback: str,
        *,
        request_id: str | None = None,
        surface: str | None = None,
    ) -> dict[str, Any]:
        """``Client.feedback``."""
        answer: dict[str, Any] = await self._send(
            calls.feedback(user_id, item_id, feedback, request_id, surface)
        )
        return answer

    async def put_item(self, item_id: str, **fields: Any) -> dict[str, Any]:
        """``Client.put_item``."""
        stored: dict[str, Any] = await self._send(calls.put_item(item_id, fields))
        return stored

    async def get_item(self, item_id: str) -> dict[str, Any]:
        """``Client.get_item``."""
        found: dict[str, Any] = await self._send(calls.item("GET", item_id))
        return found

    async def delete_item(self, item_id: str) -> None:
        """``Client.delete_item``."""
        await self._send(calls.item("DELETE", item_id))

    async def put_user(self, user_id: str, **attributes: Any) -> dict[str, Any]:
        """``Client.put_user``."""
        stored: dict[str, Any] = await self._send(calls.put_user(user_id, attributes))
        return stored

    async def get_user(self, user_id: str) -> dict[str, Any]:
        """``Client.get_user``."""
        found: dict[str, Any] = await self._send(calls.user("GET", user_id))
        return found

    async def delete_user(self, user_id: str) -> None:
        """``Client.delete_user``."""
        await self._send(calls.user("DELETE", user_id))
