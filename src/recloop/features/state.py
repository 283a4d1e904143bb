"""Bucketed event counters: the state every windowed feature is computed from.

An entity (a user, an item) keeps counts per counter (an event type such as ``click``, or a
derived one such as ``cat:Comedy``) in hourly buckets for the last day and daily buckets for
the last 30. A feature over a window sums the buckets that the window covers, so its value
at time ``t`` depends only on the events before ``t`` that were folded in, not on the order
they arrived in. The offline path (a replay of a snapshot) and the online path (the
materializer following the event log into the online store) fold events into this same
state with the same code; in the online store a bucket is the hash field
``{h|d}|{counter}|{bucket}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

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


def increments(counter: str, ts: float) -> tuple[str, str]:
    """The two bucket fields one event of ``counter`` at ``ts`` adds to: its hour and day."""
    return field_name("h", counter, hour_bucket(ts)), field_name("d", counter, day_bucket(ts))


class Counters:
    """One entity's counters, bucketed by hour and by day."""

    __slots__ = ("_buckets", "_families", "_first_day")

    def __init__(self) -> None:
        # (kind, counter) -> {bucket: amount}; kind is "h" (hours) or "d" (days)
        self._buckets: dict[tuple[str, str], dict[int, float]] = {}
        # Daily totals over a family of counters ("cat:" for every "cat:..."), kept as the
        # buckets are, so that a share of a family costs 30 additions, not one per member.
        self._families: dict[str, dict[int, float]] = {}
        self._first_day: int | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, float]) -> Counters:
        """From the online store's flat form (``{"h|click|493027": 2.0, ...}``)."""
        counters = cls()
        for name, amount in fields.items():
            kind, counter, bucket = name.split("|", 2)
            counters._buckets.setdefault((kind, counter), {})[int(bucket)] = amount
            if kind == "d":
                counters._note_day(counter, int(bucket), amount)
        return counters

    def _note_day(self, counter: str, day: int, amount: float) -> None:
        if amount and (self._first_day is None or day < self._first_day):
            self._first_day = day
        colon = counter.find(":")
        if colon > 0:
            family = self._families.setdefault(counter[: colon + 1], {})
            family[day] = family.get(day, 0.0) + amount

    def fields(self) -> dict[str, float]:
        """The flat form (as the online store keeps it)."""
        return {
            field_name(kind, counter, bucket): amount
            for (kind, counter), buckets in self._buckets.items()
            for bucket, amount in buckets.items()
        }

    def add(self, counter: str, ts: float, amount: float = 1.0, *, hourly: bool = True) -> None:
        """Count ``amount`` of ``counter`` at UNIX time ``ts``; ``hourly=False``: days only."""
        days = self._buckets.setdefault(("d", counter), {})
        day = day_bucket(ts)
        days[day] = days.get(day, 0.0) + amount
        self._note_day(counter, day, amount)
        if hourly:
            hours = self._buckets.setdefault(("h", counter), {})
            hour = hour_bucket(ts)
            hours[hour] = hours.get(hour, 0.0) + amount

    def window(self, counter: str, now: float, days: int) -> float:
        """The counter's total over the window of ``days`` ending at ``now``.

        A one-day window sums the 24 hourly buckets up to and including the current hour;
        longer windows sum the ``days`` daily buckets up to and including today. The state
        holds only events before ``now``, so the current bucket is partial by construction.
        """
        if days == 1:
            buckets = self._buckets.get(("h", counter))
            last = hour_bucket(now)
            first = last - 23
        else:
            buckets = self._buckets.get(("d", counter))
            last = day_bucket(now)
            first = last - days + 1
        if not buckets:
            return 0.0
        return sum(amount for bucket, amount in buckets.items() if first <= bucket <= last)

    def decayed(self, counter: str, now: float, days: int, half_life_days: float) -> float:
        """The counter over ``days`` daily buckets, each weighted by ``0.5 ** (age / half-life)``.

        A bucket's age is measured from its start to ``now``, in days.
        """
        return _decayed(self._buckets.get(("d", counter)), now, days, half_life_days)

    def family_decayed(self, family: str, now: float, days: int, half_life_days: float) -> float:
        """``decayed`` summed over every counter of a family (``"cat:"``)."""
        return _decayed(self._families.get(family), now, days, half_life_days)

    def daily(self, prefix: str) -> Iterator[tuple[str, dict[int, float]]]:
        """The daily buckets of every counter whose name starts with ``prefix``."""
        for (kind, counter), buckets in self._buckets.items():
            if kind == "d" and counter.startswith(prefix):
                yield counter, buckets

    def first_day(self) -> int | None:
        """The earliest day any counter has a non-zero bucket for."""
        return self._first_day


def _decayed(buckets: dict[int, float] | None, now: float, days: int, half_life: float) -> float:
    if not buckets:
        return 0.0
    last = day_bucket(now)
    first = last - days + 1
    return float(
        sum(
            amount * 0.5 ** ((now - bucket * DAY_S) / DAY_S / half_life)
            for bucket, amount in buckets.items()
            if first <= bucket <= last
        )
    )
