"""Automatic rollback: an experiment whose guardrail trips is stopped while it runs.

The same check moves staged canaries (``rollout``) through their ramps.

Stopped experiments are kept in a small JSON file beside the model versions (the folder
every replica reads), with when and why; every replica's guard re-reads it on each check,
so a stop by one replica, or by ``recloop experiment stop``, reaches them all within
``serving.experiment_check_s``. A stopped experiment's users get the surface as
configured: for a canary (a variant that pins a new model version) that is the promoted
version, which never stopped being loaded.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from recloop.analysis.decision import GuardrailStatus
from recloop.analysis.rollout import (
    RampAction,
    RampRecord,
    judge_stage,
    read_report,
    write_json,
)
from recloop.config import ExperimentConfig
from recloop.store.protocols import EventLog, RecommendationLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stop:
    """Why and when an experiment was stopped."""

    experiment: str
    at: datetime
    reason: str


class StoppedExperiments:
    """The stopped experiments, in a JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def read(self) -> dict[str, Stop]:
        """Every stop recorded so far (none when the file does not exist)."""
        try:
            raw = json.loads(self._path.read_text())
            return {
                name: Stop(name, datetime.fromisoformat(entry["at"]), entry["reason"])
                for name, entry in raw.items()
            }
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self._path}: not a record of stopped experiments ({exc})") from exc

    def stop(self, experiment: str, reason: str, at: datetime) -> bool:
        """Record a stop; False if the experiment was already stopped."""
        with self._lock:
            stops = self.read()
            if experiment in stops:
                return False
            stops[experiment] = Stop(experiment, at, reason)
            write_json(
                self._path,
                {
                    s.experiment: {"at": s.at.isoformat(), "reason": s.reason}
                    for s in stops.values()
                },
            )
            return True


class ExperimentGuard:
    """Checks running experiments with ``auto_stop`` and stops those whose guardrail trips;
    moves ramped experiments (staged canaries) on, or stops them.

    Args:
        experiments: the configured experiments.
        rec_log, events: where outcomes are read from.
        stopped: the shared record of stops.
        on_stopped: called with every experiment found stopped (here or elsewhere).
        min_users: a variant needs this many users before its guardrails are judged.
        clock: the time experiments are judged at.
        ramps: the shared record of ramps' stages (needed when an experiment has a ramp).
        on_stage: called with every ramped experiment's stage on each check.
        on_advanced: called once for each stage change this guard made (a metric).
    """

    def __init__(
        self,
        experiments: Sequence[ExperimentConfig],
        rec_log: RecommendationLog,
        events: EventLog,
        stopped: StoppedExperiments,
        on_stopped: Callable[[str], None],
        *,
        app_ids: Callable[[], Sequence[str]] = lambda: ["default"],
        min_users: int = 100,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ramps: RampRecord | None = None,
        on_stage: Callable[[str, int], None] = lambda name, stage: None,
        on_advanced: Callable[[str], None] = lambda name: None,
    ) -> None:
        if ramps is None and any(e.ramp for e in experiments):
            raise ValueError("ramped experiments need a record of their stages")
        self._experiments = list(experiments)
        self._rec_log = rec_log
        self._events = events
        self._stopped = stopped
        self._on_stopped = on_stopped
        self._app_ids = app_ids
        self._min_users = min_users
        self._clock = clock
        self._ramps = ramps
        self._on_stage = on_stage
        self._on_advanced = on_advanced

    def step(self) -> list[str]:
        """Apply recorded stops and stages, judge the guarded and ramped experiments;
        returns those stopped now."""
        known = self._stopped.read()
        for name in known:
            self._on_stopped(name)
        stopped_now: list[str] = []
        now = self._clock()
        for experiment in self._experiments:
            if experiment.name in known or experiment.state_at(now) != "running":
                continue
            if experiment.ramp:
                reason = self._ramp(experiment, now)
            elif experiment.auto_stop:
                reason = self._tripped(experiment)
            else:
                continue
            if reason is not None and self._stopped.stop(experiment.name, reason, now):
                log.warning("experiment %s stopped: %s", experiment.name, reason)
                self._on_stopped(experiment.name)
                stopped_now.append(experiment.name)
        return stopped_now

    def follow(self) -> None:
        """Apply recorded stops and stages without judging anything: what a process does
        while another one guards the experiments (``recloop serve --workers``)."""
        for name in self._stopped.read():
            self._on_stopped(name)
        if self._ramps is None:
            return
        states = self._ramps.read()
        for experiment in self._experiments:
            state = states.get(experiment.name)
            if experiment.ramp and state is not None:
                self._on_stage(experiment.name, state.stage)

    def _ramp(self, experiment: ExperimentConfig, now: datetime) -> str | None:
        """Judge a ramp's current stage in every app; the reason to stop it, if any.

        The ramp moves on only when its stage passes in every app it serves.
        """
        assert self._ramps is not None
        state = self._ramps.begin(experiment.name, now)
        self._on_stage(experiment.name, state.stage)
        verdicts = []
        for app_id in self._app_ids():
            report = read_report(experiment, self._rec_log, self._events, app_id, state)
            verdict = judge_stage(experiment, state, report, now, min_users=self._min_users)
            if verdict.action is RampAction.ROLLBACK:
                return f"app {app_id}, {verdict.reason}"
            verdicts.append(verdict)
        if not verdicts or any(v.action is RampAction.HOLD for v in verdicts):
            return None
        complete = verdicts[0].action is RampAction.COMPLETE
        target = state.stage if complete else state.stage + 1
        moved = self._ramps.move(
            experiment.name, state.stage, target, now, verdicts[0].reason, complete=complete
        )
        if moved is not None:
            log.warning(
                "experiment %s: %s; %s",
                experiment.name,
                verdicts[0].reason,
                "ramp complete" if complete else f"canary now {experiment.ramp[target]:.0%}",
            )
            self._on_stage(experiment.name, moved.stage)
            self._on_advanced(experiment.name)
        return None

    def _tripped(self, experiment: ExperimentConfig) -> str | None:
        for app_id in self._app_ids():
            report = read_report(experiment, self._rec_log, self._events, app_id, None)
            users = {v.variant: v.users for v in report.variants}
            for treatment in report.treatments:
                if min(users[treatment.variant], users[report.control]) < self._min_users:
                    continue
                for check in treatment.decision.guardrails:
                    if check.status is GuardrailStatus.TRIPPED:
                        return f"app {app_id}, variant {treatment.variant}: {check.reason}"
        return None
