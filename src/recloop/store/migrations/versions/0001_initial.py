"""Initial schema: apps, api_keys, items, users, events, recommendation_log, suppressions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from recloop.store.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("app_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "items",
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
    )
    op.create_index("ix_items_app_updated", "items", ["app_id", "updated_at"])
    op.create_table(
        "users",
        sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("attributes", _json(), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
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
        sa.UniqueConstraint("app_id", "event_id", name="uq_events_app_event_id"),
    )
    op.create_index("ix_events_app_user_ts", "events", ["app_id", "user_id", "event_ts"])
    op.create_index("ix_events_app_item_ts", "events", ["app_id", "item_id", "event_ts"])
    op.create_index("ix_events_request_id", "events", ["request_id"])
    op.create_table(
        "recommendation_log",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("surface", sa.Text, nullable=False),
        sa.Column("served_at", UtcDateTime, nullable=False),
        sa.Column("items", _json(), nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("experiment", sa.Text, nullable=True),
        sa.Column("variant", sa.Text, nullable=False),
        sa.Column("fallback", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("session_id", sa.Text, nullable=True),
        sa.Column("device", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_reclog_app_user_served", "recommendation_log", ["app_id", "user_id", "served_at"]
    )
    op.create_table(
        "suppressions",
        sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "suppressions",
        "recommendation_log",
        "events",
        "users",
        "items",
        "api_keys",
        "apps",
    ):
        op.drop_table(table)
