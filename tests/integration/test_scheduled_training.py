"""The service trains by itself: with ``[schedule]`` on, a served app with data and no model
runs ``recloop train`` in a child process, records why it started, what it read and what it
decided, serves the version its gates passed, and counts the run."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.config import Settings
from recloop.domain import Item
from recloop.registry.artifacts import ModelRegistry
from recloop.registry.runs import RunLog, RunRecord
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from tests.factories import make_event, settings_with

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "default"
GENRES = ("jazz", "rock", "folk", "opera")
SOURCES = [{"name": "covisitation"}, {"name": "als", "params": {"factors": 8, "iterations": 3}}]


def scheduled(data_dir: Path, **schedule: Any) -> Settings:
    return settings_with(
        data_dir,
        schedule={"enabled": True, "check_s": 0.2, **schedule},
        train={"sources": SOURCES, "ranker": {"enabled": False}},
    )


def load(settings: Settings, users: int) -> str:
    """A catalog of four genres and ``users`` users who each click their genre; the key."""
    store = prepare_store(settings)
    try:
        key = ensure_dev_key(store, settings.data_dir)
        now = datetime.now(UTC)
        items = [Item(f"{g}-{i}", title=f"{g} {i}", category=g) for g in GENRES for i in range(15)]
        store.catalog.upsert_items(APP, items, now)
        rng = random.Random(3)
        events = [
            make_event(
                f"e{u}-{step}",
                app_id=APP,
                user_id=f"u{u}",
                item_id=f"{GENRES[u % 4]}-{rng.randrange(15)}",
                event_ts=now - timedelta(days=8 - step, minutes=u),
                server_ts=now - timedelta(days=8 - step, minutes=u),
            )
            for u in range(users)
            for step in range(8)
        ]
        store.events.append(events)
    finally:
        store.close()
    assert key is not None
    return key


def ended(settings: Settings, timeout_s: float = 120) -> RunRecord:
    """The first run's record once it has ended."""
    runs = RunLog(settings.resolved_model_dir())
    deadline = time.monotonic() + timeout_s
    while True:
        records = runs.recent(APP)
        if records and records[-1].outcome != "running":
            return records[-1]
        assert time.monotonic() < deadline, f"no run ended: {records}"
        time.sleep(0.2)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return scheduled(tmp_path / "data")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    key = load(settings, users=80)
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {key}"
        yield test_client


def test_a_served_app_trains_on_its_cadence_and_records_the_run(
    client: TestClient, settings: Settings
) -> None:
    run = ended(settings)
    assert run.outcome == "promoted", run
    assert (run.job, run.trigger) == ("train", "cadence")
    assert run.reason == "cadence: no train run or model version yet"
    registry = ModelRegistry(settings.resolved_model_dir())
    assert run.version is not None
    assert registry.current(APP) == run.version
    # What it read: the snapshot, the engagements, where its data ends.
    assert run.data["snapshot_version"] == registry.manifest(APP, run.version).snapshot_version
    assert run.data["interactions"] == 640
    assert (run.data["events"], run.data["items"]) == (640, 60)  # the store, at its start
    assert "data_as_of" in run.data
    assert {g["name"] for g in run.gates} >= {"validated", "no_regression"}
    assert all(g["passed"] for g in run.gates)
    assert run.ended_at is not None
    assert run.ended_at >= run.started_at
    assert run.pid is None
    assert Path(run.data["log"]).is_file()

    metrics = client.get("/metrics").text
    assert (
        'recloop_training_runs_total{app="default",job="train",outcome="promoted",'
        'trigger="cadence"} 1.0' in metrics
    )
    assert 'recloop_training_run_last_timestamp_seconds{app="default",outcome="promoted"}' in (
        metrics
    )
    # The service loads the version the run promoted, and the cadence is not due again.
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while dict(runtime.model_loader.versions()).get(APP, (None, None))[1] != run.version:
        assert time.monotonic() < deadline, "the promoted version was not loaded"
        time.sleep(0.1)
    time.sleep(1)
    assert len(RunLog(settings.resolved_model_dir()).recent(APP)) == 1
    assert runtime.scheduler.last_decisions[APP].reason == "triggers wait 6 h after a run"


def test_a_run_that_fails_records_the_error_and_backs_off(tmp_path: Path) -> None:
    settings = scheduled(tmp_path / "data")
    key = load(settings, users=1)  # 8 engagements: too few to train
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        run = ended(settings, timeout_s=60)
        assert run.outcome == "failed"
        assert run.error is not None
        assert "training needs at least 20" in run.error, run.error
        assert run.version is None
        time.sleep(1)
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert len(RunLog(settings.resolved_model_dir()).recent(APP)) == 1
        assert runtime.scheduler.last_decisions[APP].reason.startswith(
            "backing off after 1 failed run(s)"
        )
        metrics = client.get("/metrics").text
        assert 'job="train",outcome="failed",trigger="cadence"} 1.0' in metrics


def test_off_by_default(tmp_path: Path) -> None:
    settings = settings_with(tmp_path / "data")
    assert not settings.schedule.enabled
    with TestClient(create_app(settings)) as client:
        assert client.app.state.runtime.scheduler is None  # type: ignore[attr-defined]


def test_a_volume_of_new_events_starts_a_run_with_no_cadence(tmp_path: Path) -> None:
    settings = scheduled(
        tmp_path / "data", train_every_h=0, tune_every_h=0, new_events=40, min_interval_h=0
    )
    key = load(settings, users=80)
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        scheduler = client.app.state.runtime.scheduler  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while APP not in scheduler.last_decisions:  # the first check reads the baseline
            assert time.monotonic() < deadline, "the scheduler did not check"
            time.sleep(0.05)
        assert scheduler.last_decisions[APP].reason == "nothing due"
        events = [
            {"eventId": f"n{i}", "userId": f"u{i}", "itemId": "jazz-1", "eventType": "click"}
            for i in range(40)
        ]
        assert client.post("/api/events", json={"events": events}).status_code == 202
        run = ended(settings)
    assert (run.job, run.trigger, run.outcome) == ("train", "events", "promoted")
    assert run.reason == "events: 40 new since the last run >= 40"
    assert run.data["events"] == 680


def test_a_run_a_worker_recorded_is_in_the_services_metrics(tmp_path: Path) -> None:
    settings = settings_with(tmp_path / "data", serving={"model_refresh_s": 0.1})
    key = load(settings, users=1)
    started = datetime(2026, 12, 1, 3, tzinfo=UTC)
    record = RunRecord("20261201T030000Z-aaaaaa", APP, "train", "cadence", "c", started)
    RunLog(settings.resolved_model_dir()).write(
        record.ended(started + timedelta(minutes=5), "promoted", version="v1")
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        metrics = client.get("/metrics").text
    expected = started.timestamp() + 300
    [value] = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(
            'recloop_training_run_last_timestamp_seconds{app="default",outcome="promoted"}'
        )
    ]
    assert value == expected
