"""Immutable Parquet snapshots of one app's events, served lists, items and users."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recloop.domain import Event, Item, RecommendationRecord, ServedItem, User
from recloop.errors import SchemaOutOfDate, SnapshotExists, SnapshotRefused
from recloop.store import Store
from recloop.store.durable import fsync_path, fsync_tree
from recloop.store.migrate import current_revision, require_current

#: The tables of a snapshot, in the order they are written.
TABLES: tuple[str, ...] = ("events", "recommendation_log", "items", "users")
#: Tables written as ``<name>/date=YYYY-MM-DD/part-N.parquet``; the others as ``<name>.parquet``.
PARTITIONED: frozenset[str] = frozenset({"events", "recommendation_log"})
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
PAGE_SIZE = 10_000

#: Called with a table's name and how many more of its rows were written.
ProgressCallback = Callable[[str, int], None]

_TS = pa.timestamp("us", tz="UTC")

K = TypeVar("K")
V = TypeVar("V")

EVENTS_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("app_id", pa.string()),
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("value", pa.float64()),
        ("surface", pa.string()),
        ("session_id", pa.string()),
        ("device", pa.string()),
        ("position", pa.int32()),
        ("request_id", pa.string()),
        ("event_ts", _TS),
        ("server_ts", _TS),
        ("context", pa.string()),  # JSON text, or null
        ("query", pa.string()),  # a search's query; null for other events
    ]
)

SERVED_ITEM_TYPE = pa.struct(
    [
        ("itemId", pa.string()),
        ("position", pa.int32()),
        ("score", pa.float64()),
        ("source", pa.string()),
        ("propensity", pa.float64()),
        ("sourceScores", pa.string()),  # JSON {source: normalised score}, or null
    ]
)

RECOMMENDATION_LOG_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("app_id", pa.string()),
        ("user_id", pa.string()),
        ("surface", pa.string()),
        ("served_at", _TS),
        ("items", pa.list_(SERVED_ITEM_TYPE)),
        ("model_version", pa.string()),
        ("experiment", pa.string()),
        ("variant", pa.string()),
        ("fallback", pa.bool_()),
        ("latency_ms", pa.float64()),
        ("session_id", pa.string()),
        ("device", pa.string()),
    ]
)

ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("type", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("category", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("creator_id", pa.string()),
        ("locale", pa.string()),
        ("status", pa.string()),
        ("created_at", _TS),
        ("updated_at", _TS),
        ("metadata", pa.string()),  # JSON text
    ]
)

USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("attributes", pa.string()),  # JSON text
        ("created_at", _TS),
        ("updated_at", _TS),
    ]
)

IMPRESSIONS_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("user_id", pa.string()),
        ("surface", pa.string()),
        ("served_at", _TS),
        ("session_id", pa.string()),
        ("device", pa.string()),
        ("item_id", pa.string()),
        ("position", pa.int32()),
        ("score", pa.float64()),
        ("source", pa.string()),
        ("propensity", pa.float64()),
        ("source_scores", pa.string()),
        ("model_version", pa.string()),
        ("variant", pa.string()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "events": EVENTS_SCHEMA,
    "recommendation_log": RECOMMENDATION_LOG_SCHEMA,
    "items": ITEMS_SCHEMA,
    "users": USERS_SCHEMA,
}

# The order rows are read back in, whatever order the files were listed in.
_SORT_KEYS: dict[str, list[tuple[str, str]]] = {
    "events": [("seq", "ascending")],
    "recommendation_log": [("served_at", "ascending"), ("request_id", "ascending")],
    "items": [("item_id", "ascending")],
    "users": [("user_id", "ascending")],
}


@dataclass(frozen=True)
class SnapshotManifest:
    """What a snapshot holds; written last, so a directory without one is half-written."""

    version: str
    app_id: str
    created_at: datetime
    row_counts: Mapping[str, int]
    max_event_seq: int
    min_event_ts: datetime
    max_event_ts: datetime
    schema_revision: str
    format_version: int = FORMAT_VERSION

    def as_dict(self) -> dict[str, Any]:
        """The manifest as JSON-serialisable data (timestamps in ISO 8601)."""
        return {
            "version": self.version,
            "app_id": self.app_id,
            "created_at": self.created_at.isoformat(),
            "row_counts": dict(self.row_counts),
            "max_event_seq": self.max_event_seq,
            "min_event_ts": self.min_event_ts.isoformat(),
            "max_event_ts": self.max_event_ts.isoformat(),
            "schema_revision": self.schema_revision,
            "format_version": self.format_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SnapshotManifest:
        """Read a manifest written by :meth:`as_dict`."""
        return cls(
            version=str(data["version"]),
            app_id=str(data["app_id"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            row_counts={str(k): int(v) for k, v in data["row_counts"].items()},
            max_event_seq=int(data["max_event_seq"]),
            min_event_ts=datetime.fromisoformat(data["min_event_ts"]),
            max_event_ts=datetime.fromisoformat(data["max_event_ts"]),
            schema_revision=str(data["schema_revision"]),
            format_version=int(data.get("format_version", FORMAT_VERSION)),
        )


@dataclass(frozen=True)
class Snapshot:
    """A finished snapshot on disk: its manifest, and its tables as Arrow or a DuckDB glob."""

    path: Path
    manifest: SnapshotManifest

    @property
    def version(self) -> str:
        """The snapshot's id, also its directory's name."""
        return self.manifest.version

    def table(self, name: str) -> pa.Table:
        """One table (events, recommendation_log, items or users), in its natural order.

        Events come in seq order, served lists by served_at then request_id, items and users by
        their id. The ``date`` partition column is not part of the result.
        """
        schema = _schema_of(name)
        if name in PARTITIONED:
            files = sorted(str(p) for p in (self.path / name).rglob("*.parquet"))
            if not files:
                return schema.empty_table()
            table = ds.dataset(files, schema=schema, format="parquet").to_table()
        else:
            table = pq.read_table(self.path / f"{name}.parquet", schema=schema)
        return table.sort_by(_SORT_KEYS[name])

    def impressions(self) -> pa.Table:
        """The recommendation log exploded to one row per served item, in serving order."""
        log = self.table("recommendation_log")
        served = log.column("items").combine_chunks()
        parents = pc.list_parent_indices(served)
        flat = pc.list_flatten(served)
        rows = log.take(parents)
        columns = {
            name: rows.column(name)
            for name in ("request_id", "user_id", "surface", "served_at", "session_id", "device")
        }
        columns["item_id"] = flat.field("itemId")
        for name in ("position", "score", "source", "propensity"):
            columns[name] = flat.field(name)
        columns["source_scores"] = flat.field("sourceScores")
        columns["model_version"] = rows.column("model_version")
        columns["variant"] = rows.column("variant")
        return pa.table(columns, schema=IMPRESSIONS_SCHEMA)

    def glob(self, name: str) -> str:
        """A path (glob) DuckDB's ``read_parquet`` reads the table from.

        Partitioned tables match ``<name>/date=*/part-*.parquet`` (DuckDB adds ``date`` as a
        hive column); an empty partitioned table has no files at all.
        """
        _schema_of(name)
        if name in PARTITIONED:
            return str(self.path / name / "**" / "*.parquet")
        return str(self.path / f"{name}.parquet")


def take_snapshot(
    store: Store,
    root: Path,
    *,
    app_id: str,
    now: datetime,
    page_size: int = PAGE_SIZE,
    on_progress: ProgressCallback | None = None,
) -> Snapshot:
    """Export one app's events, served lists, items and users to a new snapshot under ``root``.

    The store is read page by page and written as it is read, so memory stays bounded by a
    page and the Parquet writer's buffers, whatever the size of the app. Everything is written
    to a hidden directory beside the target and renamed into place once complete.

    Raises:
        SnapshotRefused: the store's schema is not at the newest migration, the app does not
            exist or has no events, or a snapshot with the same version exists already.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    check_snapshot(store, app_id)
    revision = current_revision(store.engine) or ""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        events = _EventStats()
        _write_partitioned(
            staging / "events",
            EVENTS_SCHEMA,
            "event_ts",
            _event_batches(store, app_id, page_size, events, on_progress),
        )
        if events.count == 0:
            raise SnapshotRefused(f"nothing to snapshot: app {app_id!r} has no events")
        assert events.min_ts is not None
        assert events.max_ts is not None
        counts = {"events": events.count}
        counts["recommendation_log"] = _write_partitioned(
            staging / "recommendation_log",
            RECOMMENDATION_LOG_SCHEMA,
            "served_at",
            _log_batches(store, app_id, page_size, on_progress),
        )
        counts["items"] = _write_file(
            staging / "items.parquet", ITEMS_SCHEMA, _item_batches(store, app_id, page_size)
        )
        _report(on_progress, "items", counts["items"])
        counts["users"] = _write_file(
            staging / "users.parquet", USERS_SCHEMA, _user_batches(store, app_id, page_size)
        )
        _report(on_progress, "users", counts["users"])
        manifest = SnapshotManifest(
            version=_version(now, counts, events.max_seq),
            app_id=app_id,
            created_at=now,
            row_counts=counts,
            max_event_seq=events.max_seq,
            min_event_ts=events.min_ts,
            max_event_ts=events.max_ts,
            schema_revision=revision,
        )
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest.as_dict(), indent=2) + "\n")
        fsync_tree(staging)
        target = root / manifest.version
        if target.exists():
            raise SnapshotExists(manifest.version)
        try:
            os.rename(staging, target)
        except OSError as exc:  # another writer took the name between the check and now
            raise SnapshotExists(manifest.version) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_path(root)
    return Snapshot(target, manifest)


