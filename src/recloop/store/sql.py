"""The durable store over SQLAlchemy Core: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping

from recloop.domain import (
    SUPPRESSING_EVENTS,
    CatalogEntry,
    Event,
    EventRecord,
    EventType,
    Feedback,
    Item,
    ItemStatus,
    RecommendationRecord,
    Scope,
    ServedItem,
    ShadowRecord,
    User,
)
from recloop.errors import RecloopError, StoreUnavailable, map_errors
from recloop.store import schema as t
from recloop.store.protocols import (
    ApiKeyRecord,
    AppendResult,
    AuditRecord,
    CatalogChange,
    CatalogCursor,
    SearchRecord,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# Driver failures that mean "the database is not there"; everything else is a bug or bad data.
_UNAVAILABLE: dict[type[BaseException], type[RecloopError]] = {
    sa_exc.OperationalError: StoreUnavailable,
    sa_exc.InterfaceError: StoreUnavailable,
    sa_exc.TimeoutError: StoreUnavailable,  # no pooled connection came free in time
}


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- rows and domain values, matched by name --------------------------------------------------
# A table's columns carry the names of the domain value's fields, so a row is built and read
# by name; only the columns stored in another form (enums, JSON, defaults) are spelled out.

D = TypeVar("D", bound="DataclassInstance")


@functools.cache
def _field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _written_columns(table: sa.Table) -> tuple[str, ...]:
    # An autoincrement key is the database's to fill.
    return tuple(c.name for c in table.columns if c.autoincrement is not True)


def _row(table: sa.Table, value: object, **given: Any) -> dict[str, Any]:
    """A value as a row of ``table``: each column from ``given``, else the attribute of its name."""
    row = {name: getattr(value, name) for name in _written_columns(table) if name not in given}
    row.update(given)
    return row


def _value(cls: type[D], row: RowMapping, **given: Any) -> D:
    """A domain value from a row: each field from ``given``, else the column of that name."""
    return cls(**{name: given[name] if name in given else row[name] for name in _field_names(cls)})


def create_sql_engine(url: str, *, statement_timeout_ms: int | None = None) -> Engine:
    """An engine for a store URL, with SQLite set up for concurrent, durable use (WAL).

    Args:
        url: the store's SQLAlchemy URL.
        statement_timeout_ms: PostgreSQL only: the server cancels any statement of this
            engine's connections that runs longer (the caller gets ``StoreUnavailable``).
            None or 0: no limit, as offline jobs (training, imports) want. SQLite has no
            such limit; its writers wait at most ``busy_timeout`` for a lock.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=16,
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before it returns, so an acknowledged event survives
            # a power cut, not only a crash of the process.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if statement_timeout_ms:
        connect_args["options"] = _with_statement_timeout(url, statement_timeout_ms)
    return sa.create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=10,
        max_overflow=20,
        # Calls stuck on a stalled server hold their connections; the next ones wait at
        # most this long for one, not the pool's default 30 s.
        pool_timeout=5,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def _with_statement_timeout(url: str, timeout_ms: int) -> str:
    """libpq's startup ``options`` with a statement timeout, after any the URL gives.

    A startup option rather than a ``SET`` per checkout: every pooled connection has it from
    its first statement, and the server enforces it even after this process has stopped
    waiting (a request past its deadline leaves its statement running until then).
    """
    if timeout_ms < 0:
        raise ValueError("statement_timeout_ms: must be at least 0")
    given = sa.engine.make_url(url).query.get("options")
    parts = [given] if isinstance(given, str) else list(given or ())
    parts.append(f"-c statement_timeout={int(timeout_ms)}")
    return " ".join(parts)


