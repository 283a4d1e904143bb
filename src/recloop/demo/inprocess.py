"""The simulator's calls made on a running ``Runtime`` directly: the same code paths minus HTTP.

Both transports speak the HTTP API's JSON, so the world cannot tell them apart.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from recloop.ingest.wire import ItemIn, to_item, to_user, validate_records
from recloop.runtime.process import Runtime
from recloop.serving.recommender import RecommendationRequest
from recloop.simulate.clients import Served


class InProcessClient:
    """Calls the runtime directly: the same code paths minus HTTP, for speed."""

    def __init__(self, runtime: Runtime, app_id: str = "default") -> None:
        self._runtime = runtime
        self._app_id = app_id

    def put_items(self, items: list[dict[str, Any]]) -> None:
        """Insert or replace items."""
        good, rejected = validate_records(ItemIn, items)
        if rejected:
            raise RuntimeError(f"invalid simulated items: {rejected[:3]}")
        self._runtime.store.catalog.upsert_items(
            self._app_id, [to_item(i, i.item_id) for i in good], datetime.now(UTC)
        )

    def put_user(self, user_id: str, attributes: dict[str, Any]) -> None:
        """Insert or replace a user."""
        self._runtime.store.users.upsert_users(
            self._app_id, [to_user(attributes, user_id)], datetime.now(UTC)
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
        result = self._runtime.ingestor.ingest(self._app_id, events, datetime.now(UTC))
        if result.rejected:
            raise RuntimeError(f"the service rejected simulated events: {result.rejected[:3]}")
