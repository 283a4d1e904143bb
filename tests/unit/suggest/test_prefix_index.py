"""PrefixIndex: known answers, word starts, typos, save/load, swaps, and a brute-force check."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recloop.suggest.prefix_index import (
    Completion,
    PrefixIndex,
    PrefixIndexSlot,
    typo_allowance,
)

pytestmark = pytest.mark.unit

LOG = [
    ("running shoes", 10.0),
    ("run", 7.0),
    ("shoe store", 6.0),
    ("running", 5.0),
    ("red shoes", 4.0),
    ("shoes", 3.0),
    ("blue running shoes", 2.0),
    ("runner", 2.0),  # ties with the one above: text order breaks it
    ("café au lait", 1.5),
    ("東京 天気", 1.2),
    ("東京タワー", 1.1),
    ("مرحبا بكم", 1.0),
    ("مرحبا", 0.9),
]

# Tiny tables force both paths: precomputed rows for large ranges, scans for small ones.
LAYOUTS = [
    {"top_k": 32, "leaf_size": 256},
    {"top_k": 2, "leaf_size": 1},
    {"top_k": 3, "leaf_size": 2},
]


@pytest.fixture(params=LAYOUTS, ids=lambda p: f"top{p['top_k']}-leaf{p['leaf_size']}")
def index(request: pytest.FixtureRequest) -> PrefixIndex:
    return PrefixIndex.build(LOG, **request.param)


def queries(found: list[Completion]) -> list[str]:
    return [c.query for c in found]


# --- known answers ----------------------------------------------------------------------


def test_top_k_by_weight_then_text(index: PrefixIndex) -> None:
    assert queries(index.complete("run", 10)) == [
        "running shoes",
        "run",
        "running",
        "runner",
    ]
    assert queries(index.complete("run", 2)) == ["running shoes", "run"]
    assert index.complete("run", 1) == [Completion("running shoes", 10.0, "prefix", 0)]


def test_ties_break_by_text() -> None:
    idx = PrefixIndex.build([("b", 1.0), ("a", 1.0), ("c", 1.0), ("ab", 1.0)], top_k=2, leaf_size=1)
    assert queries(idx.complete("", 4)) == ["a", "ab", "b", "c"]
    assert queries(idx.complete("a", 4)) == ["a", "ab"]


def test_empty_prefix_is_the_overall_top(index: PrefixIndex) -> None:
    assert queries(index.complete("", 3)) == ["running shoes", "run", "shoe store"]
    assert len(index.complete("", 100)) == len(LOG)


def test_k_bounds(index: PrefixIndex) -> None:
    assert index.complete("run", 0) == []
    assert index.complete("run", -3) == []
    assert len(index.complete("run", 1000)) == 4
    assert index.complete_words("sho", 0) == []
    assert index.complete_fuzzy("shoes", 0) == []


def test_no_match(index: PrefixIndex) -> None:
    assert index.complete("zebra", 5) == []
    assert index.complete("running shoes and more", 5) == []
    assert index.complete("\uffff", 5) == []


def test_unicode_prefixes(index: PrefixIndex) -> None:
    assert queries(index.complete("東", 5)) == ["東京 天気", "東京タワー"]
    # "東京タ" is 9 bytes: past the 8-byte head, with a character across the boundary.
    assert queries(index.complete("東京タ", 5)) == ["東京タワー"]
    assert queries(index.complete("مر", 5)) == ["مرحبا بكم", "مرحبا"]
    assert queries(index.complete("café", 5)) == ["café au lait"]
    assert index.complete("cafe", 5) == []  # folding diacritics is the normalizer's job


def test_long_prefixes_use_the_whole_key(index: PrefixIndex) -> None:
    assert queries(index.complete("blue running", 5)) == ["blue running shoes"]
    assert queries(index.complete("running shoes", 5)) == ["running shoes"]
    assert index.complete("running shoex", 5) == []


def test_repeated_queries_add_up() -> None:
    idx = PrefixIndex.build([("a", 1.0), ("b", 1.5), ("a", 1.0)])
    assert idx.complete("", 2) == [
        Completion("a", 2.0, "prefix", 0),
        Completion("b", 1.5, "prefix", 0),
    ]
    assert len(idx) == 2


@pytest.mark.parametrize(
    "pair", [("", 1.0), ("a\x00b", 1.0), ("a", float("nan")), ("a", float("inf"))]
)
def test_bad_input_is_refused(pair: tuple[str, float]) -> None:
    with pytest.raises(ValueError, match="query"):
        PrefixIndex.build([pair])


def test_k_above_the_table_scans() -> None:
    log = [(f"q{i:03d}", float(i)) for i in range(300)]
    idx = PrefixIndex.build(log, top_k=4, leaf_size=8)
    assert queries(idx.complete("q", 6)) == [f"q{i:03d}" for i in range(299, 293, -1)]
    assert queries(idx.complete("q1", 12)) == [f"q{i:03d}" for i in range(199, 187, -1)]


def test_empty_index() -> None:
    idx = PrefixIndex.build([])
    assert len(idx) == 0
    assert idx.complete("", 5) == []
    assert idx.complete_words("a", 5) == []
    assert idx.complete_fuzzy("abcdef", 5) == []


# --- word starts --------------------------------------------------------------------------


def test_a_later_word_matches(index: PrefixIndex) -> None:
    assert index.complete_words("shoes", 10) == [
        Completion("running shoes", 10.0, "word", 0),
        Completion("red shoes", 4.0, "word", 0),
        Completion("shoes", 3.0, "prefix", 0),
        Completion("blue running shoes", 2.0, "word", 0),
    ]
    assert queries(index.complete_words("sho", 2)) == ["running shoes", "shoe store"]
    assert queries(index.complete_words("天", 5)) == ["東京 天気"]
    assert queries(index.complete_words("بك", 5)) == ["مرحبا بكم"]


def test_word_matches_start_at_words_only(index: PrefixIndex) -> None:
    assert index.complete_words("unning", 5) == []
    assert index.complete_words("hoes", 5) == []


def test_a_query_counts_once_however_many_words_match() -> None:
    idx = PrefixIndex.build([("a x a y a", 2.0), ("a", 1.0), ("b a", 0.5)], top_k=1, leaf_size=1)
    assert idx.complete_words("a", 5) == [
        Completion("a x a y a", 2.0, "prefix", 0),
        Completion("a", 1.0, "prefix", 0),
        Completion("b a", 0.5, "word", 0),
    ]


def test_empty_prefix_over_words_is_the_overall_top(index: PrefixIndex) -> None:
    assert index.complete_words("", 3) == index.complete("", 3)


# --- typos ---------------------------------------------------------------------------------


def test_allowance_by_word_length() -> None:
    assert [typo_allowance(n) for n in (0, 3, 4, 7, 8, 20)] == [0, 0, 1, 1, 2, 2]


def test_one_typo_in_a_word(index: PrefixIndex) -> None:
    found = index.complete_fuzzy("runnin", 10)  # exact prefix
    assert found[0] == Completion("running shoes", 10.0, "prefix", 0)
    assert index.complete_fuzzy("rinning", 2) == [
        Completion("running shoes", 10.0, "typo", 1),
        Completion("running", 5.0, "typo", 1),
    ]
    # A transposition is one edit; so is a missing or an extra letter.
    assert queries(index.complete_fuzzy("runnign", 1)) == ["running shoes"]
    assert queries(index.complete_fuzzy("rnning", 1)) == ["running shoes"]
    assert queries(index.complete_fuzzy("shooes", 5)) == ["shoes"]


def test_two_typos_need_eight_letters() -> None:
    idx = PrefixIndex.build([("international", 1.0), ("shoes", 1.0)])
    assert idx.complete_fuzzy("intrenatoin", 5) == [Completion("international", 1.0, "typo", 2)]
    assert idx.complete_fuzzy("intrenati", 5) == [Completion("international", 1.0, "typo", 1)]
    assert idx.complete_fuzzy("sheos", 5) == [Completion("shoes", 1.0, "typo", 1)]
    assert idx.complete_fuzzy("shxxs", 5) == []  # two edits in a five-letter word
    assert idx.complete_fuzzy("sxoes", 5, max_edits=0) == []


def test_short_words_hold_no_typo(index: PrefixIndex) -> None:
    assert index.complete_fuzzy("rin", 5) == []
    assert index.complete_fuzzy("rud shoes", 5) == []
    assert queries(index.complete_fuzzy("red shoez", 5)) == ["red shoes"]


def test_typos_in_several_words_share_the_budget(index: PrefixIndex) -> None:
    assert index.complete_fuzzy("runnign shose", 5) == [
        Completion("running shoes", 10.0, "typo", 2)
    ]
    assert index.complete_fuzzy("runnign shose", 5, max_edits=1) == []
    assert queries(index.complete_fuzzy("blue runing sh", 5)) == ["blue running shoes"]


def test_a_typed_space_ends_the_word(index: PrefixIndex) -> None:
    assert queries(index.complete_fuzzy("runing ", 5)) == ["running shoes"]
    assert queries(index.complete_fuzzy("running ", 5)) == ["running shoes"]


def test_typos_in_other_scripts(index: PrefixIndex) -> None:
    assert queries(index.complete_fuzzy("مرحيا", 5)) == ["مرحبا بكم", "مرحبا"]
    assert queries(index.complete_fuzzy("東京タワ一", 5)) == ["東京タワー"]


# --- save / load / swap ----------------------------------------------------------------------


def test_save_and_load_answer_the_same(index: PrefixIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "idx")
    loaded = PrefixIndex.load(tmp_path / "idx")
    assert len(loaded) == len(index)
    assert loaded.params == index.params
    assert loaded.nbytes() == index.nbytes()
    for prefix in ["", "r", "run", "running s", "東京タ", "مر", "sho", "zz"]:
        assert loaded.complete(prefix, 5) == index.complete(prefix, 5)
        assert loaded.complete_words(prefix, 5) == index.complete_words(prefix, 5)
    for prefix in ["rinning", "runnign shose", "shooes", "مرحيا"]:
        assert loaded.complete_fuzzy(prefix, 5) == index.complete_fuzzy(prefix, 5)


def test_empty_index_round_trip(tmp_path: Path) -> None:
    PrefixIndex.build([]).save(tmp_path / "empty")
    loaded = PrefixIndex.load(tmp_path / "empty")
    assert loaded.complete("", 5) == []
    assert loaded.complete_fuzzy("abcd", 5) == []


def test_save_never_overwrites_and_load_checks(tmp_path: Path) -> None:
    idx = PrefixIndex.build(LOG)
    idx.save(tmp_path / "idx")
    with pytest.raises(FileExistsError):
        idx.save(tmp_path / "idx")
    with pytest.raises(ValueError, match="no saved index"):
        PrefixIndex.load(tmp_path / "nothing")
    meta = tmp_path / "idx" / "meta.json"
    meta.write_text(meta.read_text().replace('"format": 1', '"format": 99'))
    with pytest.raises(ValueError, match="format 99"):
        PrefixIndex.load(tmp_path / "idx")


def test_slot_publishes_whole_indexes() -> None:
    slot = PrefixIndexSlot()
    assert slot.current.complete("", 5) == []
    first = PrefixIndex.build([("a", 1.0)])
    second = PrefixIndex.build([("a", 1.0), ("ab", 2.0)])
    slot.publish(first)
    held = slot.current
    assert slot.publish(second) is first
    assert queries(held.complete("a", 5)) == ["a"]  # a reader keeps the index it took
    assert queries(slot.current.complete("a", 5)) == ["ab", "a"]


def test_threads_read_while_the_index_is_swapped() -> None:
    old = PrefixIndex.build([(f"q{i}", float(i)) for i in range(50)], top_k=4, leaf_size=4)
    new = PrefixIndex.build([(f"q{i}", float(-i)) for i in range(50)], top_k=4, leaf_size=4)
    answers = {queries(idx.complete("q", 3)).__repr__() for idx in (old, new)}
    slot = PrefixIndexSlot(old)
    seen: set[str] = set()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(300):
                seen.add(repr(queries(slot.current.complete("q", 3))))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for i in range(100):
        slot.publish(new if i % 2 else old)
    for thread in readers:
        thread.join()
    assert not errors
    assert seen <= answers


# --- property: against brute force ---------------------------------------------------------


def osa(a: str, b: str) -> int:
    """Optimal string alignment distance, by the textbook table."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def fuzzy_edits(typed: str, query: str, max_edits: int) -> int | None:
    """Edits between the typed prefix and the query's start, word by word, or None."""
    tokens, words = typed.split(" "), query.split(" ")
    if len(words) < len(tokens):
        return None
    total = 0
    for i, token in enumerate(tokens):
        allowed = min(typo_allowance(len(token)), max_edits)
        if i < len(tokens) - 1:
            edits = osa(token, words[i])
        else:
            edits = min(osa(token, words[i][:m]) for m in range(len(words[i]) + 1))
        if edits > allowed:
            return None
        total += edits
    return total if total <= max_edits else None


