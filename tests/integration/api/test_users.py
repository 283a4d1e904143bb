"""Users over HTTP: ``PUT/GET/DELETE /api/users/{userId}``; DELETE purges everything."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from recloop.errors import OnlineStoreUnavailable
from recloop.store.keys import key_id_of
from tests.integration.api.conftest import Api, error_fields

pytestmark = pytest.mark.integration

ATTRIBUTES = {"ageGroup": "25-34", "region": "EU", "interests": ["jazz", "sailing"]}


def test_put_then_get_returns_the_user_in_camel_case(client: TestClient) -> None:
    put = client.put("/api/users/u1", json={"attributes": ATTRIBUTES})

    assert put.status_code == 200
    body = put.json()
    assert body["userId"] == "u1"
    assert body["attributes"] == ATTRIBUTES
    assert body["createdAt"] is not None
    assert body["updatedAt"] is not None
    assert client.get("/api/users/u1").json() == body


def test_put_replaces_the_attributes(client: TestClient) -> None:
    client.put("/api/users/u1", json={"attributes": ATTRIBUTES})

    client.put("/api/users/u1", json={"attributes": {"region": "US"}})

    assert client.get("/api/users/u1").json()["attributes"] == {"region": "US"}


def test_user_id_in_the_body_must_match_the_path(client: TestClient) -> None:
    response = client.put("/api/users/u1", json={"userId": "u2", "attributes": {}})

    assert response.status_code == 422
    assert error_fields(response) == ["userId"]
    assert client.get("/api/users/u1").status_code == 404


def test_get_of_an_unknown_user_is_404_naming_user_id(client: TestClient) -> None:
    response = client.get("/api/users/nobody")

    assert response.status_code == 404
    assert error_fields(response) == ["userId"]


def test_delete_purges_the_user_their_events_lists_and_suppressions(
    client: TestClient, api: Api
) -> None:
    api.put_item("i1")
    api.put_item("i2")
    client.put("/api/users/u1", json={"attributes": ATTRIBUTES})
    api.post_events(
        [
            {"userId": "u1", "itemId": "i1", "eventType": "click"},
            {"userId": "u2", "itemId": "i1", "eventType": "click"},
        ]
    )
    feedback = {"userId": "u1", "itemId": "i2", "feedback": "not_interested"}
    assert client.post("/api/recommendations/feedback", json=feedback).status_code == 202
    request_id = api.recommend(userId="u1")["requestId"]
    store = api.runtime.store
    api.runtime.writer.flush()
    assert store.rec_log.get("default", request_id) is not None

    response = client.delete("/api/users/u1")

    assert response.status_code == 204
    assert client.get("/api/users/u1").status_code == 404
    assert store.events.consumed_item_ids("default", "u1", ["click", "not_interested"]) == set()
    assert store.suppressions.item_ids("default", "u1") == set()
    assert store.rec_log.get("default", request_id) is None
    # Only the other user's event is left.
    assert store.events.count("default") == 1
    assert store.events.consumed_item_ids("default", "u2", ["click"]) == {"i1"}


def test_after_delete_the_user_is_served_their_consumed_items_again(
    client: TestClient, api: Api
) -> None:
    api.put_item("i1")
    api.engage({"i1": 1})
    api.post_events([{"userId": "u1", "itemId": "i1", "eventType": "click"}])
    api.refresh()
    assert "i1" not in api.recommended_ids(userId="u1")

    assert client.delete("/api/users/u1").status_code == 204

    assert "i1" in api.recommended_ids(userId="u1")


def test_delete_of_a_user_with_only_events_purges_them(client: TestClient, api: Api) -> None:
    api.post_events([{"userId": "u1", "itemId": "i1", "eventType": "click"}])

    assert client.delete("/api/users/u1").status_code == 204
    assert api.runtime.store.events.count("default") == 0


def test_delete_of_an_unknown_user_is_404_naming_user_id(client: TestClient) -> None:
    response = client.delete("/api/users/nobody")

    assert response.status_code == 404
    assert error_fields(response) == ["userId"]


def test_attributes_with_an_integer_json_cannot_hold_are_422_not_500(
    lenient_client: TestClient,
) -> None:
    response = lenient_client.put("/api/users/u1", json={"attributes": {"score": 2**70}})

    assert response.status_code == 422
    assert error_fields(response) == ["attributes"]


def test_delete_is_audited_with_the_key_that_asked_and_forgotten_at_once(
    client: TestClient, api: Api, dev_key: str
) -> None:
    api.post_events([{"userId": "u1", "itemId": "i1", "eventType": "click", "sessionId": "s1"}])
    runtime = api.runtime
    assert runtime.deletions is not None

    assert client.delete("/api/users/u1").status_code == 204

    [entry] = runtime.store.audit.since(0, 10)
    assert (entry.action, entry.subject, entry.actor) == ("user.delete", "u1", key_id_of(dev_key))
    assert entry.detail == {"sessions": ["s1"]}
    assert runtime.deletions.forgotten("default") == {"u1"}  # applied before the 204


def test_a_delete_stays_204_when_this_process_cannot_forget_at_once(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.post_events([{"userId": "u1", "itemId": "i1", "eventType": "click"}])
    runtime = api.runtime
    assert runtime.deletions is not None

    def online_away() -> int:
        raise OnlineStoreUnavailable("redis down")

    monkeypatch.setattr(runtime.deletions, "step", online_away)

    assert client.delete("/api/users/u1").status_code == 204  # committed: not a 503
    assert client.get("/api/users/u1").status_code == 404
    assert [e.action for e in runtime.store.audit.since(0, 10)] == ["user.delete"]
