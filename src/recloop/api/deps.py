"""Dependencies: the runtime, and API-key authentication with scopes."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recloop.api.deadline import store_call
from recloop.domain import Scope
from recloop.errors import Forbidden, Unauthorized
from recloop.runtime.process import Runtime
from recloop.store.keys import verify_key
from recloop.store.protocols import ApiKeyRecord

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


# Dependencies are `async def` so that FastAPI calls them on the event loop: a plain `def`
# would cost every request a hop through the thread pool.
async def get_runtime(request: Request) -> Runtime:
    """The process's runtime, created by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the app their key belongs to, and what it may do."""

    app_id: str
    key_id: str
    scopes: frozenset[Scope]


class KeyCache:
    """Verified keys, kept for a few seconds so that a request costs no key lookup.

    A revoked key stops working within ``ttl_s``.
    """

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, ApiKeyRecord]] = {}
        self._lock = threading.Lock()

    async def get(
        self, key: str, load: Callable[[str], ApiKeyRecord | None], timeout_s: float
    ) -> ApiKeyRecord | None:
        """The key's record, from the cache when fresh, else from ``load`` (in a thread).

        Raises:
            StoreUnavailable: ``load`` did not answer within ``timeout_s``.
        """
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        record = await store_call(timeout_s, load, key)
        if record is not None and self._ttl_s > 0:
            with self._lock:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[key] = (now + self._ttl_s, record)
        return record


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


async def authenticate(state: Any, runtime: Runtime, key: str | None) -> ApiKeyRecord:
    """The record of an API key, through the app's key cache (``state.key_cache``).

    Raises:
        Unauthorized: no key, or an unknown or revoked one.
    """
    if key is None:
        raise Unauthorized("Authorization: send `Bearer <api key>`")
    cache: KeyCache = state.key_cache
    record = await cache.get(
        key,
        lambda k: verify_key(runtime.store.tenancy, k),
        runtime.settings.serving.store_timeout_s,
    )
    if record is None:
        raise Unauthorized("Authorization: unknown or revoked API key")
    return record


def requires(*scopes: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency that admits a key holding any of ``scopes`` (``admin`` holds them all)."""

    async def check(
        runtime: RuntimeDep,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        key = None
        if credentials is not None and credentials.scheme.lower() == "bearer":
            key = credentials.credentials
        record = await authenticate(request.app.state, runtime, key)
        if Scope.ADMIN not in record.scopes and not record.scopes & set(scopes):
            needed = " or ".join(s.value for s in scopes)
            raise Forbidden(f"Authorization: this key lacks the {needed} scope")
        return Caller(record.app_id, record.key_id, record.scopes)

    return check


IngestCaller = Annotated[Caller, Depends(requires(Scope.INGEST))]
ServeCaller = Annotated[Caller, Depends(requires(Scope.SERVE))]
FeedbackCaller = Annotated[Caller, Depends(requires(Scope.SERVE, Scope.INGEST))]
AdminCaller = Annotated[Caller, Depends(requires(Scope.ADMIN))]
