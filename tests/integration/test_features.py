"""Features: the offline replay and the online store agree; nothing leaks from the future."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis

from recloop.config import LabelConfig
from recloop.data.labels import label_impressions
from recloop.data.training import point_in_time_features
from recloop.domain import Event, EventType, Item
from recloop.errors import OnlineStoreUnavailable
from recloop.features.definitions import FEATURE_NAMES, FeatureSet, ItemMeta
from recloop.features.online import REBUILDING_KEY, FeatureMaterializer, OnlineFeatures
from recloop.features.state import Counters
from recloop.online import open_online_store
from recloop.online.protocols import OnlineStore
from recloop.store import Store, open_store
from recloop.store.migrate import upgrade

pytestmark = pytest.mark.integration

END = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
USERS = [f"u{n}" for n in range(12)]
ITEMS = [f"i{n}" for n in range(30)]
TYPES = [
    EventType.IMPRESSION,
    EventType.IMPRESSION,
    EventType.CLICK,
    EventType.VIEW,
    EventType.LIKE,
    EventType.SKIP,
]


def _events(seed: int, n: int = 1500, skew: timedelta = timedelta(0)) -> list[Event]:
    """Events in arrival order; the clocks of the first four users are ``skew`` behind."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ts = END - timedelta(seconds=rng.uniform(0, 12 * 86_400))
        event_type = rng.choice(TYPES)
        user_id = rng.choice(USERS)
        out.append(
            Event(
                app_id="default",
                event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                user_id=user_id,
                item_id=rng.choice(ITEMS),
                event_type=event_type,
                event_ts=ts - skew if user_id in USERS[:4] else ts,
                server_ts=ts,
                value=rng.uniform(1_000, 90_000) if event_type is EventType.VIEW else None,
                session_id=f"s{rng.randrange(40)}",
                device=rng.choice(["ios", "android", "web"]),
            )
        )
    return sorted(out, key=lambda e: e.server_ts)


def _items() -> list[Item]:
    return [
        Item(
            item_id,
            category=f"c{n % 4}",
            creator_id=f"k{n % 7}",
            created_at=END - timedelta(days=20, hours=n),
        )
        for n, item_id in enumerate(ITEMS)
    ]


def _items_table() -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "item_id": i.item_id,
                "category": i.category,
                "creator_id": i.creator_id,
                "created_at": i.created_at,
            }
            for i in _items()
        ]
    )


def _events_table(events: list[Event]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "user_id": e.user_id,
                "item_id": e.item_id,
                "event_type": e.event_type.value,
                "value": e.value,
                "device": e.device,
                "session_id": e.session_id,
                "event_ts": e.event_ts,
                "server_ts": e.server_ts,
                "request_id": e.request_id,
            }
            for e in events
        ]
    )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    upgrade(store.engine)
    store.tenancy.create_app("default", "d", END)
    store.catalog.upsert_items("default", _items(), END)
    yield store
    store.close()


