"""Bucketed event counters: the state every windowed feature is computed from.

An entity (a user, an item, a user's category or creator) keeps counts per event type in
hourly buckets for the last day and daily buckets for the last 30. A feature over a window
sums the buckets that the window covers, so its value at time ``t`` depends only on the
events before ``t`` that were folded in, and not on the order they arrived in. The offline
path (a replay of a snapshot) and the online path (the materializer following the event
log into the online store) fold events into this same state with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HOUR_S = 3600
DAY_S = 86_400
#: How long buckets are kept: the longest window, plus a day of slack.
RETENTION_DAYS = 31


def hour_bucket(ts: float) -> int:
    """The hour (since the epoch) that a UNIX timestamp falls in."""
    return int(ts // HOUR_S)


def day_bucket(ts: float) -> int:
    """The day (since the epoch, UTC) that a UNIX timestamp falls in."""
    return int(ts // DAY_S)


def field_name(kind: str, counter: str, bucket: int) -> str:
    """The name of one bucket of one counter: ``h|click|493027`` or ``d|click|20543``."""
    return f"{kind}|{counter}|{bucket}"


@dataclass
class Counters:
    """One entity's counters: ``{"h|click|493027": 2.0, "d|view|20543": 5.0, ...}``.

    A counter is an event type (``click``) or a derived name (``dwell_s``); amounts may be
    fractional. Serialises to a flat mapping, which is also its online-store form.
    """

    values: dict[str, float] = field(default_factory=dict)

    def add(self, counter: str, ts: float, amount: float = 1.0, *, hourly: bool = True) -> None:
        """Count ``amount`` of ``counter`` at UNIX time ``ts``; ``hourly=False``: days only."""
        hour, day = increments(counter, ts)
        for name in (hour, day) if hourly else (day,):
            self.values[name] = self.values.get(name, 0.0) + amount

    def merge(self, updates: Mapping[str, float]) -> None:
        """Add a mapping of bucket increments (as produced by ``increments``)."""
        for name, amount in updates.items():
            self.values[name] = self.values.get(name, 0.0) + amount

    def window(self, counter: str, now: float, days: int) -> float:
        """The counter's total over the window of ``days`` ending at ``now``.

        A one-day window sums the 24 hourly buckets up to and including the current hour;
        longer windows sum the ``days`` daily buckets up to and including today. The state
        holds only events before ``now``, so the current bucket is partial by construction.
        """
        if days == 1:
            last = hour_bucket(now)
            return sum(
                self.values.get(field_name("h", counter, b), 0.0)
                for b in range(last - 23, last + 1)
            )
        last = day_bucket(now)
        return sum(
            self.values.get(field_name("d", counter, b), 0.0)
            for b in range(last - days + 1, last + 1)
        )

    def decayed(self, counter: str, now: float, days: int, half_life_days: float) -> float:
        """The counter over ``days`` daily buckets, each weighted by ``0.5 ** (age / half-life)``.

        A bucket's age is measured from its start to ``now``, in days.
        """
        last = day_bucket(now)
        total = 0.0
        for b in range(last - days + 1, last + 1):
            count = self.values.get(field_name("d", counter, b))
            if count:
                total += count * 0.5 ** ((now - b * DAY_S) / DAY_S / half_life_days)
        return total

    def prune(self, now: float) -> None:
        """Drop buckets older than every window."""
        oldest_day = day_bucket(now) - RETENTION_DAYS
        oldest_hour = hour_bucket(now) - 24
        self.values = {
            name: value
            for name, value in self.values.items()
            if int(name.rsplit("|", 1)[1]) >= (oldest_hour if name[0] == "h" else oldest_day)
        }


def increments(counter: str, ts: float) -> tuple[str, str]:
    """The two bucket fields one event of ``counter`` at ``ts`` adds to: its hour and day."""
    return field_name("h", counter, hour_bucket(ts)), field_name("d", counter, day_bucket(ts))
