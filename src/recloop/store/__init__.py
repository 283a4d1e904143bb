"""Durable state: apps and keys, catalog, users, events, served lists, suppressions.

Opened by URL: ``sqlite:///path/recloop.db`` (the embedded default) or
``postgresql+psycopg://user@host/db`` (production). Both run the same SQL code path.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recloop.errors import ConfigError, StoreUnavailable, map_errors
from recloop.store.protocols import (
    ApiKeyRecord,
    AppendResult,
    Audit,
    AuditRecord,
    Catalog,
    CatalogChange,
    CatalogCursor,
    EventLog,
    RecommendationLog,
    ShadowLog,
    Suppressions,
    Tenancy,
    Users,
)
from recloop.store.sql import (
    USER_DELETE,
    SqlAudit,
    SqlCatalog,
    SqlEventLog,
    SqlRecommendationLog,
    SqlShadowLog,
    SqlSuppressions,
    SqlTenancy,
    SqlUsers,
    create_sql_engine,
)

__all__ = [
    "USER_DELETE",
    "ApiKeyRecord",
    "AppendResult",
    "Audit",
    "AuditRecord",
    "Catalog",
    "CatalogChange",
    "CatalogCursor",
    "EventLog",
    "RecommendationLog",
    "ShadowLog",
    "Store",
    "Suppressions",
    "Tenancy",
    "Users",
    "open_store",
]

_SCHEMES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Store:
    """The durable store, one object per role."""

    url: str
    engine: Engine
    tenancy: Tenancy
    catalog: Catalog
    users: Users
    events: EventLog
    rec_log: RecommendationLog
    suppressions: Suppressions
    shadow_log: ShadowLog
    audit: Audit

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query."""
        with map_errors({sa.exc.SQLAlchemyError: StoreUnavailable}), self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_store(url: str, *, statement_timeout_ms: int | None = None) -> Store:
    """Open the durable store at ``url``; the schema is managed by ``recloop db upgrade``.

    ``statement_timeout_ms`` bounds each statement on PostgreSQL (see ``create_sql_engine``);
    None: no limit.

    Raises:
        ConfigError: the URL's scheme is not one recloop supports.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"store_url: unsupported scheme {scheme!r}; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        )
    if scheme == "postgresql" and "+" not in url.split(":", 1)[0]:
        url = "postgresql+psycopg" + url[len("postgresql") :]
    engine = create_sql_engine(url, statement_timeout_ms=statement_timeout_ms)
    return Store(
        url=url,
        engine=engine,
        tenancy=SqlTenancy(engine),
        catalog=SqlCatalog(engine),
        users=SqlUsers(engine),
        events=SqlEventLog(engine),
        rec_log=SqlRecommendationLog(engine),
        suppressions=SqlSuppressions(engine),
        shadow_log=SqlShadowLog(engine),
        audit=SqlAudit(engine),
    )
