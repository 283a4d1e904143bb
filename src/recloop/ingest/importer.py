"""``recloop import``: records from a file into the store, with the API's rules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic.alias_generators import to_camel

from recloop.domain import Event
from recloop.errors import InvalidInput
from recloop.ingest.files import OBJECT_FIELDS, Row, is_unreadable, read_columns, read_rows
from recloop.ingest.validate import Rejection, validate_event
from recloop.ingest.wire import (
    CamelModel,
    EventIn,
    ItemIn,
    UserIn,
    to_item,
    to_user,
    validate_records,
)
from recloop.store import Store

MAX_KEPT_REJECTIONS = 1000


class RecordKind(StrEnum):
    """What a file holds."""

    ITEMS = "items"
    USERS = "users"
    EVENTS = "events"


#: The wire model a record of each kind is read as.
_MODELS: dict[RecordKind, type[CamelModel]] = {
    RecordKind.ITEMS: ItemIn,
    RecordKind.USERS: UserIn,
    RecordKind.EVENTS: EventIn,
}


@dataclass
class ImportReport:
    """What an import did; rejections carry the file's line (or row) number."""

    kind: RecordKind
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str, str]] = field(default_factory=list)
    # Events: how far their times were moved to arrive as a stream ending at the import.
    shift: timedelta = timedelta(0)

    def reject(self, number: int, field_name: str, reason: str) -> None:
        """Count a refused row, keeping the first ones for the summary."""
        self.rejected += 1
        if len(self.rejections) < MAX_KEPT_REJECTIONS:
            self.rejections.append((number, field_name, reason))


def _batches(rows: Iterable[Row], size: int) -> Iterable[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_file(
    store: Store,
    app_id: str,
    kind: RecordKind,
    path: Path,
    fmt: str,
    *,
    now: datetime,
    max_future_skew: timedelta = timedelta(minutes=5),
    batch_size: int = 5000,
    arrivals: Literal["stream", "now"] = "stream",
    on_progress: Callable[[int], None] = lambda n: None,
) -> ImportReport:
    """Validate every row like the API would and store the good ones in batches.

    Events are idempotent on ``eventId``: a re-run of a file whose events carry ids stores
    nothing twice (events without one get a new id each run). Items and users are upserts.
    Progress is reported in rows.

    An imported history arrives as if it had streamed in live and ended at the import:
    each event's arrival (``server_ts``) is its own time plus ``shift``, by default the time
    from the file's newest event to ``now`` (a first pass over the file finds it). Its
    events keep the times they were stamped with; on the server's timeline the history then
    ends now, so its recency means what it would have meant live, for training and serving
    alike. ``arrivals="now"`` records every event as arriving at ``now`` instead.
    """
    if fmt == "jsonl":
        check_columns(_jsonl_keys(path), kind, noun="key")
    else:
        check_columns(read_columns(path, fmt), kind)
    report = ImportReport(kind)
    if kind is RecordKind.EVENTS and arrivals == "stream":
        report.shift = _shift_to_now(path, fmt, app_id, now)
    for batch in _batches(read_rows(path, fmt), batch_size):
        report.read += len(batch)
        readable: list[Row] = []
        for row in batch:
            reason = is_unreadable(row.record)
            if reason is None:
                readable.append(row)
            else:
                report.reject(row.number, "record", reason)
        if kind is RecordKind.EVENTS:
            _store_events(store, app_id, readable, now, max_future_skew, report, report.shift)
        else:
            _store_catalog(store, app_id, kind, readable, now, report)
        on_progress(len(batch))
    return report


def check_columns(
    columns: list[str] | None, kind: RecordKind, *, noun: Literal["column", "key"] = "column"
) -> None:
    """Refuse a file whose header names a column no record of ``kind`` has, once, before
    any row is read, rather than rejecting every row for it.

    ``noun="key"``: ``columns`` are the keys a JSONL file's records use, refused the same way.

    Raises:
        InvalidInput: on ``columns`` (``keys``), naming the unknown ones and the known ones.
    """
    if columns is None:
        return
    model = _MODELS[kind]
    known: dict[str, str] = {}  # accepted name -> its name on the wire
    for name, info in model.model_fields.items():
        # Every wire model is camelCase; a field inherited from a base model may not have
        # its generated alias filled in before the model's first validation.
        wire = info.validation_alias if isinstance(info.validation_alias, str) else to_camel(name)
        known[name] = known[wire] = wire
    unknown = [
        column
        for column in columns
        # An unnamed column (a trailing separator) holds nothing a row could be refused for.
        if column
        and column not in known
        and not ("." in column and known.get(column.split(".", 1)[0]) in OBJECT_FIELDS)
    ]
    if unknown:
        raise InvalidInput(
            f"{noun}s",
            f"unknown {noun if len(unknown) == 1 else noun + 's'} "
            f"{', '.join(repr(c) for c in unknown)} for {kind.value}; the known ones are "
            f"{', '.join(sorted(set(known.values())))}",
        )


def _jsonl_keys(path: Path) -> list[str]:
    """Every top-level key the file's records use, in the order first met.

    A first pass, so that a key no record may have refuses the file once, before any row
    is stored, as an unknown CSV column does (rather than a rejection on every row).
    """
    keys: dict[str, None] = {}
    for row in read_rows(path, "jsonl"):
        if isinstance(row.record, dict):
            keys.update(dict.fromkeys(str(k) for k in row.record))
    return list(keys)


def _shift_to_now(path: Path, fmt: str, app_id: str, now: datetime) -> timedelta:
    """From the file's newest event time to ``now`` (zero when none is in the past)."""
    newest: datetime | None = None
    for row in read_rows(path, fmt):
        if is_unreadable(row.record) is not None:
            continue
        outcome = validate_event(
            row.record, app_id=app_id, now=now, max_future_skew=timedelta(days=36500)
        )
        if isinstance(outcome, Event) and (newest is None or outcome.event_ts > newest):
            newest = outcome.event_ts
    return max(now - newest, timedelta(0)) if newest is not None else timedelta(0)


def _store_events(
    store: Store,
    app_id: str,
    rows: list[Row],
    now: datetime,
    skew: timedelta,
    report: ImportReport,
    shift: timedelta,
) -> None:
    good: list[Event] = []
    for row in rows:
        outcome = validate_event(row.record, app_id=app_id, now=now, max_future_skew=skew)
        if isinstance(outcome, Rejection):
            report.reject(row.number, outcome.field, outcome.reason)
        else:
            good.append(
                replace(outcome, server_ts=min(outcome.event_ts + shift, now)) if shift else outcome
            )
    result = store.events.append(good)
    report.stored += result.inserted
    report.duplicates += len(good) - result.inserted


def _store_catalog(
    store: Store,
    app_id: str,
    kind: RecordKind,
    rows: list[Row],
    now: datetime,
    report: ImportReport,
) -> None:
    records = [row.record for row in rows]
    if kind is RecordKind.ITEMS:
        items, rejected = validate_records(ItemIn, records)
        store.catalog.upsert_items(app_id, [to_item(i, i.item_id) for i in items], now)
        report.stored += len(items)
    else:
        users, rejected = validate_records(UserIn, records)
        store.users.upsert_users(app_id, [to_user(u.attributes, u.user_id) for u in users], now)
        report.stored += len(users)
    for index, field_name, reason in rejected:
        report.reject(rows[index].number, field_name, reason)
