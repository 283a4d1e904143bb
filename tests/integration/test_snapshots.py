"""Training-data snapshots: Parquet exports of one app, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from recloop.data.snapshots import (
    TABLES,
    Snapshot,
    list_snapshots,
    open_snapshot,
    take_snapshot,
)
from recloop.domain import (
    Event,
    EventType,
    Item,
    ItemStatus,
    RecommendationRecord,
    ServedItem,
    User,
)
from recloop.errors import SnapshotRefused
from recloop.store import Store, open_store
from recloop.store.migrate import head_revision

pytestmark = pytest.mark.integration

APP = "shop"
OTHER_APP = "news"
NOW = datetime(2024, 5, 3, 9, 15, 42, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
# 00:30 on May 2nd at +02:00 is 22:30 on May 1st in UTC: partitions follow the UTC date.
LATE_EVENING = datetime(2024, 5, 2, 0, 30, 0, 250000, tzinfo=PLUS2)
MAY2 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)


def make_events() -> list[Event]:
    return [
        Event(
            app_id=APP,
            event_id="e1",
            user_id="u1",
            event_type=EventType.CLICK,
            event_ts=LATE_EVENING,
            server_ts=LATE_EVENING + timedelta(seconds=3),
            item_id="i1",
            surface="home",
            session_id="s1",
            device="ios",
            position=0,
            request_id="r1",
            context={"query": "jazz", "tags": ["a", "b"]},
        ),
        Event(
            app_id=APP,
            event_id="e2",
            user_id="u1",
            event_type=EventType.VIEW,
            event_ts=MAY2,
            server_ts=MAY2 + timedelta(hours=2),
            item_id="i1",
            value=42.5,
        ),
        Event(
            app_id=APP,
            event_id="e3",
            user_id="u2",
            event_type=EventType.SEARCH,
            event_ts=MAY2 + timedelta(minutes=5),
            server_ts=MAY2 + timedelta(minutes=5),
            context={"query": "blues"},
        ),
    ]


def make_records() -> list[RecommendationRecord]:
    return [
        RecommendationRecord(
            app_id=APP,
            request_id="r1",
            user_id="u1",
            surface="home",
            served_at=LATE_EVENING - timedelta(seconds=1),
            items=(
                ServedItem("i1", 0, 0.9, "trending", 0.75),
                ServedItem("i2", 1, 0.5, "popular", 1.0),
                ServedItem("i3", 2, 0.25, "newest", 0.1, (("newest", 0.5), ("fresh", 1.0))),
            ),
            model_version="pop-3",
            experiment="exp-a",
            variant="treatment",
            fallback=False,
            latency_ms=12.5,
            session_id="s1",
            device="ios",
        ),
        RecommendationRecord(
            app_id=APP,
            request_id="r2",
            user_id="u2",
            surface="similar",
            served_at=MAY2,
            items=(ServedItem("i2", 0, 1.0, "same-category", 1.0),),
            model_version="pop-3",
            experiment=None,
            variant="control",
            fallback=True,
            latency_ms=3.0,
        ),
    ]


@pytest.fixture
def filled(store: Store) -> Store:
    """A store with one app's events, served lists, items and users, and another app's events."""
    t0 = datetime(2024, 4, 1, tzinfo=UTC)
    store.tenancy.create_app(APP, "Shop", t0)
    store.tenancy.create_app(OTHER_APP, "News", t0)
    store.events.append(make_events())
    store.events.append([Event(OTHER_APP, "x1", "v1", EventType.CLICK, MAY2, MAY2, item_id="n1")])
    store.rec_log.append(make_records())
    store.catalog.upsert_items(
        APP,
        [
            Item("i1", title="Kind of Blue", tags=("jazz", "modal"), metadata={"year": 1959}),
            Item("i2", status=ItemStatus.REMOVED),
        ],
        t0,
    )
    store.catalog.upsert_items(OTHER_APP, [Item("n1")], t0)
    store.users.upsert_users(APP, [User("u1", {"country": "FR"}), User("u2")], t0)
    return store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Where snapshots go: beside, not around, the SQLite store of the test."""
    return tmp_path / "snapshots"


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_snapshot_round_trips_every_table_with_utc_aware_timestamps(
    filled: Store, root: Path
) -> None:
    snap = take_snapshot(filled, root, app_id=APP, now=NOW, page_size=2)
    events = snap.table("events").to_pylist()
    stored = filled.events.scan(0, 100, app_id=APP)
    assert [row["seq"] for row in events] == [seq for seq, _ in stored]
    assert [row["event_id"] for row in events] == ["e1", "e2", "e3"]
    first, second, third = events
    assert first["event_ts"] == LATE_EVENING
    assert first["event_ts"].utcoffset() == timedelta(0)
    assert first["event_ts"].microsecond == 250000
    assert first["server_ts"] == LATE_EVENING + timedelta(seconds=3)
    assert json.loads(first["context"]) == {"query": "jazz", "tags": ["a", "b"]}
    assert (first["event_type"], first["position"], first["request_id"]) == ("click", 0, "r1")
    assert (second["value"], second["context"], second["surface"]) == (42.5, None, None)
    assert third["item_id"] is None
    assert {row["app_id"] for row in events} == {APP}

    log = snap.table("recommendation_log").to_pylist()
    assert [row["request_id"] for row in log] == ["r1", "r2"]
    # JSON text; PostgreSQL's jsonb may reorder the keys.
    assert json.loads(log[0]["items"][2].pop("sourceScores")) == {"newest": 0.5, "fresh": 1.0}
    assert log[0]["items"][2] == {
        "itemId": "i3",
        "position": 2,
        "score": 0.25,
        "source": "newest",
        "propensity": 0.1,
    }
    assert log[0]["items"][0]["sourceScores"] is None
    assert log[0]["served_at"] == LATE_EVENING - timedelta(seconds=1)
    assert (log[1]["experiment"], log[1]["fallback"], log[1]["device"]) == (None, True, None)

    items = snap.table("items").to_pylist()
    assert [row["item_id"] for row in items] == ["i1", "i2"]
    assert items[0]["tags"] == ["jazz", "modal"]
    assert json.loads(items[0]["metadata"]) == {"year": 1959}
    assert items[0]["title"] == "Kind of Blue"
    assert items[1]["status"] == "removed"
    users = snap.table("users").to_pylist()
    assert [(u["user_id"], json.loads(u["attributes"])) for u in users] == [
        ("u1", {"country": "FR"}),
        ("u2", {}),
    ]
    assert users[0]["created_at"] == datetime(2024, 4, 1, tzinfo=UTC)


