"""Team-draft interleaving: the list it builds, click credit, and the per-user preference."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.analysis.interleaving import (
    Credit,
    Outcome,
    aggregate,
    aggregate_counts,
    credit,
)
from recloop.experiments.team_draft import Interleaving, Team, team_draft

pytestmark = pytest.mark.unit

ITEMS = [f"i{n}" for n in range(30)]
rankings = st.lists(st.sampled_from(ITEMS), max_size=25)
distinct_rankings = st.lists(st.sampled_from(ITEMS), min_size=12, max_size=25, unique=True)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@given(rankings, rankings, st.integers(0, 30), seeds)
def test_every_item_comes_from_the_ranking_of_its_team(
    a: list[str], b: list[str], k: int, seed: int
) -> None:
    result = team_draft(a, b, k, seed=seed)
    for item, team in zip(result.items, result.teams, strict=True):
        if team is Team.A:
            assert item in a
        elif team is Team.B:
            assert item in b
        else:
            assert item in a
            assert item in b


@given(rankings, rankings, st.integers(0, 30), seeds)
def test_interleaved_list_has_no_duplicates_and_is_as_long_as_it_can_be(
    a: list[str], b: list[str], k: int, seed: int
) -> None:
    result = team_draft(a, b, k, seed=seed)
    assert len(set(result.items)) == len(result.items)
    assert len(result.items) == min(k, len(set(a) | set(b)))


@given(distinct_rankings, distinct_rankings, st.integers(0, 12), seeds)
def test_teams_contribute_equal_counts_or_one_more_while_both_have_items(
    a: list[str], b: list[str], k: int, seed: int
) -> None:
    result = team_draft(a, b, k, seed=seed)
    picks_a = result.teams.count(Team.A)
    picks_b = result.teams.count(Team.B)
    assert abs(picks_a - picks_b) <= 1


@given(distinct_rankings, distinct_rankings, st.integers(0, 12), seeds)
def test_interleaved_top_k_holds_the_top_half_k_of_each_ranking(
    a: list[str], b: list[str], k: int, seed: int
) -> None:
    shown = set(team_draft(a, b, k, seed=seed).items)
    assert set(a[: k // 2]) <= shown
    assert set(b[: k // 2]) <= shown


@given(rankings, st.integers(0, 30), seeds, st.lists(st.integers(0, 29)))
def test_identical_rankings_always_tie_or_get_no_clicks(
    a: list[str], k: int, seed: int, clicks: list[int]
) -> None:
    result = team_draft(a, list(a), k, seed=seed)
    assert all(team is None for team in result.teams)
    positions = [p for p in clicks if p < len(result.items)]
    outcome = credit(result, positions).outcome
    assert outcome is (Outcome.TIE if positions else Outcome.NO_CLICKS)


@given(distinct_rankings, distinct_rankings, st.integers(1, 12), seeds, st.data())
def test_clicks_only_on_a_items_give_a_the_win(
    a: list[str], b: list[str], k: int, seed: int, data: st.DataObject
) -> None:
    result = team_draft(a, b, k, seed=seed)
    a_positions = [p for p, team in enumerate(result.teams) if team is Team.A]
    clicked = data.draw(st.lists(st.sampled_from(a_positions), min_size=1)) if a_positions else []
    outcome = credit(result, clicked).outcome
    assert outcome is (Outcome.A_WINS if clicked else Outcome.NO_CLICKS)


def test_common_prefix_goes_to_neither_team_then_the_draft_begins() -> None:
    result = team_draft(["x", "y", "a1", "a2"], ["x", "y", "b1", "b2"], 4, seed=1)
    assert result.items[:2] == ("x", "y")
    assert result.teams[:2] == (None, None)
    assert set(result.teams[2:]) == {Team.A, Team.B}
    assert credit(result, [0, 1]).outcome is Outcome.TIE


def test_same_seed_replays_the_same_interleaving_and_seeds_vary_who_goes_first() -> None:
    a = [f"a{n}" for n in range(10)]
    b = [f"b{n}" for n in range(10)]
    assert team_draft(a, b, 10, seed="req-42") == team_draft(a, b, 10, seed="req-42")
    firsts = {team_draft(a, b, 10, seed=f"req-{n}").teams[0] for n in range(40)}
    assert firsts == {Team.A, Team.B}
    rng_one, rng_two = np.random.default_rng(5), np.random.default_rng(5)
    assert team_draft(a, b, 10, rng=rng_one) == team_draft(a, b, 10, rng=rng_two)


def test_coin_is_fair_so_each_team_leads_about_half_the_time() -> None:
    rng = np.random.default_rng(0)
    leads = sum(team_draft(["a"], ["b"], 2, rng=rng).teams[0] is Team.A for _ in range(4000))
    assert leads / 4000 == pytest.approx(0.5, abs=0.03)


def test_shorter_ranking_runs_out_and_the_other_fills_the_list() -> None:
    result = team_draft(["a1"], ["b1", "b2", "b3", "b4"], 4, seed=3)
    assert sorted(result.items) == ["a1", "b1", "b2", "b3"]
    assert result.teams.count(Team.A) == 1


def test_team_draft_needs_exactly_one_source_of_randomness() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        team_draft(["a"], ["b"], 2)
    with pytest.raises(ValueError, match="exactly one"):
        team_draft(["a"], ["b"], 2, seed=1, rng=np.random.default_rng(1))


def test_click_outside_the_list_is_rejected() -> None:
    result = Interleaving(("a", "b"), (Team.A, Team.B))
    with pytest.raises(ValueError, match="outside"):
        credit(result, [2])


def test_credit_counts_each_clicked_position_once_per_team() -> None:
    result = Interleaving(("a", "b", "c", "s"), (Team.A, Team.B, Team.A, None))
    assert credit(result, [0, 0, 2, 1, 3]) == Credit(2, 1, 1)
    assert credit(result, [1]).outcome is Outcome.B_WINS
    assert credit(result, []).outcome is Outcome.NO_CLICKS


def test_delta_follows_chapelle_and_the_sign_test_counts_users() -> None:
    # Three users: two prefer A, one ties; impressions 3 A wins, 1 B win, 2 ties.
    result = aggregate_counts([2, 1, 0], [0, 1, 0], [0, 0, 2], impressions=10)
    assert result.delta == pytest.approx((3 + 2 / 2) / 6 - 0.5)
    assert (result.users_prefer_a, result.users_prefer_b, result.users_tied) == (1, 0, 2)
    assert result.p_value == pytest.approx(1.0)
    assert result.impressions == 10
    assert not result.significant
    assert result.winner is None


def test_consistent_preference_over_many_users_is_significant_for_that_team() -> None:
    rng = np.random.default_rng(1)
    users = 400
    wins_a = rng.binomial(3, 0.4, size=users)
    wins_b = rng.binomial(3, 0.25, size=users)
    result = aggregate_counts(wins_a, wins_b, np.zeros(users, dtype=int))
    assert result.winner is Team.A
    assert result.delta > 0
    assert result.delta_ci[0] > 0
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["winner"] == "A"


def test_aggregate_counts_impressions_and_outcomes_per_user() -> None:
    result = aggregate(
        {
            "u1": [Credit(1, 0), Credit(0, 0), Credit(2, 1)],
            "u2": [Credit(0, 1), Credit(0, 0, 1)],
            "u3": [Credit(0, 0)],
        }
    )
    assert (result.users, result.impressions) == (3, 6)
    assert (result.wins_a, result.wins_b, result.ties) == (2, 1, 1)
    assert (result.users_prefer_a, result.users_prefer_b, result.users_tied) == (1, 1, 0)


def test_no_clicks_at_all_gives_no_preference_and_nan_free_json() -> None:
    result = aggregate({"u1": [Credit(0, 0)], "u2": [Credit(0, 0)]})
    assert result.p_value == 1.0
    assert result.winner is None
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["delta"] is None


def test_clicks_that_ignore_the_items_favour_neither_team() -> None:
    # Position decides clicks, not the item: no ranker is better, and the coin must keep
    # either team from owning the top positions.
    rng = np.random.default_rng(11)
    a = [f"a{n}" for n in range(10)]
    b = [f"b{n}" for n in range(10)]
    examine = 1.0 / (1.0 + np.arange(6))
    outcomes = [
        credit(team_draft(a, b, 6, rng=rng), np.flatnonzero(rng.random(6) < 0.5 * examine)).outcome
        for _ in range(4000)
    ]
    wins_a, wins_b = outcomes.count(Outcome.A_WINS), outcomes.count(Outcome.B_WINS)
    assert abs(wins_a - wins_b) <= 4 * np.sqrt(wins_a + wins_b)
