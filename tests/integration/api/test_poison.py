"""Poison values through every route, on SQLite and PostgreSQL alike: a NUL character in an
id, a session or a device gets 422 naming the parameter, never a 500, and never a served
list lost from the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.config import Settings
from recloop.store import open_store
from recloop.store.bootstrap import DEFAULT_APP, ensure_dev_key, prepare_store
from recloop.store.migrate import upgrade
from tests.factories import settings_with

pytestmark = pytest.mark.integration

NUL = "\x00"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return settings_with(tmp_path / "data")
    url: str = request.getfixturevalue("postgres_url")
    store = open_store(url)
    upgrade(store.engine)
    store.close()
    return settings_with(tmp_path / "data", store_url=url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = prepare_store(settings)
    key = ensure_dev_key(store, settings.data_dir)
    store.close()
    assert key is not None
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {key}"
        test_client.put("/api/items/i1", json={"category": "c1"}).raise_for_status()
        yield test_client


CASES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/api/items/i%00", None, "itemId"),
    ("PUT", "/api/items/i%00", {"category": "c1"}, "itemId"),
    ("DELETE", "/api/items/i%00", None, "itemId"),
    ("GET", "/api/users/u%00", None, "userId"),
    ("PUT", "/api/users/u%00", {"attributes": {}}, "userId"),
    ("DELETE", "/api/users/u%00", None, "userId"),
    ("GET", "/api/recommendations?userId=u%00", None, "userId"),
    ("GET", "/api/recommendations?userId=u1&sessionId=s%00", None, "sessionId"),
    ("GET", "/api/recommendations?userId=u1&device=d%00", None, "device"),
    ("GET", "/api/recommendations?userId=u1&locale=l%00", None, "locale"),
    ("GET", "/api/recommendations?userId=u1&category=c%00", None, "category"),
    ("GET", "/api/recommendations?userId=u1&excludeIds=i%00", None, "excludeIds"),
    ("GET", "/api/recommendations?userId=u1&surface=similar&itemId=i%00", None, "itemId"),
    ("GET", "/api/suggestions?userId=u%00", None, "userId"),
    ("GET", "/api/suggestions?userId=u1&sessionId=s%00", None, "sessionId"),
    ("GET", "/api/admin/experiments/e%00/report", None, "name"),
    ("PUT", "/api/items/i2", {"title": f"a{NUL}b"}, "title"),
    ("PUT", "/api/users/u2", {"attributes": {"k": NUL}}, "attributes"),
    (
        "POST",
        "/api/events",
        {"userId": "u1", "itemId": "i1", "eventType": "click", "sessionId": f"s{NUL}"},
        "sessionId",
    ),
    (
        "POST",
        "/api/events",
        {"userId": "u1", "itemId": "i1", "eventType": "click", "device": f"d{NUL}"},
        "device",
    ),
]


@pytest.mark.parametrize(("method", "url", "body", "field"), CASES)
def test_a_nul_character_is_refused_naming_the_field(
    client: TestClient, method: str, url: str, body: dict[str, Any] | None, field: str
) -> None:
    response = client.request(method, url, json=body)

    assert response.status_code == 422, response.text
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(f == field or f.endswith(f".{field}") for f in fields), fields


def test_served_lists_beside_refused_requests_are_all_logged(client: TestClient) -> None:
    served = []
    for n in range(20):
        if n % 4 == 0:
            refused = client.get("/api/recommendations", params={"userId": "u1", "sessionId": NUL})
            assert refused.status_code == 422
        answer = client.get("/api/recommendations", params={"userId": f"u{n}", "sessionId": "s"})
        assert answer.status_code == 200
        served.append(answer.json()["requestId"])
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.writer.flush()

    assert all(runtime.store.rec_log.get(DEFAULT_APP, request_id) for request_id in served)
    assert runtime.writer.stats.logs_dropped == 0


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", "/api/items/i2"),
        ("POST", "/api/items"),
        ("PUT", "/api/users/u2"),
        ("POST", "/api/recommendations/feedback"),
        ("POST", "/api/events"),
        ("PUT", "/api/admin/suggestions/blocklist"),
    ],
)
def test_a_body_that_is_not_json_gets_the_same_error_on_every_route(
    client: TestClient, method: str, url: str
) -> None:
    response = client.request(
        method, url, content=b'{"itemId": "i', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    body = response.json()
    assert [e["field"] for e in body["errors"]] == ["body"]
    assert body["errors"][0]["rule"].startswith("invalid JSON")
    assert body["detail"].startswith("body: invalid JSON")
