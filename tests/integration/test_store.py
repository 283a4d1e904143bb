"""Contract suite of the durable store: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from recloop.domain import (
    CatalogEntry,
    EventType,
    Feedback,
    Item,
    ItemStatus,
    RecommendationRecord,
    Scope,
    User,
)
from recloop.store import CatalogChange, CatalogCursor, Store
from recloop.store import schema as t
from recloop.store.keys import issue_key, key_id_of, verify_key
from recloop.store.sql import _items_json
from tests.factories import APP, OTHER_APP, T0, make_event, make_record, make_shadow

pytestmark = pytest.mark.integration


def page_all_changes(store: Store, limit: int) -> list[CatalogChange]:
    changes: list[CatalogChange] = []
    cursor: CatalogCursor | None = None
    for _ in range(1000):
        page = store.catalog.changes_since(cursor, limit)
        assert len(page) <= limit
        if not page:
            return changes
        changes.extend(page)
        cursor = page[-1].cursor
    raise AssertionError("changes_since never ran out of pages")


# --- apps and keys ---------------------------------------------------------------------------


def test_creating_an_app_twice_returns_false_the_second_time(store: Store) -> None:
    assert not store.tenancy.app_exists(APP)
    assert store.tenancy.create_app(APP, "App one", T0) is True
    assert store.tenancy.create_app(APP, "Renamed", T0) is False
    assert store.tenancy.app_exists(APP)
    assert not store.tenancy.app_exists(OTHER_APP)


def test_issued_key_verifies_with_its_app_and_scopes(apps: Store) -> None:
    key = issue_key(apps.tenancy, APP, [Scope.INGEST, Scope.SERVE], T0, name="ci")
    record = verify_key(apps.tenancy, key)
    assert record is not None
    assert record.app_id == APP
    assert record.scopes == frozenset({Scope.INGEST, Scope.SERVE})
    assert record.name == "ci"
    assert record.created_at == T0
    assert record.revoked_at is None
    with apps.engine.connect() as conn:
        (row,) = conn.execute(sa.select(t.api_keys)).all()
    secret = key.split("_", 2)[2]
    assert not any(isinstance(v, str) and secret in v for v in row)  # only a hash is stored
    assert [k.key_id for k in apps.tenancy.list_keys(APP)] == [record.key_id]
    assert apps.tenancy.list_keys(OTHER_APP) == []


def test_wrong_secret_with_a_real_key_id_is_refused(apps: Store) -> None:
    key = issue_key(apps.tenancy, APP, [Scope.ADMIN], T0)
    key_id = key_id_of(key)
    assert key_id is not None
    forged = f"rl_{key_id}_{'x' * 32}"
    assert key_id_of(forged) == key_id
    assert verify_key(apps.tenancy, forged) is None
    assert verify_key(apps.tenancy, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert verify_key(apps.tenancy, "rl_000000000000_nothing") is None
    assert verify_key(apps.tenancy, "not-a-key") is None
    assert verify_key(apps.tenancy, key) is not None


def test_revoked_key_no_longer_verifies_and_revoking_again_returns_false(apps: Store) -> None:
    key = issue_key(apps.tenancy, APP, [Scope.SERVE], T0)
    key_id = key_id_of(key)
    assert key_id is not None
    revoked_at = T0 + timedelta(hours=1)
    assert apps.tenancy.revoke_key(key_id, revoked_at) is True
    assert verify_key(apps.tenancy, key) is None
    stored = apps.tenancy.get_key(key_id)
    assert stored is not None
    assert stored.revoked_at == revoked_at
    assert apps.tenancy.revoke_key(key_id, revoked_at) is False
    assert apps.tenancy.revoke_key("unknown", revoked_at) is False


# --- catalog ---------------------------------------------------------------------------------


def test_upsert_replaces_every_field_of_an_item(apps: Store) -> None:
    first = Item(
        item_id="i1",
        type="video",
        title="First",
        description="About",
        category="music",
        tags=("a", "b"),
        creator_id="c1",
        locale="en",
        status=ItemStatus.ACTIVE,
        created_at=T0,
        metadata={"duration": 30, "nested": {"x": [1, 2]}},
    )
    apps.catalog.upsert_items(APP, [first], T0)
    stored = apps.catalog.get_item(APP, "i1")
    assert stored is not None
    assert stored == replace(first, updated_at=T0)

    later = T0 + timedelta(minutes=5)
    second = Item(
        item_id="i1",
        type="song",
        title=None,
        description=None,
        category=None,
        tags=(),
        creator_id=None,
        locale=None,
        status=ItemStatus.BLOCKED,
        created_at=T0 - timedelta(days=1),
        metadata={"other": True},
    )
    apps.catalog.upsert_items(APP, [second], later)
    assert apps.catalog.get_item(APP, "i1") == replace(second, updated_at=later)
    assert apps.catalog.count_items(APP) == 1


def test_upsert_without_created_at_keeps_the_first_stored_time(apps: Store) -> None:
    # ItemFields.created_at: "Default: first stored." A later update must not move it.
    apps.catalog.upsert_items(APP, [Item("i1", title="v1")], T0)
    later = T0 + timedelta(days=3)
    apps.catalog.upsert_items(APP, [Item("i1", title="v2")], later)
    stored = apps.catalog.get_item(APP, "i1")
    assert stored is not None
    assert stored.title == "v2"
    assert stored.updated_at == later
    assert stored.created_at == T0


def test_upsert_of_one_id_twice_in_a_batch_keeps_the_last(apps: Store) -> None:
    apps.catalog.upsert_items(APP, [Item("i1", title="old"), Item("i1", title="new")], T0)
    stored = apps.catalog.get_item(APP, "i1")
    assert stored is not None
    assert stored.title == "new"
    assert apps.catalog.count_items(APP) == 1


def test_items_are_separate_per_app(apps: Store) -> None:
    apps.catalog.upsert_items(APP, [Item("i1", title="one")], T0)
    apps.catalog.upsert_items(OTHER_APP, [Item("i1", title="two")], T0)
    one, two = apps.catalog.get_item(APP, "i1"), apps.catalog.get_item(OTHER_APP, "i1")
    assert one is not None
    assert two is not None
    assert (one.title, two.title) == ("one", "two")


def test_get_item_returns_none_for_a_missing_item(apps: Store) -> None:
    assert apps.catalog.get_item(APP, "missing") is None


def test_delete_item_removes_it_and_reports_whether_it_existed(apps: Store) -> None:
    apps.catalog.upsert_items(APP, [Item("i1"), Item("i2")], T0)
    assert apps.catalog.delete_item(APP, "i1") is True
    assert apps.catalog.get_item(APP, "i1") is None
    assert apps.catalog.get_item(APP, "i2") is not None
    assert apps.catalog.delete_item(APP, "i1") is False
    assert apps.catalog.count_items(APP) == 1


def test_active_entries_returns_only_existing_active_items_of_the_app(apps: Store) -> None:
    apps.catalog.upsert_items(
        APP,
        [
            Item("on", category="news", creator_id="c1"),
            Item("removed", status=ItemStatus.REMOVED),
            Item("blocked", status=ItemStatus.BLOCKED),
        ],
        T0,
    )
    apps.catalog.upsert_items(OTHER_APP, [Item("elsewhere")], T0)
    entries = apps.catalog.active_entries(APP, ["on", "removed", "blocked", "elsewhere", "missing"])
    assert entries == {"on": CatalogEntry("on", "news", "c1")}
    assert apps.catalog.active_entries(APP, []) == {}


def test_changes_since_pages_exactly_through_rows_sharing_one_updated_at(apps: Store) -> None:
    earlier = T0 - timedelta(hours=1)
    apps.catalog.upsert_items(APP, [Item(f"e{n:02d}") for n in range(3)], earlier)
    # One batch: 23 + 10 rows all with updated_at == T0, in two apps.
    apps.catalog.upsert_items(APP, [Item(f"i{n:02d}", category="c") for n in range(23)], T0)
    apps.catalog.upsert_items(
        OTHER_APP, [Item(f"i{n:02d}", status=ItemStatus.REMOVED) for n in range(10)], T0
    )

    everything = apps.catalog.changes_since(None, 1000)
    assert len(everything) == 36
    for limit in (1, 4, 7):
        paged = page_all_changes(apps, limit)
        assert paged == everything
    keys = [(c.app_id, c.item_id) for c in everything]
    assert len(set(keys)) == 36
    assert [c.cursor for c in everything] == sorted(c.cursor for c in everything)
    assert {c.item_id for c in everything[:3]} == {"e00", "e01", "e02"}
    assert all(c.updated_at == T0 for c in everything[3:])
    by_key = {(c.app_id, c.item_id): c for c in everything}
    assert by_key[(APP, "i05")].is_active
    assert by_key[(APP, "i05")].category == "c"
    assert not by_key[(OTHER_APP, "i05")].is_active


def test_changes_since_after_the_last_cursor_is_empty_until_an_item_changes(apps: Store) -> None:
    apps.catalog.upsert_items(APP, [Item("a"), Item("b")], T0)
    last = apps.catalog.changes_since(None, 10)[-1].cursor
    assert apps.catalog.changes_since(last, 10) == []
    later = T0 + timedelta(seconds=1)
    apps.catalog.upsert_items(APP, [Item("a", status=ItemStatus.REMOVED)], later)
    changes = apps.catalog.changes_since(last, 10)
    assert [(c.item_id, c.is_active, c.updated_at) for c in changes] == [("a", False, later)]


# --- users -----------------------------------------------------------------------------------


def test_upsert_users_replaces_attributes_and_keeps_created_at(apps: Store) -> None:
    apps.users.upsert_users(APP, [User("u1", {"region": "eu", "age": 30})], T0)
    later = T0 + timedelta(hours=2)
    apps.users.upsert_users(APP, [User("u1", {"language": "de"})], later)
    assert apps.users.get_user(APP, "u1") == User("u1", {"language": "de"}, T0, later)
    assert apps.users.get_user(OTHER_APP, "u1") is None


def test_shadow_lists_round_trip_per_shadow_in_request_order(apps: Store) -> None:
    apps.shadow_log.append(
        [
            make_shadow("r2", "next"),
            make_shadow("r1", "next"),
            make_shadow("r1", "other"),  # two shadows of one request
            make_shadow("r3", "next", app_id=OTHER_APP),
        ]
    )

    first = apps.shadow_log.scan(APP, "next", None, 1)
    rest = apps.shadow_log.scan(APP, "next", first[-1].request_id, 10)

    assert [r.request_id for r in first + rest] == ["r1", "r2"]
    assert first[0] == make_shadow("r1", "next")
    assert [r.request_id for r in apps.shadow_log.scan(APP, "other", None, 10)] == ["r1"]
    assert [r.request_id for r in apps.shadow_log.scan(OTHER_APP, "next", None, 10)] == ["r3"]
    supported = make_shadow("r4", "next", support=(0.5, 0.0))
    apps.shadow_log.append([supported])
    assert apps.shadow_log.scan(APP, "next", "r3", 10) == [supported]


def test_purge_user_removes_only_that_users_data(apps: Store) -> None:
    apps.users.upsert_users(APP, [User("u1"), User("u2")], T0)
    apps.events.append(
        [
            make_event("e1", user_id="u1", item_id="i1"),
            make_event("e2", user_id="u1", item_id="i2", event_type=EventType.HIDE),
            make_event("e3", user_id="u2", item_id="i1"),
            make_event("e4", user_id="u2", item_id="i3", event_type=EventType.REPORT),
        ]
    )
    apps.rec_log.append([make_record("r1", user_id="u1"), make_record("r2", user_id="u2")])
    apps.shadow_log.append(
        [make_shadow("r1", "next", user_id="u1"), make_shadow("r2", "next", user_id="u2")]
    )
    apps.suppressions.add(APP, [("u1", "i9", Feedback.NOT_INTERESTED)], T0)
    # The same user id in another app is another person.
    apps.events.append([make_event("x1", app_id=OTHER_APP, user_id="u1")])

    assert apps.users.purge_user(APP, "u1") is True

    assert apps.users.get_user(APP, "u1") is None
    assert apps.events.consumed_item_ids(APP, "u1", ["click", "hide"]) == set()
    assert apps.rec_log.get(APP, "r1") is None
    assert [s.user_id for s in apps.shadow_log.scan(APP, "next", None, 10)] == ["u2"]
    assert apps.suppressions.item_ids(APP, "u1") == set()

    assert apps.users.get_user(APP, "u2") is not None
    assert apps.events.count(APP) == 2
    assert apps.events.consumed_item_ids(APP, "u2", ["click"]) == {"i1"}
    assert apps.rec_log.get(APP, "r2") is not None
    assert apps.suppressions.item_ids(APP, "u2") == {"i3"}
    assert apps.events.count(OTHER_APP) == 1

    assert apps.users.purge_user(APP, "u1") is False


def test_purge_user_without_a_profile_still_removes_their_events(apps: Store) -> None:
    apps.events.append([make_event("e1", user_id="anon")])
    assert apps.users.purge_user(APP, "anon") is True
    assert apps.events.count(APP) == 0


# --- events ----------------------------------------------------------------------------------


def test_repeated_event_id_across_appends_is_stored_once(apps: Store) -> None:
    first = apps.events.append([make_event("e1"), make_event("e2")])
    assert first.inserted_keys == {(APP, "e1"), (APP, "e2")}
    assert first.inserted == 2
    again = apps.events.append([make_event("e2", item_id="other"), make_event("e3")])
    assert again.inserted_keys == {(APP, "e3")}
    assert apps.events.count(APP) == 3
    assert apps.events.consumed_item_ids(APP, "u1", ["click"]) == {"i1"}


def test_repeated_event_id_within_one_append_is_stored_once(apps: Store) -> None:
    result = apps.events.append(
        [make_event("e1"), make_event("e1", item_id="i2"), make_event("e2"), make_event("e1")]
    )
    assert result.inserted_keys == {(APP, "e1"), (APP, "e2")}
    assert apps.events.count(APP) == 2
    assert len(apps.events.read_since(0, 100)) == 2


def test_large_append_reports_exactly_the_new_keys(apps: Store) -> None:
    # Bigger than one multi-row INSERT batch, with stored events spread through it.
    apps.events.append([make_event(f"e{n}") for n in range(0, 2500, 3)])
    batch = [make_event(f"e{n}") for n in range(2500)]
    result = apps.events.append(batch)
    assert result.inserted_keys == {(APP, f"e{n}") for n in range(2500) if n % 3}
    assert apps.events.count(APP) == 2500


def test_same_event_id_in_two_apps_is_two_events(apps: Store) -> None:
    result = apps.events.append([make_event("e1"), make_event("e1", app_id=OTHER_APP)])
    assert result.inserted_keys == {(APP, "e1"), (OTHER_APP, "e1")}
    assert (apps.events.count(APP), apps.events.count(OTHER_APP)) == (1, 1)


def test_empty_append_stores_nothing(apps: Store) -> None:
    assert apps.events.append([]).inserted_keys == frozenset()
    assert apps.events.count(APP) == 0


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        (EventType.HIDE, "hide"),
        (EventType.NOT_INTERESTED, "not_interested"),
        (EventType.REPORT, "report"),
    ],
)
def test_feedback_event_creates_a_suppression_in_the_same_append(
    apps: Store, event_type: EventType, reason: str
) -> None:
    apps.events.append(
        [
            make_event("e1", item_id="bad", event_type=event_type),
            make_event("e2", item_id="fine", event_type=EventType.CLICK),
            make_event("e3", item_id="seen", event_type=EventType.SKIP),
        ]
    )
    assert apps.suppressions.item_ids(APP, "u1") == {"bad"}
    assert apps.suppressions.item_ids(APP, "u2") == set()
    with apps.engine.connect() as conn:
        rows = conn.execute(sa.select(t.suppressions.c.item_id, t.suppressions.c.reason)).all()
    assert [tuple(row) for row in rows] == [("bad", reason)]


def test_read_since_returns_events_in_arrival_order_and_pages(apps: Store) -> None:
    apps.events.append([make_event(f"a{n}", item_id=f"i{n}") for n in range(4)])
    apps.events.append([make_event(f"b{n}", app_id=OTHER_APP, item_id=f"j{n}") for n in range(3)])
    everything = apps.events.read_since(0, 100)
    assert [r.item_id for r in everything] == ["i0", "i1", "i2", "i3", "j0", "j1", "j2"]
    seqs = [r.seq for r in everything]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 7

    paged = []
    after = 0
    while page := apps.events.read_since(after, 3):
        assert len(page) <= 3
        paged.extend(page)
        after = page[-1].seq
    assert paged == everything
    assert apps.events.read_since(everything[2].seq, 2) == everything[3:5]
    assert apps.events.read_since(seqs[-1], 10) == []


def test_read_since_reports_type_app_and_item_of_each_event(apps: Store) -> None:
    apps.events.append(
        [
            make_event("s", item_id=None, event_type=EventType.SEARCH),
            make_event("p", app_id=OTHER_APP, item_id="i9", event_type=EventType.PURCHASE),
        ]
    )
    records = apps.events.read_since(0, 10)
    assert [(r.app_id, r.item_id, r.event_type) for r in records] == [
        (APP, None, EventType.SEARCH),
        (OTHER_APP, "i9", EventType.PURCHASE),
    ]


def test_consumed_item_ids_counts_only_the_given_event_types(apps: Store) -> None:
    apps.events.append(
        [
            make_event("e1", item_id="clicked", event_type=EventType.CLICK),
            make_event("e2", item_id="shown", event_type=EventType.IMPRESSION),
            make_event("e3", item_id="bought", event_type=EventType.PURCHASE),
            make_event("e4", item_id=None, event_type=EventType.SEARCH),
            make_event("e5", user_id="u2", item_id="theirs", event_type=EventType.CLICK),
            make_event("e6", app_id=OTHER_APP, item_id="elsewhere", event_type=EventType.CLICK),
        ]
    )
    assert apps.events.consumed_item_ids(APP, "u1", ["click", "purchase"]) == {
        "clicked",
        "bought",
    }
    assert apps.events.consumed_item_ids(APP, "u1", ["impression"]) == {"shown"}
    assert apps.events.consumed_item_ids(APP, "u1", ["search"]) == set()
    assert apps.events.consumed_item_ids(APP, "u1", ["like"]) == set()


def test_event_timestamps_come_back_as_the_same_instant_in_utc(apps: Store) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2024, 5, 1, 18, 15, 7, 654321, tzinfo=india)
    apps.events.append([make_event("e1", event_ts=local, server_ts=T0)])
    (record,) = apps.events.read_since(0, 10)
    assert record.event_ts == local
    assert record.event_ts.utcoffset() == timedelta(0)
    assert record.event_ts.replace(tzinfo=None) == datetime(2024, 5, 1, 12, 45, 7, 654321)


def test_naive_datetimes_are_refused_by_the_store(apps: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        apps.events.append([make_event("e1", event_ts=datetime(2024, 5, 1))])
    assert apps.events.count(APP) == 0


def test_event_context_is_stored_as_json(apps: Store) -> None:
    context = {"query": "jazz", "filters": {"year": [1990, 2000]}, "score": 0.5, "ok": True}
    apps.events.append([make_event("e1", context=context)])
    with apps.engine.connect() as conn:
        stored = conn.execute(sa.select(t.events.c.context)).scalar_one()
    assert stored == context


def test_an_appended_event_is_stored_exactly_as_the_typed_insert_stores_it(apps: Store) -> None:
    # Appends hand the driver plain tuples; the typed columns' insert is the reference.
    india = timezone(timedelta(hours=5, minutes=30))
    events = [
        make_event("e1", event_ts=datetime(2024, 5, 1, 18, 15, 7, 654321, tzinfo=india)),
        make_event("e2", context={"q": "jazz", "n": [1, 2.5]}, value=3.5, position=4),
        make_event("e3", event_ts=datetime(2024, 5, 1, 0, 0, 0, tzinfo=india), context=None),
    ]
    apps.events.append(events)
    columns = [c for c in t.events.columns if c.name != "seq"]
    with apps.engine.begin() as conn:
        conn.execute(
            t.events.insert(),
            [
                {c.name: getattr(e, c.name) for c in columns}
                | {"event_id": "typed-" + e.event_id, "event_type": e.event_type.value}
                for e in events
            ],
        )
        # Raw, as stored: text timestamps and JSON on SQLite, typed on PostgreSQL.
        names = ", ".join(f'"{c.name}"' for c in columns if c.name != "event_id")
        rows = conn.exec_driver_sql(f"SELECT event_id, {names} FROM events ORDER BY seq").fetchall()
    stored = {row[0]: tuple(row[1:]) for row in rows}
    assert len(stored) == 2 * len(events)
    for e in events:
        assert stored[e.event_id] == stored["typed-" + e.event_id]


# --- recommendation log and suppressions -----------------------------------------------------


def test_recommendation_record_round_trips(apps: Store) -> None:
    record = make_record("r1")
    plain = RecommendationRecord(
        app_id=APP,
        request_id="r2",
        user_id="u2",
        surface="similar",
        served_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-7))),
        items=(),
        model_version="fallback",
        experiment=None,
        variant="control",
        fallback=True,
        latency_ms=0.0,
    )
    apps.rec_log.append([record, plain])
    assert apps.rec_log.get(APP, "r1") == record
    got = apps.rec_log.get(APP, "r2")
    assert got == plain
    assert got is not None
    assert got.served_at.utcoffset() == timedelta(0)
    assert apps.rec_log.get(OTHER_APP, "r1") is None
    assert apps.rec_log.get(APP, "missing") is None


def test_a_served_list_is_stored_exactly_as_the_typed_insert_stores_it(apps: Store) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    records = [
        make_record("r1", served_at=datetime(2024, 5, 1, 18, 15, 7, 654321, tzinfo=india)),
        make_record("r2", items=(), experiment=None, fallback=True, session_id=None),
    ]
    apps.rec_log.append(records)
    with apps.engine.begin() as conn:
        conn.execute(
            t.recommendation_log.insert(),
            [
                {c.name: getattr(r, c.name) for c in t.recommendation_log.columns}
                | {"request_id": "typed-" + r.request_id, "items": _items_json(r.items)}
                for r in records
            ],
        )
        names = ", ".join(f'"{c.name}"' for c in t.recommendation_log.columns)
        rows = conn.exec_driver_sql(f"SELECT {names} FROM recommendation_log").fetchall()
    stored = {row[0]: tuple(row[1:]) for row in rows}
    assert len(stored) == 2 * len(records)
    for r in records:
        assert stored[r.request_id] == stored["typed-" + r.request_id]
        assert apps.rec_log.get(APP, r.request_id) == r


def test_adding_a_suppression_twice_keeps_one_with_the_first_reason(apps: Store) -> None:
    apps.suppressions.add(APP, [("u1", "i1", Feedback.HIDE)], T0)
    apps.suppressions.add(
        APP, [("u1", "i1", Feedback.REPORT), ("u1", "i2", Feedback.NOT_INTERESTED)], T0
    )
    apps.suppressions.add(APP, [("u1", "i3", Feedback.HIDE), ("u1", "i3", Feedback.HIDE)], T0)
    assert apps.suppressions.item_ids(APP, "u1") == {"i1", "i2", "i3"}
    assert apps.suppressions.item_ids(OTHER_APP, "u1") == set()
    with apps.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.suppressions.c.item_id, t.suppressions.c.reason).order_by(
                t.suppressions.c.item_id
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("i1", "hide"),
        ("i2", "not_interested"),
        ("i3", "hide"),
    ]


def test_shown_counts_count_a_users_served_items_within_the_window(apps: Store) -> None:
    old = make_record("old", served_at=T0 - timedelta(days=2))
    apps.rec_log.append([make_record("r1"), make_record("r2"), old, make_record("x", user_id="u2")])

    counts = apps.rec_log.shown_counts(APP, "u1", T0 - timedelta(hours=1))

    assert counts == {"i1": 2, "i2": 2}
    assert apps.rec_log.shown_counts(APP, "u1", T0 - timedelta(days=3)) == {"i1": 3, "i2": 3}
    assert apps.rec_log.shown_counts(OTHER_APP, "u1", T0 - timedelta(days=3)) == {}
    # Lists served at or after ``until`` (the request being shadowed) are not counted.
    assert apps.rec_log.shown_counts(APP, "u1", T0 - timedelta(days=3), until=T0) == {
        "i1": 1,
        "i2": 1,
    }


def test_shown_counts_of_one_surface_leave_the_others_out(apps: Store) -> None:
    apps.rec_log.append(
        [make_record("h1"), make_record("h2"), make_record("s1", surface="similar")]
    )
    since = T0 - timedelta(hours=1)

    assert apps.rec_log.shown_counts(APP, "u1", since, surface="home") == {"i1": 2, "i2": 2}
    assert apps.rec_log.shown_counts(APP, "u1", since, surface="similar") == {"i1": 1, "i2": 1}
    assert apps.rec_log.shown_counts(APP, "u1", since) == {"i1": 3, "i2": 3}
