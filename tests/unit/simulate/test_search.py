"""Search behaviour: typing an intent, clicking suggestions by position and appeal, and the
ground truth of any suggestion list in any typing state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from recloop.simulate.search import (
    Episode,
    MostPopularCompletion,
    SearchBehaviour,
    SearchConfig,
    TypingState,
    query_key,
)
from recloop.simulate.world import World, WorldConfig

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)


def _search(**overrides: object) -> SearchBehaviour:
    world = World(WorldConfig(seed=4, initial_items=300, initial_users=40, bot_share=0.0), START)
    return SearchBehaviour(world, config=SearchConfig.model_validate(overrides))


def _episodes(search: SearchBehaviour, count: int, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    users = search.world.users
    out = []
    for n in range(count):
        episode = search.draw_episode(users[n % len(users)], f"q{n}", START, rng)
        assert episode is not None
        out.append(episode)
    return out


def _unrelated(search: SearchBehaviour, episode: Episode, bait: bool = False) -> str:
    """A catalog query sharing no word with the intent (a bait one if asked)."""
    intent = set(episode.intent.split())
    for query in search.vocabulary():
        is_bait = search.query_attractiveness(query) > 1.0
        if not intent & set(query.split()) and is_bait == bait:
            return query
    raise AssertionError("no unrelated query")


def test_query_key_is_the_worlds_form_of_a_query() -> None:
    assert query_key("You Won't Believe: Sci-Fi  Portal") == "you wont believe sci fi portal"
    assert query_key("  STAND-UP ") == "stand up"
    assert query_key("") == ""


def test_typing_produces_prefixes_of_the_intended_query() -> None:
    search = _search(typo_rate=0.0)
    for episode in _episodes(search, 50):
        assert episode.typed == episode.intent
        states = search.states(episode)
        assert [s.typed_chars for s in states] == list(range(len(episode.intent) + 1))
        assert all(episode.intent.startswith(s.prefix) for s in states)
        assert states[0].prefix == ""
        assert states[-1].prefix == episode.intent
    debounced = _search(typo_rate=0.0, debounce=3, zero_prefix=False)
    episode = _episodes(debounced, 1)[0]
    assert [s.typed_chars for s in debounced.states(episode)] == list(
        range(3, len(episode.intent) + 1, 3)
    )


def test_a_typo_is_one_slip_the_world_can_mend() -> None:
    search = _search(typo_rate=1.0)
    slipped = [e for e in _episodes(search, 60) if e.typed != e.intent]
    assert len(slipped) > 40  # queries with no word of four letters stay as they are
    for episode in slipped:
        assert search.corrected(episode.typed) == (episode.intent, True)
        assert abs(len(episode.typed) - len(episode.intent)) <= 1
        assert search.success_probability(episode, episode.typed) == pytest.approx(
            search.config.typo_recall * search.success_probability(episode, episode.intent)
        )


def test_intents_follow_taste() -> None:
    search = _search()
    world = search.world
    rng = np.random.default_rng(1)
    lifts = []
    for user in world.users[:10]:
        targets = [search.draw_episode(user, "q", START, rng) for _ in range(30)]
        match = np.mean([world.item_by_id[e.target].vector @ user.taste for e in targets if e])
        lifts.append(match - np.mean([i.vector @ user.taste for i in world.items]))
    assert min(lifts) > 0.2
    assert np.mean(lifts) > 0.3


def test_a_suggestion_matching_the_intent_is_clicked_more_at_the_same_position() -> None:
    search = _search(typo_rate=0.0)
    clicks = {"intent": 0, "other": 0}
    rng = np.random.default_rng(7)
    for episode in _episodes(search, 40):
        filler = [_unrelated(search, episode)] * 2
        state = TypingState(episode, 1)
        for name, query in (("intent", episode.intent), ("other", _unrelated(search, episode))):
            for _ in range(50):
                choice = search.choose(state, [*filler, query], rng)
                clicks[name] += choice.clicked == 2
    assert clicks["intent"] > 5 * clicks["other"]
    assert clicks["intent"] > 0.5 * 40 * 50 * search.config.look_probability / 3


def test_bait_is_clicked_more_than_a_plain_unrelated_query() -> None:
    search = _search()
    for episode in _episodes(search, 20):
        bait = search.click_given_examined(episode, _unrelated(search, episode, bait=True))
        plain = search.click_given_examined(episode, _unrelated(search, episode))
        assert bait > plain


def test_sampled_clicks_match_the_ground_truth() -> None:
    search = _search()
    episode = _episodes(search, 1)[0]
    state = TypingState(episode, 2)
    others = [q for q in search.vocabulary() if q != episode.intent][:5]
    queries = [others[0], episode.intent, *others[1:]]
    truth = search.truth(state, queries)
    rng = np.random.default_rng(3)
    trials = 6000
    clicks = np.zeros(len(queries))
    for _ in range(trials):
        choice = search.choose(state, queries, rng)
        if choice.clicked is not None:
            clicks[choice.clicked] += 1
    sd = np.sqrt(truth.click * (1 - truth.click) / trials)
    assert np.all(np.abs(clicks / trials - truth.click) <= 4 * sd + 1e-9)
    assert truth.ctr <= search.config.look_probability


def test_a_list_holding_the_intent_is_worth_more_than_one_without_it() -> None:
    search = _search(typo_rate=1.0)
    for episode in _episodes(search, 30):
        state = TypingState(episode, min(3, len(episode.typed)))
        filler = [_unrelated(search, episode)]
        holding = search.truth(state, [*filler, episode.intent])
        without = search.truth(state, [*filler, _unrelated(search, episode, bait=True)])
        assert holding.ctr > without.ctr
        assert holding.expected_saved > without.expected_saved
        if episode.typed != episode.intent:
            # Typed with a typo, the intent itself is a better search than what is typed.
            assert holding.expected_success > without.expected_success
        else:
            assert holding.expected_success >= without.expected_success - 1e-12


def test_an_empty_list_is_worth_typing_the_rest() -> None:
    search = _search()
    episode = _episodes(search, 1)[0]
    truth = search.truth(TypingState(episode, 0), [])
    assert truth.ctr == 0.0
    assert truth.expected_success == search.success_probability(episode, episode.typed)


def test_no_list_beats_the_worlds_best_lists() -> None:
    search = _search()
    rng = np.random.default_rng(5)
    vocabulary = search.vocabulary()
    for episode in _episodes(search, 15):
        state = TypingState(episode, 2)
        best_click, best_success = search.best_lists(state, 4)
        clicks = search.truth(state, best_click).ctr
        success = search.truth(state, best_success).expected_success
        related = [q for q in vocabulary if set(q.split()) & set(episode.intent.split())]
        for _ in range(300):
            pool = related if rng.random() < 0.7 else vocabulary
            queries = [pool[int(i)] for i in rng.choice(len(pool), size=min(4, len(pool)))]
            truth = search.truth(state, list(dict.fromkeys(queries)))
            assert truth.ctr <= clicks + 1e-12
            assert truth.expected_success <= success + 1e-12


def test_best_success_is_exact_on_a_small_pool() -> None:
    """Brute force over every ordered list of 3 from the queries worth a click."""
    search = _search()
    for episode in _episodes(search, 5, seed=2):
        state = TypingState(episode, 0)
        _, best = search.best_lists(state, 3)
        value = search.truth(state, best).expected_success
        typed = search.success_probability(episode, episode.typed)
        useful = [q for q in search.vocabulary() if search.success_probability(episode, q) > typed]
        useful.sort(key=lambda q: -search.click_given_examined(episode, q))
        for queries in itertools.permutations(useful[:9], 3):
            assert search.truth(state, list(queries)).expected_success <= value + 1e-12


def test_best_lists_never_fall_below_the_lists_they_are_judged_against() -> None:
    search = _search()
    for episode in _episodes(search, 10):
        state = TypingState(episode, 1)
        served = [episode.intent, *search.vocabulary()[:3]]
        best_click, best_success = search.best_lists(state, 4, against=[served])
        assert search.truth(state, best_click).ctr >= search.truth(state, served).ctr
        assert (
            search.truth(state, best_success).expected_success
            >= search.truth(state, served).expected_success
        )


def test_most_popular_completion_ranks_submitted_queries_by_count() -> None:
    mpc = MostPopularCompletion()
    for query in ["pasta", "pasta bake", "Pasta  Bake", "pastry", "pasta bake", "grill", "pastry"]:
        mpc.add(query)
    assert mpc.complete("pas", 3) == ["pasta bake", "pastry", "pasta"]
    assert mpc.complete("pasta ", 5) == ["pasta bake"]
    assert mpc.complete("", 2) == ["pasta bake", "pastry"]
    assert mpc.complete("x", 2) == []
    assert len(mpc) == 4
