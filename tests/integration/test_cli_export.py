"""``recloop export`` driven in-process, its files read back by ``recloop import`` elsewhere."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import Result

from recloop.store import Store, open_store
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration

APP = "default"
T = datetime(2024, 3, 1, 9, 30, 15, 250000, tzinfo=UTC)
KINDS = ("items", "users", "events")
FORMATS = ("csv", "jsonl", "parquet")

ITEMS: list[dict[str, Any]] = [
    {
        "itemId": f"i{n}",
        "type": "song" if n % 2 else "video",
        "title": f"Title {n}, with “quotes”" if n != 3 else "line\nbreak",
        "category": ["jazz", "news", None][n % 3],
        "tags": [f"t{n}", "shared"][: 1 + n % 2],
        "creatorId": f"c{n % 2}",
        "locale": "fr" if n == 1 else None,
        "status": "removed" if n == 4 else "active",
        "createdAt": (T - timedelta(days=n, microseconds=n)).isoformat(),
        "metadata": {"rank": n, "score": n / 7, "flags": {"hd": n % 2 == 0}} if n else {},
    }
    for n in range(6)
]
USERS: list[dict[str, Any]] = [
    {"userId": f"u{n}", "attributes": {"region": ["eu", "us"][n % 2], "age": 20 + n}}
    for n in range(4)
]
EVENTS: list[dict[str, Any]] = [
    {
        "eventId": f"e{n}",
        "userId": f"u{n % 4}",
        "itemId": f"i{n % 6}",
        "eventType": ["click", "view", "purchase", "not_interested"][n % 4],
        "value": n * 1.5 if n % 3 else None,
        "surface": "home" if n % 2 else None,
        "sessionId": f"s{n // 5}",
        "device": "android" if n % 5 == 0 else None,
        "position": n % 10,
        "requestId": f"r{n // 3}",
        "eventTs": (T + timedelta(hours=n, microseconds=7)).isoformat(),
        "context": {"page": n, "tags": ["a", "b"]} if n % 4 == 1 else None,
    }
    for n in range(20)
] + [
    {
        "eventId": "q1",
        "userId": "u1",
        "eventType": "search",
        "query": "Call +1 415 555 0100 re: Jazz",
        "eventTs": (T + timedelta(days=2)).isoformat(),
    }
]


def run(*args: str) -> Result:
    return run_cli(*args)


def flat(text: str) -> str:
    """Text with box-drawing characters and runs of whitespace collapsed to one space."""
    return " ".join(re.sub(r"[│┃╭╮╰╯─━┌┐└┘├┤┬┴┼╇┡┩┏┓┗┛┳┻╋]", " ", text).split())


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(
        b"".join(
            orjson.dumps({k: v for k, v in r.items() if v is not None}) + b"\n" for r in records
        )
    )
    return path


@contextmanager
def opened(data_dir: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{data_dir / 'recloop.db'}")
    try:
        yield store
    finally:
        store.close()


def stored(data_dir: Path) -> dict[str, list[Any]]:
    """Every stored row of each kind, less the stamps only the server makes."""
    with opened(data_dir) as store:
        return {
            "items": [
                dataclasses.replace(item, updated_at=None)
                for item in store.catalog.scan_items(APP, None, 1000)
            ],
            "users": [
                dataclasses.replace(user, created_at=None, updated_at=None)
                for user in store.users.scan_users(APP, None, 1000)
            ],
            "events": [
                dataclasses.replace(event, server_ts=T)
                for _, event in store.events.scan(0, 1000, app_id=APP)
            ],
        }


@pytest.fixture
def loaded(data_dir: Path, tmp_path: Path) -> Path:
    """The data directory, with ``ITEMS``, ``USERS`` and ``EVENTS`` imported."""
    for kind, records in (("items", ITEMS), ("users", USERS), ("events", EVENTS)):
        path = write_jsonl(tmp_path / f"given-{kind}.jsonl", records)
        result = run("import", str(path), "--kind", kind, "--strict")
        assert result.exit_code == 0, result.output
    return data_dir


def use_data_dir(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    monkeypatch.setenv("RECLOOP_DATA_DIR", str(path))
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_imported_into_a_fresh_data_dir_stores_the_same_rows(
    loaded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    expected = stored(loaded)
    files = {}
    for kind in KINDS:
        files[kind] = tmp_path / f"{kind}.{fmt}"
        result = run("export", str(files[kind]), "--kind", kind)
        assert result.exit_code == 0, result.output
        summary = flat(result.stdout)
        assert f"rows written {len(expected[kind])}" in summary
        assert f"format {fmt}" in summary
        assert f"file {files[kind]}" in summary
        assert re.search(r"seconds \d+\.\d\d", summary)

    fresh = use_data_dir(monkeypatch, tmp_path / "fresh")
    for kind in KINDS:
        result = run("import", str(files[kind]), "--kind", kind, "--strict")
        assert result.exit_code == 0, result.output
        assert f"stored {len(expected[kind])}" in flat(result.stdout)

    assert stored(fresh) == expected
    assert len(expected["events"]) == len(EVENTS)
    assert (
        next(e for e in expected["events"] if e.event_id == "q1").query == "call <phone> re: jazz"
    )


def test_reimporting_an_export_into_the_same_app_counts_duplicates(
    loaded: Path, tmp_path: Path
) -> None:
    before = stored(loaded)
    path = tmp_path / "events.parquet"
    assert run("export", str(path), "--kind", "events").exit_code == 0
    result = run("import", str(path), "--kind", "events")
    assert result.exit_code == 0, result.output
    summary = flat(result.stdout)
    assert "stored 0" in summary
    assert f"duplicates (already stored) {len(EVENTS)}" in summary
    assert stored(loaded) == before


def test_a_deleted_users_events_are_not_exported(loaded: Path, tmp_path: Path) -> None:
    with opened(loaded) as store:
        assert store.users.forget_user(APP, "u2", "test", datetime.now(UTC)) is not None
    events_path, users_path = tmp_path / "events.jsonl", tmp_path / "users.jsonl"
    assert run("export", str(events_path), "--kind", "events").exit_code == 0
    assert run("export", str(users_path), "--kind", "users").exit_code == 0
    exported = [orjson.loads(line) for line in events_path.read_bytes().splitlines()]
    assert [e["eventId"] for e in exported] == [e["eventId"] for e in EVENTS if e["userId"] != "u2"]
    assert "u2" not in {e["userId"] for e in exported}
    users = [orjson.loads(line)["userId"] for line in users_path.read_bytes().splitlines()]
    assert users == ["u0", "u1", "u3"]


def test_since_and_until_filter_on_event_time(loaded: Path, tmp_path: Path) -> None:
    path = tmp_path / "window.csv"
    # e5 happened at T + 5 h (and 7 µs): kept by since; e9 at T + 9 h: left out by until.
    since = (T + timedelta(hours=5)).replace(microsecond=0).isoformat()
    until = (T + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S.%f")  # naive: UTC
    result = run("export", str(path), "--kind", "events", "--since", since, "--until", until)
    assert result.exit_code == 0, result.output
    lines = path.read_text().splitlines()
    assert [line.split(",", 1)[0] for line in lines[1:]] == ["e5", "e6", "e7", "e8"]
    summary = flat(result.stdout)
    assert "rows written 4" in summary
    assert f"events read {len(EVENTS)}" in summary


def test_an_existing_file_is_replaced_only_with_force(loaded: Path, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("keep me\n")
    refused = run("export", str(path), "--kind", "users")
    assert refused.exit_code == 1
    assert "exists; use --force to replace it" in flat(refused.stderr)
    assert path.read_text() == "keep me\n"

    forced = run("export", str(path), "--kind", "users", "--force")
    assert forced.exit_code == 0, forced.output
    assert path.read_text().splitlines() == [
        "userId,attributes",
        *(f'u{n},"{{""region"":""{["eu", "us"][n % 2]}"",""age"":{20 + n}}}"' for n in range(4)),
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["out.csv", "--kind", "items", "--app", "nope"], "app: 'nope' does not exist"),
        (["out.xlsx", "--kind", "items"], "unknown extension '.xlsx'"),
        (["out.csv", "--kind", "items", "--format", "xml"], "format: must be one of csv, jsonl"),
        (["out.csv", "--kind", "events", "--since", "last week"], "since: must be an ISO 8601"),
        (["out.csv", "--kind", "users", "--since", "2024-01-01"], "applies to events only"),
    ],
)
def test_a_bad_app_format_or_time_fails_with_the_reason(
    loaded: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("export", *args)
    assert result.exit_code == 1
    assert message in flat(result.stderr)
    assert list(tmp_path.glob("out*")) == []


def test_an_unknown_kind_is_a_usage_error(loaded: Path) -> None:
    result = run("export", "out.csv", "--kind", "orders")
    assert result.exit_code == 2
    assert "must be items, users or events" in flat(result.stderr)