@pytest.fixture(params=["memory", "redis"])
def online(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    if request.param == "redis":
        # The server lives for the session: start each test from an empty database.
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    store = open_online_store(url, timeout_s=2.0)
    yield store
    store.close()


@pytest.mark.parametrize(
    "skew", [timedelta(0), timedelta(days=90)], ids=["clocks-right", "clocks-behind"]
)
def test_offline_and_online_paths_give_equal_features(
    sqlite_store: Store, online: OnlineStore, skew: timedelta
) -> None:
    events = _events(seed=1, skew=skew)
    materializer = FeatureMaterializer(sqlite_store.events, sqlite_store.catalog, online)
    reader = OnlineFeatures(online)
    rng = random.Random(2)
    checkpoints = sorted(END - timedelta(seconds=rng.uniform(0, 10 * 86_400)) for _ in range(6))
    appended = 0
    for t in checkpoints:
        # The online store knows exactly the events before t, as it would at time t.
        before = [e for e in events[appended:] if e.server_ts < t]
        sqlite_store.events.append(before)
        appended += len(before)
        materializer.step()
        pairs = [
            (rng.choice(USERS), rng.sample(ITEMS, 5), f"s{rng.randrange(40)}") for _ in range(4)
        ]
        for user_id, item_ids, session_id in pairs:
            online_rows = reader.matrix(
                "default",
                user_id,
                item_ids,
                session_id=session_id,
                device="ios",
                surface="home",
                now=t,
            )
            impressions = pa.Table.from_pylist(
                [
                    {
                        "user_id": user_id,
                        "item_id": item_id,
                        "served_at": t,
                        "session_id": session_id,
                        "device": "ios",
                        "surface": "home",
                    }
                    for item_id in item_ids
                ]
            )
            offline = point_in_time_features(impressions, _events_table(events), _items_table())
            assert online_rows.names == FEATURE_NAMES
            for row, item_id in enumerate(item_ids):
                for col, name in enumerate(FEATURE_NAMES):
                    expected = offline.column(name)[row].as_py()
                    got = float(online_rows.values[row, col])
                    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (
                        f"{name} of {user_id}/{item_id} at {t}"
                    )
    assert appended > 1000


def test_features_are_not_all_zero_so_parity_means_something(sqlite_store: Store) -> None:
    online = open_online_store("memory://")
    events = _events(seed=3)
    sqlite_store.events.append(events)
    FeatureMaterializer(sqlite_store.events, sqlite_store.catalog, online).step()
    matrix = OnlineFeatures(online).matrix(
        "default", USERS[0], ITEMS[:10], session_id="s1", device="web", surface="home", now=END
    )
    nonzero = {name for col, name in enumerate(FEATURE_NAMES) if matrix.values[:, col].any()}
    assert nonzero >= {
        "user_engagement_30d",
        "item_engagement_30d",
        "item_ctr_30d",
        "item_mean_dwell_s_30d",
        "user_category_affinity",
        "user_creator_affinity",
        "session_length",
        "user_preferred_device",
    }


def test_item_features_are_reused_within_their_ttl_and_user_features_never_are(
    sqlite_store: Store,
) -> None:
    online = open_online_store("memory://")
    events = _events(seed=4)
    half = len(events) // 2
    materializer = FeatureMaterializer(sqlite_store.events, sqlite_store.catalog, online)
    sqlite_store.events.append(events[:half])
    materializer.step()
    cached = OnlineFeatures(online, item_ttl_s=60.0)
    fresh = OnlineFeatures(online)
    item_cols = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("item_")]
    user_cols = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("user_")]

    def read(reader: OnlineFeatures, seconds: float) -> np.ndarray:
        return reader.matrix(
            "default",
            USERS[0],
            ITEMS,
            session_id=None,
            device="web",
            surface="home",
            now=END + timedelta(seconds=seconds),
        ).values

    first = read(cached, 0)
    sqlite_store.events.append(events[half:])
    materializer.step()
    within, now_fresh = read(cached, 30), read(fresh, 30)
    after = read(cached, 61)

    # The second half of the log changed the items' counts; the cache hides it for a TTL.
    assert not np.array_equal(now_fresh[:, item_cols], first[:, item_cols])
    assert np.array_equal(within[:, item_cols], first[:, item_cols])
    assert np.array_equal(within[:, user_cols], now_fresh[:, user_cols])
    assert np.allclose(after[:, item_cols], read(fresh, 61)[:, item_cols])


def test_deleting_everything_after_a_cutoff_leaves_earlier_rows_unchanged() -> None:
    events = _events(seed=4, n=2500)
    rng = random.Random(5)
    impressions = pa.Table.from_pylist(
        [
            {
                "request_id": e.event_id,
                "user_id": e.user_id,
                "item_id": e.item_id,
                "served_at": e.event_ts - timedelta(seconds=rng.uniform(1, 30)),
                "session_id": e.session_id,
                "device": e.device,
                "surface": "home",
                "position": 0,
            }
            for e in events
            if e.event_type is EventType.IMPRESSION
        ]
    )
    cutoff = END - timedelta(days=4)
    config = LabelConfig(attribution_window_s=1800, label_delay_s=3600)

    def rows(kept_events: list[Event], kept_impressions: pa.Table) -> dict[tuple[str, str], dict]:
        table = _events_table(kept_events)
        labelled, _ = label_impressions(kept_impressions, table, config)
        featured = point_in_time_features(labelled, table, _items_table())
        return {(r["request_id"], r["item_id"]): r for r in featured.to_pylist()}

    full = rows(events, impressions)
    early = [e for e in events if e.event_ts < cutoff]
    early_impressions = impressions.filter(
        pc.less(
            impressions.column("served_at"), pa.scalar(cutoff, impressions.column("served_at").type)
        )
    )
    truncated = rows(early, early_impressions)
    # Rows whose label window closed before the cutoff must not change at all.
    settled = cutoff - timedelta(seconds=config.attribution_window_s + config.label_delay_s)
    compared = 0
    for key, row in truncated.items():
        if row["served_at"] <= settled:
            assert full[key] == row
            compared += 1
    assert compared > 200


