"""The catalog over HTTP: ``PUT/GET/DELETE /api/items/{itemId}`` and ``POST /api/items``."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from tests.integration.api.conftest import Api, error_fields

pytestmark = pytest.mark.integration

FULL_ITEM = {
    "type": "video",
    "title": "Quiet Harbor",
    "description": "Boats at dawn.",
    "category": "Travel",
    "tags": ["sea", "calm"],
    "creatorId": "c-7",
    "locale": "en-GB",
    "status": "active",
    "createdAt": "2024-03-01T08:00:00+00:00",
    "metadata": {"durationS": 312, "hd": True},
}


def test_put_get_delete_round_trip_in_camel_case(client: TestClient) -> None:
    put = client.put("/api/items/v1", json=FULL_ITEM)

    assert put.status_code == 200
    body = put.json()
    assert body["itemId"] == "v1"
    for key, value in FULL_ITEM.items():
        if key != "createdAt":
            assert body[key] == value, key
    assert datetime.fromisoformat(body["createdAt"]) == datetime.fromisoformat(
        FULL_ITEM["createdAt"]  # type: ignore[arg-type]
    )
    assert body["updatedAt"] is not None
    assert "item_id" not in body
    assert "creator_id" not in body

    got = client.get("/api/items/v1")
    assert got.status_code == 200
    assert got.json() == body

    deleted = client.delete("/api/items/v1")
    assert deleted.status_code == 204
    assert client.get("/api/items/v1").status_code == 404


def test_put_replaces_every_field(client: TestClient) -> None:
    client.put("/api/items/v1", json=FULL_ITEM)

    replaced = client.put("/api/items/v1", json={"title": "New title"}).json()

    assert replaced["title"] == "New title"
    assert replaced["category"] is None
    assert replaced["tags"] == []
    assert replaced["type"] == "item"
    assert replaced["status"] == "active"


def test_created_at_defaults_to_when_the_item_was_first_stored(client: TestClient) -> None:
    first = client.put("/api/items/v1", json={"title": "First"}).json()

    again = client.put("/api/items/v1", json={"title": "Second"}).json()
    client.post("/api/items", json={"items": [{"itemId": "v1", "title": "Third"}]})
    last = client.get("/api/items/v1").json()

    assert again["createdAt"] == first["createdAt"]
    assert last["createdAt"] == first["createdAt"]
    assert last["updatedAt"] > first["updatedAt"]


def test_an_explicit_created_at_is_kept(client: TestClient) -> None:
    client.put("/api/items/v1", json={"createdAt": "2020-01-01T00:00:00Z"})

    stored = client.get("/api/items/v1").json()

    assert datetime.fromisoformat(stored["createdAt"]) == datetime.fromisoformat(
        "2020-01-01T00:00:00+00:00"
    )


def test_item_id_in_the_body_must_match_the_path(client: TestClient) -> None:
    response = client.put("/api/items/v1", json={"itemId": "v2", "title": "t"})

    assert response.status_code == 422
    assert error_fields(response) == ["itemId"]
    assert client.get("/api/items/v1").status_code == 404
    assert client.get("/api/items/v2").status_code == 404


def test_item_id_in_the_body_equal_to_the_path_is_accepted(client: TestClient) -> None:
    response = client.put("/api/items/v1", json={"itemId": "v1"})

    assert response.status_code == 200
    assert response.json()["itemId"] == "v1"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "archived"}, "status"),
        ({"type": "Not A Token"}, "type"),
        ({"tags": ["ok", ""]}, "tags.1"),
        ({"title": "a\x00b"}, "title"),
        ({"unknownField": 1}, "unknownField"),
    ],
    ids=["status", "type", "empty-tag", "nul", "extra-field"],
)
def test_a_bad_item_field_is_422_naming_it(
    client: TestClient, fields: dict[str, object], field: str
) -> None:
    response = client.put("/api/items/v1", json=fields)

    assert response.status_code == 422
    assert error_fields(response) == [field]
    assert client.get("/api/items/v1").status_code == 404


def test_a_batch_stores_the_good_items_and_lists_the_bad_ones(client: TestClient) -> None:
    response = client.post(
        "/api/items",
        json={
            "items": [
                {"itemId": "a", "category": "music"},
                {"itemId": "b", "status": "archived"},
                {"itemId": "c", "type": "music"},
                {"category": "news"},
            ]
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body["upserted"] == 2
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "status"), (3, "itemId")]
    assert client.get("/api/items/a").json()["category"] == "music"
    assert client.get("/api/items/c").json()["type"] == "music"
    assert client.get("/api/items/b").status_code == 404


def test_a_batch_over_the_limit_is_413_naming_items(client: TestClient) -> None:
    items = [{"itemId": f"i{n}"} for n in range(1001)]

    response = client.post("/api/items", json={"items": items})

    assert response.status_code == 413
    assert error_fields(response) == ["items"]
    assert client.get("/api/items/i0").status_code == 404


def test_get_of_an_unknown_item_is_404_naming_item_id(client: TestClient) -> None:
    response = client.get("/api/items/never-stored")

    assert response.status_code == 404
    assert error_fields(response) == ["itemId"]
    assert "never-stored" in response.json()["detail"]


def test_delete_of_an_unknown_item_is_404_naming_item_id(client: TestClient) -> None:
    response = client.delete("/api/items/never-stored")

    assert response.status_code == 404
    assert error_fields(response) == ["itemId"]


def test_an_item_of_any_status_can_be_read_back(api: Api, client: TestClient) -> None:
    api.put_item("v1", status="blocked")

    assert client.get("/api/items/v1").json()["status"] == "blocked"


def test_metadata_with_an_integer_json_cannot_hold_is_422_not_500(
    lenient_client: TestClient,
) -> None:
    response = lenient_client.put("/api/items/v1", json={"metadata": {"views": 2**70}})

    assert response.status_code == 422
    assert error_fields(response) == ["metadata"]


def test_a_created_at_that_cannot_be_converted_to_utc_is_422_not_500(
    lenient_client: TestClient,
) -> None:
    response = lenient_client.put("/api/items/v1", json={"createdAt": "0001-01-01T00:00:00+05:00"})

    assert response.status_code == 422
    assert error_fields(response) == ["createdAt"]
