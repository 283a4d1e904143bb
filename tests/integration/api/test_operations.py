"""``/metrics``, ``/readyz`` and the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recloop.config import Settings
from recloop.domain import Scope
from recloop.errors import StoreUnavailable
from recloop.store import open_store
from recloop.store.keys import issue_key
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration

ROUTES = {
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/api/events": {"post"},
    "/api/recommendations": {"get"},
    "/api/recommendations/feedback": {"post"},
    "/api/suggestions": {"get"},
    "/api/admin/suggestions/blocklist": {"get", "put"},
    "/api/items": {"post"},
    "/api/items/{itemId}": {"put", "get", "delete"},
    "/api/users/{userId}": {"put", "get", "delete"},
    "/api/admin/experiments": {"get"},
    "/api/admin/experiments/{name}/report": {"get"},
    "/api/admin/shadows": {"get"},
    "/api/admin/shadows/{name}/report": {"get"},
}


def test_metrics_need_a_key(client: TestClient) -> None:
    del client.headers["Authorization"]

    assert client.get("/metrics").status_code == 401


def test_metrics_need_the_admin_scope(client: TestClient, serve_key: str, ingest_key: str) -> None:
    for key in (serve_key, ingest_key):
        response = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 403


def test_metrics_expose_event_and_recommendation_counters(client: TestClient, api: Api) -> None:
    api.post_events([{"userId": "u1", "itemId": "i1", "eventType": "click"}])
    client.post("/api/events", json={"events": [{"userId": "u1", "eventType": "nope"}] * 2})
    api.recommend(userId="u1", surface="trending")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE recloop_events_total counter" in text
    assert 'recloop_events_total{app="default",outcome="accepted"} 1.0' in text
    assert 'recloop_events_total{app="default",outcome="rejected"} 2.0' in text
    assert (
        'recloop_recommendations_total{app="default",fallback="true",surface="trending"} 1.0'
        in text
    )
    assert "recloop_recommendation_seconds_bucket" in text
    assert "recloop_event_commits" in text


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_openapi_lists_every_route(openapi: dict[str, Any]) -> None:
    paths = {path: set(operations) for path, operations in openapi["paths"].items()}

    assert paths == ROUTES


def test_openapi_documents_the_event_body_schemas(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]

    assert {"EventIn", "EventBatchIn"} <= set(schemas)
    assert {"userId", "itemId", "eventType", "eventTs", "requestId", "position"} <= set(
        schemas["EventIn"]["properties"]
    )
    assert set(schemas["EventIn"]["required"]) == {"userId", "eventType"}
    body = openapi["paths"]["/api/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/EventIn"},
        {"$ref": "#/components/schemas/EventBatchIn"},
    ]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def test_every_openapi_reference_resolves(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    prefix = "#/components/schemas/"

    refs = _refs(openapi)

    assert refs
    assert all(ref.startswith(prefix) for ref in refs)
    assert {ref.removeprefix(prefix) for ref in refs} <= set(schemas)


def test_openapi_declares_bearer_auth_on_protected_routes(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            secured = "security" in operation
            assert secured == (path not in {"/healthz", "/readyz"}), f"{method} {path}"


def _driver_failure(text: str) -> Callable[[], None]:
    """A probe that fails as a driver's error translated at the store's edge does."""

    def fail() -> None:
        error = StoreUnavailable(text)
        error.from_driver = True
        raise error

    return fail


def test_readyz_names_each_check_when_ready(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert checks["store_read"] == checks["store_write"] == checks["online_store"] == "ok"
    assert checks["writer_queue"] >= 0
    assert checks["models"] == {}  # nothing trained: cold, not a failure


def test_readyz_is_degraded_while_the_online_store_fails(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.runtime.online, "ping", _driver_failure("redis 10.0.0.7:6379 down"))

    response = client.get("/readyz")

    assert response.status_code == 200  # it still serves, on default features
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["online_store"] == "failed"
    assert "10.0.0.7" not in response.text


def test_readyz_is_unavailable_while_the_store_cannot_be_read(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = _driver_failure("host 10.0.0.9:5432 refused")
    monkeypatch.setattr(type(api.runtime.store), "ping", lambda self: failure())

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["store_read"] == "failed"
    assert "10.0.0.9" not in response.text


def test_a_503_from_a_driver_failure_names_no_host(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        _driver_failure("connection to server at 10.0.0.9, port 5432 failed")()

    monkeypatch.setattr(api.runtime.store.catalog, "get_item", fail)

    response = client.get("/api/items/i1")

    assert response.status_code == 503
    assert response.json()["detail"] == "store: unavailable; retry after Retry-After seconds"
    assert "10.0.0.9" not in response.text


def test_an_admin_of_one_app_sees_only_that_apps_samples(
    client: TestClient, api: Api, settings: Settings
) -> None:
    api.post_events([{"userId": "u1", "itemId": "i1", "eventType": "click"}])
    store = open_store(settings.resolved_store_url())
    try:
        store.tenancy.create_app("other", "Other", datetime.now(UTC))
        other = issue_key(store.tenancy, "other", {Scope.ADMIN}, datetime.now(UTC))
    finally:
        store.close()

    theirs = client.get("/metrics", headers={"Authorization": f"Bearer {other}"}).text
    ours = client.get("/metrics").text

    assert 'app="default"' in ours
    assert 'app="default"' not in theirs
    assert "recloop_model_load_errors_total" in theirs  # the service's own, with no app


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_open_with_no_internet_and_no_key(client: TestClient, path: str) -> None:
    del client.headers["Authorization"]

    page = client.get(path)

    assert page.status_code == 200
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links  # the script, the style sheet, the icon
    assert all(link.startswith("/") for link in links), links  # nothing from another host
    assert "http://" not in page.text
    assert "https://" not in page.text
    for link in links:
        asset = client.get(link)
        assert asset.status_code == 200, link
        assert asset.content
    assert client.get("/openapi.json").status_code == 200
