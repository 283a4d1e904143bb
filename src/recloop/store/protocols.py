"""Role-sized interfaces of the durable store; ``Store`` bundles one of each."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from recloop.domain import (
    CatalogEntry,
    Event,
    EventRecord,
    Feedback,
    Item,
    RecommendationRecord,
    Scope,
    ShadowRecord,
    User,
)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append of events did: the (app_id, event_id) keys that were newly stored.

    Every other event of the append was a duplicate: stored before, or repeated in the batch.
    """

    inserted_keys: frozenset[tuple[str, str]]

    @property
    def inserted(self) -> int:
        """How many events were newly stored."""
        return len(self.inserted_keys)


@dataclass(frozen=True, slots=True)
class SearchRecord:
    """One of a user's searches, as the suggestion surface reads it back."""

    query: str  # normalized, personal data replaced by tags
    session_id: str | None
    event_ts: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored API key: never the secret itself, only its hash."""

    key_id: str
    app_id: str
    key_hash: str
    scopes: frozenset[Scope]
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """An item's serving-relevant attributes, as read by caches that follow the catalog."""

    app_id: str
    item_id: str
    category: str | None
    is_active: bool
    updated_at: datetime
    created_at: datetime | None = None
    creator_id: str | None = None

    @property
    def cursor(self) -> CatalogCursor:
        """The position of this change in the catalog's change order."""
        return (self.updated_at, self.app_id, self.item_id)


#: Where a catalog follower stands: (updated_at, app_id, item_id) of the last change it saw.
CatalogCursor = tuple[datetime, str, str]


class Tenancy(Protocol):
    """Apps and their API keys."""

    def create_app(self, app_id: str, name: str, now: datetime) -> bool:
        """Create an app; returns False when it already existed."""
        ...

    def app_exists(self, app_id: str) -> bool:
        """Whether the app exists."""
        ...

    def add_key(self, record: ApiKeyRecord) -> None:
        """Store a new key (its hash only)."""
        ...

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key by its public id, revoked or not."""
        ...

    def list_keys(self, app_id: str) -> list[ApiKeyRecord]:
        """All keys of an app."""
        ...

    def revoke_key(self, key_id: str, now: datetime) -> bool:
        """Revoke a key; returns False when there was no such active key."""
        ...

    def active_keys(self) -> list[ApiKeyRecord]:
        """Every key of every app that is not revoked (or whose revocation lies ahead)."""
        ...


class Catalog(Protocol):
    """Items."""

    def upsert_items(self, app_id: str, items: Sequence[Item], now: datetime) -> None:
        """Insert or replace items (all fields); ``updated_at`` becomes ``now``."""
        ...

    def get_item(self, app_id: str, item_id: str) -> Item | None:
        """One item, whatever its status."""
        ...

    def delete_item(self, app_id: str, item_id: str) -> bool:
        """Delete an item; returns False when it did not exist."""
        ...

    def active_entries(self, app_id: str, item_ids: Collection[str]) -> dict[str, CatalogEntry]:
        """The subset of ``item_ids`` that exist and are active: the servable ones."""
        ...

    def changes_since(self, after: CatalogCursor | None, limit: int) -> list[CatalogChange]:
        """Items of every app changed after a cursor, in cursor order, for caches to follow."""
        ...

    def count_items(self, app_id: str) -> int:
        """How many items the app has, of any status."""
        ...

    def scan_items(self, app_id: str, after_item_id: str | None, limit: int) -> list[Item]:
        """A page of the app's items, of any status, in item_id order after ``after_item_id``."""
        ...


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the audit log: who did what to which subject, and when."""

    seq: int
    app_id: str
    at: datetime
    actor: str  # a key id, or "cli"
    action: str  # e.g. "user.delete", "item.delete", "model.promote", "key.revoke"
    subject: str
    detail: Mapping[str, Any]


class Audit(Protocol):
    """The audit log: deletions and administrative actions, in the order they happened."""

    def record(
        self,
        app_id: str,
        actor: str,
        action: str,
        subject: str,
        now: datetime,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one entry."""
        ...

    def since(self, after_seq: int, limit: int, action: str | None = None) -> list[AuditRecord]:
        """Entries with ``seq > after_seq`` in order (of one action when given)."""
        ...