def _sqlite_timestamp(value: datetime) -> str:
    """A timestamp as SQLite's columns hold it: naive UTC text with microseconds, exactly
    as SQLAlchemy writes and reads it."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


#: The events table's written columns, in the order ``SqlEventLog._event_row`` gives them.
_EVENT_ROW = (
    "app_id",
    "event_id",
    "user_id",
    "item_id",
    "event_type",
    "value",
    "surface",
    "session_id",
    "device",
    "position",
    "request_id",
    "event_ts",
    "server_ts",
    "context",
    "query",
)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


def _sqlite_read_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _sqlite_read_json(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def _pg_read_timestamp(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _pg_read_json(value: Any) -> Any:
    return value  # psycopg decodes jsonb itself


_EVENT_TYPES = {kind.value: kind for kind in EventType}


class _SqlRole:
    """Shared plumbing: an engine, and transactions that translate driver failures."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # The driver's placeholder, for the statements that skip SQLAlchemy: the ones every
        # request or every followed event runs, where its per-row processing costs more than
        # the database does.
        postgres = engine.dialect.name == "postgresql"
        self._mark = "%s" if postgres else "?"
        # Values as the typed columns write and read them.
        self._timestamp: Any = _utc if postgres else _sqlite_timestamp
        self._read_timestamp: Any = _pg_read_timestamp if postgres else _sqlite_read_timestamp
        self._read_json: Any = _pg_read_json if postgres else _sqlite_read_json
        self._json_mark = "CAST(%s AS JSONB)" if postgres else "?"

    def _marks(self, n: int) -> str:
        """``n`` placeholders, comma-separated (an IN list)."""
        return ", ".join([self._mark] * n)

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with map_errors(_UNAVAILABLE), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with map_errors(_UNAVAILABLE), self._engine.connect() as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        """A dialect-specific INSERT, which has ``on_conflict_do_*``."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _one(self, key: sa.Column[str], app_id: str, value: str) -> RowMapping | None:
        """The app's row of the key column's table whose key is ``value``, if any."""
        table = key.table
        stmt = sa.select(table).where(table.c.app_id == app_id, key == value)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else row._mapping

    def _page(
        self, key: sa.Column[str], app_id: str, after: str | None, limit: int
    ) -> list[RowMapping]:
        """A page of the app's rows of the key column's table, in key order after ``after``."""
        table = key.table
        stmt = sa.select(table).where(table.c.app_id == app_id)
        if after is not None:
            stmt = stmt.where(key > after)
        stmt = stmt.order_by(key).limit(limit)
        with self._read() as conn:
            return [row._mapping for row in conn.execute(stmt)]


class SqlTenancy(_SqlRole):
    """Apps and API keys in SQL."""

    def create_app(self, app_id: str, name: str, now: datetime) -> bool:
        """Create an app; returns False when it already existed."""
        stmt = (
            self._insert(t.apps)
            .values(app_id=app_id, name=name, created_at=now)
            .on_conflict_do_nothing(index_elements=["app_id"])
            # RETURNING, not rowcount: psycopg reports -1 for an INSERT's rowcount here.
            .returning(t.apps.c.app_id)
        )
        with self._begin() as conn:
            return conn.execute(stmt).first() is not None

    def app_exists(self, app_id: str) -> bool:
        """Whether the app exists."""
        with self._read() as conn:
            row = conn.execute(sa.select(t.apps.c.app_id).where(t.apps.c.app_id == app_id))
            return row.first() is not None

    def add_key(self, record: ApiKeyRecord) -> None:
        """Store a new key (its hash only)."""
        with self._begin() as conn:
            conn.execute(
                t.api_keys.insert().values(
                    _row(t.api_keys, record, scopes=",".join(sorted(record.scopes)))
                )
            )

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key by its public id, revoked or not."""
        with self._read() as conn:
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.key_id == key_id)).first()
        return None if row is None else _key_from_row(row._mapping)

    def list_keys(self, app_id: str) -> list[ApiKeyRecord]:
        """All keys of an app."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.api_keys)
                .where(t.api_keys.c.app_id == app_id)
                .order_by(t.api_keys.c.created_at)
            )
            return [_key_from_row(row._mapping) for row in rows]

    def revoke_key(self, key_id: str, now: datetime) -> bool:
        """Revoke a key at ``now`` (which may lie ahead: a grace period); False when there
        was no such active key."""
        c = t.api_keys.c
        active = sa.or_(c.revoked_at.is_(None), c.revoked_at > datetime.now(UTC))
        with self._begin() as conn:
            result = conn.execute(
                t.api_keys.update().where(c.key_id == key_id, active).values(revoked_at=now)
            )
        return result.rowcount == 1

    def active_keys(self) -> list[ApiKeyRecord]:
        """Every key of every app that is not revoked (or whose revocation lies ahead)."""
        c = t.api_keys.c
        stmt = sa.select(t.api_keys).where(
            sa.or_(c.revoked_at.is_(None), c.revoked_at > datetime.now(UTC))
        )
        with self._read() as conn:
            return [_key_from_row(row._mapping) for row in conn.execute(stmt)]


def _key_from_row(row: RowMapping) -> ApiKeyRecord:
    scopes = frozenset(Scope(s) for s in row["scopes"].split(",") if s)
    return _value(ApiKeyRecord, row, scopes=scopes)


class SqlCatalog(_SqlRole):
    """Items in SQL."""

    def upsert_items(self, app_id: str, items: Sequence[Item], now: datetime) -> None:
        """Insert or replace items; ``updated_at`` becomes ``now``.

        ``created_at`` is kept from the first store unless the item carries its own.
        """
        if not items:
            return
        # PostgreSQL refuses to upsert one key twice in a statement: the last one wins.
        unique = list({item.item_id: item for item in items}.values())
        with self._begin() as conn:
            for keeps_created in (True, False):
                rows = [
                    _row(
                        t.items,
                        item,
                        app_id=app_id,
                        tags=list(item.tags),
                        status=item.status.value,
                        created_at=item.created_at or now,
                        updated_at=now,
                    )
                    for item in unique
                    if (item.created_at is None) == keeps_created
                ]
                if not rows:
                    continue
                stmt = self._insert(t.items)
                fixed = (
                    {"app_id", "item_id", "created_at"} if keeps_created else {"app_id", "item_id"}
                )
                updated = {name: stmt.excluded[name] for name in rows[0] if name not in fixed}
                stmt = stmt.on_conflict_do_update(
                    index_elements=["app_id", "item_id"], set_=updated
                )
                conn.execute(stmt, rows)

    def get_item(self, app_id: str, item_id: str) -> Item | None:
        """One item, whatever its status."""
        row = self._one(t.items.c.item_id, app_id, item_id)
        return None if row is None else _item_from_row(row)

    def delete_item(self, app_id: str, item_id: str) -> bool:
        """Delete an item; returns False when it did not exist."""
        with self._begin() as conn:
            result = conn.execute(
                t.items.delete().where(t.items.c.app_id == app_id, t.items.c.item_id == item_id)
            )
        return result.rowcount == 1

    def active_entries(self, app_id: str, item_ids: Collection[str]) -> dict[str, CatalogEntry]:
        """The subset of ``item_ids`` that exist and are active: the servable ones."""
        if not item_ids:
            return {}
        ids = list(item_ids)
        m = self._mark
        sql = (
            "SELECT item_id, category, creator_id FROM items "
            f"WHERE app_id = {m} AND item_id IN ({self._marks(len(ids))}) AND status = {m}"
        )
        with self._read() as conn:
            rows = conn.exec_driver_sql(sql, (app_id, *ids, ItemStatus.ACTIVE.value)).fetchall()
        return {
            item_id: CatalogEntry(item_id, category, creator) for item_id, category, creator in rows
        }

    def changes_since(self, after: CatalogCursor | None, limit: int) -> list[CatalogChange]:
        """Items of every app changed after a cursor, in cursor order, for caches to follow."""
        c = t.items.c
        # is_active is read from the status column; every other field from its own.
        stmt = sa.select(c.status, *(c[n] for n in _field_names(CatalogChange) if n != "is_active"))
        if after is not None:
            # A batch upsert gives many rows one updated_at; the full key keeps paging exact.
            stmt = stmt.where(sa.tuple_(c.updated_at, c.app_id, c.item_id) > sa.tuple_(*after))
        stmt = stmt.order_by(c.updated_at, c.app_id, c.item_id).limit(limit)
        with self._read() as conn:
            return [
                _value(CatalogChange, row._mapping, is_active=row.status == ItemStatus.ACTIVE.value)
                for row in conn.execute(stmt)
            ]

    def count_items(self, app_id: str) -> int:
        """How many items the app has, of any status."""
        with self._read() as conn:
            stmt = sa.select(sa.func.count()).select_from(t.items).where(t.items.c.app_id == app_id)
            return int(conn.execute(stmt).scalar_one())

    def scan_items(self, app_id: str, after_item_id: str | None, limit: int) -> list[Item]:
        """A page of the app's items, of any status, in item_id order after ``after_item_id``."""
        page = self._page(t.items.c.item_id, app_id, after_item_id, limit)
        return [_item_from_row(row) for row in page]


