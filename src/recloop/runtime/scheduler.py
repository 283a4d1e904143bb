"""The retraining scheduler: one per deployment, it starts ``recloop train`` on a cadence
and on triggers, one run at a time, and records every run.

Every ``schedule.check_s`` the process that holds the scheduler's lease (``StoreLease`` on
PostgreSQL, a lock file beside the data otherwise) reads its monitors
(``runtime.readings``) and the run records, asks ``monitoring.schedule.decide``, and when a
run is due starts the training as a child process: the code path of ``recloop train``, with
its promotion gates, on the settings this process runs with, at a lower CPU priority. The
child shares no interpreter with serving, so no training step holds a request up; a thread
of this process waits for it and writes the run's record (``registry.runs``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recloop.config import Settings
from recloop.config.saved import write_settings
from recloop.monitoring.metrics import Metrics
from recloop.monitoring.schedule import Decision, History, Readings, decide
from recloop.registry.artifacts import ModelRegistry
from recloop.registry.runs import RunLog, RunRecord, new_run_id
from recloop.runtime.leadership import Leadership
from recloop.serving.refresh import PeriodicTask

log = logging.getLogger(__name__)

#: The child's command line up to the command: this interpreter running the ``recloop`` CLI.
RECLOOP = (sys.executable, "-c", "from recloop.cli import main; main()")


@dataclass
class _Active:
    record: RunRecord
    process: subprocess.Popen[bytes] | None = None
    stopping: bool = False

    def stopped(self) -> bool:
        """Whether the scheduler has been told to stop (set from another thread)."""
        return self.stopping


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Scheduler:
    """Decides and starts the scheduled training runs of ``settings.schedule.apps``.

    Args:
        settings: the deployment's settings (the child trains with these).
        leadership: the scheduler's own lease: only its holder decides and starts runs.
        readings: what the monitors say about an app now.
        metrics: where runs are counted.
        clock: the scheduler's clock (a test passes its own).
        command: the child's command line before ``train`` (a test may pass another).
        counts: the app's events and items in the store, read when a run starts for its
            record (None: only what ``readings`` counted).
    """

    def __init__(
        self,
        settings: Settings,
        leadership: Leadership,
        readings: Callable[[str], Readings],
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        command: tuple[str, ...] = RECLOOP,
        counts: Callable[[str], tuple[int, int]] | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.schedule
        self.leadership = leadership
        self.readings = readings
        self.metrics = metrics
        self.clock = clock
        self.command = command
        self.counts = counts
        self.runs = RunLog(settings.resolved_model_dir())
        self.registry = ModelRegistry(settings.resolved_model_dir())
        self.work_dir = settings.data_dir / "run" / "training"
        self.host = socket.gethostname()
        self.last_decisions: dict[str, Decision] = {}
        self._active: _Active | None = None
        self._thread: threading.Thread | None = None
        self._first_seen: dict[str, datetime] = {}
        self._first_counts: dict[str, tuple[int | None, int | None]] = {}
        self._lock = threading.Lock()
        self._starting = threading.Lock()
        self._task: PeriodicTask | None = None

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        """Check every ``schedule.check_s`` in a background thread."""
        on_error = self.metrics.refresh_errors.inc if self.metrics is not None else lambda: None
        self._task = PeriodicTask("scheduler", self.step, self.config.check_s, on_error=on_error)
        self._task.start()

    def running(self) -> RunRecord | None:
        """The run in progress in this process, if any."""
        active = self._active
        return active.record if active is not None else None

    def step(self) -> RunRecord | None:
        """Decide for each app in turn; start the first run that is due. Returns it."""
        if not self.leadership.leads():
            return None
        with self._lock:
            if self._active is not None:
                return None
            for app_id in self.config.apps:
                readings = self.readings(app_id)
                now = self.clock()
                history = self._history(app_id, now, readings)
                decision = decide(now, self.config, self.settings.serving.drift, history, readings)
                self.last_decisions[app_id] = decision
                if decision.job is not None:
                    log.info("training %s for app %s: %s", decision.job, app_id, decision.reason)
                    return self._start(app_id, decision, readings, now)
        return None

    def run_now(self, app_id: str, job: str = "train", reason: str = "manual") -> RunRecord:
        """Start a run at once, whatever is due (trigger ``manual``); not while one is
        running.

        Raises:
            RuntimeError: a run is in progress.
        """
        with self._lock:
            if self._active is not None:
                raise RuntimeError(f"a run is in progress: {self._active.record.run_id}")
            readings = self.readings(app_id)
            return self._start(app_id, Decision(job, "manual", reason), readings, self.clock())

    def wait(self, timeout_s: float | None = None) -> RunRecord | None:
        """Wait for the run in progress to end; its final record (None: no run)."""
        thread = self._thread
        active = self._active
        if thread is None or active is None:
            return None
        thread.join(timeout_s)
        return self.runs.get(active.record.app_id, active.record.run_id)

    def stop(self) -> None:
        """Stop checking; a run in progress is stopped and recorded as abandoned."""
        if self._task is not None:
            self._task.stop()
            self._task = None
        active = self._active
        if active is not None:
            with self._starting:
                active.stopping = True
                if active.process is not None:
                    active.process.terminate()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    # -- what the records say ------------------------------------------------------------

    def _history(self, app_id: str, now: datetime, readings: Readings) -> History:
        records = self.runs.recent(app_id)
        running = False
        for record in records:
            if record.outcome != "running":
                continue
            if record.host == self.host and record.pid is not None and _alive(record.pid):
                running = True  # a child a previous leader on this host left running
            else:
                ended = record.ended(
                    now, "abandoned", error="the scheduler that started it stopped"
                )
                self.runs.write(ended)
                self._count(ended)
        records = self.runs.recent(app_id)
        last_started: dict[str, datetime] = {}
        for record in records:
            # A run that made no version (failed, abandoned) does not reset its job's clock:
            # once the backoff has passed, the job is due again.
            if record.outcome in ("promoted", "blocked", "running"):
                last_started.setdefault(record.job, record.started_at)
        failures = 0
        last_failure: datetime | None = None
        for record in records:
            if record.outcome == "abandoned":
                continue
            if record.outcome != "failed":
                break
            failures += 1
            last_failure = last_failure or record.ended_at or record.started_at
        if app_id not in self._first_counts:
            self._first_counts[app_id] = (readings.events, readings.items)
        base_events, base_items = self._first_counts[app_id]
        read = next((r.data for r in records if "events" in r.data or "items" in r.data), None)
        if read is not None:
            base_events = read.get("events", base_events)
            base_items = read.get("items", base_items)
        first = self._first_seen.setdefault(app_id, now)
        if records:
            first = min(first, records[-1].started_at)
        return History(
            last_started=last_started,
            last_model=self._last_model(app_id),
            first_seen=first,
            running=running,
            failures=failures,
            last_failure=last_failure,
            baseline_events=base_events,
            baseline_items=base_items,
        )

    def _last_model(self, app_id: str) -> datetime | None:
        versions = self.registry.versions(app_id)
        if not versions:
            return None
        try:
            return self.registry.manifest(app_id, versions[-1]).created_at
        except (OSError, ValueError, KeyError):
            return None

    # -- one run -------------------------------------------------------------------------

    def _start(
        self, app_id: str, decision: Decision, readings: Readings, now: datetime
    ) -> RunRecord:
        assert decision.job is not None
        data: dict[str, Any] = {}
        events, items = readings.events, readings.items
        if self.counts is not None and (events is None or items is None):
            try:
                events, items = self.counts(app_id)
            except Exception:  # a count is worth a line in the record, not a run
                log.exception("could not count app %s's events and items", app_id)
        if events is not None:
            data["events"] = events
        if items is not None:
            data["items"] = items
        record = RunRecord(
            run_id=new_run_id(now),
            app_id=app_id,
            job=decision.job,
            trigger=decision.trigger,
            reason=decision.reason,
            started_at=now,
            data=data,
            host=self.host,
        )
        self.runs.write(record)
        self._active = _Active(record)
        self._thread = threading.Thread(
            target=self._run, args=(self._active,), name="recloop-training", daemon=True
        )
        self._thread.start()
        return record

    def _run(self, active: _Active) -> None:
        record = active.record
        try:
            final = self._train(active)
        except Exception as exc:  # the record must end whatever went wrong
            log.exception("training run %s failed", record.run_id)
            final = record.ended(self.clock(), "failed", error=f"{type(exc).__name__}: {exc}")
        self.runs.write(final)
        self._count(final)
        self.runs.prune(record.app_id, self.config.keep_runs)
        log.info(
            "training run %s of app %s: %s%s",
            record.run_id,
            record.app_id,
            final.outcome,
            f" ({final.error})" if final.error else "",
        )
        with self._lock:
            self._active = None

    def _train(self, active: _Active) -> RunRecord:
        record = active.record
        self.work_dir.mkdir(parents=True, exist_ok=True)
        stem = self.work_dir / record.run_id
        config, report, output = (
            stem.with_suffix(".toml"),
            stem.with_suffix(".json"),
            stem.with_suffix(".log"),
        )
        # The child trains with exactly this process's settings, whatever file or variables
        # they came from; the file may hold the store's password: the owner's only.
        config.touch(mode=0o600)
        write_settings(self.settings, config, header=f"training run {record.run_id}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the child's counts are not the service's
        env["RECLOOP_CONFIG"] = str(config)
        args = [
            *self.command,
            "train",
            "--app",
            record.app_id,
            "--data-dir",
            str(self.settings.data_dir),
            "--report-json",
            str(report),
            *(["--tune"] if record.job == "tune" else []),
        ]
        if self.config.nice and shutil.which("nice"):
            args = ["nice", "-n", str(self.config.nice), *args]
        timeout_s = self.config.run_timeout_h * 3600
        try:
            with output.open("wb") as out:
                with self._starting:  # a stop either comes first or sees the child
                    if active.stopping:
                        return record.ended(
                            self.clock(), "abandoned", error="stopped: the scheduler stopped"
                        )
                    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
                    active.process = process
                self.runs.write(replace(record, pid=process.pid))
                try:
                    code = process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    return record.ended(
                        self.clock(),
                        "failed",
                        error=f"stopped after {self.config.run_timeout_h:g} h "
                        "(schedule.run_timeout_h)",
                    )
        finally:
            config.unlink(missing_ok=True)
        now = self.clock()
        if active.stopped():  # since the child started
            return record.ended(now, "abandoned", error="stopped: the scheduler stopped")
        data = {**record.data, "log": str(output)}
        try:
            result: dict[str, Any] = json.loads(report.read_text())
        except (OSError, ValueError):
            result = {}
        finally:
            report.unlink(missing_ok=True)
        if code != 0 or "error" in result or "version" not in result:
            error = result.get("error") or _last_line(output) or f"exit status {code}"
            return record.ended(now, "failed", data=data, error=str(error))
        version = str(result["version"])
        for key in ("snapshot_version", "interactions", "users", "items", "validation_cases"):
            if key in result:
                data[f"trained_{key}" if key in ("items", "users") else key] = result[key]
        data.update(self._lineage(record.app_id, version))
        gates = tuple(result.get("gates") or ())
        outcome = "promoted" if result.get("promoted") else "blocked"
        return record.ended(now, outcome, version=version, data=data, gates=gates)

    def _lineage(self, app_id: str, version: str) -> dict[str, Any]:
        """Where the version's data ends, from its manifest."""
        try:
            extra = self.registry.manifest(app_id, version).extra
        except (OSError, ValueError, KeyError):
            return {}
        keys = ("data_as_of", "validation_cutoff_ts", "trained_through_ts")
        return {k: extra[k] for k in keys if extra.get(k) is not None}

    def _count(self, record: RunRecord) -> None:
        if self.metrics is None or record.ended_at is None:
            return
        labels = (record.app_id, record.job, record.trigger, record.outcome)
        self.metrics.training_runs.labels(*labels).inc()
        self.metrics.training_run_last.labels(record.app_id, record.outcome).set(
            record.ended_at.timestamp()
        )


def _last_line(path: Path) -> str:
    """The last line of a file that says something (a failed child's error)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")
