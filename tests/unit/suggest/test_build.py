"""The suggestion model's builder: outcomes of searches, counts, k-anonymity, the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.config import SuggestionSettings
from recloop.suggest.build import CatalogText, LogEvent, build_model, label_searches
from recloop.suggest.model import SuggestionModel

pytestmark = pytest.mark.unit

NOW = datetime(2024, 6, 1, tzinfo=UTC)
T = NOW.timestamp()
HOUR = 3600.0


def search(user: str, query: str, at: float, session: str | None = "s") -> LogEvent:
    return LogEvent(user, at, session, query=query)


def engage(user: str, item: str, at: float, session: str | None = "s") -> LogEvent:
    return LogEvent(user, at, session, item_id=item)


def searched(
    query: str, users: int, *, item: str | None = "i1", at: float = T - HOUR
) -> list[LogEvent]:
    """``users`` people each search ``query`` (in a session of their own) and, when
    ``item`` is given, engage with it right after."""
    events: list[LogEvent] = []
    for n in range(users):
        user = f"{query}-{n}"
        events.append(search(user, query, at, session=user))
        if item is not None:
            events.append(engage(user, item, at + 5, session=user))
    return events


def build(
    events: list[LogEvent], items: Sequence[CatalogText] = (), **settings: object
) -> SuggestionModel:
    """The model of ``events``; fresh accounts count fully unless a test asks otherwise (the
    damping has tests of its own)."""
    settings.setdefault("trust_hours", 0.0)
    model, _ = build_model(
        events, list(items), SuggestionSettings(**settings), now=NOW, version="v1"
    )
    return model


# --- outcomes ---------------------------------------------------------------------------


def test_engagement_in_the_session_before_the_next_search_makes_a_success() -> None:
    labelled = label_searches(
        [
            search("u", "shoes", T),
            engage("u", "i1", T + 10),
            engage("u", "i2", T + 20),
            search("u", "boots", T + 100),
            engage("u", "i3", T + 110, session="other"),  # another session: not this search's
        ],
        reformulation_s=30,
        session_gap_s=1800,
    )
    assert [(s.query, s.success, s.items) for s in labelled] == [
        ("shoes", True, ("i1", "i2")),
        ("boots", False, ()),
    ]


def test_a_new_search_within_the_window_without_engagement_is_a_reformulation() -> None:
    labelled = label_searches(
        [search("u", "shoos", T), search("u", "shoes", T + 10), search("u", "boots", T + 100)],
        reformulation_s=30,
        session_gap_s=1800,
    )
    assert [(s.query, s.reformulation) for s in labelled] == [
        ("shoos", True),
        ("shoes", False),  # 90 s later: abandoned, not reformulated
        ("boots", False),
    ]


def test_without_a_session_engagement_counts_within_the_session_gap() -> None:
    labelled = label_searches(
        [
            search("u", "shoes", T, session=None),
            engage("u", "i1", T + 3 * HOUR, session=None),  # too late
            search("v", "shoes", T, session=None),
            engage("v", "i1", T + 60, session=None),
        ],
        reformulation_s=30,
        session_gap_s=1800,
    )
    assert sorted((s.user_id, s.success) for s in labelled) == [("u", False), ("v", True)]


# --- counts and k-anonymity -------------------------------------------------------------------


def test_a_query_needs_min_users_distinct_users_to_be_suggestible() -> None:
    events = searched("running shoes", 3) + searched("john smith address", 2)
    # One user searching many times is still one user.
    events += [search("stalker", "my neighbour", T - n) for n in range(50)]
    model = build(events)
    assert model.row("running shoes") is not None
    assert model.row("john smith address") is None
    assert model.row("my neighbour") is None
    assert build(events, min_users=2).row("john smith address") is not None


def test_catalog_queries_need_no_users_and_weigh_less_than_a_few_searches() -> None:
    items = [
        CatalogText("i1", "The Matrix", "sci-fi", ("cyberpunk", "classic")),
        CatalogText("i2", "Blade Runner", "sci-fi", ("cyberpunk",)),
        CatalogText("i3", "Alien", "horror", ("classic",)),
    ]
    model = build(searched("matrix sequel", 3), items)
    for key in ("the matrix", "blade runner", "sci fi", "cyberpunk", "sci fi cyberpunk"):
        row = model.row(key)
        assert row is not None, key
        assert model.stats.catalog[row]
        assert model.stats.users[row] == 0
    # A pair carried by one item only is not a query.
    assert model.row("horror classic") is None
    searched_row = model.row("matrix sequel")
    assert searched_row is not None
    assert model.stats.weight[searched_row] > model.stats.weight[model.row("the matrix") or 0]
    assert [c.query for c in model.index.complete("the m")] == ["the matrix"]


def test_a_query_is_shown_as_most_users_typed_it_and_matched_without_accents() -> None:
    events = [search(f"u{n}", "café", T) for n in range(3)] + [search("x", "cafe", T)]
    model = build(events)
    row = model.row("cafe")
    assert row is not None
    assert model.stats.display[row] == "café"
    assert model.stats.users[row] == 4
    assert model.stats.searches[row] == 4


def test_queries_holding_personal_data_tags_are_never_in_the_model() -> None:
    model, report = build_model(
        searched("email <email> now", 5), [], SuggestionSettings(), now=NOW, version="v1"
    )
    assert len(model) == 0
    assert report.tagged == 5


def test_counts_decay_by_the_half_life_and_the_zero_result_window_flags_dead_ends() -> None:
    week = 168 * HOUR
    events = searched("old news", 4, at=T - week) + searched("dead end", 5, item=None)
    model = build(events)
    old = model.row("old news")
    assert old is not None
    assert model.stats.weight[old] == pytest.approx(4 * 0.5)  # one half-life ago
    dead = model.row("dead end")
    assert dead is not None
    assert model.stats.zero_result[dead]
    assert not model.stats.zero_result[old]
    # Fewer searches than the rule needs: not judged yet.
    assert not build(searched("dead end", 4, item=None)).stats.zero_result[0]


def test_trending_lists_queries_searched_more_now_than_their_long_run_rate() -> None:
    steady = [
        e for day in range(30) for e in searched(f"steady{day % 3}", 3, at=T - day * 24 * HOUR)
    ]
    steady = [
        LogEvent(f"{e.user_id}-{i}", e.ts, e.session_id, e.query, e.item_id)
        for i, e in enumerate(steady)
    ]
    burst = searched("eclipse tonight", 6, at=T - HOUR)
    model = build(steady + burst)
    assert model.trending[0] == model.row("eclipse tonight")


def test_co_click_links_need_their_own_users_and_feed_items_and_categories() -> None:
    events = searched("matrix", 3, item="m1") + searched("keanu", 3, item="m1")
    events += [
        *searched("lonely link", 3, item=None),
        search("solo", "lonely link", T),
        engage("solo", "m9", T + 1),
    ]
    items = [CatalogText("m1", "The Matrix", "sci-fi"), CatalogText("m9", "Other", "drama")]
    model = build(events, items)
    matrix, keanu = model.row("matrix"), model.row("keanu")
    assert matrix is not None
    assert keanu is not None
    assert {r for r, _ in model.item_queries.get("m1")} == {matrix, keanu}
    assert model.item_queries.get("m9") == ()  # one user's link is not shown
    assert {r for r, _ in model.categories.get("sci-fi")} >= {matrix, keanu}


# --- abuse ------------------------------------------------------------------------------


def established(query: str, users: int, *, prefix: str) -> list[LogEvent]:
    """``users`` accounts active for weeks (a click 20 days ago), each searching ``query``."""
    events: list[LogEvent] = []
    for n in range(users):
        user = f"{prefix}{n}"
        events.append(engage(user, "i0", T - 20 * 24 * HOUR, session=f"{user}-old"))
        events.append(search(user, query, T - 2 * HOUR, session=user))
        events.append(engage(user, "i1", T - 2 * HOUR + 5, session=user))
    return events


def test_a_users_repeated_searches_count_once_toward_popularity() -> None:
    events = [search("fan", "my band", T - HOUR + n) for n in range(50)]
    events += [search("u1", "my band", T - HOUR), search("u2", "my band", T - HOUR)]
    model, report = build_model(events, [], SuggestionSettings(), now=NOW, version="v")
    row = model.row("my band")
    assert row is not None
    assert model.stats.searches[row] == 52
    assert model.stats.weight[row] == pytest.approx(3.0, rel=0.01)
    assert report.repeats == 49
    # A day later the same user counts again.
    events.append(search("fan", "my band", T - HOUR + 25 * HOUR))
    later, _ = build_model(events, [], SuggestionSettings(), now=NOW, version="v")
    assert later.stats.weight[later.row("my band") or 0] > model.stats.weight[row]


def test_a_push_by_fresh_accounts_fails_to_reach_the_suggestions() -> None:
    organic = established("running shoes", 5, prefix="regular")
    # 50 accounts created in the last hour, each searching the pushed query 5 times.
    campaign = [
        search(f"bot{n}", "buy followers cheap", T - HOUR + k * 60, session=f"bot{n}")
        for n in range(50)
        for k in range(5)
    ]
    model, report = build_model(organic + campaign, [], SuggestionSettings(), now=NOW, version="v")
    assert model.row("running shoes") is not None
    assert model.row("buy followers cheap") is None  # 50 fresh accounts weigh 2.5 users
    assert report.untrusted_searches == 250
    assert [c.query for c in model.index.complete("bu")] == []
    # Eight times the accounts do reach k-anonymity, and still weigh less than 30 regulars.
    bigger = [
        search(f"bot{n}", "buy followers cheap", T - HOUR, session=f"bot{n}") for n in range(400)
    ]
    model, _ = build_model(
        established("running shoes", 30, prefix="regular") + bigger,
        [],
        SuggestionSettings(),
        now=NOW,
        version="v",
    )
    pushed, organic_row = model.row("buy followers cheap"), model.row("running shoes")
    assert pushed is not None
    assert organic_row is not None
    assert model.stats.weight[pushed] < model.stats.weight[organic_row]
    assert model.trending[0] == organic_row


def test_in_a_new_app_every_account_counts_fully() -> None:
    # The whole log is an hour old: nobody can be older than anyone else by much.
    model, report = build_model(
        searched("first query", 3), [], SuggestionSettings(), now=NOW, version="v"
    )
    assert model.row("first query") is not None
    assert report.untrusted_searches == 0


# --- saving ---------------------------------------------------------------------------


def test_a_saved_model_loads_with_the_same_answers(tmp_path: Path) -> None:
    items = [CatalogText("m1", "The Matrix", "sci-fi", ("cyberpunk",))]
    events = searched("matrix", 3, item="m1") + searched("keanu reeves", 4, item="m1")
    model = build(events, items)
    model.save(tmp_path / "s")
    loaded = SuggestionModel.load(tmp_path / "s")
    assert loaded.stats.keys == model.stats.keys
    assert loaded.stats.display == model.stats.display
    assert loaded.stats.weight.tolist() == model.stats.weight.tolist()
    assert loaded.stats.catalog.tolist() == model.stats.catalog.tolist()
    assert loaded.index.complete("", 10) == model.index.complete("", 10)
    assert loaded.item_queries == model.item_queries
    assert loaded.categories == model.categories
    assert loaded.query_items == model.query_items
    assert loaded.trending == model.trending
    assert loaded.success_prior == model.success_prior
    assert loaded.version == "v1"
    assert not loaded.cold
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "s")


def test_loading_refuses_a_directory_without_a_finished_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"meta\.json"):
        SuggestionModel.load(tmp_path)


def test_an_empty_log_and_catalog_build_an_empty_model_that_answers_nothing() -> None:
    model = build([])
    assert len(model) == 0
    assert model.index.complete("a") == []
    assert model.trending == ()
