"""Staged canaries: a ramped experiment moves its canary up one stage at a time.

An experiment with a ``ramp`` gives its second variant (the canary) the ramp's first share
of the experiment's users, then the next, and so on. Each stage is judged on its own: the
lists served since it began, against the stage's shares (so the sample-ratio check stays
valid and no user counts in two arms). A stage ends when it has run ``stage_hours``, each
variant has ``stage_min_users`` users, the assignment is sound (no sample-ratio mismatch) and
no guardrail tripped; the canary then moves to the next share. A tripped guardrail at any
stage stops the experiment (``guard.ExperimentGuard``): everyone gets the surface as
configured, whose models never stopped being loaded. After the last stage the ramp is
complete: the canary keeps its final share, and guardrails keep being judged while there is
a control to judge against; shipping it (promoting its model version, making its overrides
the surface's) is a decision for a person.

The stage each ramped experiment is at lives in a JSON file beside the stopped experiments,
read by every replica on each check, so all replicas serve the same stage within one check.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from recloop.analysis.decision import GuardrailStatus
from recloop.analysis.outcomes import read_outcomes
from recloop.analysis.report import ExperimentReport, experiment_report
from recloop.analysis.stats import DEFAULT_ALPHA
from recloop.config import ExperimentConfig
from recloop.store.protocols import EventLog, RecommendationLog


@dataclass(frozen=True, slots=True)
class StageChange:
    """One move of a ramp: to which stage, when and why."""

    stage: int
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class RampState:
    """Where a ramped experiment is: its stage, since when, and how it got there."""

    experiment: str
    stage: int
    since: datetime
    complete: bool
    history: tuple[StageChange, ...]

    def to_dict(self) -> dict[str, Any]:
        """As JSON types."""
        return {
            "stage": self.stage,
            "since": self.since.isoformat(),
            "complete": self.complete,
            "history": [
                {"stage": c.stage, "at": c.at.isoformat(), "reason": c.reason} for c in self.history
            ],
        }

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> RampState:
        """The inverse of ``to_dict``."""
        return cls(
            name,
            int(raw["stage"]),
            datetime.fromisoformat(raw["since"]),
            bool(raw["complete"]),
            tuple(
                StageChange(int(c["stage"]), datetime.fromisoformat(c["at"]), str(c["reason"]))
                for c in raw["history"]
            ),
        )


class RampRecord:
    """The stage of every ramped experiment, in a JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def read(self) -> dict[str, RampState]:
        """Every ramp's state (none when the file does not exist)."""
        try:
            raw = json.loads(self._path.read_text())
            return {name: RampState.from_dict(name, entry) for name, entry in raw.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self._path}: not a record of ramped experiments ({exc})") from exc

    def begin(self, experiment: str, at: datetime) -> RampState:
        """The ramp's state, recording its first stage as beginning ``at`` if it had none."""
        with self._lock:
            states = self.read()
            if experiment not in states:
                states[experiment] = RampState(
                    experiment, 0, at, False, (StageChange(0, at, "ramp started"),)
                )
                self._write(states)
            return states[experiment]

    def move(
        self,
        experiment: str,
        from_stage: int,
        to_stage: int,
        at: datetime,
        reason: str,
        *,
        complete: bool = False,
    ) -> RampState | None:
        """Move a ramp on from ``from_stage``; None if it is no longer there (another
        replica, or a person, moved it first)."""
        with self._lock:
            states = self.read()
            current = states.get(experiment)
            if current is None or current.stage != from_stage or current.complete:
                return None
            states[experiment] = RampState(
                experiment,
                to_stage,
                at if to_stage != from_stage else current.since,
                complete,
                (*current.history, StageChange(to_stage, at, reason)),
            )
            self._write(states)
            return states[experiment]

    def _write(self, states: dict[str, RampState]) -> None:
        write_json(self._path, {n: s.to_dict() for n, s in states.items()})


