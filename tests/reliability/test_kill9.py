"""An acknowledged event is never lost: ``recloop serve`` killed with SIGKILL in the middle
of a load of event posts, three times over one store, on SQLite and on PostgreSQL, holds
every event it answered 202 for, and none twice; each restart on the crashed store starts
and answers the earlier runs' events as duplicates."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

RUNS = 3
CLIENTS = 6
#: Load per run before the kill: enough for hundreds of commits in flight, short enough
#: that three runs on two stores stay a small part of CI.
LOAD_S = 1.0
#: Earlier runs' acknowledged events each restart is sent again (one batch).
REPLAYED = 500

Event = dict[str, Any]


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


def _key(store_url: str, data_dir: Path) -> str:
    if store_url.startswith("sqlite"):
        return (data_dir / "dev-key").read_text().strip()
    store = open_store(store_url)
    try:
        return issue_key(store.tenancy, DEFAULT_APP, {Scope.INGEST}, datetime.now(UTC))
    finally:
        store.close()


def _post_until_refused(url: str, headers: dict[str, str], acked: list[Event], batch: int) -> None:
    stamp = datetime.now(UTC).isoformat()
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        while True:
            # An explicit eventTs: a replay of the same event is then a duplicate, not a
            # conflict with the server's clock.
            events = [
                {
                    "eventId": uuid.uuid4().hex,
                    "userId": f"u{n}",
                    "itemId": "i1",
                    "eventType": "click",
                    "eventTs": stamp,
                }
                for n in range(batch)
            ]
            body = {"events": events} if batch > 1 else events[0]
            try:
                response = client.post("/api/events", json=body)
            except httpx.TransportError:
                return  # the server is gone
            if response.status_code == 202:
                acked.extend(events)


def _load_then_kill(url: str, headers: dict[str, str], pid: int) -> list[Event]:
    """Six clients (single events and batches of 50) post until the server is SIGKILLed
    ``LOAD_S`` in; the events it answered 202 for."""
    acked: list[list[Event]] = [[] for _ in range(CLIENTS)]
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
    return [event for events in acked for event in events]


def _stored_ids(store_url: str) -> list[str]:
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(sa.select(schema.events.c.event_id)).scalars())
    finally:
        store.close()


def test_every_acknowledged_event_survives_three_sigkills(tmp_path: Path, store_url: str) -> None:
    data_dir = tmp_path / "data"
    env = {} if store_url.startswith("sqlite") else {"RECLOOP_STORE_URL": store_url}
    everything: list[Event] = []
    headers: dict[str, str] = {}
    for run in range(RUNS):
        with recloop_serve(data_dir, tmp_path / f"server-{run}.log", **env) as (url, proc):
            headers = headers or {"Authorization": f"Bearer {_key(store_url, data_dir)}"}
            if everything:
                # The restarted server knows every earlier acknowledged event.
                again = random.Random(run).sample(everything, min(REPLAYED, len(everything)))
                answer = httpx.post(
                    f"{url}/api/events", json={"events": again}, headers=headers, timeout=30
                )
                assert answer.status_code == 202, answer.text
                body = answer.json()
                assert (body["accepted"], body["duplicates"]) == (0, len(again)), (run, body)
                assert not body["conflicts"], (run, body["conflicts"][:3])
            acked = _load_then_kill(url, headers, proc.pid)
        assert len(acked) > 100, (run, len(acked))  # the load ran
        everything.extend(acked)

        stored = _stored_ids(store_url)
        missing = {e["eventId"] for e in everything} - set(stored)
        assert not missing, (run, len(missing))
        assert len(stored) == len(set(stored)), run
