"""``export_file``: what an export writes, ``import_file`` reads back as it was stored."""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from recloop.domain import Event, Item, ItemStatus, User
from recloop.errors import InvalidInput, NotFound, RecloopError, StoreUnavailable
from recloop.ingest.export import COLUMNS, ExportReport, export_file, parse_time
from recloop.ingest.files import LIST_FIELDS, OBJECT_FIELDS
from recloop.ingest.importer import ImportReport, RecordKind, import_file
from recloop.store import Store, open_store
from recloop.store.migrate import upgrade

pytestmark = pytest.mark.unit

APP = "app"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T = NOW - timedelta(days=10)
FORMATS = ("csv", "jsonl", "parquet")

ITEMS: list[dict[str, Any]] = [
    {
        "itemId": "i1",
        "type": "video",
        "title": 'Quiet, "Harbor"\nPart 2\r\n',
        "description": "über ✓ — 港",
        "category": "travel",
        "tags": ["sea", "live 2024", "ünï"],
        "creatorId": "c1",
        "locale": "de-DE",
        "status": "active",
        "createdAt": "2023-01-02T03:04:05.123456Z",
        "metadata": {"duration": 31.5, "hd": True, "nested": {"a": [1, None, "x"]}, "n": 2**53},
    },
    {"itemId": "i2"},
    {
        "itemId": "i3",
        "status": "blocked",
        "tags": [],
        "createdAt": "2022-12-31T23:59:59",
        "metadata": {"empty": {}},
    },
    {"itemId": "i4", "status": "removed", "title": " padded ", "createdAt": 1700000000.25},
]

USERS: list[dict[str, Any]] = [
    {"userId": "u1", "attributes": {"region": "eu", "interests": ["jazz", "sea"], "age": 31}},
    {"userId": "u2"},
    {"userId": "u3", "attributes": {"nested": {"x": 1.25, "y": None}}},
]

EVENTS: list[dict[str, Any]] = [
    {
        "eventId": "e1",
        "userId": "u1",
        "itemId": "i1",
        "eventType": "click",
        "value": 2.5,
        "surface": "home",
        "sessionId": "s1",
        "device": "ios",
        "position": 0,
        "requestId": "r1",
        "eventTs": (T + timedelta(microseconds=123457)).isoformat(),
        "context": {"prefix": "qu", "n": [1, 2]},
    },
    {"eventId": "e2", "userId": "u1", "itemId": "i2", "eventType": "hide", "eventTs": "2024-04-22"},
    {
        "eventId": "e3",
        "userId": "u2",
        "eventType": "search",
        "query": "Mail ME at bob@example.com",
        "position": 2,
        "requestId": "r2",
        "eventTs": "2024-04-23T08:00:00+02:00",
    },
    {"eventId": "e4", "userId": "u2", "itemId": "i1", "eventType": "purchase", "value": 1e-7},
    {"eventId": "e5", "userId": "u3", "itemId": "i3", "eventType": "view", "context": {}},
    *(
        {
            "eventId": f"g{n}",
            "userId": f"u{1 + n % 3}",
            "itemId": f"i{1 + n % 4}",
            "eventType": "view",
            "value": float(n),
            "eventTs": (T + timedelta(hours=n)).isoformat(),
        }
        for n in range(12)
    ),
]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def fresh_store(path: Path) -> Store:
    store = open_store(f"sqlite:///{path}")
    upgrade(store.engine)
    store.tenancy.create_app(APP, "App", NOW)
    return store


def run_import(store: Store, kind: RecordKind, path: Path, fmt: str) -> ImportReport:
    return import_file(store, APP, kind, path, fmt, now=NOW)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Store]:
    """A store holding ``ITEMS``, ``USERS`` and ``EVENTS``, imported as a client sends them."""
    store = fresh_store(tmp_path / "source.db")
    for kind, records in (
        (RecordKind.ITEMS, ITEMS),
        (RecordKind.USERS, USERS),
        (RecordKind.EVENTS, EVENTS),
    ):
        report = run_import(
            store, kind, write_jsonl(tmp_path / f"given-{kind}.jsonl", records), "jsonl"
        )
        assert (report.stored, report.rejected) == (len(records), 0), report.rejections
    yield store
    store.close()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Store]:
    store = fresh_store(tmp_path / "target.db")
    yield store
    store.close()


def export(store: Store, kind: RecordKind, path: Path, **kwargs: Any) -> ExportReport:
    fmt = kwargs.pop("fmt", path.suffix.lstrip("."))
    return export_file(store, APP, kind, path, fmt, **kwargs)


