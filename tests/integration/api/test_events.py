"""``POST /api/events``: validation per event, durability, idempotency, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from recloop.errors import StoreUnavailable
from recloop.store.schema import events as events_table
from tests.integration.api.conftest import Api, error_fields

pytestmark = pytest.mark.integration

APP = "default"


def stored_events(api: Api) -> list[dict[str, Any]]:
    """Every stored event of the default app, as column -> value, in arrival order."""
    engine = api.runtime.store.engine
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events_table).where(events_table.c.app_id == APP).order_by(events_table.c.seq)
        )
        return [dict(row._mapping) for row in rows]


def test_a_single_event_is_accepted_and_durable(client: TestClient, api: Api) -> None:
    response = client.post(
        "/api/events",
        json={
            "eventId": "e-1",
            "userId": "u1",
            "itemId": "i1",
            "eventType": "click",
            "surface": "home",
            "position": 3,
            "requestId": "req-1",
            "value": 1.5,
            "context": {"page": "front"},
        },
    )

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": [], "conflicts": []}
    [stored] = stored_events(api)
    assert stored["event_id"] == "e-1"
    assert (stored["user_id"], stored["item_id"], stored["event_type"]) == ("u1", "i1", "click")
    assert (stored["position"], stored["request_id"], stored["surface"]) == (3, "req-1", "home")
    assert stored["value"] == 1.5
    assert stored["context"] == {"page": "front"}


def test_an_event_without_an_id_gets_one(api: Api) -> None:
    api.post_events([{"userId": "u1", "itemId": "i1", "eventType": "view"}])

    [stored] = stored_events(api)
    assert stored["event_id"]


def test_an_event_without_a_timestamp_is_stamped_with_the_arrival_time(api: Api) -> None:
    before = datetime.now(UTC)
    api.post_events([{"userId": "u1", "itemId": "i1", "eventType": "click"}])
    after = datetime.now(UTC)

    [stored] = stored_events(api)
    assert before <= stored["event_ts"] <= after
    assert before <= stored["server_ts"] <= after


def test_a_naive_event_timestamp_is_taken_as_utc(api: Api) -> None:
    api.post_events(
        [{"userId": "u1", "itemId": "i1", "eventType": "click", "eventTs": "2024-05-01T12:00:00"}]
    )

    [stored] = stored_events(api)
    assert stored["event_ts"] == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_a_batch_stores_the_good_events_and_lists_the_rejected_by_index(
    client: TestClient, api: Api
) -> None:
    response = client.post(
        "/api/events",
        json={
            "events": [
                {"eventId": "ok-0", "userId": "u1", "itemId": "i1", "eventType": "click"},
                {"eventId": "bad-1", "userId": "u1", "itemId": "i1", "eventType": "teleport"},
                {"eventId": "ok-2", "userId": "u2", "itemId": "i2", "eventType": "like"},
                {"eventId": "bad-3", "userId": "u1", "eventType": "click"},
                "not an object",
                {"eventId": "bad-5", "userId": "u1", "itemId": "i1", "eventType": "click",
                 "position": -1},
            ]
        },
    )  # fmt: skip

    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "eventType"),
        (3, "itemId"),
        (4, "event"),
        (5, "position"),
    ]
    assert all(r["reason"] for r in body["rejected"])
    assert [e["event_id"] for e in stored_events(api)] == ["ok-0", "ok-2"]


def test_a_search_event_needs_no_item(api: Api) -> None:
    body = api.post_events([{"userId": "u1", "eventType": "search", "context": {"q": "jazz"}}])

    assert body["accepted"] == 1


def test_a_search_query_is_stored_normalized_with_personal_data_scrubbed(api: Api) -> None:
    body = api.post_events(
        [
            {
                "eventId": "s1",
                "userId": "u1",
                "eventType": "search",
                "query": "Call +44 20 7946 0958",
            },
            {"eventId": "s2", "userId": "u1", "eventType": "search", "query": "  Jazz   Piano "},
        ]
    )
    assert body["accepted"] == 2
    assert {e["event_id"]: e["query"] for e in stored_events(api)} == {
        "s1": "call <phone>",
        "s2": "jazz piano",
    }


def test_a_batch_of_only_bad_events_is_422_naming_each(client: TestClient, api: Api) -> None:
    response = client.post(
        "/api/events",
        json={
            "events": [
                {"userId": "u1", "itemId": "i1", "eventType": "teleport"},
                {"userId": "", "itemId": "i1", "eventType": "click"},
            ]
        },
    )

    assert response.status_code == 422
    assert error_fields(response) == ["events[0].eventType", "events[1].userId"]
    assert response.json()["accepted"] == 0
    assert stored_events(api) == []


def test_a_single_bad_event_is_422_naming_its_field(client: TestClient, api: Api) -> None:
    response = client.post("/api/events", json={"userId": "u1", "itemId": "i1"})

    assert response.status_code == 422
    assert error_fields(response) == ["eventType"]
    assert stored_events(api) == []


def test_a_batch_over_the_limit_is_413_naming_events(client: TestClient, api: Api) -> None:
    limit = api.runtime.settings.ingest.max_batch_events
    batch = [{"userId": "u1", "itemId": f"i{n}", "eventType": "click"} for n in range(limit + 1)]

    response = client.post("/api/events", json={"events": batch})

    assert response.status_code == 413
    assert error_fields(response) == ["events"]
    assert stored_events(api) == []


def test_a_batch_at_the_limit_is_accepted(client: TestClient, api: Api) -> None:
    limit = api.runtime.settings.ingest.max_batch_events
    batch = [{"userId": "u1", "itemId": f"i{n}", "eventType": "click"} for n in range(limit)]

    response = client.post("/api/events", json={"events": batch})

    assert response.status_code == 202
    assert response.json()["accepted"] == limit


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "events"),
        ({"events": "nope"}, "events"),
        ([{"userId": "u1", "itemId": "i1", "eventType": "click"}], "body"),
        ("just a string", "body"),
    ],
    ids=["empty-batch", "events-not-a-list", "bare-list", "string"],
)
def test_a_body_of_the_wrong_shape_is_422_naming_it(
    client: TestClient, api: Api, body: object, field: str
) -> None:
    response = client.post("/api/events", json=body)

    assert response.status_code == 422
    assert error_fields(response) == [field]
    assert stored_events(api) == []


def test_invalid_json_is_422_naming_body(client: TestClient) -> None:
    response = client.post(
        "/api/events",
        content=b'{"userId": "u1", "itemId": ',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert error_fields(response) == ["body"]
    assert "invalid JSON" in response.json()["detail"]


def test_a_repeated_event_id_is_stored_once_and_counted_as_duplicate(
    client: TestClient, api: Api
) -> None:
    event = {"eventId": "e-1", "userId": "u1", "itemId": "i1", "eventType": "click"}

    first = client.post("/api/events", json=event)
    second = client.post("/api/events", json=event)

    assert first.json() == {"accepted": 1, "duplicates": 0, "rejected": [], "conflicts": []}
    assert second.status_code == 202
    assert second.json() == {"accepted": 0, "duplicates": 1, "rejected": [], "conflicts": []}
    assert len(stored_events(api)) == 1


def test_a_repeated_event_id_within_one_batch_is_stored_once(api: Api) -> None:
    event = {"eventId": "e-1", "userId": "u1", "itemId": "i1", "eventType": "click"}

    body = api.post_events([event, event])

    assert (body["accepted"], body["duplicates"]) == (1, 1)
    assert len(stored_events(api)) == 1


def test_an_id_sent_again_with_another_payload_is_a_conflict_naming_the_fields(
    client: TestClient, api: Api
) -> None:
    event = {"eventId": "e-1", "userId": "u1", "itemId": "i1", "eventType": "click"}
    client.post("/api/events", json=event)

    batch = client.post(
        "/api/events",
        json={"events": [{**event, "eventId": "e-2"}, {**event, "eventType": "like"}]},
    )
    alone = client.post("/api/events", json={**event, "itemId": "i2", "eventTs": 1714564800})
    retry = client.post("/api/events", json=event)  # the same payload: a duplicate

    assert batch.status_code == 202
    assert batch.json()["accepted"] == 1
    assert batch.json()["duplicates"] == 0
    [conflict] = batch.json()["conflicts"]
    assert (conflict["index"], conflict["field"]) == (1, "eventId")
    assert "different eventType" in conflict["reason"]
    assert alone.status_code == 409
    assert alone.json()["errors"][0]["field"] == "eventId"
    assert "different itemId" in alone.json()["detail"]
    assert retry.json()["duplicates"] == 1
    assert retry.json()["conflicts"] == []
    stored = {e["event_id"]: e for e in stored_events(api)}
    assert stored["e-1"]["event_type"] == "click"  # the first one is kept
    assert stored["e-1"]["item_id"] == "i1"


def test_an_event_far_in_the_future_is_422_naming_event_ts(client: TestClient, api: Api) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    response = client.post(
        "/api/events",
        json={"userId": "u1", "itemId": "i1", "eventType": "click", "eventTs": future},
    )

    assert response.status_code == 422
    assert error_fields(response) == ["eventTs"]
    assert stored_events(api) == []


def test_an_event_slightly_ahead_of_the_server_clock_is_accepted(api: Api) -> None:
    skew = api.runtime.settings.ingest.max_future_skew_s
    ahead = (datetime.now(UTC) + timedelta(seconds=skew / 2)).isoformat()

    body = api.post_events(
        [{"userId": "u1", "itemId": "i1", "eventType": "click", "eventTs": ahead}]
    )

    assert body["accepted"] == 1


def test_an_event_time_that_cannot_be_converted_to_utc_is_422_not_500(
    lenient_client: TestClient, api: Api
) -> None:
    # 0001-01-01 at +05:00 is before the first representable UTC instant.
    response = lenient_client.post(
        "/api/events",
        json={
            "userId": "u1",
            "itemId": "i1",
            "eventType": "click",
            "eventTs": "0001-01-01T00:00:00+05:00",
        },
    )

    assert response.status_code == 422
    assert error_fields(response) == ["eventTs"]
    assert stored_events(api) == []


def test_accepted_events_are_counted_in_metrics(client: TestClient, api: Api) -> None:
    api.post_events(
        [
            {"eventId": "a", "userId": "u1", "itemId": "i1", "eventType": "click"},
            {"eventId": "a", "userId": "u1", "itemId": "i1", "eventType": "click"},
        ]
    )

    text = client.get("/metrics").text

    assert 'recloop_events_total{app="default",outcome="accepted"} 1.0' in text
    assert 'recloop_events_total{app="default",outcome="duplicate"} 1.0' in text


def test_repeats_are_answered_as_duplicates_when_the_stored_events_cannot_be_read(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = {"eventId": "e-1", "userId": "u1", "itemId": "i1", "eventType": "click"}
    client.post("/api/events", json=event)

    def store_away(app_id: str, event_ids: object) -> object:
        raise StoreUnavailable("the store is away")

    monkeypatch.setattr(api.runtime.ingestor._events, "get_events", store_away)
    again = client.post("/api/events", json={**event, "itemId": "i2"})

    assert again.status_code == 202  # stored once already; not compared, not a 503
    assert again.json()["duplicates"] == 1
    assert again.json()["conflicts"] == []