def write_json(path: Path, data: object) -> None:
    """Replace ``path`` with ``data`` as JSON in one step: a reader sees the old or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class RampAction(StrEnum):
    """What a check does with a ramp."""

    HOLD = "hold"
    ADVANCE = "advance"
    COMPLETE = "complete"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class RampDecision:
    """A check's verdict on a ramp's current stage, with the reason a person reads."""

    action: RampAction
    reason: str


def judge_stage(
    config: ExperimentConfig,
    state: RampState,
    report: ExperimentReport,
    now: datetime,
    *,
    min_users: int = 100,
) -> RampDecision:
    """Roll back, hold, or move a ramp on, from its current stage's report.

    Guardrails are judged once both variants have ``min_users`` users at this stage; the
    stage ends once it has run ``stage_hours`` with ``stage_min_users`` users per variant
    and a sound assignment.
    """
    share = config.ramp[state.stage]
    label = f"stage {state.stage + 1}/{len(config.ramp)} ({share:.0%} canary)"
    users = {v.variant: v.users for v in report.variants}
    control, canary = config.variants[0].name, config.variants[1].name
    judged = min(users.get(control, 0), users.get(canary, 0)) >= min_users
    for treatment in report.treatments:
        for check in treatment.decision.guardrails:
            if judged and check.status is GuardrailStatus.TRIPPED:
                return RampDecision(RampAction.ROLLBACK, f"{label}: {check.reason}")
    if state.complete:
        return RampDecision(RampAction.HOLD, f"{label}: ramp complete")
    if share >= 1.0:
        # Nobody is left in the control: there is nothing to judge against.
        return RampDecision(RampAction.COMPLETE, f"{label}: every user is on the canary")
    ran = now - state.since
    needed = timedelta(hours=config.stage_hours)
    if ran < needed:
        return RampDecision(RampAction.HOLD, f"{label}: {_hours(ran)} of {_hours(needed)} run")
    short = {
        name: users.get(name, 0)
        for name in (control, canary)
        if users.get(name, 0) < config.stage_min_users
    }
    if short:
        counts = ", ".join(f"{v} {n}" for v, n in sorted(short.items()))
        return RampDecision(
            RampAction.HOLD,
            f"{label}: waiting for {config.stage_min_users} users per variant ({counts})",
        )
    if report.srm is not None and report.srm.mismatch:
        return RampDecision(
            RampAction.HOLD,
            f"{label}: sample ratio mismatch (p = {report.srm.p_value:.2g}); "
            "assignment or logging is broken, fix it before ramping further",
        )
    passed = f"{label} passed: {_hours(ran)}, " + ", ".join(
        f"{v} {users.get(v, 0)} users" for v in (control, canary)
    )
    if state.stage + 1 >= len(config.ramp):
        return RampDecision(RampAction.COMPLETE, passed)
    return RampDecision(RampAction.ADVANCE, passed)


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def stage_window(
    config: ExperimentConfig, state: RampState | None
) -> tuple[datetime | None, datetime | None, dict[str, float], str | None]:
    """What a report reads: (since, until, expected shares, a note on the window).

    A ramped experiment is reported on its current stage alone; any other on its schedule.
    """
    if not config.ramp:
        return config.start, config.stop, config.shares(), None
    stage = state.stage if state is not None else 0
    since = state.since if state is not None else config.start
    if config.start is not None and since is not None:
        since = max(since, config.start)
    note = (
        f"staged canary at stage {stage + 1} of {len(config.ramp)} "
        f"({config.ramp[stage]:.0%} canary)"
        + (f" since {state.since:%Y-%m-%d %H:%M}" if state is not None else ", not begun")
        + ("; ramp complete" if state is not None and state.complete else "")
        + "; lists served at earlier stages are left out"
    )
    return since, config.stop, config.shares(stage), note


def read_report(
    config: ExperimentConfig,
    rec_log: RecommendationLog,
    events: EventLog,
    app_id: str,
    state: RampState | None,
    *,
    alpha: float = DEFAULT_ALPHA,
) -> ExperimentReport:
    """The experiment's report over its window (its current stage, for a ramp)."""
    since, until, shares, note = stage_window(config, state)
    outcomes = read_outcomes(rec_log, events, app_id, config.name, since=since, until=until)
    return experiment_report(config, outcomes, alpha=alpha, shares=shares, window_note=note)