def _item_from_row(m: RowMapping) -> Item:
    return _value(Item, m, tags=tuple(m["tags"]), status=ItemStatus(m["status"]))


class SqlUsers(_SqlRole):
    """Users in SQL, and the purge that removes everything about one."""

    def upsert_users(self, app_id: str, users: Sequence[User], now: datetime) -> None:
        """Insert or replace users' attributes."""
        if not users:
            return
        rows = [
            _row(t.users, user, app_id=app_id, created_at=user.created_at or now, updated_at=now)
            for user in {user.user_id: user for user in users}.values()
        ]
        stmt = self._insert(t.users)
        stmt = stmt.on_conflict_do_update(
            index_elements=["app_id", "user_id"],
            set_={"attributes": stmt.excluded.attributes, "updated_at": stmt.excluded.updated_at},
        )
        with self._begin() as conn:
            conn.execute(stmt, rows)

    def get_user(self, app_id: str, user_id: str) -> User | None:
        """One user."""
        row = self._one(t.users.c.user_id, app_id, user_id)
        return None if row is None else _value(User, row)

    def purge_user(self, app_id: str, user_id: str) -> bool:
        """Delete the user with their events, logs and suppressions; False when none existed."""
        with self._begin() as conn:
            return _purge(conn, app_id, user_id) > 0

    def forget_user(
        self, app_id: str, user_id: str, actor: str, now: datetime
    ) -> tuple[str, ...] | None:
        """``purge_user`` and its ``user.delete`` audit entry in one transaction; the
        user's session ids (for what else holds them), or None when nothing was stored."""
        c = t.events.c
        with self._begin() as conn:
            sessions = tuple(
                sorted(
                    conn.execute(
                        sa.select(c.session_id)
                        .where(c.app_id == app_id, c.user_id == user_id, c.session_id.is_not(None))
                        .distinct()
                    ).scalars()
                )
            )
            if _purge(conn, app_id, user_id) == 0:
                return None
            _audit(conn, app_id, actor, USER_DELETE, user_id, now, {"sessions": list(sessions)})
        return sessions

    def scan_users(self, app_id: str, after_user_id: str | None, limit: int) -> list[User]:
        """A page of the app's users in user_id order after ``after_user_id``."""
        page = self._page(t.users.c.user_id, app_id, after_user_id, limit)
        return [_value(User, row) for row in page]


