"""How the simulator reaches the service: the calls it makes, and their HTTP transport.

The world knows only the public HTTP shape; an in-process transport with the same calls
(``recloop.demo.inprocess``) lives above the service, beside the CLI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from recloop.client import Client, NotFound


@dataclass(frozen=True, slots=True)
class Served:
    """One list as the client saw it."""

    request_id: str
    item_ids: list[str]
    fallback: bool
    latency_ms: float
    variant: str = "default"


@dataclass(frozen=True, slots=True)
class Suggested:
    """One suggestion list as the client saw it (empty, with no request id, where the
    service has no suggestions to give)."""

    request_id: str
    queries: list[str]
    fallback: bool
    latency_ms: float
    variant: str = "default"
    cold: bool = False


class ServiceClient(Protocol):
    """The calls the simulator makes (``suggest`` only with search on)."""

    def put_items(self, items: list[dict[str, Any]]) -> None:
        """Insert or replace items."""
        ...

    def put_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        """Insert or replace a user."""
        ...

    def recommend(
        self, user_id: str, surface: str, limit: int, session_id: str, device: str
    ) -> Served:
        """Ask for a list."""
        ...

    def post_events(self, events: list[dict[str, Any]]) -> None:
        """Send events (already valid; a refusal is an error of the simulator)."""
        ...

    def suggest(
        self,
        user_id: str,
        prefix: str,
        *,
        locale: str | None = None,
        session_id: str | None = None,
        limit: int = 8,
        surface: str | None = None,
        item_id: str | None = None,
    ) -> Suggested:
        """Ask for query suggestions for what has been typed."""
        ...


class HttpClient:
    """Talks to a running service over HTTP with an API key, through ``recloop.client`` (so
    every demo exercises the Python client users call)."""

    def __init__(
        self, base_url: str, key: str, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._client = Client(base_url, key, timeout_s=30, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def put_items(self, items: list[dict[str, Any]]) -> None:
        """Insert or replace items, 1000 per request."""
        refused = self._client.put_items(items)
        if refused:
            raise RuntimeError(f"the service rejected simulated items: {refused[:3]}")

    def put_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        """Insert or replace a user."""
        self._client.put_user(user_id, **attributes)

    def recommend(
        self, user_id: str, surface: str, limit: int, session_id: str, device: str
    ) -> Served:
        """Ask for a list; latency is measured around the call."""
        started = time.perf_counter()
        served = self._client.recommend(
            user_id, surface, limit=limit, session_id=session_id, device=device
        )
        latency_ms = (time.perf_counter() - started) * 1000
        return Served(
            served.request_id,
            [i.item_id for i in served.items],
            served.fallback,
            latency_ms,
            served.variant,
        )

    def post_events(self, events: list[dict[str, Any]]) -> None:
        """Send events (in the client's batches)."""
        result = self._client.send_events(events)
        if result.rejected:
            raise RuntimeError(f"the service rejected simulated events: {result.rejected[:3]}")

    def suggest(
        self,
        user_id: str,
        prefix: str,
        *,
        locale: str | None = None,
        session_id: str | None = None,
        limit: int = 8,
        surface: str | None = None,
        item_id: str | None = None,
    ) -> Suggested:
        """``GET /api/suggestions``; latency is measured around the call."""
        started = time.perf_counter()
        try:
            served = self._client.suggest(
                user_id, prefix, surface=surface, item_id=item_id, limit=limit, locale=locale,
                session_id=session_id,
            )  # fmt: skip
        except NotFound as exc:
            if exc.detail != "Not Found":
                raise
            # A service without the suggestion route (FastAPI's own 404) suggests nothing:
            # the user types every query, and the world's baseline and oracle still run.
            return Suggested("", [], False, (time.perf_counter() - started) * 1000)
        return Suggested(
            served.request_id,
            [s.query for s in served.suggestions],
            served.fallback,
            (time.perf_counter() - started) * 1000,
            served.variant,
            served.cold,
        )
