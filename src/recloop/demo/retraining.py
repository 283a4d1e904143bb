"""Retraining inside a simulated day: every few simulated hours of a demo run, the readings the
service's scheduler takes and its ``decide``; a run it starts is trained then and there and
loaded by the running service. Also the figures per day (drift read, versions made and why).

The demo's nightly ``recloop train`` is the cadence; the scheduler here only acts on its
triggers (its ``train_every_h`` and ``tune_every_h`` are best set to 0), as the service's
scheduler would between two nightly runs. Used through ``DemoConfig.observer``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from recloop.config.schedule import ScheduleSettings
from recloop.errors import RecloopError
from recloop.monitoring.schedule import Decision, Drifted, History, decide
from recloop.registry.artifacts import ModelRegistry
from recloop.runtime.process import Runtime
from recloop.runtime.readings import ServiceReadings
from recloop.simulate.behaviour import Behaviour, Session
from recloop.training.job import train

APP = "default"


@dataclass(frozen=True)
class Check:
    """One check: when, the drift sample's size, its worst finite PSI, what was decided."""

    at: datetime
    day: int  # 0 is the first simulated day
    requests: float
    worst: Drifted | None
    decision: Decision


@dataclass(frozen=True)
class Retraining:
    """A model version made during the run (or a run that made none: ``version`` None)."""

    at: datetime
    day: int  # the day it was trained in (a nightly run: the day before that night)
    trigger: str  # "nightly", or the scheduler's trigger (drift, ctr, ...)
    reason: str
    version: str | None
    promoted: bool
    blocked_by: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class DaySummary:
    """One simulated day's drift and versions."""

    day: int
    checks: int
    max_psi: float | None  # over checks whose sample was large enough to count
    max_psi_feature: str
    first_trigger_at: datetime | None  # the first check that decided to train
    retrainings: tuple[Retraining, ...]


@dataclass
class IntradayScheduler:
    """The service scheduler's decision every ``every`` of simulated time, on the running
    demo's own monitors (``ServiceReadings``), with its trainings recorded.

    ``observer`` is what ``DemoConfig.observer`` takes: it checks on the first served list at
    or after each point of a grid from the first day's midnight.
    """

    schedule: ScheduleSettings
    every: timedelta = timedelta(hours=2)
    checks: list[Check] = field(default_factory=list)
    retrainings: list[Retraining] = field(default_factory=list)
    _failures: int = 0
    _last_failure: datetime | None = None
    _seen: set[str] = field(default_factory=set)  # versions already recorded
    _registry: ModelRegistry | None = None

    def observer(self, runtime: Runtime, behaviour: Behaviour) -> Callable[[Session, str], None]:
        """The hook called with every served list (see ``DemoConfig.observer``)."""
        start = behaviour.world.start
        readings = ServiceReadings(
            runtime.settings, runtime.store, runtime.drift, runtime.metrics, runtime.clock
        )
        registry = self._registry = ModelRegistry(runtime.settings.resolved_model_dir())
        next_check = start

        def on_served(session: Session, request_id: str) -> None:
            nonlocal next_check
            now = runtime.clock()
            if now < next_check:
                return
            steps = math.floor((now - start) / self.every) + 1
            next_check = start + steps * self.every
            day = (now - start).days
            self._note_nightly(registry, day)
            self._check(runtime, readings, registry, now, day)

        return on_served

    def finish(self, days: int) -> None:
        """Record the versions the last night made (after the last check), once the run of
        ``days`` days has ended (its data directory still there)."""
        if self._registry is not None:
            self._note_nightly(self._registry, days)

    def _note_nightly(self, registry: ModelRegistry, day: int) -> None:
        # Versions this scheduler did not make came from the demo's nights; found at the
        # first check of a day, they are the night before it.
        for version in registry.versions(APP):
            if version in self._seen:
                continue
            self._seen.add(version)
            manifest = registry.manifest(APP, version)
            blocked = tuple(manifest.blocked_by())
            self.retrainings.append(
                Retraining(
                    manifest.created_at,
                    day - 1,
                    "nightly",
                    "the demo's nightly recloop train",
                    version,
                    _passed(manifest.extra.get("promotion")),
                    blocked,
                )
            )

    def _check(
        self,
        runtime: Runtime,
        readings: ServiceReadings,
        registry: ModelRegistry,
        now: datetime,
        day: int,
    ) -> None:
        reading = readings(APP)
        last_model = self._last_model(registry)
        history = History(
            last_started={"train": last_model} if last_model is not None else {},
            last_model=last_model,
            first_seen=last_model,
            failures=self._failures,
            last_failure=self._last_failure,
        )
        drift_settings = runtime.settings.serving.drift
        decision = decide(now, self.schedule, drift_settings, history, reading)
        finite = [d for d in reading.drift if math.isfinite(d.psi)]
        worst = max(finite, key=lambda d: (d.psi, d.name), default=None)
        self.checks.append(Check(now, day, reading.sampled_requests, worst, decision))
        if decision.job is None:
            return
        runtime.writer.flush()
        started = time.perf_counter()
        try:
            trained = train(runtime.settings, runtime.store, now=now)
        except RecloopError as exc:
            self._failures += 1
            self._last_failure = now
            self.retrainings.append(
                Retraining(
                    now,
                    day,
                    decision.trigger,
                    f"{decision.reason}; failed: {exc}",
                    None,
                    False,
                    seconds=time.perf_counter() - started,
                )
            )
            return
        self._failures = 0
        self._seen.add(trained.version)
        runtime.model_loader.step()
        self.retrainings.append(
            Retraining(
                now,
                day,
                decision.trigger,
                decision.reason,
                trained.version,
                trained.promoted,
                tuple(g.name for g in trained.verdict.blocked_by),
                time.perf_counter() - started,
            )
        )

    @staticmethod
    def _last_model(registry: ModelRegistry) -> datetime | None:
        versions = registry.versions(APP)
        return registry.manifest(APP, versions[-1]).created_at if versions else None


def _passed(verdict: object) -> bool:
    """Whether a manifest's recorded promotion verdict passed every gate."""
    return isinstance(verdict, Mapping) and bool(verdict.get("passed"))


def per_day(
    days: int,
    checks: Sequence[Check],
    retrainings: Sequence[Retraining],
    min_requests: float,
) -> list[DaySummary]:
    """Each day's checks and versions: the largest PSI read by a check whose drift sample
    had ``min_requests`` (a smaller sample's PSI is noise the trigger ignores too), the first
    check that decided to train, and the versions trained that day (nightly ones included)."""
    out = []
    for day in range(days):
        today = [c for c in checks if c.day == day]
        counted = [c for c in today if c.worst is not None and c.requests >= min_requests]
        worst = max(counted, key=lambda c: c.worst.psi if c.worst else -1.0, default=None)
        fired = next((c.at for c in today if c.decision.job is not None), None)
        out.append(
            DaySummary(
                day,
                len(today),
                worst.worst.psi if worst is not None and worst.worst is not None else None,
                worst.worst.name if worst is not None and worst.worst is not None else "",
                fired,
                tuple(r for r in retrainings if r.day == day),
            )
        )
    return out