def _purge(conn: Connection, app_id: str, user_id: str) -> int:
    """Delete everything stored about one user; how many rows went."""
    deleted = 0
    for table in (t.events, t.recommendation_log, t.shadow_log, t.suppressions, t.users):
        result = conn.execute(
            table.delete().where(table.c.app_id == app_id, table.c.user_id == user_id)
        )
        deleted += result.rowcount
    return deleted


#: The audit action of a user's deletion.
USER_DELETE = "user.delete"


def _audit(
    conn: Connection,
    app_id: str,
    actor: str,
    action: str,
    subject: str,
    now: datetime,
    detail: Mapping[str, Any] | None,
) -> None:
    """Append one audit entry inside the caller's transaction."""
    conn.execute(
        t.audit_log.insert().values(
            app_id=app_id,
            at=now,
            actor=actor,
            action=action,
            subject=subject,
            detail=dict(detail or {}),
        )
    )


class SqlAudit(_SqlRole):
    """The audit log in SQL."""

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
        with self._begin() as conn:
            _audit(conn, app_id, actor, action, subject, now, detail)

    def since(self, after_seq: int, limit: int, action: str | None = None) -> list[AuditRecord]:
        """Entries with ``seq > after_seq`` in order (of one action when given)."""
        c = t.audit_log.c
        stmt = sa.select(t.audit_log).where(c.seq > after_seq)
        if action is not None:
            stmt = stmt.where(c.action == action)
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(c.seq).limit(limit))
            return [_value(AuditRecord, row._mapping) for row in rows]


