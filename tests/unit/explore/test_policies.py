"""Exploration policies: what they serve, and propensities that match how often they do."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recloop.domain import RequestContext, Slate
from recloop.explore.policies import EpsilonGreedy, EpsilonGreedyConfig, NoExplorationPolicy
from tests.factories import make_slate

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SLATE = make_slate(30)


def _ctx(request_id: str) -> RequestContext:
    return RequestContext(app_id="a", request_id=request_id, surface="home", user_id="u", now=NOW)


def test_no_exploration_serves_the_head_with_propensity_one() -> None:
    out = NoExplorationPolicy().explore(SLATE, _ctx("r"), 5)
    assert out.item_ids() == ["i0", "i1", "i2", "i3", "i4"]
    assert {item.propensity for item in out.items} == {1.0}


def test_epsilon_zero_or_no_pool_never_explores() -> None:
    assert EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.0)).explore(
        SLATE, _ctx("r"), 5
    ).item_ids() == ["i0", "i1", "i2", "i3", "i4"]
    short = Slate(SLATE.items[:5])
    out = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.9)).explore(short, _ctx("r"), 5)
    assert out.item_ids() == ["i0", "i1", "i2", "i3", "i4"]
    assert {item.propensity for item in out.items} == {1.0}


def test_explored_items_come_from_the_pool_with_their_logged_propensity() -> None:
    policy = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.3, pool=10))
    explored = 0
    for n in range(500):
        out = policy.explore(SLATE, _ctx(f"r{n}"), 5)
        assert len(set(out.item_ids())) == 5
        for item in out.items:
            rank = int(item.item_id[1:])
            if rank < 5:
                assert item.propensity == pytest.approx(0.7)
            else:
                explored += 1
                assert 5 <= rank < 15  # the pool: the 10 items ranked right below
                assert item.propensity == pytest.approx(0.3 / 10)
    share = explored / (500 * 5)
    assert 0.25 < share < 0.35


def test_the_logged_propensity_is_how_often_the_policy_does_it() -> None:
    """At the first position, each pool item should be served with probability eps / pool."""
    policy = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.2, pool=4))
    n = 8000
    first = [policy.explore(SLATE, _ctx(f"q{i}"), 3).items[0] for i in range(n)]
    for pool_item in ("i3", "i4", "i5", "i6"):
        served = [item for item in first if item.item_id == pool_item]
        assert served[0].propensity == pytest.approx(0.05)
        assert len(served) / n == pytest.approx(0.05, abs=0.012)
    assert sum(item.item_id == "i0" for item in first) / n == pytest.approx(0.8, abs=0.02)


def test_a_request_is_replayable_from_its_id() -> None:
    policy = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.5))
    assert policy.explore(SLATE, _ctx("same"), 8) == policy.explore(SLATE, _ctx("same"), 8)


@pytest.mark.parametrize(("epsilon", "pool", "k"), [(0.3, 10, 5), (0.5, 2, 6)])
def test_every_logged_propensity_is_the_items_frequency_at_that_position(
    epsilon: float, pool: int, k: int
) -> None:
    """Marginals, at every position: what position-based off-policy estimators need, also
    when a small pool runs out."""
    policy = EpsilonGreedy(EpsilonGreedyConfig(epsilon=epsilon, pool=pool))
    n = 6000
    counts: dict[tuple[str, int], int] = {}
    logged: dict[tuple[str, int], float] = {}
    for i in range(n):
        for position, item in enumerate(policy.explore(SLATE, _ctx(f"m{i}"), k).items):
            key = (item.item_id, position)
            counts[key] = counts.get(key, 0) + 1
            assert logged.setdefault(key, item.propensity) == pytest.approx(item.propensity)
    for key, count in counts.items():
        assert count / n == pytest.approx(logged[key], abs=0.02), key


@pytest.mark.parametrize(("epsilon", "pool", "k"), [(0.1, 50, 10), (0.5, 3, 6), (0.0, 5, 4)])
def test_the_stated_support_is_every_items_frequency_at_every_position(
    epsilon: float, pool: int, k: int
) -> None:
    """What a shadow's support check reads: served items and items never served alike."""
    policy = EpsilonGreedy(EpsilonGreedyConfig(epsilon=epsilon, pool=pool))
    support = policy.support(SLATE, _ctx("any"), k)
    n = 6000
    counts: dict[tuple[str, int], int] = {}
    for i in range(n):
        for position, item in enumerate(policy.explore(SLATE, _ctx(f"s{i}"), k).items):
            counts[(item.item_id, position)] = counts.get((item.item_id, position), 0) + 1
    assert set(counts) <= set(support)  # nothing is served outside the stated support
    for position in range(k):
        assert sum(p for (_, j), p in support.items() if j == position) == pytest.approx(1.0)
    for key, p in support.items():
        assert counts.get(key, 0) / n == pytest.approx(p, abs=0.02), key
    # Items below the pool are never served anywhere.
    assert all(int(item[1:]) < k + pool for item, _ in support)


def test_no_exploration_supports_only_the_head_in_order() -> None:
    support = NoExplorationPolicy().support(SLATE, _ctx("r"), 3)
    assert support == {("i0", 0): 1.0, ("i1", 1): 1.0, ("i2", 2): 1.0}
