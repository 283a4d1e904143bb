"""``recloop export``: an app's items, users or events written as ``recloop import`` reads them.

Each row holds the fields a client sends, under the API's camelCase names (``ItemIn``,
``UserIn``, ``EventIn``), in the file conventions of :mod:`recloop.ingest.files`: CSV joins
``tags`` with ``|``, holds objects as JSON text and leaves absent values empty; JSONL writes
one JSON object a line, ``null`` for absent values; Parquet has typed columns (times in UTC
microseconds), objects as JSON text. Times are ISO 8601 in UTC.

What the server stamps itself does not travel, as no client could send it: an event's
arrival (``server_ts``), an item's ``updated_at``, a user's ``created_at`` and
``updated_at``. An import stamps them anew; every other field comes back as it was, event
ids included, so importing an export twice stores nothing twice.

The store is read a page at a time and each page written before the next is read; the file
is written beside the target under a hidden name and renamed into place when complete.
Deleted users are not exported: their deletion removes them and their events from the
store (``Users.forget_user``), which is all an export reads, as a snapshot does.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol, TypeVar

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from recloop.errors import InvalidInput, NotFound, RecloopError
from recloop.ingest.files import FORMATS
from recloop.ingest.importer import RecordKind
from recloop.ingest.wire import EventIn, ItemIn, UserIn
from recloop.store import Store
from recloop.store.durable import fsync_path

#: Rows read from the store (and written) at a time.
PAGE_SIZE = 10_000

#: How a column's values are written: text, numbers, a time, a list of labels, an object.
Shape = Literal["text", "number", "integer", "time", "labels", "object"]

# The wire fields that are not text; every other one is.
_SHAPES: dict[str, Shape] = {
    "value": "number",
    "position": "integer",
    "event_ts": "time",
    "created_at": "time",
    "tags": "labels",
    "metadata": "object",
    "attributes": "object",
    "context": "object",
}

_ARROW_TYPES: dict[Shape, pa.DataType] = {
    "text": pa.string(),
    "number": pa.float64(),
    "integer": pa.int32(),
    "time": pa.timestamp("us", tz="UTC"),
    "labels": pa.list_(pa.string()),
    "object": pa.string(),  # JSON text: objects differ from row to row
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an export: a wire field, read from the domain value's attribute."""

    name: str
    """The wire (camelCase) name, which is the column's name in the file."""
    attribute: str
    """The field of the domain ``Item``, ``User`` or ``Event`` it is read from."""
    shape: Shape


def _columns(model: type[BaseModel], key: str) -> tuple[Column, ...]:
    # The wire model is the one declaration of what a client sends: a text field it gains is
    # exported without a change here (another kind of field needs its shape in _SHAPES).
    fields = [key, *(name for name in model.model_fields if name != key)]
    return tuple(Column(to_camel(name), name, _SHAPES.get(name, "text")) for name in fields)


