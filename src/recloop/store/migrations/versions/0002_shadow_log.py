"""Shadow lists: what a shadow pipeline would have served, computed and never shown.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from recloop.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "shadow_log",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("shadow", sa.String(64), primary_key=True),
        sa.Column("app_id", sa.String(64), sa.ForeignKey("apps.app_id"), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("surface", sa.Text, nullable=False),
        sa.Column("computed_at", UtcDateTime, nullable=False),
        sa.Column("items", _json(), nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("fallback", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_shadowlog_app_shadow_computed", "shadow_log", ["app_id", "shadow", "computed_at"]
    )
    op.create_index("ix_shadowlog_app_user", "shadow_log", ["app_id", "user_id"])


def downgrade() -> None:
    op.drop_table("shadow_log")