class Users(Protocol):
    """User profiles and the purge of everything stored about a user."""

    def upsert_users(self, app_id: str, users: Sequence[User], now: datetime) -> None:
        """Insert or replace users' attributes."""
        ...

    def get_user(self, app_id: str, user_id: str) -> User | None:
        """One user."""
        ...

    def purge_user(self, app_id: str, user_id: str) -> bool:
        """Delete the user with their events, logs and suppressions; False when none existed."""
        ...

    def forget_user(
        self, app_id: str, user_id: str, actor: str, now: datetime
    ) -> tuple[str, ...] | None:
        """``purge_user`` and its ``user.delete`` audit entry in one transaction; the
        user's session ids (for what else holds them), or None when nothing was stored."""
        ...

    def scan_users(self, app_id: str, after_user_id: str | None, limit: int) -> list[User]:
        """A page of the app's users in user_id order after ``after_user_id``."""
        ...


class EventLog(Protocol):
    """Events, append-only and idempotent on (app_id, event_id)."""

    def append(self, events: Sequence[Event]) -> AppendResult:
        """Store events durably in one transaction; repeated ids are stored once."""
        ...

    def get_events(self, app_id: str, event_ids: Collection[str]) -> dict[str, Event]:
        """The stored events of these ids, by id (absent ids are left out)."""
        ...

    def read_since(self, after_seq: int, limit: int) -> list[EventRecord]:
        """Events of every app with ``seq > after_seq`` in arrival order."""
        ...

    def consumed_item_ids(
        self, app_id: str, user_id: str, event_types: Collection[str]
    ) -> set[str]:
        """Items the user has had an event of one of ``event_types`` with."""
        ...

    def engagement_history(
        self, app_id: str, user_id: str, event_types: Collection[str]
    ) -> list[tuple[str, str | None]]:
        """(item, session) of the user's events of ``event_types``, most recent first."""
        ...

    def recent_searches(self, app_id: str, user_id: str, limit: int) -> list[SearchRecord]:
        """The user's latest ``limit`` searches that carry a query, most recent first."""
        ...

    def count(self, app_id: str) -> int:
        """How many events the app has."""
        ...

    def scan(
        self,
        after_seq: int,
        limit: int,
        *,
        app_id: str | None = None,
        received_since: datetime | None = None,
    ) -> list[tuple[int, Event]]:
        """Full events with ``seq > after_seq`` in seq order, with their seq, for exports.

        Every app's by default; only ``app_id``'s when given; only those the server received
        at or after ``received_since`` when given.
        """
        ...


class RecommendationLog(Protocol):
    """Every served list, so that engagement can be joined to its impression."""

    def append(self, records: Sequence[RecommendationRecord]) -> None:
        """Store served lists in one transaction."""
        ...

    def get(self, app_id: str, request_id: str) -> RecommendationRecord | None:
        """One served list by its request id."""
        ...

    def shown_counts(
        self,
        app_id: str,
        user_id: str,
        since: datetime,
        limit: int = 50,
        until: datetime | None = None,
        surface: str | None = None,
    ) -> dict[str, int]:
        """How often each item was served to the user from ``since`` to before ``until``
        (latest ``limit`` lists), on ``surface`` only when given."""
        ...

    def scan(
        self,
        after: str | None,
        limit: int,
        *,
        app_id: str | None = None,
        served_since: datetime | None = None,
    ) -> list[RecommendationRecord]:
        """Served lists in request_id order after the request id ``after``, for exports.

        Every app's by default; only ``app_id``'s when given; only those served at or after
        ``served_since`` when given.
        """
        ...


class ShadowLog(Protocol):
    """Lists shadow pipelines computed for served requests and never showed."""

    def append(self, records: Sequence[ShadowRecord]) -> None:
        """Store shadow lists in one transaction."""
        ...

    def scan(self, app_id: str, shadow: str, after: str | None, limit: int) -> list[ShadowRecord]:
        """One shadow's lists in request_id order after the request id ``after``."""
        ...


class Suppressions(Protocol):
    """Items a user asked never to see again."""

    def add(self, app_id: str, entries: Sequence[tuple[str, str, Feedback]], now: datetime) -> None:
        """Suppress (user_id, item_id) pairs for a reason; repeats keep the first."""
        ...

    def item_ids(self, app_id: str, user_id: str) -> set[str]:
        """The items suppressed for a user."""
        ...
