"""Record files (CSV, JSONL, Parquet) and ``import_file`` into a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recloop.domain import EventType, ItemStatus
from recloop.errors import InvalidInput
from recloop.ingest.files import count_rows, detect_format, is_unreadable, read_rows
from recloop.ingest.importer import ImportReport, RecordKind, import_file
from recloop.store import Store, open_store
from recloop.store.migrate import upgrade

pytestmark = pytest.mark.unit

APP = "app"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def records(path: Path, fmt: str) -> list[tuple[int, Any]]:
    return [(row.number, row.record) for row in read_rows(path, fmt)]


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    text = [line if isinstance(line, str) else orjson.dumps(line).decode() for line in lines]
    path.write_text("\n".join(text) + "\n")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'import.db'}")
    upgrade(opened.engine)
    opened.tenancy.create_app(APP, "App", NOW)
    yield opened
    opened.close()


def run_import(store: Store, kind: RecordKind, path: Path, fmt: str, **kwargs: Any) -> ImportReport:
    return import_file(store, APP, kind, path, fmt, now=NOW, **kwargs)


# --- reading files ---------------------------------------------------------------------------


def test_csv_joins_tags_with_pipes_and_reads_json_metadata(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "itemId,title,tags,metadata\n"
        'i1,Hello,jazz|live||2024,"{""duration"": 31, ""hd"": true}"\n'
        "i2,,,\n"
    )
    assert records(path, "csv") == [
        (
            2,
            {
                "itemId": "i1",
                "title": "Hello",
                "tags": ["jazz", "live", "2024"],
                "metadata": {"duration": 31, "hd": True},
            },
        ),
        (3, {"itemId": "i2"}),  # empty cells are absent, not empty strings
    ]


def test_csv_dotted_columns_build_an_object(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("userId,attributes.region,attributes.language\nu1,eu,de\nu2,,fr\nu3,,\n")
    assert records(path, "csv") == [
        (2, {"userId": "u1", "attributes": {"region": "eu", "language": "de"}}),
        (3, {"userId": "u2", "attributes": {"language": "fr"}}),
        (4, {"userId": "u3"}),
    ]


def test_csv_bad_json_in_an_object_column_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('itemId,metadata\ni1,{not json\ni2,"{""a"": 1}"\n')
    rows = list(read_rows(path, "csv"))
    assert [row.number for row in rows] == [2, 3]
    reason = is_unreadable(rows[0].record)
    assert reason is not None
    assert "JSON" in reason
    assert rows[1].record == {"itemId": "i2", "metadata": {"a": 1}}


def test_csv_saved_with_a_utf8_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    # Spreadsheets save "CSV UTF-8" with a BOM; it must not become part of the first header.
    path = tmp_path / "items.csv"
    path.write_bytes(b"\xef\xbb\xbfitemId,title\ni1,Hello\n")
    assert records(path, "csv") == [(2, {"itemId": "i1", "title": "Hello"})]


def test_jsonl_bad_line_is_unreadable_with_its_line_number(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [{"a": 1}, "", "{oops", [1, 2], {"b": 2}])
    rows = list(read_rows(path, "jsonl"))
    assert [row.number for row in rows] == [1, 3, 4, 5]
    assert rows[0].record == {"a": 1}
    assert is_unreadable(rows[1].record) is not None
    assert rows[2].record == [1, 2]
    assert is_unreadable(rows[2].record) is None
    assert rows[3].record == {"b": 2}


def test_parquet_rows_come_back_as_records_without_nulls(tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    table = pa.table(
        {
            "itemId": ["i1", "i2"],
            "title": ["Hello", None],
            "tags": [["a", "b"], []],
            "metadata": [{"duration": 30}, {"duration": 5}],
            "createdAt": pa.array(
                [datetime(2024, 1, 1, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    pq.write_table(table, path)
    assert records(path, "parquet") == [
        (
            1,
            {
                "itemId": "i1",
                "title": "Hello",
                "tags": ["a", "b"],
                "metadata": {"duration": 30},
                "createdAt": datetime(2024, 1, 1, tzinfo=UTC),
            },
        ),
        (2, {"itemId": "i2", "tags": [], "metadata": {"duration": 5}}),
    ]
    assert count_rows(path, "parquet") == 2


def test_parquet_object_columns_may_hold_json_text(tmp_path: Path) -> None:
    # As ``recloop export`` writes them: objects with different keys share no struct type.
    path = tmp_path / "events.parquet"
    pq.write_table(
        pa.table(
            {
                "eventId": ["e1", "e2", "e3", "e4"],
                "context": ['{"a": [1, null]}', None, "null", "{oops"],
                "note": ['{"a": 1}', None, None, None],
            }
        ),
        path,
    )
    rows = list(read_rows(path, "parquet"))
    assert [row.record for row in rows[:3]] == [
        {"eventId": "e1", "context": {"a": [1, None]}, "note": '{"a": 1}'},  # only objects
        {"eventId": "e2"},
        {"eventId": "e3"},  # JSON null: absent, like a Parquet null
    ]
    reason = is_unreadable(rows[3].record)
    assert reason is not None
    assert "JSON" in reason
    assert rows[3].number == 4


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.csv", "csv"), ("a.JSONL", "jsonl"), ("a.ndjson", "jsonl"), ("a.pq", "parquet")],
)
def test_format_is_detected_from_the_extension(name: str, fmt: str) -> None:
    assert detect_format(Path(name)) == fmt


def test_unknown_extension_is_refused_on_file() -> None:
    with pytest.raises(InvalidInput) as caught:
        detect_format(Path("data.xlsx"))
    assert caught.value.field == "file"


def test_count_rows_skips_the_csv_header_and_blank_lines(tmp_path: Path) -> None:
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("itemId\ni1\ni2\n\n")
    jsonl_path = write_jsonl(tmp_path / "a.jsonl", [{"a": 1}, "", {"a": 2}, {"a": 3}])
    assert count_rows(csv_path, "csv") == 2
    assert count_rows(jsonl_path, "jsonl") == 3


# --- importing -------------------------------------------------------------------------------


def test_import_items_from_csv_stores_good_rows_and_rejects_bad_ones(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "itemId,title,category,tags,status,metadata\n"
        'i1,One,music,a|b,active,"{""bpm"": 120}"\n'
        "i2,Two,news,,deleted,\n"
        "i3,Three,,,removed,\n"
        ",No id,,,,\n"
    )
    report = run_import(store, RecordKind.ITEMS, path, "csv")
    assert (report.read, report.stored, report.rejected) == (4, 2, 2)
    assert [(line, field) for line, field, _ in report.rejections] == [(3, "status"), (5, "itemId")]
    one = store.catalog.get_item(APP, "i1")
    assert one is not None
    assert (one.title, one.category, one.tags, one.metadata) == (
        "One",
        "music",
        ("a", "b"),
        {"bpm": 120},
    )
    three = store.catalog.get_item(APP, "i3")
    assert three is not None
    assert three.status is ItemStatus.REMOVED
    assert store.catalog.get_item(APP, "i2") is None
    assert store.catalog.count_items(APP) == 2


def test_import_items_from_parquet(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    created = datetime(2023, 6, 1, 8, 0, tzinfo=UTC)
    pq.write_table(
        pa.table(
            {
                "itemId": ["p1", "p2"],
                "tags": [["x"], ["y", "z"]],
                "createdAt": pa.array([created, created], pa.timestamp("us", tz="UTC")),
            }
        ),
        path,
    )
    report = run_import(store, RecordKind.ITEMS, path, "parquet")
    assert (report.stored, report.rejected) == (2, 0)
    item = store.catalog.get_item(APP, "p2")
    assert item is not None
    assert item.tags == ("y", "z")
    assert item.created_at == created


def test_import_users_with_dotted_attribute_columns(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("userId,attributes.region,attributes.language\nu1,eu,de\nu2,,fr\n,us,en\n")
    report = run_import(store, RecordKind.USERS, path, "csv")
    assert (report.read, report.stored, report.rejected) == (3, 2, 1)
    assert [(line, field) for line, field, _ in report.rejections] == [(4, "userId")]
    u1, u2 = store.users.get_user(APP, "u1"), store.users.get_user(APP, "u2")
    assert u1 is not None
    assert u2 is not None
    assert u1.attributes == {"region": "eu", "language": "de"}
    assert u2.attributes == {"language": "fr"}


def test_import_events_counts_stored_duplicates_and_rejected(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"eventId": "e1", "userId": "u1", "itemId": "i1", "eventType": "click"},
            {"eventId": "e2", "userId": "u1", "itemId": "i2", "eventType": "view"},
            {"eventId": "e1", "userId": "u1", "itemId": "i1", "eventType": "click"},
            {"eventId": "e3", "userId": "u1", "eventType": "purchase"},
            "{truncated",
            {"eventId": "e4", "userId": "u2", "itemId": "i1", "eventType": "like", "position": -1},
            {"eventId": "e5", "userId": "u2", "eventType": "search"},
        ],
    )
    progress: list[int] = []
    report = run_import(
        store, RecordKind.EVENTS, path, "jsonl", batch_size=3, on_progress=progress.append
    )
    assert report.read == 7
    assert sum(progress) == 7
    assert report.stored == 3  # e1, e2, e5
    assert report.duplicates == 1  # e1 again
    assert report.rejected == 3
    # Within a batch, unparseable lines are listed before rule breaks: compare as a set.
    assert sorted((line, field) for line, field, _ in report.rejections) == [
        (4, "itemId"),
        (5, "record"),
        (6, "position"),
    ]
    assert store.events.count(APP) == 3


def test_reimporting_events_stores_nothing_twice(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"eventId": f"e{n}", "userId": "u1", "itemId": f"i{n}", "eventType": "click"}
            for n in range(10)
        ],
    )
    first = run_import(store, RecordKind.EVENTS, path, "jsonl", batch_size=4)
    again = run_import(store, RecordKind.EVENTS, path, "jsonl", batch_size=4)
    assert (first.stored, first.duplicates) == (10, 0)
    assert (again.stored, again.duplicates, again.rejected) == (0, 10, 0)
    assert store.events.count(APP) == 10


def test_import_events_from_csv_converts_cells_to_typed_fields(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "eventId,userId,itemId,eventType,position,value,eventTs,context\n"
        'e1,u1,i1,click,3,2.5,2024-04-30T10:00:00+02:00,"{""q"": ""jazz""}"\n'
        "e2,u1,i2,hide,,,,\n"
        "e3,u1,i3,click,-4,,,\n"
        "e4,u1,i4,click,,,2024-05-02T00:00:00Z,\n"
    )
    report = run_import(store, RecordKind.EVENTS, path, "csv")
    assert (report.stored, report.rejected) == (2, 2)
    assert [(line, field) for line, field, _ in report.rejections] == [
        (4, "position"),
        (5, "eventTs"),  # a day ahead of the import's clock
    ]
    by_item = {r.item_id: r for r in store.events.read_since(0, 10)}
    assert by_item["i1"].event_ts == datetime(2024, 4, 30, 8, 0, tzinfo=UTC)
    assert by_item["i2"].event_ts == NOW
    assert by_item["i2"].event_type is EventType.HIDE
    assert store.suppressions.item_ids(APP, "u1") == {"i2"}


def test_import_events_from_parquet(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    ts = NOW - timedelta(hours=1)
    pq.write_table(
        pa.table(
            {
                "eventId": ["e1", "e2"],
                "userId": ["u1", "u2"],
                "itemId": ["i1", None],
                "eventType": ["purchase", "search"],
                "value": [19.99, None],
                "eventTs": pa.array([ts, ts], pa.timestamp("us", tz="UTC")),
            }
        ),
        path,
    )
    report = run_import(store, RecordKind.EVENTS, path, "parquet")
    assert (report.stored, report.rejected) == (2, 0)
    stored = store.events.read_since(0, 10)
    assert [(r.item_id, r.event_type, r.event_ts) for r in stored] == [
        ("i1", EventType.PURCHASE, ts),
        (None, EventType.SEARCH, ts),
    ]