def test_snapshot_manifest_records_counts_bounds_and_schema_revision(
    filled: Store, root: Path
) -> None:
    snap = take_snapshot(filled, root, app_id=APP, now=NOW)
    m = snap.manifest
    assert m.row_counts == {"events": 3, "recommendation_log": 2, "items": 2, "users": 2}
    assert m.max_event_seq == max(seq for seq, _ in filled.events.scan(0, 100, app_id=APP))
    assert m.min_event_ts == LATE_EVENING
    assert m.max_event_ts == MAY2 + timedelta(minutes=5)
    assert m.schema_revision == head_revision()
    assert (m.app_id, m.created_at) == (APP, NOW)
    digest = hashlib.sha256(
        json.dumps(
            {"max_event_seq": m.max_event_seq, "row_counts": dict(m.row_counts)}, sort_keys=True
        ).encode()
    ).hexdigest()
    assert snap.version == f"20240503T091542Z-{digest[:8]}"
    assert snap.path == root / snap.version
    on_disk = json.loads((snap.path / "manifest.json").read_text())
    assert on_disk["row_counts"] == dict(m.row_counts)
    assert open_snapshot(snap.path).manifest == m


def test_events_and_served_lists_are_partitioned_by_utc_date(filled: Store, root: Path) -> None:
    snap = take_snapshot(filled, root, app_id=APP, now=NOW)
    for name in ("events", "recommendation_log"):
        parts = sorted(
            str(p.relative_to(snap.path / name)) for p in (snap.path / name).rglob("*.parquet")
        )
        assert parts == ["date=2024-05-01/part-0.parquet", "date=2024-05-02/part-0.parquet"]
    may1 = pq.read_table(snap.path / "events" / "date=2024-05-01" / "part-0.parquet")
    assert may1.column("event_id").to_pylist() == ["e1"]  # 00:30 at +02:00 is May 1st in UTC
    may2 = pq.read_table(snap.path / "events" / "date=2024-05-02" / "part-0.parquet")
    assert sorted(may2.column("event_id").to_pylist()) == ["e2", "e3"]
    assert {p.name for p in snap.path.iterdir()} == {
        "events",
        "recommendation_log",
        "items.parquet",
        "users.parquet",
        "manifest.json",
    }


def test_duckdb_reads_every_table_through_its_glob(filled: Store, root: Path) -> None:
    snap = take_snapshot(filled, root, app_id=APP, now=NOW)
    con = duckdb.connect()
    for name in TABLES:
        (count,) = con.execute(
            "SELECT count(*) FROM read_parquet(?)", [snap.glob(name)]
        ).fetchall()[0]
        assert count == snap.manifest.row_counts[name], name
    per_day = con.execute(
        "SELECT CAST(date AS VARCHAR), count(*) FROM read_parquet(?, hive_partitioning = true) "
        "GROUP BY ALL ORDER BY 1",
        [snap.glob("events")],
    ).fetchall()
    assert per_day == [("2024-05-01", 1), ("2024-05-02", 2)]


