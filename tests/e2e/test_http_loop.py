"""The whole loop over real HTTP: items and events in, a list out, a click joined to it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from recloop.api.app import create_app
from recloop.api.server import BackgroundServer
from recloop.config import Settings
from recloop.runtime.process import Runtime
from recloop.store.schema import events as events_table

pytestmark = pytest.mark.e2e

CLICKS = {"v1": 5, "v2": 3, "v3": 1}


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def http(app: FastAPI, dev_key: str) -> Iterator[httpx.Client]:
    """A client of the app served by uvicorn on a loopback port."""
    with (
        BackgroundServer(app) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {dev_key}"}, timeout=10.0
        ) as client,
    ):
        assert server.url.startswith("http://127.0.0.1:")
        yield client


def test_a_click_on_a_served_item_is_joined_to_the_logged_list(
    app: FastAPI, http: httpx.Client
) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200

    # Load a catalog and some engagement by other users.
    items = [{"itemId": item, "type": "video", "category": "travel"} for item in CLICKS]
    loaded = http.post("/api/items", json={"items": items})
    assert loaded.status_code == 200
    assert loaded.json() == {"upserted": 3, "rejected": []}
    events = [
        {"userId": f"fan-{item}-{n}", "itemId": item, "eventType": "click"}
        for item, count in CLICKS.items()
        for n in range(count)
    ]
    posted = http.post("/api/events", json={"events": events})
    assert posted.status_code == 202
    assert posted.json()["accepted"] == sum(CLICKS.values())

    runtime: Runtime = app.state.runtime
    runtime.refresher.refresh()

    # Ask for a list: the most clicked first.
    served = http.get("/api/recommendations", params={"userId": "alice", "limit": 10})
    assert served.status_code == 200
    body = served.json()
    request_id = body["requestId"]
    served_ids = [item["itemId"] for item in body["items"]]
    assert served_ids == ["v1", "v2", "v3"]

    # Alice clicks the second item, naming the list and the position it was shown at.
    click = {
        "eventId": "alice-click-1",
        "userId": "alice",
        "itemId": served_ids[1],
        "eventType": "click",
        "requestId": request_id,
        "position": 1,
        "surface": "home",
    }
    clicked = http.post("/api/events", json=click)
    assert clicked.status_code == 202
    assert clicked.json() == {"accepted": 1, "duplicates": 0, "rejected": [], "conflicts": []}

    # The list is in the recommendation log under its requestId...
    runtime.writer.flush()
    record = runtime.store.rec_log.get("default", request_id)
    assert record is not None
    assert record.user_id == "alice"
    assert [(s.item_id, s.position) for s in record.items] == [
        (item_id, position) for position, item_id in enumerate(served_ids)
    ]
    # ...and the click is stored carrying it, so the two join on requestId and position.
    with runtime.store.engine.connect() as conn:
        row = conn.execute(
            sa.select(events_table).where(events_table.c.event_id == "alice-click-1")
        ).one()
    assert (row.request_id, row.position, row.item_id) == (request_id, 1, served_ids[1])
    shown = {s.position: s.item_id for s in record.items}
    assert shown[row.position] == row.item_id

    # The clicked item is consumed: alice is not served it again.
    again = http.get("/api/recommendations", params={"userId": "alice", "limit": 10}).json()
    assert served_ids[1] not in [item["itemId"] for item in again["items"]]
    assert again["requestId"] != request_id
