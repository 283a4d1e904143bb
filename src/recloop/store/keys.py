"""Issuing and checking API keys. Only a key's SHA-256 is stored; the secret is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from recloop.domain import Scope
from recloop.store.protocols import ApiKeyRecord, Tenancy

_PREFIX = "rl"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key(
    tenancy: Tenancy, app_id: str, scopes: Iterable[Scope], now: datetime, name: str | None = None
) -> str:
    """Create a key for an existing app and return it; it cannot be shown again."""
    key_id = secrets.token_hex(6)
    key = f"{_PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"
    tenancy.add_key(
        ApiKeyRecord(
            key_id=key_id,
            app_id=app_id,
            key_hash=_hash(key),
            scopes=frozenset(scopes),
            name=name,
            created_at=now,
            revoked_at=None,
        )
    )
    return key


def key_id_of(key: str) -> str | None:
    """The public id inside a key, or None when the key is not of our shape."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or not parts[1]:
        return None
    return parts[1]


def verify_key(tenancy: Tenancy, key: str) -> ApiKeyRecord | None:
    """The key's record when the key is genuine and not revoked, else None. A key whose
    revocation lies ahead (a rotated key in its grace period) is still valid."""
    key_id = key_id_of(key)
    if key_id is None:
        return None
    record = tenancy.get_key(key_id)
    if record is None or (record.revoked_at is not None and record.revoked_at <= datetime.now(UTC)):
        return None
    return record if matches(record, key) else None


def matches(record: ApiKeyRecord, key: str) -> bool:
    """Whether ``key`` is the secret whose hash ``record`` holds (in constant time)."""
    return hmac.compare_digest(record.key_hash, _hash(key))
