"""Keys under pressure: revocation reaches a running process within a second, failed key
checks from one address are limited before they reach the store, and each key keeps to
its scope's rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recloop.config import Settings
from recloop.store import open_store
from recloop.store.keys import key_id_of
from tests.factories import settings_with

pytestmark = pytest.mark.integration

FAILURES_PER_S = 2.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(
        tmp_path / "data",
        serving={
            "key_cache_ttl_s": 60.0,
            "revocation_check_s": 0.2,
            "auth_failures_per_s": FAILURES_PER_S,
            "rate_limits": {"serve": 3.0},
        },
    )


def _count_lookups(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    tenancy = client.app.state.runtime.store.tenancy  # type: ignore[attr-defined]
    asked: list[str] = []
    real: Callable[[str], Any] = tenancy.get_key

    def get_key(key_id: str) -> Any:
        asked.append(key_id)
        return real(key_id)

    monkeypatch.setattr(tenancy, "get_key", get_key)
    return asked


def test_a_revoked_key_stops_working_within_the_check_interval_despite_the_cache(
    client: TestClient, settings: Settings, serve_key: str
) -> None:
    headers = {"Authorization": f"Bearer {serve_key}"}
    assert client.get("/api/items/none", headers=headers).status_code == 404  # cached now
    store = open_store(settings.resolved_store_url())
    key_id = key_id_of(serve_key)
    assert key_id is not None
    assert store.tenancy.revoke_key(key_id, datetime.now(UTC))
    store.close()

    deadline = time.monotonic() + 3.0
    while client.get("/api/items/none", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key still works after 3 s"
        time.sleep(0.05)


def test_an_unknown_key_is_looked_up_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _count_lookups(client, monkeypatch)
    bogus = {"Authorization": "Bearer rl_0123456789ab_notarealsecret"}

    first = client.get("/api/items/i1", headers=bogus)
    second = client.get("/api/items/i1", headers=bogus)

    assert (first.status_code, second.status_code) == (401, 401)
    assert asked == ["0123456789ab"]


def test_failed_key_checks_from_one_address_get_429_without_a_lookup(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _count_lookups(client, monkeypatch)
    statuses = [
        client.get("/api/items/i1", headers={"Authorization": f"Bearer rl_{n:012x}_x"}).status_code
        for n in range(10)
    ]

    burst = int(2 * FAILURES_PER_S)
    assert statuses == [401] * burst + [429] * (10 - burst)
    assert len(asked) == burst
    limited = client.get("/api/items/i1", headers={"Authorization": "Bearer rl_ffffffffffff_x"})
    assert int(limited.headers["retry-after"]) >= 1
    assert "too many failed key checks" in limited.json()["detail"]


def test_a_key_over_its_scope_rate_gets_429_and_other_scopes_are_not_limited(
    client: TestClient,
) -> None:
    serve = [client.get("/api/items/none").status_code for _ in range(6)]
    assert serve[:3] == [404, 404, 404]
    assert 429 in serve[3:]
    limited = client.get("/api/items/none")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert "serve rate (3 requests a second)" in limited.json()["detail"]
    # The development key holds every scope; ingest has no limit configured.
    event = {"userId": "u1", "itemId": "i1", "eventType": "click"}
    assert all(client.post("/api/events", json=event).status_code == 202 for _ in range(6))
