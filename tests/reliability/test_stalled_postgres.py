"""A PostgreSQL that stops answering (SIGSTOP: connections stay open, nothing comes back)
must not hang ``recloop serve``: every route answers within its deadline, with 503 and
``Retry-After`` where it needed the store, and serves again once the store resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from recloop.domain import Scope
from recloop.store import open_store
from recloop.store.bootstrap import DEFAULT_APP
from recloop.store.keys import issue_key
from recloop.store.migrate import upgrade
from tests.servers import or_skip, postgres_cluster, recloop_serve

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

STORE_TIMEOUT_S = 2.0
ACK_TIMEOUT_S = 3.0
#: What a route may take while the store is stalled: its deadline, plus room for a busy CI
#: (below the driver's own 5 s connect timeout, which bounded some routes before).
ANSWER_WITHIN_S = ACK_TIMEOUT_S + 1.5


def _cluster_pids(data_dir: Path) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, text=True
    )
    return [postmaster, *(int(p) for p in out.stdout.split())]


@pytest.fixture
def cluster() -> Iterator[tuple[str, Path]]:
    with or_skip(postgres_cluster()) as found:
        yield found


@pytest.fixture
def served(tmp_path: Path, cluster: tuple[str, Path]) -> Iterator[tuple[str, dict[str, str]]]:
    url, _ = cluster
    store = open_store(url)
    upgrade(store.engine)
    store.close()
    data_dir = tmp_path / "data"
    with recloop_serve(
        data_dir,
        tmp_path / "server.log",
        RECLOOP_STORE_URL=url,
        RECLOOP_SERVING__STORE_TIMEOUT_S=str(STORE_TIMEOUT_S),
        RECLOOP_SERVING__KEY_CACHE_TTL_S="0",
        RECLOOP_INGEST__ACK_TIMEOUT_S=str(ACK_TIMEOUT_S),
    ) as (base, _):
        store = open_store(url)
        store.tenancy.create_app(DEFAULT_APP, "Default app", datetime.now(UTC))
        key = issue_key(store.tenancy, DEFAULT_APP, {Scope.ADMIN}, datetime.now(UTC), name="t")
        store.close()
        yield base, {"Authorization": f"Bearer {key}"}


def _timed(
    call: httpx.Client, method: str, url: str, **kwargs: object
) -> tuple[int, float, httpx.Response]:
    started = time.monotonic()
    response = call.request(method, url, **kwargs)  # type: ignore[arg-type]
    return response.status_code, time.monotonic() - started, response


def test_a_stalled_postgres_gets_503_within_the_deadline_and_service_resumes(
    served: tuple[str, dict[str, str]], cluster: tuple[str, Path]
) -> None:
    base, headers = served
    _, data_dir = cluster
    event = {"userId": "u1", "itemId": "i1", "eventType": "click"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        client.put("/api/items/i1", json={"category": "c"}).raise_for_status()
        assert client.post("/api/events", json=event).status_code == 202
        assert client.get("/api/recommendations", params={"userId": "u1"}).status_code == 200

        pids = _cluster_pids(data_dir)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            answers = {
                "readyz": _timed(client, "GET", "/readyz"),
                "recommendations": _timed(
                    client, "GET", "/api/recommendations", params={"userId": "u2"}
                ),
                "events": _timed(client, "POST", "/api/events", json={**event, "userId": "u3"}),
                "item": _timed(client, "GET", "/api/items/i1"),
            }
            health = _timed(client, "GET", "/healthz")
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

        for route, (status, took, response) in answers.items():
            assert status == 503, (route, response.text)
            assert took < ANSWER_WITHIN_S, (route, took)
            assert response.headers.get("retry-after"), route
            assert "127.0.0.1" not in response.text, (route, response.text)
        assert health[0] == 200
        assert health[1] < 1.0

        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the service did not become ready again"
            time.sleep(0.2)
        assert client.get("/api/recommendations", params={"userId": "u1"}).status_code == 200
        assert client.post("/api/events", json={**event, "userId": "u4"}).status_code == 202


#: The service's statement timeout in the next test, far below its request deadline: an
#: answer well before the deadline can only come from the server cancelling the statement.
STATEMENT_TIMEOUT_MS = 500
LONG_STORE_TIMEOUT_S = 10.0


@pytest.fixture
def served_with_statement_timeout(
    tmp_path: Path, postgres_url: str
) -> Iterator[tuple[str, dict[str, str], Path]]:
    store = open_store(postgres_url)
    upgrade(store.engine)
    store.tenancy.create_app(DEFAULT_APP, "Default app", datetime.now(UTC))
    key = issue_key(store.tenancy, DEFAULT_APP, {Scope.ADMIN}, datetime.now(UTC), name="t")
    store.close()
    log = tmp_path / "server.log"
    with recloop_serve(
        tmp_path / "data",
        log,
        RECLOOP_STORE_URL=postgres_url,
        RECLOOP_SERVING__STORE_TIMEOUT_S=str(LONG_STORE_TIMEOUT_S),
        RECLOOP_INGEST__ACK_TIMEOUT_S=str(LONG_STORE_TIMEOUT_S),
        RECLOOP_SERVING__STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
    ) as (base, _):
        yield base, {"Authorization": f"Bearer {key}"}, log


def test_a_statement_past_the_statement_timeout_is_cancelled_and_answered_503(
    served_with_statement_timeout: tuple[str, dict[str, str], Path], postgres_url: str
) -> None:
    base, headers, log = served_with_statement_timeout
    event = {"userId": "u1", "itemId": "i1", "eventType": "click"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        client.put("/api/items/i1", json={"category": "c"}).raise_for_status()
        assert client.post("/api/events", json=event).status_code == 202

        # Another session holds the tables the routes read and write: the service's
        # statements wait on the lock until PostgreSQL cancels them.
        holder = psycopg.connect(postgres_url.replace("+psycopg", ""))
        try:
            holder.execute("LOCK TABLE items, events IN ACCESS EXCLUSIVE MODE")
            answers = {
                "item": _timed(client, "GET", "/api/items/i1"),
                "recommendations": _timed(
                    client, "GET", "/api/recommendations", params={"userId": "u2"}
                ),
                "events": _timed(client, "POST", "/api/events", json={**event, "userId": "u3"}),
            }
        finally:
            holder.rollback()
            holder.close()

        for route, (status, took, response) in answers.items():
            assert status == 503, (route, response.text)
            assert took < LONG_STORE_TIMEOUT_S / 2, (route, took)
            assert response.headers.get("retry-after"), route
            assert "statement" not in response.text, (route, response.text)
        # The server's reason is in the service's log, not in the answers.
        assert "canceling statement due to statement timeout" in log.read_text()

        assert client.get("/api/items/i1").status_code == 200
        assert client.get("/api/recommendations", params={"userId": "u1"}).status_code == 200
        assert client.post("/api/events", json={**event, "userId": "u4"}).status_code == 202
