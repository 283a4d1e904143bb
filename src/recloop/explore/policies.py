"""The exploration-policy role, the deterministic policy and epsilon-greedy.

Every served position carries a propensity: the probability that this policy put that item
there, given the ranked list it started from. Logged with the served list, it lets later
off-policy evaluation estimate how another policy would have done from these logs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext, ScoredItem, Slate


class ExplorationPolicy(Protocol):
    """Chooses the ``k`` items to serve from the ranked slate (which may hold more, in
    order), and the propensity of every position."""

    name: str

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate:
        """At most ``k`` items to serve, each with the probability it was put there."""
        ...


class NoExplorationPolicy:
    """Serves the head of the ranked slate: every position chosen with probability 1."""

    name = "none"

    def explore(self, slate: Slate, ctx: RequestContext, k: int) -> Slate:
        """The first ``k`` items with propensity 1.0."""
        return Slate(tuple(dataclasses.replace(item, propensity=1.0) for item in slate.items[:k]))


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

    Propensities: an exploited position's item was chosen with probability ``1 - epsilon``;
    an explored one with ``epsilon / (items left in the pool)``. The draw is seeded by the
    request id, so a logged request can be replayed exactly.
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
        served: list[ScoredItem] = []
        for item in ranked:
            if pool and rng.random() < eps:
                pick = int(rng.integers(len(pool)))
                propensity = eps / len(pool)
                served.append(
                    dataclasses.replace(
                        pool.pop(pick), propensity=propensity, reason="Something new to try"
                    )
                )
            else:
                served.append(dataclasses.replace(item, propensity=1.0 - eps if pool else 1.0))
        return Slate(tuple(served))
