"""Per-item impressions and clicks from the online store, for bandit exploration policies.

The counters are the ones the online features read (``c:{app}:i:{item}``), summed over a
window of days: what a Beta-Bernoulli bandit needs as its evidence. Impressions here are
the client's ``impression`` events (what users saw), not the items served.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np

from recloop.features.online import counters_key
from recloop.features.state import Counters
from recloop.online.protocols import OnlineStore


class OnlineItemStats:
    """Reads each item's impressions and clicks over the last ``days`` (an ``ItemStats``)."""

    def __init__(
        self,
        online: OnlineStore,
        days: int = 7,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._online = online
        self._days = days
        self._clock = clock

    def get(self, app_id: str, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Impressions and clicks of each item, in order (zeros for unknown items)."""
        now = self._clock().timestamp()
        rows = self._online.hgetall_many([counters_key(app_id, "i", i) for i in item_ids])
        impressions = np.zeros(len(item_ids))
        clicks = np.zeros(len(item_ids))
        for n, fields in enumerate(rows):
            if fields:
                counters = Counters.from_fields(fields)
                impressions[n] = counters.window("imp", now, self._days)
                clicks[n] = counters.window("click", now, self._days)
        # A click without a logged impression (a client that sends none) still saw the item.
        return np.maximum(impressions, clicks), clicks
