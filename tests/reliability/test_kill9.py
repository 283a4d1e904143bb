"""An acknowledged event is never lost: ``recloop serve`` killed with SIGKILL in the middle
of a load of event posts, on SQLite and on PostgreSQL, holds every event it answered 202
for, and none twice."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from recloop.domain import Scope
from recloop.store import open_store, schema
from recloop.store.bootstrap import DEFAULT_APP
from recloop.store.keys import issue_key
from recloop.store.migrate import upgrade
from tests.servers import recloop_serve

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

CLIENTS = 6
LOAD_S = 2.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'recloop.db'}"
    url: str = request.getfixturevalue("postgres_url")
    store = open_store(url)
    upgrade(store.engine)
    store.tenancy.create_app(DEFAULT_APP, "Default app", datetime.now(UTC))
    store.close()
    return url


@pytest.fixture
def served(tmp_path: Path, store_url: str) -> Iterator[tuple[str, dict[str, str], int]]:
    data_dir = tmp_path / "data"
    env = {} if store_url.startswith("sqlite") else {"RECLOOP_STORE_URL": store_url}
    with recloop_serve(data_dir, tmp_path / "server.log", **env) as (url, proc):
        if store_url.startswith("sqlite"):
            key = (data_dir / "dev-key").read_text().strip()
        else:
            store = open_store(store_url)
            key = issue_key(store.tenancy, DEFAULT_APP, {Scope.INGEST}, datetime.now(UTC))
            store.close()
        yield url, {"Authorization": f"Bearer {key}"}, proc.pid


def _post_until_refused(url: str, headers: dict[str, str], acked: list[str], batch: int) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        while True:
            ids = [uuid.uuid4().hex for _ in range(batch)]
            events = [
                {"eventId": i, "userId": f"u{n}", "itemId": "i1", "eventType": "click"}
                for n, i in enumerate(ids)
            ]
            body = {"events": events} if batch > 1 else events[0]
            try:
                response = client.post("/api/events", json=body)
            except httpx.TransportError:
                return  # the server is gone
            if response.status_code == 202:
                acked.extend(ids)


def test_every_acknowledged_event_survives_a_sigkill(
    served: tuple[str, dict[str, str], int], store_url: str
) -> None:
    url, headers, pid = served
    acked: list[list[str]] = [[] for _ in range(CLIENTS)]
    clients = [
        threading.Thread(
            target=_post_until_refused, args=(url, headers, acked[n], 1 if n % 2 else 50)
        )
        for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    time.sleep(LOAD_S)
    os.kill(pid, signal.SIGKILL)
    for client in clients:
        client.join(timeout=30)

    everything = [event_id for ids in acked for event_id in ids]
    assert len(everything) > 100  # the load ran
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            stored = list(conn.execute(sa.select(schema.events.c.event_id)).scalars())
    finally:
        store.close()
    assert set(everything) <= set(stored), len(set(everything) - set(stored))
    assert len(stored) == len(set(stored))