# --- what a stored row is, less the stamps only the server makes -------------------------------


def items(store: Store) -> list[Item]:
    return [
        dataclasses.replace(item, updated_at=None)
        for item in store.catalog.scan_items(APP, None, 1000)
    ]


def users(store: Store) -> list[User]:
    return [
        dataclasses.replace(user, created_at=None, updated_at=None)
        for user in store.users.scan_users(APP, None, 1000)
    ]


def events(store: Store) -> list[Event]:
    return [
        dataclasses.replace(event, server_ts=NOW)
        for _, event in store.events.scan(0, 1000, app_id=APP)
    ]


STORED = {RecordKind.ITEMS: items, RecordKind.USERS: users, RecordKind.EVENTS: events}


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(RecordKind))
def test_an_import_of_an_export_stores_the_same_records(
    source: Store, target: Store, tmp_path: Path, kind: RecordKind, fmt: str
) -> None:
    path = tmp_path / f"out.{fmt}"
    report = export(source, kind, path, page_size=4)
    expected = STORED[kind](source)
    assert (report.written, report.read) == (len(expected), len(expected))

    back = run_import(target, kind, path, fmt)

    assert (back.read, back.stored, back.rejected) == (len(expected), len(expected), 0), (
        back.rejections
    )
    assert STORED[kind](target) == expected


