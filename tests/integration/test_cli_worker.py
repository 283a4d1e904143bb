"""`recloop worker` runs the scheduler apart from serving; `recloop runs list` shows why each
run started, what it read and what it decided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recloop.config import Settings
from tests.integration.conftest import run_cli
from tests.integration.test_scheduled_training import SOURCES, load

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECLOOP_SCHEDULE__ENABLED", "true")
    monkeypatch.setenv("RECLOOP_TRAIN__SOURCES", json.dumps(SOURCES))
    monkeypatch.setenv("RECLOOP_TRAIN__RANKER__ENABLED", "false")
    return data_dir


def test_worker_once_trains_what_is_due_and_runs_list_shows_it(data_dir: Path) -> None:
    load(Settings(), users=80)
    result = run_cli("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "default: train run" in result.stdout
    assert "cadence: no train run or model version yet" in result.stdout
    assert "promoted" in result.stdout

    listed = run_cli("runs", "list")
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.stdout.split())
    assert "cadence: no train run or model version yet" in text
    assert "640 engagements" in text
    assert "promoted" in text

    again = run_cli("worker", "--once")
    assert again.exit_code == 0, again.output
    assert "default: triggers wait 6 h after a run" in again.stdout
    rows = run_cli("runs", "list", "--json")
    [record] = [json.loads(line) for line in rows.stdout.splitlines()]
    assert record["outcome"] == "promoted"
    assert record["trigger"] == "cadence"
    assert record["version"] == (data_dir / "models" / "default" / "CURRENT").read_text().strip()


def test_worker_refuses_to_start_when_the_schedule_is_off(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_SCHEDULE__ENABLED", "false")
    result = run_cli("worker", "--once")
    assert result.exit_code == 2
    assert "schedule.enabled" in result.stderr


def test_runs_list_says_when_there_are_none(data_dir: Path) -> None:
    result = run_cli("runs", "list")
    assert result.exit_code == 0
    assert "no training runs recorded for app 'default'" in result.stdout
