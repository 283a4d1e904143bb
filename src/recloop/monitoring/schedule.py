"""Whether a retraining is due, and why: a pure function of the clock, what the run records
say, and what the monitors read.

The scheduler (``runtime.scheduler``) gathers the inputs; ``decide`` holds every rule, so a
test drives it with a fake clock and fake readings. In order:

1. a run in progress: nothing starts (never two at once);
2. after failures in a row: nothing starts until the backoff has passed (doubling);
3. a job whose cadence has come: ``tune`` first (it trains everything ``train`` does);
4. a trigger, unless the last run started less than ``min_interval_h`` ago: drift of a
   ranker feature or the score, a surface's online CTR fallen below its trailing level,
   a volume of new events or items since the last run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from recloop.config.drift import DriftSettings
from recloop.config.schedule import ScheduleSettings

#: The jobs, slowest first: a due ``tune`` also answers a due ``train``.
JOBS = ("tune", "train")
#: What can start a run.
TRIGGERS = ("cadence", "drift", "ctr", "events", "items", "manual")


@dataclass(frozen=True)
class Drifted:
    """One ranker feature's (or the score's) drift: PSI and its test's p-value."""

    name: str
    psi: float
    p_value: float


@dataclass(frozen=True)
class SurfaceCtr:
    """A surface's online CTR in the recent window and in the trailing window before it."""

    surface: str
    recent_clicks: float
    recent_items: float
    trailing_clicks: float
    trailing_items: float


@dataclass(frozen=True)
class Readings:
    """What the monitors say now about one app (None: not measured here)."""

    drift: tuple[Drifted, ...] = ()
    sampled_requests: float = 0.0
    ctr: tuple[SurfaceCtr, ...] = ()
    events: int | None = None
    items: int | None = None


@dataclass(frozen=True)
class History:
    """What the run records say about one app.

    ``last_started`` maps a job to when its last run started; ``last_model`` is when the
    newest model version was trained (by a run or by hand: it counts as a train run);
    ``first_seen`` is when the tune cadence's clock starts before any tune run (the oldest
    record, else when the scheduler first saw the app). ``baseline_events`` and
    ``baseline_items`` are the counts the last run read (or, before any run, the first
    reading this scheduler took).
    """

    last_started: dict[str, datetime] = field(default_factory=dict)
    last_model: datetime | None = None
    first_seen: datetime | None = None
    running: bool = False
    failures: int = 0
    last_failure: datetime | None = None
    baseline_events: int | None = None
    baseline_items: int | None = None


@dataclass(frozen=True)
class Decision:
    """A run to start (``job`` set) and why, or why nothing starts (``job`` None)."""

    job: str | None
    trigger: str
    reason: str


def backoff(settings: ScheduleSettings, failures: int) -> timedelta:
    """The wait after ``failures`` failed runs in a row (0 after none)."""
    if failures <= 0:
        return timedelta(0)
    hours = settings.failure_backoff_h * 2.0 ** min(failures - 1, 30)
    return timedelta(hours=min(hours, settings.max_backoff_h))


def decide(
    now: datetime,
    settings: ScheduleSettings,
    drift_settings: DriftSettings,
    history: History,
    readings: Readings,
) -> Decision:
    """The run to start now for one app, if any, with its reason in words."""
    if history.running:
        return Decision(None, "", "a run is in progress")
    if history.failures and history.last_failure is not None:
        until = history.last_failure + backoff(settings, history.failures)
        if now < until:
            return Decision(
                None,
                "",
                f"backing off after {history.failures} failed run(s) until {until.isoformat()}",
            )
    due = _cadence(now, settings, history)
    if due is not None:
        return due
    recent = [*history.last_started.values(), *([history.last_model] if history.last_model else [])]
    last = max(recent, default=None)
    if last is not None and now - last < timedelta(hours=settings.min_interval_h):
        return Decision(None, "", f"triggers wait {settings.min_interval_h:g} h after a run")
    for check in (_drift, _ctr, _volume):
        fired = check(settings, drift_settings, history, readings)
        if fired is not None:
            return fired
    return Decision(None, "", "nothing due")


def _cadence(now: datetime, settings: ScheduleSettings, history: History) -> Decision | None:
    started = history.last_started
    anchors = {
        # A tune run trains everything a train run does: it resets train's clock too.
        "train": max(
            (t for t in (started.get("train"), started.get("tune"), history.last_model) if t),
            default=None,
        ),
        # Before any tune run its clock starts with the app's first record: a new app's
        # first run is the cheap one.
        "tune": started.get("tune") or history.first_seen,
    }
    every = {"tune": settings.tune_every_h, "train": settings.train_every_h}
    for job in JOBS:
        last = anchors[job]
        if every[job] <= 0 or (last is None and job == "tune"):
            continue
        if last is None:
            return Decision(job, "cadence", f"cadence: no {job} run or model version yet")
        if now - last >= timedelta(hours=every[job]):
            age = (now - last).total_seconds() / 3600
            return Decision(
                job, "cadence", f"cadence: last {job} run {age:.1f} h ago >= {every[job]:g} h"
            )
    return None


def _drift(
    settings: ScheduleSettings, drift: DriftSettings, history: History, readings: Readings
) -> Decision | None:
    threshold = settings.drift_psi
    if threshold <= 0 or readings.sampled_requests < drift.min_requests:
        return None
    over = [
        d
        for d in readings.drift
        if math.isfinite(d.psi) and d.psi > threshold and d.p_value < drift.p_value
    ]
    if not over:
        return None
    worst = max(over, key=lambda d: (d.psi, d.name))
    more = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
    return Decision(
        "train", "drift", f"drift: PSI {worst.psi:.2f} on {worst.name} > {threshold:g}{more}"
    )


def _ctr(
    settings: ScheduleSettings, drift: DriftSettings, history: History, readings: Readings
) -> Decision | None:
    if settings.ctr_drop <= 0:
        return None
    floor = 1.0 - settings.ctr_drop
    enough = settings.ctr_min_impressions
    for s in sorted(readings.ctr, key=lambda s: s.surface):
        if s.recent_items < enough or s.trailing_items < enough or s.trailing_clicks <= 0:
            continue
        recent = s.recent_clicks / s.recent_items
        trailing = s.trailing_clicks / s.trailing_items
        if recent < floor * trailing:
            return Decision(
                "train",
                "ctr",
                f"ctr: {s.surface} {recent:.4f} over the last {settings.ctr_window_h:g} h < "
                f"{floor:g} x trailing {trailing:.4f}",
            )
    return None


def _volume(
    settings: ScheduleSettings, drift: DriftSettings, history: History, readings: Readings
) -> Decision | None:
    checks = (
        ("events", settings.new_events, readings.events, history.baseline_events),
        ("items", settings.new_items, readings.items, history.baseline_items),
    )
    for trigger, threshold, now, before in checks:
        if threshold <= 0 or now is None or before is None:
            continue
        new = now - before
        if new >= threshold:
            return Decision(
                "train", trigger, f"{trigger}: {new:,} new since the last run >= {threshold:,}"
            )
    return None