#: The columns of each kind of record, its id first.
COLUMNS: dict[RecordKind, tuple[Column, ...]] = {
    RecordKind.ITEMS: _columns(ItemIn, "item_id"),
    RecordKind.USERS: _columns(UserIn, "user_id"),
    RecordKind.EVENTS: _columns(EventIn, "event_id"),
}


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What an export wrote."""

    kind: RecordKind
    path: Path
    fmt: str
    written: int
    """Rows in the file."""
    read: int
    """Rows read from the store: more than ``written`` when events were filtered by time."""


def parse_time(text: str, field: str) -> datetime:
    """An ISO 8601 time (or date, meaning its midnight) in UTC; a naive one means UTC.

    Raises:
        InvalidInput: ``text`` is not an ISO 8601 time; names ``field``.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            field, f"must be an ISO 8601 time such as 2024-05-01T12:00:00Z, not {text!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def export_file(
    store: Store,
    app_id: str,
    kind: RecordKind,
    path: Path,
    fmt: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    overwrite: bool = False,
    page_size: int = PAGE_SIZE,
    on_progress: Callable[[int], None] = lambda n: None,
) -> ExportReport:
    """Write every one of the app's ``kind`` records to ``path``.

    Args:
        store: the store to read.
        app_id: the app whose records are written.
        kind: items, users or events.
        path: the file to write; replaced only when ``overwrite``.
        fmt: ``csv``, ``jsonl`` or ``parquet``.
        since: events only: those whose ``eventTs`` is at or after it.
        until: events only: those whose ``eventTs`` is before it.
        overwrite: replace ``path`` if it exists.
        page_size: rows read from the store (and written) at a time.
        on_progress: called with how many more rows were read from the store.

    Returns:
        How many rows were read and written.

    Raises:
        InvalidInput: an unknown format, a time window on items or users or one that ends
            before it starts, a target that exists (without ``overwrite``) or cannot be
            written, or a value CSV cannot hold (named, with its record).
        NotFound: the app does not exist.
        RecloopError: the file could not be written (the target is then left as it was).
    """
    check_export(store, app_id, kind, path, fmt, since=since, until=until, overwrite=overwrite)
    columns = COLUMNS[kind]
    read = written = 0
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise RecloopError(f"cannot write a file in {path.parent}: {exc}") from exc
    os.close(fd)
    staging = Path(name)
    try:
        with _open_writer(fmt, staging, columns, kind) as writer:
            for page in _pages(store, app_id, kind, page_size):
                read += len(page)
                rows = [_record(columns, value) for value in _in_window(page, since, until)]
                writer.write(rows)
                written += len(rows)
                on_progress(len(page))
        fsync_path(staging)
        # Checked again: the file may have appeared while the export ran.
        _check_target(path, overwrite)
        os.replace(staging, path)
    except OSError as exc:  # a full disk, a lost mount, a directory without write permission
        staging.unlink(missing_ok=True)
        raise RecloopError(f"cannot write {path}: {exc}") from exc
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return ExportReport(kind, path, fmt, written, read)


