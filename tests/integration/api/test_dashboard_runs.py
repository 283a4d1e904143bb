"""The dashboard's Models page lists the training runs: why each started, what it read and
what it decided (the version promoted, the gates that blocked one, the error)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.config import Settings
from recloop.registry.runs import RunLog, RunRecord
from tests.factories import settings_with

pytestmark = pytest.mark.integration

T = datetime(2026, 12, 1, 3, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(tmp_path / "data")


@pytest.fixture
def browser(settings: Settings, dev_key: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        answer = client.post("/dashboard/login", data={"key": dev_key}, follow_redirects=False)
        assert answer.status_code == 303
        yield client


def test_the_models_page_says_why_each_run_started_and_what_it_decided(
    settings: Settings, browser: TestClient
) -> None:
    runs = RunLog(settings.resolved_model_dir())
    runs.write(
        RunRecord(
            "20261201T030000Z-aaaaaa",
            "default",
            "train",
            "drift",
            "drift: PSI 0.41 on session_length > 0.25",
            T,
            data={"snapshot_version": "snap-1", "interactions": 1234},
        ).ended(
            T + timedelta(minutes=3),
            "blocked",
            version="v-blocked",
            gates=({"name": "no_regression", "passed": False, "detail": "recall@100 fell 9 %"},),
        )
    )
    runs.write(
        RunRecord(
            "20261202T030000Z-bbbbbb", "default", "train", "cadence", "cadence: 24.1 h", T
        ).ended(T + timedelta(days=1), "failed", error="NotEnoughData: too few")
    )
    runs.write(RunRecord("20261203T030000Z-cccccc", "other-app", "train", "ctr", "ctr: x", T))
    page = browser.get("/dashboard/models").text
    assert "Training runs and why each started" in page
    assert "The scheduler is off" in page
    assert "drift: PSI 0.41 on session_length &gt; 0.25" in page
    assert "snap-1" in page
    assert "1234 engagements" in page
    assert "v-blocked" in page
    assert "no_regression: recall@100 fell 9 %" in page
    assert "NotEnoughData: too few" in page
    assert page.index("20261202T030000Z-bbbbbb") < page.index("20261201T030000Z-aaaaaa")
    assert "20261203T030000Z-cccccc" not in page  # another app's run


def test_an_app_without_runs_says_so(browser: TestClient) -> None:
    assert "No training run recorded yet." in browser.get("/dashboard/models").text
