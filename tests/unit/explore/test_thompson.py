"""Bandit policies: valid lists, replayable draws, and propensities that match frequencies."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recloop.domain import RequestContext, ScoredItem
from recloop.explore.drawn_slots import EXPLORED_REASON
from recloop.explore.linucb import LinUCB, LinUCBConfig
from recloop.explore.policies import ExplorationPolicy
from recloop.explore.thompson import InMemoryItemStats, ThompsonConfig, ThompsonSampling
from tests.factories import make_slate

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, tzinfo=UTC)
DIM = 4


def _ctx(request_id: str) -> RequestContext:
    return RequestContext(app_id="a", request_id=request_id, surface="home", user_id="u", now=NOW)


class IndexFeatures:
    """Deterministic features from the item's index: a bias, two pseudo-random columns, and
    an indicator for item ``i0``."""

    def features(self, items: Sequence[ScoredItem], ctx: RequestContext) -> np.ndarray:
        index = np.array([int(item.item_id[1:]) for item in items], dtype=float)
        return np.column_stack(
            [np.ones_like(index), np.sin(index), np.cos(3.0 * index), index == 0]
        ).astype(float)


def _thompson(stats: InMemoryItemStats | None = None, **overrides: object) -> ThompsonSampling:
    return ThompsonSampling(ThompsonConfig.model_validate(overrides), stats or InMemoryItemStats())


def _linucb(**overrides: object) -> LinUCB:
    return LinUCB(LinUCBConfig.model_validate({"dim": DIM, **overrides}), IndexFeatures())


def _stats(n: int, seed: int) -> InMemoryItemStats:
    rng = np.random.default_rng(seed)
    stats = InMemoryItemStats()
    impressions = rng.integers(0, 200, size=n).astype(float)
    clicks = np.floor(impressions * rng.uniform(0.0, 0.4, size=n))
    stats.update("a", [f"i{m}" for m in range(n)], clicks.tolist(), impressions.tolist())
    return stats


def test_both_bandits_satisfy_the_exploration_policy_protocol() -> None:
    policies: list[ExplorationPolicy] = [_thompson(), _linucb()]
    assert [p.name for p in policies] == ["thompson", "linucb"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 40),
    k=st.integers(0, 15),
    pool=st.integers(1, 30),
    slots=st.one_of(st.none(), st.integers(0, 15)),
    request_id=st.text(min_size=1, max_size=12),
    seed=st.integers(0, 1000),
    use_linucb=st.booleans(),
)
def test_served_items_are_distinct_from_the_slate_with_propensities_in_0_1(
    n: int,
    k: int,
    pool: int,
    slots: int | None,
    request_id: str,
    seed: int,
    use_linucb: bool,
) -> None:
    common = {"pool": pool, "explore_slots": slots, "propensity_draws": 50}
    policy: ExplorationPolicy = (
        _linucb(**common) if use_linucb else _thompson(_stats(max(n, 1), seed), **common)
    )
    slate = make_slate(n)
    out = policy.explore(slate, _ctx(request_id), k)
    ids = out.item_ids()
    assert len(ids) == min(k, n)
    assert len(set(ids)) == len(ids)
    assert set(ids) <= set(slate.item_ids())
    assert all(0.0 < item.propensity <= 1.0 for item in out.items)
    # Replaying the request gives the same list and the same propensities.
    again = policy.explore(slate, _ctx(request_id), k)
    assert again == out


def test_the_same_request_id_gives_the_same_list_and_another_id_may_not() -> None:
    for policy in (_thompson(_stats(30, 1)), _linucb()):
        first = policy.explore(make_slate(30), _ctx("req-1"), 10)
        assert policy.explore(make_slate(30), _ctx("req-1"), 10) == first
        others = {
            tuple(policy.explore(make_slate(30), _ctx(f"r{m}"), 10).item_ids()) for m in range(20)
        }
        assert len(others) > 1


def test_thompson_without_stats_explores_a_different_list_per_request() -> None:
    policy = _thompson(pool=30)
    lists = {tuple(policy.explore(make_slate(30), _ctx(f"r{m}"), 5).item_ids()) for m in range(50)}
    assert len(lists) >= 45
    tops = Counter(
        policy.explore(make_slate(30), _ctx(f"t{m}"), 5).item_ids()[0] for m in range(300)
    )
    assert len(tops) >= 25  # the first position spreads over the pool, not the ranker's head


def test_thompson_serves_an_item_with_overwhelming_evidence_first_with_propensity_one() -> None:
    stats = InMemoryItemStats()
    ids = [f"i{m}" for m in range(20)]
    stats.update("a", ids, [100.0] * 20, [10_000.0] * 20)  # 1% each...
    stats.update("a", ["i7"], [5_000.0], [10_000.0])  # ...and i7 at 25%
    policy = _thompson(stats, pool=20)
    tops = [policy.explore(make_slate(20), _ctx(f"r{m}"), 5).items[0] for m in range(200)]
    assert sum(item.item_id == "i7" for item in tops) >= 198
    assert all(item.propensity > 0.99 for item in tops if item.item_id == "i7")


def test_stats_are_per_app() -> None:
    stats = InMemoryItemStats()
    stats.update("a", ["x"], [1.0])
    assert [arr.tolist() for arr in stats.get("a", ["x", "y"])] == [[1.0, 0.0], [1.0, 0.0]]
    assert [arr.tolist() for arr in stats.get("b", ["x"])] == [[0.0], [0.0]]
    with pytest.raises(ValueError, match="same length"):
        stats.update("a", ["x"], [1.0, 0.0])


def test_in_memory_stats_count_every_concurrent_update() -> None:
    stats = InMemoryItemStats()

    def work() -> None:
        for _ in range(500):
            stats.update("a", ["x", "y"], [1.0, 0.0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    impressions, clicks = stats.get("a", ["x", "y"])
    assert impressions.tolist() == [2000.0, 2000.0]
    assert clicks.tolist() == [2000.0, 0.0]


def _moderate(use_linucb: bool, draws: int) -> ThompsonSampling | LinUCB:
    """A bandit with some evidence: no position is nearly certain."""
    n = 6
    if use_linucb:
        policy = _linucb(temperature=0.5, propensity_draws=draws)
        x = IndexFeatures().features(make_slate(n).items, _ctx("x"))
        policy.update(x, np.array([0.5, 0.1, 0.3, 0.2, 0.4, 0.1]))
        return policy
    stats = InMemoryItemStats()
    stats.update("a", [f"i{m}" for m in range(n)], [2, 4, 3, 6, 1, 5], [20, 20, 15, 30, 10, 20])
    return _thompson(stats, propensity_draws=draws)


@pytest.mark.parametrize("use_linucb", [False, True], ids=["thompson", "linucb"])
def test_monte_carlo_propensities_match_how_often_the_policy_serves_each_position(
    use_linucb: bool,
) -> None:
    n, k, requests = 6, 3, 3000
    policy = _moderate(use_linucb, draws=200)
    counts: Counter[tuple[str, int]] = Counter()
    logged: dict[tuple[str, int], list[float]] = {}
    for m in range(requests):
        for j, item in enumerate(policy.explore(make_slate(n), _ctx(f"r{m}"), k).items):
            counts[item.item_id, j] += 1
            logged.setdefault((item.item_id, j), []).append(item.propensity)
    wide = _moderate(use_linucb, draws=40_000)
    matrix = wide.position_probabilities(make_slate(n), _ctx("estimate"), k)
    assert np.allclose(matrix.probabilities.sum(axis=0), 1.0)
    for i, item_id in enumerate(matrix.item_ids):
        for j in range(k):
            empirical = counts[item_id, j] / requests
            assert matrix.probabilities[i, j] == pytest.approx(empirical, abs=0.03)
            if counts[item_id, j] >= 100:  # the propensities logged with the served item
                assert float(np.mean(logged[item_id, j])) == pytest.approx(empirical, abs=0.03)


def test_linucb_first_position_follows_the_softmax_of_the_upper_bounds() -> None:
    policy = _linucb(temperature=0.2, propensity_draws=40_000)
    x = IndexFeatures().features(make_slate(8).items, _ctx("x"))
    policy.update(x, np.linspace(0.6, 0.0, 8))
    logits = policy.upper_bounds(x) / 0.2
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    matrix = policy.position_probabilities(make_slate(8), _ctx("r"), 3)
    assert matrix.probabilities[:, 0] == pytest.approx(softmax, abs=0.01)


def test_linucb_update_recovers_a_known_linear_reward() -> None:
    rng = np.random.default_rng(3)
    truth = np.array([0.4, -0.2, 0.1, 0.3])
    policy = _linucb(ridge=1.0)
    x = rng.normal(size=(3000, DIM))
    rewards = x @ truth + rng.normal(0.0, 0.1, size=3000)
    for start in range(0, 3000, 7):  # in uneven batches, as serving would
        policy.update(x[start : start + 7], rewards[start : start + 7])
    assert np.abs(policy.theta - truth).max() < 0.02
    ridge = np.linalg.solve(np.eye(DIM) + x.T @ x, x.T @ rewards)
    assert policy.theta == pytest.approx(ridge, abs=1e-9)  # Sherman-Morrison is exact
    assert policy.observations == 3000


def test_linucb_confidence_narrows_and_the_best_item_comes_first() -> None:
    policy = _linucb(alpha=0.5, temperature=0.02)
    x = IndexFeatures().features(make_slate(10).items, _ctx("x"))
    before = policy.upper_bounds(x) - x @ policy.theta
    rewards = np.where(np.arange(10) == 0, 0.8, 0.1)
    for _ in range(200):
        policy.update(x, rewards)
    after = policy.upper_bounds(x) - x @ policy.theta
    assert np.all(after < before / 10)
    firsts = [policy.explore(make_slate(10), _ctx(f"r{m}"), 3).items[0] for m in range(100)]
    assert all(item.item_id == "i0" for item in firsts)
    assert firsts[0].propensity > 0.99


def test_linucb_rejects_features_of_the_wrong_shape() -> None:
    policy = _linucb()
    with pytest.raises(ValueError, match="expected features"):
        policy.update(np.ones((2, DIM + 1)), np.ones(2))
    with pytest.raises(ValueError, match="expected features"):
        policy.upper_bounds(np.ones(DIM))


def test_explore_slots_keep_the_ranker_head_and_fill_the_tail_from_the_pool() -> None:
    policy = _thompson(pool=20, explore_slots=2)
    explored = 0
    for m in range(100):
        out = policy.explore(make_slate(30), _ctx(f"r{m}"), 5)
        assert out.item_ids()[:3] == ["i0", "i1", "i2"]
        assert [item.propensity for item in out.items[:3]] == [1.0, 1.0, 1.0]
        for item in out.items[3:]:
            rank = int(item.item_id[1:])
            assert 3 <= rank < 20
            assert (item.reason == EXPLORED_REASON) == (rank >= 5)
            explored += rank >= 5
    assert explored > 100
    none = _thompson(explore_slots=0).explore(make_slate(30), _ctx("r"), 5)
    assert none.item_ids() == ["i0", "i1", "i2", "i3", "i4"]
    assert {item.propensity for item in none.items} == {1.0}


def test_a_short_slate_or_small_pool_still_fills_min_k_positions() -> None:
    assert _thompson(pool=2).explore(make_slate(30), _ctx("r"), 5).item_ids() != []
    assert len(_thompson(pool=2).explore(make_slate(30), _ctx("r"), 5).items) == 5
    assert len(_linucb(pool=1).explore(make_slate(3), _ctx("r"), 5).items) == 3
    assert _linucb().explore(make_slate(3), _ctx("r"), 0).items == ()
    assert _thompson().explore(make_slate(0), _ctx("r"), 4).items == ()
