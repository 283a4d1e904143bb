"""The Python client against a real service on a socket: every call, sync and async, and
the errors it raises naming the field and the rule."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from recloop.api.app import create_app
from recloop.api.server import BackgroundServer
from recloop.client import AsyncClient, Client, InvalidRequest, NotFound, Unauthorized
from recloop.config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def url(settings: Settings, dev_key: str) -> Iterator[str]:
    with BackgroundServer(create_app(settings)) as server:
        yield server.url


def test_every_call_round_trips(url: str, dev_key: str) -> None:
    with Client(url, dev_key) as recloop:
        stored = recloop.put_item("i1", title="Quiet Harbor", category="travel", tags=["sea"])
        refused = recloop.put_items(
            [{"itemId": f"i{n}", "category": "travel"} for n in range(2, 30)] + [{"title": "x"}]
        )
        user = recloop.put_user("alice", region="EU")
        events = [
            {"userId": f"u{n % 40}", "itemId": f"i{n % 29 + 1}", "eventType": "click"}
            for n in range(1200)
        ]
        sent = recloop.send_events(events)
        again = recloop.send_events(
            [{**e, "eventId": i} for e, i in zip(events, sent.event_ids, strict=True)]
        )
        served = recloop.recommend("alice", "trending", limit=5)
        hidden = recloop.feedback(
            "alice", served.items[0].item_id, "hide", request_id=served.request_id
        )
        after = recloop.recommend("alice", "trending", limit=5)
        suggested = recloop.suggest("alice", "qui")
        recloop.delete_user("alice")
        recloop.delete_item("i1")
        with pytest.raises(NotFound) as missing:
            recloop.get_item("i1")

    assert stored["title"] == "Quiet Harbor"
    assert [r["index"] for r in refused] == [28]
    assert user["attributes"] == {"region": "EU"}
    assert (sent.accepted, sent.duplicates, sent.rejected) == (1200, 0, [])
    assert (again.accepted, again.duplicates) == (0, 1200)
    assert len(served.items) == 5
    assert served.items[0].reason
    assert hidden["suppressed"] is True
    assert served.items[0].item_id not in [i.item_id for i in after.items]
    assert isinstance(suggested.suggestions, list)
    assert missing.value.errors[0].field == "itemId"


def test_errors_name_the_field_and_the_rule(url: str, dev_key: str) -> None:
    with Client(url, dev_key) as recloop:
        with pytest.raises(InvalidRequest) as invalid:
            recloop.recommend("alice", limit=10_000)
        refused = recloop.send_events([{"itemId": "i1", "eventType": "click"}])
    with Client(url, "rl_000000000000_bogus") as stranger, pytest.raises(Unauthorized):
        stranger.recommend("alice")

    assert invalid.value.errors[0].field == "limit"
    assert [(r.index, r.field) for r in refused.rejected] == [(0, "userId")]


def test_the_async_client_makes_the_same_calls(url: str, dev_key: str) -> None:
    async def run() -> tuple[int, int]:
        async with AsyncClient(url, dev_key) as recloop:
            await recloop.put_item("i1", category="travel")
            sent = await recloop.send_events(
                [{"userId": "u1", "itemId": "i1", "eventType": "click"}]
            )
            served = await recloop.recommend("u2", "trending")
            return sent.accepted, len(served.items)

    assert asyncio.run(run()) == (1, 1)
