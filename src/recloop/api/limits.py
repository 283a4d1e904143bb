"""Token buckets: requests per key and scope, and failed key checks per client address."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable


class TokenBuckets:
    """One bucket per key, refilled at ``rate`` tokens a second up to ``burst``.

    Used on the event loop only, so no lock. The least recently used buckets are dropped
    past ``max_keys`` (a dropped bucket comes back full, which only ever lets more through).
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def _level(self, key: Hashable, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - then) * self.rate)

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` has a token (0: it has one now); takes nothing."""
        level = self._level(key, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def take(self, key: Hashable, now: float) -> float:
        """Take a token: 0 when one was there, else the seconds until one is (none taken)."""
        level = self._level(key, now)
        if level < 1.0:
            self._buckets[key] = (level, now)
            self._buckets.move_to_end(key)
            return (1.0 - level) / self.rate
        self._buckets[key] = (level - 1.0, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return 0.0


def retry_after(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))
