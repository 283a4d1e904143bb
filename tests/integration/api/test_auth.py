"""API keys: who may call what."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from recloop.config import Settings
from recloop.store import open_store
from recloop.store.keys import key_id_of

pytestmark = pytest.mark.integration

EVENT = {"userId": "u1", "itemId": "i1", "eventType": "click"}

PROTECTED = [
    ("GET", "/api/recommendations?userId=u1", None),
    ("POST", "/api/recommendations/feedback", {"userId": "u1", "itemId": "i1", "feedback": "hide"}),
    ("POST", "/api/events", EVENT),
    ("PUT", "/api/items/i1", {"title": "t"}),
    ("POST", "/api/items", {"items": [{"itemId": "i1"}]}),
    ("GET", "/api/items/i1", None),
    ("DELETE", "/api/items/i1", None),
    ("PUT", "/api/users/u1", {"attributes": {}}),
    ("GET", "/api/users/u1", None),
    ("DELETE", "/api/users/u1", None),
    ("GET", "/metrics", None),
]


def events_stored(client: TestClient) -> int:
    count: int = client.app.state.runtime.store.events.count("default")  # type: ignore[attr-defined]
    return count


@pytest.mark.parametrize(("method", "url", "body"), PROTECTED)
def test_a_request_without_a_key_is_401_with_www_authenticate(
    client: TestClient, method: str, url: str, body: object
) -> None:
    del client.headers["Authorization"]

    response = client.request(method, url, json=body)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["errors"] == []
    assert "Authorization" in response.json()["detail"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Bearer rl_000000000000_not-the-secret",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
    ids=["garbage", "well-formed-unknown", "basic-scheme", "empty"],
)
def test_a_bad_key_is_401(client: TestClient, authorization: str) -> None:
    response = client.post("/api/events", json=EVENT, headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert events_stored(client) == 0


def test_a_known_key_id_with_the_wrong_secret_is_401(client: TestClient, dev_key: str) -> None:
    key_id = key_id_of(dev_key)
    forged = f"rl_{key_id}_{'x' * 32}"

    response = client.post("/api/events", json=EVENT, headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert events_stored(client) == 0


def test_a_serve_only_key_cannot_post_events(client: TestClient, serve_key: str) -> None:
    headers = {"Authorization": f"Bearer {serve_key}"}

    response = client.post("/api/events", json=EVENT, headers=headers)

    assert response.status_code == 403
    assert "ingest" in response.json()["detail"]
    assert events_stored(client) == 0
    # The key itself is good: it serves.
    assert client.get("/api/recommendations?userId=u1", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("PUT", "/api/items/i1", {"title": "t"}),
        ("DELETE", "/api/items/i1", None),
        ("DELETE", "/api/users/u1", None),
        ("GET", "/metrics", None),
    ],
)
def test_a_serve_only_key_cannot_write_or_administer(
    client: TestClient, serve_key: str, method: str, url: str, body: object
) -> None:
    response = client.request(
        method, url, json=body, headers={"Authorization": f"Bearer {serve_key}"}
    )

    assert response.status_code == 403


def test_an_ingest_only_key_posts_events_but_cannot_read_recommendations(
    client: TestClient, ingest_key: str
) -> None:
    headers = {"Authorization": f"Bearer {ingest_key}"}

    assert client.post("/api/events", json=EVENT, headers=headers).status_code == 202
    assert client.get("/api/recommendations?userId=u1", headers=headers).status_code == 403
    assert events_stored(client) == 1


def test_feedback_accepts_an_ingest_or_a_serve_key(
    client: TestClient, ingest_key: str, serve_key: str
) -> None:
    assert client.put("/api/items/i1", json={}).status_code == 200
    body = {"userId": "u1", "itemId": "i1", "feedback": "hide"}

    for key in (ingest_key, serve_key):
        response = client.post(
            "/api/recommendations/feedback", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 202, response.text


def test_a_revoked_key_is_refused(client: TestClient, settings: Settings, serve_key: str) -> None:
    store = open_store(settings.resolved_store_url())
    key_id = key_id_of(serve_key)
    assert key_id is not None
    assert store.tenancy.revoke_key(key_id, datetime.now(UTC))
    store.close()

    response = client.get(
        "/api/recommendations?userId=u1", headers={"Authorization": f"Bearer {serve_key}"}
    )

    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_routes_need_no_key(client: TestClient, path: str) -> None:
    del client.headers["Authorization"]

    response = client.get(path)

    assert response.status_code == 200
    assert response.json()["status"] in {"ok", "ready"}
