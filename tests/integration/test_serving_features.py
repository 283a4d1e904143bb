"""A surface that reads online features: they reach the ranker, and a dead Redis degrades."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.api.server import free_port
from recloop.config import Settings, SourceSlotConfig, SurfaceConfig, default_surfaces
from tests.factories import settings_with

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, online_url: str) -> Settings:
    surfaces = default_surfaces()
    surfaces["home"] = SurfaceConfig(
        sources=[SourceSlotConfig(name="popular")], online_features=True
    )
    return settings_with(tmp_path / "data", online_url=online_url, surfaces=surfaces)


def _client(settings: Settings, dev_key: str) -> TestClient:
    client = TestClient(create_app(settings))
    client.headers["Authorization"] = f"Bearer {dev_key}"
    return client


def _seed(client: TestClient) -> None:
    items = [{"itemId": f"i{n}", "category": f"c{n % 3}"} for n in range(12)]
    assert client.post("/api/items", json={"items": items}).status_code == 200
    now = datetime.now(UTC).isoformat()
    events = [
        {"userId": f"u{n % 4}", "itemId": f"i{n % 12}", "eventType": "click", "eventTs": now}
        for n in range(40)
    ]
    assert client.post("/api/events", json={"events": events}).status_code == 202
    client.app.state.runtime.refresher.refresh()  # type: ignore[attr-defined]


def test_features_stage_runs_when_the_surface_reads_online_features(
    tmp_path: Path, dev_key: str
) -> None:
    settings = _settings(tmp_path, "memory://")
    with _client(settings, dev_key) as client:
        _seed(client)
        body = client.get("/api/recommendations", params={"userId": "u9", "debug": "true"}).json()
    stage = next(s for s in body["stages"] if s["stage"] == "features")
    assert stage["outcome"] == "ok"
    assert body["items"]
    assert body["fallback"] is False


def test_a_dead_online_store_falls_back_to_default_features_and_counts_it(
    tmp_path: Path, dev_key: str
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = _settings(tmp_path, dead)
    with _client(settings, dev_key) as client:
        _seed(client)
        response = client.get("/api/recommendations", params={"userId": "u9", "debug": "true"})
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    body = response.json()
    assert body["items"], "the request still succeeds"
    assert body["fallback"] is True
    stage = next(s for s in body["stages"] if s["stage"] == "features")
    assert stage["outcome"] == "fallback"
    assert (
        'recloop_stage_outcomes_total{app="default",outcome="fallback",stage="features"} 1.0'
        in (metrics)
    )