def check_export(
    store: Store,
    app_id: str,
    kind: RecordKind,
    path: Path,
    fmt: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    overwrite: bool = False,
) -> None:
    """Refuse early what :func:`export_file` would refuse before reading anything.

    Raises:
        InvalidInput: an unknown format, a time window on items or users or one that ends
            before it starts, or a target that exists (without ``overwrite``) or cannot be
            written.
        NotFound: the app does not exist.
    """
    if fmt not in FORMATS:
        raise InvalidInput("format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if kind is not RecordKind.EVENTS and (since is not None or until is not None):
        raise InvalidInput("since", "a time window applies to events only")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("until", "must be after since")
    _check_target(path, overwrite)
    if not store.tenancy.app_exists(app_id):
        raise NotFound("app", f"{app_id!r} does not exist")


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise InvalidInput("file", f"{path} is a directory")
    if path.exists() and not overwrite:
        raise InvalidInput("file", f"{path} exists; use --force to replace it")
    if not path.parent.is_dir():
        raise InvalidInput("file", f"directory {path.parent} does not exist")


# --- reading ---------------------------------------------------------------------------------

K = TypeVar("K")
V = TypeVar("V")


def _keyset(scan: Callable[[K], Sequence[V]], after: K, key: Callable[[V], K]) -> Iterator[list[V]]:
    """Every page of a keyset scan, each read after the key of the previous page's last row."""
    while page := list(scan(after)):
        after = key(page[-1])
        yield page


def _pages(store: Store, app_id: str, kind: RecordKind, size: int) -> Iterator[list[Any]]:
    """The app's records of ``kind`` (domain values), a page at a time, in key order."""
    if kind is RecordKind.ITEMS:
        yield from _keyset(
            lambda after: store.catalog.scan_items(app_id, after, size), None, lambda i: i.item_id
        )
    elif kind is RecordKind.USERS:
        yield from _keyset(
            lambda after: store.users.scan_users(app_id, after, size), None, lambda u: u.user_id
        )
    else:
        for page in _keyset(
            lambda after: store.events.scan(after, size, app_id=app_id), 0, lambda row: row[0]
        ):
            yield [event for _, event in page]


def _in_window(page: list[Any], since: datetime | None, until: datetime | None) -> list[Any]:
    # Event time has no index to filter on in the store; a page is filtered as it is read.
    if since is None and until is None:
        return page
    return [
        event
        for event in page
        if (since is None or event.event_ts >= since) and (until is None or event.event_ts < until)
    ]


def _record(columns: tuple[Column, ...], value: object) -> dict[str, Any]:
    """A domain value's wire fields as plain values: str, float, int, UTC datetime, list, dict."""
    return {c.name: _plain(c.shape, getattr(value, c.attribute)) for c in columns}


def _plain(shape: Shape, value: Any) -> Any:
    if value is None:
        return None
    if shape == "text":
        return str(value)  # an enum's value
    if shape == "number":
        return float(value)
    if shape == "integer":
        return int(value)
    if shape == "time":
        return value.astimezone(UTC)
    if shape == "labels":
        return list(value)
    return value


# --- writing ---------------------------------------------------------------------------------


class _RowWriter(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...


@contextlib.contextmanager
def _open_writer(
    fmt: str, path: Path, columns: tuple[Column, ...], kind: RecordKind
) -> Iterator[_RowWriter]:
    if fmt == "parquet":
        schema = pa.schema([(c.name, _ARROW_TYPES[c.shape]) for c in columns])
        with pq.ParquetWriter(path, schema) as parquet:
            yield _ParquetRows(parquet, schema, columns)
        return
    with path.open("w", encoding="utf-8", newline="") as f:
        yield _CsvRows(f, columns, kind) if fmt == "csv" else _JsonlRows(f, columns)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


class _JsonlRows:
    """One JSON object a line; every column present, ``null`` when absent."""

    def __init__(self, f: IO[str], columns: tuple[Column, ...]) -> None:
        self._f = f
        self._times = [c.name for c in columns if c.shape == "time"]

    def write(self, rows: list[dict[str, Any]]) -> None:
        lines = []
        for row in rows:
            for name in self._times:
                if row[name] is not None:
                    row[name] = row[name].isoformat()
            lines.append(_json_text(row))
        if lines:
            self._f.write("\n".join(lines) + "\n")


class _CsvRows:
    """A header of wire names, then a row a record in the import's CSV conventions.

    CSV cannot hold everything the other formats can: an empty cell is read back as an
    absent value and ``|`` separates tags, so an empty text or a tag holding ``|`` fails the
    export, naming the record, rather than come back changed.
    """

    def __init__(self, f: IO[str], columns: tuple[Column, ...], kind: RecordKind) -> None:
        self._writer = csv.writer(f)
        self._columns = columns
        self._kind = kind.value.rstrip("s")
        self._writer.writerow([c.name for c in columns])

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._writer.writerows([self._cells(row) for row in rows])

    def _cells(self, row: dict[str, Any]) -> list[str]:
        return [self._cell(column, row) for column in self._columns]

    def _cell(self, column: Column, row: dict[str, Any]) -> str:
        value = row[column.name]
        if value is None:
            return ""
        if column.shape == "text":
            if value == "":
                self._refuse(column, row, "an empty text reads back from CSV as absent")
            return str(value)
        if column.shape == "number":
            return repr(value)  # the shortest text that reads back as the same float
        if column.shape == "time":
            return str(value.isoformat())
        if column.shape == "labels":
            if any("|" in label for label in value):
                self._refuse(column, row, "a label holding '|' reads back from CSV as two")
            return "|".join(value)
        if column.shape == "object":
            return _json_text(value)
        return str(value)

    def _refuse(self, column: Column, row: dict[str, Any], reason: str) -> None:
        key = self._columns[0]
        raise InvalidInput(
            column.name,
            f"{self._kind} {row[key.name]!r}: {reason}; export as jsonl or parquet",
        )


class _ParquetRows:
    """A row group a page, typed columns, objects as JSON text."""

    def __init__(
        self, writer: pq.ParquetWriter, schema: pa.Schema, columns: tuple[Column, ...]
    ) -> None:
        self._writer = writer
        self._schema = schema
        self._columns = columns

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        data = {
            c.name: [
                _json_text(row[c.name])
                if c.shape == "object" and row[c.name] is not None
                else row[c.name]
                for row in rows
            ]
            for c in self._columns
        }
        self._writer.write_batch(pa.RecordBatch.from_pydict(data, schema=self._schema))
