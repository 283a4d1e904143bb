"""Every exploration policy a surface may name, checked the same way.

Parametrized over ``serving.components.POLICIES``; each policy is built by name with the
parameters in ``POLICY_PARAMS`` and asked to choose ``k`` items from a ranked slate that
alternates ``b`` and ``a`` items. The world's evidence favours ``a``: their click counts
(Thompson sampling) and, for LinUCB, clicks that followed the user's category affinity,
which only ``a`` items have for an ``a`` asker.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain, zip_longest
from typing import Any

import numpy as np
import pytest

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.explore.policies import ExplorationPolicy, FeatureExplorationPolicy
from recloop.explore.thompson import InMemoryItemStats
from recloop.features.bandit_context import ContextEvidence, context
from recloop.features.candidates import FeatureMatrix
from recloop.ranking.learned import RankerModels
from recloop.retrieval.popularity import PopularityIndex
from recloop.serving.components import POLICIES, Resources, build_policy
from tests.contracts.support import CALL_MS_BOUND, COSTS, per_call_ms
from tests.contracts.world import APP, ASKERS, Catalog, World, group_of

pytestmark = pytest.mark.unit

KIND = "exploration policy"
NAMES = list(POLICIES)
each_policy = pytest.mark.parametrize("name", NAMES)
K = 5

#: The parameters each policy is built with: what makes its known answer show.
POLICY_PARAMS: dict[str, dict[str, Any]] = {
    "none": {},
    "epsilon-greedy": {"epsilon": 1.0},
    "thompson": {},
    "linucb": {},
}


def _served(out: Slate) -> list[str]:
    return out.item_ids()


#: What each policy serves from the ranked slate (``b``, ``a``, ``b``, ...), given ``k``.
KNOWN_ANSWERS: dict[str, Callable[[Slate, Slate], bool]] = {
    # The ranked head, surely.
    "none": lambda slate, out: (
        _served(out) == slate.item_ids()[:K] and all(i.propensity == 1.0 for i in out.items)
    ),
    # Every position explores: each from the pool below the head, uniformly.
    "epsilon-greedy": lambda slate, out: (
        set(_served(out)) <= set(slate.item_ids()[K:])
        and all(i.propensity == pytest.approx(1.0 / (len(slate.items) - K)) for i in out.items)
    ),
    # The counts: ``a`` items are clicked a hundred times as often.
    "thompson": lambda slate, out: all(group_of(i) == "a" for i in _served(out)),
    # The evidence: clicks followed the category affinity, and only ``a`` items have it.
    "linucb": lambda slate, out: all(group_of(i) == "a" for i in _served(out)),
}


def _evidence(rows: int = 2000) -> ContextEvidence:
    """Logged impressions whose clicks followed the category affinity (60% against 2%)."""
    rng = np.random.default_rng(3)
    affinity = rng.integers(0, 2, rows).astype(float)
    inputs = np.full((rows, 6), np.nan)
    inputs[:, 3] = affinity  # user_category_affinity, the others unknown
    x = context(inputs, positions=rng.integers(0, 10, rows))
    clicked = rng.random(rows) < np.where(affinity > 0, 0.6, 0.02)
    return ContextEvidence.fit(x, clicked.astype(float))


def _features(slate: Slate, group: str) -> FeatureMatrix:
    """The request's feature matrix: the asker's affinity with each item's category."""
    ids = tuple(slate.item_ids())
    affinity = np.array([[float(group_of(i) == group)] for i in ids])
    return FeatureMatrix(ids, ("user_category_affinity",), affinity)


@pytest.fixture(scope="module")
def resources(world: World) -> Resources:
    """What serving builds policies from: item counts and LinUCB's evidence."""
    stats = InMemoryItemStats()
    ids = list(world.item_ids)
    stats.update(
        APP,
        ids,
        clicks=[300.0 if group_of(i) == "a" else 3.0 for i in ids],
        impressions=[1000.0] * len(ids),
    )
    rankers = RankerModels()
    rankers.publish(APP, None, _evidence())
    popularity = PopularityIndex()
    return Resources(
        popularity=popularity, catalog=Catalog(world.item_ids), rankers=rankers, item_stats=stats
    )


def _policy(name: str, resources: Resources) -> ExplorationPolicy:
    assert name in POLICY_PARAMS, f"add the parameters of {name!r} to POLICY_PARAMS"
    return build_policy(name, POLICY_PARAMS[name], resources, f"exploration.{name}")


def _slate(world: World) -> Slate:
    """``b00``, ``a00``, ``b01``, ``a01``, ...: the ranker put a ``b`` item first."""
    by_group = [sorted(i for i in world.item_ids if group_of(i) == g) for g in ("b", "a")]
    ids = [i for i in chain.from_iterable(zip_longest(*by_group)) if i is not None]
    n = len(ids)
    return Slate(tuple(ScoredItem(i, float(n - r), "src", "why") for r, i in enumerate(ids)))


def _explore(policy: ExplorationPolicy, slate: Slate, ctx: RequestContext, k: int) -> Slate:
    """As the pipeline asks: with the request's features, for a policy that reads them."""
    if isinstance(policy, FeatureExplorationPolicy):
        return policy.explore_with_features(slate, ctx, k, _features(slate, "a"))
    return policy.explore(slate, ctx, k)


@each_policy
def test_knows_the_answer(name: str, resources: Resources, world: World) -> None:
    assert name in KNOWN_ANSWERS, f"add the known answer of {name!r} to KNOWN_ANSWERS"
    policy = _policy(name, resources)
    slate = _slate(world)
    for n in range(5):
        out = _explore(policy, slate, ASKERS["a"].context(request_id=f"r-{n}"), K)
        assert KNOWN_ANSWERS[name](slate, out), _served(out)


@each_policy
def test_serves_at_most_k_of_the_slate_each_with_a_propensity(
    name: str, resources: Resources, world: World
) -> None:
    # The slate reaching the policy holds only eligible items: a policy that served anything
    # else could serve a consumed or blocked one.
    policy = _policy(name, resources)
    ctx = ASKERS["a"].context()
    full = _slate(world)
    for slate in (full, Slate(full.items[:3]), Slate(())):
        for k in (0, 1, K, len(full.items) + 5):
            out = _explore(policy, slate, ctx, k)
            ids = _served(out)
            assert len(ids) == min(k, len(slate.items))
            assert len(set(ids)) == len(ids)
            assert set(ids) <= set(slate.item_ids())
            assert all(0.0 < item.propensity <= 1.0 for item in out.items)


@each_policy
def test_is_deterministic_under_the_request_seed(
    name: str, resources: Resources, world: World
) -> None:
    policy = _policy(name, resources)
    slate = _slate(world)
    for n in range(3):
        ctx = ASKERS["b"].context(request_id=f"replay-{n}")
        assert _explore(policy, slate, ctx, K) == _explore(policy, slate, ctx, K)


@each_policy
def test_reports_its_cost(name: str, resources: Resources, world: World) -> None:
    policy = _policy(name, resources)
    slate, ctx = _slate(world), ASKERS["a"].context()
    cost = COSTS[(KIND, name)]
    cost["call_ms"] = per_call_ms(lambda: _explore(policy, slate, ctx, K))
    assert cost["call_ms"] <= CALL_MS_BOUND
