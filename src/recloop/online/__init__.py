"""Fast key-value state for features and sessions: in-process by default, Redis in production.

Opened by URL: ``memory://`` (this process only; the default) or ``redis://HOST:PORT/DB``
(``rediss://`` for TLS), shared by every serving replica. Every backend failure raises
``OnlineStoreUnavailable``, a ``StoreUnavailable``: callers degrade, never hang.
"""

from __future__ import annotations

from recloop.errors import ConfigError, OnlineStoreUnavailable
from recloop.online.memory import MemoryOnlineStore
from recloop.online.protocols import OnlineStore

__all__ = [
    "MemoryOnlineStore",
    "OnlineStore",
    "OnlineStoreUnavailable",
    "open_online_store",
]

_REDIS_SCHEMES = ("redis", "rediss")


def open_online_store(url: str, *, timeout_s: float = 0.05) -> OnlineStore:
    """Open the online store at ``url``; Redis is connected to lazily, on the first call.

    Args:
        url: ``memory://`` or ``redis://HOST:PORT/DB``.
        timeout_s: how long a Redis call may wait to connect, and then for its reply.

    Raises:
        ConfigError: the URL's scheme is not supported, or the URL cannot be parsed.
        ValueError: ``timeout_s`` is not positive.
    """
    scheme = url.split("://", 1)[0] if "://" in url else url.rstrip(":")
    if scheme == "memory":
        if url not in ("memory://", "memory:"):
            raise ConfigError(f"online_url: {url!r} takes no host or path; use memory://")
        return MemoryOnlineStore()
    if scheme in _REDIS_SCHEMES:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        try:
            # Imported here: redis-py is only needed, and only paid for, when configured.
            from recloop.online.redis import RedisOnlineStore
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ConfigError(
                f"online_url: {scheme}:// needs the redis package (pip install redis)"
            ) from exc
        try:
            return RedisOnlineStore.from_url(url, timeout_s=timeout_s)
        except ValueError as exc:  # the message never repeats the URL: it may hold a password
            raise ConfigError(f"online_url: not a usable Redis URL ({exc})") from exc
    raise ConfigError(
        f"online_url: unsupported scheme {scheme!r}; use memory:// or redis://HOST:PORT/DB"
    )
