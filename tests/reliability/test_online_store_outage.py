"""The online store (Redis) away at start, and emptied by a restart: ``recloop serve`` starts
and serves degraded, says so in ``/readyz``, and rebuilds every online feature from the
event log and the catalog once Redis is back, empty."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from recloop.api.server import free_port
from tests.servers import recloop_serve

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ITEMS = 30
EVENTS = 200


def _wait(condition: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


@pytest.fixture(params=["refused", "silent"])
def away(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis URL nothing answers at: a closed port, or one that accepts and never replies."""
    if request.param == "refused":
        yield f"redis://127.0.0.1:{free_port()}/0"
        return
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes the handshakes; nobody ever reads
        yield f"redis://127.0.0.1:{silent.getsockname()[1]}/0"


def test_serve_starts_without_redis_and_says_it_is_degraded(tmp_path: Path, away: str) -> None:
    data_dir = tmp_path / "data"
    closed = away
    with recloop_serve(data_dir, tmp_path / "server.log", RECLOOP_ONLINE_URL=closed) as (url, _):
        key = (data_dir / "dev-key").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["checks"]["online_store"] == "failed"
            assert closed.split("//")[1] not in ready.text
            client.put("/api/items/i1", json={"category": "c"}).raise_for_status()
            event = {"userId": "u1", "itemId": "i1", "eventType": "click"}
            assert client.post("/api/events", json=event).status_code == 202
            started = time.monotonic()
            answer = client.get("/api/recommendations", params={"userId": "u1"})
            assert answer.status_code == 200
            assert time.monotonic() - started < 2.0  # the online store's timeout, not a hang


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[tuple[httpx.Client, redis.Redis]]:
    online = redis.Redis.from_url(redis_url)
    online.flushall()
    data_dir = tmp_path / "data"
    with recloop_serve(
        data_dir,
        tmp_path / "server.log",
        RECLOOP_ONLINE_URL=redis_url,
        RECLOOP_SERVING__POPULARITY_REFRESH_S="0.2",
    ) as (url, _):
        key = (data_dir / "dev-key").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            yield client, online
    online.flushall()
    online.close()


def test_an_emptied_online_store_is_rebuilt_from_the_log_and_the_catalog(
    served: tuple[httpx.Client, redis.Redis],
) -> None:
    client, online = served
    items = [{"itemId": f"i{n}", "category": f"c{n % 3}"} for n in range(ITEMS)]
    client.post("/api/items", json={"items": items}).raise_for_status()
    events = [
        {"userId": f"u{n % 17}", "itemId": f"i{n % ITEMS}", "eventType": "click"}
        for n in range(EVENTS)
    ]
    assert client.post("/api/events", json={"events": events}).status_code == 202
    _wait(lambda: online.dbsize() > ITEMS, "the features are materialized")
    time.sleep(1.0)  # one more pass: nothing is left to fold
    before = sorted(k.decode() for k in online.keys("*"))

    online.flushall()  # a restart of a Redis that saves nothing

    _wait(
        lambda: sorted(k.decode() for k in online.keys("*")) == before,
        "the online store is rebuilt to the same keys",
    )
