"""The live overlay (``suggest.live``): counting, damping, the bound, completion, and its
queries through the score and the rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recloop.config import SuggestionSettings, SuggestionWeights
from recloop.suggest.build import LogEvent, build_model
from recloop.suggest.live import LiveFold, LiveQueries, LiveSearch, WordStarts
from recloop.suggest.model import SuggestionModel
from recloop.suggest.rules import KAnonymityRule, RuleContext, SafetyRule, ZeroResultRule
from recloop.suggest.safety import SafetyFilter, SafetyPolicy
from recloop.suggest.scoring import score_candidates
from recloop.suggest.sources import QueryCandidate, live_candidates, prefix_candidates

pytestmark = pytest.mark.unit

CUT = datetime(2024, 6, 1, tzinfo=UTC)
T = CUT.timestamp()
SETTINGS = SuggestionSettings()
HOUR = 3600.0


def search(
    user: str, query: str, at: float = 60.0, session: str | None = None, received: float = 0.0
) -> LiveSearch:
    """``user`` searched ``query`` ``at`` seconds after the cut-off (received then too)."""
    return LiveSearch(user, session, query, T + at, T + max(at, received))


def fold_of(*searches: LiveSearch, settings: SuggestionSettings = SETTINGS) -> LiveFold:
    fold = LiveFold(settings, CUT)
    for s in searches:
        fold.add(s)
    return fold


# --- counting and damping ---------------------------------------------------------------


def test_distinct_users_count_once_and_a_users_repeats_do_not_add_weight() -> None:
    one_user = fold_of(*(search("solo", "marathon plan", at=60.0 + n) for n in range(10)))
    three = fold_of(*(search(f"u{n}", "marathon shoes") for n in range(3)))
    solo = one_user.snapshot().queries["marathon plan"]
    assert (solo.users, solo.searches) == (1, 10)
    assert solo.weight == pytest.approx(three.snapshot().queries["marathon shoes"].weight / 3)
    assert one_user.repeats == 9
    # Suggestible once min_users (3) distinct users searched it, never by one user's repeats.
    assert one_user.snapshot().complete("mara", 10) == []
    assert [(q.key, m) for q, m in three.snapshot().complete("mara", 10)] == [
        ("marathon shoes", "prefix")
    ]


def test_a_repeat_after_the_window_counts_again() -> None:
    fold = fold_of(search("u", "dune"), search("u", "dune", at=60.0 + 25 * HOUR))
    assert fold.repeats == 0
    assert fold.snapshot().queries["dune"].users == 1


def test_newer_searches_weigh_more_in_the_models_frame() -> None:
    # At the cut-off a search weighs 1; one half-life later, 2.
    fold = fold_of(
        search("a", "early", at=0.0), search("b", "late", at=SETTINGS.half_life_hours * HOUR)
    )
    snap = fold.snapshot()
    assert snap.queries["early"].weight == pytest.approx(1.0)
    assert snap.queries["late"].weight == pytest.approx(2.0)
    assert snap.max_weight == pytest.approx(2.0)


def test_queries_are_counted_by_match_key_and_shown_as_most_typed() -> None:
    fold = fold_of(search("a", "café"), search("b", "cafe"), search("c", "café"))
    (query,) = fold.snapshot().queries.values()
    assert (query.key, query.display, query.users) == ("cafe", "café", 3)


def test_a_tagged_query_is_never_counted() -> None:
    fold = LiveFold(SETTINGS, CUT)
    assert not fold.add(search("a", "mail <email>"))
    assert len(fold) == 0


def test_an_engagement_in_the_same_session_makes_the_latest_search_a_success() -> None:
    fold = fold_of(
        search("a", "dune", session="s1"),
        search("b", "dune", session="s2"),
        search("c", "dune"),  # no session: engagement within session_gap_s counts
    )
    assert fold.engage("a", "s1", T + 70)
    assert not fold.engage("b", "other", T + 70)  # another session
    assert not fold.engage("c", None, T + 60 + SETTINGS.session_gap_s + 1)  # too late
    assert not fold.engage("nobody", None, T + 70)
    query = fold.snapshot().queries["dune"]
    assert (query.searches, query.successes, query.zero_result) == (3, 1, False)


def test_searches_never_followed_by_engagement_are_a_dead_end() -> None:
    settings = SuggestionSettings(zero_result_min_searches=3)
    fold = fold_of(*(search(f"u{n}", "nothing here") for n in range(3)), settings=settings)
    assert fold.snapshot().queries["nothing here"].zero_result


# --- the bound ----------------------------------------------------------------------------


def test_the_overlay_keeps_the_heaviest_queries_where_newer_searches_weigh_more() -> None:
    settings = SuggestionSettings(live_max_queries=4)
    fold = LiveFold(settings, CUT)
    for n in range(3):  # searched by three people early on
        fold.add(search(f"p{n}", "popular", at=0.0))
    for n in range(20):  # one search each, ten minutes apart
        fold.add(search(f"x{n}", f"query {n}", at=600.0 * (n + 1)))
    keys = set(fold.snapshot().queries)
    assert len(keys) <= 4 + 1  # pruned a quarter past the bound (here: one)
    assert "popular" in keys  # three searches outweigh one a few hours later
    assert "query 19" in keys  # the newest survives
    assert "query 0" not in keys  # the oldest single search went
    assert fold.evicted >= 15


def test_the_index_kept_across_snapshots_is_the_one_built_anew() -> None:
    fold = LiveFold(SuggestionSettings(live_max_queries=8), CUT)
    for step in range(12):
        for n in range(3):
            fold.add(search(f"s{step}-{n}", f"query {step % 5} word {step}", at=60.0 * step))
        fold.add(search(f"lone{step}", f"lonely {step}", at=60.0 * step))
        snap = fold.snapshot()
        suggestible = [k for k, q in snap.queries.items() if q.users >= snap.min_users]
        assert snap.index == WordStarts.of(suggestible)
    assert fold.evicted > 0


# --- completion ---------------------------------------------------------------------------


def test_completion_finds_the_start_and_later_words_heaviest_first() -> None:
    searches = [search(f"a{n}", "trail running shoes") for n in range(4)]
    searches += [search(f"b{n}", "running shorts", at=120.0) for n in range(3)]
    searches += [search(f"c{n}", "runes") for n in range(2)]  # two users: not suggestible
    snap = fold_of(*searches).snapshot()
    assert [(q.key, m) for q, m in snap.complete("run", 10)] == [
        ("trail running shoes", "word"),
        ("running shorts", "prefix"),
    ]
    assert [q.key for q, _ in snap.complete("run", 1)] == ["trail running shoes"]
    assert [q.key for q, _ in snap.complete("shoes", 10)] == ["trail running shoes"]
    assert snap.complete("shoes ", 10) == []  # a finished word matches only itself
    assert [q.key for q, _ in snap.complete("trail running shoes", 10)] == ["trail running shoes"]
    candidates = live_candidates(snap, "run", 10)
    first = candidates[0]
    assert (first.source, first.match, first.score) == ("live", "word", 1.0)
    assert first.reason == "Searched by others just now"


def test_a_short_prefix_that_many_match_still_gets_the_heaviest() -> None:
    # 300 queries of three users each, later ones heavier: past the walk of word starts.
    fold = fold_of(
        *(search(f"u{n}-{m}", f"q{n:03d} item", at=600.0 * n) for n in range(300) for m in range(3))
    )
    snap = fold.snapshot()
    assert [(q.key, m) for q, m in snap.complete("q", 3)] == [
        ("q299 item", "prefix"),
        ("q298 item", "prefix"),
        ("q297 item", "prefix"),
    ]
    assert [(q.key, m) for q, m in snap.complete("item", 2)] == [
        ("q299 item", "word"),
        ("q298 item", "word"),
    ]
    assert [q.key for q, _ in snap.complete("q00", 20)] == [
        f"q00{n} item" for n in range(9, -1, -1)
    ]


# --- through the score and the rules -------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> SuggestionModel:
    """A model built at the cut-off: "running shoes" (5 users) and "dune" (3)."""
    events = [LogEvent(f"u{n}", T - HOUR, query="running shoes") for n in range(5)]
    events += [LogEvent(f"v{n}", T - HOUR, query="dune") for n in range(3)]
    built, _ = build_model(events, [], SETTINGS, now=CUT, version="v")
    return built


def test_live_searches_raise_a_model_querys_popularity_and_recall_new_ones(
    model: SuggestionModel,
) -> None:
    weights = SuggestionWeights()
    before = {q.key: q for q in score_candidates(prefix_candidates(model, "d", 10), model, weights)}
    snap = fold_of(
        *(search(f"n{n}", "dune") for n in range(4)),
        *(search(f"m{n}", "dune part two") for n in range(3)),
    ).snapshot()
    found = prefix_candidates(model, "d", 10) + live_candidates(snap, "d", 10)
    after = {q.key: q for q in score_candidates(found, model, weights, snap)}
    assert after["dune"].features["popularity"] > before["dune"].features["popularity"]
    assert after["dune"].source == "prefix"  # the model matched it: credited there
    new = after["dune part two"]
    assert (new.row, new.source, new.display) == (None, "live", "dune part two")
    assert 0 < new.features["popularity"] <= 1
    # The live count goes through every rule like the model's.
    kept, filtered = KAnonymityRule(3).apply(
        list(after.values()), RuleContext(None, model, live=snap)
    )
    assert {q.key for q in kept} == {"dune", "dune part two"}
    assert filtered == []
    kept, filtered = KAnonymityRule(5).apply(
        list(after.values()), RuleContext(None, model, live=snap)
    )
    assert {q.key for q in kept} == set()  # dune: 3 in the model, 4 live, never added up
    assert {(f.query, f.detail) for f in filtered} == {
        ("dune", "4 users, fewer than 5"),
        ("dune part two", "3 users, fewer than 5"),
    }


def test_a_query_neither_the_model_nor_the_overlay_holds_is_kept_out(
    model: SuggestionModel,
) -> None:
    lonely = fold_of(search("a", "dune messiah"), search("b", "dune messiah")).snapshot()
    queries = score_candidates(
        [*live_candidates(lonely, "dune", 10)], model, SuggestionWeights(), lonely
    )
    assert queries == []  # two users: the source does not recall it
    forced = score_candidates(
        [QueryCandidate("dune messiah", "dune messiah", "live", 1.0, "prefix")],
        model,
        SuggestionWeights(),
        lonely,
    )
    kept, filtered = KAnonymityRule(3).apply(forced, RuleContext(None, model, live=lonely))
    assert kept == []
    assert filtered[0].detail == "2 users, fewer than 3"
    kept, _ = KAnonymityRule(3).apply(forced, RuleContext(None, model))
    assert kept == []


def test_overlay_queries_go_through_safety_and_the_zero_result_rule(model: SuggestionModel) -> None:
    settings = SuggestionSettings(zero_result_min_searches=3)
    snap = fold_of(
        *(search(f"h{n}", "i hate dune") for n in range(3)),
        *(search(f"z{n}", "dune nothing") for n in range(3)),
        settings=settings,
    ).snapshot()
    scored = score_candidates(live_candidates(snap, "dune", 10), model, SuggestionWeights(), snap)
    ctx = RuleContext("en", model, live=snap)
    kept, filtered = SafetyRule(SafetyFilter(SafetyPolicy(blocked_terms=("hate",)))).apply(
        scored, ctx
    )
    assert [f.query for f in filtered] == ["i hate dune"]
    kept, filtered = ZeroResultRule().apply(kept, ctx)
    assert kept == []
    assert filtered[0].detail == "3 searches since the model was built, none followed by engagement"


def test_an_empty_overlay_completes_nothing() -> None:
    empty = LiveQueries(CUT, {}, 3)
    assert (len(empty), empty.max_weight, empty.complete("a", 5)) == (0, 0.0, [])
    assert empty.get("a") is None
    assert empty.users("a") == 0
