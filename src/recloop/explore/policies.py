"""The exploration-policy role, the deterministic policy and epsilon-greedy.

Every served position carries a propensity: the probability that this policy put that item
there, given the ranked list it started from. Logged with the served list, it lets later
off-policy evaluation estimate how another policy would have done from these logs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.features.candidates import FeatureMatrix


class ExplorationPolicy(Protocol):
    """Chooses the ``k`` items to serve from the ranked slate (which may hold more, in
    order), and the propensity of every position."""

    name: str

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate:
        """At most ``k`` items to serve, each with the probability it was put there."""
        ...


@runtime_checkable
class FeatureExplorationPolicy(ExplorationPolicy, Protocol):
    """A policy that scores the candidates by their feature rows (LinUCB): the pipeline
    hands it the feature matrix it ranked the request with."""

    def explore_with_features(
        self, slate: Slate, ctx: RequestContext, k: int, features: FeatureMatrix
    ) -> Slate:
        """``explore``, reading each candidate's row of ``features`` (by item id)."""
        ...


#: (item id, position) -> the probability a policy puts that item at that position.
Support = dict[tuple[str, int], float]


@runtime_checkable
class SupportedPolicy(Protocol):
    """A policy that can say, for a request, every (item, position) it could serve and how
    likely: what off-policy evaluation of another list needs from the served one's policy."""

    def support(self, slate: Slate, ctx: RequestContext, k: int) -> Support:
        """The marginal probability of every item at every position; absent pairs are 0."""
        ...


class NoExplorationPolicy:
    """Serves the head of the ranked slate: every position chosen with probability 1."""

    name = "none"

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate:
        """The first ``k`` items with propensity 1.0."""
        return Slate(tuple(dataclasses.replace(item, propensity=1.0) for item in slate.items[:k]))

    def support(self, slate: Slate, ctx: RequestContext, k: int) -> Support:
        """Each of the first ``k`` items at its own position, surely."""
        return {(item.item_id, j): 1.0 for j, item in enumerate(slate.items[:k])}


class EpsilonGreedyConfig(BaseModel):
    """Each position explores with probability ``epsilon``, drawing uniformly from the
    ranked items below the first ``k`` (at most ``pool`` of them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epsilon: float = Field(default=0.1, ge=0.0, le=1.0)
    pool: int = Field(default=50, ge=1)


class EpsilonGreedy:
    """Epsilon-greedy over uncertain candidates: the items the ranker placed just below the
    served ones. Per position, with probability ``epsilon`` an item drawn uniformly from the
    remaining pool is served instead of the next ranked one.

    Propensities are per-position marginals, what position-based off-policy estimators
    need: the probability that this item is at this position, given the ranked list. The
    ``j``-th ranked item is at position ``j`` when position ``j`` does not explore:
    ``1 - epsilon`` (more once a small pool has run out). A pool item is at position ``j``
    with ``P(position j explores) / pool size``: by symmetry every pool item is equally
    likely to be the one drawn there. (The probability of the draw itself, ``epsilon /
    items left``, depends on earlier positions' draws and is not a marginal.) The draw is
    seeded by the request id, so a logged request can be replayed exactly.
    """

    name = "epsilon-greedy"

    def __init__(self, config: EpsilonGreedyConfig) -> None:
        self.config = config

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate:
        """``k`` items, some swapped for pool items, every one with its propensity."""
        ranked = list(slate.items[:k])
        pool = list(slate.items[k : k + self.config.pool])
        eps = self.config.epsilon
        if not pool or eps == 0.0:
            return Slate(tuple(dataclasses.replace(item, propensity=1.0) for item in ranked))
        seed = int.from_bytes(hashlib.blake2b(ctx.request_id.encode(), digest_size=8).digest())
        rng = np.random.default_rng(seed)
        size = len(pool)
        served: list[ScoredItem] = []
        for position, item in enumerate(ranked):
            explores = eps * _pool_left(position, size, eps)
            if pool and rng.random() < eps:
                pick = int(rng.integers(len(pool)))
                served.append(
                    dataclasses.replace(
                        pool.pop(pick), propensity=explores / size, reason="Something new to try"
                    )
                )
            else:
                served.append(dataclasses.replace(item, propensity=1.0 - explores))
        return Slate(tuple(served))

    def support(self, slate: Slate, ctx: RequestContext, k: int) -> Support:
        """The ``j``-th ranked item at ``j`` with ``1 - P(j explores)``; every pool item at
        every position ``j`` with ``P(j explores) / pool size`` (see the class docstring)."""
        ranked = slate.items[:k]
        pool = slate.items[k : k + self.config.pool]
        eps = self.config.epsilon
        out: Support = {}
        for position, item in enumerate(ranked):
            explores = eps * _pool_left(position, len(pool), eps) if pool else 0.0
            out[(item.item_id, position)] = 1.0 - explores
            if explores > 0:
                for candidate in pool:
                    out[(candidate.item_id, position)] = explores / len(pool)
        return out


def _pool_left(position: int, size: int, eps: float) -> float:
    """The probability that the pool is not used up before ``position`` (each earlier
    position took one pool item with probability ``eps`` while any was left)."""
    if position < size:
        return 1.0
    # Used up: at least ``size`` of the ``position`` earlier positions explored.
    used_up = sum(
        math.comb(position, n) * eps**n * (1 - eps) ** (position - n)
        for n in range(size, position + 1)
    )
    return 1.0 - used_up
