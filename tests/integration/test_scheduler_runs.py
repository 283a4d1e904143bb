"""How the scheduler runs a training and records it, with stand-in children for
``recloop train``: its report read back (a blocked version, its gates), a run past its time
limit, a scheduler stopped mid-run, a record left running by a process that died."""

from __future__ import annotations

import os
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recloop.config import Settings
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.schedule import Readings
from recloop.registry.runs import RunLog, RunRecord
from recloop.runtime.leadership import SoleProcess
from recloop.runtime.scheduler import Scheduler

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 8, 12, tzinfo=UTC)


def child(body: str) -> tuple[str, ...]:
    """A stand-in for ``recloop``: Python running ``body`` with ``report`` the path given
    after ``--report-json`` and ``args`` the rest of its arguments."""
    script = textwrap.dedent(
        """
        import json, sys, time
        args = sys.argv[1:]
        report = args[args.index("--report-json") + 1]
        """
    ) + textwrap.dedent(body)
    return (sys.executable, "-c", script)


def scheduler(tmp_path: Path, body: str, **schedule: Any) -> Scheduler:
    settings = Settings(data_dir=tmp_path / "data", schedule={"enabled": True, **schedule})
    return Scheduler(
        settings,
        SoleProcess(),
        lambda app_id: Readings(events=123),
        Metrics(),
        clock=lambda: NOW,
        command=child(body),
    )


BLOCKED = """
json.dump({"version": "v9", "snapshot_version": "s9", "interactions": 500, "users": 40,
           "items": 60, "promoted": False, "passed": False,
           "gates": [{"name": "validated", "passed": True, "detail": "ok"},
                     {"name": "no_regression", "passed": False, "detail": "recall fell"}],
           "args": args}, open(report, "w"))
"""


def test_a_blocked_version_is_recorded_with_its_gates_and_the_tune_job_passes_tune(
    tmp_path: Path,
) -> None:
    s = scheduler(tmp_path, BLOCKED)
    s.run_now("default", job="tune", reason="by hand")
    record = s.wait(30)
    assert record is not None
    assert record.outcome == "blocked"
    assert record.version == "v9"
    assert record.blocked_by() == ["no_regression: recall fell"]
    assert record.data["snapshot_version"] == "s9"
    assert record.data["interactions"] == 500
    assert record.data["events"] == 123  # what the store held when it started
    log_text = Path(record.data["log"]).read_text()
    assert log_text == ""  # the stand-in printed nothing
    assert s.runs.recent("default")[0] == record
    assert s.running() is None
    samples = {
        tuple(sorted(x.labels.items())): x.value
        for family in s.metrics.training_runs.collect()  # type: ignore[union-attr]
        for x in family.samples
        if x.name.endswith("_total")
    }
    key = (("app", "default"), ("job", "tune"), ("outcome", "blocked"), ("trigger", "manual"))
    assert samples == {key: 1.0}
    # The child was told the app, the data directory and --tune; its settings file is gone.
    assert not list((tmp_path / "data" / "run" / "training").glob("*.toml"))


def test_the_child_trains_with_the_services_settings(tmp_path: Path) -> None:
    body = """
    import os
    from recloop.config import Settings
    json.dump({"version": "v1", "promoted": True, "gates": [],
               "apps": Settings(data_dir=args[args.index("--data-dir") + 1]).schedule.apps,
               "config": os.environ["RECLOOP_CONFIG"]}, open(report, "w"))
    print(json.dumps(Settings(data_dir=args[args.index("--data-dir") + 1]).schedule.apps))
    """
    s = scheduler(tmp_path, body, apps=["shop"])
    s.run_now("shop")
    record = s.wait(30)
    assert record is not None
    assert record.outcome == "promoted", record
    assert Path(record.data["log"]).read_text().strip() == '["shop"]'


def test_a_run_past_its_time_limit_is_stopped_and_failed(tmp_path: Path) -> None:
    s = scheduler(tmp_path, "time.sleep(60)", run_timeout_h=1 / 3600)
    s.run_now("default")
    record = s.wait(30)
    assert record is not None
    assert record.outcome == "failed"
    assert record.error == "stopped after 0.000277778 h (schedule.run_timeout_h)"


def test_a_scheduler_stopped_mid_run_stops_the_child_and_records_it_abandoned(
    tmp_path: Path,
) -> None:
    s = scheduler(tmp_path, "time.sleep(60)")
    started = s.run_now("default")
    with pytest.raises(RuntimeError, match="a run is in progress"):
        s.run_now("default")
    s.stop()
    record = s.runs.get("default", started.run_id)
    assert record is not None
    assert record.outcome == "abandoned"
    assert record.error == "stopped: the scheduler stopped"


def test_a_failed_child_records_its_last_words(tmp_path: Path) -> None:
    s = scheduler(tmp_path, "print('error: the store is not migrated'); sys.exit(1)")
    s.run_now("default")
    record = s.wait(30)
    assert record is not None
    assert record.outcome == "failed"
    assert record.error == "error: the store is not migrated"


def test_a_run_left_by_a_dead_process_is_abandoned_and_one_alive_is_waited_for(
    tmp_path: Path,
) -> None:
    s = scheduler(tmp_path, BLOCKED)
    runs = RunLog(s.settings.resolved_model_dir())
    dead = RunRecord(
        "20261208T100000Z-dead00",
        "default",
        "train",
        "cadence",
        "c",
        NOW - timedelta(hours=2),
        host=s.host,
        pid=2**22 + 12345,
    )
    runs.write(dead)
    alive = RunRecord(
        "20261208T110000Z-alive0",
        "default",
        "train",
        "drift",
        "d",
        NOW - timedelta(hours=1),
        host=s.host,
        pid=os.getpid(),
    )
    runs.write(alive)
    assert s.step() is None  # the live one is waited for
    assert s.last_decisions["default"].reason == "a run is in progress"
    abandoned = runs.get("default", dead.run_id)
    assert abandoned is not None
    assert abandoned.outcome == "abandoned"
    runs.write(alive.ended(NOW, "abandoned"))
    # Neither trained anything: the cadence has not started and a train run is due.
    started = s.step()
    assert started is not None
    assert started.reason == "cadence: no train run or model version yet"
    s.wait(30)


def test_a_failed_cadence_run_is_tried_again_once_the_backoff_has_passed(tmp_path: Path) -> None:
    now = [NOW]
    settings = Settings(data_dir=tmp_path / "data", schedule={"enabled": True})
    s = Scheduler(
        settings,
        SoleProcess(),
        lambda app_id: Readings(),
        clock=lambda: now[0],
        command=child("sys.exit(3)"),
    )
    first = s.step()
    assert first is not None
    failed = s.wait(30)
    assert failed is not None
    assert failed.outcome == "failed"
    now[0] = NOW + timedelta(minutes=59)
    assert s.step() is None
    assert s.last_decisions["default"].reason.startswith("backing off after 1 failed run(s)")
    now[0] = NOW + timedelta(minutes=61)
    again = s.step()
    assert again is not None
    assert again.reason == "cadence: no train run or model version yet"
    s.wait(30)
    now[0] = NOW + timedelta(minutes=61 + 119)
    assert s.step() is None  # two failures in a row: two hours
    now[0] = NOW + timedelta(minutes=61 + 121)
    assert s.step() is not None
    s.wait(30)
