"""LinUCB with a shared linear model, randomised so every served position has a propensity.

One ridge regression ``reward ≈ x · theta`` is shared by all items (the arms are items
described by feature rows, so a new item needs no arm of its own); an item's upper
confidence bound is ``x · theta + alpha * sqrt(x' A^-1 x)`` with ``A = ridge * I + sum x x'``.

Plain LinUCB serves the highest bounds, a deterministic choice whose logs carry propensity
1 and are useless to off-policy evaluation of any other policy. Here the explore slots are
filled by a Plackett-Luce draw with weights ``exp(ucb / temperature)``: the first slot takes
item ``i`` with probability ``softmax(ucb / temperature)_i``, the next one the same over the
items left, and so on (sampled as the top of ``ucb / temperature + Gumbel noise``). A small
temperature is nearly greedy on the bound; a large one nearly uniform. The logged
propensity is, as for Thompson sampling, the Monte Carlo estimate of the probability that
the item lands at that position, marginal over the earlier positions (see
``recloop.explore.bandit_common``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.domain import RequestContext, ScoredItem, Slate
from recloop.explore.bandit_common import (
    DrawnSlots,
    SlotPlan,
    plan_slots,
    request_seed,
    top_by_draws,
)


class FeatureProvider(Protocol):
    """The feature rows LinUCB scores: one row per item (serving passes the ranker's)."""

    def features(self, items: Sequence[ScoredItem], ctx: RequestContext) -> np.ndarray:
        """A float array of shape (len(items), dim) for the items in this request."""
        ...


class LinUCBConfig(BaseModel):
    """Feature dimension, confidence width ``alpha``, ridge prior, softmax ``temperature``
    (in reward units), ``pool`` candidates, ``explore_slots`` of the ``k`` positions (None:
    all) and ``propensity_draws`` Monte Carlo draws for the propensities."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dim: int = Field(ge=1)
    alpha: float = Field(default=1.0, ge=0.0)
    ridge: float = Field(default=1.0, gt=0.0)
    temperature: float = Field(default=0.05, gt=0.0)
    pool: int = Field(default=50, ge=1)
    explore_slots: int | None = Field(default=None, ge=0)
    propensity_draws: int = Field(default=200, ge=1)


class LinUCB(DrawnSlots):
    """Shared-model LinUCB with a Plackett-Luce (softmax) draw over the upper bounds.

    ``update`` adds observations by Sherman-Morrison, O(dim^2) each; ``explore`` reads a
    consistent snapshot of the model, so serving threads may call both. Deterministic
    given the request id and the model.
    """

    name = "linucb"

    def __init__(self, config: LinUCBConfig, features: FeatureProvider) -> None:
        self.config = config
        self.features = features
        self._lock = threading.Lock()
        self._a_inv = np.eye(config.dim) / config.ridge
        self._b = np.zeros(config.dim)
        self._theta = np.zeros(config.dim)
        self.observations = 0

    @property
    def theta(self) -> np.ndarray:
        """The current ridge estimate of the reward weights."""
        with self._lock:
            return self._theta.copy()

    def update(self, features: np.ndarray, rewards: np.ndarray) -> None:
        """Add observations: one row of ``features`` (n, dim) per reward (n,) observed."""
        x = np.atleast_2d(np.asarray(features, dtype=float))
        r = np.atleast_1d(np.asarray(rewards, dtype=float))
        if x.shape[1] != self.config.dim or x.shape[0] != r.shape[0]:
            raise ValueError(f"expected features (n, {self.config.dim}) and rewards (n,)")
        with self._lock:
            a_inv = self._a_inv
            for row in x:
                u = a_inv @ row
                a_inv -= np.outer(u, u) / (1.0 + row @ u)
            self._b += r @ x
            self._theta = a_inv @ self._b
            self.observations += len(r)

    def upper_bounds(self, features: np.ndarray) -> np.ndarray:
        """``x · theta + alpha * sqrt(x' A^-1 x)`` for each row of ``features``."""
        x = np.asarray(features, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"expected features of shape (n, {self.config.dim})")
        with self._lock:
            theta = self._theta.copy()
            a_inv = self._a_inv.copy()
        width = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", x, a_inv, x), 0.0, None))
        out: np.ndarray = x @ theta + self.config.alpha * width
        return out

    def _draw(self, slate: Slate, ctx: RequestContext, k: int) -> tuple[SlotPlan, np.ndarray]:
        plan = plan_slots(slate, k, self.config.pool, self.config.explore_slots)
        if plan.slots == 0:
            return plan, np.zeros((0, 0), dtype=np.intp)
        ucb = self.upper_bounds(self.features.features(plan.candidates, ctx))
        rng = np.random.default_rng(request_seed(ctx.request_id, self.name))
        noise = rng.gumbel(size=(1 + self.config.propensity_draws, len(plan.candidates)))
        return plan, top_by_draws(ucb / self.config.temperature + noise, plan.slots)
