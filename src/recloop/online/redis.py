"""The Redis online store: one pipeline per batch call, short timeouts and no retries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recloop.errors import OnlineStoreUnavailable, RecloopError, map_errors
from recloop.online.protocols import check_amounts, check_max_len, ttl_ms

#: Everything redis-py raises (refused, timed out, protocol or server errors), plus raw
#: socket errors, becomes OnlineStoreUnavailable: the request path falls back on it.
_ERRORS: dict[type[BaseException], type[RecloopError]] = {
    redis.RedisError: OnlineStoreUnavailable,
    OSError: OnlineStoreUnavailable,
}


class RedisOnlineStore:
    """An ``OnlineStore`` on Redis, shared by every replica; keys are used as given.

    A dead or stalled Redis makes a call fail after about ``timeout_s`` (once to connect,
    once to read), never hang: commands are not retried, since a retried pipeline of
    increments could count twice.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.05) -> RedisOnlineStore:
        """Connect lazily to ``redis://HOST:PORT/DB`` with ``timeout_s`` to connect and read.

        Raises:
            ValueError: the URL cannot be parsed, or ``timeout_s`` is not positive.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return cls(client)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key, in order; ``None`` for a missing key (one MGET)."""
        if not keys:
            return []
        with map_errors(_ERRORS):
            values = cast(list[bytes | None], self._client.mget(list(keys)))
        return list(values)

    def set_many(self, values: Mapping[str, bytes], ttl: timedelta | None = None) -> None:
        """Store each value under its key (SET, with PX when ``ttl`` is given)."""
        if not values:
            return
        px = None if ttl is None else ttl_ms(ttl)
        with map_errors(_ERRORS):
            pipe = self._client.pipeline(transaction=False)
            for key, value in values.items():
                pipe.set(key, value, px=px)
            pipe.execute()

    def hincr_many(
        self, updates: Sequence[tuple[str, str, float]], ttl: timedelta | None = None
    ) -> None:
        """HINCRBYFLOAT each field, then PEXPIRE each touched key when ``ttl`` is given."""
        if not updates:
            return
        check_amounts(updates)
        px = None if ttl is None else ttl_ms(ttl)
        with map_errors(_ERRORS):
            pipe = self._client.pipeline(transaction=False)
            for key, field, amount in updates:
                pipe.hincrbyfloat(key, field, float(amount))
            if px is not None:
                for key in dict.fromkeys(key for key, _, _ in updates):
                    pipe.pexpire(key, px)
            pipe.execute()

    def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, float]]:
        """Every field of each hash, in order, as floats; ``{}`` for a missing key."""
        if not keys:
            return []
        with map_errors(_ERRORS):
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            replies = cast(list[dict[bytes, bytes]], pipe.execute())
        return [
            {field.decode(): float(value) for field, value in reply.items()} for reply in replies
        ]

    def hdel_many(self, deletions: Sequence[tuple[str, Sequence[str]]]) -> None:
        """HDEL the named fields of each hash; Redis drops a hash left empty."""
        deletions = [(key, fields) for key, fields in deletions if fields]
        if not deletions:
            return
        with map_errors(_ERRORS):
            pipe = self._client.pipeline(transaction=False)
            for key, fields in deletions:
                pipe.hdel(key, *fields)
            pipe.execute()

    def push_capped(
        self, key: str, values: Sequence[str], max_len: int, ttl: timedelta | None = None
    ) -> None:
        """RPUSH the values, LTRIM to the newest ``max_len``, PEXPIRE when ``ttl`` is given."""
        check_max_len(max_len)
        if not values:
            return
        px = None if ttl is None else ttl_ms(ttl)
        with map_errors(_ERRORS):
            pipe = self._client.pipeline(transaction=False)
            pipe.rpush(key, *values)
            pipe.ltrim(key, -max_len, -1)
            if px is not None:
                pipe.pexpire(key, px)
            pipe.execute()

    def get_lists(self, keys: Sequence[str]) -> list[list[str]]:
        """Each list, oldest first (LRANGE 0 -1); ``[]`` for a missing key."""
        if not keys:
            return []
        with map_errors(_ERRORS):
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.lrange(key, 0, -1)
            replies = cast(list[list[bytes]], pipe.execute())
        return [[value.decode() for value in reply] for reply in replies]

    def delete(self, keys: Sequence[str]) -> None:
        """DEL the keys; missing keys are ignored."""
        if not keys:
            return
        with map_errors(_ERRORS):
            self._client.delete(*keys)

    def ping(self) -> None:
        """Raise ``OnlineStoreUnavailable`` unless Redis answers PING."""
        with map_errors(_ERRORS):
            self._client.ping()

    def close(self) -> None:
        """Disconnect every pooled connection."""
        with map_errors(_ERRORS):
            self._client.close()

    def __repr__(self) -> str:
        kwargs: dict[str, Any] = self._client.connection_pool.connection_kwargs
        return f"RedisOnlineStore({kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db')})"
