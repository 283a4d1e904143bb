"""The service runs the purge itself: a user deleted through the API leaves the data
directory's files within ``serving.purge_interval_h``, with no command typed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.config import Settings
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from tests.factories import settings_with

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(tmp_path / "data", serving={"purge_interval_h": 0.5 / 3600})


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    store = prepare_store(settings)
    key = ensure_dev_key(store, settings.data_dir)
    store.close()
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {key}"
        yield test_client


def test_a_deleted_user_leaves_the_files_on_the_services_own_schedule(
    client: TestClient, settings: Settings
) -> None:
    snapshot = settings.data_dir / "snapshots" / "20260101T000000Z-abc"
    snapshot.mkdir(parents=True)
    (snapshot / "manifest.json").write_text(json.dumps({"app_id": "default"}))
    table = pa.table({"app_id": ["default"] * 2, "user_id": ["u1", "u2"], "item_id": ["i", "i"]})
    pq.write_table(table, snapshot / "events.parquet")
    event = {"userId": "u1", "itemId": "i1", "eventType": "click"}
    assert client.post("/api/events", json=event).status_code == 202

    assert client.delete("/api/users/u1").status_code == 204

    deadline = time.monotonic() + 20
    while "u1" in pq.read_table(snapshot / "events.parquet").column("user_id").to_pylist():
        assert time.monotonic() < deadline, "the scheduled purge did not run"
        time.sleep(0.1)
    assert pq.read_table(snapshot / "events.parquet").column("user_id").to_pylist() == ["u2"]
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while not any(e.action == "purge.run" for e in runtime.store.audit.since(0, 100)):
        assert time.monotonic() < deadline, "the purge was not audited"
        time.sleep(0.05)
    [run] = [e for e in runtime.store.audit.since(0, 100) if e.action == "purge.run"]
    assert run.actor == "scheduler"
