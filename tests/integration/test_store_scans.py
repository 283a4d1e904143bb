"""The store's export reads (scans), paged, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest

from recloop.domain import (
    EventType,
    Item,
    ItemStatus,
    User,
)
from recloop.store import Store
from tests.factories import APP, OTHER_APP, T0, make_event, make_record

pytestmark = pytest.mark.integration

K = TypeVar("K")
V = TypeVar("V")


def page_through(
    fetch: Callable[[K | None, int], list[V]], cursor_of: Callable[[V], K], limit: int
) -> list[V]:
    """Every row, fetched ``limit`` at a time; fails if a page is too long or paging loops."""
    rows: list[V] = []
    cursor: K | None = None
    for _ in range(100):
        page = fetch(cursor, limit)
        assert len(page) <= limit
        if not page:
            return rows
        rows.extend(page)
        cursor = cursor_of(page[-1])
    raise AssertionError("paging never ran out of rows")


def test_event_scan_returns_full_events_of_every_app_in_seq_order(apps: Store) -> None:
    full = make_event(
        "e1",
        user_id="u7",
        event_type=EventType.PURCHASE,
        event_ts=datetime(2024, 5, 2, 1, 30, tzinfo=timezone(timedelta(hours=2))),
        value=19.99,
        surface="home",
        session_id="s9",
        device="android",
        position=3,
        request_id="r1",
        context={"query": "jazz", "nested": {"k": [1, 2]}},
    )
    apps.events.append([full, make_event("e2", app_id=OTHER_APP), make_event("e3", item_id=None)])
    scanned = apps.events.scan(0, 100)
    assert [e.event_id for _, e in scanned] == ["e1", "e2", "e3"]
    seqs = [seq for seq, _ in scanned]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert scanned[0][1] == full  # every field, context included
    assert scanned[0][1].event_ts.utcoffset() == timedelta(0)  # aware, in UTC
    assert scanned[2][1].item_id is None
    assert scanned[2][1].context is None


def test_event_scan_pages_after_a_seq_and_filters_by_app(apps: Store) -> None:
    apps.events.append([make_event(f"e{i}", app_id=APP if i % 3 else OTHER_APP) for i in range(10)])
    every = page_through(lambda after, n: apps.events.scan(after or 0, n), lambda r: r[0], 3)
    assert [e.event_id for _, e in every] == [f"e{i}" for i in range(10)]
    mine = page_through(
        lambda after, n: apps.events.scan(after or 0, n, app_id=APP), lambda r: r[0], 2
    )
    assert [e.event_id for _, e in mine] == [f"e{i}" for i in range(10) if i % 3]
    last_seq = every[-1][0]
    assert apps.events.scan(last_seq, 5) == []
    assert [e.event_id for _, e in apps.events.scan(every[7][0], 5)] == ["e8", "e9"]


def test_recommendation_log_scan_pages_in_request_id_order(apps: Store) -> None:
    apps.rec_log.append([make_record(r) for r in ("r3", "r1", "r5", "r2")])
    apps.rec_log.append([make_record("r4", app_id=OTHER_APP)])
    every = page_through(apps.rec_log.scan, lambda r: r.request_id, 2)
    assert [r.request_id for r in every] == ["r1", "r2", "r3", "r4", "r5"]
    assert every[0] == make_record("r1")
    mine = page_through(
        lambda after, n: apps.rec_log.scan(after, n, app_id=APP), lambda r: r.request_id, 3
    )
    assert [r.request_id for r in mine] == ["r1", "r2", "r3", "r5"]
    assert [r.request_id for r in apps.rec_log.scan("r2", 2, app_id=APP)] == ["r3", "r5"]


def test_item_scan_pages_one_apps_items_of_any_status_in_id_order(apps: Store) -> None:
    apps.catalog.upsert_items(
        APP,
        [
            Item("b", tags=("x", "y"), metadata={"price": 3}),
            Item("a", status=ItemStatus.REMOVED),
            Item("c", status=ItemStatus.BLOCKED),
            Item("d", category="jazz"),
        ],
        T0,
    )
    apps.catalog.upsert_items(OTHER_APP, [Item("a0"), Item("bb")], T0)
    items = page_through(
        lambda after, n: apps.catalog.scan_items(APP, after, n), lambda i: i.item_id, 3
    )
    assert [i.item_id for i in items] == ["a", "b", "c", "d"]
    assert items[0].status is ItemStatus.REMOVED
    assert items[1] == Item(
        "b", tags=("x", "y"), metadata={"price": 3}, created_at=T0, updated_at=T0
    )
    assert [i.item_id for i in apps.catalog.scan_items(APP, "b", 10)] == ["c", "d"]
    assert apps.catalog.scan_items("nobody", None, 10) == []


def test_user_scan_pages_one_apps_users_in_id_order(apps: Store) -> None:
    apps.users.upsert_users(APP, [User("u2", {"age": 30}), User("u1"), User("u3")], T0)
    apps.users.upsert_users(OTHER_APP, [User("u0")], T0)
    users = page_through(
        lambda after, n: apps.users.scan_users(APP, after, n), lambda u: u.user_id, 2
    )
    assert [u.user_id for u in users] == ["u1", "u2", "u3"]
    assert users[1] == User("u2", {"age": 30}, T0, T0)
    assert [u.user_id for u in apps.users.scan_users(APP, "u1", 1)] == ["u2"]


def test_scans_can_start_at_a_time_so_a_report_reads_only_its_window(apps: Store) -> None:
    apps.rec_log.append([make_record(f"r{h}", served_at=T0 + timedelta(hours=h)) for h in range(4)])
    apps.events.append(
        [make_event(f"e{h}", server_ts=T0 + timedelta(hours=h, seconds=30)) for h in range(4)]
    )
    since = T0 + timedelta(hours=2)

    lists = apps.rec_log.scan(None, 10, app_id=APP, served_since=since)
    events = apps.events.scan(0, 10, app_id=APP, received_since=since)

    assert [r.request_id for r in lists] == ["r2", "r3"]
    assert [e.event_id for _, e in events] == ["e2", "e3"]
    assert len(apps.rec_log.scan(None, 10, app_id=APP)) == 4
