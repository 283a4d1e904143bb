"""Online CTR and catalog coverage per surface and variant, kept as the service serves.

Nothing here scans the log. Each served list is counted (lists and items) and remembered by
its request id in a bounded table; a click event that names a remembered request id and one
of that list's items is counted once under the list's surface and variant. Online CTR is
then ``rate(recloop_served_clicks_total) / rate(recloop_served_items_total)``.

Coverage is the number of distinct items served per surface and variant over the last one
to two hours (two hourly windows, estimated by linear counting on a bitmap of 2^18 bits per
window: exact to about 1 % up to some hundred thousand distinct items), read at scrape time
beside the app's count of active catalog items.

With several processes (``recloop serve --workers``) each remembers only its own lists: a
click answered by another process than the one that served its list is counted in
``recloop_unjoined_clicks_total`` instead, so the joined CTR is a sample (each click reaches
the serving process with the same chance, whatever its surface or variant, so relative
changes, which the alerts watch, are unbiased; the level is lower by that chance).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter

from recloop.domain import Event, EventType
from recloop.monitoring.metrics import GaugeSample, Metrics

#: Served lists remembered for the click join: about 360 bytes each (36 MB in all), the
#: last 17 minutes at 100 lists a second; a click on an older list counts as unjoined.
DEFAULT_CAPACITY = 100_000
#: Lists older than this are forgotten: a later click is not joined (and not counted).
JOIN_WINDOW_S = 24 * 3600.0
#: Coverage windows: distinct items served are counted over the current and last one.
COVERAGE_WINDOW_S = 3600.0
_BITS = 1 << 18

Key = tuple[str, str, str]  # app, surface, variant


@dataclass(slots=True)
class _Served:
    key: Key
    items: tuple[str, ...]
    at: float
    clicked: set[str] | None = None  # made at the first click: most lists get none


class _Distinct:
    """Distinct items over two rotating windows, by linear counting."""

    __slots__ = ("current", "previous", "started")

    def __init__(self, now: float) -> None:
        # Byte per bit: setting ten bytes from Python is cheaper than a numpy call.
        self.current = bytearray(_BITS)
        self.previous = bytearray(_BITS)
        self.started = now

    def add(self, items: Sequence[str], now: float) -> None:
        if now - self.started >= COVERAGE_WINDOW_S:
            self.previous, self.current = self.current, bytearray(_BITS)
            self.started = now
        current = self.current
        for item in items:
            # ``hash`` of a str is salted per process: fine, each process counts its own.
            current[hash(item) & (_BITS - 1)] = 1

    def estimate(self) -> float:
        seen = np.frombuffer(self.current, dtype=np.uint8) | np.frombuffer(
            self.previous, dtype=np.uint8
        )
        zeros = _BITS - int(np.count_nonzero(seen))
        if zeros == 0:
            return _BITS * math.log(_BITS)  # saturated: a lower bound
        return -_BITS * math.log(zeros / _BITS)


class ServedTracker:
    """Counts served lists and the clicks joined to them; estimates coverage.

    Args:
        metrics: where the counters live.
        capacity: the most served lists remembered for the join (the oldest go first).
        clock: monotonic seconds (a test passes its own).
        on_served: also told each served list's app and items (the head share's count).
    """

    def __init__(
        self,
        metrics: Metrics,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
        on_served: Callable[[str, Sequence[str]], None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._on_served = on_served
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        # The first entry is the oldest (an OrderedDict pops it in O(1)).
        self._lists: OrderedDict[str, _Served] = OrderedDict()
        self._distinct: dict[Key, _Distinct] = {}
        self._counters: dict[Key, tuple[Counter, Counter]] = {}

    def served(
        self, app_id: str, surface: str, variant: str, request_id: str, items: Sequence[str]
    ) -> None:
        """Count one served list and remember it for the clicks that will name it."""
        key = (app_id, surface, variant)
        now = self._clock()
        counters = self._counters.get(key)
        if counters is None:
            counters = self._counters[key] = (
                self._metrics.served_lists.labels(*key),
                self._metrics.served_items.labels(*key),
            )
        counters[0].inc()
        if items:
            counters[1].inc(len(items))
            if self._on_served is not None:
                self._on_served(app_id, items)
        with self._lock:
            self._lists[request_id] = _Served(key, tuple(items), now)
            if len(self._lists) > self._capacity:
                self._lists.popitem(last=False)
            distinct = self._distinct.get(key)
            if distinct is None:
                distinct = self._distinct[key] = _Distinct(now)
            if items:
                distinct.add(items, now)

    def events(self, app_id: str, events: Iterable[Event]) -> None:
        """Join newly stored click events to the lists they name (each item once)."""
        now = self._clock()
        for event in events:
            if event.event_type is not EventType.CLICK or event.request_id is None:
                continue
            key = self._join(app_id, event, now)
            if key is None:
                self._metrics.unjoined_clicks.labels(app_id).inc()
            elif key:
                self._metrics.served_clicks.labels(*key).inc()

    def _join(self, app_id: str, event: Event, now: float) -> Key | tuple[()] | None:
        """The clicked list's key; () when its item was clicked before; None: not joined."""
        with self._lock:
            entry = self._lists.get(event.request_id or "")
            if (
                entry is None
                or entry.key[0] != app_id
                or now - entry.at > JOIN_WINDOW_S
                or event.item_id not in entry.items
            ):
                return None
            if entry.clicked is None:
                entry.clicked = set()
            elif event.item_id in entry.clicked:
                return ()
            entry.clicked.add(event.item_id)
            return entry.key

    def coverage(self, active_items: Callable[[str], int | None]) -> Iterator[GaugeSample]:
        """Scrape-time gauges: distinct items served per surface and variant, and their share
        of the app's active catalog (``active_items``; None: not known yet)."""
        with self._lock:
            estimates = [(key, d.estimate()) for key, d in self._distinct.items()]
        for (app, surface, variant), distinct in estimates:
            labels = {"app": app, "surface": surface, "variant": variant}
            yield (
                "recloop_served_distinct_items",
                "Distinct items served over the last one to two hours (estimated), by app, "
                "surface and variant.",
                labels,
                round(distinct),
            )
            active = active_items(app)
            if active:
                yield (
                    "recloop_catalog_coverage",
                    "Distinct items served over the last one to two hours as a share of the "
                    "app's active catalog, by app, surface and variant.",
                    labels,
                    min(1.0, distinct / active),
                )