def test_rows_featurized_together_equal_each_row_featurized_alone() -> None:
    # Many users' lists at a few shared moments (as candidate lists at a cut-off), the
    # same items in many of them, with events falling between the moments.
    events = _events(seed=6, n=1200)
    rng = random.Random(7)
    moments = [END - timedelta(days=d) for d in (6, 6, 3, 3, 3, 1)]
    impressions = pa.Table.from_pylist(
        [
            {
                "user_id": user_id,
                "item_id": item_id,
                "served_at": moment,
                "session_id": None,
                "device": None,
                "surface": "home",
            }
            for moment in moments
            for user_id in rng.sample(USERS, 4)
            for item_id in rng.sample(ITEMS, 8)
        ]
    )
    table, items = _events_table(events), _items_table()
    together = point_in_time_features(impressions, table, items).to_pylist()
    for row in range(0, impressions.num_rows, 7):
        alone = point_in_time_features(impressions.slice(row, 1), table, items).to_pylist()
        assert alone[0] == together[row]


def test_every_feature_is_named_once_and_computed_by_both_paths() -> None:
    features = FeatureSet()
    user = Counters()
    user.add("eng", END.timestamp() - 3600)
    item = Counters()
    meta = ItemMeta("c1", "k1", END - timedelta(days=1))
    now = END.timestamp()
    named = features.named(
        user_part=features.user_part(user, now),
        item_part=features.item_part(item, meta, now),
        context_part=FeatureSet.context_part(now, "ios", "home"),
        user=user,
        item_id="i1",
        meta=meta,
        session=[],
        now=now,
    )
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    # A feature computed but not listed, or listed but not computed, fails here: the online
    # reader and the offline replay both emit exactly FEATURE_NAMES from these values.
    assert set(named) == set(FEATURE_NAMES)


def test_impressions_of_bots_removed_by_cleaning_are_not_training_rows() -> None:
    from recloop.data.training import without_users

    impressions = pa.table({"user_id": ["u1", "bot", "u2", "bot"], "item_id": ["a", "b", "c", "d"]})
    kept = without_users(impressions, {"bot"})
    assert kept.column("user_id").to_pylist() == ["u1", "u2"]
    assert without_users(impressions, set()).num_rows == 4


def test_a_new_materializer_goes_on_where_the_last_one_stopped(
    sqlite_store: Store, online: OnlineStore
) -> None:
    # A restarted process, or another worker taking the lead over a shared store.
    events = _events(seed=5)
    half = len(events) // 2
    sqlite_store.events.append(events[:half])
    assert FeatureMaterializer(sqlite_store.events, sqlite_store.catalog, online).step() == half
    sqlite_store.events.append(events[half:])
    successor = FeatureMaterializer(sqlite_store.events, sqlite_store.catalog, online)
    assert successor.step() == len(events) - half  # the new events only, each counted once
    assert successor.step() == 0

    alone = open_online_store("memory://")
    FeatureMaterializer(sqlite_store.events, sqlite_store.catalog, alone).step()
    for user_id in USERS[:5]:
        args = ("default", user_id, ITEMS[:20])
        kwargs = {"session_id": "s1", "device": "web", "surface": "home", "now": END}
        expected = OnlineFeatures(alone).matrix(*args, **kwargs).values  # type: ignore[arg-type]
        got = OnlineFeatures(online).matrix(*args, **kwargs).values  # type: ignore[arg-type]
        np.testing.assert_array_equal(got, expected)


def test_an_emptied_store_is_rebuilt_and_marked_partial_while_it_is(sqlite_store: Store) -> None:
    online = open_online_store("memory://")
    sqlite_store.events.append(_events(seed=6))
    materializer = FeatureMaterializer(sqlite_store.events, sqlite_store.catalog, online)
    materializer.step()
    args = ("default", USERS[0], ITEMS[:10])
    kwargs = {"session_id": "s1", "device": "web", "surface": "home", "now": END}
    whole = OnlineFeatures(online).matrix(*args, **kwargs).values  # type: ignore[arg-type]
    marks: list[dict[str, bytes]] = []
    real_set_many = online.set_many

    def set_many(values: dict[str, bytes], **kw: object) -> None:
        marks.append(dict(values))
        real_set_many(values, **kw)  # type: ignore[arg-type]

    online.set_many = set_many  # type: ignore[method-assign,assignment]
    everything = list(online._data)  # type: ignore[attr-defined]
    online.delete(everything)  # a restart that kept nothing
    materializer.step()

    assert materializer.rebuilds == 1
    assert any(REBUILDING_KEY in values for values in marks)  # marked while it rebuilt
    assert online.get_many([REBUILDING_KEY]) == [None]  # and unmarked once caught up
    again = OnlineFeatures(online).matrix(*args, **kwargs).values  # type: ignore[arg-type]
    np.testing.assert_array_equal(again, whole)
    online.set_many({REBUILDING_KEY: b"1"})  # as another process's rebuild is under way
    with pytest.raises(OnlineStoreUnavailable, match="being rebuilt"):
        OnlineFeatures(online).matrix(*args, **kwargs)  # type: ignore[arg-type]
