"""The service runs retention itself every ``retention.interval_h``: an old snapshot goes
with no command typed, and the run is audited."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.config import Settings
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from tests.factories import settings_with

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(
        tmp_path / "data",
        retention={"interval_h": 0.5 / 3600, "keep_snapshots": 1, "min_age_h": 0},
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    store = prepare_store(settings)
    key = ensure_dev_key(store, settings.data_dir)
    store.close()
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {key}"
        yield test_client


def test_an_old_snapshot_goes_on_the_services_own_schedule(
    client: TestClient, settings: Settings
) -> None:
    root = settings.data_dir / "snapshots"
    for day in (1, 2):
        snapshot = root / f"2026010{day}T000000Z-abc"
        snapshot.mkdir(parents=True)
        manifest = {"app_id": "default", "created_at": f"2026-01-0{day}T00:00:00+00:00"}
        (snapshot / "manifest.json").write_text(json.dumps(manifest))

    deadline = time.monotonic() + 20
    while (root / "20260101T000000Z-abc").exists():
        assert time.monotonic() < deadline, "the scheduled gc did not run"
        time.sleep(0.1)
    assert sorted(p.name for p in root.iterdir()) == ["20260102T000000Z-abc"]
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while not any(e.action == "gc.run" for e in runtime.store.audit.since(0, 100)):
        assert time.monotonic() < deadline, "the gc was not audited"
        time.sleep(0.05)
    [run] = [e for e in runtime.store.audit.since(0, 100) if e.action == "gc.run"]
    assert run.actor == "scheduler"
    assert run.detail["snapshot"] == 1