def test_the_round_trip_keeps_what_the_source_holds(
    source: Store, target: Store, tmp_path: Path
) -> None:
    # The comparison above holds values worth comparing: the awkward ones survived the import.
    for kind in RecordKind:
        path = export(source, kind, tmp_path / f"{kind}.csv").path
        run_import(target, kind, path, "csv")
    i1 = target.catalog.get_item(APP, "i1")
    assert i1 is not None
    assert i1.title == 'Quiet, "Harbor"\nPart 2\r\n'
    assert i1.tags == ("sea", "live 2024", "ünï")
    assert i1.created_at == datetime(2023, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert i1.metadata == ITEMS[0]["metadata"]
    i4 = target.catalog.get_item(APP, "i4")
    assert i4 is not None
    assert (i4.status, i4.title) == (ItemStatus.REMOVED, " padded ")
    assert i4.created_at == datetime.fromtimestamp(1700000000.25, UTC)
    u3 = target.users.get_user(APP, "u3")
    assert u3 is not None
    assert u3.attributes == {"nested": {"x": 1.25, "y": None}}
    by_id = {e.event_id: e for e in events(target)}
    assert by_id["e1"].event_ts == T + timedelta(microseconds=123457)
    assert by_id["e1"].context == {"prefix": "qu", "n": [1, 2]}
    assert (by_id["e1"].position, by_id["e1"].value, by_id["e1"].device) == (0, 2.5, "ios")
    assert by_id["e3"].query == "mail me at <email>"
    assert by_id["e3"].item_id is None
    assert by_id["e4"].value == 1e-7
    assert by_id["e5"].context == {}
    assert target.suppressions.item_ids(APP, "u1") == {"i2"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_reimporting_an_export_into_its_own_app_stores_nothing_twice(
    source: Store, tmp_path: Path, fmt: str
) -> None:
    before = events(source)
    path = export(source, RecordKind.EVENTS, tmp_path / f"events.{fmt}").path
    again = run_import(source, RecordKind.EVENTS, path, fmt)
    assert (again.stored, again.duplicates, again.rejected) == (0, len(EVENTS), 0)
    assert events(source) == before


def test_rows_carry_the_wire_names_and_formats(source: Store, tmp_path: Path) -> None:
    path = export(source, RecordKind.EVENTS, tmp_path / "events.jsonl").path
    first = orjson.loads(path.read_bytes().splitlines()[0])
    assert first == {
        "eventId": "e1",
        "userId": "u1",
        "itemId": "i1",
        "eventType": "click",
        "value": 2.5,
        "surface": "home",
        "sessionId": "s1",
        "device": "ios",
        "position": 0,
        "requestId": "r1",
        "eventTs": "2024-04-21T12:00:00.123457+00:00",
        "context": {"prefix": "qu", "n": [1, 2]},
        "query": None,
    }
    items_csv = export(source, RecordKind.ITEMS, tmp_path / "items.csv").path
    with items_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "itemId", "type", "title", "description", "category", "tags", "creatorId", "locale",
        "status", "createdAt", "metadata",
    ]  # fmt: skip
    assert rows[0]["tags"] == "sea|live 2024|ünï"
    assert rows[0]["createdAt"] == "2023-01-02T03:04:05.123456+00:00"
    assert rows[1]["title"] == ""  # absent
    assert rows[1]["metadata"] == "{}"


def test_parquet_columns_are_typed_and_objects_are_json_text(source: Store, tmp_path: Path) -> None:
    path = export(source, RecordKind.EVENTS, tmp_path / "events.parquet").path
    table = pq.read_table(path)
    assert str(table.schema.field("eventTs").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("position").type) == "int32"
    assert str(table.schema.field("value").type) == "double"
    row = table.slice(0, 1).to_pylist()[0]
    assert orjson.loads(row["context"]) == {"prefix": "qu", "n": [1, 2]}
    assert row["eventTs"] == T + timedelta(microseconds=123457)


def test_every_column_is_a_domain_field_that_the_csv_reader_decodes_by_its_shape() -> None:
    entity = {RecordKind.ITEMS: Item, RecordKind.USERS: User, RecordKind.EVENTS: Event}
    for kind, columns in COLUMNS.items():
        fields = {f.name for f in dataclasses.fields(entity[kind])}
        assert {c.attribute for c in columns} <= fields
        for column in columns:
            assert (column.shape == "labels") == (column.name in LIST_FIELDS)
            assert (column.shape == "object") == (column.name in OBJECT_FIELDS)


# --- what is left out ------------------------------------------------------------------------


def test_a_deleted_user_and_their_events_are_not_exported(source: Store, tmp_path: Path) -> None:
    assert source.users.forget_user(APP, "u2", "test", NOW) is not None
    events_path = export(source, RecordKind.EVENTS, tmp_path / "events.jsonl").path
    users_path = export(source, RecordKind.USERS, tmp_path / "users.csv").path
    exported = [orjson.loads(line) for line in events_path.read_bytes().splitlines()]
    expected = [e for e in EVENTS if e["userId"] != "u2"]
    assert [e["eventId"] for e in exported] == [e["eventId"] for e in expected]
    assert len(expected) < len(EVENTS)
    with users_path.open(newline="") as f:
        assert [row["userId"] for row in csv.DictReader(f)] == ["u1", "u3"]


def test_since_and_until_keep_the_events_that_happened_in_between(
    source: Store, tmp_path: Path
) -> None:
    # g3 happened at T + 3 h (kept: since is inclusive), g7 at T + 7 h (left: until is not).
    report = export(
        source,
        RecordKind.EVENTS,
        tmp_path / "window.jsonl",
        since=T + timedelta(hours=3),
        until=T + timedelta(hours=7),
        page_size=5,
    )
    ids = [orjson.loads(line)["eventId"] for line in report.path.read_bytes().splitlines()]
    assert ids == ["g3", "g4", "g5", "g6"]
    assert (report.written, report.read) == (4, len(EVENTS))
    only_since = export(
        source, RecordKind.EVENTS, tmp_path / "s.csv", since=NOW - timedelta(days=1)
    )
    with only_since.path.open(newline="") as f:
        assert [row["eventId"] for row in csv.DictReader(f)] == ["e4", "e5"]  # stamped at NOW


# --- pages and files ---------------------------------------------------------------------------


class RecordingEvents:
    """The event log, recording each scan's limit and page, failing on scan ``fail_on``."""

    def __init__(self, inner: Any, fail_on: int | None = None) -> None:
        self._inner = inner
        self.fail_on = fail_on
        self.pages: list[tuple[int, int]] = []

    def scan(self, after_seq: int, limit: int, **kwargs: Any) -> Any:
        if self.fail_on is not None and len(self.pages) + 1 == self.fail_on:
            raise StoreUnavailable("the store went away")
        page = self._inner.scan(after_seq, limit, **kwargs)
        self.pages.append((limit, len(page)))
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_events_are_read_and_written_a_page_at_a_time(source: Store, tmp_path: Path) -> None:
    recording = RecordingEvents(source.events)
    store = dataclasses.replace(source, events=recording)
    progress: list[int] = []
    report = export(
        store, RecordKind.EVENTS, tmp_path / "e.parquet", page_size=5, on_progress=progress.append
    )
    pages = math.ceil(len(EVENTS) / 5)
    assert recording.pages == [(5, 5)] * (pages - 1) + [(5, len(EVENTS) % 5 or 5), (5, 0)]
    assert progress == [n for _, n in recording.pages if n]
    assert pq.ParquetFile(report.path).num_row_groups == pages


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_export_leaves_no_file_and_keeps_the_one_it_would_replace(
    source: Store, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    store = dataclasses.replace(source, events=RecordingEvents(source.events, fail_on=2))
    with pytest.raises(StoreUnavailable):
        export(store, RecordKind.EVENTS, out / f"new.{fmt}", page_size=3)
    assert list(out.iterdir()) == []

    (out / f"old.{fmt}").write_text("old")
    with pytest.raises(StoreUnavailable):
        export(store, RecordKind.EVENTS, out / f"old.{fmt}", page_size=3, overwrite=True)
    assert [p.name for p in out.iterdir()] == [f"old.{fmt}"]
    assert (out / f"old.{fmt}").read_text() == "old"


def test_a_file_that_cannot_be_written_fails_as_a_recloop_error(
    source: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(InvalidInput, match=r"directory .*missing does not exist"):
        export(source, RecordKind.ITEMS, tmp_path / "missing" / "items.csv")
    monkeypatch.setattr("recloop.ingest.export.os.replace", no_space)
    with pytest.raises(RecloopError, match=r"cannot write .*items\.csv: .*No space left"):
        export(source, RecordKind.ITEMS, tmp_path / "items.csv")
    assert [p.name for p in tmp_path.iterdir() if "items.csv" in p.name] == []


def test_an_existing_file_is_replaced_only_when_asked(source: Store, tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text("mine\n")
    with pytest.raises(InvalidInput) as refused:
        export(source, RecordKind.USERS, path)
    assert refused.value.field == "file"
    assert "exists" in refused.value.rule
    assert path.read_text() == "mine\n"

    report = export(source, RecordKind.USERS, path, overwrite=True)
    assert report.written == len(USERS)
    assert [orjson.loads(line)["userId"] for line in path.read_bytes().splitlines()] == [
        "u1",
        "u2",
        "u3",
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("record", "field"),
    [({"itemId": "x1", "title": ""}, "title"), ({"itemId": "x2", "tags": ["a|b"]}, "tags")],
)
def test_csv_refuses_a_value_it_would_read_back_changed(
    source: Store, tmp_path: Path, record: dict[str, Any], field: str
) -> None:
    run_import(source, RecordKind.ITEMS, write_jsonl(tmp_path / "odd.jsonl", [record]), "jsonl")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidInput) as refused:
        export(source, RecordKind.ITEMS, out / "items.csv")
    assert refused.value.field == field
    assert f"item {record['itemId']!r}" in refused.value.rule
    assert "jsonl or parquet" in refused.value.rule
    assert list(out.iterdir()) == []
    # The other formats hold it.
    export(source, RecordKind.ITEMS, out / "items.jsonl")
    stored = source.catalog.get_item(APP, record["itemId"])
    assert stored is not None
    lines = [orjson.loads(line) for line in (out / "items.jsonl").read_bytes().splitlines()]
    assert {**record, "tags": record.get("tags", [])}.items() <= next(
        line for line in lines if line["itemId"] == record["itemId"]
    ).items()


# --- refusals ----------------------------------------------------------------------------------


def test_an_unknown_app_is_refused_before_anything_is_written(
    source: Store, tmp_path: Path
) -> None:
    with pytest.raises(NotFound) as refused:
        export_file(source, "nope", RecordKind.ITEMS, tmp_path / "i.csv", "csv")
    assert refused.value.field == "app"
    assert not (tmp_path / "i.csv").exists()


@pytest.mark.parametrize(
    ("kind", "fmt", "window", "field"),
    [
        (RecordKind.ITEMS, "xlsx", {}, "format"),
        (RecordKind.USERS, "csv", {"since": NOW}, "since"),
        (RecordKind.EVENTS, "csv", {"since": NOW, "until": NOW}, "until"),
    ],
)
def test_a_bad_format_or_window_is_refused_naming_it(
    source: Store, tmp_path: Path, kind: RecordKind, fmt: str, window: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        export_file(source, APP, kind, tmp_path / "out.csv", fmt, **window)
    assert refused.value.field == field
    assert list(tmp_path.glob("out*")) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T14:30:00.5+02:00", datetime(2024, 5, 1, 12, 30, 0, 500000, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_iso_8601_in_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text, "since")
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["yesterday", "1714564800", "2024-13-01", ""])
def test_parse_time_refuses_what_is_not_iso_8601(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_time(text, "since")
    assert refused.value.field == "since"
