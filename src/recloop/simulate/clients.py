"""How the simulator reaches the service: the calls it makes, and their HTTP transport.

The world knows only the public HTTP shape; an in-process transport with the same calls
(``recloop.demo.inprocess``) lives above the service, beside the CLI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx


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
    """Talks to a running service over HTTP with an API key."""

    def __init__(self, base_url: str, key: str) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def put_items(self, items: list[dict[str, Any]]) -> None:
        """Insert or replace items, 1000 per request."""
        for start in range(0, len(items), 1000):
            self._http.post(
                "/api/items", json={"items": items[start : start + 1000]}
            ).raise_for_status()

    def put_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        """Insert or replace a user."""
        self._http.put(f"/api/users/{user_id}", json={"attributes": attributes}).raise_for_status()

    def recommend(
        self, user_id: str, surface: str, limit: int, session_id: str, device: str
    ) -> Served:
        """Ask for a list; latency is measured around the HTTP call."""
        started = time.perf_counter()
        response = self._http.get(
            "/api/recommendations",
            params={
                "userId": user_id,
                "surface": surface,
                "limit": limit,
                "sessionId": session_id,
                "device": device,
            },
        )
        latency_ms = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        body = response.json()
        return Served(
            body["requestId"],
            [i["itemId"] for i in body["items"]],
            body["fallback"],
            latency_ms,
            body["variant"],
        )

    def post_events(self, events: list[dict[str, Any]]) -> None:
        """Send events in batches of at most 1000."""
        for start in range(0, len(events), 1000):
            response = self._http.post("/api/events", json={"events": events[start : start + 1000]})
            response.raise_for_status()
            if response.json()["rejected"]:
                raise RuntimeError(
                    f"the service rejected simulated events: {response.json()['rejected'][:3]}"
                )

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
        """``GET /api/suggestions``; latency is measured around the HTTP call."""
        params: dict[str, str | int] = {"userId": user_id, "prefix": prefix, "limit": limit}
        for name, value in (
            ("locale", locale),
            ("sessionId", session_id),
            ("surface", surface),
            ("itemId", item_id),
        ):
            if value is not None:
                params[name] = value
        started = time.perf_counter()
        response = self._http.get("/api/suggestions", params=params)
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code == 404 and _no_route(response):
            # A service without the suggestion route (FastAPI's own 404) suggests nothing:
            # the user types every query, and the world's baseline and oracle still run.
            return Suggested("", [], False, latency_ms)
        response.raise_for_status()
        body = response.json()
        return Suggested(
            body["requestId"],
            [s["query"] for s in body["suggestions"]],
            body["fallback"],
            latency_ms,
            body["variant"],
            bool(body.get("cold", False)),
        )


def _no_route(response: httpx.Response) -> bool:
    """Whether a 404 is the framework's "no such route" rather than the route's own."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("detail") == "Not Found"
