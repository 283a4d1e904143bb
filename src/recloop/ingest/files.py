"""Reading record files (CSV, JSONL, Parquet) into dicts shaped like the API's JSON.

CSV conventions: list fields (``tags``) are joined with ``|``; object fields (``metadata``,
``context``, ``attributes``) hold JSON text, or are spread over dotted columns such as
``attributes.region``; an empty cell is an absent value. Cells are separated by commas,
semicolons or tabs: whichever the header line uses most (spreadsheets in many locales save
"CSV" with semicolons). A row with more cells than the header has columns is unreadable.

Parquet: a null is an absent value; object fields are structs, or JSON text (as ``recloop
export`` writes them, since objects with different keys share no struct type).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from recloop.errors import InvalidInput

#: The cell separators a CSV file may use; a comma when the header shows none of them.
DELIMITERS = (",", ";", "\t")
LIST_FIELDS = frozenset({"tags"})
OBJECT_FIELDS = frozenset({"metadata", "context", "attributes"})
FORMATS = ("csv", "jsonl", "parquet")
#: Where csv.DictReader puts the cells past the header's columns.
_EXTRA_CELLS = "\x00extra cells"


@dataclass(frozen=True, slots=True)
class Row:
    """One record of a file, with its 1-based line (or row) number for error messages."""

    number: int
    record: Any


def detect_format(path: Path) -> str:
    """The file's format from its extension.

    Raises:
        InvalidInput: the extension is not one recloop reads.
    """
    suffix = path.suffix.lower().lstrip(".")
    aliases = {
        "csv": "csv",
        "jsonl": "jsonl",
        "ndjson": "jsonl",
        "json": "jsonl",
        "parquet": "parquet",
        "pq": "parquet",
    }
    if suffix not in aliases:
        raise InvalidInput(
            "file",
            f"unknown extension {path.suffix!r}; use one of {', '.join(FORMATS)} or --format",
        )
    return aliases[suffix]


def count_rows(path: Path, fmt: str) -> int | None:
    """How many records the file holds, cheaply, for a progress bar (None if unknown)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    return max(0, lines - 1) if fmt == "csv" else lines


def read_rows(path: Path, fmt: str) -> Iterator[Row]:
    """The file's records in order."""
    if fmt == "csv":
        yield from _read_csv(path)
    elif fmt == "jsonl":
        yield from _read_jsonl(path)
    elif fmt == "parquet":
        yield from _read_parquet(path)
    else:
        raise InvalidInput("format", f"must be one of {', '.join(FORMATS)}")


def _read_jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield Row(number, orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                yield Row(number, _Unreadable(f"invalid JSON: {exc}"))


class _Unreadable:
    """A record that could not be parsed; the importer rejects it with this reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def is_unreadable(record: Any) -> str | None:
    """The parse error of a record that could not be read, or None."""
    return record.reason if isinstance(record, _Unreadable) else None


def _csv_value(column: str, cell: str) -> Any:
    leaf = column.rsplit(".", 1)[-1]
    if leaf in LIST_FIELDS:
        return [part for part in cell.split("|") if part]
    if column in OBJECT_FIELDS:
        return orjson.loads(cell)
    return cell


def read_columns(path: Path, fmt: str) -> list[str] | None:
    """The columns a CSV header or a Parquet schema names; None for JSONL (no header)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    if fmt != "csv":
        return None
    with _open_csv(path) as f:
        return next(csv.reader(f, delimiter=_delimiter(path)), [])


def _open_csv(path: Path) -> TextIO:
    # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark.
    return path.open(newline="", encoding="utf-8-sig")


def _delimiter(path: Path) -> str:
    """The separator the header line uses most, outside quotes (a comma if none)."""
    with _open_csv(path) as f:
        header = f.readline()
    unquoted = "".join(part for i, part in enumerate(header.split('"')) if i % 2 == 0)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(path: Path) -> Iterator[Row]:
    with _open_csv(path) as f:
        reader = csv.DictReader(f, delimiter=_delimiter(path), restkey=_EXTRA_CELLS)
        for raw in reader:
            # The line the record ends on: a quoted cell may span several lines.
            number = reader.line_num
            extra = raw.pop(_EXTRA_CELLS, None)
            if extra is not None:
                columns = len(reader.fieldnames or ())
                yield Row(
                    number,
                    _Unreadable(
                        f"has {columns + len(extra)} cells where the header names {columns} "
                        "columns (a separator inside a cell needs quotes)"
                    ),
                )
                continue
            record: dict[str, Any] = {}
            try:
                for column, cell in raw.items():
                    if cell is None or cell == "":
                        continue
                    value = _csv_value(column, cell)
                    if "." in column:
                        head, leaf = column.split(".", 1)
                        record.setdefault(head, {})[leaf] = value
                    else:
                        record[column] = value
            except orjson.JSONDecodeError as exc:
                yield Row(number, _Unreadable(f"invalid JSON in an object column: {exc}"))
                continue
            yield Row(number, record)


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for raw in batch.to_pylist():
            number += 1
            try:
                values = {k: _plain(k, v) for k, v in raw.items() if v is not None}
            except orjson.JSONDecodeError as exc:
                yield Row(number, _Unreadable(f"invalid JSON in an object column: {exc}"))
                continue
            yield Row(number, {k: v for k, v in values.items() if v is not None})


def _plain(column: str, value: Any) -> Any:
    # Parquet timestamps come back as datetimes; the wire models take ISO text or datetimes.
    if isinstance(value, bytes):
        value = value.decode()
    if column in OBJECT_FIELDS and isinstance(value, str):
        return orjson.loads(value)  # JSON null: an absent value, like a Parquet null
    return value
