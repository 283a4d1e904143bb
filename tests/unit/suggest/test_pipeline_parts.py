"""The suggestion surface's sources, score and rules, on a small known model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from recloop.config import SuggestionSettings, SuggestionWeights
from recloop.domain import Item
from recloop.store.protocols import SearchRecord
from recloop.suggest.build import CatalogText, LogEvent, build_model
from recloop.suggest.model import SuggestionModel
from recloop.suggest.rules import (
    DedupeRule,
    KAnonymityRule,
    MinLengthRule,
    RuleContext,
    SafetyRule,
    ZeroResultRule,
    dedupe_keys,
    singular,
)
from recloop.suggest.safety import SafetyFilter, SafetyPolicy
from recloop.suggest.scoring import ScoredQuery, match_quality, score_candidates
from recloop.suggest.sources import (
    QueryCandidate,
    category_candidates,
    item_candidates,
    item_catalog_candidates,
    personal_candidates,
    popular_candidates,
    prefix_candidates,
    related_candidates,
    trending_candidates,
    typo_candidates,
    word_candidates,
)

pytestmark = pytest.mark.unit

NOW = datetime(2024, 6, 1, tzinfo=UTC)
T = NOW.timestamp()
WEIGHTS = SuggestionWeights()

# (query, users, item engaged after it or None, hours ago)
LOG = [
    ("running shoes", 9, "shoe1", 2.0),
    ("running shorts", 5, "short1", 2.0),
    ("red running shoes", 4, "shoe1", 2.0),
    ("trail shoes", 3, "shoe2", 2.0),
    ("runners world", 3, None, 2.0),  # searched, never found anything
    ("rare query", 2, "shoe1", 2.0),  # below k-anonymity
]
ITEMS = [
    CatalogText("shoe1", "Pegasus 40", "shoes", ("running", "road")),
    CatalogText("shoe2", "Speedgoat", "shoes", ("trail", "running")),
    CatalogText("short1", "Tempo shorts", "apparel", ("running",)),
]


def log_events() -> list[LogEvent]:
    events: list[LogEvent] = []
    for query, users, item, hours in LOG:
        for n in range(users):
            user = f"{query}-{n}"
            at = T - hours * 3600
            events.append(LogEvent(user, at, user, query=query))
            if item is not None:
                events.append(LogEvent(user, at + 5, user, item_id=item))
            elif n < 3:
                # Nothing found: the user tries again at once.
                events.append(LogEvent(user, at + 10, user, query=query + " 2024"))
    return events


@pytest.fixture(scope="module")
def model() -> SuggestionModel:
    built, _ = build_model(
        log_events(), ITEMS, SuggestionSettings(zero_result_min_searches=3), now=NOW, version="v"
    )
    return built


def keys(candidates: list[QueryCandidate]) -> list[str]:
    return [c.key for c in candidates]


# --- sources --------------------------------------------------------------------------


def test_prefix_completions_come_heaviest_first(model: SuggestionModel) -> None:
    found = prefix_candidates(model, "running s", 10)
    assert keys(found) == ["running shoes", "running shorts"]
    assert found[0].score == 1.0
    assert 0 < found[1].score < 1
    assert all(c.match == "prefix" and c.source == "prefix" for c in found)


def test_word_starts_find_later_words(model: SuggestionModel) -> None:
    found = word_candidates(model, "shoes", 10)
    assert {(c.key, c.source) for c in found} >= {
        ("shoes", "prefix"),
        ("running shoes", "words"),
        ("red running shoes", "words"),
        ("trail shoes", "words"),
    }


def test_typo_candidates_are_only_the_corrected_ones(model: SuggestionModel) -> None:
    found = typo_candidates(model, "runnign", 10)
    assert "running shoes" in keys(found)
    assert all(c.source == "typo" and c.edits > 0 for c in found)


def test_personal_candidates_split_session_from_recent_and_match_the_prefix() -> None:
    now = NOW
    searches = [
        SearchRecord("running shoes", "s2", now),
        SearchRecord("Red Dress", "s1", now - timedelta(hours=1)),  # stored form, any case
        SearchRecord("running shoes", "s1", now - timedelta(hours=2)),  # repeat: once
        SearchRecord("trail running", "s1", now - timedelta(hours=3)),
    ]
    everything = personal_candidates(searches, "", "s2", 10)
    assert [(c.key, c.source) for c in everything] == [
        ("running shoes", "session"),
        ("red dress", "recent"),
        ("trail running", "recent"),
    ]
    assert everything[0].score == 1.0 > everything[1].score > everything[2].score
    typed = personal_candidates(searches, "runn", None, 10)
    assert [(c.key, c.match) for c in typed] == [
        ("running shoes", "prefix"),
        ("trail running", "word"),
    ]


def test_the_co_click_walk_finds_queries_that_led_to_the_same_items(model: SuggestionModel) -> None:
    found = related_candidates(model, ["red running shoes"], 10)
    assert keys(found) == ["running shoes"]  # both led to shoe1; rare query is not linked
    assert related_candidates(model, ["unknown"], 10) == []


def test_item_sources_give_co_clicked_and_catalog_queries(model: SuggestionModel) -> None:
    assert set(keys(item_candidates(model, "shoe1", 10))) == {"running shoes", "red running shoes"}
    item = Item("shoe2", title="Speedgoat", category="shoes", tags=("trail", "running"))
    catalog = item_catalog_candidates(model, item)
    assert set(keys(catalog)) == {"shoes", "trail", "running", "shoes running"}
    assert all(c.source == "catalog" for c in catalog)


def test_categories_trending_and_popular(model: SuggestionModel) -> None:
    in_shoes = category_candidates(model, [("shoes", 1.0)], 10)
    assert keys(in_shoes)[0] == "running shoes"
    assert "running shorts" not in keys(in_shoes)
    assert keys(trending_candidates(model, 3))[0] == "running shoes"
    assert keys(popular_candidates(model, 1)) == ["running shoes"]


# --- scoring --------------------------------------------------------------------------


def test_match_quality_prefers_the_start_then_a_word_then_few_typos() -> None:
    assert match_quality("prefix", 0) > match_quality("word", 0) > match_quality("typo", 1)
    assert match_quality("typo", 1) > match_quality("typo", 2) > 0
    assert match_quality(None, 0) == 0


def test_the_score_is_the_weighted_sum_of_its_features(model: SuggestionModel) -> None:
    scored = score_candidates(prefix_candidates(model, "run", 10), model, WEIGHTS)
    for q in scored:
        expected = sum(getattr(WEIGHTS, f) * v for f, v in q.features.items())
        assert q.score == pytest.approx(expected, abs=1e-5)
    assert scored == sorted(scored, key=lambda q: (-q.score, q.key))


def test_queries_that_never_find_anything_lose_to_equally_popular_ones(
    model: SuggestionModel,
) -> None:
    # Both searched by three people; only one of them led anywhere.
    same = [QueryCandidate(k, k, "popular", 1.0) for k in ("runners world", "trail shoes")]
    dead_end, found = sorted(score_candidates(same, model, WEIGHTS), key=lambda q: q.key)
    assert dead_end.features["success"] < 0 < found.features["success"]
    assert dead_end.score < found.score


def test_a_query_is_credited_to_the_source_behind_most_of_its_score(
    model: SuggestionModel,
) -> None:
    own = QueryCandidate("trail shoes", "trail shoes", "recent", 1.0, "prefix")
    scored = score_candidates(
        [*prefix_candidates(model, "tr", 10), own],
        model,
        WEIGHTS.model_copy(update={"personal": 5}),
    )
    trail = next(q for q in scored if q.key == "trail shoes")
    assert trail.source == "recent"
    assert trail.reason == "You searched this before"
    assert set(trail.sources) == {"prefix", "recent"}
    catalog_only = next(q for q in scored if q.key == "trail")
    assert catalog_only.source == "prefix"
    assert catalog_only.reason == "From the catalog"


def test_a_users_own_query_the_model_lacks_keeps_their_spelling() -> None:
    own = QueryCandidate("red dress", "Red Dress", "recent", 1.0)
    (scored,) = score_candidates([own], None, WEIGHTS)
    assert scored.display == "Red Dress"
    assert scored.row is None
    assert scored.features["popularity"] == 0
    assert scored.features["personal"] == 1.0


# --- rules ----------------------------------------------------------------------------


def scored(
    model: SuggestionModel | None, *queries: str, source: str = "prefix"
) -> list[ScoredQuery]:
    return [
        ScoredQuery(
            key=q,
            display=q,
            score=1.0 - n / 100,
            source=source,
            reason="",
            sources=(source,),
            features={},
            row=model.row(q) if model is not None else None,
        )
        for n, q in enumerate(queries)
    ]


def test_safety_keeps_blocked_and_personal_queries_out_and_says_why() -> None:
    rule = SafetyRule(
        SafetyFilter(
            SafetyPolicy(blocked_terms=("hate",), sensitive_topics={"self-harm": ("suicide",)})
        )
    )
    kept, filtered = rule.apply(
        scored(None, "running shoes", "i h4te you", "suicide squad", "mail bob@example.com"),
        RuleContext("en", None, explain=True),
    )
    assert [q.key for q in kept] == ["running shoes"]
    assert [(f.query, f.rule) for f in filtered] == [
        ("i h4te you", "safety"),
        ("suicide squad", "safety"),
        ("mail <email>", "safety"),  # the audit never repeats the personal data
    ]
    assert "blocked_term: hate (global)" in filtered[0].detail
    assert "sensitive_topic: self-harm / suicide" in filtered[1].detail
    assert filtered[2].detail.startswith("pii: email")


def test_k_anonymity_holds_for_model_queries_but_not_the_users_own(model: SuggestionModel) -> None:
    rule = KAnonymityRule(min_users=4)
    queries = [
        *scored(model, "running shoes", "trail shoes", "shoes"),
        *scored(model, "runners world", source="recent"),
    ]
    kept, filtered = rule.apply(queries, RuleContext(None, model))
    # trail shoes has 3 users; shoes is catalog-derived; runners world is the user's own.
    assert [q.key for q in kept] == ["running shoes", "shoes", "runners world"]
    assert [(f.query, f.detail) for f in filtered] == [("trail shoes", "3 users, fewer than 4")]


def test_short_and_zero_result_queries_are_filtered(model: SuggestionModel) -> None:
    kept, filtered = MinLengthRule(3).apply(scored(model, "ru", "run"), RuleContext(None, model))
    assert [q.key for q in kept] == ["run"]
    assert filtered[0].rule == "min_length"
    kept, filtered = ZeroResultRule().apply(
        scored(model, "running shoes", "runners world"), RuleContext(None, model)
    )
    assert [q.key for q in kept] == ["running shoes"]
    assert filtered[0].detail == "3 searches in the window, none followed by engagement"


@pytest.mark.parametrize(
    ("word", "single"),
    [
        ("shoes", "shoe"),
        ("berries", "berry"),
        ("boxes", "box"),
        ("glasses", "glass"),
        ("bus", "bus"),
        ("analysis", "analysis"),
        ("dress", "dress"),
        ("gas", "gas"),  # too short to judge
        ("ps5s", "ps5s"),  # not a word
    ],
)
def test_singular_by_simple_rules(word: str, single: str) -> None:
    assert singular(word) == single


def test_singular_leaves_languages_without_s_plurals_alone() -> None:
    assert singular("häuser", "de") == "häuser"
    assert singular("zapatos", "es") == "zapato"


def test_dedupe_keeps_the_best_placed_of_plurals_word_orders_and_spacings() -> None:
    assert dedupe_keys("running shoes") == (*dedupe_keys("shoe running")[:1], "runningshoe")
    kept, filtered = DedupeRule().apply(
        scored(
            None, "running shoes", "running shoe", "shoes running", "iphone 15", "iphone15", "red"
        ),
        RuleContext("en", None),
    )
    assert [q.key for q in kept] == ["running shoes", "iphone 15", "red"]
    assert {f.query for f in filtered} == {"running shoe", "shoes running", "iphone15"}
    assert filtered[0].detail == "a near-duplicate of 'running shoes'"
