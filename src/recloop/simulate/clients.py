"""How the simulator reaches the service: the four calls it makes, and their HTTP transport.

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


class ServiceClient(Protocol):
    """The four calls the simulator makes."""

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