class SqlEventLog(_SqlRole):
    """Events in SQL: append-only, idempotent on (app_id, event_id).

    Appends skip SQLAlchemy's per-row parameter processing: the driver gets one constant
    statement and plain tuples (a third of the cost of an event's commit), built here in the
    same forms the typed columns write, which reads check (``tests/integration``).
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        columns = _written_columns(t.events)
        if columns != _EVENT_ROW:
            raise RuntimeError("the events table changed: update SqlEventLog._event_row")
        marks = [self._json_mark if c == "context" else self._mark for c in columns]
        names = ", ".join(f'"{c}"' for c in columns)
        self._names = names
        self._insert_events = (
            f"INSERT INTO events ({names}) VALUES ({', '.join(marks)}) "
            "ON CONFLICT (app_id, event_id) DO NOTHING"
        )

    def _event_row(self, e: Event) -> tuple[Any, ...]:
        """An event as the insert's parameters, in ``_EVENT_ROW`` order."""
        stamp = self._timestamp
        return (
            e.app_id,
            e.event_id,
            e.user_id,
            e.item_id,
            e.event_type.value,
            e.value,
            e.surface,
            e.session_id,
            e.device,
            e.position,
            e.request_id,
            stamp(e.event_ts),
            stamp(e.server_ts),
            _json_dumps(e.context),
            e.query,
        )

    def append(self, events: Sequence[Event]) -> AppendResult:
        """Store events durably in one transaction; repeated ids are stored once."""
        unique: dict[tuple[str, str], Event] = {}
        for event in events:
            unique.setdefault((event.app_id, event.event_id), event)
        if not unique:
            return AppendResult(frozenset())
        # Which keys exist already, then a plain multi-row insert that skips conflicts. The
        # insert has constant SQL (executemany), which both drivers run far faster than one
        # statement with a RETURNING row per event; ON CONFLICT still guarantees one copy if
        # another process races us, at worst miscounting that event as new.
        c = t.events.c
        by_app: dict[str, list[str]] = {}
        for app_id, event_id in unique:
            by_app.setdefault(app_id, []).append(event_id)
        # Feedback sent as an event suppresses the item in the same transaction, so a stored
        # "not interested" can never be missing from the next request's exclusions.
        suppress = [
            {
                "app_id": e.app_id,
                "user_id": e.user_id,
                "item_id": e.item_id,
                "reason": SUPPRESSING_EVENTS[e.event_type].value,
                "created_at": e.server_ts,
            }
            for e in unique.values()
            if e.event_type in SUPPRESSING_EVENTS and e.item_id is not None
        ]
        with self._begin() as conn:
            existing = {
                (app_id, event_id)
                for app_id, ids in by_app.items()
                for event_id in conn.execute(
                    sa.select(c.event_id).where(c.app_id == app_id, c.event_id.in_(ids))
                ).scalars()
            }
            inserted = [key for key in unique if key not in existing]
            if inserted:
                conn.exec_driver_sql(
                    self._insert_events, [self._event_row(unique[key]) for key in inserted]
                )
            if suppress:
                conn.execute(
                    self._insert(t.suppressions).on_conflict_do_nothing(
                        index_elements=["app_id", "user_id", "item_id"]
                    ),
                    suppress,
                )
        return AppendResult(frozenset(inserted))

    def read_since(self, after_seq: int, limit: int) -> list[EventRecord]:
        """Events of every app with ``seq > after_seq`` in arrival order."""
        # Read by every process on every refresh: plain driver rows, converted here.
        m = self._mark
        sql = (
            "SELECT seq, app_id, item_id, event_type, event_ts FROM events "
            f"WHERE seq > {m} ORDER BY seq LIMIT {m}"
        )
        stamp, types = self._read_timestamp, _EVENT_TYPES
        with self._read() as conn:
            rows = conn.exec_driver_sql(sql, (after_seq, limit)).fetchall()
        return [
            EventRecord(seq, app_id, item_id, types[event_type], stamp(ts))
            for seq, app_id, item_id, event_type, ts in rows
        ]

    def consumed_item_ids(
        self, app_id: str, user_id: str, event_types: Collection[str]
    ) -> set[str]:
        """Items the user has had an event of one of ``event_types`` with."""
        return {item_id for item_id, _ in self.engagement_history(app_id, user_id, event_types)}

    def engagement_history(
        self, app_id: str, user_id: str, event_types: Collection[str]
    ) -> list[tuple[str, str | None]]:
        """(item, session) of the user's events of ``event_types``, most recent first."""
        types = list(event_types)
        if not types:
            return []
        m = self._mark
        # Neither DISTINCT nor "item_id IS NOT NULL" here: either one steers SQLite's planner
        # to the (app, item) index and a scan of every event; (app, user, ts) is the right one.
        sql = (
            "SELECT item_id, session_id FROM events "
            f"WHERE app_id = {m} AND user_id = {m} AND event_type IN ({self._marks(len(types))}) "
            "ORDER BY event_ts DESC, seq DESC"
        )
        with self._read() as conn:
            rows = conn.exec_driver_sql(sql, (app_id, user_id, *types)).fetchall()
        return [(item_id, session_id) for item_id, session_id in rows if item_id is not None]

    def recent_searches(self, app_id: str, user_id: str, limit: int) -> list[SearchRecord]:
        """The user's latest ``limit`` searches that carry a query, most recent first."""
        if limit <= 0:
            return []
        params = {"app_id": app_id, "user_id": user_id, "limit": limit}
        with self._read() as conn:
            return [
                SearchRecord(row.query, row.session_id, row.event_ts)
                for row in conn.execute(_RECENT_SEARCHES, params)
            ]

    def get_events(self, app_id: str, event_ids: Collection[str]) -> dict[str, Event]:
        """The stored events of these ids, by id (absent ids are left out)."""
        if not event_ids:
            return {}
        c = t.events.c
        stmt = sa.select(t.events).where(c.app_id == app_id, c.event_id.in_(list(event_ids)))
        with self._read() as conn:
            rows = conn.execute(stmt).fetchall()
        return {
            row.event_id: _value(Event, row._mapping, event_type=EventType(row.event_type))
            for row in rows
        }

    def count(self, app_id: str) -> int:
        """How many events the app has."""
        stmt = sa.select(sa.func.count()).select_from(t.events).where(t.events.c.app_id == app_id)
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

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
        # Followed by every process's materializer and live overlay: plain driver rows.
        m = self._mark
        where = [f"seq > {m}"]
        params: list[Any] = [after_seq]
        if app_id is not None:
            where.append(f"app_id = {m}")
            params.append(app_id)
        if received_since is not None:
            where.append(f"server_ts >= {m}")
            params.append(self._timestamp(received_since))
        params.append(limit)
        sql = (
            f"SELECT seq, {self._names} FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY seq LIMIT {m}"
        )
        stamp, json, types = self._read_timestamp, self._read_json, _EVENT_TYPES
        with self._read() as conn:
            rows = conn.exec_driver_sql(sql, tuple(params)).fetchall()
        return [
            (
                seq,
                Event(
                    app_id=app,
                    event_id=event_id,
                    user_id=user_id,
                    event_type=types[event_type],
                    event_ts=stamp(event_ts),
                    server_ts=stamp(server_ts),
                    item_id=item_id,
                    value=value,
                    surface=surface,
                    session_id=session_id,
                    device=device,
                    position=position,
                    request_id=request_id,
                    context=json(context),
                    query=query,
                ),
            )
            for (
                seq,
                app,
                event_id,
                user_id,
                item_id,
                event_type,
                value,
                surface,
                session_id,
                device,
                position,
                request_id,
                event_ts,
                server_ts,
                context,
                query,
            ) in rows
        ]


