"""A short-lived cache of served lists, for a client that asks again for the same thing.

A repeat request (a page reload, a back button) within the TTL gets the same list without
running the pipeline. It is still a new response: it has its own request id and is logged
as served again. Any event the service accepts for a user drops that user's entries, so a
list never outlives what the user just did in this process; other processes rely on the
TTL alone.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from recloop.domain import ScoredItem


@dataclass(frozen=True, slots=True)
class CachedList:
    """What is kept of a served list."""

    items: tuple[ScoredItem, ...]
    model_version: str
    fallback: bool
    stored_at: float  # monotonic seconds
    cold: bool = False


class ResponseCache:
    """Served lists by request key, least recently used first out.

    Args:
        ttl_s: how long a list may be served again; 0 turns the cache off.
        max_entries: the most lists kept.
    """

    def __init__(self, ttl_s: float, max_entries: int = 50_000) -> None:
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, CachedList] = OrderedDict()
        self._by_user: dict[tuple[str, str], set[Hashable]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether lists are kept at all."""
        return self.ttl_s > 0

    def get(self, key: Hashable, now: float) -> CachedList | None:
        """The list stored under ``key`` if it is younger than the TTL."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now - entry.stored_at > self.ttl_s:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: Hashable, user: tuple[str, str], entry: CachedList) -> None:
        """Keep ``entry`` for the user ``(app_id, user_id)``."""
        if not self.enabled:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._by_user.setdefault(user, set()).add(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def forget_users(self, app_id: str, user_ids: Iterable[str]) -> None:
        """Drop every list of these users (they just did something)."""
        if not self.enabled:
            return
        with self._lock:
            for user_id in user_ids:
                for key in self._by_user.pop((app_id, user_id), ()):
                    self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
