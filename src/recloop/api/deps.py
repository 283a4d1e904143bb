"""Dependencies: the runtime, and API-key authentication with scopes."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recloop.api.deadline import store_call
from recloop.api.limits import TokenBuckets, retry_after
from recloop.config.serving import ServingSettings
from recloop.domain import Scope
from recloop.errors import (
    Forbidden,
    RecloopError,
    StoreUnavailable,
    TooManyRequests,
    Unauthorized,
)
from recloop.runtime.process import Runtime
from recloop.store.keys import key_id_of, matches, verify_key
from recloop.store.protocols import ApiKeyRecord, Tenancy

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
    """Verified keys, kept so that a request costs no key lookup, and the guards around
    lookups: unknown keys are remembered briefly, each client address may cause only so
    many failed checks, and each key only so many requests per scope.

    Every ``revocation_check_s`` the directory of every active key (ids, hashes, scopes) is
    read again, in the background, and requests are checked against it without a lookup: a
    revoked key stops working within that long in every process. Only a key id the
    directory does not hold (made a moment ago, or made up) costs a lookup; while the store is
    away, such a key is a 401 rather than a 503, and the directory keeps answering for
    ``DIRECTORY_TRUST_S``.
    """

    def __init__(self, settings: ServingSettings) -> None:
        self._ttl_s = settings.key_cache_ttl_s
        self._recheck_s = settings.revocation_check_s
        self._entries: dict[str, tuple[float, ApiKeyRecord]] = {}
        self._unknown: dict[str, float] = {}
        self._checked = time.monotonic()  # the first check comes one interval after start
        self._checking = False
        self._task: asyncio.Task[None] | None = None
        # Every active key, read with each revocation check: answers while the store is away.
        self._directory: dict[str, ApiKeyRecord] | None = None
        self._directory_at = -math.inf
        self._failures = TokenBuckets(
            settings.auth_failures_per_s, 2.0 * settings.auth_failures_per_s
        )
        self._rates = {
            Scope(scope): TokenBuckets(rate, max(1.0, rate))
            for scope, rate in settings.rate_limits.items()
        }

    async def get(self, key: str, tenancy: Tenancy, timeout_s: float) -> ApiKeyRecord | None:
        """The key's record (None: unknown or revoked), from the cache when fresh.

        Raises:
            StoreUnavailable: the store did not answer within ``timeout_s``.
        """
        now = time.monotonic()
        if now >= self._checked + self._recheck_s and not self._checking:
            # In the background: no request waits on the check (nor on a stalled store).
            self._checking, self._checked = True, now
            self._task = asyncio.create_task(self._refresh(tenancy, timeout_s, now))
        if self._directory is not None and now - self._directory_at <= DIRECTORY_TRUST_S:
            known = self._directory.get(key_id_of(key) or "")
            if known is not None:
                return _valid(known, key)
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        unknown_until = self._unknown.get(key)
        if unknown_until is not None and unknown_until > now:
            return None
        try:
            record = await store_call(timeout_s, verify_key, tenancy, key)
        except StoreUnavailable:
            # The store is away: the key is not in the recent directory of active keys
            # (checked above), so it is made up or revoked: a 401, not a 503.
            if self._directory is None or now - self._directory_at > DIRECTORY_TRUST_S:
                raise
            return None  # not among the active keys a moment ago: made up, or revoked
        if len(self._entries) > 10_000:
            self._entries.clear()
        if len(self._unknown) > 10_000:
            self._unknown.clear()
        if record is None:
            self._unknown[key] = now + min(self._recheck_s, UNKNOWN_TTL_S)
        elif self._ttl_s > 0:
            self._entries[key] = (now + self._ttl_s, record)
        return record

    async def _refresh(self, tenancy: Tenancy, timeout_s: float, now: float) -> None:
        """Read the directory of active keys; drop cached keys no longer in it."""
        try:
            active = await store_call(timeout_s, tenancy.active_keys)
        except RecloopError:
            return  # asked again at the next check; entries still expire after ttl_s
        finally:
            self._checking = False
        self._directory = {record.key_id: record for record in active}
        self._directory_at = now
        self._entries = {k: v for k, v in self._entries.items() if v[1].key_id in self._directory}

    def check_address(self, address: str) -> None:
        """Refuse a client address that caused too many failed key checks (before a lookup).

        Raises:
            TooManyRequests: with the seconds until it may try again.
        """
        wait = self._failures.wait(address, time.monotonic())
        if wait > 0:
            raise TooManyRequests(
                "Authorization: too many failed key checks from this address",
                retry_after(wait),
            )

    def failed(self, address: str) -> None:
        """Count a failed key check against the client address."""
        self._failures.take(address, time.monotonic())

    def admit(self, key_id: str, scope: Scope) -> None:
        """Take one request from the key's budget for ``scope``.

        Raises:
            TooManyRequests: the key is over ``serving.rate_limits[scope]``.
        """
        buckets = self._rates.get(scope)
        if buckets is None:
            return
        wait = buckets.take(key_id, time.monotonic())
        if wait > 0:
            raise TooManyRequests(
                f"Authorization: this key is over its {scope.value} rate "
                f"({buckets.rate:g} requests a second)",
                retry_after(wait),
            )


def _valid(record: ApiKeyRecord, key: str) -> ApiKeyRecord | None:
    """``record`` when ``key`` is its secret and its revocation (if any) lies ahead."""
    if not matches(record, key):
        return None
    ends = record.revoked_at
    return record if ends is None or ends > datetime.now(UTC) else None


#: How long an unknown key is answered 401 without a lookup (at most).
UNKNOWN_TTL_S = 5.0
#: How old the directory of active keys may be and still answer while the store is away.
DIRECTORY_TRUST_S = 300.0


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


async def authenticate(
    state: Any, runtime: Runtime, key: str | None, address: str | None
) -> ApiKeyRecord:
    """The record of an API key, through the app's key cache (``state.key_cache``).

    Raises:
        Unauthorized: no key, or an unknown or revoked one.
        TooManyRequests: ``address`` caused too many failed checks lately.
    """
    cache: KeyCache = state.key_cache
    where = address or "unknown"
    cache.check_address(where)
    if key is None:
        cache.failed(where)
        raise Unauthorized("Authorization: send `Bearer <api key>`")
    record = await cache.get(key, runtime.store.tenancy, runtime.settings.serving.store_timeout_s)
    if record is None:
        cache.failed(where)
        raise Unauthorized("Authorization: unknown or revoked API key")
    return record


def requires(*scopes: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency that admits a key holding any of ``scopes`` (``admin`` holds them all),
    within that scope's rate for the key."""

    async def check(
        runtime: RuntimeDep,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        key = None
        if credentials is not None and credentials.scheme.lower() == "bearer":
            key = credentials.credentials
        address = request.client.host if request.client else None
        record = await authenticate(request.app.state, runtime, key, address)
        held = [s for s in scopes if s in record.scopes]
        if Scope.ADMIN not in record.scopes and not held:
            needed = " or ".join(s.value for s in scopes)
            raise Forbidden(f"Authorization: this key lacks the {needed} scope")
        cache: KeyCache = request.app.state.key_cache
        cache.admit(record.key_id, held[0] if held else Scope.ADMIN)
        return Caller(record.app_id, record.key_id, record.scopes)

    return check


IngestCaller = Annotated[Caller, Depends(requires(Scope.INGEST))]
ServeCaller = Annotated[Caller, Depends(requires(Scope.SERVE))]
FeedbackCaller = Annotated[Caller, Depends(requires(Scope.SERVE, Scope.INGEST))]
AdminCaller = Annotated[Caller, Depends(requires(Scope.ADMIN))]
