"""The simulator's calls made on a running ``Runtime`` directly: the same code paths minus HTTP.

Both transports speak the HTTP API's JSON, so the world cannot tell them apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from recloop.ingest.wire import ItemIn, to_item, to_user, validate_records
from recloop.runtime.process import Runtime
from recloop.serving.recommender import RecommendationRequest
from recloop.serving.suggester import SuggestionRequest
from recloop.simulate.clients import Served, Suggested


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class InProcessClient:
    """Calls the runtime directly: the same code paths minus HTTP, for speed.

    ``received_at`` is the service's time when a write arrives (what it stamps as
    ``server_ts``): the wall clock, or a simulated service clock.
    """

    def __init__(
        self,
        runtime: Runtime,
        app_id: str = "default",
        received_at: Callable[[], datetime] = _wall_clock,
    ) -> None:
        self._runtime = runtime
        self._app_id = app_id
        self._received_at = received_at

    def put_items(self, items: list[dict[str, Any]]) -> None:
        """Insert or replace items."""
        good, rejected = validate_records(ItemIn, items)
        if rejected:
            raise RuntimeError(f"invalid simulated items: {rejected[:3]}")
        self._runtime.store.catalog.upsert_items(
            self._app_id, [to_item(i, i.item_id) for i in good], self._received_at()
        )

    def put_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        """Insert or replace a user."""
        self._runtime.store.users.upsert_users(
            self._app_id, [to_user(attributes, user_id)], self._received_at()
        )

    def recommend(
        self, user_id: str, surface: str, limit: int, session_id: str, device: str
    ) -> Served:
        """Ask the recommender directly."""
        started = time.perf_counter()
        result = self._runtime.recommender.recommend(
            self._app_id,
            RecommendationRequest(
                user_id=user_id, surface=surface, limit=limit, session_id=session_id, device=device
            ),
        )
        latency_ms = (time.perf_counter() - started) * 1000
        return Served(
            result.request_id,
            [i.item_id for i in result.items],
            result.fallback,
            latency_ms,
            result.variant,
        )

    def post_events(self, events: list[dict[str, Any]]) -> None:
        """Validate and store events as the API would."""
        result = self._runtime.ingestor.ingest(self._app_id, events, self._received_at())
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
        """Ask the runtime's suggester directly; a runtime without one suggests nothing."""
        suggester = self._runtime.suggester
        if suggester is None:
            # The user types every query; the world still measures its baseline and oracle
            # in the same typing states.
            return Suggested("", [], False, 0.0)
        started = time.perf_counter()
        result = suggester.suggest(
            self._app_id,
            SuggestionRequest(
                user_id=user_id,
                prefix=prefix,
                locale=locale,
                session_id=session_id,
                limit=limit,
                surface=surface or "suggest",
                item_id=item_id,
            ),
        )
        latency_ms = (time.perf_counter() - started) * 1000
        return Suggested(
            result.request_id,
            [s.query for s in result.suggestions],
            bool(result.fallback),
            latency_ms,
            result.variant,
            bool(result.cold),
        )
