"""PopularityModel known answers and invariants, and the sources that read its snapshots."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.domain import Candidate, EventRecord, EventType, RequestContext
from recloop.retrieval.popularity import (
    PopularityConfig,
    PopularityIndex,
    PopularityModel,
    PopularitySnapshot,
    Ranked,
    click_rates,
)
from recloop.retrieval.popularity_sources import (
    ClickRateSource,
    NewestSource,
    PopularSource,
    SameCategorySource,
    TrendingSource,
)
from recloop.retrieval.protocols import CandidateSource
from recloop.store.protocols import CatalogChange

pytestmark = pytest.mark.unit

APP = "app"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def catalog(
    items: dict[str, str | None], *, active: bool = True, at: datetime = T0
) -> list[CatalogChange]:
    """Catalog changes for ``item_id -> category``."""
    return [
        CatalogChange(APP, item_id, category, active, at) for item_id, category in items.items()
    ]


def events(*entries: tuple[str, EventType, datetime]) -> list[EventRecord]:
    """Event records in the order given, numbered from 1."""
    return [
        EventRecord(seq, APP, item_id, event_type, ts)
        for seq, (item_id, event_type, ts) in enumerate(entries, start=1)
    ]


def repeat(
    item_id: str, event_type: EventType, times: int, ts: datetime = T0
) -> list[tuple[str, EventType, datetime]]:
    return [(item_id, event_type, ts)] * times


def model_of(
    items: dict[str, str | None],
    entries: Iterable[tuple[str, EventType, datetime]],
    config: PopularityConfig | None = None,
) -> PopularityModel:
    model = PopularityModel(config)
    model.apply_catalog(catalog(items))
    model.update(events(*entries))
    return model


def ids(ranked: Ranked) -> tuple[str, ...]:
    return ranked[0]


def scores(ranked: Ranked) -> tuple[float, ...]:
    return ranked[1]


# --- Known answers ------------------------------------------------------------------------------


def test_popular_scores_are_weighted_counts() -> None:
    model = model_of(
        {"a": None, "b": None, "c": None},
        [
            ("a", EventType.PURCHASE, T0),  # 4
            ("b", EventType.LIKE, T0),  # 2
            ("b", EventType.CLICK, T0),  # + 1
            *repeat("c", EventType.CLICK, 2),  # 2
        ],
    )

    popular = model.snapshot(T0).popular

    assert popular == (("a", "b", "c"), (4.0, 3.0, 2.0))


def test_impressions_and_skips_count_nothing() -> None:
    model = model_of(
        {"seen": None, "clicked": None},
        [
            *repeat("seen", EventType.IMPRESSION, 50),
            *repeat("seen", EventType.SKIP, 50),
            ("clicked", EventType.CLICK, T0),
        ],
    )

    snapshot = model.snapshot(T0)

    assert snapshot.popular == (("clicked",), (1.0,))
    assert ids(snapshot.trending) == ("clicked",)


def test_impressions_do_not_add_to_an_engaged_items_score() -> None:
    model = model_of(
        {"a": None},
        [("a", EventType.LIKE, T0), *repeat("a", EventType.IMPRESSION, 10)],
    )

    assert model.snapshot(T0).popular == (("a",), (2.0,))


def test_every_event_is_counted_as_seen_whatever_its_weight() -> None:
    model = model_of(
        {"a": None},
        [("a", EventType.CLICK, T0), ("a", EventType.IMPRESSION, T0), ("a", EventType.SKIP, T0)],
    )

    assert model.snapshot(T0).events_seen == 3


def test_trending_prefers_recent_engagement_over_old_engagement_of_equal_count() -> None:
    later = T0 + timedelta(hours=48)
    model = model_of(
        {"a-old": None, "b-new": None},
        [*repeat("a-old", EventType.CLICK, 2, T0), *repeat("b-new", EventType.CLICK, 2, later)],
        PopularityConfig(half_life_hours=24.0),
    )

    snapshot = model.snapshot(later)

    assert ids(snapshot.trending) == ("b-new", "a-old")
    # Two half-lives: the old clicks count a quarter.
    assert scores(snapshot.trending) == pytest.approx((2.0, 0.5))
    # All-time counts are equal, so popular falls back to the item id order.
    assert snapshot.popular == (("a-old", "b-new"), (2.0, 2.0))


def test_trending_score_halves_every_half_life() -> None:
    model = model_of(
        {"a": None}, repeat("a", EventType.CLICK, 4), PopularityConfig(half_life_hours=24.0)
    )

    assert scores(model.snapshot(T0).trending) == pytest.approx((4.0,))
    assert scores(model.snapshot(T0 + timedelta(hours=24)).trending) == pytest.approx((2.0,))
    assert scores(model.snapshot(T0 + timedelta(hours=72)).trending) == pytest.approx((0.5,))


def test_trending_is_the_same_whatever_order_events_arrive_in() -> None:
    entries = [
        ("a", EventType.CLICK, T0 + timedelta(hours=30)),
        ("b", EventType.LIKE, T0),
        ("a", EventType.CLICK, T0 + timedelta(hours=1)),
        ("b", EventType.CLICK, T0 + timedelta(hours=40)),
    ]
    now = T0 + timedelta(hours=50)
    config = PopularityConfig(half_life_hours=10.0)

    forward = model_of({"a": None, "b": None}, entries, config).snapshot(now).trending
    backward = model_of({"a": None, "b": None}, entries[::-1], config).snapshot(now).trending

    assert ids(forward) == ids(backward)
    assert scores(forward) == pytest.approx(scores(backward))


def test_inactive_items_are_never_in_the_top_lists() -> None:
    model = PopularityModel()
    model.apply_catalog(catalog({"live": "music"}))
    model.apply_catalog(catalog({"blocked": "music"}, active=False))
    model.update(events(*repeat("blocked", EventType.PURCHASE, 100), ("live", EventType.CLICK, T0)))

    snapshot = model.snapshot(T0)

    for ranked in (
        snapshot.popular,
        snapshot.trending,
        snapshot.ranked("popular", "music"),
        snapshot.ranked("trending", "music"),
    ):
        assert ids(ranked) == ("live",)


def test_an_item_deactivated_after_its_events_leaves_the_top_lists() -> None:
    model = model_of(
        {"a": None, "b": None}, [*repeat("a", EventType.LIKE, 5), ("b", EventType.CLICK, T0)]
    )
    assert ids(model.snapshot(T0).popular) == ("a", "b")

    model.apply_catalog(catalog({"a": None}, active=False))

    assert model.is_dirty()
    snapshot = model.snapshot(T0)
    assert ids(snapshot.popular) == ("b",)
    assert ids(snapshot.trending) == ("b",)


def test_items_unknown_to_the_catalog_are_never_in_the_top_lists() -> None:
    model = model_of(
        {"known": "news"},
        [*repeat("ghost", EventType.PURCHASE, 100), ("known", EventType.CLICK, T0)],
    )

    snapshot = model.snapshot(T0)

    assert ids(snapshot.popular) == ("known",)
    assert ids(snapshot.trending) == ("known",)
    assert "ghost" not in snapshot.category_of


def test_catalog_items_without_engagement_are_not_ranked() -> None:
    model = model_of({"quiet": None, "busy": None}, [("busy", EventType.CLICK, T0)])

    assert ids(model.snapshot(T0).popular) == ("busy",)


def test_per_category_lists_hold_only_their_category() -> None:
    model = model_of(
        {"m1": "music", "m2": "music", "n1": "news", "plain": None},
        [
            *repeat("m1", EventType.CLICK, 1),
            *repeat("m2", EventType.CLICK, 3),
            *repeat("n1", EventType.CLICK, 2),
            *repeat("plain", EventType.CLICK, 5),
        ],
    )

    snapshot = model.snapshot(T0)

    assert snapshot.ranked("popular", "music") == (("m2", "m1"), (3.0, 1.0))
    assert snapshot.ranked("popular", "news") == (("n1",), (2.0,))
    assert ids(snapshot.ranked("trending", "music")) == ("m2", "m1")
    assert ids(snapshot.ranked("popular", None)) == ("plain", "m2", "n1", "m1")
    assert set(snapshot.popular_by_category) == {"music", "news"}
    assert snapshot.ranked("popular", "sport") == ((), ())
    assert snapshot.category_of == {"m1": "music", "m2": "music", "n1": "news"}


def test_a_category_change_moves_the_item_between_lists() -> None:
    model = model_of(
        {"a": "music", "b": "music"}, [("a", EventType.CLICK, T0), ("b", EventType.CLICK, T0)]
    )

    model.apply_catalog(catalog({"a": "news"}))

    snapshot = model.snapshot(T0)
    assert ids(snapshot.ranked("popular", "music")) == ("b",)
    assert ids(snapshot.ranked("popular", "news")) == ("a",)


def test_equal_scores_are_ordered_by_item_id() -> None:
    order = ["c", "a", "d", "b"]
    model = model_of(dict.fromkeys(order, "x"), [(i, EventType.CLICK, T0) for i in order])

    snapshot = model.snapshot(T0)

    assert ids(snapshot.popular) == ("a", "b", "c", "d")
    assert ids(snapshot.trending) == ("a", "b", "c", "d")
    assert ids(snapshot.ranked("popular", "x")) == ("a", "b", "c", "d")


def test_ties_at_the_top_n_cut_keep_the_smallest_item_ids() -> None:
    order = ["e", "c", "b", "a", "d"]
    model = model_of(
        dict.fromkeys(order),
        [(i, EventType.CLICK, T0) for i in order],
        PopularityConfig(top_n=2),
    )

    snapshot = model.snapshot(T0)

    # The same two a request for the full list would start with.
    assert ids(snapshot.popular) == ("a", "b")
    assert ids(snapshot.trending) == ("a", "b")


def test_top_n_keeps_the_best_scores() -> None:
    model = model_of(
        {"a": None, "b": None, "c": None, "d": None},
        [
            *repeat("a", EventType.CLICK, 1),
            *repeat("b", EventType.CLICK, 4),
            *repeat("c", EventType.CLICK, 3),
            *repeat("d", EventType.CLICK, 2),
        ],
        PopularityConfig(top_n=2),
    )

    assert model.snapshot(T0).popular == (("b", "c"), (4.0, 3.0))


def test_rebase_across_many_half_lives_keeps_scores_finite_and_ordered() -> None:
    much_later = T0 + timedelta(hours=600)  # 600 half-lives: 2**600 would overflow unrebased
    model = model_of(
        {"old": None, "new": None},
        [*repeat("old", EventType.CLICK, 100, T0), ("new", EventType.CLICK, much_later)],
        PopularityConfig(half_life_hours=1.0),
    )

    snapshot = model.snapshot(much_later)

    assert all(math.isfinite(s) for s in scores(snapshot.trending))
    assert ids(snapshot.trending) == ("new", "old")
    assert scores(snapshot.trending)[0] == pytest.approx(1.0)
    assert snapshot.popular == (("old", "new"), (100.0, 1.0))


def test_rebase_then_more_events_keep_decaying_correctly() -> None:
    t1 = T0 + timedelta(hours=700)
    t2 = t1 + timedelta(hours=2)
    model = model_of(
        {"a": None, "b": None},
        [
            ("a", EventType.CLICK, T0),
            *repeat("b", EventType.CLICK, 4, t1),
            ("a", EventType.LIKE, t2),
        ],
        PopularityConfig(half_life_hours=1.0),
    )

    snapshot = model.snapshot(t2)

    # b: 4 clicks two half-lives ago = 1.0; a: a like now = 2.0 (+ a negligible old click).
    assert ids(snapshot.trending) == ("a", "b")
    assert scores(snapshot.trending) == pytest.approx((2.0, 1.0))


def test_snapshot_is_clean_until_something_changes() -> None:
    model = model_of({"a": None}, [("a", EventType.CLICK, T0)])
    model.snapshot(T0)

    assert not model.is_dirty()
    model.update(events(("a", EventType.SKIP, T0)))
    assert not model.is_dirty()
    model.update(events(("a", EventType.CLICK, T0)))
    assert model.is_dirty()
    model.snapshot(T0)
    # An impression changes the item's click rate.
    model.update(events(("a", EventType.IMPRESSION, T0)))
    assert model.is_dirty()


def test_newest_ranks_active_dated_items_by_creation_time() -> None:
    model = PopularityModel()
    model.apply_catalog(
        [
            CatalogChange(APP, "old", "music", True, T0, T0),
            CatalogChange(APP, "new", "music", True, T0, T0 + timedelta(days=3)),
            CatalogChange(APP, "mid", "news", True, T0, T0 + timedelta(days=1)),
            CatalogChange(APP, "gone", "news", False, T0, T0 + timedelta(days=4)),
            CatalogChange(APP, "undated", "news", True, T0, None),
        ]
    )

    snapshot = model.snapshot(T0 + timedelta(days=3))

    # 1 / (1 + age in days)
    assert ids(snapshot.newest) == ("new", "mid", "old")
    assert scores(snapshot.newest) == pytest.approx((1.0, 1 / 3, 1 / 4))
    assert ids(snapshot.ranked("newest", "music")) == ("new", "old")
    assert ids(snapshot.ranked("newest", "news")) == ("mid",)
    # Nobody engaged with anything yet.
    assert snapshot.popular == ((), ())


# --- Invariants ---------------------------------------------------------------------------------

ITEM_IDS = [f"i{n}" for n in range(8)]
CATEGORIES = ["music", "news", None]

catalog_entries = st.dictionaries(
    st.sampled_from(ITEM_IDS),
    st.tuples(
        st.sampled_from(CATEGORIES),
        st.booleans(),
        st.none() | st.floats(min_value=-1000.0, max_value=5000.0),
    ),
)
event_entries = st.lists(
    st.tuples(
        st.sampled_from(ITEM_IDS),
        st.sampled_from(list(EventType)),
        st.floats(min_value=0.0, max_value=5000.0, allow_nan=False),
    ),
    max_size=60,
)


def assert_well_formed(ranked: Ranked, top_n: int, allowed: set[str]) -> None:
    item_ids, item_scores = ranked
    assert len(item_ids) == len(item_scores)
    assert len(item_ids) <= top_n
    assert len(set(item_ids)) == len(item_ids), "duplicate item in a top list"
    assert set(item_ids) <= allowed
    assert all(math.isfinite(s) for s in item_scores)
    assert list(item_scores) == sorted(item_scores, reverse=True)


@settings(max_examples=150, deadline=None)
@given(
    entries=catalog_entries,
    raw_events=event_entries,
    half_life=st.sampled_from([0.01, 1.0, 24.0]),
    top_n=st.integers(min_value=1, max_value=5),
    extra_hours=st.floats(min_value=0.0, max_value=100.0),
)
def test_top_lists_are_unique_sorted_bounded_and_active_only(
    entries: dict[str, tuple[str | None, bool, float | None]],
    raw_events: list[tuple[str, EventType, float]],
    half_life: float,
    top_n: int,
    extra_hours: float,
) -> None:
    model = PopularityModel(PopularityConfig(half_life_hours=half_life, top_n=top_n))
    model.apply_catalog(
        CatalogChange(
            APP,
            item_id,
            category,
            is_active,
            T0,
            None if created is None else T0 + timedelta(hours=created),
        )
        for item_id, (category, is_active, created) in entries.items()
    )
    model.update(events(*((i, t, T0 + timedelta(hours=h)) for i, t, h in raw_events)))
    latest = max((h for _, _, h in raw_events), default=0.0)

    snapshot = model.snapshot(T0 + timedelta(hours=latest + extra_hours))

    active = {i for i, (_, is_active, _) in entries.items() if is_active}
    dated = {i for i, (_, _, created) in entries.items() if created is not None}
    weights = model.config.weights
    engaged = {i for i, t, _ in raw_events if weights.get(t, 0.0) > 0}
    assert_well_formed(snapshot.popular, top_n, active)
    assert_well_formed(snapshot.trending, top_n, active)
    expected_length = min(top_n, len(active & engaged))
    assert len(ids(snapshot.popular)) == expected_length
    assert len(ids(snapshot.trending)) == expected_length
    assert_well_formed(snapshot.newest, top_n, active & dated)
    assert len(ids(snapshot.newest)) == min(top_n, len(active & dated))
    for category in snapshot.popular_by_category:
        in_category = {i for i in active if entries[i][0] == category}
        assert_well_formed(snapshot.ranked("popular", category), top_n, in_category)
        assert_well_formed(snapshot.ranked("trending", category), top_n, in_category)
        assert_well_formed(snapshot.ranked("newest", category), top_n, in_category & dated)
    assert set(snapshot.popular_by_category) == set(snapshot.trending_by_category)


# --- Sources ------------------------------------------------------------------------------------


def context(
    app_id: str = APP, *, category: str | None = None, anchor: str | None = None
) -> RequestContext:
    return RequestContext(
        app_id=app_id,
        request_id="r1",
        surface="home",
        user_id="u1",
        now=T0,
        category=category,
        anchor_item_id=anchor,
    )


def index_of(snapshot: PopularitySnapshot) -> PopularityIndex:
    index = PopularityIndex()
    index.publish(APP, snapshot)
    return index


@pytest.fixture
def snapshot() -> PopularitySnapshot:
    """m1..m4 in music (m4 the most popular), n1..n2 in news, x1 without a category."""
    clicks = {"m1": 1, "m2": 2, "m3": 3, "m4": 9, "n1": 5, "n2": 4, "x1": 6}
    categories: dict[str, str | None] = {
        "m1": "music", "m2": "music", "m3": "music", "m4": "music",
        "n1": "news", "n2": "news", "x1": None,
    }  # fmt: skip
    entries = [e for item, n in clicks.items() for e in repeat(item, EventType.CLICK, n)]
    return model_of(categories, entries).snapshot(T0)


def item_ids_of(candidates: Sequence[Candidate]) -> list[str]:
    return [c.item_id for c in candidates]


@pytest.mark.parametrize("source_class", [PopularSource, TrendingSource])
def test_popular_and_trending_return_at_most_k_best_first(
    source_class: type[PopularSource] | type[TrendingSource], snapshot: PopularitySnapshot
) -> None:
    source = source_class(index_of(snapshot))

    found = source.retrieve(context(), 3)

    assert item_ids_of(found) == ["m4", "x1", "n1"]
    assert all(c.source == source.name for c in found)
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)


@pytest.mark.parametrize("source_class", [PopularSource, TrendingSource])
def test_popular_and_trending_keep_to_the_requested_category(
    source_class: type[PopularSource] | type[TrendingSource], snapshot: PopularitySnapshot
) -> None:
    source = source_class(index_of(snapshot))

    found = source.retrieve(context(category="news"), 10)

    assert item_ids_of(found) == ["n1", "n2"]
    assert all("news" in c.reason for c in found)


@pytest.mark.parametrize(
    "source_class", [PopularSource, TrendingSource, SameCategorySource, NewestSource]
)
def test_sources_answer_an_unknown_app_with_nothing(
    source_class: type[CandidateSource], snapshot: PopularitySnapshot
) -> None:
    source = source_class(index_of(snapshot))  # type: ignore[call-arg]

    assert source.retrieve(context("other-app", anchor="m1"), 10) == []


def test_newest_source_serves_the_newest_active_items_first() -> None:
    model = PopularityModel()
    model.apply_catalog(
        [
            CatalogChange(APP, "a", "music", True, T0, T0 - timedelta(days=2)),
            CatalogChange(APP, "b", "music", True, T0, T0 - timedelta(days=1)),
            CatalogChange(APP, "c", "news", True, T0, T0),
            CatalogChange(APP, "d", "music", False, T0, T0),
        ]
    )
    source = NewestSource(index_of(model.snapshot(T0)))

    assert item_ids_of(source.retrieve(context(), 10)) == ["c", "b", "a"]
    assert item_ids_of(source.retrieve(context(), 2)) == ["c", "b"]
    in_music = source.retrieve(context(category="music"), 10)
    assert item_ids_of(in_music) == ["b", "a"]
    assert all(c.source == "newest" for c in in_music)


def test_same_category_excludes_the_anchor_and_stays_in_its_category(
    snapshot: PopularitySnapshot,
) -> None:
    source = SameCategorySource(index_of(snapshot))

    found = source.retrieve(context(anchor="m4"), 10)

    assert item_ids_of(found) == ["m3", "m2", "m1"]
    assert all(c.source == "same-category" for c in found)


def test_same_category_fills_k_despite_skipping_the_anchor(snapshot: PopularitySnapshot) -> None:
    source = SameCategorySource(index_of(snapshot))

    assert item_ids_of(source.retrieve(context(anchor="m4"), 2)) == ["m3", "m2"]


@pytest.mark.parametrize("anchor", ["unknown", "x1", None])
def test_same_category_without_an_anchor_category_finds_nothing(
    anchor: str | None, snapshot: PopularitySnapshot
) -> None:
    source = SameCategorySource(index_of(snapshot))

    assert source.retrieve(context(anchor=anchor), 10) == []


@settings(max_examples=100, deadline=None)
@given(
    clicks=st.dictionaries(
        st.sampled_from(ITEM_IDS),
        st.tuples(st.integers(min_value=1, max_value=5), st.sampled_from(CATEGORIES)),
        max_size=len(ITEM_IDS),
    ),
    k=st.integers(min_value=1, max_value=10),
    anchor=st.sampled_from([*ITEM_IDS, None]),
    category=st.sampled_from(CATEGORIES),
)
def test_every_source_returns_at_most_k_of_its_own_candidates(
    clicks: dict[str, tuple[int, str | None]],
    k: int,
    anchor: str | None,
    category: str | None,
) -> None:
    model = model_of(
        {i: c for i, (_, c) in clicks.items()},
        [e for i, (n, _) in clicks.items() for e in repeat(i, EventType.CLICK, n)],
    )
    model.apply_catalog(
        CatalogChange(APP, i, c, True, T0, T0 - timedelta(hours=n)) for i, (n, c) in clicks.items()
    )
    index = index_of(model.snapshot(T0))
    ctx = context(category=category, anchor=anchor)

    sources: list[CandidateSource] = [
        PopularSource(index),
        TrendingSource(index),
        SameCategorySource(index),
        NewestSource(index),
    ]
    for source in sources:
        found = source.retrieve(ctx, k)
        assert len(found) <= k
        assert all(c.source == source.name for c in found)
        assert len(set(item_ids_of(found))) == len(found)
        assert set(item_ids_of(found)) <= set(clicks)
    same = SameCategorySource(index).retrieve(ctx, k)
    assert anchor not in item_ids_of(same)


# --- Click rates --------------------------------------------------------------------------------


def test_click_rate_ranks_by_clicks_per_impression_not_by_clicks() -> None:
    # "shown" has the most clicks only because it was shown the most.
    model = model_of(
        {"shown": None, "liked": None, "dull": None},
        [
            *repeat("shown", EventType.IMPRESSION, 400),
            *repeat("shown", EventType.CLICK, 8),
            *repeat("liked", EventType.IMPRESSION, 100),
            *repeat("liked", EventType.CLICK, 6),
            *repeat("dull", EventType.IMPRESSION, 100),
        ],
    )

    snapshot = model.snapshot(T0)

    assert ids(snapshot.popular)[0] == "shown"
    assert ids(snapshot.click_rate) == ("liked", "shown", "dull")


def test_click_rate_leaves_out_items_never_shown_and_inactive_items() -> None:
    model = PopularityModel()
    model.apply_catalog(catalog({"a": None, "b": None, "gone": None}))
    model.apply_catalog([CatalogChange(APP, "gone", None, False, T0)])
    model.update(
        events(
            *repeat("a", EventType.IMPRESSION, 3),
            *repeat("gone", EventType.IMPRESSION, 3),
            *repeat("gone", EventType.CLICK, 3),
        )
    )

    assert ids(model.snapshot(T0).click_rate) == ("a",)


def test_items_clicked_without_logged_impressions_have_no_rate() -> None:
    # An imported history, or a client that logs no impressions: clicks alone cannot tell
    # how often an item was passed over.
    model = model_of(
        {"a": None, "b": None},
        [*repeat("a", EventType.CLICK, 5), *repeat("b", EventType.IMPRESSION, 5)],
    )

    assert ids(model.snapshot(T0).click_rate) == ("b",)
    assert ids(model_of({"a": None}, repeat("a", EventType.CLICK, 5)).snapshot(T0).click_rate) == ()


def test_click_rate_per_category_holds_only_its_category() -> None:
    model = model_of(
        {"a": "x", "b": "y"},
        [*repeat("a", EventType.IMPRESSION, 5), *repeat("b", EventType.IMPRESSION, 5)],
    )

    snapshot = model.snapshot(T0)

    assert ids(snapshot.ranked("click-rate", "x")) == ("a",)
    assert ids(snapshot.ranked("click-rate", "y")) == ("b",)


def test_click_rate_source_recalls_the_click_rate_list() -> None:
    index = PopularityIndex()
    model = model_of(
        {"a": None, "b": None},
        [
            *repeat("a", EventType.IMPRESSION, 50),
            *repeat("b", EventType.IMPRESSION, 50),
            *repeat("b", EventType.CLICK, 10),
        ],
    )
    index.publish(APP, model.snapshot(T0))

    got = ClickRateSource(index).retrieve(context(), 10)

    assert [c.item_id for c in got] == ["b", "a"]
    assert {c.source for c in got} == {"click-rate"}


def test_equal_rates_shrink_to_the_pooled_rate_with_the_strongest_prior() -> None:
    # Every item's raw rate is the same: no spread of true rates, the prior is as strong as
    # allowed, and every estimate is the pooled rate.
    shown = np.array([100.0, 200.0, 50.0])
    clicked = np.array([10.0, 20.0, 5.0])

    rates = click_rates(shown, clicked)

    assert np.allclose(rates, 0.1)


def test_items_never_shown_get_the_pooled_rate() -> None:
    rates = click_rates(np.array([100.0, 100.0, 0.0]), np.array([2.0, 30.0, 0.0]))

    assert rates[2] == pytest.approx(32.0 / 200.0)


def test_nothing_shown_gives_zero_rates() -> None:
    assert np.all(click_rates(np.zeros(3), np.zeros(3)) == 0.0)


def test_well_measured_rates_are_close_to_the_raw_rates() -> None:
    # Rates that differ far more than binomial noise could make them: a weak prior.
    shown = np.full(20, 10_000.0)
    clicked = shown * np.linspace(0.01, 0.3, 20)

    rates = click_rates(shown, clicked)

    assert np.allclose(rates, clicked / shown, atol=0.01)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.integers(0, 500)).map(lambda t: (max(t), min(t))),
        min_size=1,
        max_size=30,
    )
)
def test_each_rate_lies_between_its_raw_rate_and_the_pooled_rate(
    counts: list[tuple[int, int]],
) -> None:
    shown = np.array([float(n) for n, _ in counts])
    clicked = np.array([float(c) for _, c in counts])
    rates = click_rates(shown, clicked)
    if shown.sum() == 0:
        assert np.all(rates == 0.0)
        return
    pooled = clicked.sum() / shown.sum()
    assert np.all((rates >= 0.0) & (rates <= 1.0))
    for n, c, r in zip(shown, clicked, rates, strict=True):
        raw = c / n if n > 0 else pooled
        low, high = min(raw, pooled), max(raw, pooled)
        assert low - 1e-6 <= r <= high + 1e-6


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 400), st.integers(0, 50), st.integers(0, 50))
def test_more_clicks_on_the_same_impressions_never_lower_an_items_rank(
    shown: int, clicks_a: int, extra: int
) -> None:
    # Two items with the same impressions: the one with more clicks is estimated higher.
    clicks_a = min(clicks_a, shown)
    clicks_b = min(clicks_a + extra, shown)
    rates = click_rates(
        np.array([float(shown), float(shown), 300.0]),
        np.array([float(clicks_a), float(clicks_b), 9.0]),
    )
    assert rates[1] >= rates[0] - 1e-12
