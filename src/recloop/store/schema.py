"""The durable store's tables, as SQLAlchemy Core: one schema for SQLite and PostgreSQL.

Migrations under ``migrations/versions`` create exactly these tables; a test compares them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every engine.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, which this type turns
    back into aware datetimes so that no caller ever sees a naive one.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC; refuse naive datetimes, whose zone is unknowable."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to the naive values SQLite returns."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _seq() -> sa.types.TypeEngine[int]:
    # SQLite only makes INTEGER PRIMARY KEY an alias of the fast rowid.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


metadata = sa.MetaData()

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("app_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), primary_key=True),
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("category", sa.Text, nullable=True),
    sa.Column("tags", _json(), nullable=False),
    sa.Column("creator_id", sa.Text, nullable=True),
    sa.Column("locale", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("metadata", _json(), nullable=False),
    sa.Index("ix_items_app_updated", "app_id", "updated_at"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("attributes", _json(), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    # seq orders events by arrival, so readers can follow the log incrementally.
    sa.Column("seq", _seq(), primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("item_id", sa.Text, nullable=True),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("surface", sa.Text, nullable=True),
    sa.Column("session_id", sa.Text, nullable=True),
    sa.Column("device", sa.Text, nullable=True),
    sa.Column("position", sa.Integer, nullable=True),
    sa.Column("request_id", sa.Text, nullable=True),
    sa.Column("event_ts", UtcDateTime, nullable=False),
    sa.Column("server_ts", UtcDateTime, nullable=False),
    sa.Column("context", _json(), nullable=True),
    # A search's query (normalized, personal data scrubbed); null for other events.
    sa.Column("query", sa.Text, nullable=True),
    sa.UniqueConstraint("app_id", "event_id", name="uq_events_app_event_id"),
    sa.Index("ix_events_app_user_ts", "app_id", "user_id", "event_ts"),
    sa.Index("ix_events_app_item_ts", "app_id", "item_id", "event_ts"),
    sa.Index("ix_events_request_id", "request_id"),
)

recommendation_log = sa.Table(
    "recommendation_log",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("surface", sa.Text, nullable=False),
    sa.Column("served_at", UtcDateTime, nullable=False),
    # [{itemId, position, score, source, propensity}, ...] in serving order
    sa.Column("items", _json(), nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("experiment", sa.Text, nullable=True),
    sa.Column("variant", sa.Text, nullable=False),
    sa.Column("fallback", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("session_id", sa.Text, nullable=True),
    sa.Column("device", sa.Text, nullable=True),
    sa.Index("ix_reclog_app_user_served", "app_id", "user_id", "served_at"),
)

shadow_log = sa.Table(
    "shadow_log",
    metadata,
    # The served request this shadow list was computed for (recommendation_log.request_id).
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("shadow", sa.String(64), primary_key=True),
    sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("surface", sa.Text, nullable=False),
    sa.Column("computed_at", UtcDateTime, nullable=False),
    # [{itemId, position, score, source, propensity}, ...] in the shadow pipeline's order
    sa.Column("items", _json(), nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("fallback", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Index("ix_shadowlog_app_shadow_computed", "app_id", "shadow", "computed_at"),
    sa.Index("ix_shadowlog_app_user", "app_id", "user_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", _seq(), primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    # The key id that acted, or "cli" for a command run on the host.
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("detail", _json(), nullable=False),
    sa.Index("ix_audit_action_seq", "action", "seq"),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
