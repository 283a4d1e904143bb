"""What ``recloop import`` makes of a file's shape: its separator, its header's columns and
rows with more cells than the header."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recloop.errors import InvalidInput
from recloop.ingest.files import is_unreadable, read_columns, read_rows
from recloop.ingest.importer import RecordKind, check_columns, import_file
from recloop.store import Store, open_store
from recloop.store.migrate import upgrade

pytestmark = pytest.mark.unit

APP = "app"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'import.db'}")
    upgrade(opened.engine)
    opened.tenancy.create_app(APP, "App", NOW)
    yield opened
    opened.close()


def records(path: Path) -> list[tuple[int, Any]]:
    return [(row.number, row.record) for row in read_rows(path, "csv")]


@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_the_separator_is_the_one_the_header_uses(tmp_path: Path, separator: str) -> None:
    path = tmp_path / "items.csv"
    lines = [["itemId", "title", "tags"], ["i1", "One, two; three", "a|b"], ["i2", "Two", ""]]
    # The title holds the other separators: only quotes keep them in one cell.
    path.write_text(
        "\n".join(
            separator.join(f'"{cell}"' if "," in cell else cell for cell in row) for row in lines
        )
        + "\n"
    )

    assert read_columns(path, "csv") == ["itemId", "title", "tags"]
    assert records(path) == [
        (2, {"itemId": "i1", "title": "One, two; three", "tags": ["a", "b"]}),
        (3, {"itemId": "i2", "title": "Two"}),
    ]


def test_a_separator_inside_a_quoted_header_cell_does_not_count(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text('userId;"attributes.a,b,c"\nu1;x\n')

    assert read_columns(path, "csv") == ["userId", "attributes.a,b,c"]


def test_a_row_with_more_cells_than_the_header_is_unreadable_naming_both_counts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "items.csv"
    path.write_text("itemId,title\ni1,One\ni2,Two,extra\ni3\n")

    rows = list(read_rows(path, "csv"))

    assert [row.number for row in rows] == [2, 3, 4]
    assert rows[0].record == {"itemId": "i1", "title": "One"}
    reason = is_unreadable(rows[1].record)
    assert reason is not None
    assert "3 cells where the header names 2 columns" in reason
    # Fewer cells than columns: the missing ones are empty, as a spreadsheet saves them.
    assert rows[2].record == {"itemId": "i3"}


def test_an_import_rejects_the_row_with_extra_cells_and_stores_the_others(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "items.csv"
    path.write_text("itemId;title\ni1;One\ni2;Two;extra\ni3;Three\n")

    report = import_file(store, APP, RecordKind.ITEMS, path, "csv", now=NOW)

    assert (report.read, report.stored, report.rejected) == (3, 2, 1)
    assert [(line, field) for line, field, _ in report.rejections] == [(3, "record")]
    assert store.catalog.get_item(APP, "i2") is None
    three = store.catalog.get_item(APP, "i3")
    assert three is not None
    assert three.title == "Three"


def test_an_unknown_column_refuses_the_file_once_naming_it_and_the_known_ones(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text("userId,itemId,eventType,colour\n" + "u1,i1,click,red\n" * 50)

    with pytest.raises(InvalidInput) as raised:
        import_file(store, APP, RecordKind.EVENTS, path, "csv", now=NOW)

    assert raised.value.field == "columns"
    assert raised.value.rule.count("'colour'") == 1
    assert "eventType" in raised.value.rule
    assert "userId" in raised.value.rule
    assert store.events.count(APP) == 0  # refused before any row was stored


def test_known_columns_may_be_camel_or_snake_case_and_objects_dotted() -> None:
    check_columns(["user_id", "attributes.region", "attributes.age", ""], RecordKind.USERS)
    check_columns(["itemId", "metadata.duration", "tags"], RecordKind.ITEMS)
    with pytest.raises(InvalidInput, match=re.escape("unknown columns 'title.x', 'region'")):
        check_columns(["itemId", "title.x", "region"], RecordKind.ITEMS)


def test_a_parquet_schema_with_an_unknown_column_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "users.parquet"
    pq.write_table(pa.table({"userId": ["u1"], "nickname": ["x"]}), path)

    with pytest.raises(InvalidInput, match="'nickname'"):
        import_file(store, APP, RecordKind.USERS, path, "parquet", now=NOW)


def test_an_unknown_jsonl_key_refuses_the_file_once_naming_it_and_the_known_ones(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    good = '{"userId": "u1", "itemId": "i1", "eventType": "click"}\n'
    odd = '{"userId": "u1", "itemId": "i1", "eventType": "click", "colour": "red"}\n'
    path.write_text(good * 10 + odd * 50)

    with pytest.raises(InvalidInput) as raised:
        import_file(store, APP, RecordKind.EVENTS, path, "jsonl", now=NOW)

    assert raised.value.field == "keys"
    assert raised.value.rule.startswith("unknown key 'colour' for events")
    assert raised.value.rule.count("'colour'") == 1
    assert "eventType" in raised.value.rule
    assert store.events.count(APP) == 0  # refused before any row was stored


def test_jsonl_keys_in_snake_case_and_unparsable_lines_are_not_refused_as_keys(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text('{"user_id": "u1", "attributes": {"region": "eu"}}\nnot json\n[1, 2]\n')

    report = import_file(store, APP, RecordKind.USERS, path, "jsonl", now=NOW)

    assert report.stored == 1
    assert [(n, f) for n, f, _ in report.rejections] == [(2, "record"), (3, "record")]
