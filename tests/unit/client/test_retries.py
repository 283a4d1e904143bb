"""The client's retries, against a scripted transport: what is tried again, how often, and
that a retried batch of events carries the same ids."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from recloop.client import (
    AsyncClient,
    Client,
    FieldError,
    InvalidRequest,
    RateLimited,
    Unavailable,
)

pytestmark = pytest.mark.unit

ACCEPTED = {"accepted": 2, "duplicates": 0, "rejected": [], "conflicts": []}


def scripted(
    answers: list[httpx.Response | Exception],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that gives ``answers`` in order and records every request."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle), seen


def client(transport: httpx.MockTransport, retries: int = 3) -> Client:
    return Client("http://svc", "k", transport=transport, retries=retries, backoff_s=0.0)


def _ids(request: httpx.Request) -> list[str]:
    return [e["eventId"] for e in json.loads(request.content)["events"]]


def test_a_batch_retried_after_503_and_a_lost_connection_keeps_its_event_ids() -> None:
    transport, seen = scripted(
        [
            httpx.Response(503, json={"detail": "store: unavailable", "errors": []}),
            httpx.ConnectError("reset"),
            httpx.Response(202, json=ACCEPTED),
        ]
    )
    events = [{"userId": "u", "itemId": "i", "eventType": "click"}] * 2

    result = client(transport).send_events(events)

    assert result.accepted == 2
    assert len(seen) == 3
    assert _ids(seen[0]) == _ids(seen[1]) == _ids(seen[2]) == result.event_ids
    assert len(set(result.event_ids)) == 2  # each event its own id


def test_feedback_is_not_sent_again_when_it_may_have_been_stored() -> None:
    transport, seen = scripted([httpx.Response(503, json={"detail": "x", "errors": []})])

    with pytest.raises(Unavailable):
        client(transport).feedback("u", "i", "hide")

    assert len(seen) == 1


def test_a_429_is_retried_and_gives_up_after_the_retries_with_its_retry_after() -> None:
    limited = httpx.Response(
        429, json={"detail": "over the rate", "errors": []}, headers={"Retry-After": "0"}
    )
    transport, seen = scripted([limited])

    with pytest.raises(RateLimited) as raised:
        client(transport, retries=2).get_item("i")

    assert len(seen) == 3
    assert raised.value.retry_after_s == 0.0


def test_a_422_names_the_field_and_the_rule_and_is_not_retried() -> None:
    body = {
        "detail": "limit: must be at most 100",
        "errors": [{"field": "limit", "rule": "must be at most 100"}],
    }
    transport, seen = scripted([httpx.Response(422, json=body)])

    with pytest.raises(InvalidRequest) as raised:
        client(transport).recommend("u", limit=1000)

    assert raised.value.errors == [FieldError("limit", "must be at most 100")]
    assert len(seen) == 1


def test_events_get_batched_and_refusals_keep_their_index_in_what_was_given() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)["events"]
        rejected = [
            {"index": i, "field": "userId", "reason": "required"}
            for i, e in enumerate(batch)
            if "userId" not in e
        ]
        body = {
            "accepted": len(batch) - len(rejected),
            "duplicates": 0,
            "rejected": rejected,
            "conflicts": [],
        }
        return httpx.Response(202, json=body)

    events: list[dict[str, object]] = [{"userId": "u", "itemId": "i", "eventType": "click"}] * 1200
    events[700] = {"itemId": "i", "eventType": "click"}
    sent: list[int] = []
    transport = httpx.MockTransport(lambda r: (sent.append(len(_ids(r))), answer(r))[1])

    result = client(transport).send_events(events)

    assert sent == [500, 500, 200]
    assert result.accepted == 1199
    assert [(r.index, r.field) for r in result.rejected] == [(700, "userId")]


def test_the_async_client_retries_alike() -> None:
    answers: list[httpx.Response] = [
        httpx.Response(503, json={"detail": "x", "errors": []}),
        httpx.Response(202, json=ACCEPTED),
    ]
    seen: list[httpx.Request] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[len(seen) - 1]

    async def run() -> int:
        async with AsyncClient(
            "http://svc", "k", transport=httpx.MockTransport(handle), backoff_s=0.0
        ) as recloop:
            result = await recloop.send_events(
                [{"userId": "u", "itemId": "i", "eventType": "click"}]
            )
            return result.accepted

    assert asyncio.run(run()) == 2
    assert _ids(seen[0]) == _ids(seen[1])