# Built once: this runs on every suggestion request, and building a select costs more than
# SQLite takes to run it. The (app, user, ts) index serves the filter, the order and the
# limit (no index on query could steer the planner away from it).
_RECENT_SEARCHES = (
    sa.select(t.events.c.query, t.events.c.session_id, t.events.c.event_ts)
    .where(
        t.events.c.app_id == sa.bindparam("app_id"),
        t.events.c.user_id == sa.bindparam("user_id"),
        t.events.c.event_type == "search",
        t.events.c.query.is_not(None),
    )
    .order_by(t.events.c.event_ts.desc(), t.events.c.seq.desc())
    .limit(sa.bindparam("limit"))
)


#: The served-list log's columns, in the order ``SqlRecommendationLog.append`` gives them.
_LIST_ROW = (
    "request_id",
    "app_id",
    "user_id",
    "surface",
    "served_at",
    "items",
    "model_version",
    "experiment",
    "variant",
    "fallback",
    "latency_ms",
    "session_id",
    "device",
)


class SqlRecommendationLog(_SqlRole):
    """Served lists in SQL, one row per request."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        if _written_columns(t.recommendation_log) != _LIST_ROW:
            raise RuntimeError("the recommendation_log table changed: update its append")
        marks = [self._json_mark if c == "items" else self._mark for c in _LIST_ROW]
        names = ", ".join(f'"{c}"' for c in _LIST_ROW)
        self._insert_lists = f"INSERT INTO recommendation_log ({names}) VALUES ({', '.join(marks)})"

    def append(self, records: Sequence[RecommendationRecord]) -> None:
        """Store served lists in one transaction."""
        if not records:
            return
        # Every served list: plain driver rows, built in the forms the typed columns write.
        stamp = self._timestamp
        rows = [
            (
                r.request_id,
                r.app_id,
                r.user_id,
                r.surface,
                stamp(r.served_at),
                _json_dumps(_items_json(r.items)),
                r.model_version,
                r.experiment,
                r.variant,
                r.fallback,
                r.latency_ms,
                r.session_id,
                r.device,
            )
            for r in records
        ]
        with self._begin() as conn:
            conn.exec_driver_sql(self._insert_lists, rows)

    def get(self, app_id: str, request_id: str) -> RecommendationRecord | None:
        """One served list by its request id."""
        row = self._one(t.recommendation_log.c.request_id, app_id, request_id)
        return None if row is None else _record_from_row(row)

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
        c = t.recommendation_log.c
        stmt = sa.select(c["items"]).where(  # c.items is the column collection's own method
            c.app_id == app_id, c.user_id == user_id, c.served_at >= since
        )
        if until is not None:
            stmt = stmt.where(c.served_at < until)
        if surface is not None:
            stmt = stmt.where(c.surface == surface)
        stmt = stmt.order_by(c.served_at.desc()).limit(limit)
        counts: dict[str, int] = {}
        with self._read() as conn:
            for (items,) in conn.execute(stmt):
                for served in items:
                    counts[served["itemId"]] = counts.get(served["itemId"], 0) + 1
        return counts

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
        c = t.recommendation_log.c
        stmt = sa.select(t.recommendation_log)
        if after is not None:
            stmt = stmt.where(c.request_id > after)
        if app_id is not None:
            stmt = stmt.where(c.app_id == app_id)
        if served_since is not None:
            stmt = stmt.where(c.served_at >= served_since)
        stmt = stmt.order_by(c.request_id).limit(limit)
        with self._read() as conn:
            return [_record_from_row(row._mapping) for row in conn.execute(stmt)]


def _record_from_row(m: RowMapping) -> RecommendationRecord:
    return _value(RecommendationRecord, m, items=_items_from_json(m["items"]))


def _items_json(items: Sequence[ServedItem]) -> list[dict[str, Any]]:
    return [
        {
            "itemId": s.item_id,
            "position": s.position,
            "score": s.score,
            "source": s.source,
            "propensity": s.propensity,
            **({"sourceScores": dict(s.source_scores)} if s.source_scores else {}),
            **({"team": s.team} if s.team is not None else {}),
        }
        for s in items
    ]


def _items_from_json(items: Sequence[dict[str, Any]]) -> tuple[ServedItem, ...]:
    return tuple(
        ServedItem(
            s["itemId"],
            s["position"],
            s["score"],
            s["source"],
            s["propensity"],
            tuple(s.get("sourceScores", {}).items()),
            s.get("team"),
        )
        for s in items
    )


def _with_support(
    items: list[dict[str, Any]], support: Sequence[float] | None
) -> list[dict[str, Any]]:
    if support is None:
        return items
    return [item | {"support": p} for item, p in zip(items, support, strict=True)]


class SqlShadowLog(_SqlRole):
    """Shadow lists in SQL, one row per (served request, shadow)."""

    def append(self, records: Sequence[ShadowRecord]) -> None:
        """Store shadow lists in one transaction."""
        if not records:
            return
        rows = [
            _row(t.shadow_log, r, items=_with_support(_items_json(r.items), r.support))
            for r in records
        ]
        with self._begin() as conn:
            conn.execute(t.shadow_log.insert(), rows)

    def scan(self, app_id: str, shadow: str, after: str | None, limit: int) -> list[ShadowRecord]:
        """One shadow's lists in request_id order after the request id ``after``."""
        c = t.shadow_log.c
        stmt = sa.select(t.shadow_log).where(c.app_id == app_id, c.shadow == shadow)
        if after is not None:
            stmt = stmt.where(c.request_id > after)
        stmt = stmt.order_by(c.request_id).limit(limit)
        with self._read() as conn:
            return [_shadow_from_row(row._mapping) for row in conn.execute(stmt)]