def word_starts(query: str) -> list[str]:
    """The query from each of its words on."""
    words = query.split(" ")
    return [" ".join(words[i:]) for i in range(len(words)) if words[i]]


def ranked(log: dict[str, float]) -> list[str]:
    return sorted(log, key=lambda q: (-log[q], q))


WORD = st.text(alphabet="abcé東ب", min_size=1, max_size=9)
QUERY = st.lists(WORD, min_size=1, max_size=3).map(" ".join)
LOGS = st.dictionaries(QUERY, st.integers(0, 4).map(float), max_size=40)


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, float], list[str], dict[str, int]]:
    log = draw(LOGS)
    typed: list[str] = [""]
    for query in list(log)[:6]:
        cut = query[: draw(st.integers(1, len(query)))]
        typed.append(cut)
        if len(cut) > 1:
            i = draw(st.integers(0, len(cut) - 1))
            typed.append(cut[:i] + draw(st.sampled_from("abé東 ")) + cut[i + 1 :])
    typed += draw(st.lists(st.text(alphabet="abcé東ب ", max_size=10), max_size=3))
    layout = {"top_k": draw(st.integers(1, 5)), "leaf_size": draw(st.integers(1, 6))}
    return log, typed, layout


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(1, 6))
def test_matches_brute_force(
    case: tuple[dict[str, float], list[str], dict[str, int]], k: int
) -> None:
    log, typed, layout = case
    idx = PrefixIndex.build(log.items(), **layout)
    order = ranked(log)
    for prefix in typed:
        expected = [q for q in order if q.startswith(prefix)][:k]
        assert queries(idx.complete(prefix, k)) == expected
        words = [q for q in order if any(tail.startswith(prefix) for tail in word_starts(q))]
        got = idx.complete_words(prefix, k)
        assert queries(got) == words[:k]
        assert all((c.match == "prefix") == c.query.startswith(prefix) for c in got)
        for max_edits in (1, 2):
            fuzzy = [(q, fuzzy_edits(prefix, q, max_edits)) for q in order]
            want = [(q, e) for q, e in fuzzy if e is not None][:k]
            found = idx.complete_fuzzy(prefix, k, max_edits=max_edits, max_expansions=100_000)
            assert [(c.query, c.edits) for c in found] == want
            assert all((c.match == "typo") == (c.edits > 0) for c in found)
