"""Safety: the corpus (0 suggested), policy validation, regex guard, reasons, overrides."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recloop.suggest.normalize import MAX_INPUT_CHARS
from recloop.suggest.regex_guard import PROBES, pattern_problem
from recloop.suggest.safety import PolicyOverride, Reason, SafetyFilter, SafetyPolicy
from recloop.suggest.skeleton import skeleton, term_skeleton
from tests.unit.suggest.safety_corpus import BLOCKED_FORMS, PII_FORMS, POLICY, SAFE

pytestmark = pytest.mark.unit

FILTER = SafetyFilter(POLICY)


# -- the corpus ------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "term"), BLOCKED_FORMS)
def test_every_disguised_form_is_blocked(query: str, term: str) -> None:
    verdict = FILTER.check(query)
    assert not verdict.allowed
    assert Reason("blocked_term", term) in verdict.reasons


@pytest.mark.parametrize(("query", "kind"), PII_FORMS)
def test_personal_data_is_never_suggested_raw_or_scrubbed(query: str, kind: str) -> None:
    raw = FILTER.check(query)
    assert Reason("pii", kind) in raw.reasons
    stored = FILTER.scrub(query).text  # what ingestion keeps
    verdict = FILTER.check(stored)
    assert not verdict.allowed
    assert {r.rule for r in verdict.reasons} == {"scrubbed"}


def test_the_corpus_suggests_nothing_and_keeps_the_ordinary_queries() -> None:
    refused = [q for q, _ in (*BLOCKED_FORMS, *PII_FORMS) if not FILTER.check(q).allowed]
    assert len(refused) == len(BLOCKED_FORMS) + len(PII_FORMS)
    assert [q for q in SAFE if not FILTER.check(q).allowed] == []


@pytest.mark.parametrize("query", SAFE)
def test_ordinary_queries_are_allowed_in_every_locale(query: str) -> None:
    for locale in (None, "en-US", "de-DE", "tr", "ja-JP", "ar-EG"):
        assert FILTER.check(query, locale).allowed, (query, locale)


def test_terms_match_whole_words_not_parts_of_words() -> None:
    for query in ("whatever", "chateau", "scampi", "nazir", "hatter", "thate"):
        assert FILTER.check(query).allowed, query


# -- reasons ---------------------------------------------------------------------------------


def test_every_reason_is_reported_and_explain_false_stops_at_the_first() -> None:
    query = "h4te scam mail me@example.com about suicide <phone>"
    verdict = FILTER.check(query)
    assert verdict.query == "h4te scam mail me@example.com about suicide <phone>"
    assert verdict.reasons == (
        Reason("scrubbed", "<phone>"),
        Reason("pii", "email"),
        Reason("blocked_term", "hate"),
        Reason("blocked_term", "scam"),
        Reason("sensitive_topic", "suicide", topic="self-harm"),
    )
    assert len(FILTER.check(query, explain=False).reasons) == 1


def test_invalid_queries_are_refused_with_the_rule() -> None:
    assert FILTER.check("  ?? ").reasons == (
        Reason("invalid", "must not be empty after normalization"),
    )
    [reason] = FILTER.check("word " * 60).reasons
    assert reason.rule == "invalid"
    assert "at most 200 characters" in reason.detail
    assert not FILTER.check("x" * (MAX_INPUT_CHARS + 1)).allowed


def test_sensitive_topics_are_suppressed_and_named() -> None:
    verdict = FILTER.check("self-harm help")
    assert verdict.reasons == (Reason("sensitive_topic", "self harm", topic="self-harm"),)
    assert FILTER.check("selfish").allowed


def test_verdicts_are_cached_and_equal_uncached_ones() -> None:
    uncached = SafetyFilter(POLICY, cache_size=0)
    for query, _ in BLOCKED_FORMS[:10]:
        assert FILTER.check(query) == uncached.check(query)
        assert FILTER.check(query) is FILTER.check(query)


# -- patterns --------------------------------------------------------------------------------


def test_patterns_match_the_query_and_its_skeleton() -> None:
    policy = SafetyPolicy(patterns=(r"\bbuy\s+(?:cheap\s+)?followers\b", r"\d{3}-?xxx"))
    f = SafetyFilter(policy)
    assert not f.check("Buy cheap FOLLOWERS now").allowed
    assert not f.check("b u y followers").allowed  # through the skeleton: "buy followers"
    assert not f.check("call 555-XXX").allowed
    assert f.check("buyer followers").allowed
    [reason] = f.check("buy followers").reasons
    assert reason == Reason("pattern", r"\bbuy\s+(?:cheap\s+)?followers\b")


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"(a+)+$", "nested"),
        (r"(\w+\s?)*x", "nested"),
        (r"(a|ab)*c", "nested"),
        (r"(a?a?)+b", "nested"),
        (r"(?:x+y)+", "nested"),
        (r".*a.*b.*c.*d", "unbounded"),
        (r"(x)\1", "backreference"),
        (r"a*", "empty query"),
        (r"\b", "every query"),
        (r".", "every query"),
        (r"[", "not a regular expression"),
        ("x" * 300, "longer than"),
    ],
)
def test_dangerous_patterns_are_refused(pattern: str, problem: str) -> None:
    found = pattern_problem(pattern)
    assert found is not None
    assert problem in found
    with pytest.raises(ValidationError, match=problem):
        SafetyPolicy(patterns=(pattern,))


@pytest.mark.parametrize(
    "pattern",
    [r"\bbuy\s+followers\b", r"[a-z]+\d{6,}", r"(?:ab)+c", r"(?:foo|bar)?baz", r"^free\b"],
)
def test_safe_patterns_are_accepted_and_fast_on_every_probe(pattern: str) -> None:
    assert pattern_problem(pattern) is None
    f = SafetyFilter(SafetyPolicy(patterns=(pattern,)), cache_size=0)
    start = time.perf_counter()
    for probe in PROBES:
        f.check(probe)
    assert time.perf_counter() - start < 1.0


# -- policy ------------------------------------------------------------------------------------


def test_policy_is_strict_typed_data() -> None:
    with pytest.raises(ValidationError, match="extra"):
        SafetyPolicy(blocklist=("x",))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="no letters or digits"):
        SafetyPolicy(blocked_terms=("!!!",))
    with pytest.raises(ValidationError, match="at most 200"):
        SafetyPolicy(blocked_terms=("x" * 201,))
    with pytest.raises(ValidationError, match="pattern"):
        SafetyPolicy(sensitive_topics={"Bad Name": ("x",)})
    with pytest.raises(ValidationError, match="allowed query"):
        SafetyPolicy(allowed_queries=("  ",))
    with pytest.raises(ValidationError, match="override key"):
        SafetyPolicy(overrides={"*": PolicyOverride()})
    with pytest.raises(ValidationError, match="override key"):
        SafetyPolicy(overrides={"germany": PolicyOverride()})
    with pytest.raises(ValidationError, match="repeats"):
        SafetyPolicy(overrides={"de-de": PolicyOverride(), "DE-DE": PolicyOverride()})


def test_override_keys_are_canonical() -> None:
    policy = SafetyPolicy(
        overrides={"DE": PolicyOverride(), "*-fr": PolicyOverride(), "pt_br": PolicyOverride()}
    )
    assert list(policy.overrides) == ["de", "*-FR", "pt-BR"]


# -- jurisdictions ------------------------------------------------------------------------------


JURISDICTIONS = SafetyFilter(
    SafetyPolicy(
        blocked_terms=("hate", "casino"),
        overrides={
            "de": PolicyOverride(blocked_terms=("scheisse",)),
            "*-DE": PolicyOverride(blocked_terms=("hakenkreuz",), exempt_terms=("casino",)),
            "de-DE": PolicyOverride(blocked_terms=("verboten",)),
            "fr": PolicyOverride(exempt_terms=("hate",)),  # French "hâte" is haste
            "*-SA": PolicyOverride(sensitive_topics={"alcohol": ("wine", "beer")}),
            "ja": PolicyOverride(allow_list_mode=True, allowed_queries=("東京 天気",)),
            "ja-JP": PolicyOverride(allowed_queries=("大阪 天気",)),
        },
    )
)


def _blocked(query: str, locale: str | None) -> set[tuple[str, str]]:
    return {(r.detail, r.scope) for r in JURISDICTIONS.check(query, locale).reasons}


def test_a_region_list_applies_in_that_region_in_every_language() -> None:
    assert _blocked("hakenkreuz", "de-DE") == {("hakenkreuz", "*-DE")}
    assert _blocked("hakenkreuz", "en-DE") == {("hakenkreuz", "*-DE")}
    assert _blocked("hakenkreuz", "de-AT") == set()
    assert _blocked("hakenkreuz", None) == set()


def test_language_region_and_exact_lists_add_up_broadest_first() -> None:
    assert _blocked("scheisse", "de-AT") == {("scheisse", "de")}
    assert _blocked("verboten", "de-DE") == {("verboten", "de-DE")}
    assert _blocked("verboten", "de-CH") == set()
    assert _blocked("casino", "de-AT") == {("casino", "global")}
    assert _blocked("casino", "de-DE") == set()  # exempt in the region
    assert _blocked("hâte", "fr-FR") == set()
    assert _blocked("hâte", "en-FR") == {("hate", "global")}


def test_locale_tags_are_read_in_any_spelling() -> None:
    for locale in ("de-DE", "de_DE", "de-de", "DE-DE", "de-Latn-DE"):
        assert _blocked("verboten", locale) == {("verboten", "de-DE")}, locale


def test_region_topics_and_allow_list_mode() -> None:
    [reason] = JURISDICTIONS.check("red wine", "ar-SA").reasons
    assert reason == Reason("sensitive_topic", "wine", "*-SA", topic="alcohol")
    assert JURISDICTIONS.check("red wine", "ar-EG").allowed
    assert JURISDICTIONS.check("東京 天気", "ja").allowed
    assert JURISDICTIONS.check("大阪 天気", "ja").reasons == (
        Reason("not_allowed", "allow-list mode", "ja"),
    )
    assert JURISDICTIONS.check("大阪 天気", "ja-JP").allowed
    assert JURISDICTIONS.check("大阪 天気", "en").allowed


def test_allow_list_mode_still_blocks_what_a_list_blocks() -> None:
    f = SafetyFilter(SafetyPolicy(allow_list_mode=True, allowed_queries=("Hate Mail", "Café")))
    assert f.check("cafe").allowed  # compared by match key
    assert f.check("Hate  Mail!").allowed
    assert not f.check("love letters").allowed
    g = SafetyFilter(
        SafetyPolicy(blocked_terms=("hate",), allow_list_mode=True, allowed_queries=("hate mail",))
    )
    assert g.check("hate mail").reasons == (Reason("blocked_term", "hate"),)
    assert g.check("love letters").reasons == (Reason("not_allowed", "allow-list mode"),)


# -- the skeleton ------------------------------------------------------------------------------


def test_skeleton_keeps_numbers_and_words_apart() -> None:
    assert skeleton("iphone 15 pro").variants == (("iphone", "15", "pro"),)
    assert skeleton("1488").variants == (("1488",),)
    assert term_skeleton("88") != term_skeleton("bb")
    assert skeleton("h4te").variants == (("hate",),)
    assert skeleton("i h a t e you").spelled == ("ihate",)
    assert skeleton("网上赌博").variants == (("网", "上", "赌", "博"),)


@settings(max_examples=200)
@given(st.text(max_size=300), st.sampled_from([None, "en", "de-DE", "tr", "ja"]))
def test_check_never_raises_and_refuses_what_it_scrubbed(text: str, locale: str | None) -> None:
    verdict = FILTER.check(text, locale)
    assert verdict.allowed == (not verdict.reasons)
    scrubbed = FILTER.scrub(text, locale)
    if scrubbed.findings:
        assert not FILTER.check(scrubbed.text, locale).allowed


def test_a_check_is_bounded_on_adversarial_text() -> None:
    f = SafetyFilter(POLICY, cache_size=0)
    texts = [
        "a" * MAX_INPUT_CHARS,
        "a " * (MAX_INPUT_CHARS // 2),
        "1 " * 1000,
        "h a t e " * 200,
        "@" * MAX_INPUT_CHARS,
        "x at y dot " * 150,
        "\u200b" * MAX_INPUT_CHARS,
        "赌" * MAX_INPUT_CHARS,
    ]
    start = time.perf_counter()
    for text in texts:
        f.check(text)
    assert time.perf_counter() - start < 1.0


def test_a_topic_may_share_a_name_with_a_list() -> None:
    f = SafetyFilter(
        SafetyPolicy(
            blocked_terms=("alpha",),
            sensitive_topics={"blocked": ("beta",), "exempt": ("gamma",)},
            overrides={"de": PolicyOverride(exempt_terms=("delta",))},
        )
    )
    assert f.check("alpha", "de").reasons == (Reason("blocked_term", "alpha"),)
    assert f.check("beta", "de").reasons == (Reason("sensitive_topic", "beta", topic="blocked"),)
    assert f.check("gamma").reasons == (Reason("sensitive_topic", "gamma", topic="exempt"),)