def test_impressions_explode_each_served_list_to_positions_0_to_n_minus_1(
    filled: Store, root: Path
) -> None:
    snap = take_snapshot(filled, root, app_id=APP, now=NOW)
    rows = snap.impressions().to_pylist()
    assert [(r["request_id"], r["position"], r["item_id"]) for r in rows] == [
        ("r1", 0, "i1"),
        ("r1", 1, "i2"),
        ("r1", 2, "i3"),
        ("r2", 0, "i2"),
    ]
    assert json.loads(rows[2].pop("source_scores")) == {"newest": 0.5, "fresh": 1.0}
    assert rows[2] == {
        "request_id": "r1",
        "user_id": "u1",
        "surface": "home",
        "served_at": LATE_EVENING - timedelta(seconds=1),
        "session_id": "s1",
        "device": "ios",
        "item_id": "i3",
        "position": 2,
        "score": 0.25,
        "source": "newest",
        "propensity": 0.1,
        "model_version": "pop-3",
        "variant": "treatment",
    }
    assert rows[3]["variant"] == "control"


def test_a_second_snapshot_gets_a_new_directory_and_leaves_the_first_unchanged(
    filled: Store, root: Path
) -> None:
    first = take_snapshot(filled, root, app_id=APP, now=NOW)
    before = files_of(first.path)
    later = MAY2 + timedelta(hours=1)
    filled.events.append([Event(APP, "e4", "u3", EventType.CLICK, later, later, item_id="i2")])
    second = take_snapshot(filled, root, app_id=APP, now=NOW + timedelta(days=1))
    assert second.path != first.path
    assert second.manifest.row_counts["events"] == 4
    assert files_of(first.path) == before
    assert open_snapshot(first.path).table("events").num_rows == 3
    assert [s.version for s in list_snapshots(root)] == [second.version, first.version]


def test_a_snapshot_never_overwrites_an_existing_version(filled: Store, root: Path) -> None:
    first = take_snapshot(filled, root, app_id=APP, now=NOW)
    before = files_of(first.path)
    with pytest.raises(SnapshotRefused, match="exists already"):
        take_snapshot(filled, root, app_id=APP, now=NOW)
    assert files_of(first.path) == before
    assert sorted(os.listdir(root)) == [first.version]  # no staging directory left behind


def test_an_app_without_events_is_refused(filled: Store, root: Path) -> None:
    filled.tenancy.create_app("empty", "Empty", NOW)
    filled.catalog.upsert_items("empty", [Item("i1")], NOW)
    with pytest.raises(SnapshotRefused, match="nothing to snapshot: app 'empty' has no events"):
        take_snapshot(filled, root, app_id="empty", now=NOW)
    assert not root.exists()


def test_an_unknown_app_is_refused(filled: Store, root: Path) -> None:
    with pytest.raises(SnapshotRefused, match="unknown app 'nope'"):
        take_snapshot(filled, root, app_id="nope", now=NOW)
    assert not root.exists()


def test_a_store_that_was_never_migrated_is_refused(store_url: str, root: Path) -> None:
    bare = open_store(store_url)
    try:
        with pytest.raises(SnapshotRefused, match="not at the newest migration"):
            take_snapshot(bare, root, app_id=APP, now=NOW)
    finally:
        bare.close()
    assert not root.exists()


def test_a_store_at_another_revision_is_refused(filled: Store, root: Path) -> None:
    with filled.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000_half_way'"))
    with pytest.raises(SnapshotRefused, match="0000_half_way"):
        take_snapshot(filled, root, app_id=APP, now=NOW)


def test_a_directory_without_manifest_is_refused_and_not_listed(filled: Store, root: Path) -> None:
    done = take_snapshot(filled, root, app_id=APP, now=NOW)
    half = root / "20240504T000000Z-deadbeef"
    (half / "events").mkdir(parents=True)
    with pytest.raises(SnapshotRefused, match=r"no manifest\.json"):
        open_snapshot(half)
    with pytest.raises(SnapshotRefused, match="no snapshot at"):
        open_snapshot(root / "missing")
    assert [s.version for s in list_snapshots(root)] == [done.version]
    assert list_snapshots(root / "missing") == []


def test_an_empty_served_log_reads_back_as_an_empty_table(store: Store, root: Path) -> None:
    store.tenancy.create_app(APP, "Shop", NOW)
    store.events.append([Event(APP, "e1", "u1", EventType.CLICK, MAY2, MAY2, item_id="i1")])
    snap: Snapshot = take_snapshot(store, root, app_id=APP, now=NOW)
    assert snap.manifest.row_counts == {
        "events": 1,
        "recommendation_log": 0,
        "items": 0,
        "users": 0,
    }
    assert snap.table("recommendation_log").num_rows == 0
    assert snap.impressions().num_rows == 0
    assert snap.table("items").num_rows == 0
    with pytest.raises(ValueError, match="unknown table"):
        snap.table("suppressions")


def test_version_is_a_utc_timestamp_and_a_hash(filled: Store, root: Path) -> None:
    snap = take_snapshot(filled, root, app_id=APP, now=NOW.astimezone(PLUS2))
    assert re.fullmatch(r"20240503T091542Z-[0-9a-f]{8}", snap.version)
    with pytest.raises(ValueError, match="timezone-aware"):
        take_snapshot(filled, root, app_id=APP, now=NOW.replace(tzinfo=None))
