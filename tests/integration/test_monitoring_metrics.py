"""``/metrics`` after real requests: every metric the alert rules name is there with samples,
online CTR and event lag follow what was served and clicked, no label carries a user or an
item id, and the exposition passes ``promtool check metrics``."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.config import Settings, SourceSlotConfig, SurfaceConfig, default_surfaces
from recloop.registry.artifacts import ModelRegistry, VersionManifest
from recloop.registry.runs import RunLog, RunRecord
from tests.factories import settings_with

pytestmark = pytest.mark.integration

ALERTS = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"
USERS = [f"user-zq{n}" for n in range(4)]
ITEMS = [f"item-xk{n}" for n in range(12)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Home reads online features (so their missing rates are counted)."""
    surfaces = default_surfaces()
    surfaces["home"] = SurfaceConfig(
        sources=[SourceSlotConfig(name="popular")], online_features=True
    )
    settings = settings_with(tmp_path / "data", online_url="memory://", surfaces=surfaces)
    # A trained version, three days old, served from the start.
    registry = ModelRegistry(settings.resolved_model_dir())
    created = datetime.now(UTC) - timedelta(days=3)
    with registry.writing("default", "v1") as directory:
        registry.write_manifest(directory, VersionManifest("v1", "default", created, None, ()))
    registry.promote("default", "v1")
    # ... by a scheduled training run, whose record the service reads its last run's time from.
    run = RunRecord("20261201T000000Z-aaaaaa", "default", "train", "cadence", "c", created)
    RunLog(settings.resolved_model_dir()).write(run.ended(created, "promoted", version="v1"))
    return settings


def _alert_metrics() -> set[str]:
    """The recloop metric names the alert rules' expressions read (with their suffix), but
    drift's: they need a version with a drift reference, traffic and a version before it
    (tests/integration/test_drift.py checks them)."""
    exprs = re.findall(r"expr: (.*?)\n\s+(?:for|labels):", ALERTS.read_text(), re.DOTALL)
    names = {name for expr in exprs for name in re.findall(r"\brecloop_[a-z0-9_]+", expr)}
    return {name for name in names if not name.startswith("recloop_drift_")}


def _family(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum)$", "", name)


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert found is not None, sample
    return float(found.group(1))


def _traffic(client: TestClient) -> None:
    items = [{"itemId": i, "category": f"c{n % 3}"} for n, i in enumerate(ITEMS)]
    assert client.post("/api/items", json={"items": items}).status_code == 200
    ten_minutes_ago = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    events = [
        {"userId": USERS[n % 4], "itemId": ITEMS[n % 12], "eventType": "view"} for n in range(20)
    ] + [{"userId": USERS[0], "itemId": ITEMS[0], "eventType": "view", "eventTs": ten_minutes_ago}]
    assert client.post("/api/events", json={"events": events}).status_code == 202
    client.app.state.runtime.refresher.refresh()  # type: ignore[attr-defined]


def test_every_metric_the_alerts_read_is_exposed_with_samples(client: TestClient) -> None:
    _traffic(client)
    served = client.get("/api/recommendations", params={"userId": "user-new", "surface": "home"})
    assert served.status_code == 200
    body = served.json()
    clicked = body["items"][0]["itemId"]
    click = {"userId": "user-new", "eventType": "click", "requestId": body["requestId"]}
    events = [{**click, "itemId": clicked}, {**click, "itemId": clicked}]  # one item, twice
    events.append({**click, "itemId": clicked, "requestId": "not-served-here"})
    assert client.post("/api/events", json={"events": events}).status_code == 202
    client.get("/api/recommendations", params={"userId": USERS[1], "surface": "trending"})

    text = client.get("/metrics").text

    families = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    named = _alert_metrics()
    assert len(named) >= 7
    for name in sorted(named):
        exposed = name in families or _family(name) in families
        assert exposed, f"{name} is in docs/alerts.yml, not in /metrics"
        assert re.search(rf"^{name}\{{", text, re.MULTILINE), f"{name} has no sample"
    served_labels = 'app="default",surface="home",variant="default"'
    assert _value(text, f"recloop_served_lists_total{{{served_labels}}}") == 1
    assert _value(text, f"recloop_served_items_total{{{served_labels}}}") == len(body["items"])
    assert _value(text, f"recloop_served_clicks_total{{{served_labels}}}") == 1
    assert _value(text, 'recloop_unjoined_clicks_total{app="default"}') == 1
    # 21 events then 3 clicks; the one stamped ten minutes ago is over 300 s late.
    assert _value(text, 'recloop_event_lag_seconds_count{app="default"}') == 24
    assert _value(text, 'recloop_event_lag_seconds_bucket{app="default",le="300.0"}') == 23
    assert _value(text, 'recloop_catalog_active_items{app="default"}') == len(ITEMS)
    assert _value(text, 'recloop_training_last_outcome{app="default",outcome="promoted"}') == 1
    assert 'recloop_stage_seconds_count{app="default",stage="rank"}' in text
    assert 'recloop_source_seconds_count{app="default",source="popular"}' in text
    assert 'recloop_queue_depth{queue="writer"}' in text
    assert "recloop_catalog_coverage{" in text
    # Labels are bounded: no user, item or request id, no model version in a stage name.
    for identifier in [*USERS, "user-new", *ITEMS, body["requestId"]]:
        assert identifier not in text
    assert not re.search(r'stage="rank:', text)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_the_exposition_passes_promtool_check_metrics(client: TestClient) -> None:
    _traffic(client)
    client.get("/api/recommendations", params={"userId": USERS[0], "surface": "home"})

    text = client.get("/metrics").text
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
