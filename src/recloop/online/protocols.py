"""The online store's interface: batched key-value, counter-hash and capped-list operations."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Protocol


class OnlineStore(Protocol):
    """Fast key-value state shared by the request path and the feature materializer.

    Keys are used as given: callers namespace them (``feat:user:42``). One key holds one
    kind of value (bytes, a hash of floats, or a list of strings); using a key as another
    kind is a caller bug. Every backend failure raises ``OnlineStoreUnavailable``, after
    which any part of the batch may or may not have been applied.
    A ``ttl`` of ``None`` sets no expiry on a plain value and leaves a hash's or a list's
    expiry as it was.
    """

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key, in order; ``None`` for a missing or expired key."""
        ...

    def set_many(self, values: Mapping[str, bytes], ttl: timedelta | None = None) -> None:
        """Store each value under its key, replacing what was there."""
        ...

    def hincr_many(
        self, updates: Sequence[tuple[str, str, float]], ttl: timedelta | None = None
    ) -> None:
        """Add ``amount`` to ``field`` of hash ``key`` for every ``(key, field, amount)``.

        Each touched key's expiry is (re)set to ``ttl``.
        """
        ...

    def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, float]]:
        """Every field of each hash, in order; ``{}`` for a missing key."""
        ...

    def hdel_many(self, deletions: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Remove the named fields of each hash; a hash left empty disappears."""
        ...

    def push_capped(
        self, key: str, values: Sequence[str], max_len: int, ttl: timedelta | None = None
    ) -> None:
        """Append ``values`` in order to the list at ``key``; keep only the newest ``max_len``."""
        ...

    def get_lists(self, keys: Sequence[str]) -> list[list[str]]:
        """Each list, oldest first; ``[]`` for a missing key."""
        ...

    def delete(self, keys: Sequence[str]) -> None:
        """Remove the keys, whatever they hold; missing keys are ignored."""
        ...

    def ping(self) -> None:
        """Raise ``OnlineStoreUnavailable`` unless the store answers."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def ttl_ms(ttl: timedelta) -> int:
    """A TTL in whole milliseconds (rounded up); raise ValueError unless it is positive."""
    if ttl <= timedelta(0):
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return math.ceil(ttl / timedelta(milliseconds=1))


def check_amounts(updates: Sequence[tuple[str, str, float]]) -> None:
    """Raise ValueError if an increment is NaN or infinite (Redis refuses those)."""
    for key, field, amount in updates:
        if not math.isfinite(amount):
            raise ValueError(f"hincr amount for {key!r}/{field!r} must be finite, got {amount}")


def check_max_len(max_len: int) -> None:
    """Raise ValueError unless a capped list may hold at least one value."""
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