def _shadow_from_row(m: RowMapping) -> ShadowRecord:
    # The support is kept beside each item in the items' JSON, not in a column of its own.
    items = m["items"]
    has_support = bool(items) and all("support" in i for i in items)
    support = tuple(i["support"] for i in items) if has_support else None
    return _value(ShadowRecord, m, items=_items_from_json(items), support=support)


class SqlSuppressions(_SqlRole):
    """Suppressed (user, item) pairs in SQL."""

    def add(self, app_id: str, entries: Sequence[tuple[str, str, Feedback]], now: datetime) -> None:
        """Suppress (user_id, item_id) pairs for a reason; repeats keep the first."""
        if not entries:
            return
        rows = [
            {
                "app_id": app_id,
                "user_id": user_id,
                "item_id": item_id,
                "reason": reason.value,
                "created_at": now,
            }
            for user_id, item_id, reason in entries
        ]
        stmt = self._insert(t.suppressions).on_conflict_do_nothing(
            index_elements=["app_id", "user_id", "item_id"]
        )
        with self._begin() as conn:
            conn.execute(stmt, rows)

    def item_ids(self, app_id: str, user_id: str) -> set[str]:
        """The items suppressed for a user."""
        m = self._mark
        sql = f"SELECT item_id FROM suppressions WHERE app_id = {m} AND user_id = {m}"
        with self._read() as conn:
            return {item_id for (item_id,) in conn.exec_driver_sql(sql, (app_id, user_id))}