def check_snapshot(store: Store, app_id: str) -> None:
    """Refuse early what :func:`take_snapshot` would refuse before writing anything.

    Raises:
        SnapshotRefused: the store's schema is not at the newest migration, or the app does
            not exist or has no events.
    """
    try:
        require_current(store.engine)
    except SchemaOutOfDate as exc:
        raise SnapshotRefused(
            f"store schema is not at the newest migration (half-written or half-migrated): {exc}"
        ) from exc
    if not store.tenancy.app_exists(app_id):
        raise SnapshotRefused(f"unknown app {app_id!r}")
    if store.events.count(app_id) == 0:
        raise SnapshotRefused(f"nothing to snapshot: app {app_id!r} has no events")


def open_snapshot(path: Path) -> Snapshot:
    """Open a finished snapshot.

    Raises:
        SnapshotRefused: the directory does not exist, or has no readable manifest.json (a
            half-written snapshot, or not a snapshot at all).
    """
    if not path.is_dir():
        raise SnapshotRefused(f"no snapshot at {path}")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise SnapshotRefused(
            f"{path} has no {MANIFEST_NAME}: a half-written snapshot, or not a snapshot"
        )
    try:
        manifest = SnapshotManifest.from_dict(json.loads(manifest_path.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotRefused(f"{manifest_path} is not a valid manifest: {exc}") from exc
    return Snapshot(path, manifest)


def list_snapshots(root: Path) -> list[Snapshot]:
    """The finished snapshots under ``root``, newest first; half-written ones are skipped."""
    if not root.is_dir():
        return []
    found = [
        open_snapshot(child)
        for child in root.iterdir()
        if child.is_dir() and not child.name.startswith(".") and (child / MANIFEST_NAME).is_file()
    ]
    return sorted(found, key=lambda s: (s.manifest.created_at, s.version), reverse=True)


# --- writing ---------------------------------------------------------------------------------


@dataclass
class _EventStats:
    count: int = 0
    max_seq: int = 0
    min_ts: datetime | None = None
    max_ts: datetime | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        self.count += batch.num_rows
        self.max_seq = max(self.max_seq, int(pc.max(batch.column("seq")).as_py()))
        bounds = pc.min_max(batch.column("event_ts"))
        low = bounds["min"].as_py().astimezone(UTC)
        high = bounds["max"].as_py().astimezone(UTC)
        self.min_ts = low if self.min_ts is None else min(self.min_ts, low)
        self.max_ts = high if self.max_ts is None else max(self.max_ts, high)


def _schema_of(name: str) -> pa.Schema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; one of {', '.join(TABLES)}") from None


def _report(on_progress: ProgressCallback | None, table: str, rows: int) -> None:
    if on_progress is not None:
        on_progress(table, rows)


def _version(now: datetime, counts: Mapping[str, int], max_seq: int) -> str:
    digest = hashlib.sha256(
        json.dumps({"max_event_seq": max_seq, "row_counts": dict(counts)}, sort_keys=True).encode()
    ).hexdigest()
    return f"{now:%Y%m%dT%H%M%SZ}-{digest[:8]}"


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _write_partitioned(
    directory: Path, schema: pa.Schema, ts_column: str, batches: Iterator[pa.RecordBatch]
) -> int:
    """Write batches to hive partitions by the UTC date of ``ts_column``; returns the rows."""
    directory.mkdir()
    written = 0
    partitioned = schema.append(pa.field("date", pa.string()))

    def with_date() -> Iterator[pa.RecordBatch]:
        nonlocal written
        for batch in batches:
            written += batch.num_rows
            date = batch.column(ts_column).cast(pa.date32()).cast(pa.string())
            yield pa.RecordBatch.from_arrays([*batch.columns, date], schema=partitioned)

    ds.write_dataset(
        with_date(),
        directory,
        schema=partitioned,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
        basename_template="part-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        # No min_rows_per_group: it would buffer every date's rows until the end when there
        # are many dates. Each page's slice of a date becomes a row group of its own instead.
        max_open_files=512,
    )
    return written


def _write_file(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    written = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            written += batch.num_rows
    return written


def _pages(scan: Callable[[K], list[V]], after: K, key: Callable[[V], K]) -> Iterator[list[V]]:
    """Every page of a keyset scan, each read after the key of the previous page's last row."""
    while page := scan(after):
        after = key(page[-1])
        yield page


def _event_batches(
    store: Store,
    app_id: str,
    page_size: int,
    stats: _EventStats,
    on_progress: ProgressCallback | None,
) -> Iterator[pa.RecordBatch]:
    scan = functools.partial(store.events.scan, limit=page_size, app_id=app_id)
    for page in _pages(scan, 0, lambda row: row[0]):
        batch = _events_batch(page)
        stats.add(batch)
        _report(on_progress, "events", batch.num_rows)
        yield batch


def _batch(schema: pa.Schema, rows: Sequence[object], **given: list[Any]) -> pa.RecordBatch:
    """A batch of ``schema``: each column from ``given``, else the rows' attribute of its name."""
    return pa.RecordBatch.from_pydict(
        {
            name: given[name] if name in given else [getattr(row, name) for row in rows]
            for name in schema.names
        },
        schema=schema,
    )


def _events_batch(page: list[tuple[int, Event]]) -> pa.RecordBatch:
    events = [event for _, event in page]
    return _batch(
        EVENTS_SCHEMA,
        events,
        seq=[seq for seq, _ in page],
        event_type=[e.event_type.value for e in events],
        context=[_json_text(e.context) for e in events],
    )


def _log_batches(
    store: Store, app_id: str, page_size: int, on_progress: ProgressCallback | None
) -> Iterator[pa.RecordBatch]:
    scan = functools.partial(store.rec_log.scan, limit=page_size, app_id=app_id)
    for page in _pages(scan, None, lambda record: record.request_id):
        _report(on_progress, "recommendation_log", len(page))
        yield _log_batch(page)


def _log_batch(page: list[RecommendationRecord]) -> pa.RecordBatch:
    return _batch(
        RECOMMENDATION_LOG_SCHEMA, page, items=[[_served_item(s) for s in r.items] for r in page]
    )


def _served_item(s: ServedItem) -> dict[str, Any]:
    return {
        "itemId": s.item_id,
        "position": s.position,
        "score": s.score,
        "source": s.source,
        "propensity": s.propensity,
        "sourceScores": json.dumps(dict(s.source_scores)) if s.source_scores else None,
    }


def _item_batches(store: Store, app_id: str, page_size: int) -> Iterator[pa.RecordBatch]:
    scan = functools.partial(store.catalog.scan_items, app_id, limit=page_size)
    return map(_items_batch, _pages(scan, None, lambda item: item.item_id))


def _items_batch(page: list[Item]) -> pa.RecordBatch:
    return _batch(
        ITEMS_SCHEMA,
        page,
        tags=[list(i.tags) for i in page],
        status=[i.status.value for i in page],
        metadata=[_json_text(i.metadata) for i in page],
    )


def _user_batches(store: Store, app_id: str, page_size: int) -> Iterator[pa.RecordBatch]:
    scan = functools.partial(store.users.scan_users, app_id, limit=page_size)
    return map(_users_batch, _pages(scan, None, lambda user: user.user_id))


def _users_batch(page: list[User]) -> pa.RecordBatch:
    return _batch(USERS_SCHEMA, page, attributes=[_json_text(u.attributes) for u in page])
