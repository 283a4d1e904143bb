"""FeatureSet.rows (one request's candidates at once) equals row(named(...)) per candidate."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recloop.features.candidates import MergedCandidate, source_score_features
from recloop.features.definitions import (
    FEATURE_NAMES,
    ITEM_FEATURES,
    FeatureSet,
    ItemMeta,
    SessionEntry,
)
from recloop.features.online import OnlineFeatures
from recloop.features.state import Counters

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
CATEGORIES = ["c0", "c1", "c2", None]
CREATORS = ["k0", "k1", "k2", "k3", None]


def _counters(rng: random.Random, prefixed: bool) -> Counters:
    counters = Counters()
    now = NOW.timestamp()
    for _ in range(rng.randrange(0, 60)):
        ts = now - rng.uniform(0, 35 * 86_400)
        counters.add(rng.choice(["eng", "imp", "click", "view"]), ts)
        counters.add("dwell_s", ts, rng.uniform(1, 90))
        if prefixed:
            counters.add(f"cat:{rng.choice(CATEGORIES[:-1])}", ts, hourly=False)
            counters.add(f"cre:{rng.choice(CREATORS[:-1])}", ts, hourly=False)
            counters.add(f"dev:{rng.choice(['ios', 'web'])}", ts, hourly=False)
    return counters


def _meta(rng: random.Random) -> ItemMeta | None:
    if rng.random() < 0.1:
        return None
    created = NOW - timedelta(hours=rng.uniform(0, 500)) if rng.random() < 0.8 else None
    return ItemMeta(rng.choice(CATEGORIES), rng.choice(CREATORS), created)


def _per_row(
    features: FeatureSet,
    user: Counters,
    item_ids: list[str],
    items: list[Counters],
    metas: list[ItemMeta | None],
    session: list[SessionEntry],
) -> np.ndarray:
    now = NOW.timestamp()
    user_part = features.user_part(user, now)
    context_part = FeatureSet.context_part(now, "ios", "home")
    rows = [
        features.row(
            features.named(
                user_part=user_part,
                item_part=features.item_part(item, meta, now),
                context_part=context_part,
                user=user,
                item_id=item_id,
                meta=meta,
                session=session,
                now=now,
            )
        )
        for item_id, item, meta in zip(item_ids, items, metas, strict=True)
    ]
    return np.array(rows, dtype=np.float64).reshape(len(item_ids), len(FEATURE_NAMES))


@pytest.mark.parametrize("seed", range(12))
def test_rows_equal_the_per_candidate_rows_exactly(seed: int) -> None:
    rng = random.Random(seed)
    features = FeatureSet()
    now = NOW.timestamp()
    user = _counters(rng, prefixed=True)
    n = rng.choice([0, 1, 5, 40])
    item_ids = [f"i{rng.randrange(30)}" for _ in range(n)]  # repeats allowed
    items = [_counters(rng, prefixed=False) for _ in item_ids]
    metas = [_meta(rng) for _ in item_ids]
    session = [
        SessionEntry(f"i{rng.randrange(30)}", rng.choice(CATEGORIES))
        for _ in range(rng.choice([0, 1, 6]))
    ]
    got = features.rows(
        user_part=features.user_part(user, now),
        item_values=[
            FeatureSet.item_values(features.item_part(item, meta, now))
            for item, meta in zip(items, metas, strict=True)
        ],
        context_part=FeatureSet.context_part(now, "ios", "home"),
        user=user,
        item_ids=item_ids,
        metas=metas,
        session=session,
        now=now,
    )
    expected = _per_row(features, user, item_ids, items, metas, session)
    assert got.shape == (n, len(FEATURE_NAMES))
    assert np.array_equal(got, expected)


def test_the_item_values_cover_exactly_the_item_part() -> None:
    part = FeatureSet().item_part(Counters(), None, NOW.timestamp())
    assert set(part) == set(ITEM_FEATURES)
    assert FeatureSet.item_values(part) == tuple(part[name] for name in ITEM_FEATURES)


class _Online:
    """The parts of the online store that OnlineFeatures reads, from dicts."""

    def __init__(
        self,
        hashes: dict[str, dict[str, float]],
        values: dict[str, bytes],
        lists: dict[str, list[str]],
    ) -> None:
        self.hashes, self.values, self.lists = hashes, values, lists

    def hgetall_many(self, keys: list[str]) -> list[dict[str, float]]:
        return [self.hashes.get(k, {}) for k in keys]

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.values.get(k) for k in keys]

    def get_lists(self, keys: list[str]) -> list[list[str]]:
        return [self.lists.get(k, []) for k in keys]


@pytest.mark.parametrize("item_ttl_s", [0.0, 60.0])
def test_the_online_matrix_equals_the_per_candidate_rows(item_ttl_s: float) -> None:
    from recloop.features import online as online_module

    rng = random.Random(5)
    user = _counters(rng, prefixed=True)
    items = {f"i{j}": _counters(rng, prefixed=False) for j in range(20)}
    metas = {item_id: _meta(rng) for item_id in items}
    session = [SessionEntry(f"i{j}", rng.choice(CATEGORIES)) for j in (3, 7, 8)]
    store = _Online(
        {
            online_module.counters_key("a", "u", "u1"): user.fields(),
            **{online_module.counters_key("a", "i", i): c.fields() for i, c in items.items()},
        },
        {
            online_module.meta_key("a", i): online_module._encode_meta(m)
            for i, m in metas.items()
            if m is not None
        },
        {online_module.session_key("a", "s1"): [online_module._encode_session(e) for e in session]},
    )
    reader = OnlineFeatures(store, item_ttl_s=item_ttl_s)  # type: ignore[arg-type]
    item_ids = list(items)
    rng.shuffle(item_ids)
    for _ in range(2):  # the second read comes from the item cache when there is one
        matrix = reader.matrix(
            "a", "u1", item_ids, session_id="s1", device="ios", surface="home", now=NOW
        )
        expected = _per_row(
            FeatureSet(),
            Counters.from_fields(user.fields()),
            item_ids,
            [Counters.from_fields(items[i].fields()) for i in item_ids],
            [metas[i] for i in item_ids],
            session,
        )
        assert matrix.item_ids == tuple(item_ids)
        assert np.array_equal(matrix.values, expected)


def test_source_score_features_scale_each_source_within_the_request() -> None:
    candidates = [
        MergedCandidate("a", "s1", "", {"s1": 2.0, "s2": -1.0}),
        MergedCandidate("b", "s2", "", {"s2": 3.0}),
        MergedCandidate("c", "s1", "", {"s1": 4.0, "other": 9.0}),
    ]
    matrix = source_score_features(candidates, ["s1", "s2", "none"])
    assert matrix.names == ("source_score:s1", "source_score:s2", "source_score:none")
    expected = np.array([[0.5, 0.01, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    assert np.allclose(matrix.values, expected)
    assert matrix.values.dtype == np.float32
