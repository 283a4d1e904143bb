"""Fixtures for the HTTP API tests: extra keys, and a small client-side helper."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recloop.config import Settings
from recloop.domain import Scope
from recloop.runtime.process import Runtime
from recloop.store import open_store
from recloop.store.bootstrap import DEFAULT_APP
from recloop.store.keys import issue_key


def key_with(settings: Settings, *scopes: Scope) -> str:
    """A new key of the default app holding only ``scopes``, issued on a store of its own."""
    store = open_store(settings.resolved_store_url())
    try:
        return issue_key(store.tenancy, DEFAULT_APP, scopes, datetime.now(UTC), name="test key")
    finally:
        store.close()


@pytest.fixture
def serve_key(settings: Settings, dev_key: str) -> str:
    """A key with only the ``serve`` scope."""
    return key_with(settings, Scope.SERVE)


@pytest.fixture
def ingest_key(settings: Settings, dev_key: str) -> str:
    """A key with only the ``ingest`` scope."""
    return key_with(settings, Scope.INGEST)


class Api:
    """The calls the tests repeat, through the authenticated test client."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def put_item(self, item_id: str, **fields: Any) -> dict[str, Any]:
        response = self.client.put(f"/api/items/{item_id}", json=fields)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def put_items(self, categories: Mapping[str, str | None]) -> None:
        items = [{"itemId": i, "category": c} for i, c in categories.items()]
        response = self.client.post("/api/items", json={"items": items})
        assert response.status_code == 200, response.text
        assert response.json()["rejected"] == []

    def post_events(self, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        response = self.client.post("/api/events", json={"events": list(events)})
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        assert body["rejected"] == [], body
        return body

    def engage(self, counts: Mapping[str, int], event_type: str = "click") -> None:
        """``counts[item]`` events, each by a different made-up user."""
        self.post_events(
            {"userId": f"fan-{item}-{n}", "itemId": item, "eventType": event_type}
            for item, count in counts.items()
            for n in range(count)
        )

    def refresh(self) -> None:
        """Fold new events and catalog changes into popularity now."""
        self.runtime.refresher.refresh()

    def recommend(self, **params: Any) -> dict[str, Any]:
        params.setdefault("limit", 50)
        response = self.client.get("/api/recommendations", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def recommended_ids(self, **params: Any) -> list[str]:
        return [item["itemId"] for item in self.recommend(**params)["items"]]

    def old_and_new_items(self, new: int) -> Api:
        """Ten old items, popular in order (``old0`` most), and ``new`` items nobody engaged
        with: what popularity serves and what a ``newest`` source serves never overlap."""
        self.put_items({f"old{n}": "Drama" for n in range(10)})
        self.engage({f"old{n}": 10 - n for n in range(10)})
        for n in range(new):
            self.put_item(f"new{n}", category="Drama")
        self.refresh()
        return self


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)


@pytest.fixture
def lenient_client(client: TestClient) -> TestClient:
    """The same running app, answering a server error with a 500 instead of raising it."""
    lenient = TestClient(client.app, raise_server_exceptions=False)
    lenient.headers["Authorization"] = client.headers["Authorization"]
    return lenient


def error_fields(response: Any) -> list[str]:
    """The fields named by an error response's ``errors``."""
    return [error["field"] for error in response.json()["errors"]]
