"""The in-process online store: one dictionary behind one lock, with lazily honoured TTLs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from recloop.errors import OnlineStoreUnavailable
from recloop.online.protocols import check_amounts, check_max_len, ttl_ms

_Value = bytes | dict[str, float] | list[str]

#: Expired keys are swept after this many writes, or after as many writes as there were keys
#: at the last sweep when that is more: the sweep's cost is spread over the writes.
_SWEEP_EVERY = 1024


@dataclass(slots=True)
class _Entry:
    value: _Value
    expires_at: float | None = None


class MemoryOnlineStore:
    """An ``OnlineStore`` in this process's memory: the default for one machine and for tests.

    Thread-safe. Expired keys read as missing; they are dropped when touched and in a sweep
    every so many writes, so keys that are never read again do not pile up.

    Args:
        clock: a monotonic clock in seconds; tests pass a fake one to move time.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._data: dict[str, _Entry] = {}
        self._writes = 0
        self._size_at_sweep = 0

    # -- plain values -------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key, in order; ``None`` for a missing, expired or non-bytes key."""
        with self._lock:
            now = self._clock()
            out: list[bytes | None] = []
            for key in keys:
                entry = self._live(key, now)
                out.append(entry.value if entry and isinstance(entry.value, bytes) else None)
            return out

    def set_many(self, values: Mapping[str, bytes], ttl: timedelta | None = None) -> None:
        """Store each value under its key, replacing whatever was there."""
        expires_in = None if ttl is None else ttl_ms(ttl) / 1000
        with self._lock:
            now = self._clock()
            expires_at = None if expires_in is None else now + expires_in
            for key, value in values.items():
                self._data[key] = _Entry(bytes(value), expires_at)
            self._wrote(len(values), now)

    # -- hashes of floats ---------------------------------------------------------------

    def hincr_many(
        self, updates: Sequence[tuple[str, str, float]], ttl: timedelta | None = None
    ) -> None:
        """Add each amount to its hash field; each touched key's expiry is (re)set to ``ttl``."""
        check_amounts(updates)
        expires_in = None if ttl is None else ttl_ms(ttl) / 1000
        with self._lock:
            now = self._clock()
            self._check_kind((key for key, _, _ in updates), dict, now)
            for key, field, amount in updates:
                entry = self._live(key, now)
                if entry is None:
                    entry = self._data[key] = _Entry({})
                fields = entry.value
                assert isinstance(fields, dict)
                fields[field] = fields.get(field, 0.0) + float(amount)
                if expires_in is not None:
                    entry.expires_at = now + expires_in
            self._wrote(len(updates), now)

    def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, float]]:
        """Every field of each hash, in order; ``{}`` for a missing or expired key."""
        with self._lock:
            now = self._clock()
            self._check_kind(keys, dict, now)
            out: list[dict[str, float]] = []
            for key in keys:
                entry = self._live(key, now)
                out.append(dict(entry.value) if entry and isinstance(entry.value, dict) else {})
            return out

    def hdel_many(self, deletions: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Remove the named fields of each hash; a hash left empty disappears."""
        with self._lock:
            now = self._clock()
            self._check_kind((key for key, _ in deletions), dict, now)
            for key, fields in deletions:
                entry = self._live(key, now)
                if entry is None or not isinstance(entry.value, dict):
                    continue
                for field in fields:
                    entry.value.pop(field, None)
                if not entry.value:
                    del self._data[key]

    # -- capped lists ---------------------------------------------------------------------

    def push_capped(
        self, key: str, values: Sequence[str], max_len: int, ttl: timedelta | None = None
    ) -> None:
        """Append ``values`` in order to the list at ``key``; keep only the newest ``max_len``."""
        check_max_len(max_len)
        if not values:
            return
        expires_in = None if ttl is None else ttl_ms(ttl) / 1000
        with self._lock:
            now = self._clock()
            self._check_kind((key,), list, now)
            entry = self._live(key, now)
            if entry is None:
                entry = self._data[key] = _Entry([])
            items = entry.value
            assert isinstance(items, list)
            items.extend(values)
            if len(items) > max_len:
                del items[:-max_len]
            if expires_in is not None:
                entry.expires_at = now + expires_in
            self._wrote(1, now)

    def get_lists(self, keys: Sequence[str]) -> list[list[str]]:
        """Each list, oldest first; ``[]`` for a missing or expired key."""
        with self._lock:
            now = self._clock()
            self._check_kind(keys, list, now)
            out: list[list[str]] = []
            for key in keys:
                entry = self._live(key, now)
                out.append(list(entry.value) if entry and isinstance(entry.value, list) else [])
            return out

    # -- keys and lifecycle ---------------------------------------------------------------

    def delete(self, keys: Sequence[str]) -> None:
        """Remove the keys, whatever they hold; missing keys are ignored."""
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def ping(self) -> None:
        """Always answers: the store is in this process."""

    def close(self) -> None:
        """Nothing to release."""

    # -- internals (the lock is held) -----------------------------------------------------

    @staticmethod
    def _expired(entry: _Entry, now: float) -> bool:
        return entry.expires_at is not None and now >= entry.expires_at

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and self._expired(entry, now):
            del self._data[key]
            return None
        return entry

    def _check_kind(self, keys: Iterable[str], kind: type, now: float) -> None:
        # Mirror Redis's WRONGTYPE error, before anything of the batch is applied.
        for key in keys:
            entry = self._live(key, now)
            if entry is not None and not isinstance(entry.value, kind):
                raise OnlineStoreUnavailable(
                    f"WRONGTYPE {key!r} holds a {type(entry.value).__name__}, not a {kind.__name__}"
                )

    def _wrote(self, count: int, now: float) -> None:
        self._writes += count
        if self._writes >= max(_SWEEP_EVERY, self._size_at_sweep):
            expired = [key for key, entry in self._data.items() if self._expired(entry, now)]
            for key in expired:
                del self._data[key]
            self._writes = 0
            self._size_at_sweep = len(self._data)
